"""One small runner per runtime, all with the same interface.

A runner loads one artifact and maps a dict of numpy inputs (keyed by ONNX input name)
to a numpy array of logits. Evaluation and benchmarking only ever see this interface.

A cached decoder (a causal LM exported with its key/value cache) is also opened as a
`Decoder`: it keeps the cache between calls, which is what generation needs. Opened with
`open_runner`, it runs each row from an empty cache, so evaluation treats it like any model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from edgeify.errors import EdgeifyError, UsageError


class Runner(Protocol):
    runtime: str          # e.g. "onnxruntime 1.32.0"
    precision: str        # what actually executed, as far as the runtime tells
    input_names: tuple[str, ...]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray: ...


class Decoder(Protocol):
    """One sequence (batch 1) with its key/value cache kept inside between calls."""

    runtime: str
    precision: str
    max_length: int  # tokens the cache holds: prompt plus generated
    length: int      # tokens in the cache now

    def reset(self) -> None: ...

    def forward(self, ids: np.ndarray) -> np.ndarray:
        """ids (1, T) int64 -> logits (1, T, vocab) float32; appends the T tokens to the
        cache. Raises CacheFull, before running anything, when they do not fit."""
        ...


class CacheFull(EdgeifyError):
    """More tokens than the exported cache holds."""


def check_room(length: int, new: int, max_length: int) -> None:
    if length + new > max_length:
        raise CacheFull(f"the key/value cache holds {max_length} tokens; {length} are used and "
                        f"{new} more do not fit (export with a larger maximum length, or use a "
                        "shorter prompt / fewer new tokens)")


# (name, predicate on the path, factory(path, threads) -> Decoder), tried before _OPENERS
_DECODERS: list[tuple[str, Callable[[Path], bool], Callable[..., Decoder]]] = []


def register_decoder(name: str, matches: Callable[[Path], bool]):
    def deco(factory):
        _DECODERS.append((name, matches, factory))
        return factory
    return deco


def _decoder_factory(path: Path) -> Callable[..., Decoder] | None:
    """The factory of the first decoder kind whose predicate takes `path`. Asked once per
    open: the ONNX predicate parses the whole file."""
    if not path.exists():
        return None
    return next((factory for _, matches, factory in _DECODERS if matches(path)), None)


def is_decoder(path: str | Path) -> bool:
    return _decoder_factory(Path(path)) is not None


def open_decoder(path: str | Path, threads: int) -> Decoder:
    """Open a cached-decoder artifact (or a Hugging Face causal-LM directory) for generation."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"artifact not found: {path}")
    factory = _decoder_factory(path)
    if factory is not None:
        try:
            return factory(path, threads)
        except EdgeifyError:  # a predicate reads only a file's head: the damage may lie past it
            _refuse_if_corrupt(path)
            raise
    if path.is_dir() and (path / "config.json").exists():
        from edgeify.families.loader import _family_of_dir
        from edgeify.runtimes.torch_runner import TorchDecoder

        if _family_of_dir(path).task.causal:
            return TorchDecoder(path, threads)
    _refuse_if_corrupt(path)  # no decoder predicate parses a damaged file: not "not a decoder"
    kinds = ", ".join(name for name, _, _ in _DECODERS)
    raise UsageError(f"{path}: not a cached decoder edgeify can generate with; accepted: {kinds}")


def _refuse_if_corrupt(path: Path) -> None:
    reason = corrupt_reason(path)
    if reason:
        raise UsageError(f"{path} is corrupt or truncated ({reason}); re-export it or copy it again") from None


def corrupt_reason(path: Path) -> str | None:
    """Why an artifact file cannot be parsed at all (cut short by a failed copy or download,
    or overwritten), or None when it parses or is not a file of a known format. Structure
    only: nothing is compiled or run, except where only a runtime can verify (see the format)."""
    path = Path(path)
    fmt = formats.of(path)
    return fmt.corrupt_reason(path) if fmt is not None and path.is_file() else None


