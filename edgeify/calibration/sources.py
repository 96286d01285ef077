"""Where each set comes from: --eval-data, --calibration-data, --train-data, else --data.

Users hold data as a train file and a dev file, or as one file, or as a hub dataset with
its own splits. Each set (role) gets one source; roles naming the same source are split
from it together (calibration first, see splits.py), roles with sources of their own take
their rows from those. A hub dataset named without a split is two sources: its
`validation` split is evaluated, its `train` split calibrates and trains, the way the
dataset's authors meant them to be used.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeify.calibration.readers import Example, read_examples
from edgeify.errors import UsageError

ROLES = ("calibration", "evaluation", "training")
FLAGS = {"calibration": "--calibration-data", "evaluation": "--eval-data", "training": "--train-data"}
HUB_SPLITS = {"evaluation": "validation", "calibration": "train", "training": "train"}


@dataclass(frozen=True)
class Source:
    """One file or hub split and the roles it serves, read."""

    spec: str
    roles: tuple[str, ...]
    examples: tuple[Example, ...]
    description: str


@dataclass(frozen=True)
class Sources:
    groups: tuple[Source, ...]

    @classmethod
    def single(cls, examples, description: str) -> "Sources":
        """One source for every role (the one-file case, and callers of `prepare`)."""
        return cls((Source(description, ROLES, tuple(examples), description),))

    def of(self, role: str) -> Source | None:
        return next((g for g in self.groups if role in g.roles), None)

    def texts(self) -> list[str]:
        """Every text of every source: what --trim-vocab must keep tokens for."""
        return [e.text for g in self.groups for e in g.examples]


def parse_hub(spec: str) -> tuple[str, str | None, str | None]:
    """hub:PATH[@CONFIG][:SPLIT] -> (path, config, split)."""
    body = spec[len("hub:"):]
    body, _, split = body.partition(":")
    path, _, name = body.partition("@")
    if not path:
        raise UsageError(f"{spec!r}: no dataset path; accepted: hub:PATH[@CONFIG][:SPLIT]")
    return path, name or None, split or None


def _with_hub_split(spec: str | None, role: str) -> str | None:
    if spec and spec.startswith("hub:") and parse_hub(spec)[2] is None:
        return f"{spec}:{HUB_SPLITS[role]}"
    return spec


def role_specs(data: str | None, eval_data: str | None = None, calibration_data: str | None = None,
               train_data: str | None = None, *, training: bool = False,
               default: str | None = None) -> dict[str, str | None]:
    """Each role's source. What is not given separately comes from --data; without --data,
    from --eval-data (so `--eval-data F` alone is `--data F`), else from `default` (the
    family's dataset or edgeify's synthetic set; None: not known yet). Training rows come
    from the calibration source when that is given on its own (a train file)."""
    base = data or eval_data or default
    specs = {"calibration": calibration_data or base, "evaluation": eval_data or base}
    if training:
        specs["training"] = train_data or calibration_data or base
    return {role: _with_hub_split(spec, role) for role, spec in specs.items()}


def read_hub(spec: str, needs_labels: bool, text_column: str | None,
             label_column: str | None) -> list[Example]:
    """hub:PATH[@CONFIG][:SPLIT] through `datasets` (the hub, a cached copy, or a local
    directory of train/validation files); no split given reads `validation`."""
    path, name, split = parse_hub(spec)
    try:
        import datasets
    except ImportError:
        raise UsageError(f"{spec}: reading hub datasets needs `pip install edgeify[hub]`") from None
    try:
        ds = datasets.load_dataset(path, name, split=split or "validation")
    except Exception as e:  # noqa: BLE001 - datasets raises many types when offline
        raise UsageError(f"cannot load dataset {spec} ({str(e).splitlines()[0][:160]}); "
                         "pass a local file with --data") from None
    cols = ds.column_names
    tcol = text_column or next((c for c in ("sentence", "text") if c in cols), cols[0])
    lcol = (label_column or next((c for c in ("label", "labels") if c in cols), None)) if needs_labels else None
    if needs_labels and lcol is None:
        raise UsageError(f"{spec}: cannot find a label column (tried label, labels); columns are: "
                         f"{', '.join(cols)}; choose one with --label-column")
    for col, what in ((tcol, "text"), (lcol, "label")):
        if col is not None and col not in cols:
            raise UsageError(f"{spec}: no {what} column {col!r}; columns are: {', '.join(cols)}")
    names = getattr(ds.features.get(lcol), "names", None) if lcol else None
    out = []
    for row in ds:
        if not str(row[tcol]).strip():
            continue
        label = None if lcol is None else (names[row[lcol]] if names else str(row[lcol]))
        out.append(Example(str(row[tcol]), label))
    if not out:
        raise UsageError(f"{spec}: no non-empty text in column {tcol!r}")
    return out


def read_spec(spec: str, needs_labels: bool, text_column: str | None,
              label_column: str | None) -> list[Example]:
    """A file or hub:... spec, read (`synthetic` is the caller's: it needs the task)."""
    if spec.startswith("hub:"):
        return read_hub(spec, needs_labels, text_column, label_column)
    return read_examples(spec, needs_labels=needs_labels, text_column=text_column, label_column=label_column)
