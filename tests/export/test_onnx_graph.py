"""Graph passes on the fused ONNX graph (onnx_graph.py, onnx_norms.py): each keeps the
logits and does what it says."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from edgeify.export import onnx_graph, onnx_norms
from edgeify import families
from edgeify.tasks import CAUSAL_LM

FAMILIES = families.names()  # every registered family


@pytest.fixture(scope="module", params=FAMILIES)
def fused(request, starter_dir, tmp_path_factory):
    """(fused onnx model before edgeify's passes, family, feeds with padding) for a starter."""
    from onnxruntime.transformers.optimizer import optimize_model

    from edgeify.export.onnx import export_fp32_raw
    from edgeify.families.loader import load_local

    loaded = load_local(starter_dir(request.param))
    family, config = loaded.family, loaded.model.config
    rng = np.random.default_rng(0)
    ids = rng.integers(5, config.vocab_size, (3, 17)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[-1, 9:] = 0  # one padded row
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    feeds = {n: feeds[n] for n in family.onnx_inputs}
    raw = tmp_path_factory.mktemp("graph") / "raw.onnx"
    export_fp32_raw(loaded.model, family, feeds, raw)
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "num_heads")
    opt = optimize_model(str(raw), model_type=family.ort_model_type, num_heads=heads,
                         hidden_size=config.hidden_size, opt_level=0)
    return opt.model, family, feeds


def run(model, feeds) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def ops(model) -> list[str]:
    return [n.op_type for n in model.graph.node]


def test_each_pass_keeps_the_logits(fused):
    model, family, feeds = fused
    model = copy.deepcopy(model)
    before = run(model, feeds)
    narrowed = onnx_graph.gather_rows_early(model)
    after_gather = run(model, feeds)
    np.testing.assert_array_equal(after_gather, before)  # the same ops on fewer rows
    folded = onnx_norms.fold_norm_shifts(model)
    after_fold = run(model, feeds)
    np.testing.assert_allclose(after_fold, before, rtol=1e-4, atol=1e-4)
    lowered = onnx_norms.lower_norms(model)
    np.testing.assert_allclose(run(model, feeds), before, rtol=1e-4, atol=1e-4)

    assert "SkipLayerNormalization" not in ops(model) and "BiasGelu" not in ops(model)
    assert lowered.get("SkipLayerNormalization", 0) > 0
    if family.task == CAUSAL_LM:
        assert narrowed == 0  # logits for every position: nothing to narrow
    else:
        # the last layer's output projection, norms and feed-forward, on the [CLS] row only
        assert narrowed >= 5
        layers = ops(model).count("Attention")
        assert folded >= 2 * layers - 2, folded


def test_gather_rows_early_computes_one_row():
    """The narrowed graph's matmul sees one row, where the original sees every position."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "w")
    zero = numpy_helper.from_array(np.array(0, np.int64), "zero")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])
    nodes = [helper.make_node("Attention", ["x", "qkv_w", "qkv_b"], ["a"], domain="com.microsoft", num_heads=2),
             helper.make_node("MatMul", ["a", "w"], ["m"]),
             helper.make_node("Gelu", ["m"], ["g"], domain="com.microsoft"),
             helper.make_node("Add", ["g", "x"], ["r"]),
             helper.make_node("Gather", ["r", "zero"], ["y"], axis=1)]
    qkv_w = numpy_helper.from_array(rng.standard_normal((8, 24)).astype(np.float32), "qkv_w")
    qkv_b = numpy_helper.from_array(np.zeros(24, np.float32), "qkv_b")
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w, zero, qkv_w, qkv_b]),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    feeds = {"x": rng.standard_normal((2, 5, 8)).astype(np.float32)}
    before = run(model, feeds)
    assert onnx_graph.gather_rows_early(model) == 3  # MatMul, Gelu, Add
    onnx.checker.check_model(model)
    np.testing.assert_allclose(run(model, feeds), before, rtol=1e-6)
    matmul = next(n for n in model.graph.node if n.op_type == "MatMul")
    gather = next(n for n in model.graph.node if n.output[0] == matmul.input[0])
    assert gather.op_type == "Gather" and gather.input[0] == "a"
    # the residual input x is read by the attention too: it is gathered, not narrowed
    add = next(n for n in model.graph.node if n.op_type == "Add")
    assert next(n for n in model.graph.node if n.output[0] == add.input[1]).input[0] == "x"


def test_gather_rows_early_leaves_shared_or_unknown_tensors():
    """A gathered tensor that is also read elsewhere, or of unknown rank, is left alone."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    zero = numpy_helper.from_array(np.array(0, np.int64), "zero")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 4])
    x2 = helper.make_tensor_value_info("x2", TensorProto.FLOAT, ["rows", 4])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "m", "y2")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]),
             helper.make_node("Gather", ["m", "zero"], ["y"], axis=1),   # m is also an output
             helper.make_node("MatMul", ["x2", "w"], ["m2"]),
             helper.make_node("Gather", ["m2", "zero"], ["y2"], axis=1)]  # 2-D: axis 1 is hidden
    model = helper.make_model(helper.make_graph(nodes, "g", [x, x2], outs, [w, zero]),
                              opset_imports=[helper.make_opsetid("", 17)])
    assert onnx_graph.gather_rows_early(model) == 0
    assert ops(model) == ["MatMul", "Gather", "MatMul", "Gather"]


def test_fold_keeps_the_shift_of_a_norm_read_by_a_graph_output():
    from onnx import TensorProto, helper, numpy_helper

    gamma = numpy_helper.from_array(np.full(4, 2.0, np.float32), "gamma")
    beta = numpy_helper.from_array(np.full(4, 0.5, np.float32), "beta")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["y"], axis=-1)
    model = helper.make_model(helper.make_graph([node], "g", [x], [y], [gamma, beta]),
                              opset_imports=[helper.make_opsetid("", 17)])
    assert onnx_norms.fold_norm_shifts(model) == 0
    assert list(model.graph.node[0].input) == ["x", "gamma", "beta"]
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)}
    before = run(model, feeds)
    assert onnx_norms.lower_norms(model) == {"LayerNormalization": 1}
    assert "LayerNormalization" not in ops(model) and "InstanceNormalization" in ops(model)
    np.testing.assert_allclose(run(model, feeds), before, rtol=1e-5, atol=1e-5)


def test_lowered_norm_loads_with_every_tensor_external(tmp_path):
    """A lowered graph saved with all tensors as external data still loads: onnxruntime
    cannot read a Reshape's shape constant from external data, so none is stored (this
    failed before: "Cannot parse data from external")."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.full(4, 2.0, np.float32), "gamma"),
             numpy_helper.from_array(np.full(4, 0.5, np.float32), "beta")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("SkipLayerNormalization", ["x", "x", "gamma", "beta"], ["y"],
                              domain="com.microsoft", epsilon=1e-12)]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)}
    before = run(model, feeds)
    assert onnx_norms.lower_norms(model) == {"SkipLayerNormalization": 1}
    path = tmp_path / "lowered.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="lowered.onnx.data", size_threshold=0)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, feeds)[0], before, rtol=1e-5, atol=1e-5)
