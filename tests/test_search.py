"""search.py: budgets over recipes, the Pareto front, early stopping, and that the best so
far is written after every recipe (unit tests on a recorded run function), plus one real
search end to end."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from edgeify.errors import UsageError
from edgeify.config import RunConfig
from edgeify import compress
from edgeify.search import Budgets, best_fit, candidates, pareto, search
from edgeify.search_recipes import Recipe


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


def _report(arts, base=80.0, pytorch_p50=40.0, seq_len=128, cut_at=None):
    """A run's report as pipeline.run returns it, for the fields the search reads."""
    lengths = {"p50": 20, "p90": 40, "p99": 60, "max": 90, "truncated_pct": 0.0,
               "truncated_pct_at": cut_at or {"16": 80.0, "32": 40.0, "48": 12.0, "64": 0.9, "96": 0.0, "128": 0.0}}
    return {"baseline": {"metric": {"name": "accuracy", "value": base}, "path": "pytorch",
                         "latency_ms": {"p50": pytorch_p50}},
            "model": {"family": "electra"}, "data": {"seq_len": seq_len, "text_lengths": lengths},
            "artifacts": [{"format": "onnx", "precision": p, "path": f"onnx/{p}.onnx", "seq_len": seq_len,
                           "metric": {"value": acc}, "latency_ms": {"p50": lat}, "size_bytes": int(mb * 2**20),
                           "peak_rss_mb": 200.0, **extra} for p, acc, lat, mb, extra in arts]}


class Recorder:
    """Stands in for pipeline.run: writes what a finished run leaves that the search reads
    (report.json with the run's config, the baseline's config.json) and returns a
    prepared report per recipe; records the configs it was given."""

    def __init__(self, reports):
        self.reports, self.configs = list(reports), []

    def __call__(self, config, log_fn=print):
        from dataclasses import asdict

        from edgeify import compress

        self.configs.append(config)
        report = dict(self.reports[len(self.configs) - 1])
        report["data"] = {**report["data"], "seq_len": config.seq_len}
        report["artifacts"] = [{**a, "seq_len": config.seq_len} for a in report["artifacts"]]
        report["config"] = json.loads(json.dumps({**asdict(config), "compress": [compress.describe(c) for c in
                                                                                config.compress]}, default=str))
        out = Path(config.out_dir)
        (out / "pytorch").mkdir(parents=True, exist_ok=True)
        shape = ({"num_layers": 4, "hidden_size": 256, "num_heads": 4} if report["model"]["family"] == "gpt-neo"
                 else {"num_hidden_layers": 6, "hidden_size": 384, "num_attention_heads": 12})
        (out / "pytorch" / "config.json").write_text(json.dumps(shape))
        (out / "report.json").write_text(json.dumps(report))
        return report


def test_stops_at_the_first_recipe_that_fits_and_writes_the_best(tmp_path):
    """The as-is run's 12 ms rules out trim-vocab at the same length for an 8 ms budget
    (its floor is 12 ms), so the next recipe run is trim-vocab at 64 tokens, which cuts
    under 1% of the rows; drops are against the first run's baseline at 128 tokens."""
    slow = _report([("fp32", 80.0, 20.0, 50, {}), ("int8-dynamic", 79.5, 12.0, 14, {})])
    fits = _report([("fp32", 79.8, 11.0, 30, {}), ("int8-dynamic", 79.4, 7.0, 9, {})], base=79.9,
                   pytorch_p50=20.0)
    run = Recorder([slow, fits, slow])
    state = search(RunConfig(model="m", out_dir=str(tmp_path / "s"), extra_seq_lens=(256,)),
                   Budgets(max_latency_ms=8.0), run, log_fn=lambda *_: None)
    assert len(run.configs) == 2  # stopped early
    assert run.configs[0].compress == () and run.configs[0].seq_len == 128
    assert [c.__class__.__name__ for c in run.configs[1].compress] == ["TrimVocab"]
    assert (run.configs[1].seq_len, run.configs[1].extra_seq_lens) == (64, ())
    assert [r["outcome"].split(":")[0] for r in state["recipes"]] == ["ran", "skipped", "1 of 2 artifacts fit"]
    assert state["recipes"][1]["recipe"] == "trim-vocab" and "latency floor 12.00 ms" in state["recipes"][1]["outcome"]
    best = state["best"]
    assert best["recipe"] == "trim-vocab @ seq 64" and best["precision"] == "int8-dynamic"
    assert best["drop"] == pytest.approx(0.6)  # vs 80.0, the original model at 128 tokens, not 79.9
    assert best["speedup"] == pytest.approx(40.0 / 7.0, abs=0.01)  # vs PyTorch at 128 tokens
    saved = json.loads((tmp_path / "s" / "search.json").read_text())
    assert saved["best"]["latency_ms"] == 7.0 and len(saved["candidates"]) == 4
    assert saved["short_seq_len"] == 64 and saved["shape"] == {"layers": 6, "hidden": 384, "head_dim": 32}
    md = (tmp_path / "s" / "search.md").read_text()
    assert "Best within every budget" in md and "search wall time" in md and "| 2 | trim-vocab | skipped" in md
    assert (tmp_path / "s" / "pareto.png").stat().st_size > 1000


