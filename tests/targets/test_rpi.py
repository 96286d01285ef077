"""Raspberry Pi targets: a TFLite file whose ops tflite-runtime 2.14 cannot load, or that
it runs wrongly, is refused with the reason, in the report and by `edgeify bench`.

The offending file here is real: transformers' own 2D -> 4D attention-mask code, converted
by litert-torch, lowers to GATHER_ND version 5, which tflite-runtime 2.14 rejects."""

from __future__ import annotations

import pytest

from edgeify import targets
from edgeify.errors import UsageError

pytest.importorskip("litert_torch")

from tests.tflrt import TFLRT, needs_tflrt  # noqa: E402


@pytest.fixture(scope="module")
def gather_nd_v5(starter_dir, tmp_path_factory):
    """The ELECTRA starter converted with a plain 2D attention mask (no edgeify wrapper)."""
    import litert_torch
    import torch

    from edgeify.families.loader import load_local

    model = load_local(starter_dir("electra")).model

    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    ids = torch.ones(1, 16, dtype=torch.long)
    path = tmp_path_factory.mktemp("gather-nd") / "plain.tflite"
    litert_torch.convert(Plain().eval(), (ids, torch.ones_like(ids))).export(str(path))
    return path


def test_rpi_alias_and_profiles():
    assert targets.get("rpi") == targets.get("rpi4")
    for name in ("rpi4", "rpi5"):
        pi = targets.get(name)
        assert pi.formats[0] == "tflite" and not pi.measured and pi.threads == 4
        assert pi.tflite_runtime == "tflite-runtime 2.14"
        with pytest.raises(UsageError, match="edgeify does not build OpenVINO for ARM boards"):
            pi.check_format("openvino")


def test_refusal_reasons_from_notes():
    pi, host = targets.get("rpi4"), targets.get("host")
    newer = {"ops_missing_in": {"tflite-runtime 2.14": ["GATHER_ND v5 (tflite-runtime 2.14 has up to v4)"]}}
    assert pi.refusal("tflite", newer) == ("rpi4 has tflite-runtime 2.14, which cannot load "
                                           "GATHER_ND v5 (tflite-runtime 2.14 has up to v4)")
    assert host.refusal("tflite", newer) is None
    assert pi.refusal("onnx", newer) is None
    wrong = {"ops_missing_in": {"tflite-runtime 2.14": []},
             "runtimes": [{"runtime": "ai-edge-litert 2.3.0", "same_results": True},
                          {"runtime": "tflite-runtime 2.14.0", "same_results": False, "max_abs_diff": 2.7,
                           "mean_abs_diff_relative": 1.0, "argmax_agreement_pct": 46.6}]}
    assert pi.refusal("tflite", wrong) == ("rpi4 has tflite-runtime 2.14, on which this file does not run "
                                           "correctly (results differ: mean |diff| 100% of the mean |logit|, "
                                           "argmax agreement 46.6%)")
    fine = {"ops_missing_in": {"tflite-runtime 2.14": []},
            "runtimes": [{"runtime": "tflite-runtime 2.14.0", "same_results": True}]}
    assert pi.refusal("tflite", fine) is None


def test_gather_nd_v5_flagged_and_refused(gather_nd_v5):
    from edgeify.runtimes.tflite_file import op_notes

    notes = op_notes(gather_nd_v5)
    assert notes["ops"]["GATHER_ND"] == [5]
    assert notes["ops_missing_in"] == {"tflite-runtime 2.14": ["GATHER_ND v5 (tflite-runtime 2.14 has up to v4)"]}
    assert "GATHER_ND" in targets.get("rpi5").refusal("tflite", notes)


def test_bench_refuses_on_rpi(gather_nd_v5, capsys):
    from edgeify.cli import main

    assert main(["bench", str(gather_nd_v5), "--target", "rpi", "--seq-len", "16", "--seconds", "0.2"]) == 1
    err = capsys.readouterr().err
    assert f"target 'rpi4' refuses {gather_nd_v5}: rpi4 has tflite-runtime 2.14, which cannot load GATHER_ND v5" in err
    assert "Traceback" not in err
    # the host runtime (ai-edge-litert) takes it
    assert main(["bench", str(gather_nd_v5), "--seq-len", "16", "--seconds", "0.2"]) == 0


@needs_tflrt
def test_the_op_table_is_what_tflite_runtime_214_loads(gather_nd_v5, tmp_path):
    """The refusal is not a guess: 2.14 really rejects the file, naming the op, and the
    committed op table is what tools/tflite_op_table.py measures on it."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np

    from edgeify.runtimes.tflite_ops import TABLES
    from edgeify.runtimes.tflite_runner import TfliteRunner, check_runtimes

    feeds = {"args_0": np.ones((1, 16), np.int64), "args_1": np.ones((1, 16), np.int64)}  # positional export
    _, pi = check_runtimes(gather_nd_v5, feeds, TfliteRunner(gather_nd_v5, 1).run(feeds), pythons=[str(TFLRT)])
    assert pi["loads"] is False and "GATHER_ND" in pi["error"] and "'5'" in pi["error"], pi

    root = Path(__file__).resolve().parents[2]
    tool = root / "tools" / "tflite_op_table.py"
    subprocess.run([sys.executable, str(tool), "build", str(tmp_path / "m")], check=True)
    subprocess.run([str(TFLRT), str(tool), "probe", str(tmp_path / "m"), str(tmp_path / "t.json")], check=True)
    measured = json.loads((tmp_path / "t.json").read_text())
    committed = json.loads((root / "edgeify" / "runtimes" / "tflite_ops" / TABLES["tflite-runtime 2.14"]).read_text())
    assert measured["runtime"] == "tflite-runtime 2.14.0"
    assert measured["max_version"] == committed["max_version"]
