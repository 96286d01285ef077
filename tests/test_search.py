"""search.py: budgets over recipes, the Pareto front, early stopping, and that the best so
far is written after every recipe (unit tests on a recorded run function), plus one real
search end to end."""

from __future__ import annotations

import json

import pytest

from edgeify.errors import UsageError
from edgeify.config import RunConfig
from edgeify.search import Budgets, best_fit, pareto, search


def _point(drop, latency, size=10.0, memory=100.0, name="a"):
    return {"artifact": name, "drop": drop, "latency_ms": latency, "size_mb": size, "memory_mb": memory,
            "unit": "accuracy points"}


def test_pareto_front_and_best_fit():
    pts = [_point(0.0, 10, name="fp32"), _point(0.5, 5, name="int8"), _point(0.6, 6, name="worse"),
           _point(2.0, 4, name="fast-bad")]
    assert [p["artifact"] for p in pareto(pts)] == ["fp32", "int8", "fast-bad"]
    assert best_fit(pts, Budgets(max_accuracy_drop=1.0))["artifact"] == "int8"
    assert best_fit(pts, Budgets(max_accuracy_drop=1.0, max_latency_ms=4.5)) is None
    assert Budgets(max_accuracy_drop=1.0, max_latency_ms=4.5, max_size_mb=5).misses(pts[1]) == [
        "latency 5.0 ms > 4.5 ms", "size 10.0 MB > 5 MB"]


def _report(arts, base=80.0):
    return {"baseline": {"metric": {"name": "accuracy", "value": base}}, "data": {"seq_len": 128},
            "artifacts": [{"format": "onnx", "precision": p, "path": f"onnx/{p}.onnx", "seq_len": 128,
                           "metric": {"value": acc}, "latency_ms": {"p50": lat}, "size_bytes": int(mb * 2**20),
                           "peak_rss_mb": 200.0, **extra} for p, acc, lat, mb, extra in arts]}


class Recorder:
    """Stands in for pipeline.run: returns a prepared report per recipe, records configs."""

    def __init__(self, reports):
        self.reports, self.configs = list(reports), []

    def __call__(self, config, log_fn=print):
        self.configs.append(config)
        return self.reports[len(self.configs) - 1]


def test_stops_at_the_first_recipe_that_fits_and_writes_the_best(tmp_path):
    slow = _report([("fp32", 80.0, 20.0, 50, {}), ("int8-dynamic", 79.5, 12.0, 14, {})])
    fits = _report([("fp32", 79.8, 11.0, 30, {}), ("int8-dynamic", 79.4, 7.0, 9, {})])
    run = Recorder([slow, fits, slow])
    state = search(RunConfig(model="m", out_dir=str(tmp_path / "s")), Budgets(max_latency_ms=8.0), run,
                   log_fn=lambda *_: None)
    assert len(run.configs) == 2  # stopped early
    assert run.configs[0].compress == () and run.configs[1].compress[0].__class__.__name__ == "TrimVocab"
    assert state["best"]["recipe"] == "trim-vocab" and state["best"]["precision"] == "int8-dynamic"
    saved = json.loads((tmp_path / "s" / "search.json").read_text())
    assert saved["best"]["latency_ms"] == 7.0 and len(saved["candidates"]) == 4
    assert "Best within every budget" in (tmp_path / "s" / "search.md").read_text()


def test_estimated_latency_is_what_the_budget_judges_and_refused_are_skipped(tmp_path):
    rep = _report([("fp32", 80.0, 2.0, 50, {"estimate": {"latency_ms": 30.0, "target": "rpi4"}}),
                   ("int8-dynamic", 79.5, 1.0, 14, {"refused": "rpi4 cannot load it"})])
    state = search(RunConfig(model="m", out_dir=str(tmp_path / "s"), target="rpi4"), Budgets(max_latency_ms=10),
                   Recorder([rep] * 5), log_fn=lambda *_: None)
    assert [c["latency_basis"] for c in state["candidates"]][0] == "estimated for rpi4"
    assert all(c["precision"] == "fp32" for c in state["candidates"])
    assert state["best"] is None and "closest" in state["verdict"]


def test_accuracy_only_misses_stop_the_search(tmp_path):
    bad = _report([("fp32", 70.0, 5.0, 50, {})])
    run = Recorder([bad] * 5)
    state = search(RunConfig(model="m", out_dir=str(tmp_path / "s")), Budgets(max_size_mb=100), run,
                   log_fn=lambda *_: None)
    assert len(run.configs) == 1 and "more compression cannot fix that" in state["verdict"]


def test_budgets_and_compression_flags_do_not_mix(tmp_path):
    from edgeify import compress

    with pytest.raises(UsageError, match="drop --distill"):
        search(RunConfig(model="m", out_dir=str(tmp_path), compress=(compress.Prune(),)), Budgets(max_size_mb=1),
               Recorder([]))
    (tmp_path / "exists").mkdir()
    with pytest.raises(UsageError, match="already exists; use --force"):
        search(RunConfig(model="m", out_dir=str(tmp_path / "exists")), Budgets(max_size_mb=1), Recorder([]))


def test_cli_search_end_to_end(tmp_path, starter_dir, capsys, monkeypatch):
    """A real run under a size budget the int8 file meets: one recipe, the best written."""
    from edgeify.cli import main

    starter_dir("electra")
    out = tmp_path / "s"
    args = ["electra", "--int8", "-o", str(out), "--n-eval", "48", "--n-calibration", "32",
            "--bench-seconds", "0.2", "--bench-rounds", "1", "--seq-len", "32"]
    assert main([*args, "--max-size-mb", "1000"]) == 0
    state = json.loads((out / "search.json").read_text())
    assert [r["recipe"] for r in state["recipes"]] == ["as is"]
    assert state["best"] and (out / "recipes" / "1-as-is" / "report.json").exists()
    assert "search:" in capsys.readouterr().out
    # a latency no artifact meets, over the recipes there are (one here, to stay fast):
    # a plain failure, with what was found kept
    import edgeify.search

    monkeypatch.setattr(edgeify.search, "RECIPES", edgeify.search.RECIPES[:1])
    assert main([*args, "--max-latency-ms", "0.001", "--force"]) == 1
    err = capsys.readouterr().err
    assert "nothing fits every budget: all 1 recipes tried; closest:" in err and "latency" in err
    assert len(json.loads((out / "search.json").read_text())["candidates"]) == 3
    assert (out / "search.md").exists()
