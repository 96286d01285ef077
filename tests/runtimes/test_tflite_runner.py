"""TFLite runner: broken files, the static sequence length, inputs and their dtypes,
input_names, the benchmark child process, and the standalone probe under the real
tflite-runtime 2.14 (a separate venv, as on Raspberry Pi OS)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

from edgeify import families
from edgeify.errors import EdgeifyError
from edgeify.runtimes import input_names, open_runner
from edgeify.runtimes.tflite_runner import PYTHONS_ENV, TfliteRunner

SENTENCES = [
    "the movie was not good but the soundtrack was really lovely",
    "honestly, the battery turned out quite useless.",
    "we arrived on monday, the staff was friendly",
]
SEQ = 20
# A Python with tflite-runtime 2.14 (as on Raspberry Pi OS): .ci/run makes one and names it
# in EDGEIFY_TFLITE_PYTHONS; EDGEIFY_TEST_TFLRT_PYTHON overrides.
TFLRT = Path(os.environ.get("EDGEIFY_TEST_TFLRT_PYTHON")
             or os.environ.get("EDGEIFY_TFLITE_PYTHONS", "").split(os.pathsep)[0]
             or "/work/venv-tflrt/bin/python")
PROBE = Path(__file__).resolve().parents[2] / "edgeify" / "runtimes" / "tflite_probe.py"


@pytest.fixture(scope="module")
def electra(starter_dir, tmp_path_factory):
    """(fp32 .tflite at SEQ tokens, tokenized feeds at (3, SEQ), int64) for the electra starter."""
    from edgeify.calibration.tokenize import encode_classification
    from edgeify.export.tflite import TfliteBackend
    from edgeify.families.loader import load_local

    loaded = load_local(starter_dir("electra"))
    feeds = encode_classification(loaded.tokenizer, SENTENCES, None, SEQ, loaded.family.onnx_inputs).inputs
    out = tmp_path_factory.mktemp("tflite-runner-electra")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(PYTHONS_ENV, raising=False)
        art = TfliteBackend().export(loaded.model, loaded.family, feeds, out)
    return art.path, feeds


def _one_line(msg: str, path: Path) -> None:
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    assert "Traceback" not in msg and len(msg) < len(str(path)) + 300, msg


# --- a working file --------------------------------------------------------------------

def test_runner_interface(electra):
    path, feeds = electra
    runner = open_runner(path, 2)
    assert isinstance(runner, TfliteRunner)
    assert set(runner.input_names) == set(families.get("electra").onnx_inputs)
    assert runner.runtime.startswith("ai-edge-litert ") and runner.threads == 2
    assert runner.seq_len == SEQ and runner.precision == "fp32"
    logits = runner.run(feeds)
    assert logits.shape == (3, 2) and logits.dtype == np.float32
    assert not np.allclose(logits[0], logits[1])  # real outputs, not a constant
    extra = dict(feeds, unused=np.zeros((3, SEQ), dtype=np.int64))
    np.testing.assert_array_equal(runner.run(extra), logits)


def test_int64_and_int32_feeds(electra):
    """The tokenizer gives int64; the file takes int32 (litert-torch downcasts): both work."""
    path, feeds = electra
    assert all(v.dtype == np.int64 for v in feeds.values())
    runner = open_runner(path, 1)
    got64 = runner.run(feeds)
    got32 = runner.run({k: v.astype(np.int32) for k, v in feeds.items()})
    np.testing.assert_array_equal(got64, got32)
    # one row at a time, any batch size
    np.testing.assert_array_equal(runner.run({k: v[1:2] for k, v in feeds.items()}), got64[1:2])


@pytest.mark.parametrize("seq_len", [12, SEQ + 4])
def test_wrong_sequence_length(electra, seq_len):
    path, feeds = electra
    runner = open_runner(path, 1)
    if seq_len < SEQ:
        other = {k: v[:, :seq_len] for k, v in feeds.items()}
    else:
        other = {k: np.pad(v, ((0, 0), (0, seq_len - SEQ))) for k, v in feeds.items()}
    with pytest.raises(EdgeifyError) as info:
        runner.run(other)
    assert str(info.value) == (f"this TFLite file takes sequences of exactly {SEQ} tokens "
                               f"(exported with --seq-len {SEQ}); got {seq_len}")


def test_missing_input(electra):
    path, feeds = electra
    runner = open_runner(path, 1)
    partial = {k: v for k, v in feeds.items() if k != "token_type_ids"}
    with pytest.raises(EdgeifyError) as info:
        runner.run(partial)
    assert str(info.value) == "model needs inputs ['token_type_ids']; got ['attention_mask', 'input_ids']"


def test_input_names_tflite(electra):
    path, _ = electra
    names = input_names(path)
    assert isinstance(names, tuple) and set(names) == set(families.get("electra").onnx_inputs)
    assert names == open_runner(path, 1).input_names


# --- files that are not a runnable TFLite model ----------------------------------------

@pytest.mark.parametrize("content", [os.urandom(4096), b"", b"TFL", b"\x00" * 64],
                         ids=["garbage", "empty", "three-bytes", "zeros"])
def test_open_not_a_flatbuffer(tmp_path, content):
    p = tmp_path / "model.tflite"
    p.write_bytes(content)
    for fn in (open_runner, lambda path, _threads: input_names(path)):
        with pytest.raises(EdgeifyError) as info:
            fn(p, 1)
        assert str(info.value) == f"{p}: not a TFLite flatbuffer (no TFL3 identifier)"


@pytest.mark.parametrize("keep", [0.5, 0.01], ids=["half", "head"])
def test_open_truncated(electra, tmp_path, keep):
    path, _ = electra
    data = path.read_bytes()
    p = tmp_path / "model.tflite"
    p.write_bytes(data[: int(len(data) * keep)])
    for fn in (open_runner, lambda path, _threads: input_names(path)):
        with pytest.raises(EdgeifyError) as info:
            fn(p, 1)
        msg = str(info.value)
        _one_line(msg, p)
        assert "cannot load TFLite model (" in msg or "not a TFLite flatbuffer" in msg, msg


def test_open_tfl3_identifier_with_garbage(tmp_path):
    """Passes the identifier check; the runtime's flatbuffer verifier refuses it."""
    p = tmp_path / "model.tflite"
    p.write_bytes(b"\x10\x00\x00\x00TFL3" + os.urandom(4096))
    with pytest.raises(EdgeifyError) as info:
        open_runner(p, 1)
    msg = str(info.value)
    _one_line(msg, p)
    assert msg.startswith(f"{p}: cannot load TFLite model ("), msg