def test_min_speedup_is_a_latency_budget_from_the_first_runs_pytorch(tmp_path):
    """--min-speedup 5 against PyTorch's 40 ms in the first run is an 8 ms budget: the
    same search as the one above, decided the same way."""
    slow = _report([("fp32", 80.0, 20.0, 50, {}), ("int8-dynamic", 79.5, 12.0, 14, {})])
    fits = _report([("fp32", 79.8, 11.0, 30, {}), ("int8-dynamic", 79.4, 7.0, 9, {})])
    logs = []
    state = search(RunConfig(model="m", out_dir=str(tmp_path / "s")), Budgets(min_speedup=5), Recorder([slow, fits]),
                   log_fn=logs.append)
    assert state["budgets"]["max_latency_ms"] == 8.0 and state["best"]["recipe"] == "trim-vocab @ seq 64"
    assert state["best"]["speedup"] >= 5 and any("5x PyTorch fp32 (40.00 ms per batch-1 forward here) means at most 8.000 ms" in m
                                                  for m in logs)
    with pytest.raises(UsageError, match="--min-speedup compares with PyTorch timed on this host, and target 'rpi4'"):
        search(RunConfig(model="m", out_dir=str(tmp_path / "r"), target="rpi4"), Budgets(min_speedup=5), Recorder([]))


def test_catalog_reaches_a_tenth_of_the_work_and_drops_duplicates():
    from edgeify.search_recipes import Shape, catalog, short_length

    shape = Shape(layers=6, hidden=384, head_dim=32)
    cut = {"truncated_pct_at": {"32": 5.0, "48": 0.8, "64": 0.0, "128": 0.0}}
    assert short_length(cut, 128) == 48 and short_length(cut, 48) is None and short_length(None, 128) is None
    recipes = catalog(shape, 128, 48)
    names = [r.name for r in recipes]
    assert names[:3] == ["as is", "trim-vocab", "trim-vocab @ seq 48"] and len(set(names)) == len(names)
    work = [r.work(shape, 128) for r in recipes]
    assert work[:3] == [1.0, 1.0, 0.375]
    assert min(work) < 0.1  # a tenth of the forward's work is within reach
    assert "distill to 2 layers, hidden 192 + trim-vocab @ seq 48" in names
    two = catalog(Shape(layers=2, hidden=64, head_dim=64), 128, None)  # 1/3 and 1/4 of 2 layers are both 1
    assert len({(tuple(map(repr, r.stages)), r.seq_len) for r in two}) == len(two)
    assert not any("hidden" in r.name for r in two)  # half of one head is no head


def test_a_causal_lm_keeps_its_vocabulary_and_window():
    """Trimming an LM's vocabulary to the data's tokens renormalizes its softmax over them
    (a flattering perplexity on those texts) and its window is what perplexity is scored
    over: neither is a decoder recipe."""
    from edgeify.search_recipes import Shape, catalog

    recipes = catalog(Shape(layers=4, hidden=256, head_dim=64), 128, 48, causal=True)
    assert recipes[0].name == "as is" and len(recipes) > 4
    assert all(r.seq_len is None and not any(isinstance(s, compress.TrimVocab) for s in r.stages) for r in recipes)
    assert "distill to 1 layers, hidden 128" in [r.name for r in recipes]


