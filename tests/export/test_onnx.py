"""ONNX export (dynamic axes, fusion, initializer dedupe) and int8 quantization."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import pytest

from edgeify import families
from edgeify.calibration import synthetic
from edgeify.calibration.tokenize import Batch, encode_classification, encode_language_model
from edgeify.export import config_record, get_backend
from edgeify.export.onnx import DynamicInt8, OnnxBackend, StaticInt8, dedupe_initializers
from edgeify.tasks import CAUSAL_LM
from edgeify.runtimes import open_runner

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
FAMILIES = families.names()  # every registered family
EVAL_SEED = 1234  # edgeify's own evaluation text for starters: never trained on


@functools.lru_cache(maxsize=None)
def _real_texts(task: str) -> tuple[str, ...]:
    if task == CAUSAL_LM:
        p = SHARED_DATA / "wikitext2" / "wiki.test.raw"
        if p.exists():
            return tuple(ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip())[:60]
        return tuple(synthetic.paragraphs(40, seed=99))
    p = SHARED_DATA / "twitter_sentiment" / "tweets.csv"
    if p.exists():
        from edgeify.calibration.readers import read_examples

        texts = [e.text for e in read_examples(p, needs_labels=True)[:200]]
    else:
        texts = [t for t, _ in synthetic.labelled_reviews(200, seed=99)]
    shortest = min(texts, key=len)  # first, so every batch has padding at seq_len 40
    return (shortest, *[t for t in texts if t != shortest][:63])


def real_texts(task: str) -> list[str]:
    """Real text from ../shared/data (tweets / WikiText-2); edgeify's synthetic text without it."""
    return list(_real_texts(task))


def encode(family, tokenizer, texts, batch: int, seq_len: int) -> dict[str, np.ndarray]:
    if family.task == CAUSAL_LM:
        b = encode_language_model(tokenizer, texts, seq_len, family.onnx_inputs)
        assert len(b) >= batch
        return b.rows(0, batch)
    return encode_classification(tokenizer, texts[:batch], None, seq_len, family.onnx_inputs).inputs


def torch_logits(model, feeds) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()


class Exported:
    def __init__(self, loaded, artifact, out_dir):
        self.loaded, self.artifact, self.out_dir = loaded, artifact, out_dir
        self.family, self.model, self.tokenizer = loaded.family, loaded.model, loaded.tokenizer


def starter_exports(starter_dir, tmp_path_factory, label: str, export, seq_len: int = 16):
    """family name -> Exported: its starter exported once with export(model, family, sample,
    out_dir), the sample being 4 real texts at seq_len tokens. Shared by the format tests."""
    from edgeify.families.loader import load_local

    done: dict[str, Exported] = {}

    def get(name: str) -> Exported:
        if name not in done:
            loaded = load_local(starter_dir(name))
            out = tmp_path_factory.mktemp(f"{label}-{name}")
            sample = encode(loaded.family, loaded.tokenizer, real_texts(loaded.family.task), 4, seq_len)
            done[name] = Exported(loaded, export(loaded.model, loaded.family, sample, out), out)
        return done[name]

    return get


@pytest.fixture(scope="module", params=FAMILIES)
def exported(request, starter_dir, tmp_path_factory):
    return starter_exports(starter_dir, tmp_path_factory, "onnx", OnnxBackend().export)(request.param)


def test_backend_registry():
    assert isinstance(get_backend("onnx"), OnnxBackend)
    assert get_backend("onnx").int8_configs(families.get("electra")) == [DynamicInt8(), StaticInt8()]


def test_export_files_and_notes(exported):
    art = exported.artifact
    assert art.format == "onnx" and art.precision == "fp32"
    assert art.path == exported.out_dir / "model.fp32.onnx" and art.path.is_file()
    assert art.internal["plain"] == exported.out_dir / ".model.plain.onnx"
    assert art.internal["plain"].is_file()
    assert not (exported.out_dir / ".model.raw.onnx").exists()
    assert not list(exported.out_dir.glob("*.tmp"))
    assert art.notes["opset"] == 17 and "fusion_error" not in art.notes
    assert art.size_bytes == art.path.stat().st_size


