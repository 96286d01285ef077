"""Runners: one interface over onnxruntime (.onnx) and PyTorch eager (model directory)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeify import families
from edgeify.errors import EdgeifyError, UsageError
from edgeify.runtimes import input_names, open_runner
from edgeify.runtimes.onnxruntime_runner import OnnxRuntimeRunner
from edgeify.runtimes.torch_runner import TorchRunner

SENTENCES = [
    "the movie was not good but the soundtrack was really lovely",
    "honestly, the battery turned out quite useless.",
    "we arrived on monday, the staff was friendly",
]


@pytest.fixture(scope="module")
def electra(starter_dir, tmp_path_factory):
    """(starter dir, exported fp32 .onnx, tokenized feeds)."""
    from edgeify.calibration.tokenize import encode_classification
    from edgeify.export.onnx import OnnxBackend
    from edgeify.families.loader import load_local

    path = starter_dir("electra")
    loaded = load_local(path)
    feeds = encode_classification(loaded.tokenizer, SENTENCES, None, 20, loaded.family.onnx_inputs).inputs
    out = tmp_path_factory.mktemp("runners-electra")
    art = OnnxBackend().export(loaded.model, loaded.family, feeds, out)
    return path, art.path, feeds


def test_onnx_and_torch_give_same_logits(electra):
    model_dir, onnx_path, feeds = electra
    ort_runner = open_runner(onnx_path, threads=1)
    torch_runner = open_runner(model_dir, threads=1)
    assert isinstance(ort_runner, OnnxRuntimeRunner) and isinstance(torch_runner, TorchRunner)
    a, b = ort_runner.run(feeds), torch_runner.run(feeds)
    assert a.shape == b.shape == (3, 2)
    assert a.dtype == b.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
    assert not np.allclose(a[0], a[1])  # real outputs, not a constant


def test_runner_interface(electra):
    model_dir, onnx_path, _ = electra
    names = families.get("electra").onnx_inputs
    ort_runner, torch_runner = open_runner(onnx_path, 2), open_runner(model_dir, 2)
    assert ort_runner.input_names == torch_runner.input_names == names
    assert ort_runner.runtime.startswith("onnxruntime ")
    assert torch_runner.runtime.startswith("torch ")
    assert ort_runner.precision == "fp32"
    assert torch_runner.precision == "float32"
    assert ort_runner.threads == torch_runner.threads == 2


def test_runners_ignore_extra_feeds(electra):
    model_dir, onnx_path, feeds = electra
    extra = dict(feeds, unused=np.zeros((3, 20), dtype=np.int64))
    np.testing.assert_array_equal(open_runner(onnx_path, 1).run(extra), open_runner(onnx_path, 1).run(feeds))


def test_onnx_runner_missing_input(electra):
    _, onnx_path, feeds = electra
    runner = open_runner(onnx_path, 1)
    partial = {k: v for k, v in feeds.items() if k != "token_type_ids"}
    with pytest.raises(EdgeifyError) as info:
        runner.run(partial)
    assert str(info.value) == ("model needs inputs ['token_type_ids']; "
                               "got ['attention_mask', 'input_ids']")


def test_input_names(electra):
    model_dir, onnx_path, _ = electra
    assert input_names(onnx_path) == ("input_ids", "attention_mask", "token_type_ids")
    assert input_names(model_dir) == ("input_ids", "attention_mask", "token_type_ids")


def test_input_names_gpt_neo_dir(starter_dir):
    assert input_names(starter_dir("gpt-neo")) == ("input_ids", "attention_mask")


# --- paths that are not runnable -------------------------------------------------------

def _one_line_naming(msg: str, path: Path) -> None:
    assert "\n" not in msg
    assert str(path) in msg


def test_open_missing_path(tmp_path):
    p = tmp_path / "model.onnx"
    with pytest.raises(UsageError) as info:
        open_runner(p, 1)
    assert str(info.value) == f"artifact not found: {p}"
    with pytest.raises(UsageError, match="artifact not found"):
        input_names(p)


def test_open_random_bytes_onnx(tmp_path):
    p = tmp_path / "random.onnx"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(EdgeifyError) as info:
        open_runner(p, 1)
    msg = str(info.value)
    _one_line_naming(msg, p)
    assert msg.startswith(f"{p}: cannot load ONNX model (")
    with pytest.raises(EdgeifyError) as info:
        input_names(p)
    _one_line_naming(str(info.value), p)
    assert str(info.value).startswith(f"{p}: cannot read ONNX model (")


def test_open_truncated_onnx(electra, tmp_path):
    _, onnx_path, _ = electra
    data = onnx_path.read_bytes()
    p = tmp_path / "truncated.onnx"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(EdgeifyError) as info:
        open_runner(p, 1)
    msg = str(info.value)
    _one_line_naming(msg, p)
    assert msg.startswith(f"{p}: cannot load ONNX model (")
    with pytest.raises(EdgeifyError) as info:
        input_names(p)
    _one_line_naming(str(info.value), p)


def test_open_empty_onnx(tmp_path):
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    with pytest.raises(EdgeifyError) as info:
        open_runner(p, 1)
    _one_line_naming(str(info.value), p)


def test_input_names_empty_onnx(tmp_path):
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    with pytest.raises(EdgeifyError):
        input_names(p)


def test_open_unknown_file_type(tmp_path):
    p = tmp_path / "model.pb"
    p.write_bytes(b"TFL3")
    with pytest.raises(UsageError) as info:
        open_runner(p, 1)
    assert str(info.value) == (f"{p}: not an artifact edgeify can run; accepted: .onnx file "
                               "(onnxruntime), .xml OpenVINO IR (openvino), .tflite file "
                               "(ai-edge-litert / tflite-runtime), Hugging Face model directory (PyTorch eager)")
    with pytest.raises(UsageError, match="not an artifact edgeify can run"):
        input_names(p)


def test_open_directory_without_config(tmp_path):
    with pytest.raises(UsageError, match="not an artifact edgeify can run"):
        open_runner(tmp_path, 1)


def test_open_model_dir_of_unsupported_type(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(UsageError) as info:
        open_runner(tmp_path, 1)
    assert "model_type 'bert' is not supported" in str(info.value)
