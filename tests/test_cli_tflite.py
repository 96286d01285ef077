"""The CLI with TFLite: every precision written, evaluated, timed, and checked on each
TFLite runtime at hand; a file of the wrong sequence length is refused in one line."""

from __future__ import annotations

import json

from edgeify.cli import main
from tests.test_cli import FAST, without


def test_electra_int8_tflite(tmp_path, starter_dir, capsys):
    starter_dir("electra")
    out = tmp_path / "out"
    assert main(["electra", "--int8", "--formats", "tflite", "-o", str(out), *FAST]) == 0
    report = json.loads((out / "report.json").read_text())
    got = [(a["format"], a["precision"]) for a in report["artifacts"]]
    assert got == [("tflite", "fp32"), ("tflite", "fp16"), ("tflite", "int8-dynamic"),
                   ("tflite", "int8-dynamic-per-channel"), ("tflite", "int8-static")]
    for entry in report["artifacts"]:
        assert entry["metric"]["value"] > 0 and entry["latency_ms"]["p50"] > 0
        assert (out / entry["path"]).is_file() and entry["path"].endswith(".seq32.tflite")
        assert "GATHER_ND" not in entry["notes"]["ops"]
        # every runtime at hand computes each file right, but tflite-runtime 2.14 the per-channel one
        checks = [r for r in entry["notes"]["runtimes"]
                  if not (entry["precision"] == "int8-dynamic-per-channel" and r["runtime"].startswith("tflite-runtime"))]
        assert all(r["same_results"] for r in checks), entry["notes"]["runtimes"]
    assert report["artifacts"][0]["parity"]["max_abs_diff"] < 1e-3
    assert sum(a.get("selected", False) for a in report["artifacts"]) == 1
    capsys.readouterr()
    # the file takes exactly 32 tokens: another length is a usage error, in one line
    fp32 = out / report["artifacts"][0]["path"]
    assert main(["bench", str(fp32), "--seq-len", "64", "--seconds", "0.2"]) == 2
    err = capsys.readouterr().err
    assert "takes sequences of exactly 32 tokens" in err and "Traceback" not in err
    assert main(["bench", str(fp32), "--seq-len", "32", "--seconds", "0.2"]) == 0
    capsys.readouterr()
    # evaluating the file on data whose labels the model does not have: one clear line
    mismatched = tmp_path / "spam.csv"
    mismatched.write_text("sentence,label\nwin a prize now,spam\nsee you at lunch,ham\n")
    assert main(["eval", str(fp32), "--data", str(mismatched), "--seq-len", "32"]) == 2
    err = capsys.readouterr().err
    assert "labels the model does not have: ham, spam; the model's labels: 0=negative, 1=positive" in err
    assert "Traceback" not in err


