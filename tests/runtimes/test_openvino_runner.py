"""OpenVINO runner: broken or mismatched IR files, static vs dynamic shapes, the shapes
environment variable, inputs, and the benchmark child process."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino")

from edgeify import families
from edgeify.errors import EdgeifyError, UsageError
from edgeify.runtimes import input_names, open_runner
from edgeify.runtimes.openvino_runner import SHAPES_ENV, OpenVinoRunner

SENTENCES = [
    "the movie was not good but the soundtrack was really lovely",
    "honestly, the battery turned out quite useless.",
    "we arrived on monday, the staff was friendly",
]


@pytest.fixture(autouse=True)
def _default_shapes(monkeypatch):
    monkeypatch.delenv(SHAPES_ENV, raising=False)


@pytest.fixture(scope="module")
def electra(starter_dir, tmp_path_factory):
    """(fp32 .xml, fp16 .xml, tokenized feeds at (3, 20)) for the electra starter."""
    from edgeify.calibration.tokenize import encode_classification
    from edgeify.export.openvino import Fp16Weights, OpenVinoBackend
    from edgeify.families.loader import load_local

    loaded = load_local(starter_dir("electra"))
    feeds = encode_classification(loaded.tokenizer, SENTENCES, None, 20, loaded.family.onnx_inputs).inputs
    out = tmp_path_factory.mktemp("openvino-runner-electra")
    backend = OpenVinoBackend()
    fp32 = backend.export(loaded.model, loaded.family, feeds, out)
    fp16 = backend.quantize(fp32, loaded.family, None, Fp16Weights(), out)
    return fp32.path, fp16.path, feeds


def _copy_ir(xml: Path, dest: Path, with_bin: bool = True) -> Path:
    """The IR pair under a new directory, same stem (the runner looks for <stem>.bin)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(xml, dest / "model.xml")
    if with_bin:
        shutil.copy(xml.with_suffix(".bin"), dest / "model.bin")
    return dest / "model.xml"


def _one_line(msg: str, path: Path) -> None:
    assert "\n" not in msg and str(path) in msg
    for noise in ("Traceback", "Exception from"):
        assert noise not in msg, msg


def _one_clean_line(msg: str, path: Path) -> None:
    """One line naming the file, without OpenVINO's C++ context."""
    _one_line(msg, path)
    for noise in ("src/", ".cpp", "Check '"):
        assert noise not in msg, msg


# --- a working IR ----------------------------------------------------------------------

def test_runner_interface(electra):
    xml, _, feeds = electra
    runner = open_runner(xml, 2)
    assert isinstance(runner, OpenVinoRunner)
    assert runner.input_names == families.get("electra").onnx_inputs
    assert runner.runtime.startswith("openvino ") and runner.threads == 2
    assert runner.config["INFERENCE_NUM_THREADS"] == 2 and runner.config["INFERENCE_PRECISION_HINT"] == "f32"
    logits = runner.run(feeds)
    assert logits.shape == (3, 2) and logits.dtype == np.float32
    assert not np.allclose(logits[0], logits[1])  # real outputs, not a constant
    assert runner.precision == "f32"
    extra = dict(feeds, unused=np.zeros((3, 20), dtype=np.int64))
    np.testing.assert_array_equal(runner.run(extra), logits)


def test_fp16_runs_in_native_half(electra):
    _, fp16, feeds = electra
    runner = open_runner(fp16, 1)
    # "native": the plugin picks (f32 is forced only where oneDNN is capped below bf16)
    assert runner.config.get("INFERENCE_PRECISION_HINT") in (None, "f32")
    runner.run(feeds)
    assert runner.precision in ("bf16", "f16", "f32"), runner.precision


def test_default_precision_is_what_a_plain_load_runs(electra, monkeypatch):
    """default_precision() names the float type `compile_model(model, "CPU")` picks here:
    checked against a real plain compile, and against an ISA cap that rules bf16 out."""
    import openvino as ov

    from edgeify.runtimes.openvino_runner import default_precision

    xml, _, _ = electra
    compiled = ov.Core().compile_model(ov.Core().read_model(str(xml)), "CPU")
    plain = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    native, why = default_precision()
    assert {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}[plain.split("'")[1]] == native, (plain, why)
    assert "capabilities" in why
    for cap in ("AVX2", "AVX512_CORE_VNNI"):
        capped, reason = default_precision({"ONEDNN_MAX_CPU_ISA": cap})
        assert capped == "f32"
        if native != "f32":
            assert f"ONEDNN_MAX_CPU_ISA={cap} caps oneDNN below {native}" in reason
    # a cap that keeps bf16 changes nothing; the process's own cap counts when env has none
    assert default_precision({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}) == (native, why)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert default_precision()[0] == "f32" and default_precision({"OTHER": "1"})[0] == "f32"


