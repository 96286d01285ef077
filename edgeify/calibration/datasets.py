"""Turn the user's data (or the model's default) into calibration, eval and training batches.

`read_data` reads every source a run names (sources.py) before the model loads where it
can, and refuses a calibration set too small for a static quantizer then, not after a
download. `prepare_sources` splits and tokenizes; what fell short of the ask is kept as
warnings for the log, the terminal and the report, never silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgeify.calibration import synthetic
from edgeify.calibration.readers import Example, map_labels
from edgeify.calibration.sources import Sources, Source, read_hub, read_spec, role_specs
from edgeify.calibration.splits import ALL_ROWS, DEFAULT_SEED, select
from edgeify.calibration.tokenize import (Batch, encode_classification, encode_language_model, length_profile,
                                         with_context)
from edgeify.errors import UsageError
from edgeify.tasks import Task

SYNTHETIC_SEED = 1234  # starters train on seeds 0..3: evaluation text is never trained on
# Below this a static int8 quantizer's activation ranges are guesses: one row cost NNCF
# 8.8 points on SST-2-sized data where 128 rows cost 0.4 (issue 20).
MIN_STATIC_CALIBRATION = 32


@dataclass
class Prepared:
    calibration: Batch
    evaluation: Batch
    description: str  # where evaluation came from
    labels: dict[int, str] | None
    # the rows neither evaluated nor calibrated on (up to n_train), for compress/ training
    training: Batch | None = None
    sources: dict = field(default_factory=dict)  # role -> where its rows came from
    warnings: tuple[str, ...] = ()  # sets smaller than asked
    dropped: dict = field(default_factory=dict)  # role -> rows dropped as duplicates of evaluated text
    text_lengths: dict = field(default_factory=dict)  # the evaluation texts' tokenize.length_profile (classifiers)

    def report(self) -> dict:
        """report.json's data fields about the sets (the pipeline adds lengths and labels)."""
        return {"eval": self.description, "n_eval": len(self.evaluation), "n_calibration": len(self.calibration),
                "calibration": self.sources.get("calibration", self.description),
                **({"train": self.sources.get("training", self.description), "n_train": len(self.training)}
                   if self.training is not None else {}),
                "warnings": list(self.warnings), "dropped_duplicates": dict(self.dropped),
                **({"text_lengths": self.text_lengths} if self.text_lengths else {})}

    def log_lines(self) -> list[str]:
        cal = self.sources.get("calibration", self.description)
        line = f"{self.description}: {len(self.evaluation)} eval / " + (
            f"{len(self.calibration)} calibration" if cal == self.description
            else f"{cal}: {len(self.calibration)} calibration")
        if self.training is not None:
            line += f" / {len(self.training)} training"
        dropped = ", ".join(f"{n} {role}" for role, n in self.dropped.items() if n)
        return ([line] + ([f"dropped as duplicates of evaluated text: {dropped}"] if dropped else [])
                + [f"warning: {w}" for w in self.warnings])


def _synthetic(task: Task, n: int) -> tuple[list[Example], str]:
    if task.causal:
        # ~70 tokens a paragraph: three paragraphs per wanted 128-token window
        return ([Example(t) for t in synthetic.paragraphs(max(200, 3 * n), seed=SYNTHETIC_SEED)],
                "synthetic text (edgeify-generated, not used in starter training)")
    return ([Example(t, lab) for t, lab in synthetic.labelled_reviews(n + 512, seed=SYNTHETIC_SEED)],
            "synthetic reviews (edgeify-generated, not used in starter training)")


def load_examples(family, data: str | None, *, synthetic_default: bool, n_wanted: int,
                  text_column: str | None = None, label_column: str | None = None
                  ) -> tuple[list[Example], str]:
    """One source's examples and a description of where they came from (`edgeify eval`,
    benchmarks). Without `data`: the synthetic set for starters, else the family's hub
    default; `synthetic` asks for edgeify's generated set (labels negative/positive)."""
    needs_labels = not family.task.causal
    if data == "synthetic" or (not data and synthetic_default):
        return _synthetic(family.task, n_wanted)
    if data:
        return read_spec(data, needs_labels, text_column, label_column), str(data)
    return read_hub(family.default_data, needs_labels, None, None), family.default_data


