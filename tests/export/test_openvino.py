"""OpenVINO IR: export from PyTorch (dynamic shapes, .bin checksum in the .xml), fp16
weights, NNCF int8 (plain and accuracy-controlled) and weight-only int8/int4."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

pytest.importorskip("openvino")
pytest.importorskip("nncf")

from test_onnx import EVAL_SEED, encode, real_texts, starter_exports, torch_logits  # same folder

from edgeify import families
from edgeify.calibration import synthetic
from edgeify.calibration.tokenize import Batch, encode_classification
from edgeify.errors import EdgeifyError
from edgeify.evaluate import evaluate, scorer
from edgeify.export import Validation, config_record, get_backend
from edgeify.contract import sha256_of
from edgeify.export.openvino import (
    RT_BIN_SHA256, RT_PRECISION, RT_SHAPES, AccuracyControlledInt8, AsRunByDefault, Fp16Weights, Int8,
    OpenVinoBackend, WeightsOnly, quantized_matmuls)
from edgeify.tasks import CAUSAL_LM
from edgeify.runtimes import open_runner
from edgeify.runtimes.openvino_runner import SHAPES_ENV, OpenVinoRunner, default_precision

# oneDNN capped below bf16 (AVX-512 with VNNI, no BF16): how a CPU without bf16 is imitated here
NO_BF16 = {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"}

FAMILIES = families.names()  # every registered family


@pytest.fixture(autouse=True)
def _default_shapes(monkeypatch):
    """Runners here use the default (dynamic) shapes, whatever the caller's environment says."""
    monkeypatch.delenv(SHAPES_ENV, raising=False)


def _read(path):
    import openvino as ov

    return ov.Core().read_model(str(path))


def _bin(art):
    return art.path.with_suffix(".bin")


@pytest.fixture(scope="module")
def ov_export(starter_dir, tmp_path_factory):
    """family name -> its starter exported to OpenVINO IR, once per module."""
    return starter_exports(starter_dir, tmp_path_factory, "openvino", OpenVinoBackend().export)


@pytest.fixture(scope="module", params=FAMILIES)
def exported(request, ov_export):
    return ov_export(request.param)


@pytest.fixture(scope="module")
def electra(ov_export):
    return ov_export("electra")


@pytest.fixture(scope="module")
def gpt_neo(ov_export):
    return ov_export("gpt-neo")


def _calibration(exp) -> Batch:
    """32 real texts (tweets) that are not among the ones the tests compare on."""
    texts = real_texts(exp.family.task)
    return encode_classification(exp.tokenizer, texts[32:64], None, 32, exp.family.onnx_inputs)


@pytest.fixture(scope="module")
def electra_int8(electra):
    return OpenVinoBackend().quantize(electra.artifact, electra.family, _calibration(electra), Int8(),
                                      electra.out_dir)


# --- registry --------------------------------------------------------------------------

def test_backend_registry():
    """The configs on a CPU without bf16 (oneDNN capped): no as-run twins."""
    backend = get_backend("openvino")
    assert isinstance(backend, OpenVinoBackend)
    assert backend.name == "openvino" and backend.requires == ("openvino", "nncf")
    electra_family, gpt_neo_family = families.get("electra"), families.get("gpt-neo")
    assert backend.float_configs(electra_family) == [Fp16Weights()]
    assert backend.float_configs(gpt_neo_family) == [Fp16Weights()]
    assert backend.int8_configs(electra_family, env=NO_BF16) == [Int8()]
    assert backend.int8_configs(electra_family, max_accuracy_drop=0.5, env=NO_BF16) == [
        Int8(), AccuracyControlledInt8(max_drop=0.5)]
    assert backend.int8_configs(families.get("albert"), env=NO_BF16) == [Int8()]
    lm = backend.int8_configs(gpt_neo_family, env=NO_BF16)
    assert lm == [Int8(), WeightsOnly("int8_asym"), WeightsOnly("int4_sym", group_size=64, ratio=1.0)]
    assert backend.int8_configs(gpt_neo_family, max_accuracy_drop=1.0, env=NO_BF16)[:2] == [
        Int8(), AccuracyControlledInt8(max_drop=1.0)]


