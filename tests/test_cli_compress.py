"""`edgeify MODEL --distill --prune R --trim-vocab --int8`: stages compose, the report shows
what each bought, and an interrupted run resumes from its checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeify import compress
from edgeify.cli import main

FAST = ["--n-eval", "48", "--n-calibration", "32", "--bench-seconds", "0.2", "--bench-rounds", "1",
        "--seq-len", "32", "--epochs", "1"]


@pytest.fixture()
def reviews(tmp_path) -> Path:
    from edgeify.calibration import synthetic

    path = tmp_path / "reviews.csv"
    rows = ["sentence,label"] + [f'"{t}",{lab}' for t, lab in synthetic.labelled_reviews(400, seed=21)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_stages_compose_and_are_reported(tmp_path, starter_dir, reviews, capsys):
    model = starter_dir("electra")
    out = tmp_path / "out"
    assert main([str(model), "--distill", "--prune", "0.3", "--trim-vocab", "--int8", "--data", str(reviews),
                 "-o", str(out), *FAST]) == 0
    report = json.loads((out / "report.json").read_text())
    stages = report["stages"]
    assert [s["stage"] for s in stages] == ["distill", "prune", "trim-vocab"]
    params = [report["model"]["params"], *(s["params"] for s in stages)]
    assert params == sorted(params, reverse=True) and len(set(params)) == 4, params
    assert stages[0]["info"]["student_layers"] == 2
    assert stages[2]["info"]["embedding_cut_pct"] > 0
    for s in stages:
        assert s["metric"]["value"] > 0 and s["latency_ms"]["p50"] > 0
        assert (out / s["path"] / "config.json").exists()
    # the exported files are the last stage's model, checked against it (not the teacher)
    fp32 = report["artifacts"][0]
    assert fp32["parity"]["max_abs_diff"] < 1e-3
    assert [c["stage"] for c in report["config"]["compress"]] == ["distill", "prune", "trim-vocab"]
    md = (out / "report.md").read_text()
    assert "Compression stages" in md
    # every row of the Markdown table has the same cells (the parity header's pipes are escaped)
    import re

    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len({len(re.split(r"(?<!\\)\|", line)) for line in table}) == 1, table[:2]
    printed = capsys.readouterr().out
    assert "pytorch trim-vocab" in printed and "params M" in printed
    assert not (tmp_path / "out.checkpoints").exists()  # nothing left to resume


def test_interrupted_run_resumes(tmp_path, starter_dir, reviews, capsys, monkeypatch):
    """Ctrl-C in the prune stage: no output dir, the finished distill stage is kept; the same
    command with --resume skips it and finishes."""
    model = starter_dir("electra")
    out = tmp_path / "o"
    args = [str(model), "--distill", "--prune", "0.3", "--data", str(reviews), "-o", str(out), *FAST]

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setitem(compress._HANDLERS, compress.Prune, interrupted)
    assert main(args) == 130
    assert not out.exists()
    assert (tmp_path / "o.checkpoints" / "1-distill" / "edgeify_stage.json").exists()
    assert "--resume" in capsys.readouterr().out
    monkeypatch.undo()
    assert main([*args, "--resume"]) == 0
    assert "distill: finished in an earlier run" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert [s["stage"] for s in report["stages"]] == ["distill", "prune"]
    assert not (tmp_path / "o.checkpoints").exists()


def test_compression_needs_training_rows(tmp_path, starter_dir, labelled_csv, capsys):
    starter_dir("electra")
    code = main(["electra", "--distill", "--data", str(labelled_csv), "-o", str(tmp_path / "x"),
                 "--n-eval", "70", "--n-calibration", "10", "--seq-len", "32"])
    assert code == 2
    assert "training rows" in capsys.readouterr().err


def test_student_layers_needs_distill(capsys):
    assert main(["electra", "--student-layers", "2"]) == 2
    assert "need --distill" in capsys.readouterr().err


def test_two_processes_train_together(tmp_path, starter_dir, reviews):
    """`torchrun --nproc_per_node 2 -m edgeify ...` (what `accelerate launch` runs on GPUs):
    both processes train the student with synced gradients (each on half the batches);
    process 0 alone saves, evaluates, exports and writes the one report."""
    import os
    import subprocess
    import sys

    model = starter_dir("electra")
    out = tmp_path / "ddp"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "edgeify",
                           str(model), "--distill", "--data", str(reviews), "-o", str(out), *FAST],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads((out / "report.json").read_text())["stages"][0]["info"]
    assert info["processes"] == 2
    assert info["steps_per_epoch"] == info["train_rows"] // (32 * 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp", "reviews.csv"]


def test_gpt_neo_stages(tmp_path, starter_dir, capsys):
    """The causal-LM path: KD on next-token logits over text windows, perplexity per stage,
    the tied output head trimmed with the vocabulary."""
    from edgeify.calibration import synthetic

    model = starter_dir("gpt-neo")
    text = tmp_path / "text.txt"
    text.write_text("\n".join(synthetic.paragraphs(400, seed=31)) + "\n")
    out = tmp_path / "neo"
    assert main([str(model), "--distill", "--prune", "0.3", "--trim-vocab", "--data", str(text), "-o", str(out),
                 "--n-eval", "16", "--n-calibration", "8", "--bench-seconds", "0.2", "--bench-rounds", "1",
                 "--seq-len", "64", "--epochs", "1"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [s["stage"] for s in report["stages"]] == ["distill", "prune", "trim-vocab"]
    for s in report["stages"]:
        assert s["metric"]["name"] == "perplexity" and s["metric"]["value"] > 1
    trimmed = report["stages"][-1]
    assert trimmed["info"]["embedding_cut_pct"] >= 0
    assert trimmed["info"]["perplexity_shift_pct"] <= 0  # the kept tokens' softmax flatters, and says so
    assert "**warning**: the softmax now covers only" in (out / "report.md").read_text()
    assert report["artifacts"][0]["parity"]["max_abs_diff"] < 1e-3
