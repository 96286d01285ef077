"""Tokenize to fixed-length numpy batches, keyed by the model's ONNX input names."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Batch:
    """Model inputs (one row per sample) plus targets: class ids, or none for LM."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def rows(self, start: int, stop: int) -> dict[str, np.ndarray]:
        return {k: v[start:stop] for k, v in self.inputs.items()}

    def samples(self, names) -> list[dict[str, np.ndarray]]:
        """One feed dict per sample (batch 1) of the inputs `names`: what the quantizers'
        calibration readers iterate over."""
        return [{n: self.inputs[n][i:i + 1] for n in names} for i in range(len(self))]


def encode_classification(tokenizer, texts: list[str], labels: list[int] | None,
                          seq_len: int, input_names: tuple[str, ...]) -> Batch:
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=seq_len,
                    return_tensors="np")
    inputs = {}
    for name in input_names:
        if name in enc:
            inputs[name] = enc[name].astype(np.int64)
        elif name == "token_type_ids":
            inputs[name] = np.zeros_like(enc["input_ids"], dtype=np.int64)
        else:
            raise ValueError(f"tokenizer gives no {name!r}")
    return Batch(inputs, None if labels is None else np.asarray(labels, dtype=np.int64))


# The static lengths a lengths profile reports on (and a shorter search recipe may take).
STANDARD_LENGTHS = (16, 32, 48, 64, 96, 128, 256, 512)


def length_profile(tokenizer, texts: list[str], seq_len: int) -> dict:
    """How long the texts are in tokens (special tokens included, nothing cut): the
    percentiles, and the share of rows each standard length up to `seq_len` would cut. A
    shorter static length is the cheapest speed-up there is; this says what it costs."""
    if not texts:
        return {}
    n = np.asarray([len(ids) for ids in tokenizer(texts, truncation=False, verbose=False)["input_ids"]])
    pct = {int(q): int(np.percentile(n, q)) for q in (50, 90, 99)}
    return {"p50": pct[50], "p90": pct[90], "p99": pct[99], "max": int(n.max()),
            "truncated_pct": round(100.0 * float((n > seq_len).mean()), 2),
            "truncated_pct_at": {str(k): round(100.0 * float((n > k).mean()), 2) for k in STANDARD_LENGTHS if k <= seq_len}}


def encode_language_model(tokenizer, texts: list[str], seq_len: int,
                          input_names: tuple[str, ...]) -> Batch:
    """Concatenate the text and cut it into full windows of seq_len tokens.

    Every window is full, so perplexity counts every token once and no padding is scored.
    The whole token stream is kept in meta["stream"] (window i starts at i x seq_len), so
    the evaluation windows can be given the text before them (`with_context`).
    """
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if eos is not None:
            ids.append(eos)
    n = len(ids) // seq_len
    arr = np.asarray(ids[: n * seq_len], dtype=np.int64).reshape(n, seq_len)
    inputs = {"input_ids": arr}
    if "attention_mask" in input_names:
        inputs["attention_mask"] = np.ones_like(arr)
    return Batch(inputs, meta={"stream": np.asarray(ids, dtype=np.int64)})


def with_context(windows: Batch, idx: list[int], context: int) -> Batch:
    """The windows `idx` of `windows`, each with up to `context` stream tokens before it.

    Sliding-window perplexity: a window scored from an empty cache predicts its first
    tokens blind, which overstates perplexity and hides how a model uses longer context.
    The context is conditioned on, never scored, so it may come from any split without
    leaking evaluation text into training. meta["context"] holds it right-aligned,
    meta["context_len"] how much is real (less only near the start of the stream).
    """
    picked = Batch({k: v[idx] for k, v in windows.inputs.items()})
    if context <= 0:
        return picked
    seq_len = windows.inputs["input_ids"].shape[1]
    stream = windows.meta["stream"]
    ctx = np.zeros((len(idx), context), dtype=np.int64)
    lens = np.zeros(len(idx), dtype=np.int64)
    for row, i in enumerate(idx):
        start = int(i) * seq_len
        n = min(context, start)
        ctx[row, context - n:] = stream[start - n:start]
        lens[row] = n
    picked.meta.update(context=ctx, context_len=lens)
    return picked
