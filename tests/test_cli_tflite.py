"""The CLI with TFLite: every precision written, evaluated, timed, and checked on each
TFLite runtime at hand; a file of the wrong sequence length is refused in one line."""

from __future__ import annotations

import json

from edgeify.cli import main
from tests.test_cli import FAST


def test_electra_int8_tflite(tmp_path, starter_dir, capsys):
    starter_dir("electra")
    out = tmp_path / "out"
    assert main(["electra", "--int8", "--formats", "tflite", "-o", str(out), *FAST]) == 0
    report = json.loads((out / "report.json").read_text())
    got = [(a["format"], a["precision"]) for a in report["artifacts"]]
    assert got == [("tflite", "fp32"), ("tflite", "fp16"), ("tflite", "int8-dynamic"), ("tflite", "int8-static")]
    for entry in report["artifacts"]:
        assert entry["metric"]["value"] > 0 and entry["latency_ms"]["p50"] > 0
        assert (out / entry["path"]).is_file() and entry["path"].endswith(".seq32.tflite")
        assert "GATHER_ND" not in entry["notes"]["ops"]
        assert all(r["same_results"] for r in entry["notes"]["runtimes"]), entry["notes"]["runtimes"]
    assert report["artifacts"][0]["parity"]["max_abs_diff"] < 1e-3
    assert sum(a.get("selected", False) for a in report["artifacts"]) == 1
    capsys.readouterr()
    # the file takes exactly 32 tokens: another length is a clear one-line error
    fp32 = out / report["artifacts"][0]["path"]
    assert main(["bench", str(fp32), "--seq-len", "64", "--seconds", "0.2"]) == 1
    err = capsys.readouterr().err
    assert "takes sequences of exactly 32 tokens" in err and "Traceback" not in err
    assert main(["bench", str(fp32), "--seq-len", "32", "--seconds", "0.2"]) == 0