def read_sources(family, specs: dict, *, n_wanted: int, text_column: str | None = None,
                 label_column: str | None = None, default: str | None = None) -> Sources:
    """Read each distinct source of `specs` (role -> spec) once. Labels are needed where
    rows are evaluated or trained on; a calibration-only file may be unlabelled text.
    The column options are the user's files' columns, not the default dataset's."""
    by_spec: dict[str, list[str]] = {}
    for role, spec in specs.items():
        by_spec.setdefault(spec, []).append(role)
    defaults = set(role_specs(None, default=default).values()) | set(
        role_specs(None, default=default, training=True).values()) if default else set()
    groups = []
    for spec, roles in by_spec.items():
        needs_labels = not family.task.causal and bool({"evaluation", "training"} & set(roles))
        if spec == "synthetic":
            examples, desc = _synthetic(family.task, n_wanted)
        else:
            cols = (None, None) if spec in defaults else (text_column, label_column)
            examples, desc = read_spec(spec, needs_labels, *cols), spec
        groups.append(Source(spec, tuple(roles), tuple(examples), desc))
    return Sources(tuple(groups))


def read_data(family, config, *, default: str | None, static_int8: bool) -> Sources | None:
    """The run's sources (`config`: a config.RunConfig), or None when a role falls back
    to `default` and that is not known yet (before the model loads: starter or not)."""
    specs = role_specs(config.data, config.eval_data, config.calibration_data, config.train_data,
                       training=bool(config.compress), default=default)
    if None in specs.values():
        return None
    n_eval = config.n_eval or family.task.default_n_eval
    n_wanted = n_eval + config.n_calibration + (config.n_train if config.compress else 0)
    sources = read_sources(family, specs, n_wanted=n_wanted, text_column=config.text_column,
                           label_column=config.label_column, default=default)
    if static_int8 and not family.task.causal:  # an LM's windows need the tokenizer; its int8 is weight-only
        sel = select([(g.roles, g.description, list(g.examples)) for g in sources.groups],
                     n_calibration=config.n_calibration, n_eval=n_eval, seed=config.seed,
                     text_of=lambda e: e.text)
        check_calibration(len(sel.sets["calibration"]), config.n_calibration, sources,
                          sel.dropped.get("calibration", 0))
    return sources


def check_calibration(n: int, n_calibration: int, sources: Sources, dropped: int = 0) -> None:
    """Refuse a static int8 run whose calibration set is far below the ask: it would
    report the quantizer's guesswork as the format's accuracy."""
    if n >= min(MIN_STATIC_CALIBRATION, n_calibration):
        return
    src = sources.of("calibration")
    fix = ("give --calibration-data FILE (a train file), more rows, or a smaller --n-eval"
           if "evaluation" in src.roles else f"give --calibration-data a file with at least "
                                             f"{MIN_STATIC_CALIBRATION} rows")
    also = f" ({dropped} more dropped: the same text is evaluated)" if dropped else ""
    raise UsageError(f"calibration: {n} rows from {src.description}{also}, fewer than the {MIN_STATIC_CALIBRATION} "
                     f"a static int8 quantizer needs (--int8); {fix}")


def _finish(cal: Batch | None, ev: Batch, training: Batch | None, sources: Sources, sel, labels,
            n_calibration: int, text_lengths: dict | None = None) -> Prepared:
    src = {role: g.description for g in sources.groups for role in g.roles}
    if cal is None:
        if n_calibration:
            raise UsageError(f"calibration: no rows left from {src['calibration']} (every one is also "
                             "evaluated); give --calibration-data FILE")
        cal = Batch({k: v[:0] for k, v in ev.inputs.items()})  # an evaluation-only run
    return Prepared(cal, ev, src["evaluation"], labels, training, src, sel.warnings, sel.dropped, text_lengths or {})


