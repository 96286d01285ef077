"""Accuracy-controlled int8 (export/accuracy_control.py) in every format that uses it
(ONNX through nodes_to_exclude, TFLite through ai-edge-quantizer recipe scopes) on a model
made fragile on purpose: two attention layers carry an outlier that int8 cannot represent,
so the loop must find them and put them back to float.

On the ELECTRA starter (4 layers, 200 reviews), the outlier in layer 0 costs ONNX dynamic
int8 14 points (the fused Attention's packed QKV weights share one scale per channel with
the outlier) and static QDQ 0.5; in layer 3 (no later layer to recover) static loses 15.5.
In TFLite the scaled value projection (per-tensor weights) and the output projection that
reads it (int8 activations) both break, so the loop must find four ops."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest

from edgeify.calibration import synthetic
from edgeify.calibration.tokenize import encode_classification
from edgeify.export import Validation, config_record, get_backend
from edgeify.export.accuracy_control import AccuracyControlledInt8
from edgeify.runtimes import open_runner

OUTLIER = 3000.0  # one attention value feature scaled up, the output projection scaled down
# The fragile attentions' output, amplified so that it dominates the residual stream. In the
# briefly trained starter an attention adds little, so what int8 lost there depended on the
# CPU's int8 kernels: AVX2's saturating u8 x s8 products cost ONNX dynamic int8 109% logit
# error, AVX-512 VNNI (exact products) only 1.9%, under the test's budget. Amplified, losing
# that output costs every CPU.
GAIN = 10.0
FRAGILE_LAYERS = (0, 3)
HAS_TFLITE = all(importlib.util.find_spec(m) for m in ("litert_torch", "ai_edge_litert", "ai_edge_quantizer"))
FORMATS = ["onnx", pytest.param("tflite", marks=pytest.mark.skipif(not HAS_TFLITE, reason="the tflite extra"))]


def _make_fragile(model, layer: int = 0, feature: int = 0) -> None:
    """The same function in float: value feature `feature` of `layer` x OUTLIER, and the
    output projection's input column divided by it. int8 activations (one scale per
    tensor) then lose every other feature of that attention's output."""
    import torch

    attention = model.electra.encoder.layer[layer].attention
    with torch.no_grad():
        attention.self.value.weight[feature] *= OUTLIER
        attention.self.value.bias[feature] *= OUTLIER
        attention.output.dense.weight[:, feature] /= OUTLIER
        attention.output.dense.weight *= GAIN
        attention.output.dense.bias *= GAIN


def _logit_error(evaluation: dict, reference_logits):
    """A higher-is-better score for the loop: minus the mean |logit difference| from the fp32
    model in % of its mean |logit|. Continuous, so the test does not hang on whether a
    briefly trained starter's argmax flips; the loop sees it as any score."""

    def score(run, indices):
        per = [-100.0 * float(np.abs(run({k: v[i:i + 1] for k, v in evaluation.items()}) - reference_logits[i]).mean())
               / float(np.abs(reference_logits).mean()) for i in indices]
        return float(np.mean(per)), per

    return score


@pytest.fixture(scope="module")
def fragile_model(starter_dir):
    from edgeify.families.loader import load_local

    loaded = load_local(starter_dir("electra"))
    for layer in FRAGILE_LAYERS:
        _make_fragile(loaded.model, layer)
    texts = synthetic.paragraphs(16, seed=5)  # few calibration rows: ONNX static re-calibrates per try
    calibration = encode_classification(loaded.tokenizer, texts, [0] * len(texts), 32, loaded.family.onnx_inputs)
    reviews = [t for t, _ in synthetic.labelled_reviews(64, seed=11)]
    evaluation = encode_classification(loaded.tokenizer, reviews, [0] * len(reviews), 32, loaded.family.onnx_inputs)
    return loaded, calibration, evaluation


_EXPORTS: dict = {}


@pytest.fixture(params=FORMATS)
def fragile(request, fragile_model, tmp_path_factory):
    """(loaded, fp32 artifact, calibration, validation, out dir, backend) of one format."""
    fmt = request.param
    if fmt not in _EXPORTS:
        loaded, calibration, evaluation = fragile_model
        backend = get_backend(fmt)
        out = tmp_path_factory.mktemp(f"{fmt}-fragile")
        artifact = backend.export(loaded.model, loaded.family, calibration.inputs, out)
        reference_logits = open_runner(artifact.path, 1).run(evaluation.inputs)
        validation = Validation(len(evaluation), _logit_error(evaluation.inputs, reference_logits), "% logit error")
        _EXPORTS[fmt] = (loaded, artifact, calibration, validation, out, backend)
    return _EXPORTS[fmt]


