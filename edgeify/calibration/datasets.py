"""Turn the user's --data (or the default for the model) into calibration and eval batches."""

from __future__ import annotations

from dataclasses import dataclass

from edgeify.calibration import synthetic
from edgeify.calibration.readers import Example, map_labels, read_examples
from edgeify.calibration.splits import DEFAULT_SEED, split_examples
from edgeify.calibration.tokenize import Batch, encode_classification, encode_language_model, with_context
from edgeify.errors import UsageError
from edgeify.families import CAUSAL_LM

DEFAULT_N_EVAL = {"sequence-classification": 1000, "causal-lm": 100}
SYNTHETIC_SEED = 1234  # starters train on seeds 0..3: evaluation text is never trained on


@dataclass
class Prepared:
    calibration: Batch
    evaluation: Batch
    description: str
    labels: dict[int, str] | None
    # the rows neither evaluated nor calibrated on (up to n_train), for compress/ training
    training: Batch | None = None


def read_hub(spec: str, needs_labels: bool, text_column: str | None,
             label_column: str | None) -> list[Example]:
    """hub:PATH[@CONFIG][:SPLIT] through `datasets` (needs internet or a cached copy)."""
    body = spec[len("hub:"):]
    body, _, split = body.partition(":")
    path, _, name = body.partition("@")
    try:
        import datasets
    except ImportError:
        raise UsageError(f"{spec}: reading hub datasets needs `pip install edgeify[hub]`") from None
    try:
        ds = datasets.load_dataset(path, name or None, split=split or "validation")
    except Exception as e:  # noqa: BLE001 - datasets raises many types when offline
        raise UsageError(f"cannot load dataset {spec} ({str(e).splitlines()[0][:160]}); "
                         "pass a local file with --data") from None
    cols = ds.column_names
    tcol = text_column or next((c for c in ("sentence", "text") if c in cols), cols[0])
    lcol = (label_column or next((c for c in ("label", "labels") if c in cols), None)) if needs_labels else None
    features = ds.features.get(lcol) if lcol else None
    names = getattr(features, "names", None)
    out = []
    for row in ds:
        if not str(row[tcol]).strip():
            continue
        label = None if lcol is None else (names[row[lcol]] if names else str(row[lcol]))
        out.append(Example(str(row[tcol]), label))
    return out


def _synthetic(task: str, n: int) -> tuple[list[Example], str]:
    if task == CAUSAL_LM:
        # ~70 tokens a paragraph: three paragraphs per wanted 128-token window
        return ([Example(t) for t in synthetic.paragraphs(max(200, 3 * n), seed=SYNTHETIC_SEED)],
                "synthetic text (edgeify-generated, not used in starter training)")
    return ([Example(t, lab) for t, lab in synthetic.labelled_reviews(n + 512, seed=SYNTHETIC_SEED)],
            "synthetic reviews (edgeify-generated, not used in starter training)")


def load_examples(family, data: str | None, *, synthetic_default: bool, n_wanted: int,
                  text_column: str | None = None, label_column: str | None = None
                  ) -> tuple[list[Example], str]:
    """The raw examples and a description of where they came from.

    Without --data: the synthetic set for starters, else the family's hub default.
    `synthetic` asks for edgeify's generated set explicitly (labels negative/positive).
    Cheap to call before the model is loaded, so a bad file fails fast.
    """
    needs_labels = family.task != CAUSAL_LM
    if data == "synthetic" or (not data and synthetic_default):
        return _synthetic(family.task, n_wanted)
    if data and data.startswith("hub:"):
        return read_hub(data, needs_labels, text_column, label_column), data
    if data:
        return read_examples(data, needs_labels=needs_labels, text_column=text_column,
                             label_column=label_column), str(data)
    return read_hub(family.default_data, needs_labels, None, None), family.default_data


def prepare(family, tokenizer, id2label: dict | None, examples: list[Example], desc: str, *,
            seq_len: int, n_calibration: int, n_eval: int | None,
            seed: int = DEFAULT_SEED, n_train: int = 0, context: int = 0) -> Prepared:
    """Tokenize and split: evaluation, calibration and training sets never overlap.

    `context` (causal LM): stream tokens each evaluation window sees before it (unscored).
    """
    task = family.task
    n_eval = n_eval or DEFAULT_N_EVAL[task]
    if task == CAUSAL_LM:
        windows = encode_language_model(tokenizer, [e.text for e in examples], seq_len, family.onnx_inputs)
        if len(windows) < 2:
            raise UsageError(f"{desc}: too little text for two windows of {seq_len} tokens "
                             f"({len(windows)} found); give more text or a smaller --seq-len")
        split = split_examples(list(range(len(windows))), n_calibration, n_eval, seed)
        pick = lambda idx: Batch({k: v[idx] for k, v in windows.inputs.items()})  # noqa: E731
        training = pick(split.rest[:n_train]) if n_train and split.rest else None
        return Prepared(pick(split.calibration), with_context(windows, split.evaluation, context),
                        desc, None, training)

    id2label = {int(k): v for k, v in (id2label or {}).items()}
    ids = map_labels(examples, id2label, desc)
    pairs = list(zip([e.text for e in examples], ids))
    split = split_examples(pairs, n_calibration, n_eval, seed)

    def encode(items):
        return encode_classification(tokenizer, [t for t, _ in items], [lab for _, lab in items],
                                     seq_len, family.onnx_inputs)
    # verbatim copies of held-out texts (retweets, say) would leak them into training
    held_out = {t for t, _ in (*split.evaluation, *split.calibration)}
    rest = [pair for pair in split.rest if pair[0] not in held_out][:n_train]
    training = encode(rest) if n_train and rest else None
    return Prepared(encode(split.calibration), encode(split.evaluation), desc, id2label, training)