def test_as_run_twins_present_where_the_cpu_has_bf16_and_absent_where_not(monkeypatch):
    """Each int8 config is followed by its as-run twin exactly where a plain load runs
    bf16: decided by what OpenVINO reports for this CPU, an ISA cap in the target's env or
    in this process's environment rules it out."""
    backend, electra_family = OpenVinoBackend(), families.get("electra")
    native, why = default_precision()
    if native == "f32":  # a CPU without bf16: no twin, with or without accuracy control
        assert backend.int8_configs(electra_family) == [Int8()]
        assert backend.int8_configs(electra_family, max_accuracy_drop=0.5) == [
            Int8(), AccuracyControlledInt8(max_drop=0.5)]
        assert "no bf16" in why
        pytest.skip(f"this CPU runs f32 by default ({why}); the twins' presence needs bf16")
    assert backend.int8_configs(electra_family) == [Int8(), AsRunByDefault("int8", native)]
    assert backend.int8_configs(electra_family, max_accuracy_drop=0.5) == [
        Int8(), AccuracyControlledInt8(max_drop=0.5), AsRunByDefault("int8", native),
        AsRunByDefault("int8-accuracy-controlled", native)]
    assert backend.int8_configs(electra_family, env=NO_BF16) == [Int8()]
    assert backend.int8_configs(electra_family, env={"ONEDNN_MAX_CPU_ISA": "AVX2"}) == [Int8()]
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")
    assert backend.int8_configs(electra_family) == [Int8()]
    assert default_precision()[0] == "f32" and "ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI" in default_precision()[1]


# --- fp32 export -----------------------------------------------------------------------

def test_export_files_and_notes(exported):
    art, out = exported.artifact, exported.out_dir
    assert art.format == "openvino" and art.precision == "fp32"
    assert art.config == {"type": "Fp32Export"}
    assert art.path == out / "model.fp32.xml" and art.path.is_file()
    assert _bin(art) == out / "model.fp32.bin" and _bin(art).is_file()
    # save_ir writes in a hidden temp dir and renames: nothing may be left behind
    # (the directory also holds the quantized artifacts of other tests, all saved the same way).
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".") or p.is_dir()
                 or p.suffix not in (".xml", ".bin")]
    assert leftovers == []
    assert art.size_bytes == art.path.stat().st_size + _bin(art).stat().st_size
    assert "openvino" in art.notes["converter"]
    assert art.internal == {}


def test_export_ir_metadata(exported):
    """Input/output names as the other runners use, dynamic axes, and the .bin checksum."""
    model = _read(exported.artifact.path)
    assert [p.get_any_name() for p in model.inputs] == list(exported.family.onnx_inputs)
    assert [len(p.get_names()) for p in model.inputs] == [1] * len(model.inputs)
    assert model.outputs[0].get_names() == {"logits"}
    for port in model.inputs:
        assert str(port.get_partial_shape()) == "[?,?]"
        assert port.get_element_type().get_type_name() == "i64"
    assert model.get_rt_info(RT_BIN_SHA256).astype(str) == sha256_of(_bin(exported.artifact))
    assert model.get_rt_info(RT_PRECISION).astype(str) == "f32"


def test_parity_with_pytorch_dynamic_shapes(exported):
    """One compiled model (dynamic shapes) serves every batch and sequence length."""
    runner = open_runner(exported.artifact.path, 1)
    assert isinstance(runner, OpenVinoRunner) and runner.static is False
    for batch, seq_len in [(2, 12), (5, 40)]:
        feeds = encode(exported.family, exported.tokenizer, real_texts(exported.family.task), batch, seq_len)
        if exported.family.task != CAUSAL_LM and seq_len == 40:
            assert (feeds["attention_mask"] == 0).any()  # padding is exercised
        ref = torch_logits(exported.model, feeds)
        got = runner.run(feeds)
        assert got.dtype == np.float32 and got.shape == ref.shape
        assert got.shape[:2] == ((batch, seq_len) if exported.family.task == CAUSAL_LM else (batch, 2))
        assert float(np.abs(got - ref).max()) < 1e-4, (batch, seq_len)
    assert len(runner._compiled) == 1  # compiled once, at load
    assert runner.precision == "f32"
    assert runner.runtime.startswith("openvino ") and runner.input_names == exported.family.onnx_inputs


# --- fp16 weights ----------------------------------------------------------------------

