"""evaluate(): accuracy and perplexity arithmetic, parity() and metric_drop()."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeify.calibration.tokenize import Batch
from edgeify.evaluate import PROBE, EvalResult, evaluate, metric_drop, parity
from edgeify.tasks import CAUSAL_LM, SEQ_CLS


class FixedLogits:
    """Runner-like: returns preset logits for each row (looked up by the row's first id)."""

    input_names = ("input_ids",)

    def __init__(self, logits: np.ndarray):
        self.logits = logits
        self.calls: list[int] = []

    def run(self, feeds):
        rows = feeds["input_ids"][:, 0]
        self.calls.append(len(rows))
        return self.logits[rows]


def _cls_batch(labels):
    n = len(labels)
    ids = np.stack([np.arange(n), np.zeros(n, dtype=np.int64)], axis=1).astype(np.int64)
    return Batch({"input_ids": ids}, np.asarray(labels, dtype=np.int64))


def test_accuracy_arithmetic():
    # 10 samples, 3 classes; predictions (argmax) 0,1,2,0,1,2,0,1,2,0
    logits = np.full((10, 3), -1.0, dtype=np.float32)
    preds = [i % 3 for i in range(10)]
    logits[np.arange(10), preds] = 2.0
    labels = [0, 1, 2, 0, 1, 0, 0, 0, 0, 0]  # 7 right
    runner = FixedLogits(logits)
    res = evaluate(runner, _cls_batch(labels), SEQ_CLS, batch_size=4)
    assert res.metric == "accuracy"
    assert res.value == pytest.approx(70.0)
    assert res.n == 10
    assert res.predictions.tolist() == preds
    assert runner.calls == [4, 4, 2]
    assert res.probe_logits.shape == (10, 3)
    np.testing.assert_array_equal(res.probe_logits, logits)
    assert res.as_dict() == {"name": "accuracy", "value": 70.0, "n": 10}


def test_probe_keeps_first_probe_samples():
    n = PROBE + 9
    logits = np.random.default_rng(0).normal(size=(n, 2)).astype(np.float32)
    res = evaluate(FixedLogits(logits), _cls_batch([0] * n), SEQ_CLS, batch_size=5)
    assert res.probe_logits.shape == (PROBE, 2)
    np.testing.assert_array_equal(res.probe_logits, logits[:PROBE])
    assert res.value == pytest.approx(100.0 * (logits.argmax(-1) == 0).mean())


def test_perplexity_arithmetic_uniform_logits():
    """Uniform logits over V tokens: perplexity is exactly V."""

    class Uniform:
        def run(self, feeds):
            b, s = feeds["input_ids"].shape
            return np.zeros((b, s, 37), dtype=np.float32)

    ids = np.random.default_rng(0).integers(0, 37, size=(6, 9)).astype(np.int64)
    res = evaluate(Uniform(), Batch({"input_ids": ids}), CAUSAL_LM, batch_size=16)
    assert res.metric == "perplexity"
    assert res.value == pytest.approx(37.0, rel=1e-9)
    assert res.predictions.shape == (6, 9)


def test_perplexity_scores_next_token():
    """Logits that put probability p on the right *next* token give perplexity 1/p."""
    V, p = 5, 0.6
    ids = np.array([[0, 1, 2, 3, 4], [4, 3, 2, 1, 0]], dtype=np.int64)

    class NextToken:
        def run(self, feeds):
            x = feeds["input_ids"]
            probs = np.full(x.shape + (V,), (1 - p) / (V - 1))
            nxt = np.where(x[:, 0:1] == 0, x + 1, x - 1) % V  # the following token per row
            np.put_along_axis(probs, nxt[..., None], p, axis=-1)
            return np.log(probs).astype(np.float32)

    res = evaluate(NextToken(), Batch({"input_ids": ids}), CAUSAL_LM)
    assert res.value == pytest.approx(1 / p, rel=1e-5)


def test_perplexity_equals_hf_loss_for_gpt_neo_starter(starter_dir):
    import torch
    from transformers import AutoTokenizer

    from edgeify import families
    from edgeify.calibration import synthetic
    from edgeify.calibration.tokenize import encode_language_model
    from edgeify.runtimes import open_runner
    from edgeify.runtimes.torch_runner import TorchRunner

    path = starter_dir("gpt-neo")
    family = families.get("gpt-neo")
    tok = AutoTokenizer.from_pretrained(str(path))
    batch = encode_language_model(tok, synthetic.paragraphs(30, seed=777), 48, family.onnx_inputs)
    batch = Batch({k: v[:10] for k, v in batch.inputs.items()})
    assert len(batch) == 10

    runner = open_runner(path, threads=2)
    assert isinstance(runner, TorchRunner)
    res = evaluate(runner, batch, CAUSAL_LM, batch_size=3)

    with torch.no_grad():
        ids = torch.from_numpy(batch.inputs["input_ids"])
        loss = runner.model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids).loss.item()
    assert res.value == pytest.approx(math.exp(loss), rel=1e-3)
    assert 1.0 < res.value < len(tok) * 2  # a real, finite perplexity
    assert res.n == 10 and res.predictions.shape == (10, 48)


