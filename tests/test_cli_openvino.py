"""The CLI with OpenVINO: both formats side by side, accuracy-controlled int8, the
AVX2-capped target, and broken IR files: one-line errors, nothing half-written."""

from __future__ import annotations

import json
import shutil

import pytest

from edgeify import deploy_card
from edgeify.cli import main
from tests.conftest import write_labelled_csv
from tests.test_cli import FAST, _no_leftovers


def test_albert_int8_onnx_and_openvino(tmp_path, starter_dir, capsys):
    """The issue's acceptance command: both formats written, evaluated and timed."""
    starter_dir("albert")
    out = tmp_path / "out"
    assert main(["albert", "--int8", "--formats", "onnx,openvino", "-o", str(out), *FAST]) == 0
    report = json.loads((out / "report.json").read_text())
    from edgeify.runtimes.openvino_runner import default_precision

    native = default_precision()[0]  # bf16 on a bf16 CPU: the int8 IR also as a plain load runs it
    got = [(a["format"], a["precision"]) for a in report["artifacts"]]
    assert got == [("onnx", "fp32"), ("onnx", "int8-dynamic"), ("onnx", "int8-static"),
                   ("openvino", "fp32"), ("openvino", "fp16"), ("openvino", "int8"),
                   *([("openvino", f"int8-{native}")] if native != "f32" else [])]
    for entry in report["artifacts"]:
        assert entry["metric"]["value"] > 0 and entry["latency_ms"]["p50"] > 0
        assert (out / entry["path"]).is_file()
    ov = {a["precision"]: a for a in report["artifacts"] if a["format"] == "openvino"}
    assert (out / ov["fp32"]["path"]).with_suffix(".bin").is_file()
    assert ov["fp32"]["parity"]["max_abs_diff"] < 1e-3
    assert ov["fp32"]["executed_precision"] == "f32"       # not the CPU's bf16 default
    assert ov["int8"]["executed_precision"].startswith("int8 ")
    assert ov["fp16"]["size_bytes"] < 0.6 * ov["fp32"]["size_bytes"]
    assert sum(a.get("selected", False) for a in report["artifacts"]) == 1
    # two answers: the best int8 file and the best of any precision, which gets the card
    overall = report["selection"]["overall"]
    assert sum(a.get("selected_overall", False) for a in report["artifacts"]) == 1
    assert (out / deploy_card.filename({"path": overall["chosen"]})).is_file()
    if native != "f32":
        twin = ov[f"int8-{native}"]
        assert twin["executed_precision"].endswith(f", rest {native}, static shapes")
        assert twin["metric"]["n"] == ov["int8"]["metric"]["n"] and twin["latency_ms"]["p50"] > 0
        assert f"a plain load runs {native} on this CPU" in ov["fp32"]["notes"]["precision_as_run"]
    assert {"openvino", "nncf"} <= set(report["versions"])
    assert "openvino int8" in capsys.readouterr().out


def test_max_accuracy_drop_runs_accuracy_control(ir_run):
    out, _ = ir_run
    report = json.loads((out / "report.json").read_text())
    ac = [a for a in report["artifacts"] if a["precision"] == "int8-accuracy-controlled"]
    assert len(ac) == 1 and ac[0]["config"]["max_drop"] == 0.5
    notes = ac[0]["notes"]
    assert notes["drop_unit"] == "accuracy points" and isinstance(notes["reverted_to_float"], list)
    assert notes["within_budget"] == (notes["final_drop"] <= 0.5)
    assert report["selection"]["budget"] == 0.5


def test_x86_avx2_target(tmp_path, starter_dir, labelled_csv, capsys):
    starter_dir("electra")
    assert main(["electra", "--target", "x86-avx2", "--formats", "onnx", "--data", str(labelled_csv),
                 "-o", str(tmp_path / "o"), *FAST]) == 2
    assert "target 'x86-avx2' cannot run format 'onnx'" in capsys.readouterr().err
    _no_leftovers(tmp_path, "o")
    out = tmp_path / "avx2"
    assert main(["electra", "--target", "x86-avx2", "--data", str(labelled_csv), "-o", str(out), *FAST]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["target"]["name"] == "x86-avx2"
    assert report["target"]["env"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert {a["format"] for a in report["artifacts"]} == {"openvino"}  # the target's default


def test_targets_lists_both(capsys):
    assert main(["targets"]) == 0
    printed = capsys.readouterr().out
    assert "host" in printed and "x86-avx2" in printed


@pytest.fixture(scope="module")
def ir_run(starter_dir, tmp_path_factory):
    """One OpenVINO int8 run with accuracy control (--max-accuracy-drop), whose files the
    broken-pair tests copy and damage."""
    starter_dir("electra")
    root = tmp_path_factory.mktemp("ir-run")
    csv = write_labelled_csv(root / "reviews.csv")
    assert main(["electra", "--int8", "--formats", "openvino", "--max-accuracy-drop", "0.5", "--data", str(csv),
                 "-o", str(root / "o"), *FAST]) == 0
    return root / "o", csv


@pytest.mark.parametrize("damage", ["garbage-xml", "missing-bin", "other-bin", "flipped-bin"])
def test_broken_ir_pair(tmp_path, ir_run, capsys, damage):
    out, labelled_csv = ir_run
    good = out / "openvino" / "model.fp32.xml"
    bad = tmp_path / "bad.xml"
    shutil.copy(good, bad)
    shutil.copy(good.with_suffix(".bin"), bad.with_suffix(".bin"))
    if damage == "garbage-xml":
        bad.write_text("<net><layers>this is not finished")
    elif damage == "missing-bin":
        bad.with_suffix(".bin").unlink()
    elif damage == "other-bin":  # the int8 model's weights next to the fp32 graph
        shutil.copy(out / "openvino" / "model.int8.bin", bad.with_suffix(".bin"))
    else:  # same size, different bytes: only the checksum can tell
        blob = bytearray(bad.with_suffix(".bin").read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        bad.with_suffix(".bin").write_bytes(bytes(blob))
    capsys.readouterr()
    # the IR sits outside the run's folder: point eval at the run's tokenizer
    assert main(["eval", str(bad), "--data", str(labelled_csv), "--seq-len", "32",
                 "--model-dir", str(out / "pytorch")]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    expected = {"garbage-xml": "not a valid OpenVINO IR .xml", "missing-bin": "is missing",
                "other-bin": "does not match this .xml", "flipped-bin": "does not match this .xml"}[damage]
    assert expected in err
    assert main(["bench", str(bad), "--seq-len", "32", "--seconds", "0.2"]) == 1
    assert str(bad) in capsys.readouterr().err
    assert main(["eval", str(good), "--data", str(labelled_csv), "--seq-len", "32"]) == 0
    assert json.loads(capsys.readouterr().out)["runtime"].startswith("openvino")


def test_bench_on_the_avx2_target(tmp_path, ir_run, capsys):
    out, _ = ir_run
    xml = out / "openvino" / "model.int8.xml"
    assert main(["bench", str(xml), "--target", "x86-avx2", "--seq-len", "32", "--seconds", "0.2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["target"] == "x86-avx2" and result["p50"] > 0
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"\x08\x07")
    assert main(["bench", str(onnx), "--target", "x86-avx2"]) == 2
    assert "cannot run format 'onnx'" in capsys.readouterr().err