def test_missing_input(electra):
    xml, _, feeds = electra
    runner = open_runner(xml, 1)
    partial = {k: v for k, v in feeds.items() if k != "token_type_ids"}
    with pytest.raises(EdgeifyError) as info:
        runner.run(partial)
    assert str(info.value) == ("model needs inputs ['token_type_ids']; "
                               "got ['attention_mask', 'input_ids']")


# --- static and dynamic shapes ---------------------------------------------------------

def test_static_and_dynamic_shapes_agree(electra):
    xml, _, feeds = electra
    dynamic = OpenVinoRunner(xml, 1, static_shapes=False)
    static = OpenVinoRunner(xml, 1, static_shapes=True)
    assert dynamic.static is False and static.static is True
    assert list(dynamic._compiled) == [None]  # compiled once at load, for any shape
    assert static._compiled == {} and static.precision == "not compiled yet"

    short = {k: v[:2, :12] for k, v in feeds.items()}
    for f in (feeds, short, feeds, short):
        np.testing.assert_allclose(static.run(f), dynamic.run(f), atol=1e-5, rtol=0)
    assert sorted(static._compiled) == [((2, 12),) * 3, ((3, 20),) * 3]  # once per distinct shape
    assert list(dynamic._compiled) == [None]
    assert dynamic.precision == "f32" and static.precision == "f32, static shapes"
    # a compiled static model has the exact shape, not a range
    compiled = static._compiled[((3, 20),) * 3][0]
    assert [str(i.get_partial_shape()) for i in compiled.inputs] == ["[3,20]"] * 3


@pytest.mark.parametrize("value, static", [("static", True), ("dynamic", False), (" Static ", True), ("", False)])
def test_shapes_env_var(electra, monkeypatch, value, static):
    xml, _, feeds = electra
    monkeypatch.setenv(SHAPES_ENV, value)
    runner = open_runner(xml, 1)
    assert runner.static is static
    assert len(runner._compiled) == (0 if static else 1)
    runner.run(feeds)
    assert len(runner._compiled) == 1
    # an explicit argument wins over the environment
    assert OpenVinoRunner(xml, 1, static_shapes=not static).static is (not static)


def test_shapes_env_var_invalid(electra, monkeypatch):
    xml, _, _ = electra
    monkeypatch.setenv(SHAPES_ENV, "fast")
    with pytest.raises(UsageError) as info:
        open_runner(xml, 1)
    assert str(info.value) == f"{SHAPES_ENV}='fast'; accepted: static, dynamic"


# --- input_names -----------------------------------------------------------------------

def test_input_names_xml(electra):
    xml, fp16, _ = electra
    assert input_names(xml) == families.get("electra").onnx_inputs
    assert input_names(fp16) == families.get("electra").onnx_inputs


def test_input_names_xml_gpt_neo(starter_dir, tmp_path):
    from edgeify.calibration.tokenize import encode_language_model
    from edgeify.export.openvino import OpenVinoBackend
    from edgeify.families.loader import load_local

    loaded = load_local(starter_dir("gpt-neo"))
    text = [" ".join(SENTENCES)] * 4
    feeds = encode_language_model(loaded.tokenizer, text, 16, loaded.family.onnx_inputs).rows(0, 2)
    art = OpenVinoBackend().export(loaded.model, loaded.family, feeds, tmp_path)
    assert input_names(art.path) == ("input_ids", "attention_mask") == open_runner(art.path, 1).input_names


