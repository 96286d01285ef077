"""`edgeify eval`, `bench` and `generate` on inputs the artifact cannot take: a --seq-len past
the model's positions, a static shape or a decoder's cache, a damaged file, a bad --seconds.
Each is refused before anything runs, in one line naming the value and what is accepted."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from edgeify.cli import main
from tests.conftest import write_labelled_csv


@pytest.fixture(scope="module")
def electra_run(starter_dir, tmp_path_factory) -> Path:
    """A run's layout (pytorch/ + onnx/) with the starter's fp32 ONNX (512 positions, dynamic
    axes) and a copy whose inputs are fixed at batch 1 x 32 tokens, as other exporters write."""
    import onnx

    from edgeify.calibration.tokenize import encode_classification
    from edgeify.export.onnx import OnnxBackend
    from edgeify.families.loader import load_local

    run = tmp_path_factory.mktemp("electra-run")
    shutil.copytree(starter_dir("electra"), run / "pytorch")
    loaded = load_local(run / "pytorch")
    feeds = encode_classification(loaded.tokenizer, ["a fine film", "dull"], None, 32, loaded.family.onnx_inputs).inputs
    (run / "onnx").mkdir()
    art = OnnxBackend().export(loaded.model, loaded.family, feeds, run / "onnx")
    model = onnx.load(str(art.path))
    for tensor in model.graph.input:
        batch, seq = tensor.type.tensor_type.shape.dim
        batch.dim_value, seq.dim_value = 1, 32
    onnx.save(model, str(run / "onnx" / "static.onnx"))
    write_labelled_csv(run / "reviews.csv")
    return run


@pytest.fixture(scope="module")
def neo_run(starter_dir, tmp_path_factory) -> Path:
    """A GPT-Neo run's layout with an ONNX cached decoder holding 64 tokens, a copy of it cut
    to half its bytes, and a text long enough for windows of 100 tokens."""
    from edgeify.export import get_backend
    from edgeify.families.loader import load_local

    run = tmp_path_factory.mktemp("neo-run")
    shutil.copytree(starter_dir("gpt-neo"), run / "pytorch")
    loaded = load_local(run / "pytorch")
    (run / "onnx").mkdir()
    art = get_backend("onnx").export_decoder(loaded.model, loaded.family, run / "onnx", max_length=64)
    blob = art.path.read_bytes()
    (run / "onnx" / "truncated.onnx").write_bytes(blob[: len(blob) // 2])
    rng = random.Random(0)
    words = "the movie was good and the film is long but a story of people who like it".split()
    (run / "text.txt").write_text("\n".join(" ".join(rng.choice(words) for _ in range(30)) for _ in range(100)))
    return run


def _err_line(capsys) -> str:
    """stderr, which must be one error line."""
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgeify: error: "), lines
    assert "Traceback" not in lines[0] and len(lines[0]) < 400, lines[0]
    return lines[0]


# --- (d) --seq-len past what the artifact takes --------------------------------------------

def test_seq_len_past_the_model_positions(electra_run, capsys):
    """512 positions (the run's pytorch/config.json): onnxruntime's InvalidArgument before."""
    onnx_path, data = electra_run / "onnx" / "model.fp32.onnx", electra_run / "reviews.csv"
    expected = (f"--seq-len 1024: the model takes at most 512 tokens (its position limit in "
                f"{electra_run / 'pytorch' / 'config.json'}); use --seq-len 512 or less")
    assert main(["eval", str(onnx_path), "--data", str(data), "--seq-len", "1024"]) == 2
    assert _err_line(capsys) == f"edgeify: error: {expected}"
    assert main(["bench", str(onnx_path), "--seq-len", "1024", "--seconds", "0.2"]) == 2
    assert _err_line(capsys) == f"edgeify: error: {expected}"
    # the PyTorch baseline (the model directory itself): torch's IndexError before
    assert main(["eval", str(electra_run / "pytorch"), "--data", str(data), "--seq-len", "1024"]) == 2
    assert "--seq-len 1024: the model takes at most 512 tokens" in _err_line(capsys)


def test_seq_len_and_batch_against_a_static_onnx(electra_run, capsys):
    static, data = electra_run / "onnx" / "static.onnx", electra_run / "reviews.csv"
    expected = f"--seq-len 64: {static} takes sequences of exactly 32 tokens (a static input shape); use --seq-len 32"
    assert main(["eval", str(static), "--data", str(data), "--seq-len", "64"]) == 2
    assert _err_line(capsys) == f"edgeify: error: {expected}"
    assert main(["bench", str(static), "--seq-len", "64", "--seconds", "0.2"]) == 2
    assert _err_line(capsys) == f"edgeify: error: {expected}"
    assert main(["bench", str(static), "--seq-len", "32", "--batch", "2", "--seconds", "0.2"]) == 2
    assert _err_line(capsys) == (f"edgeify: error: --batch 2: {static} takes a batch of exactly 1 "
                                 "(a static input shape); use --batch 1")
    assert main(["bench", str(static), "--seq-len", "32", "--seconds", "0.2"]) == 0


def test_seq_len_past_the_decoder_cache(neo_run, capsys):
    """The decoder holds 64 tokens (the model 512): CacheFull, exit 1, before."""
    decoder = neo_run / "onnx" / "decoder.fp32.onnx"
    expected = f"--seq-len 100: {decoder}'s key/value cache holds 64 tokens; use --seq-len 64 or less"
    assert main(["eval", str(decoder), "--data", str(neo_run / "text.txt"), "--seq-len", "100"]) == 2
    assert _err_line(capsys) == f"edgeify: error: {expected}"
    assert main(["bench", str(decoder), "--seq-len", "100", "--seconds", "0.2"]) == 2
    assert _err_line(capsys) == f"edgeify: error: {expected}"


# --- (c) a damaged artifact says so ---------------------------------------------------------

def test_generate_on_a_truncated_decoder(neo_run, capsys):
    """It was "not a cached decoder edgeify can generate with": the predicate could not parse it."""
    bad = neo_run / "onnx" / "truncated.onnx"
    assert main(["generate", str(bad), "--prompt", "the movie"]) == 2
    line = _err_line(capsys)
    assert line.startswith(f"edgeify: error: {bad} is corrupt or truncated (") and "not a cached decoder" not in line
    assert line.endswith("; re-export it or copy it again")


def test_eval_and_bench_on_a_truncated_decoder(neo_run, capsys):
    bad = neo_run / "onnx" / "truncated.onnx"
    assert main(["eval", str(bad), "--data", str(neo_run / "text.txt"), "--seq-len", "32"]) == 1
    assert f"{bad}: cannot load ONNX model (corrupt or truncated file: " in _err_line(capsys)
    assert main(["bench", str(bad), "--seq-len", "32", "--seconds", "0.2"]) == 1
    assert f"{bad}: cannot read ONNX model (corrupt or truncated file: " in _err_line(capsys)


# --- (e) --seconds ----------------------------------------------------------------------------

@pytest.mark.parametrize("seconds", ["-5", "0"])
def test_bench_seconds_must_be_positive(electra_run, capsys, seconds):
    assert main(["bench", str(electra_run / "onnx" / "model.fp32.onnx"), "--seconds", seconds]) == 2
    err = capsys.readouterr().err
    assert f"Invalid value for '--seconds': {float(seconds)} is not in the range x>0" in err
