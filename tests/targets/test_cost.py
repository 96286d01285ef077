"""The estimator: FLOPs and bytes read from exported graphs (checked against a hand count
from the model's config), the roofline arithmetic, and the efficiency calibration."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeify import families
from edgeify.calibration.tokenize import Batch
from edgeify.targets import roofline
from edgeify.targets.cost import Cost, decode_cost, graph_cost, kv_cache_bytes, weight_streaming_cost
from edgeify.targets.roofline import Efficiency, calibrate, rate_gops, roofline_ms, runtime_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from decoders import tiny_gpt_neo  # noqa: E402

SEQ = 16
ELECTRA = dict(vocab_size=500, embedding_size=32, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
               intermediate_size=128, max_position_embeddings=64, num_labels=2)


def encoder_flops(c: dict, s: int, last_layer_rows: int | None = None) -> int:
    """Dense FLOPs of an ELECTRA forward by hand: embedding projection, per layer Q/K/V/out
    projections (4 x 2sH^2), scores and context (2 x 2s^2H), FFN (2 x 2sHI); the classifier
    head on the first token only. With last_layer_rows, the last layer's output projection
    and FFN run on that many rows (the ONNX export computes them for the [CLS] row only)."""
    e, h, n_layers, inter = c["embedding_size"], c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"]
    per_layer = 8 * s * h * h + 4 * s * s * h + 4 * s * h * inter
    total = 2 * s * e * h + n_layers * per_layer + 2 * h * h + 2 * h * c["num_labels"]
    if last_layer_rows is not None:
        total -= (s - last_layer_rows) * (2 * h * h + 4 * h * inter)
    return total


def decoder_flops(config, s: int, past: int) -> int:
    """GPT-Neo: s new tokens after `past` cached ones; attention over past + s keys; LM head."""
    h, inter, v = config.hidden_size, config.intermediate_size, config.vocab_size
    per_layer = 8 * s * h * h + 4 * s * (past + s) * h + 4 * s * h * inter
    return config.num_layers * per_layer + 2 * s * h * v


@pytest.fixture(scope="module")
def electra_model():
    import torch

    family = families.get("electra")
    config_cls, model_cls = family.transformers_classes()
    torch.manual_seed(0)
    model = model_cls(config_cls(**ELECTRA, attn_implementation="eager")).eval()
    ids = np.random.default_rng(0).integers(5, 500, (8, SEQ)).astype(np.int64)
    sample = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    return family, model, sample


@pytest.fixture(scope="module")
def exported(electra_model, tmp_path_factory):
    """format -> {precision: path} of the tiny ELECTRA, exported once per module."""
    done: dict[str, dict[str, Path]] = {}

    def get(fmt: str) -> dict[str, Path]:
        if fmt not in done:
            from edgeify.export import get_backend, onnx, openvino, tflite

            family, model, sample = electra_model
            backend, out = get_backend(fmt), tmp_path_factory.mktemp(f"cost-{fmt}")
            fp32 = backend.export(model, family, sample, out)
            configs = {"onnx": [onnx.DynamicInt8()], "tflite": [tflite.DynamicInt8()],
                       "openvino": [openvino.Fp16Weights(), openvino.WeightsOnly("int8_asym")]}[fmt]
            arts = [fp32] + [backend.quantize(fp32, family, Batch(sample), c, out) for c in configs]
            done[fmt] = {a.precision: a.path for a in arts}
        return done[fmt]

    return get


@pytest.fixture(autouse=True)
def _no_other_pythons(monkeypatch):
    monkeypatch.delenv("EDGEIFY_TFLITE_PYTHONS", raising=False)


# --- graphs -----------------------------------------------------------------------------

def test_onnx_flops_match_hand_count(exported):
    paths = exported("onnx")
    fp32, int8 = graph_cost(paths["fp32"], 1, SEQ), graph_cost(paths["int8-dynamic"], 1, SEQ)
    assert fp32.dense_flops == encoder_flops(ELECTRA, SEQ, last_layer_rows=1)
    assert fp32.precision_class == "fp32" and fp32.flops["int8"] == 0
    # the same products, now int8 except attention's scores and context (float in QAttention)
    assert int8.dense_flops == fp32.dense_flops
    assert int8.precision_class == "int8"
    attention = ELECTRA["num_hidden_layers"] * 4 * SEQ * SEQ * ELECTRA["hidden_size"]
    assert int8.flops["fp32"] == attention
    # batch scales every product; a longer sequence grows attention quadratically
    assert graph_cost(paths["fp32"], 2, SEQ).dense_flops == pytest.approx(2 * fp32.dense_flops, rel=0.01)
    assert graph_cost(paths["fp32"], 1, 32).dense_flops == encoder_flops(ELECTRA, 32, last_layer_rows=1)


def test_onnx_int8_weights_about_4x_smaller(exported):
    paths = exported("onnx")
    fp32, int8 = graph_cost(paths["fp32"], 1, SEQ), graph_cost(paths["int8-dynamic"], 1, SEQ)
    assert fp32.matmul_params == int8.matmul_params
    float_matmul = fp32.weight_bytes_by_dtype["float"]
    assert float_matmul == 4 * fp32.matmul_params
    assert 3.3 < float_matmul / int8.weight_bytes_by_dtype["int8"] <= 4.0


def test_openvino_flops_match_hand_count(exported):
    paths = exported("openvino")
    fp32, fp16 = graph_cost(paths["fp32"], 1, SEQ), graph_cost(paths["fp16"], 1, SEQ)
    assert fp32.dense_flops == encoder_flops(ELECTRA, SEQ)
    assert fp32.precision_class == "fp32"
    # fp16 IR: the same products, in the CPU's half type; weights half the bytes
    assert fp16.flops["fp16"] == fp32.dense_flops and fp16.precision_class == "fp16"
    assert fp32.weight_bytes_by_dtype["f32"] == 2 * fp16.weight_bytes_by_dtype["f16"]
    assert fp32.weight_bytes_by_dtype["f32"] == 4 * fp32.matmul_params
    # NNCF weight compression: u8 weights (plus scales and zero points), run in int8 by the
    # CPU plugin's dynamic quantization: a weight-only class
    wo = graph_cost(paths["int8-weights"], 1, SEQ)
    assert wo.flops["int8"] == fp32.dense_flops - wo.flops["fp32"] and wo.precision_class == "int8-weights"
    assert 3.3 < fp32.weight_bytes_by_dtype["f32"] / wo.weight_bytes_by_dtype["u8"] <= 4.0


def test_tflite_flops_and_int8_weights(exported):
    paths = exported("tflite")
    fp32 = graph_cost(paths["fp32"], 1, SEQ)
    int8 = graph_cost(paths["int8-dynamic"], 1, SEQ)
    hand = encoder_flops(ELECTRA, SEQ)
    # litert-torch runs the embedding projection twice (two FULLY_CONNECTED on the same
    # weights); the cost is of the file as it runs, so it is that much above the hand count
    assert fp32.dense_flops == hand + 2 * SEQ * ELECTRA["embedding_size"] * ELECTRA["hidden_size"]
    # dynamic range: the fully connected layers multiply in int8, the attention BATCH_MATMULs stay float
    assert int8.dense_flops == fp32.dense_flops and int8.precision_class == "int8"
    assert int8.flops["fp32"] == ELECTRA["num_hidden_layers"] * 4 * SEQ * SEQ * ELECTRA["hidden_size"]
    assert fp32.weight_bytes_by_dtype["float32"] == 4 * int8.weight_bytes_by_dtype["int8"]
    with pytest.raises(ValueError, match="seq 32"):
        graph_cost(paths["fp32"], 1, 32)  # a TFLite file has one static length


def test_onnx_decoder_prefill_and_decode(tmp_path):
    from edgeify.export import get_backend
    from edgeify.export.onnx_decoder import WeightOnly

    model = tiny_gpt_neo()
    backend, family = get_backend("onnx"), families.get("gpt-neo")
    fp32 = backend.export_decoder(model, family, tmp_path, max_length=64)
    int4 = backend.quantize(fp32, family, None, WeightOnly(bits=4), tmp_path)
    c = model.config
    assert graph_cost(fp32.path, 1, SEQ).dense_flops == decoder_flops(c, SEQ, 0)
    step = decode_cost(fp32.path, 20)
    assert step.dense_flops == decoder_flops(c, 1, 20)
    # one token reads every matmul weight once, and the whole cache
    assert step.weight_bytes_by_dtype["float"] == 4 * step.matmul_params
    cache = kv_cache_bytes(c.num_layers, c.num_heads, c.hidden_size // c.num_heads, 20)
    assert step.activation_bytes >= cache
    assert decode_cost(fp32.path, 40).activation_bytes - step.activation_bytes >= cache  # grows with the context
    q = decode_cost(int4.path, 20)
    assert q.matmul_params == step.matmul_params
    assert q.weight_bytes_by_dtype["int4"] < step.weight_bytes_by_dtype["float"] / 5  # 4 bits + a scale per 32
    # weight-only (MatMulNBits): float work on int4 weights, a precision class of its own
    prefill = graph_cost(int4.path, 1, SEQ)
    assert prefill.flops["int8"] == 0 and prefill.weight_only_flops > prefill.dense_flops / 2
    assert prefill.precision_class == "fp32-weights"


def test_openvino_stateful_decoder(tmp_path):
    """The cache variables get the asked length: an empty cache for a window, 20 tokens for a step."""
    from edgeify.export import get_backend

    model = tiny_gpt_neo()
    fp32 = get_backend("openvino").export_decoder(model, families.get("gpt-neo"), tmp_path, max_length=64)
    assert graph_cost(fp32.path, 1, SEQ).dense_flops == decoder_flops(model.config, SEQ, 0)
    assert decode_cost(fp32.path, 20).dense_flops == decoder_flops(model.config, 1, 20)


def test_tflite_decoder_signatures(tmp_path):
    """Prefill chunks and the decode step attend over every slot of the fixed cache."""
    from edgeify.export import get_backend

    model, slots = tiny_gpt_neo(), 64
    c = model.config
    path = get_backend("tflite").export_decoder(model, families.get("gpt-neo"), tmp_path, max_length=slots,
                                                prefill_len=SEQ).path

    def over_cache(s: int) -> int:  # as decoder_flops, with attention over all the slots
        return decoder_flops(c, s, 0) - c.num_layers * 4 * s * s * c.hidden_size + c.num_layers * 4 * s * slots * c.hidden_size

    assert graph_cost(path, 1, SEQ).dense_flops == over_cache(SEQ)
    assert graph_cost(path, 1, 2 * SEQ + 1).dense_flops == 3 * over_cache(SEQ)  # three prefill chunks
    step = decode_cost(path, 20)
    assert step.dense_flops == over_cache(1) and "every slot" in step.notes[-1]
    with pytest.raises(ValueError, match="batch 1, not 2"):
        graph_cost(path, 2, SEQ)

def test_plain_onnx_graph_any_shape_but_no_decode(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence", 4])], [w])
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert graph_cost(path, 3, 5).dense_flops == 2 * 3 * 5 * 4 * 4
    with pytest.raises(ValueError, match="not a cached decoder"):
        decode_cost(path, 1)


def test_bad_inputs_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.onnx"):
        graph_cost(tmp_path / "nothere.onnx", 1, 8)
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="'.bin'"):
        graph_cost(tmp_path / "weights.bin", 1, 8)
    with pytest.raises(ValueError, match="-1"):
        graph_cost(tmp_path / "weights.bin", 1, -1)


# --- roofline and calibration -------------------------------------------------------------

class FakeMachine:
    def __init__(self, peak_gops, bandwidth_gbs=10.0, cores=4):
        self.peak_gops, self.bandwidth_gbs, self.cores = peak_gops, bandwidth_gbs, cores


def _cost(fp32=0.0, int8=0.0, fp16=0.0, other=0.0, weights=0, acts=0) -> Cost:
    return Cost({"fp32": fp32, "fp16": fp16, "int8": int8}, other, weights, acts)


def test_roofline_arithmetic():
    m = FakeMachine({"fp32": 100.0, "int8": 400.0}, bandwidth_gbs=10.0, cores=4)
    cost = _cost(fp32=1e9, int8=4e9, weights=50_000_000, acts=50_000_000)
    # compute: 1e9 / 100e9 + 4e9 / 400e9 = 20 ms; memory: 1e8 B / 10e9 B/s = 10 ms
    assert roofline_ms(cost, m, threads=4, mode="max") == pytest.approx(20.0)
    assert roofline_ms(cost, m, threads=4, mode="sum") == pytest.approx(30.0)
    # half the cores, half the compute rate; memory unchanged
    assert roofline_ms(cost, m, threads=2, mode="max") == pytest.approx(40.0)
    assert roofline_ms(cost, m, threads=16, mode="max") == pytest.approx(20.0)  # no more than all cores
    # no native fp16: fp16 work runs at the fp32 rate
    assert rate_gops(m, "fp16", 4) == 100.0
    assert rate_gops(FakeMachine({"fp32": 100.0, "fp16": 0}), "fp16", 4) == 100.0
    assert rate_gops(FakeMachine({"fp32": 100.0, "fp16": 300.0}), "fp16", 4) == 300.0
    # elementwise work: the machine's own rate, else a share of its fp32 peak
    assert roofline_ms(_cost(other=1e9), m, 4, "max") == pytest.approx(1e3 / (100 * roofline.ELEMENTWISE_SHARE))
    own = FakeMachine({"fp32": 100.0, "elementwise": 20.0}, cores=4)
    assert roofline_ms(_cost(other=1e9), own, 4, "max") == pytest.approx(50.0)
    assert roofline_ms(_cost(other=1e9), own, 2, "max") == pytest.approx(100.0)
    with pytest.raises(ValueError, match="'median'"):
        roofline_ms(cost, m, 4, mode="median")
    with pytest.raises(ValueError, match="'int3'"):
        rate_gops(m, "int3", 4)


def test_calibrate_recovers_known_efficiency():
    m = FakeMachine({"fp32": 100.0, "int8": 400.0})
    costs = [_cost(fp32=f, weights=w) for f, w in ((1e9, 10**7), (5e9, 4 * 10**7), (2e10, 10**8))]
    int8_costs = [_cost(int8=f, fp32=f / 20) for f in (4e9, 3e10)]
    truth = {("onnxruntime", "fp32"): 0.37, ("onnxruntime", "int8"): 0.21}
    samples = [(c, "onnxruntime", "fp32", roofline_ms(c, m, 4) / 0.37) for c in costs]
    samples += [(c, "onnxruntime", "int8", roofline_ms(c, m, 4) / 0.21) for c in int8_costs]
    eff = calibrate(samples, m, threads=4)
    for key, value in truth.items():
        assert eff.factors[key] == pytest.approx(value)
    assert eff.counts[("onnxruntime", "fp32")] == 3
    new = _cost(fp32=7e9, weights=3 * 10**7)
    est = eff.predict(new, "onnxruntime", m, 4)
    assert est.ms == pytest.approx(roofline_ms(new, m, 4) / 0.37)
    assert est.measured is False and "estimated" in est.label and est.as_dict()["measured"] is False
    # a weight-only class without a fit of its own borrows its compute precision's, an
    # unfitted precision the runtime's pooled factor; the basis says so; an unknown runtime fails
    factor, basis = eff.factor("onnxruntime", "int8-weights")
    assert factor == pytest.approx(0.21) and "standing in for int8-weights" in basis
    factor, basis = eff.factor("onnxruntime", "fp16")
    assert 0.21 < factor < 0.37 and "pooled" in basis
    with pytest.raises(KeyError, match="tflite"):
        eff.factor("tflite", "fp32")
    # noisy measurements: the geometric mean sits between them
    noisy = calibrate([(costs[0], "openvino", "fp32", roofline_ms(costs[0], m, 4) / 0.5),
                       (costs[1], "openvino", "fp32", roofline_ms(costs[1], m, 4) / 0.2)], m, 4)
    assert noisy.factors[("openvino", "fp32")] == pytest.approx(math.sqrt(0.1))
    with pytest.raises(ValueError, match="-3"):
        calibrate([(costs[0], "onnxruntime", "fp32", -3.0)], m)
    assert isinstance(eff, Efficiency)


def test_decode_formula_and_runtime_names():
    cost = _cost(fp32=3e9, weights=400)
    cost = Cost(cost.flops, 0.0, 400, 0, {"float": 400}, matmul_params=100)
    step = weight_streaming_cost(cost, kv_cache_bytes(2, 4, 16, 10))
    assert step.dense_flops == 200 and step.weight_bytes == 400
    assert step.activation_bytes == 2 * 2 * 4 * 16 * 10 * 4
    assert runtime_of("a/model.int8.xml") == "openvino" and runtime_of("m.onnx") == "onnxruntime"
    with pytest.raises(ValueError, match="'.pt'"):
        runtime_of("model.pt")


def test_host_machine_measured_once_and_cached(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setenv("EDGEIFY_CACHE", str(tmp_path))
    monkeypatch.setattr(roofline, "_rates", lambda t: calls.append(t) or {"fp32": 50.0, "int8": 150.0, "elementwise": 6.0})
    monkeypatch.setattr(roofline, "_bandwidth_gbs", lambda: 12.5)
    first = roofline.host_machine(threads=2)
    assert first.peak_gops == {"fp32": 50.0, "int8": 150.0, "elementwise": 6.0}
    assert first.bandwidth_gbs == 12.5 and first.cores == 2
    assert "MatMulInteger" in first.how and "numpy copy" in first.how
    assert roofline.host_machine(threads=2) == first and calls == [2]  # from the cache
    roofline.host_machine(threads=1)
    assert calls == [2, 1]  # another thread count is measured anew
    assert os.listdir(tmp_path) == [roofline.HOST_FILE]