def _prepare_lm(family, tokenizer, sources: Sources, *, seq_len, n_calibration, n_eval, seed, n_train,
                context) -> Prepared:
    """Each source becomes a stream of full windows; one source's windows are split. A
    separate source's lines that are also in the evaluation text are dropped first."""
    evaluated = {e.text for e in sources.of("evaluation").examples}
    windows, groups, dropped = [], [], {}
    for g in sources.groups:
        examples = g.examples
        if "evaluation" not in g.roles:
            examples = [e for e in g.examples if e.text not in evaluated]
            dropped.update({role: len(g.examples) - len(examples) for role in g.roles})
        w = encode_language_model(tokenizer, [e.text for e in examples], seq_len, family.onnx_inputs)
        need = max(1, ("evaluation" in g.roles and n_eval > 0) + ("calibration" in g.roles and n_calibration > 0))
        if len(w) < need:
            raise UsageError(f"{g.description}: too little text for {'two windows' if need == 2 else 'one window'} "
                             f"of {seq_len} tokens ({len(w)} found); give more text or a smaller --seq-len")
        windows.append(w)
        groups.append((g.roles, g.description, list(range(len(w)))))
    sel = select(groups, n_calibration=n_calibration, n_eval=n_eval, n_train=n_train, seed=seed,
                 unit="windows", dropped=dropped)
    of = {role: windows[i] for i, (roles, _, _) in enumerate(groups) for role in roles}

    def pick(role):
        idx = sel.sets.get(role)
        return Batch({k: v[idx] for k, v in of[role].inputs.items()}) if idx else None
    return _finish(pick("calibration"), with_context(of["evaluation"], sel.sets["evaluation"], context),
                   pick("training") if n_train else None, sources, sel, None, n_calibration)


def prepare_sources(family, tokenizer, id2label: dict | None, sources: Sources, *, seq_len: int,
                    n_calibration: int, n_eval: int | None, seed: int = DEFAULT_SEED, n_train: int = 0,
                    context: int = 0) -> Prepared:
    """Split and tokenize: evaluation, calibration and training sets never overlap, and
    calibration and training hold no text that is evaluated.

    `n_eval`: None is the task's default, splits.ALL_ROWS every row. `context` (causal
    LM): stream tokens each evaluation window sees before it (unscored).
    """
    n_eval = n_eval or family.task.default_n_eval
    kw = dict(n_calibration=n_calibration, n_eval=n_eval, seed=seed)
    if family.task.causal:
        return _prepare_lm(family, tokenizer, sources, seq_len=seq_len, n_train=n_train, context=context, **kw)
    id2label = {int(k): v for k, v in (id2label or {}).items()}
    groups = []
    for g in sources.groups:
        labelled = bool({"evaluation", "training"} & set(g.roles))
        ids = map_labels(list(g.examples), id2label, g.description) if labelled else [None] * len(g.examples)
        groups.append((g.roles, g.description, list(zip([e.text for e in g.examples], ids))))
    sel = select(groups, n_train=n_train, text_of=lambda pair: pair[0], **kw)

    def encode(role):
        items = sel.sets.get(role)
        if not items:
            return None
        labels = None if items[0][1] is None else [lab for _, lab in items]
        return encode_classification(tokenizer, [t for t, _ in items], labels, seq_len, family.onnx_inputs)
    text_lengths = length_profile(tokenizer, [t for t, _ in sel.sets["evaluation"]], seq_len)
    return _finish(encode("calibration"), encode("evaluation"), encode("training") if n_train else None,
                   sources, sel, id2label, n_calibration, text_lengths)


def prepare(family, tokenizer, id2label: dict | None, examples: list[Example], desc: str, **kw) -> Prepared:
    """One source for every set (benchmarks, examples/): see prepare_sources."""
    return prepare_sources(family, tokenizer, id2label, Sources.single(examples, desc), **kw)


def prepare_for(family, tokenizer, id2label: dict | None, sources: Sources, config, seq_len: int,
                context: int, train: bool = False) -> Prepared:
    """prepare_sources with a run's sizes (`config`: a config.RunConfig); `train`: also
    the training rows, when the run compresses."""
    return prepare_sources(family, tokenizer, id2label, sources, seq_len=seq_len, n_calibration=config.n_calibration,
                           n_eval=config.n_eval, seed=config.seed,
                           n_train=config.n_train if train and config.compress else 0, context=context)


__all__ = ["ALL_ROWS", "Prepared", "load_examples", "read_data", "prepare", "prepare_for",
           "prepare_sources"]
