"""`edgeify MODEL --device user@host`: the run's artifacts timed and evaluated on the device
(a real sshd on 127.0.0.1, this venv's Python standing in for the device's), beside the
host's figures; a device that cannot be reached leaves the host's results intact."""

from __future__ import annotations

import json
import sys

import pytest

from edgeify.cli import main
from tests.sshd import free_port

FAST = ["--n-eval", "48", "--n-calibration", "16", "--bench-seconds", "0.6", "--seq-len", "32"]


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


def test_unreachable_device_keeps_the_host_results(starter_dir, tmp_path, capsys):
    starter_dir("electra")
    out = tmp_path / "out"
    assert main(["electra", "-o", str(out), *FAST, "--device", f"nobody@127.0.0.1:{free_port()}"]) == 0
    report = json.loads((out / "report.json").read_text())
    (entry,) = report["artifacts"]
    assert entry["latency_ms"]["p50"] > 0 and entry["metric"]["value"] > 0
    assert "unreachable: nothing accepts connections" in entry["device"]["error"]


def test_bad_device_spec_is_a_usage_error_before_any_work(tmp_path, capsys):
    assert main(["electra", "-o", str(tmp_path / "o"), "--device", "no-at-sign"]) == 2
    assert "user@host[:port]" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