def test_fp16_weights(exported):
    fp32 = exported.artifact
    art = OpenVinoBackend().quantize(fp32, exported.family, None, Fp16Weights(), exported.out_dir)
    assert art.path == exported.out_dir / "model.fp16.xml" and _bin(art).is_file()
    assert art.format == "openvino" and art.precision == "fp16"
    assert art.config == config_record(Fp16Weights()) == {"type": "Fp16Weights", "inference_precision": "native"}
    assert {k: art.notes[k] for k in ("weights", "inference_precision")} == {
        "weights": "fp16", "inference_precision": "native"}
    assert f"{default_precision()[0]} on this CPU" in art.notes["precision_as_run"]
    ratio = _bin(art).stat().st_size / _bin(fp32).stat().st_size
    assert 0.45 < ratio < 0.6, ratio  # every float weight halves; a few int constants do not
    assert art.size_bytes == art.path.stat().st_size + _bin(art).stat().st_size < fp32.size_bytes
    model = _read(art.path)
    assert model.get_rt_info(RT_PRECISION).astype(str) == "native"
    assert model.get_rt_info(RT_BIN_SHA256).astype(str) == sha256_of(_bin(art))
    assert model.get_rt_info(RT_BIN_SHA256).astype(str) != sha256_of(_bin(fp32))

    feeds = encode(exported.family, exported.tokenizer, real_texts(exported.family.task), 5, 40)
    runner, ref_runner = open_runner(art.path, 1), open_runner(fp32.path, 1)
    got, ref = runner.run(feeds), ref_runner.run(feeds)
    assert got.shape == ref.shape and np.isfinite(got).all()
    assert ref_runner.precision == "f32"
    assert isinstance(runner.precision, str) and runner.precision  # the CPU's half type, or f32
    assert runner.precision in ("f32", "bf16", "f16"), runner.precision
    scale = float(np.abs(ref).max())
    assert float(np.abs(got - ref).max()) < 0.05 * scale + 1e-3
    agreement = float((got.argmax(-1) == ref.argmax(-1)).mean())
    assert agreement >= 0.8, agreement


# --- int8 ------------------------------------------------------------------------------

def test_int8_quantize(electra, electra_int8):
    fp32, q = electra.artifact, electra_int8
    assert q.path == electra.out_dir / "model.int8.xml" and _bin(q).is_file()
    assert q.format == "openvino" and q.precision == "int8"
    assert q.config == config_record(Int8()) and q.config["type"] == "Int8"
    assert q.notes["n_calibration"] == 32
    assert 0 < q.notes["int8_matmuls"] <= q.notes["matmuls"]
    assert q.notes["int8_matmuls"] == len(quantized_matmuls(_read(q.path)))  # what was saved
    assert quantized_matmuls(_read(fp32.path)) == []
    assert q.size_bytes < 0.75 * fp32.size_bytes  # the MatMul weights really went to int8
    assert _read(q.path).get_rt_info(RT_BIN_SHA256).astype(str) == sha256_of(_bin(q))

    runner, ref_runner = open_runner(q.path, 1), open_runner(fp32.path, 1)
    texts = real_texts(electra.family.task)[:32]
    feeds = encode_classification(electra.tokenizer, texts, None, 32, electra.family.onnx_inputs).inputs
    got, ref = runner.run(feeds), ref_runner.run(feeds)
    assert runner.precision.startswith("int8"), runner.precision
    assert ref_runner.precision == "f32"
    # int8 IRs ask for static shapes (measured faster at batch 1); float IRs stay dynamic
    assert runner.static and runner.precision.endswith(", static shapes") and not ref_runner.static
    assert _read(q.path).get_rt_info(RT_SHAPES).astype(str) == "static"
    agreement = float((got.argmax(-1) == ref.argmax(-1)).mean())
    assert agreement >= 0.90, agreement


def test_int8_as_run_by_default(electra, electra_int8, monkeypatch):
    """The int8 IR's twin as a plain load runs it: the same weights (no second NNCF run),
    "native" precision; on a bf16 CPU its float layers run bf16, under an ISA cap f32."""
    native = default_precision()[0]
    runs_as = native if native != "f32" else "bf16"
    art = OpenVinoBackend().quantize(electra.artifact, electra.family, None, AsRunByDefault("int8", runs_as),
                                     electra.out_dir)
    assert art.path == electra.out_dir / f"model.int8-{runs_as}.xml" and art.precision == f"int8-{runs_as}"
    assert art.config == config_record(AsRunByDefault("int8", runs_as))
    assert art.notes["derived_from"] == "model.int8.xml" and art.notes["inference_precision"] == "native"
    assert art.notes["int8_matmuls"] == electra_int8.notes["int8_matmuls"]
    assert f"{runs_as} for the rest" in art.notes["precision_as_run"]
    assert _bin(art).read_bytes() == _bin(electra_int8).read_bytes()  # same weights, new rt_info
    model = _read(art.path)
    assert model.get_rt_info(RT_PRECISION).astype(str) == "native"
    assert model.get_rt_info(RT_SHAPES).astype(str) == "static"  # kept from the int8 IR

    texts = real_texts(electra.family.task)[:32]
    feeds = encode_classification(electra.tokenizer, texts, None, 32, electra.family.onnx_inputs).inputs
    runner, int8_runner = open_runner(art.path, 1), open_runner(electra_int8.path, 1)
    got, ref = runner.run(feeds), int8_runner.run(feeds)
    # (the runtime counts its own fused matmuls, so not the IR's count)
    assert int8_runner.precision.startswith("int8 ") and ", rest f32" in int8_runner.precision
    assert ", rest " + native in runner.precision, runner.precision  # the CPU's own default
    assert float((got.argmax(-1) == ref.argmax(-1)).mean()) >= 0.9
    if native != "f32":
        assert not np.array_equal(got, ref)  # bf16 really ran: not the f32 numbers
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")  # a CPU without bf16
    capped = open_runner(art.path, 1)
    capped.run(feeds)
    assert ", rest f32" in capped.precision, capped.precision


