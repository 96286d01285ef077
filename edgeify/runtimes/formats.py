"""One record per artifact format, registered beside its runtime, and `of(path)`: the only
place a file's suffix is looked up.

Everything outside a format's own export and runtime modules asks the record instead of
matching suffixes or format names: which files travel with an artifact, what inputs it
declares, whether it is damaged, which packages run it, the deployment card's lines that
load and run it, and which module reads its cost. A new format registers a `Format` in its
runtime module and is known everywhere else (see README, "Adding a format").

The record lives at the runtimes layer, the lowest one that runs files, so exporters,
targets and the report can all read it; what belongs to a higher layer (the cost reader)
is named by module, imported when asked for, as entry points are.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

@dataclass(frozen=True)
class Snippet:
    """What a format's deployment-card lines may use. The lines before them define `feeds`
    (the token inputs as numpy arrays of the file's dtypes) and `ids` (input_ids); the
    format's lines must end with `logits` (numpy) defined."""

    path: str            # the artifact, relative to the output directory the card runs in
    file: Path | None    # the artifact on disk, when at hand (to read its metadata)
    threads: int
    decoder: bool        # a cached decoder: run one prompt from an empty cache


def _none(path: Path) -> list[Path]:
    return []


def _no_damage(path: Path) -> str | None:
    return None


@dataclass(frozen=True)
class Format:
    """An artifact format: what each stage outside the format's own modules needs to know."""

    name: str                                  # --formats name and the report's "format"
    suffixes: tuple[str, ...]                  # e.g. (".onnx",); a file's suffix picks its format
    runtime: str                               # what runs it, as reports name it
    packages: tuple[str, ...]                  # pip packages the card pins, first preferred
    install: str                               # how to install the runtime on a device
    declared_inputs: Callable[[Path], dict]    # {name: runtimes.Shape | None}, without loading weights
    card_inputs: Callable[[Path], list[dict]]  # [{name, shape, dtype}] as the file declares them
    snippet_imports: tuple[str, ...]           # the card's import lines
    snippet: Callable[[Snippet], list[str]]    # the card's lines that load the file and run it
    cost_reader: str                           # module with graph_cost(path, ...), imported when asked
    token_dtype: str = "int64"                 # the dtype of token inputs, when the file is not at hand
    companions: Callable[[Path], list[Path]] = field(default=_none)  # files that travel with it
    corrupt_reason: Callable[[Path], str | None] = field(default=_no_damage)
    file_precision: Callable[[Path], str] | None = None  # as the runner reports, read from the file
    # the notes a target's refusal reads (targets.Target.refusal), from the file alone: for a
    # file met outside a run (`edgeify bench FILE`), whose export notes are not at hand
    file_notes: Callable[[Path], dict] | None = None

    def cost_module(self):
        return importlib.import_module(self.cost_reader)


_FORMATS: dict[str, Format] = {}


def register_format(fmt: Format) -> Format:
    """Add a format (or replace one of the same name): its suffixes must be new."""
    taken = {s: f.name for f in _FORMATS.values() if f.name != fmt.name for s in f.suffixes}
    clash = [s for s in fmt.suffixes if s in taken]
    if clash:
        raise ValueError(f"format {fmt.name!r}: suffix {clash[0]!r} is already format {taken[clash[0]]!r}'s")
    _FORMATS[fmt.name] = fmt
    return fmt


def unregister_format(name: str) -> None:
    _FORMATS.pop(name, None)


def of(path: str | Path) -> Format | None:
    """The format of a file, by its suffix; None for anything else (a directory, a model)."""
    suffix = Path(path).suffix.lower()
    return next((f for f in _FORMATS.values() if suffix in f.suffixes), None)


def get(name: str) -> Format:
    if name not in _FORMATS:
        raise KeyError(f"unknown format {name!r}; accepted: {', '.join(names())}")
    return _FORMATS[name]


def names() -> list[str]:
    return list(_FORMATS)


def suffixes() -> list[str]:
    return [s for f in _FORMATS.values() for s in f.suffixes]


def is_file_of(path: Path, name: str) -> bool:
    """A file of format `name` (by its suffix): what a runner's predicate asks first."""
    fmt = of(path)
    return fmt is not None and fmt.name == name and Path(path).is_file()