@pytest.mark.parametrize("batch, seq_len", [(2, 12), (5, 40)])
def test_parity_with_pytorch_dynamic_axes(exported, batch, seq_len):
    feeds = encode(exported.family, exported.tokenizer, real_texts(exported.family.task), batch, seq_len)
    if exported.family.task != CAUSAL_LM and seq_len == 40:
        assert (feeds["attention_mask"] == 0).any()  # padding is exercised
    ref = torch_logits(exported.model, feeds)
    got = open_runner(exported.artifact.path, threads=2).run(feeds)
    assert got.shape == ref.shape
    assert got.shape[:2] == ((batch, seq_len) if exported.family.task == CAUSAL_LM else (batch, 2))
    assert float(np.abs(got - ref).max()) < 1e-4
    plain = open_runner(exported.artifact.internal["plain"], threads=2).run(feeds)
    assert float(np.abs(plain - ref).max()) < 1e-4


def test_checker_passes_on_plain_export(exported):
    import onnx

    onnx.checker.check_model(str(exported.artifact.internal["plain"]), full_check=True)
    model = onnx.load(str(exported.artifact.internal["plain"]))
    assert [i.name for i in model.graph.input] == list(exported.family.onnx_inputs)
    assert [o.name for o in model.graph.output] == ["logits"]
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "sequence"]


def test_fused_ops_recorded(exported):
    import onnx

    fused = exported.artifact.notes["fused_ops"]
    lowered = exported.artifact.notes["lowered_ops"]
    ops = [n.op_type for n in onnx.load(str(exported.artifact.path)).graph.node]
    for op, count in fused.items():
        made = lowered.get("BiasGelu", 0) if op == "Gelu" else 0  # BiasGelu -> Add + Gelu
        assert ops.count(op) == count - lowered.get(op, 0) + made, op
    assert fused.get("SkipLayerNormalization", 0) > 0
    # onnxruntime's scalar norm kernels are replaced by its vectorised InstanceNormalization
    assert lowered.get("SkipLayerNormalization", 0) == fused["SkipLayerNormalization"]
    assert ops.count("InstanceNormalization") >= fused["SkipLayerNormalization"]
    if exported.family.name == "electra":
        layers = exported.model.config.num_hidden_layers
        assert fused.get("Attention", 0) == layers > 0
        assert fused.get("EmbedLayerNormalization", 0) == 1


def _unique_initializers(model) -> bool:
    from onnx import numpy_helper

    seen = set()
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.size <= 1:
            continue
        key = (init.data_type, tuple(init.dims), hashlib.sha1(arr.tobytes()).hexdigest())
        if key in seen:
            return False
        seen.add(key)
    return True