def test_as_run_twin_needs_its_source_built_first(electra, tmp_path):
    with pytest.raises(EdgeifyError, match=r"model\.int8-accuracy-controlled\.xml, which is not built yet"):
        OpenVinoBackend().quantize(electra.artifact, electra.family, None,
                                   AsRunByDefault("int8-accuracy-controlled", "bf16"), tmp_path)


def test_fp32_note_says_what_a_plain_load_runs_here(electra, tmp_path, monkeypatch):
    """Read from OpenVINO for this CPU, not written on every CPU."""
    native, why = default_precision()
    notes = electra.artifact.notes
    assert notes["plain_load_runs"] == native and why in notes["precision_as_run"]
    assert notes["inference_precision"].startswith("f32 (set explicitly")
    assert (f"a plain load runs {native} here" in notes["inference_precision"]) == (native != "f32")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")
    sample = _calibration(electra).inputs
    capped = OpenVinoBackend().export(electra.model, electra.family, sample, tmp_path).notes
    assert capped["plain_load_runs"] == "f32" and "a plain load runs the same here" in capped["inference_precision"]
    assert "bf16 by default" not in capped["inference_precision"]


def _labelled_eval(exp, n: int = 64) -> Batch:
    """edgeify's own evaluation reviews (never trained on), labels mapped by the model's config."""
    data = synthetic.labelled_reviews(n, seed=EVAL_SEED)
    label2id = exp.model.config.label2id
    assert sorted(label2id) == sorted(synthetic.LABELS)  # what the starter was trained with
    return encode_classification(exp.tokenizer, [t for t, _ in data], [label2id[lab] for _, lab in data],
                                 32, exp.family.onnx_inputs)


def _validation(exp, evaluation: Batch) -> tuple[Validation, float]:
    reference = evaluate(open_runner(exp.artifact.path, 1), evaluation, exp.family.task).value
    score = scorer(evaluation, exp.family.task, reference)
    return Validation(len(evaluation), score, "accuracy points"), reference


def test_accuracy_controlled_int8_within_budget(electra, electra_int8):
    evaluation = _labelled_eval(electra)
    validation, reference = _validation(electra, evaluation)
    config = AccuracyControlledInt8(max_drop=100.0)
    q = OpenVinoBackend().quantize(electra.artifact, electra.family, _calibration(electra), config,
                                   electra.out_dir, validation=validation)
    assert q.path == electra.out_dir / "model.int8-accuracy-controlled.xml" and _bin(q).is_file()
    assert q.precision == "int8-accuracy-controlled" and q.config == config_record(config)
    notes = q.notes
    assert notes["within_budget"] is True
    assert isinstance(notes["final_drop"], (int, float)) and not isinstance(notes["final_drop"], bool)
    assert notes["final_drop"] <= 100.0
    assert isinstance(notes["reverted_to_float"], list)
    # a 100-point budget is met at once: NNCF validates the float and the int8 model, reverts nothing
    assert notes["reverted_to_float"] == [] and notes["kept"] == "accuracy-controlled"
    assert notes["initial_int8_drop"] == notes["final_drop"] and "warning" not in notes
    assert notes["drop_unit"] == "accuracy points" and "64 samples" in notes["validated_on"]
    assert notes["int8_matmuls"] == len(quantized_matmuls(_read(q.path))) == electra_int8.notes["int8_matmuls"]
    assert notes["matmuls"] == electra_int8.notes["matmuls"]
    assert not [p for p in electra.out_dir.iterdir() if p.is_dir()]  # NNCF's model dir is gone

    # the drop recorded is the drop of this artifact on the same set (NNCF's own compile
    # may run another float precision: allow two samples to flip)
    runner = open_runner(q.path, 1)
    score, per = validation.score(runner.run, list(range(len(evaluation))))
    assert len(per) == len(evaluation)
    assert abs(notes["final_drop"] - (reference - score)) <= 2 * 100.0 / len(evaluation)
    assert runner.precision.startswith("int8"), runner.precision