# --- the benchmark child ---------------------------------------------------------------

def test_measure_in_child_process(electra):
    from edgeify.targets.local import measure

    path, feeds = electra
    result = measure(path, feeds, threads=1, max_seconds=0.2)
    assert result["p50"] > 0 and result["p90"] >= result["p50"]
    assert result["runs"] >= 30
    assert result["precision"] == "fp32"
    assert result["runtime"].startswith("ai-edge-litert ")
    assert (result["batch"], result["seq_len"], result["threads"]) == (3, SEQ, 1)


# --- the probe, under tflite-runtime 2.14 ----------------------------------------------

needs_tflrt = pytest.mark.skipif(
    not TFLRT.exists(), reason=f"no tflite-runtime 2.14 venv at {TFLRT} (set EDGEIFY_TEST_TFLRT_PYTHON)")


def _probe(python: Path | str, model: Path, tmp_path: Path, feeds=None) -> subprocess.CompletedProcess:
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, **(feeds or {"input_ids": np.ones((1, SEQ), np.int64)}))
    return subprocess.run([str(python), str(PROBE), str(model), str(inputs), str(tmp_path / "out.npy")],
                          capture_output=True, text=True, timeout=120)


@needs_tflrt
@pytest.mark.parametrize("content", [os.urandom(4096), b""], ids=["garbage", "empty"])
def test_probe_corrupt_file_on_tflite_runtime_214(tmp_path, content):
    p = tmp_path / "model.tflite"
    p.write_bytes(content)
    proc = _probe(TFLRT, p, tmp_path)
    assert proc.returncode == 0, proc.stderr[-500:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["runtime"] == "tflite-runtime 2.14.0"
    assert res["loads"] is False and isinstance(res["error"], str) and res["error"]
    assert not (tmp_path / "out.npy").exists()


@needs_tflrt
def test_probe_runs_on_tflite_runtime_214(electra, tmp_path):
    """The probe is standalone (numpy + tflite_runtime): same logits as the runner here."""
    path, feeds = electra
    proc = _probe(TFLRT, path, tmp_path, feeds)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {
        "runtime": "tflite-runtime 2.14.0", "loads": True, "runs": True}
    got = np.load(tmp_path / "out.npy")
    np.testing.assert_allclose(got, open_runner(path, 1).run(feeds), atol=1e-5, rtol=0)


@needs_tflrt
def test_probe_truncated_file_crashes_tflite_runtime_214(electra, tmp_path):
    """tflite-runtime 2.14 does not verify the flatbuffer: a truncated file kills the
    process (SIGSEGV) before any JSON is printed. This is why the check runs in a child."""
    path, _ = electra
    p = tmp_path / "model.tflite"
    data = path.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    proc = _probe(TFLRT, p, tmp_path)
    assert proc.returncode == -11 and proc.stdout.strip() == "", (proc.returncode, proc.stdout)
    # ai-edge-litert verifies it and says so
    here = _probe(Path(sys.executable), p, tmp_path)
    res = json.loads(here.stdout.strip().splitlines()[-1])
    assert res["loads"] is False and res["error"] == "The model is not a valid Flatbuffer buffer"


def test_runtime_agreement_thresholds():
    """Int8 rounding differences between runtimes pass; a runtime that mis-reads the file fails."""
    import numpy as np

    from edgeify.runtimes.tflite_runner import _agreement

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(32, 3))
    rounding = ref + rng.normal(scale=0.05, size=ref.shape)  # ~5% of the mean |logit|
    assert _agreement(rounding, ref)["same_results"] is True
    unrelated = rng.normal(size=ref.shape)
    res = _agreement(unrelated, ref)
    assert res["same_results"] is False and res["mean_abs_diff_relative"] > 0.5
    flipped = ref.copy()
    flipped[:8] = -flipped[:8]  # a quarter of the answers change
    assert _agreement(flipped, ref)["same_results"] is False
    assert _agreement(ref, ref) == {"max_abs_diff": 0.0, "mean_abs_diff_relative": 0.0,
                                    "argmax_agreement_pct": 100.0, "same_results": True}