def test_albert_shared_block_stored_once(tmp_path):
    import onnx
    import torch
    from transformers import AlbertConfig, AlbertForSequenceClassification

    torch.manual_seed(0)
    cfg = AlbertConfig(vocab_size=1000, embedding_size=64, hidden_size=128, num_hidden_layers=6,
                       num_attention_heads=4, intermediate_size=256, max_position_embeddings=128,
                       num_labels=3, attn_implementation="eager")
    model = AlbertForSequenceClassification(cfg).eval()
    params = sum(p.numel() for p in model.parameters())
    family = families.get("albert")
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 1000, size=(3, 24)).astype(np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    feeds["attention_mask"][0, 18:] = 0

    art = OnnxBackend().export(model, family, feeds, tmp_path)
    assert art.notes["deduplicated_initializers"] > 0
    assert art.size_bytes < 1.5 * params * 4, (art.size_bytes, params * 4)
    assert art.internal["plain"].stat().st_size < 1.5 * params * 4
    assert _unique_initializers(onnx.load(str(art.path)))
    assert _unique_initializers(onnx.load(str(art.internal["plain"])))
    got = open_runner(art.path, 1).run(feeds)
    assert float(np.abs(got - torch_logits(model, feeds)).max()) < 1e-4


# --- dedupe_initializers on a hand-made graph -------------------------------------------

def test_dedupe_initializers_merges_copies_and_keeps_results():
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    inits = [numpy_helper.from_array(w, "w_a"), numpy_helper.from_array(w.copy(), "w_b"),
             numpy_helper.from_array(w + 1, "w_other"),
             numpy_helper.from_array(np.array([2.0], np.float32), "s1"),
             numpy_helper.from_array(np.array([2.0], np.float32), "s2"),
             numpy_helper.from_array(w.astype(np.float64), "w_f64")]
    then_g = helper.make_graph([helper.make_node("Add", ["ya", "w_b"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2, 3])])
    else_g = helper.make_graph([helper.make_node("Sub", ["ya", "w_b"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, [2, 3])])
    nodes = [
        helper.make_node("Add", ["x", "w_a"], ["ya"]),
        helper.make_node("Add", ["ya", "w_b"], ["yb"]),
        helper.make_node("Add", ["yb", "w_other"], ["yc"]),
        helper.make_node("Mul", ["yc", "s1"], ["yd"]),
        helper.make_node("Mul", ["yd", "s2"], ["ye"]),
        helper.make_node("Cast", ["w_f64"], ["wf"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["ye", "wf"], ["y"]),
        helper.make_node("If", ["cond"], ["z"], then_branch=then_g, else_branch=else_g),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)

    def run(m, cond):
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, {"x": np.ones((2, 3), np.float32), "cond": np.array(cond)})

    before = [run(model, True), run(model, False)]
    assert dedupe_initializers(model) == 1  # w_b -> w_a; scalars and other dtypes stay
    assert [i.name for i in model.graph.initializer] == ["w_a", "w_other", "s1", "s2", "w_f64"]
    used = {i for n in model.graph.node for i in n.input}
    assert "w_b" not in used
    for branch in ("then_branch", "else_branch"):
        sub = next(a.g for a in model.graph.node[-1].attribute if a.name == branch)
        assert list(sub.node[0].input) == ["ya", "w_a"]
    onnx.checker.check_model(model)
    after = [run(model, True), run(model, False)]
    for b, a in zip(before, after):
        for x, y in zip(b, a):
            np.testing.assert_array_equal(x, y)
    assert dedupe_initializers(model) == 0


# --- int8 ------------------------------------------------------------------------------

def starter_eval_and_calibration(exported) -> tuple[Batch, Batch]:
    """The starter's evaluation text (edgeify's synthetic set) and a separate calibration set."""
    fam, tok = exported.family, exported.tokenizer
    if fam.task == CAUSAL_LM:
        windows = encode_language_model(tok, synthetic.paragraphs(60, seed=EVAL_SEED), 32, fam.onnx_inputs)
        assert len(windows) >= 48
        return (Batch(windows.rows(0, 32)), Batch(windows.rows(32, 48)))
    data = synthetic.labelled_reviews(232, seed=EVAL_SEED)
    texts = [t for t, _ in data]
    ev = encode_classification(tok, texts[:200], None, 32, fam.onnx_inputs)
    cal = encode_classification(tok, texts[200:], None, 32, fam.onnx_inputs)
    return ev, cal


@pytest.mark.parametrize("config, precision, file", [
    (DynamicInt8(), "int8 (dynamic)", "model.int8-dynamic.onnx"),
    (StaticInt8(), "int8 (static QDQ)", "model.int8-static.onnx"),
])
def test_int8_quantize(exported, config, precision, file):
    evaluation, calibration = starter_eval_and_calibration(exported)
    fp32 = exported.artifact
    q = OnnxBackend().quantize(fp32, exported.family, calibration, config, exported.out_dir)
    assert q.path == exported.out_dir / file and q.path.is_file()
    assert q.precision == ("int8-dynamic" if isinstance(config, DynamicInt8) else "int8-static")
    assert q.config == config_record(config) and q.config["type"] == type(config).__name__
    assert q.size_bytes < fp32.size_bytes
    assert q.size_bytes < 0.75 * fp32.size_bytes  # the MatMul weights really went to int8

    runner, ref_runner = open_runner(q.path, threads=2), open_runner(fp32.path, threads=2)
    assert runner.precision == precision and ref_runner.precision == "fp32"
    got, ref = [], []
    for start in range(0, len(evaluation), 16):
        feeds = evaluation.rows(start, start + 16)
        got.append(runner.run(feeds).argmax(-1))
        ref.append(ref_runner.run(feeds).argmax(-1))
    agreement = float((np.concatenate(got) == np.concatenate(ref)).mean())
    assert agreement >= 0.90, agreement


def test_static_int8_stores_weights_quantized_not_requantized_per_run(exported):
    """ALBERT's shared weights reach each re-use through Identity nodes in the plain
    export; static QDQ once quantized those outputs at every inference (2x slower than
    fp32). Weights must be constants of the int8 file, not QuantizeLinear inputs."""
    import onnx

    evaluation, calibration = starter_eval_and_calibration(exported)
    q = OnnxBackend().quantize(exported.artifact, exported.family, calibration, StaticInt8(), exported.out_dir)
    graph = onnx.load(str(q.path)).graph
    inits = {i.name for i in graph.initializer}
    # values computed from constants alone (weights, and what Identity / DequantizeLinear
    # / Transpose make of them): none may be quantized again at run time
    constant = set(inits)
    for node in graph.node:  # the graph is topologically sorted
        if node.input and all(i in constant or i == "" for i in node.input):
            constant.update(node.output)
    requantized = [n.name for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] in constant]
    assert requantized == []
    assert any(n.op_type == "DequantizeLinear" and n.input[0] in inits for n in graph.node)  # int8 weights
    if exported.family.name == "albert":
        assert exported.artifact.notes["weight_identities_bypassed"] > 0


def test_quantize_unknown_config(exported):
    from dataclasses import dataclass

    from edgeify.errors import EdgeifyError

    @dataclass(frozen=True)
    class Int4:
        bits: int = 4

    with pytest.raises(EdgeifyError, match="no ONNX quantizer for Int4; have: DynamicInt8, StaticInt8"):
        OnnxBackend().quantize(exported.artifact, exported.family, None, Int4(), exported.out_dir)


def test_fusion_failure_keeps_the_plain_export(starter_dir, tmp_path, monkeypatch):
    """Fusion is an optimisation: when it fails, the deduplicated plain graph is the fp32 artifact."""
    from edgeify.export import onnx as onnx_backend
    from edgeify.families import loader

    def broken_fuse(*args, **kwargs):
        raise RuntimeError("fusion exploded")

    monkeypatch.setattr(onnx_backend, "fuse", broken_fuse)
    loaded = loader.load_local(starter_dir("electra"))
    feeds = encode(loaded.family, loaded.tokenizer, real_texts(loaded.family.task), 2, 24)
    art = get_backend("onnx").export(loaded.model, loaded.family, feeds, tmp_path)
    assert "fusion exploded" in art.notes["fusion_error"] and art.notes["fused_ops"] == {}
    assert art.path.read_bytes() == art.internal["plain"].read_bytes()
    assert not (tmp_path / ".model.raw.onnx").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    got = open_runner(art.path, 1).run(feeds)
    np.testing.assert_allclose(got, torch_logits(loaded.model, feeds), atol=1e-4)


@pytest.mark.parametrize("name", [n for n in families.names() if families.get(n).task.labelled])
def test_pruned_model_with_uneven_heads_fuses_and_loads(name, starter_dir, tmp_path):
    """Layers keeping different head counts (compress/prune): the fused Attention of each
    layer gets its own count. Before pin_head_counts the fusion used the config's count for
    every layer and onnxruntime refused the file ("hidden_size should be divisible by
    num_heads"), seen on the real pruned ELECTRA."""
    import copy

    import torch

    from edgeify.families import loader
    from edgeify.families.anatomy import blocks, keep_heads, record_shape

    loaded = loader.load_local(starter_dir(name))
    family, model = loaded.family, copy.deepcopy(loaded.model)
    for n, block in enumerate(blocks(model, family.anatomy)):
        keep_heads(block, model.config, family.anatomy, [0, 2, 3] if n % 2 == 0 else [1])
    if name == "albert":  # one shared block: make the uneven count differ from the config
        keep_heads(blocks(model, family.anatomy)[0], model.config, family.anatomy, [0, 1, 2])
    record_shape(model, family.anatomy)
    texts = [t for t, _ in synthetic.labelled_reviews(8, seed=3)]
    feeds = encode_classification(loaded.tokenizer, texts, None, 32, family.onnx_inputs).inputs
    art = OnnxBackend().export(model, family, feeds, tmp_path)
    assert art.notes["fused_ops"].get("Attention", 0) >= 1, art.notes["fused_ops"]
    assert art.notes["pinned_head_counts"] >= 1
    with torch.no_grad():
        want = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()
    np.testing.assert_allclose(open_runner(art.path, 1).run(feeds), want, atol=2e-4, rtol=1e-3)