def test_accuracy_controlled_int8_zero_budget(electra, electra_int8):
    """No drop allowed: either met (the int8 model agrees) or layers go back to float."""
    evaluation = _labelled_eval(electra, 32)
    validation, _ = _validation(electra, evaluation)
    config = AccuracyControlledInt8(max_drop=0.0, ranking_subset_size=16)
    q = OpenVinoBackend().quantize(electra.artifact, electra.family, _calibration(electra), config,
                                   electra.out_dir, validation=validation)
    notes = q.notes
    assert isinstance(notes["final_drop"], (int, float))
    assert notes["within_budget"] is (notes["final_drop"] <= 0.0)
    assert ("warning" in notes) is (not notes["within_budget"])
    # never worse than the plain int8 model it started from
    assert notes["final_drop"] <= max(notes["initial_int8_drop"], 0.0)
    # every int8 MatMul of the plain int8 model is either still int8 or listed as reverted
    assert notes["int8_matmuls"] + len(notes["reverted_to_float"]) == electra_int8.notes["int8_matmuls"]
    assert notes["int8_matmuls"] == len(quantized_matmuls(_read(q.path)))
    open_runner(q.path, 1).run(evaluation.rows(0, 2))


def test_accuracy_controlled_needs_validation(electra):
    with pytest.raises(EdgeifyError, match="accuracy-controlled quantization needs the evaluation set"):
        OpenVinoBackend().quantize(electra.artifact, electra.family, _calibration(electra),
                                   AccuracyControlledInt8(1.0), electra.out_dir)


# --- weight-only (decoders) ------------------------------------------------------------

@pytest.mark.parametrize("config, precision, low_types", [
    (WeightsOnly("int8_asym"), "int8-weights", {"u8", "i8"}),
    (WeightsOnly("int4_sym", group_size=64, ratio=1.0), "int4-weights", {"u4", "i4"}),
])
def test_weights_only(gpt_neo, config, precision, low_types):
    fp32 = gpt_neo.artifact
    q = OpenVinoBackend().quantize(fp32, gpt_neo.family, None, config, gpt_neo.out_dir)
    assert q.path == gpt_neo.out_dir / f"model.{precision}.xml" and _bin(q).is_file()
    assert q.precision == precision and q.config == config_record(config)
    elements = q.notes["compressed_weight_elements"]
    assert elements and all(v > 0 for v in elements.values())
    assert low_types & set(elements), elements
    assert q.size_bytes < 0.5 * fp32.size_bytes
    assert _read(q.path).get_rt_info(RT_BIN_SHA256).astype(str) == sha256_of(_bin(q))

    feeds = encode(gpt_neo.family, gpt_neo.tokenizer, real_texts(gpt_neo.family.task), 2, 24)
    got = open_runner(q.path, 1).run(feeds)
    ref = open_runner(fp32.path, 1).run(feeds)
    assert got.shape == ref.shape and np.isfinite(got).all()
    agreement = float((got.argmax(-1) == ref.argmax(-1)).mean())
    assert agreement >= (0.8 if precision == "int8-weights" else 0.5), agreement


def test_int4_weights_precision_named_int4(gpt_neo):
    config = WeightsOnly("int4_sym", group_size=64, ratio=1.0)
    q = OpenVinoBackend().quantize(gpt_neo.artifact, gpt_neo.family, None, config, gpt_neo.out_dir)
    runner = open_runner(q.path, 1)
    runner.run(encode(gpt_neo.family, gpt_neo.tokenizer, real_texts(gpt_neo.family.task), 1, 16))
    assert runner.precision.startswith("int4 "), runner.precision


# --- errors ----------------------------------------------------------------------------

def test_quantize_unknown_config(electra):
    @dataclass(frozen=True)
    class Int4:
        bits: int = 4

    with pytest.raises(EdgeifyError) as info:
        OpenVinoBackend().quantize(electra.artifact, electra.family, None, Int4(), electra.out_dir)
    assert str(info.value) == ("no OpenVINO handler for Int4; have: "
                               "Fp16Weights, Int8, AccuracyControlledInt8, WeightsOnly, AsRunByDefault")
    assert not (electra.out_dir / "model.int4.xml").exists()