class DecoderRunner:
    """A Decoder as a Runner: each row runs from an empty cache (a prefill), as the
    evaluation windows are independent; the attention mask is not needed (no padding)."""

    input_names = ("input_ids",)

    def __init__(self, decoder: Decoder):
        self.decoder = decoder
        self.runtime = decoder.runtime
        self.threads = getattr(decoder, "threads", None)

    @property
    def precision(self) -> str:
        return self.decoder.precision

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if "input_ids" not in feeds:
            raise EdgeifyError(f"model needs inputs ['input_ids']; got {sorted(feeds)}")
        outs = []
        for row in feeds["input_ids"]:
            self.decoder.reset()
            outs.append(self.decoder.forward(row[None]))
        return np.concatenate(outs)


# (predicate on the path, factory(path, threads) -> Runner), tried in order
_OPENERS: list[tuple[str, Callable[[Path], bool], Callable[..., Runner]]] = []


def register_runner(name: str, matches: Callable[[Path], bool]):
    def deco(factory):
        _OPENERS.append((name, matches, factory))
        return factory
    return deco


def unregister_runner(name: str) -> None:
    """Remove a runner (and a decoder kind) registered under `name`: a plugin's undo."""
    _OPENERS[:] = [o for o in _OPENERS if o[0] != name]
    _DECODERS[:] = [d for d in _DECODERS if d[0] != name]


def open_runner(path: str | Path, threads: int) -> Runner:
    """Open an artifact with the runtime its file type calls for."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"artifact not found: {path}")
    decoder = _decoder_factory(path)
    if decoder is not None:
        return DecoderRunner(decoder(path, threads))
    for _, matches, factory in _OPENERS:
        if matches(path):
            return factory(path, threads)
    kinds = ", ".join(name for name, _, _ in _OPENERS)
    raise UsageError(f"{path}: not an artifact edgeify can run; accepted: {kinds}")


from edgeify.runtimes import (  # noqa: E402,F401  (registration: runners, then each format's record)
    onnxruntime_runner as _ort, openvino_runner as _ov, tflite_runner as _tflite, torch_runner as _torch,
    onnx_format as _onnx_format, openvino_format as _openvino_format, tflite_format as _tflite_format)
from edgeify.runtimes import formats  # noqa: E402


Shape = tuple[int | None, ...]  # a declared input shape; None: a dynamic axis


def input_names(path: Path) -> tuple[str, ...]:
    """The inputs an artifact expects, without loading its weights."""
    return tuple(declared_inputs(path))


def declared_inputs(path: Path) -> dict[str, Shape | None]:
    """The inputs an artifact expects and the shape each must have, without loading its
    weights: an int is an axis the runtime takes at exactly that length (a static ONNX
    input; a TFLite file's sequence), None an axis of any length or a file that does not say."""
    path = Path(path)
    if is_decoder(path):
        return {n: None for n in DecoderRunner.input_names}
    fmt = formats.of(path)
    if path.is_file() and fmt is not None:
        return fmt.declared_inputs(path)
    if path.is_dir() and (path / "config.json").exists():
        from edgeify.families.loader import _family_of_dir

        return {n: None for n in _family_of_dir(path).onnx_inputs}
    if not path.exists():
        raise UsageError(f"artifact not found: {path}")
    raise UsageError(f"{path}: not an artifact edgeify can run")


PLUGINS_ENV = "EDGEIFY_PLUGINS"


def _load_plugins() -> None:
    """Import the modules named in EDGEIFY_PLUGINS (comma-separated), after the built-in
    formats: a format from outside edgeify registers its runner and record (and exporter)
    when imported, here and in the timing children, which inherit the variable."""
    import importlib
    import os

    for name in filter(None, (n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise UsageError(f"{PLUGINS_ENV}: cannot import plugin module {name!r} ({e})") from None


_load_plugins()
