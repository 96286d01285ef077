"""targets.local.measure: latency and peak memory of an artifact, timed in a child process."""

from __future__ import annotations

import os
import platform

import numpy as np
import pytest

from edgeify import targets
from edgeify.errors import EdgeifyError, UsageError
from edgeify.targets.local import measure


def _small_onnx(path):
    """input_ids, attention_mask (batch, seq) int64 -> logits (batch, 2): a real, tiny graph."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(2, dtype=np.float32).reshape(1, 2), "w")
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    nodes = [
        helper.make_node("Mul", ["input_ids", "attention_mask"], ["masked"]),
        helper.make_node("Cast", ["masked"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["f", "axes"], ["s"], keepdims=1),
        helper.make_node("MatMul", ["s", "w"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
         for n in ("input_ids", "attention_mask")],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializer=[w, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return path


@pytest.fixture
def feeds():
    ids = np.arange(2 * 12, dtype=np.int64).reshape(2, 12)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def test_measure_small_onnx(tmp_path, feeds):
    from edgeify.runtimes import open_runner

    path = _small_onnx(tmp_path / "tiny.onnx")
    # the artifact really computes something: sum of masked ids times [0, 1]
    assert open_runner(path, 1).run(feeds).tolist() == [[0.0, 66.0], [0.0, 210.0]]
    r = measure(path, feeds, threads=1, warmup=2, max_seconds=0.01)
    assert 0 < r["p50"] <= r["p90"]
    assert r["mean"] > 0
    assert 30 <= r["runs"] <= 300
    assert r["peak_rss_mb"] > 0 and r["runtime_rss_mb"] > 0
    assert r["peak_rss_mb"] >= r["runtime_rss_mb"]
    assert r["load_s"] >= 0
    assert r["runtime"].startswith("onnxruntime ")
    assert r["precision"] == "fp32"
    assert (r["threads"], r["batch"], r["seq_len"]) == (1, 2, 12)


def test_measure_respects_max_runs(tmp_path, feeds):
    path = _small_onnx(tmp_path / "tiny.onnx")
    r = measure(path, feeds, threads=1, warmup=0, min_runs=3, max_runs=7, max_seconds=60.0)
    assert r["runs"] == 7


def test_measure_min_runs_with_zero_budget(tmp_path, feeds):
    path = _small_onnx(tmp_path / "tiny.onnx")
    r = measure(path, feeds, threads=1, warmup=0, min_runs=12, max_seconds=0.0)
    assert r["runs"] == 12


def test_measure_corrupt_artifact(tmp_path, feeds):
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"\x08\x07garbage" * 100)
    with pytest.raises(EdgeifyError) as info:
        measure(path, feeds, threads=1, max_seconds=0.01)
    msg = str(info.value)
    assert msg.startswith(f"benchmark of {path} failed: ")
    assert "cannot load ONNX model" in msg
    assert "\n" not in msg


def test_measure_missing_artifact(tmp_path, feeds):
    path = tmp_path / "missing.onnx"
    with pytest.raises(EdgeifyError) as info:
        measure(path, feeds, threads=1, max_seconds=0.01)
    assert str(info.value).startswith(f"benchmark of {path} failed: ")
    assert f"artifact not found: {path}" in str(info.value)


def test_measure_timeout(tmp_path, feeds):
    path = _small_onnx(tmp_path / "tiny.onnx")
    with pytest.raises(EdgeifyError) as info:
        measure(path, feeds, threads=1, timeout=0.01)
    assert str(info.value) == f"benchmark of {path} timed out after 0s"


def test_targets_registry():
    host = targets.get("host")
    assert host.name == "host" and host.measured and host.formats == ("onnx", "openvino", "tflite")
    assert host.threads >= 1 and host.env == ()
    assert targets.names() == ["android-arm64", "host", "jetson-orin-cpu", "rpi4", "rpi5", "x86-avx2",
                               "x86-avx512-vnni"]
    with pytest.raises(UsageError) as info:
        targets.get("raspberry-pi")
    assert str(info.value) == ("unknown target 'raspberry-pi'; accepted: android-arm64, host, jetson-orin-cpu, "
                               "rpi4, rpi5, x86-avx2, x86-avx512-vnni (aliases: android = android-arm64, "
                               "avx2 = x86-avx2, jetson = jetson-orin-cpu, rpi = rpi4, vnni = x86-avx512-vnni)")


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 only")
def test_x86_avx2_target_caps_the_isa_and_refuses_onnx():
    avx2 = targets.get("x86-avx2")
    assert dict(avx2.env)["ONEDNN_MAX_CPU_ISA"] == "AVX2" and avx2.measured
    avx2.check_format("openvino")
    with pytest.raises(UsageError) as info:
        avx2.check_format("onnx")
    assert "onnxruntime has no switch to cap its kernels" in str(info.value)


def test_measure_passes_the_target_env_to_the_child(tmp_path, feeds, monkeypatch):
    """The ISA cap must reach the timing process (where the runtime reads it), not ours."""
    import edgeify.targets.local as local

    seen = {}
    real_run = local.subprocess.run

    def spy(cmd, **kwargs):
        seen.update(kwargs["env"])
        return real_run(cmd, **kwargs)

    monkeypatch.setattr(local.subprocess, "run", spy)
    path = _small_onnx(tmp_path / "tiny.onnx")
    measure(path, feeds, threads=1, max_seconds=0.1, env=(("ONEDNN_MAX_CPU_ISA", "AVX2"),))
    assert seen["ONEDNN_MAX_CPU_ISA"] == "AVX2" and "ONEDNN_MAX_CPU_ISA" not in os.environ


def test_peak_rss_is_the_childs_own_not_the_parents(tmp_path, feeds):
    """ru_maxrss survives fork+exec on Linux; a big parent must not inflate the child's peak."""
    from edgeify.targets import local

    path = _small_onnx(tmp_path / "m.onnx")
    ballast = np.ones(600 * 2**20 // 8)  # 600 MiB resident in the parent
    ballast[::512] = 2.0
    res = local.measure(path, feeds, 1, max_seconds=0.1)
    assert res["peak_rss_mb"] < 500, res
    del ballast


def test_interleaved_rounds_one_input_set_per_artifact(tmp_path, feeds):
    """Files of different sequence lengths are timed in one interleaved run, each on its own inputs."""
    from edgeify.targets import local

    paths = [_small_onnx(tmp_path / "a.onnx"), _small_onnx(tmp_path / "b.onnx")]
    short = {k: v[:, :4] for k, v in feeds.items()}
    res = local.measure_interleaved(paths, [feeds, short], 1, rounds=1, seconds_per_round=0.05)
    assert [(r["batch"], r["seq_len"]) for r in res] == [feeds["input_ids"].shape, (2, 4)]
    with pytest.raises(ValueError, match="1 input sets for 2 artifacts"):
        local.measure_interleaved(paths, [feeds], 1, rounds=1)


def test_interleaved_rounds_report_median_of_rounds(tmp_path, feeds):
    from edgeify.targets import local

    paths = [_small_onnx(tmp_path / "a.onnx"), _small_onnx(tmp_path / "b.onnx")]
    res = local.measure_interleaved(paths, feeds, 1, rounds=3, seconds_per_round=0.05)
    assert len(res) == 2
    for r in res:
        assert len(r["rounds_p50"]) == 3
        assert r["p50"] == sorted(r["rounds_p50"])[1]
        assert r["runs"] >= 90
