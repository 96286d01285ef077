"""The format records (runtimes.formats): `of(path)` is the one suffix lookup, each record
answers what the rest of edgeify asks, and a fourth format registered from outside edgeify
(tests/toy_format.py) flows through export, evaluation, timing, report and deployment card
with no other module touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeify.runtimes import PLUGINS_ENV, formats

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", formats.names())
def test_each_suffix_maps_back_to_its_record(name):
    record = formats.get(name)
    for suffix in record.suffixes:
        assert formats.of(f"some/dir/model.int8{suffix}") is record
        assert formats.of(f"MODEL{suffix.upper()}") is record  # a suffix is matched as lower case


@pytest.mark.parametrize("name", formats.names())
def test_each_record_names_a_cost_reader_and_writes_snippet_lines(name):
    record = formats.get(name)
    assert callable(record.cost_module().graph_cost)
    for decoder in (False, True):
        lines = record.snippet(formats.Snippet(f"{name}/model.fp32{record.suffixes[0]}", None, 2, decoder))
        assert lines and lines[-1].startswith("logits = ")


def test_unknown_suffixes_have_no_format_and_a_taken_suffix_is_refused():
    assert formats.of("inputs.npz") is None and formats.of("model_dir") is None
    onnx = formats.get("onnx")
    with pytest.raises(ValueError, match="suffix '.onnx' is already format 'onnx'"):
        formats.register_format(formats.Format(**{**vars(onnx), "name": "other"}))
    with pytest.raises(KeyError, match="accepted: onnx, openvino, tflite"):
        formats.get("npz")


@pytest.fixture()
def toy(monkeypatch):
    """The toy format registered here and, through EDGEIFY_PLUGINS, in every child process."""
    monkeypatch.setenv(PLUGINS_ENV, "tests.toy_format")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    import tests.toy_format as toy

    toy.register()
    yield toy
    toy.unregister()


def test_a_fourth_format_flows_through_the_whole_run(toy, tmp_path, starter_dir):
    import edgeify

    starter_dir("electra")
    out = tmp_path / "out"
    rep = edgeify.run("electra", formats="toy", out_dir=str(out), n_eval=48, n_calibration=32, seq_len=32,
                      bench_seconds=0.2, bench_rounds=1, log_fn=lambda *_: None)
    (entry,) = rep["artifacts"]
    assert (entry["format"], entry["precision"], entry["path"]) == ("toy", "fp32", "toy/model.fp32.toy")
    assert entry["runtime"] == toy.RUNTIME  # evaluated and timed by the toy runner, in the timing child too
    assert entry["latency_ms"]["p50"] > 0
    # the same weights run the same way: the toy file scores as the PyTorch model does
    assert entry["metric"]["value"] == pytest.approx(rep["baseline"]["metric"]["value"])
    assert entry["size_bytes"] == (out / entry["path"]).stat().st_size
    assert "toy fp32" in (out / "report.md").read_text()
    card = (out / "DEPLOY-toy-model.fp32.md").read_text()
    assert "from tests.toy_format import ToyRunner" in card and "`pip install" not in card
    # the card's snippet runs on its own, from the output directory, and prints a label
    code = card.split("```python\n", 1)[1].split("```", 1)[0]
    proc = subprocess.run([sys.executable, "-c", code], cwd=out, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    labels = list(json.loads((out / "pytorch" / "config.json").read_text())["id2label"].values())
    assert proc.stdout.strip() in labels


def test_the_toy_format_is_gone_after_its_test():
    assert "toy" not in formats.names()
    from edgeify import export

    assert "toy" not in export.formats()
