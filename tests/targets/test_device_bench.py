"""`edgeify MODEL --device user@host`: the run's artifacts timed and evaluated on the device
(a real sshd on 127.0.0.1, this venv's Python standing in for the device's), beside the
host's figures; a device that cannot be reached leaves the host's results intact."""

from __future__ import annotations

import json
import sys

import pytest

from edgeify.cli import main
from tests.sshd import free_port

FAST = ["--n-eval", "48", "--n-calibration", "32", "--bench-seconds", "0.6", "--bench-rounds", "1", "--seq-len", "32"]


def test_run_times_and_evaluates_on_the_device(sshd, starter_dir, tmp_path, capsys):
    starter_dir("electra")
    out = tmp_path / "out"
    assert main(["electra", "--int8", "-o", str(out), *FAST, "--device", f"{sshd.user}@127.0.0.1:{sshd.port}",
                 "--device-key", str(sshd.key), "--device-known-hosts", str(sshd.known_hosts),
                 "--device-python", sys.executable]) == 0
    report = json.loads((out / "report.json").read_text())
    for entry in report["artifacts"]:
        dev = entry["device"]
        assert "error" not in dev, dev
        assert dev["p50"] > 0 and dev["runtime"].startswith("onnxruntime") and dev["device"].endswith(str(sshd.port))
        # the device computes the same accuracy on the same rows with the same file
        assert dev["metric"]["value"] == pytest.approx(entry["metric"]["value"], abs=1e-6)
        assert dev["metric"]["n"] == entry["metric"]["n"]
    assert "device:" in capsys.readouterr().out


def test_unreachable_device_keeps_the_host_results_and_exits_1(starter_dir, tmp_path, capsys):
    """A device that measured nothing fails the run (exit 1), but only after the host's
    report is written and in place, and the one-line error says where it is and why."""
    starter_dir("electra")
    out = tmp_path / "out"
    port = free_port()
    assert main(["electra", "-o", str(out), *FAST, "--formats", "onnx", "--device", f"nobody@127.0.0.1:{port}"]) == 1
    report = json.loads((out / "report.json").read_text())
    (entry,) = report["artifacts"]
    assert entry["latency_ms"]["p50"] > 0 and entry["metric"]["value"] > 0
    assert "unreachable: nothing accepts connections" in entry["device"]["error"]
    assert report["device"] == {"address": f"nobody@127.0.0.1:{port}", "measured": 0, "failed": 1,
                                "error": entry["device"]["error"]}
    md = (out / "report.md").read_text()
    assert f"## Measured on the device nobody@127.0.0.1:{port}" in md and "measured none of the 1" in md
    assert not list(tmp_path.glob("out.*")) and not list(tmp_path.glob(".out*"))  # nothing left staged
    captured = capsys.readouterr()
    assert "measured none of the 1" in captured.out  # the terminal's device table
    (error,) = [ln for ln in captured.err.splitlines() if ln.startswith("edgeify: error:")]
    assert f"the host's report was written to {out / 'report.md'}" in error
    assert f"--device nobody@127.0.0.1:{port} measured none of the 1 artifacts" in error
    assert f"unreachable: nothing accepts connections on port {port}" in error


def test_bad_device_spec_is_a_usage_error_before_any_work(tmp_path, capsys):
    assert main(["electra", "-o", str(tmp_path / "o"), "--device", "no-at-sign"]) == 2
    assert "user@host[:port]" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