def _decoder_report(decode_tps: dict, base_tps=100.0, estimate=None):
    """A causal LM's run: perplexity, window latencies and decode rates."""
    arts = [(p, 500.0 + i, 5.0, 60, {"generation": {"decode_tokens_per_s": tps}, **(estimate or {})})
            for i, (p, tps) in enumerate(decode_tps.items())]
    rep = _report(arts, base=500.0, pytorch_p50=30.0)
    rep["baseline"]["metric"]["name"] = "perplexity"
    rep["baseline"]["generation"] = {"decode_tokens_per_s": base_tps}
    rep["model"] = {"family": "gpt-neo"}
    return rep


def test_a_decoders_latency_budget_is_ms_per_decoded_token(tmp_path):
    """--min-speedup 10 on a decoder: a tenth of PyTorch's 10 ms per decoded token, not of
    its 30 ms window forward; the 1.0 ms/token int4 file fits, the 2 ms int8 one does not."""
    rep = _decoder_report({"fp32": 250.0, "int8-weights": 500.0, "int4-weights": 1000.0})
    state = search(RunConfig(model="m", out_dir=str(tmp_path / "s")), Budgets(min_speedup=10, max_accuracy_drop=3),
                   Recorder([rep]), log_fn=lambda *_: None)
    assert state["reference"]["latency_unit"] == "ms per decoded token" and state["reference"]["pytorch_ms"] == 10.0
    assert state["budgets"]["max_latency_ms"] == 1.0
    assert [c["latency_ms"] for c in state["candidates"]] == [4.0, 2.0, 1.0]
    assert state["best"]["precision"] == "int4-weights" and state["best"]["speedup"] == 10.0
    assert state["best"]["drop"] == pytest.approx(0.4)  # % perplexity, 502 vs 500
    assert "ms per decoded token" in (tmp_path / "s" / "search.md").read_text()
    # a target timed elsewhere: this host's decode, scaled by its window forward there / here
    est = _decoder_report({"int4-weights": 1000.0}, estimate={"estimate": {"latency_ms": 20.0, "target": "rpi4"}})
    (c,) = candidates(est, "as is", tmp_path)
    assert c["latency_ms"] == 4.0 and c["speedup"] is None and "estimated for rpi4" in c["latency_basis"]
    del est["artifacts"][0]["generation"]  # decoding not timed: no figure in the budget's unit
    assert candidates(est, "as is", tmp_path) == []


def test_resume_reuses_finished_recipes(tmp_path):
    slow = _report([("fp32", 80.0, 20.0, 50, {})])
    first = Recorder([slow] * 3)
    budgets = Budgets(max_latency_ms=0.5)
    cfg = RunConfig(model="m", out_dir=str(tmp_path / "s"), train_data="t.csv", eval_data="e.csv")
    search(cfg, budgets, first, log_fn=lambda *_: None,
           recipes=(Recipe("as is"), Recipe("trim-vocab", (compress.TrimVocab(),))))
    assert [c.train_data for c in first.configs] == ["t.csv", "t.csv"]  # every recipe trains on --train-data
    again = Recorder([slow] * 3)
    logs = []
    state = search(replace(cfg, resume=True), budgets, again, log_fn=logs.append,
                   recipes=(Recipe("as is"), Recipe("trim-vocab", (compress.TrimVocab(),)),
                            Recipe("prune", (compress.Prune(),))))
    assert len(again.configs) == 1 and again.configs[0].compress[0].__class__.__name__ == "Prune"
    assert sum("finished in an earlier search, reused" in m for m in logs) == 2
    assert [r["recipe"] for r in state["recipes"]] == ["as is", "trim-vocab", "prune"]