def _drop(fragile, path) -> float:
    validation = fragile[3]
    runner = open_runner(path, 1)
    return -validation.score(runner.run, list(range(validation.n_items)))[0]


def _attention_of(layer: int) -> re.Pattern:
    """A reverted layer of the attention of `layer`: ONNX node /electra/encoder/layer.0/
    attention/..., TFLite label FULLY_CONNECTED #33 ElectraLayer_0/ElectraAttention_attention/..."""
    return re.compile(rf"layer[._]{layer}/.*attention", re.IGNORECASE)


# Budgets in % logit error, above what each int8 costs the test starter without the outlier
# (ONNX static QDQ ~3%: its logits are small; TFLite 0.7% dynamic-range, 1.2% full int8)
# and well below what it costs with it (figures from before GAIN, on an AVX2 CPU: ONNX
# dynamic ~109%, static ~7.7%; TFLite 2.0%, 3.4%. With GAIN the plain files lose more on
# every CPU; the test asserts 1.5x the budget).
BUDGETS = {("onnx", "dynamic"): 2.0, ("onnx", "static"): 4.0, ("tflite", "dynamic"): 1.0, ("tflite", "static"): 1.8}


@pytest.mark.parametrize("base", ["dynamic", "static"])
def test_the_loop_reverts_the_fragile_layer_until_within_budget(fragile, base):
    loaded, artifact, calibration, validation, out, backend = fragile
    budget = BUDGETS[backend.name, base]
    plain = next(c for c in backend.int8_configs(loaded.family) if type(c).__name__ == f"{base.capitalize()}Int8")
    plain_int8 = backend.quantize(artifact, loaded.family, calibration, plain, out)
    plain_drop = _drop(fragile, plain_int8.path)
    assert plain_drop > 1.5 * budget, f"the outlier should break plain {base} int8 (error {plain_drop:.2f}%)"

    config = AccuracyControlledInt8(max_drop=budget, base=base)
    q = backend.quantize(artifact, loaded.family, calibration, config, out, validation=validation)
    assert q.path.name == plain_int8.path.name.replace(f"int8-{base}", f"int8-{base}-accuracy-controlled")
    assert q.precision == f"int8-{base}-accuracy-controlled" and q.config == config_record(config)
    notes = q.notes
    assert notes["initial_int8_drop"] == pytest.approx(plain_drop, abs=0.01)  # the same quantizer, nothing reverted
    assert notes["within_budget"] is True and notes["final_drop"] <= budget
    assert "accuracy control found no" not in notes.get("warning", "") and "same_as" not in notes
    reverted = notes["reverted_to_float"]
    # a fragile attention is among what went back to float, and far from all layers did
    assert any(_attention_of(layer).search(n) for n in reverted for layer in FRAGILE_LAYERS), reverted
    assert len(reverted) <= 8, reverted
    # the drop recorded is the file's own
    assert _drop(fragile, q.path) == pytest.approx(notes["final_drop"], abs=1e-3)
    assert open_runner(q.path, 1).precision.startswith("int8"), "the rest stays int8"


def test_a_met_budget_reverts_nothing(fragile):
    loaded, artifact, calibration, validation, out, backend = fragile
    q = backend.quantize(artifact, loaded.family, calibration, AccuracyControlledInt8(max_drop=1e6), out,
                         validation=validation)
    assert q.notes["reverted_to_float"] == [] and q.notes["ranking"]["layers_ranked"] == 0
    assert q.notes["final_drop"] == q.notes["initial_int8_drop"]
    assert q.notes["same_as"] == "int8-dynamic"  # so the selection does not take the copy as a second file


@pytest.mark.parametrize("fmt", FORMATS)
def test_int8_configs_offer_control_only_with_a_budget(fmt):
    from edgeify import families

    family = families.get("electra")
    backend = get_backend(fmt)
    assert not [c for c in backend.int8_configs(family) if isinstance(c, AccuracyControlledInt8)]
    controlled = [c for c in backend.int8_configs(family, max_accuracy_drop=0.5) if isinstance(c, AccuracyControlledInt8)]
    assert [(c.base, c.max_drop) for c in controlled] == [("dynamic", 0.5), ("static", 0.5)]
