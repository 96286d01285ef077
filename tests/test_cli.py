"""The CLI end to end for each family, and every bad input: a clear one-line message,
the right exit code, and no partial output left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edgeify import families
from edgeify.cli import main

FAST = ["--n-eval", "48", "--n-calibration", "32", "--bench-seconds", "0.2", "--bench-rounds", "1", "--seq-len", "32"]


def without(args: list[str], option: str) -> list[str]:
    """`args` minus `option` and its value (a plain filter on values would also drop a
    '32' that belongs to another option)."""
    at = args.index(option)
    return args[:at] + args[at + 2:]


def _no_leftovers(parent: Path, name: str) -> None:
    assert not (parent / name).exists(), f"{parent / name} was left behind"
    partial = [p.name for p in parent.iterdir() if p.name.startswith(f".{name}.")] if parent.exists() else []
    assert partial == [], f"partial output left behind: {partial}"


@pytest.mark.parametrize("family", families.names())
def test_end_to_end_int8_report(family, tmp_path, starter_dir, capsys):
    starter_dir(family)  # build once per session; the CLI then finds it in the cache
    out = tmp_path / "out"
    assert main([family, "--int8", "-o", str(out), *FAST]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["family"] == family
    assert report["model"]["source"] == "starter"
    assert report["model"]["params"] > 0
    assert report["data"]["n_eval"] > 0 and report["data"]["n_calibration"] > 0
    assert report["target"]["name"] == "host" and report["target"]["threads"] >= 1
    metric = "perplexity" if family == "gpt-neo" else "accuracy"
    precisions = [a["precision"] for a in report["artifacts"]]
    if family == "gpt-neo":  # cached decoders: weight-only int8/int4 instead of static QDQ
        assert precisions == ["fp32", "int8-dynamic", "int8-weights", "int4-weights"]
        assert all(a["path"].startswith("onnx/decoder.") for a in report["artifacts"])
        base_ppl = report["baseline"]["metric"]["value"]
        for entry in report["artifacts"]:  # the Δ % column is % perplexity (it once was absolute)
            # (the values in the report are rounded to 4 decimals, the delta is from the exact ones)
            assert entry["metric_delta"] == pytest.approx(100 * (entry["metric"]["value"] - base_ppl) / base_ppl,
                                                          abs=0.01)
        for entry in [report["baseline"], *report["artifacts"]]:
            gen = entry["generation"]
            assert gen["new_tokens"] == 32 and gen["decode_tokens_per_s"] > 0 and gen["prefill_tokens_per_s"] > 0
        assert "decode tok/s" in (out / "report.md").read_text()
        # sliding-window perplexity: each window after --seq-len tokens of the text before it
        assert report["data"]["eval_context"] == 32 and "sliding window" in (out / "report.md").read_text()
    else:
        assert precisions == ["fp32", "int8-dynamic", "int8-static"]
    for entry in [report["baseline"], *report["artifacts"]]:
        assert entry["metric"]["name"] == metric and entry["metric"]["value"] > 0
        assert 0 < entry["latency_ms"]["p50"] <= entry["latency_ms"]["p90"]
        assert entry["size_bytes"] > 0 and entry["measured"] is True
        assert (out / entry["path"]).exists()
    fp32 = report["artifacts"][0]
    assert fp32["parity"]["max_abs_diff"] < 1e-3
    assert fp32["parity"]["argmax_agreement_pct"] > 99
    assert sum(a.get("selected", False) for a in report["artifacts"]) == 1
    assert {"torch", "transformers", "onnx", "onnxruntime"} <= set(report["versions"])
    assert "STARTER" in (out / "report.md").read_text()
    printed = capsys.readouterr().out
    assert "onnx int8-dynamic" in printed and "pytorch fp32" in printed


def _json_tail(out: str) -> dict:
    """The --json result printed after the streamed text."""
    return json.loads(out[out.rindex('{\n  "artifact"'):])


def test_generate_streams_from_a_run(tmp_path, starter_dir, capsys):
    """`edgeify generate` on a run's decoder: the tokenizer comes from the run's pytorch/,
    greedy output equals the PyTorch model's, speeds are reported."""
    starter_dir("gpt-neo")
    out = tmp_path / "out"
    assert main(["gpt-neo", "-o", str(out), *FAST]) == 0
    capsys.readouterr()
    args = ["--prompt", "the movie was", "--max-new-tokens", "12", "--ignore-eos", "--json"]
    assert main(["generate", str(out / "onnx" / "decoder.fp32.onnx"), *args]) == 0
    onnx_run = _json_tail(capsys.readouterr().out)
    assert onnx_run["new_tokens"] == 12 and onnx_run["decode_tokens_per_s"] > 0
    assert main(["generate", str(out / "pytorch"), *args]) == 0
    torch_run = _json_tail(capsys.readouterr().out)
    assert torch_run["text"] == onnx_run["text"] and torch_run["runtime"].startswith("torch")
    assert main(["generate", str(out / "onnx" / "decoder.fp32.onnx"), "--prompt", "the",
                 "--max-new-tokens", "100000"]) == 1
    assert "needs a cache of" in capsys.readouterr().err
    assert main(["generate", str(out / "onnx" / "decoder.fp32.onnx"), "--prompt", "the", "--top-p", "0"]) == 2