def test_an_interrupted_search_keeps_its_state_and_time(tmp_path):
    """Ctrl-C in the second recipe: search.json keeps the first with the time spent so far,
    the log says how to go on, and --resume reuses the first and runs the second."""
    class Interrupted(Recorder):
        def __call__(self, config, log_fn=print):
            if len(self.configs) == 1:
                raise KeyboardInterrupt
            return super().__call__(config, log_fn)

    slow = _report([("fp32", 80.0, 20.0, 50, {})])
    recipes = (Recipe("as is"), Recipe("trim-vocab", (compress.TrimVocab(),)))
    cfg = RunConfig(model="m", out_dir=str(tmp_path / "s"))
    logs = []
    with pytest.raises(KeyboardInterrupt):
        search(cfg, Budgets(max_latency_ms=0.5), Interrupted([slow] * 2), log_fn=logs.append, recipes=recipes)
    saved = json.loads((tmp_path / "s" / "search.json").read_text())
    assert [r["recipe"] for r in saved["recipes"]] == ["as is"] and saved["seconds"] > 0
    assert any("1 finished recipe run(s) and search.json are kept" in m and "--resume" in m for m in logs)
    again = Recorder([slow])
    state = search(replace(cfg, resume=True), Budgets(max_latency_ms=0.5), again, log_fn=lambda *_: None,
                   recipes=recipes)
    assert [c.compress[0].__class__.__name__ for c in again.configs] == ["TrimVocab"]
    assert [r["recipe"] for r in state["recipes"]] == ["as is", "trim-vocab"] and state["seconds"] >= saved["seconds"]


def test_estimated_latency_is_what_the_budget_judges_and_refused_are_skipped(tmp_path):
    rep = _report([("fp32", 80.0, 2.0, 50, {"estimate": {"latency_ms": 30.0, "target": "rpi4"}}),
                   ("int8-dynamic", 79.5, 1.0, 14, {"refused": "rpi4 cannot load it"})])
    state = search(RunConfig(model="m", out_dir=str(tmp_path / "s"), target="rpi4"), Budgets(max_latency_ms=10),
                   Recorder([rep] * 5), log_fn=lambda *_: None)
    assert [c["latency_basis"] for c in state["candidates"]][0] == "estimated for rpi4"
    assert all(c["precision"] == "fp32" for c in state["candidates"])
    twin = _report([("int8-dynamic", 79.5, 1.0, 14, {}),
                    ("int8-dynamic-accuracy-controlled", 79.5, 0.9, 14, {"same_file_as": "onnx/int8-dynamic.onnx"})])
    assert [c["precision"] for c in candidates(twin, "as is", tmp_path)] == ["int8-dynamic"]  # no copy competes
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


def test_cli_search_end_to_end(tmp_path, starter_dir, capsys):
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
    md = (out / "search.md").read_text()
    assert "## Deployment card" in md and "```python" in md  # the chosen artifact's card
    # a latency no artifact meets: the as-is run's measured latencies rule out every other
    # recipe unrun (none can do less than a fiftieth of the work); a plain failure, with
    # what was found kept
    assert main([*args, "--max-latency-ms", "0.001", "--force"]) == 1
    err = capsys.readouterr().err
    assert "nothing fits every budget:" in err and "(1 run); closest:" in err and "latency" in err
    state = json.loads((out / "search.json").read_text())
    assert len(state["candidates"]) == 3 and len(state["recipes"]) > 3
    assert all(r["outcome"].startswith("skipped: latency floor") for r in state["recipes"][1:])
    assert state["text_lengths"]["truncated_pct_at"]  # the data's lengths, read by the planner


def test_cli_search_of_a_decoder_end_to_end(tmp_path, starter_dir):
    """A real GPT-Neo search: the budget's latency is per decoded token, from the report's
    own generation timing, against PyTorch with its cache."""
    from edgeify.calibration import synthetic
    from edgeify.cli import main

    text = tmp_path / "text.txt"
    text.write_text("\n".join(synthetic.paragraphs(200, seed=3)) + "\n")
    out = tmp_path / "s"
    assert main([str(starter_dir("gpt-neo")), "--int8", "--data", str(text), "-o", str(out), "--n-eval", "8",
                 "--n-calibration", "8", "--bench-seconds", "0.2", "--bench-rounds", "1", "--seq-len", "32",
                 "--max-size-mb", "1000", "--max-accuracy-drop", "3"]) == 0
    state = json.loads((out / "search.json").read_text())
    assert state["reference"]["latency_unit"] == "ms per decoded token"
    report = json.loads((out / "recipes" / "1-as-is" / "report.json").read_text())
    assert state["reference"]["pytorch_ms"] == pytest.approx(
        1000 / report["baseline"]["generation"]["decode_tokens_per_s"], rel=1e-3)
    assert state["candidates"] and all(c["latency_basis"] == "decoding measured here" and c["speedup"]
                                       for c in state["candidates"])
    assert state["best"]["drop"] <= 3 and "ms per decoded token" in (out / "search.md").read_text()
