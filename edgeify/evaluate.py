"""Accuracy or perplexity of any runner on a tokenized batch, plus parity between two."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgeify import metrics, tasks
from edgeify.tasks import Task
from edgeify.calibration import Batch

PROBE = 16  # samples whose raw logits are kept to compare artifacts with the baseline


@dataclass
class EvalResult:
    metric: str
    value: float
    n: int
    predictions: np.ndarray | None  # argmax per sample (classification) or per token (LM)
    probe_logits: np.ndarray        # logits of the first PROBE samples

    def as_dict(self) -> dict:
        return {"name": self.metric, "value": round(self.value, 4), "n": self.n}


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _next_token_nll(logits: np.ndarray, ids: np.ndarray, context: int = 0) -> np.ndarray:
    """Negative log-likelihood of each scored token: the tokens after `context`, the
    first of them only when some context predicts it. (samples, seq - 1) without context,
    (samples, seq - context) with it."""
    first = context - 1 if context else 0
    logp = _log_softmax(logits[:, first:-1].astype(np.float64))
    return -np.take_along_axis(logp, ids[:, first + 1:, None], axis=-1)[..., 0]


def _lm_pieces(batch: Batch, rows: np.ndarray):
    """Feeds for the LM rows `rows`, their evaluation context prepended (see
    calibration.tokenize.with_context): (feeds, context length) per run of consecutive
    rows whose context is equally long, so each run is one rectangular batch."""
    feeds = {k: v[rows] for k, v in batch.inputs.items()}
    if "context" not in batch.meta:
        yield feeds, 0
        return
    ctx, lens = batch.meta["context"][rows], batch.meta["context_len"][rows]
    start = 0
    while start < len(rows):
        stop = start + 1
        while stop < len(rows) and lens[stop] == lens[start]:
            stop += 1
        c = int(lens[start])
        piece = {}
        for name, value in feeds.items():
            if name == "input_ids":
                piece[name] = np.concatenate([ctx[start:stop, ctx.shape[1] - c:], value[start:stop]], axis=1)
            elif name == "attention_mask":
                piece[name] = np.ones((stop - start, c + value.shape[1]), dtype=value.dtype)
            else:
                raise ValueError(f"cannot prepend evaluation context to input {name!r}")
        yield piece, c
        start = stop


def evaluate(runner, batch: Batch, task: Task | str, batch_size: int = 16, desc: str | None = None) -> EvalResult:
    from tqdm.auto import tqdm

    n = len(batch)
    task = tasks.get(task)
    batch_size = task.eval_batch(batch_size)
    preds, probes = [], []
    nll, count = 0.0, 0
    correct = 0
    with tqdm(total=n, desc=desc or "evaluating", unit="sample", leave=False, mininterval=1.0) as bar:
        for start in range(0, n, batch_size):
            if task.causal:
                for feeds, c in _lm_pieces(batch, np.arange(start, min(start + batch_size, n))):
                    logits = runner.run(feeds)
                    per_sample = _next_token_nll(logits, feeds["input_ids"], c)
                    nll += float(per_sample.sum())
                    count += per_sample.size
                    logits = logits[:, c:]  # the window's own positions: comparable across contexts
                    # a copy, so the context's logits are not kept alive with the probe
                    probes.append(logits[: max(0, PROBE - sum(len(p) for p in probes))].copy())
                    preds.append(logits.argmax(-1))
                    bar.update(len(logits))
                continue
            feeds = batch.rows(start, start + batch_size)
            logits = runner.run(feeds)
            probes.append(logits[: max(0, PROBE - sum(len(p) for p in probes))])
            p = logits.argmax(-1)
            preds.append(p)
            correct += int((p == batch.labels[start:start + batch_size]).sum())
            bar.update(len(logits))
    predictions = np.concatenate(preds)
    probe_logits = np.concatenate(probes)
    if task.causal:
        return EvalResult(task.metric.name, math.exp(nll / max(count, 1)), n, predictions, probe_logits)
    return EvalResult(task.metric.name, 100.0 * correct / max(n, 1), n, predictions, probe_logits)


def parity(result: EvalResult, reference: EvalResult) -> dict:
    """Max |logit difference| on the probe samples, argmax agreement on all samples."""
    k = min(len(result.probe_logits), len(reference.probe_logits))
    diff = float(np.abs(result.probe_logits[:k].astype(np.float64)
                        - reference.probe_logits[:k].astype(np.float64)).max()) if k else float("nan")
    agree = float((result.predictions == reference.predictions).mean() * 100)
    return {"max_abs_diff": round(diff, 6), "argmax_agreement_pct": round(agree, 3),
            "probe_samples": k, "samples": int(result.predictions.shape[0])}


def metric_drop(value: float, reference: float, metric: str) -> float:
    """How much worse `value` is than `reference`: points of accuracy, % of perplexity."""
    return metrics.get(metric).drop(value, reference)


def metric_delta(value: float, reference: float, metric: str) -> float:
    """The report's change column: accuracy points, or % perplexity (what its header says)."""
    return metrics.get(metric).delta(value, reference)


def scorer(batch: Batch, task: Task | str, reference: float, batch_size: int = 16):
    """A higher-is-better score over chosen evaluation samples, for accuracy-controlled
    quantization, which only knows "higher is better" and an absolute drop.

    Accuracy: percent correct, so the drop is in accuracy points. Perplexity: -100 x
    perplexity / `reference`, so a drop of 1 is a 1% perplexity increase over the
    reference (every LM window scores the same number of tokens, but for one at the start
    of the stream with no context, so per-window means average all but exactly).
    Returns `score(run, indices) -> (score, per-sample scores)`.
    """

    task = tasks.get(task)
    batch_size = task.eval_batch(batch_size)

    def score(run, indices: list[int]) -> tuple[float, list[float]]:
        idx = np.asarray(indices, dtype=np.int64)
        per: list[float] = []
        for start in range(0, len(idx), batch_size):
            chunk = idx[start:start + batch_size]
            if task.causal:
                for feeds, c in _lm_pieces(batch, chunk):
                    logits = np.asarray(run(feeds))
                    per.extend(_next_token_nll(logits, feeds["input_ids"], c).mean(axis=1).tolist())
                continue
            feeds = {k: v[chunk] for k, v in batch.inputs.items()}
            logits = np.asarray(run(feeds))
            per.extend((100.0 * (logits.argmax(-1) == batch.labels[chunk])).tolist())
        if task.causal:
            total = -100.0 * math.exp(float(np.mean(per))) / reference
            per = [-100.0 * math.exp(v) / reference for v in per]
            return total, per
        return float(np.mean(per)), per

    return score
