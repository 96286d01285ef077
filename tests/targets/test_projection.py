"""projection.py: a device's latency estimated from the same artifact timed here, and the
artifact chosen for the device from those estimates (rpi4 and rpi5 may choose differently)."""

from __future__ import annotations

import json

import pytest

from edgeify import targets
from edgeify.evaluate import metric_drop
from edgeify.targets.projection import NOMINAL_ATTAINMENT, attained, choose_for_target


def _e(fmt, precision, acc, est, refused=None):
    e = {"format": fmt, "precision": precision, "path": f"{fmt}/{precision}", "metric": {"value": acc},
         "estimate": {"target": "rpi4", "latency_ms": est}}
    if refused:
        e["refused"] = refused
    return e


def test_attained_scales_nominal_peaks():
    pi = attained(targets.get("rpi5"))
    assert pi.peak_gops["int8"] == pytest.approx(614.4 * NOMINAL_ATTAINMENT) and pi.cores == 4
    with pytest.raises(ValueError, match="no rates"):
        attained(targets.get("host"))


def test_int8_only_when_clearly_faster():
    fp32, int8 = _e("tflite", "fp32", 90.0, 27.0), _e("tflite", "int8-dynamic", 90.0, 26.1)
    choice = choose_for_target([fp32, int8], 1.0, "accuracy", metric_drop)
    assert choice["chosen"] == "tflite/fp32" and "only 1.03x as fast" in choice["reason"] and choice["estimated"]
    int8["estimate"]["latency_ms"] = 9.0
    assert choose_for_target([fp32, int8], 1.0, "accuracy", metric_drop)["chosen"] == "tflite/int8-dynamic"
    int8["metric"]["value"] = 85.0  # over the accuracy budget: never chosen
    assert choose_for_target([fp32, int8], 1.0, "accuracy", metric_drop)["chosen"] == "tflite/fp32"
    refused = _e("tflite", "fp32", 90.0, 1.0, refused="cannot load")
    assert choose_for_target([refused], 1.0, "accuracy", metric_drop) is None


def test_albert_int8_target_rpi_end_to_end(tmp_path, starter_dir, capsys):
    """The acceptance command, small: the plan is printed, TFLite is built, host figures are
    measured and Pi figures estimated, each labelled so."""
    from edgeify.cli import main

    starter_dir("albert")
    out = tmp_path / "out"
    assert main(["albert", "--int8", "--target", "rpi", "-o", str(out), "--n-eval", "48",
                 "--n-calibration", "32", "--bench-seconds", "0.3", "--bench-rounds", "1", "--seq-len", "32"]) == 0
    printed = capsys.readouterr().out
    assert "plan for target rpi4" in printed and "not timed on it" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["plan"]["formats"] == ["tflite", "onnx"] and not report["target"]["measured"]
    tflite = [a for a in report["artifacts"] if a["format"] == "tflite"]
    assert {a["precision"] for a in tflite} >= {"fp32", "int8-dynamic"}
    for a in report["artifacts"]:
        assert a["measured"] is False and a["latency_ms"]["p50"] > 0  # host timing, flagged as not the Pi's
        est = a["estimate"]
        assert est["estimated"] is True and est["target"] == "rpi4" and est["latency_ms"] > 0
        # the estimate is this artifact's host latency scaled by the two rooflines
        assert est["latency_ms"] == pytest.approx(a["latency_ms"]["p50"] * est["roofline_ms"] / est["host_roofline_ms"],
                                                  rel=0.01)
    assert report["selection"]["target_choice"]["estimated"] is True