def test_help_and_targets(capsys):
    assert main(["--help"]) == 0
    assert "MODEL" in capsys.readouterr().out
    assert main(["targets"]) == 0
    assert "host" in capsys.readouterr().out


def test_console_script_installed():
    proc = subprocess.run(["edgeify", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and "version" in proc.stdout


def test_unknown_model(tmp_path, capsys):
    assert main(["bert-huge", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown model family 'bert-huge'" in err and "albert, electra, gpt-neo" in err
    assert "Traceback" not in err
    _no_leftovers(tmp_path, "o")


def test_unknown_format_and_target(tmp_path, capsys):
    assert main(["electra", "--formats", "pdf", "-o", str(tmp_path / "o")]) == 2
    assert "accepted formats are onnx" in capsys.readouterr().err
    assert main(["electra", "--target", "toaster", "-o", str(tmp_path / "o")]) == 2
    assert "unknown target 'toaster'; accepted: android-arm64, host" in capsys.readouterr().err
    _no_leftovers(tmp_path, "o")


@pytest.mark.parametrize("content,expected", [
    (None, "data file not found"),
    ("", "empty data file"),
    ("sentence,label\n", "empty data file"),
])
def test_missing_or_empty_data(tmp_path, starter_dir, capsys, content, expected):
    starter_dir("electra")
    data = tmp_path / "d.csv"
    if content is not None:
        data.write_text(content)
    assert main(["electra", "--data", str(data), "-o", str(tmp_path / "o"), *FAST]) == 2
    assert expected in capsys.readouterr().err
    _no_leftovers(tmp_path, "o")


def test_wrong_columns(tmp_path, starter_dir, labelled_csv, capsys):
    starter_dir("electra")
    assert main(["electra", "--data", str(labelled_csv), "--text-column", "review",
                 "-o", str(tmp_path / "o"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "no text column 'review'" in err and "sentence, label" in err
    _no_leftovers(tmp_path, "o")


def test_labels_the_model_does_not_have(tmp_path, starter_dir, capsys):
    starter_dir("electra")
    data = tmp_path / "d.tsv"
    data.write_text("text\tlabel\nhello there\tneutral\nnice\tpositive\nbad\tspam\n")
    assert main(["electra", "--data", str(data), "-o", str(tmp_path / "o"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "labels the model does not have: neutral, spam" in err
    assert "0=negative, 1=positive" in err
    _no_leftovers(tmp_path, "o")


def test_existing_output_dir_is_refused_then_forced(tmp_path, starter_dir, labelled_csv, capsys):
    starter_dir("electra")
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["electra", "--data", str(labelled_csv), "-o", str(out), *FAST]) == 2
    assert "already exists; use --force" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    # --force replaces only what edgeify wrote (tests/test_staging.py): not this folder
    assert main(["electra", "--data", str(labelled_csv), "-o", str(out), "--force", *FAST]) == 2
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()  # empty: a run may go there, and a later --force replaces it
    assert main(["electra", "--data", str(labelled_csv), "-o", str(out), "--force", *FAST]) == 0
    assert main(["electra", "--data", str(labelled_csv), "-o", str(out), "--force", *FAST]) == 0
    assert (out / "report.json").exists()
    _no_leftovers(tmp_path, "o.partial")  # no staging dirs left either


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_onnx_artifact(tmp_path, starter_dir, labelled_csv, capsys, damage):
    starter_dir("electra")
    out = tmp_path / "o"
    assert main(["electra", "--data", str(labelled_csv), "-o", str(out), *FAST]) == 0
    good = out / "onnx" / "model.fp32.onnx"
    bad = out / "onnx" / "bad.onnx"
    blob = good.read_bytes()
    bad.write_bytes(b"not an onnx model at all" * 10 if damage == "garbage" else blob[: len(blob) // 2])
    capsys.readouterr()
    assert main(["eval", str(bad), "--data", str(labelled_csv), "--seq-len", "32"]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and ("cannot load ONNX model" in err or "cannot read ONNX model" in err)
    assert "Traceback" not in err
    assert main(["bench", str(bad), "--seq-len", "32", "--seconds", "0.2"]) == 1
    assert str(bad) in capsys.readouterr().err
    # the good artifact still evaluates through the same subcommand
    assert main(["eval", str(good), "--data", str(labelled_csv), "--seq-len", "32"]) == 0
    assert json.loads(capsys.readouterr().out)["metric"]["name"] == "accuracy"


def test_ctrl_c_during_export_leaves_nothing(tmp_path, starter_dir, labelled_csv):
    starter_dir("electra")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # A shell that runs a job in the background (as CI does) starts it with SIGINT ignored,
    # and the child inherits that: it would finish the run and exit 0 (seen in CI). A user's
    # terminal delivers SIGINT with the default action, so give the child that.
    proc = subprocess.Popen([sys.executable, "-m", "edgeify.cli", "electra", "--int8", "--data",
                             str(labelled_csv), "-o", str(tmp_path / "o"), *FAST],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "export fp32" in line:
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=120)
    assert any("export fp32" in s for s in seen), seen
    assert proc.returncode == 130, (proc.returncode, err[-500:])
    assert "interrupted" in err
    _no_leftovers(tmp_path, "o")



def test_max_length_shorter_than_seq_len_is_a_usage_error(tmp_path, starter_dir, capsys):
    starter_dir("gpt-neo")
    out = tmp_path / "out"
    assert main(["gpt-neo", "-o", str(out), "--max-length", "16", *FAST]) == 2
    assert "--max-length 16 is shorter than --seq-len 32" in capsys.readouterr().err
    _no_leftovers(tmp_path, "out")


def _dev_tsv(path: Path, n: int) -> Path:
    """A GLUE-style dev file: tab-separated, no quoting, some texts opening with a quote."""
    quote = '"'
    path.write_text("sentence\tlabel\n" + "".join(
        f"{quote if i % 3 == 0 else ''}the movie was {'great' if i % 2 else 'awful'} {i}\t{i % 2}\n"
        for i in range(n)))
    return path


def test_small_dev_file_is_split_calibration_first_and_warned(tmp_path, starter_dir, capsys):
    """Issue 20: one 120-row file, 100 evaluation rows asked: 32 calibration rows are taken
    first (evaluation first left 20, and 1 on an 872-row file), the 88 evaluated are warned
    about in the terminal, report.md and report.json; `edgeify eval` then evaluates all 120."""
    starter_dir("electra")
    dev, out = _dev_tsv(tmp_path / "dev.tsv", 120), tmp_path / "out"
    assert main(["electra", "--int8", "--formats", "onnx", "--data", str(dev), "-o", str(out), "--n-eval", "100",
                 "--n-calibration", "32", "--seq-len", "32", "--bench-seconds", "0.3", "--bench-rounds", "1"]) == 0
    data = json.loads((out / "report.json").read_text())["data"]
    warning = f"evaluation: 88 rows of the 100 asked ({dev} has 120 rows; calibration took 32 of them first)"
    assert (data["n_calibration"], data["n_eval"]) == (32, 88)
    assert data["eval"] == data["calibration"] == str(dev)
    assert data["warnings"] == [warning] and data["dropped_duplicates"] == {"calibration": 0}
    assert f"- **data warning**: {warning}" in (out / "report.md").read_text()
    printed = capsys.readouterr().out
    assert f"warning: {warning}" in printed and f"data warning: {warning}" in printed
    fp32 = out / "onnx" / "model.fp32.onnx"
    assert main(["eval", str(fp32), "--data", str(dev), "--seq-len", "32"]) == 0
    assert json.loads(capsys.readouterr().out)["n_eval"] == 120  # every row (one was dropped before)


def test_too_few_calibration_rows_for_static_int8_is_refused_before_loading(tmp_path, capsys):
    """No starter is built (no starter_dir): the data is checked before any model loads."""
    dev = _dev_tsv(tmp_path / "dev.tsv", 40)
    assert main(["electra", "--int8", "--data", str(dev), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert (f"calibration: 20 rows from {dev}, fewer than the 32 a static int8 quantizer needs (--int8); "
            "give --calibration-data FILE (a train file), more rows, or a smaller --n-eval") in err
    _no_leftovers(tmp_path, "o")


def test_data_options_are_in_the_reproduce_command(monkeypatch):
    """--eval-data / --calibration-data / --train-data reach the RunConfig, and the report's
    command line gives them back (a run reproduced on other data is another run)."""
    import shlex
    from dataclasses import asdict

    from edgeify import compress, pipeline
    from edgeify.report import reproduce_command

    seen = []
    monkeypatch.setattr(pipeline, "run", lambda config, log_fn=None: seen.append(config))
    args = ["electra", "--int8", "--eval-data", "dev.tsv", "--calibration-data", "hub:glue@sst2:train",
            "--train-data", "my train.csv", "--prune", "0.3"]
    assert main(args) == 0
    config = seen[0]
    assert (config.data, config.eval_data, config.calibration_data, config.train_data) == (
        None, "dev.tsv", "hub:glue@sst2:train", "my train.csv")
    stages = [compress.describe(c) for c in config.compress]
    command = reproduce_command({"config": {**asdict(config), "compress": stages}})
    assert "--eval-data dev.tsv --calibration-data hub:glue@sst2:train --train-data 'my train.csv'" in command
    assert main(shlex.split(command)[1:]) == 0 and seen[1] == config