def test_sliding_window_perplexity_equals_hf_loss_on_the_scored_tokens(starter_dir):
    """With context, perplexity is HF's loss over each window's own tokens (labels -100 on
    the context), the first token of the window scored too; the probe logits and
    predictions are the window's positions only, whatever the context."""
    import torch
    from transformers import AutoTokenizer

    from edgeify import families
    from edgeify.calibration import synthetic
    from edgeify.calibration.tokenize import encode_language_model, with_context
    from edgeify.evaluate import scorer
    from edgeify.runtimes import open_runner

    path = starter_dir("gpt-neo")
    family = families.get("gpt-neo")
    tok = AutoTokenizer.from_pretrained(str(path))
    windows = encode_language_model(tok, synthetic.paragraphs(30, seed=778), 32, family.onnx_inputs)
    idx = [5, 0, 7, 1, 9]  # window 0 has no context, window 1 only 32 tokens
    batch = with_context(windows, idx, 48)
    assert batch.meta["context_len"].tolist() == [48, 0, 48, 32, 48]
    runner = open_runner(path, threads=2)
    res = evaluate(runner, batch, CAUSAL_LM, batch_size=4)

    stream = torch.from_numpy(windows.meta["stream"])
    nll, count = 0.0, 0
    with torch.no_grad():
        for i, c in zip(idx, batch.meta["context_len"].tolist()):
            ids = stream[i * 32 - c:(i + 1) * 32][None]
            labels = ids.clone()
            labels[:, :c] = -100  # context is conditioned on, not scored
            n = 31 if c == 0 else 32
            nll += runner.model(input_ids=ids, labels=labels).loss.item() * n
            count += n
    assert count == 31 + 4 * 32
    assert res.value == pytest.approx(math.exp(nll / count), rel=1e-3)
    assert res.predictions.shape == (5, 32) and res.probe_logits.shape[:2] == (5, 32)
    plain = evaluate(runner, with_context(windows, idx, 0), CAUSAL_LM)
    # the context reached the model: the window's logits changed (window 0 has none)
    assert np.abs(res.probe_logits[0] - plain.probe_logits[0]).max() > 1e-2
    np.testing.assert_allclose(res.probe_logits[1], plain.probe_logits[1], atol=1e-4)
    # the accuracy-controlled quantizers' score sees the same context
    total, per = scorer(batch, CAUSAL_LM, reference=res.value)(runner.run, list(range(5)))
    assert len(per) == 5 and total == pytest.approx(-100.0, rel=0.02)


def _result(preds, probe, value=0.0):
    return EvalResult("accuracy", value, len(preds), np.asarray(preds), np.asarray(probe, dtype=np.float32))


def test_parity_numbers():
    a = _result([0, 1, 1, 0, 2], [[0.0, 1.0], [2.0, -1.0]])
    b = _result([0, 1, 0, 0, 1], [[0.5, 1.0], [2.0, -1.25], [9.0, 9.0]])
    assert parity(a, b) == {"max_abs_diff": 0.5, "argmax_agreement_pct": 60.0,
                            "probe_samples": 2, "samples": 5}


def test_parity_identical():
    a = _result([1, 2, 3], [[1.0, 2.0]])
    assert parity(a, a) == {"max_abs_diff": 0.0, "argmax_agreement_pct": 100.0,
                            "probe_samples": 1, "samples": 3}


def test_parity_rounds():
    a = _result([0, 0, 1], [[1e-7, 0.0]])
    b = _result([0, 1, 1], [[0.0, 0.0]])
    p = parity(a, b)
    assert p["max_abs_diff"] == 0.0
    assert p["argmax_agreement_pct"] == 66.667


def test_metric_drop_accuracy_points():
    assert metric_drop(88.0, 90.0, "accuracy") == pytest.approx(2.0)    # worse: positive
    assert metric_drop(91.5, 90.0, "accuracy") == pytest.approx(-1.5)   # better: negative
    assert metric_drop(90.0, 90.0, "accuracy") == 0.0


def test_metric_drop_perplexity_percent():
    assert metric_drop(22.0, 20.0, "perplexity") == pytest.approx(10.0)   # higher ppl: worse
    assert metric_drop(18.0, 20.0, "perplexity") == pytest.approx(-10.0)  # lower ppl: better
    assert metric_drop(20.0, 20.0, "perplexity") == 0.0
