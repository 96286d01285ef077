"""Local model directories: a damaged weights file or config.json is the user's to fix,
so it is a UsageError (exit 2) naming the file, not a safetensors/torch/transformers error."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from edgeify.errors import UsageError
from edgeify.families.loader import load_local, peek_config
from tests.conftest import write_labelled_csv

FAST = ["--n-eval", "16", "--n-calibration", "8", "--bench-seconds", "0.2", "--seq-len", "32", "--formats", "onnx"]


@pytest.fixture()
def model_copy(starter_dir, tmp_path) -> Path:
    """A writable copy of the electra starter (damaged by each test)."""
    return Path(shutil.copytree(starter_dir("electra"), tmp_path / "mymodel"))


def _truncate(path: Path, keep: float = 0.5) -> None:
    os.truncate(path, int(path.stat().st_size * keep))


def _usage_error(path: Path) -> str:
    with pytest.raises(UsageError) as info:
        load_local(path)
    msg = str(info.value)
    assert info.value.exit_code == 2 and "\n" not in msg, msg
    return msg


def _err_line(capsys) -> str:
    """The CLI's stderr, which must be the one error line."""
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgeify: error: "), lines
    return lines[0]


@pytest.mark.parametrize("keep", [0.5, 0.0001, 0.0], ids=["half", "head", "empty"])
def test_truncated_safetensors(model_copy, keep):
    weights = model_copy / "model.safetensors"
    _truncate(weights, keep)
    msg = _usage_error(model_copy)
    assert msg.startswith(f"{weights} is corrupt or truncated (") and msg.endswith("; re-download or re-save it")


def test_truncated_safetensors_from_the_cli(model_copy, tmp_path, capsys):
    """`edgeify ./mymodel ...` and `edgeify eval ./mymodel` (PyTorch eager on the dir)."""
    from edgeify.cli import main

    weights = model_copy / "model.safetensors"
    _truncate(weights)
    data = write_labelled_csv(tmp_path / "reviews.csv")
    assert main([str(model_copy), "--data", str(data), "-o", str(tmp_path / "out"), *FAST]) == 2
    assert f"{weights} is corrupt or truncated" in _err_line(capsys)
    assert not (tmp_path / "out").exists()
    assert main(["eval", str(model_copy), "--data", str(data), "--seq-len", "32"]) == 2
    assert f"{weights} is corrupt or truncated" in _err_line(capsys)


def test_truncated_pytorch_model_bin(model_copy):
    import torch
    from safetensors.torch import load_file

    state = load_file(str(model_copy / "model.safetensors"))
    (model_copy / "model.safetensors").unlink()
    torch.save(state, model_copy / "pytorch_model.bin")
    load_local(model_copy)  # the whole file loads
    _truncate(model_copy / "pytorch_model.bin")
    assert _usage_error(model_copy).startswith(f"{model_copy / 'pytorch_model.bin'} is corrupt or truncated (")


@pytest.mark.parametrize("content, expected", [
    ("[]", "not a model config (a JSON list, expected an object)"),
    (None, "not a valid model config (Validation error for field 'num_hidden_layers'"),
])
def test_bad_config_json(model_copy, content, expected):
    cfg = model_copy / "config.json"
    if content is None:  # valid JSON, a value of the wrong type
        content = json.dumps(dict(json.loads(cfg.read_text()), num_hidden_layers="two"))
    cfg.write_text(content)
    msg = _usage_error(model_copy)
    assert msg.startswith(f"{cfg}: {expected}"), msg
    with pytest.raises(UsageError) as info:  # --plan and the run's checks read it the same way
        peek_config(str(model_copy))
    assert str(info.value) == msg