def test_two_seq_lens_one_tflite_file_each(tmp_path, starter_dir, capsys):
    """--seq-len twice: a TFLite file per length, each evaluated and timed at its own length
    beside PyTorch at that length; ONNX takes any length, so it is built once."""
    starter_dir("electra")
    out = tmp_path / "out"
    fast = without(FAST, "--seq-len")
    assert main(["electra", "--formats", "onnx,tflite", "--seq-len", "32", "--seq-len", "16",
                 "--seq-len", "32", "-o", str(out), *fast]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["seq_len"] == 32 and report["data"]["seq_lens"] == [32, 16]
    assert report["baseline"]["seq_len"] == 32
    [other] = report["other_baselines"]
    assert other["seq_len"] == 16 and other["format"] == "pytorch"
    got = [(a["format"], a["precision"], a["seq_len"], a["path"]) for a in report["artifacts"]]
    assert got == [("onnx", "fp32", 32, "onnx/model.fp32.onnx"),
                   ("tflite", "fp32", 32, "tflite/model.fp32.seq32.tflite"),
                   ("tflite", "fp16", 32, "tflite/model.fp16.seq32.tflite"),
                   ("tflite", "fp32", 16, "tflite/model.fp32.seq16.tflite"),
                   ("tflite", "fp16", 16, "tflite/model.fp16.seq16.tflite")]
    for entry in report["artifacts"]:
        base = report["baseline"] if entry["seq_len"] == 32 else other
        # compared with PyTorch at its own length: fp32 agrees exactly
        assert entry["metric_delta"] == round(entry["metric"]["value"] - base["metric"]["value"], 4)
        if entry["precision"] == "fp32":
            assert entry["parity"]["argmax_agreement_pct"] == 100.0
        assert entry["speedup_vs_baseline"] == round(base["latency_ms"]["p50"] / entry["latency_ms"]["p50"], 3)
    # the 16-token file is the one that takes 16 tokens
    short = out / "tflite/model.fp32.seq16.tflite"
    capsys.readouterr()
    assert main(["bench", str(short), "--seq-len", "16", "--seconds", "0.2"]) == 0
    table = (out / "report.md").read_text()
    assert "tflite fp32 seq16" in table and "pytorch fp32 seq16" in table and "seq 32/16" in table


def test_extra_seq_len_ignored_without_static_formats(tmp_path, starter_dir, capsys):
    starter_dir("electra")
    out = tmp_path / "out"
    fast = without(FAST, "--seq-len")
    assert main(["electra", "--formats", "onnx", "--seq-len", "32", "--seq-len", "16",
                 "-o", str(out), *fast]) == 0
    assert "--seq-len 16 ignored" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["seq_lens"] == [32] and report["other_baselines"] == []


def test_rpi_target_refuses_what_tflite_runtime_214_runs_wrongly(tmp_path, starter_dir, monkeypatch, capsys):
    """`--target rpi --formats tflite`: timed on this host and labelled so; the per-channel
    dynamic-range file, which tflite-runtime 2.14 computes wrongly, is built (the host and
    ai-edge-litert devices may pick it) but refused for the Pi with the reason and never
    selected, with no 2.14 runtime at hand (the file's own notes say it)."""
    starter_dir("electra")
    monkeypatch.delenv("EDGEIFY_TFLITE_PYTHONS", raising=False)
    out = tmp_path / "out"
    assert main(["electra", "--int8", "--target", "rpi", "--formats", "tflite", "-o", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["target"]["name"] == "rpi4" and report["target"]["measured"] is False
    assert report["target"]["timing_threads"] == report["baseline"]["threads"]
    assert [a["format"] for a in report["artifacts"]] == ["tflite"] * 5
    assert all(a["measured"] is False for a in [report["baseline"], *report["artifacts"]])
    refused = {a["precision"]: a.get("refused") for a in report["artifacts"]}
    assert {p for p, why in refused.items() if why} == {"int8-dynamic-per-channel"}, refused
    assert refused["int8-dynamic-per-channel"].startswith(
        "rpi4 has tflite-runtime 2.14: per-channel int8 weights in dynamic-range ops (")
    assert "FULLY_CONNECTED" in refused["int8-dynamic-per-channel"]
    [chosen] = [a for a in report["artifacts"] if a.get("selected")]
    assert chosen["precision"] != "int8-dynamic-per-channel"
    assert "rpi4 refuses tflite/model.int8-dynamic-per-channel.seq32.tflite" in printed
    md = (out / "report.md").read_text()
    assert "tflite int8-dynamic-per-channel (refused)" in md and "refused by target `rpi4`" in md
    assert "not on rpi4" in md


def test_converter_progress_switch_leaves_the_environment_as_it_was(monkeypatch):
    """litert-torch's [START]/[DONE] lines are switched off through LITERT_TORCH_SHOW_PROGRESS
    for the conversion only (the printed output is checked in tests/test_staging.py's
    --formats all run, which converts to TFLite)."""
    import os

    from edgeify.export.tflite_common import converter_progress

    monkeypatch.delenv("LITERT_TORCH_SHOW_PROGRESS", raising=False)
    with converter_progress(False):
        assert os.environ["LITERT_TORCH_SHOW_PROGRESS"] == "n"
    assert "LITERT_TORCH_SHOW_PROGRESS" not in os.environ
    monkeypatch.setenv("LITERT_TORCH_SHOW_PROGRESS", "y")
    with converter_progress(False):
        pass
    assert os.environ["LITERT_TORCH_SHOW_PROGRESS"] == "y"