def test_input_names_corrupt_xml(electra, tmp_path):
    xml, _, _ = electra
    garbage = _copy_ir(xml, tmp_path / "garbage")
    garbage.write_text("this is not xml at all\x00\x01")
    truncated = _copy_ir(xml, tmp_path / "truncated")
    truncated.write_bytes(xml.read_bytes()[: xml.stat().st_size // 2])
    for p in (garbage, truncated):
        with pytest.raises(EdgeifyError) as info:
            input_names(p)
        _one_clean_line(str(info.value), p)
        assert "not a valid OpenVINO IR .xml" in str(info.value)


# --- files that are not a runnable IR --------------------------------------------------

def test_open_garbage_xml(electra, tmp_path):
    xml, _, _ = electra
    p = _copy_ir(xml, tmp_path)
    p.write_text("garbage \x00 text, not markup")
    with pytest.raises(EdgeifyError) as info:
        open_runner(p, 1)
    msg = str(info.value)
    _one_clean_line(msg, p)
    assert msg.startswith(f"{p}: not a valid OpenVINO IR .xml (")


def test_open_truncated_xml(electra, tmp_path):
    xml, _, _ = electra
    p = _copy_ir(xml, tmp_path)
    p.write_bytes(xml.read_bytes()[: xml.stat().st_size // 2])
    with pytest.raises(EdgeifyError) as info:
        open_runner(p, 1)
    msg = str(info.value)
    _one_clean_line(msg, p)
    assert msg.startswith(f"{p}: not a valid OpenVINO IR .xml (")


def test_open_empty_xml(electra, tmp_path):
    xml, _, _ = electra
    p = _copy_ir(xml, tmp_path)
    p.write_bytes(b"")
    with pytest.raises(EdgeifyError) as info:
        open_runner(p, 1)
    _one_clean_line(str(info.value), p)
    assert "not a valid OpenVINO IR .xml" in str(info.value)


def test_open_xml_that_is_not_an_ir(electra, tmp_path):
    xml, _, _ = electra
    p = _copy_ir(xml, tmp_path)
    p.write_text('<?xml version="1.0"?>\n<project><layer type="Parameter"/></project>\n')
    with pytest.raises(EdgeifyError) as info:
        open_runner(p, 1)
    msg = str(info.value)
    _one_clean_line(msg, p)
    assert "root element <project>, expected <net>" in msg


def test_open_ir_without_bin(electra, tmp_path):
    xml, _, _ = electra
    p = _copy_ir(xml, tmp_path, with_bin=False)
    with pytest.raises(EdgeifyError) as info:
        open_runner(p, 1)
    msg = str(info.value)
    _one_clean_line(msg, p)
    assert "weights file model.bin is missing" in msg


CHECKSUM_MSG = "model.bin does not match this .xml (checksum differs); the pair must come from the same export"


def _swap_bins(electra, tmp_path) -> list[Path]:
    """fp32 .xml with the fp16 export's (smaller) .bin, and fp16 .xml with the fp32 .bin."""
    xml, fp16, _ = electra
    out = []
    for name, x, b in (("fp32-xml", xml, fp16), ("fp16-xml", fp16, xml)):
        p = _copy_ir(x, tmp_path / name, with_bin=False)
        shutil.copy(b.with_suffix(".bin"), p.with_suffix(".bin"))
        out.append(p)
    return out


def test_open_ir_with_bin_of_another_model(electra, tmp_path):
    for p in _swap_bins(electra, tmp_path):
        with pytest.raises(EdgeifyError) as info:
            open_runner(p, 1)
        msg = str(info.value)
        _one_line(msg, p)  # OpenVINO's own checks may answer first, with their C++ context
        assert msg == f"{p}: {CHECKSUM_MSG}" or msg.startswith(f"{p}: cannot load OpenVINO IR ("), msg


def test_bin_of_another_model_names_the_mismatch(electra, tmp_path):
    for p in _swap_bins(electra, tmp_path):
        with pytest.raises(EdgeifyError) as info:
            open_runner(p, 1)
        assert str(info.value) == f"{p}: {CHECKSUM_MSG}"


def test_open_ir_with_corrupted_bin_of_same_size(electra, tmp_path):
    """OpenVINO itself would load these weights: only the checksum notices."""
    xml, _, feeds = electra
    p = _copy_ir(xml, tmp_path)
    data = bytearray(p.with_suffix(".bin").read_bytes())
    mid = len(data) // 2
    data[mid:mid + 16] = bytes(b ^ 0xFF for b in data[mid:mid + 16])
    p.with_suffix(".bin").write_bytes(bytes(data))
    with pytest.raises(EdgeifyError) as info:
        open_runner(p, 1)
    msg = str(info.value)
    _one_clean_line(msg, p)
    assert msg == f"{p}: {CHECKSUM_MSG}"
    # the unchanged pair, copied the same way, opens and runs
    good = _copy_ir(xml, tmp_path / "good")
    np.testing.assert_array_equal(open_runner(good, 1).run(feeds), open_runner(xml, 1).run(feeds))


# --- the benchmark child ---------------------------------------------------------------

def test_measure_in_child_process(electra):
    from edgeify.targets.local import measure

    xml, _, feeds = electra
    result = measure(xml, feeds, threads=1, max_seconds=0.2)
    assert result["p50"] > 0 and result["p90"] >= result["p50"]
    assert result["runs"] >= 30
    assert result["precision"] == "f32"
    assert result["runtime"].startswith("openvino ")
    assert (result["batch"], result["seq_len"], result["threads"]) == (3, 20, 1)
