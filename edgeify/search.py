"""Budgets: search recipes (compression x length x format x precision) for the best
artifact that fits.

One recipe is one ordinary run (pipeline.run) with a compression setting and, where the
data's lengths allow, a shorter static length (search_recipes.py); each run already tries
every planned format and precision, so the search only walks the recipes, least lossy
first, skips those a measured run already rules out on latency, and stops at the first
recipe that yields an artifact within every budget. Every drop is measured against the
original model at the user's --seq-len (the first run's baseline) on the same evaluation
rows, so a shorter length pays for the rows it cuts. After each recipe the state is written
(search.json, search.md, pareto.png: search_report.py), so an interrupted search keeps what
it found, and `--resume` reuses each finished recipe's run instead of repeating it.

Latency against a budget is the target's: measured on the device (--device), else the
estimate for it (a target edgeify cannot time), else this host's measurement. For a causal
LM it is the time per decoded token (what a user of a cached decoder waits for), against
PyTorch fp32 with its cache: this host's decode rate, scaled by the device's (or the
estimate's) window forward over this host's when the target is not this host.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from edgeify import compress, metrics, search_report, staging, targets
from edgeify.errors import UsageError
from edgeify.evaluate import metric_drop
from edgeify.search_recipes import SKIP_MARGIN, Recipe, Shape, catalog, latency_floor, shape_of, short_length

DEFAULT_ACCURACY_DROP = 1.0
FIRST = Recipe("as is")


@dataclass(frozen=True)
class Budgets:
    max_accuracy_drop: float = DEFAULT_ACCURACY_DROP  # accuracy points, or % perplexity
    max_latency_ms: float | None = None
    max_size_mb: float | None = None
    max_memory_mb: float | None = None
    # at least this many times faster than PyTorch fp32 eager at --seq-len (a causal LM:
    # per decoded token), as the first run measures it here: a latency budget known only
    # once that run has timed PyTorch
    min_speedup: float | None = None

    def with_reference(self, reference: dict | None) -> "Budgets":
        """The latency budget a --min-speedup means against the first run's PyTorch p50."""
        if not self.min_speedup or not reference or not reference.get("pytorch_ms"):
            return self
        limit = reference["pytorch_ms"] / self.min_speedup
        return replace(self, max_latency_ms=min(limit, self.max_latency_ms or limit))

    def misses(self, c: dict) -> list[str]:
        """What a candidate is over, in words ([] = it fits)."""
        out = []
        if c["drop"] > self.max_accuracy_drop:
            out.append(f"{c['unit']} drop {c['drop']:.2f} > {self.max_accuracy_drop:g}")
        for key, limit, unit in (("latency_ms", self.max_latency_ms, "ms"), ("size_mb", self.max_size_mb, "MB"),
                                 ("memory_mb", self.max_memory_mb, "MB")):
            if limit is not None and c.get(key) is not None and c[key] > limit:
                out.append(f"{key.split('_')[0]} {c[key]:.1f} {unit} > {limit:g} {unit}")
        return out


PER_TOKEN = "ms per decoded token"
PER_FORWARD = "ms per batch-1 forward"


def _decode_ms(entry: dict) -> float | None:
    """A cached decoder's time per decoded token (its median decode rate), else None."""
    tps = (entry.get("generation") or {}).get("decode_tokens_per_s")
    return 1000.0 / tps if tps else None


def reference_of(report: dict) -> dict:
    """What every candidate is compared with: the original model in the first run, and
    PyTorch's latency in the unit the budget is in (per decoded token for a causal LM)."""
    base = report["baseline"]
    per_token = _decode_ms(base)
    forward = (base.get("latency_ms") or {}).get("p50")
    return {"name": base["metric"]["name"], "value": base["metric"]["value"], "seq_len": report["data"]["seq_len"],
            "pytorch_ms": round(per_token, 4) if per_token else forward,
            "latency_unit": PER_TOKEN if per_token else PER_FORWARD}


def budget_latency(entry: dict, per_token: bool) -> tuple[float, str, bool] | None:
    """The latency a budget judges for one artifact, where it comes from, and whether it
    was measured on this host (only then is a speed-up vs PyTorch here meaningful). None:
    a per-token budget and an artifact whose decoding was not timed (no figure in the
    budget's unit: a window forward's latency is not one)."""
    device, estimate = entry.get("device") or {}, entry.get("estimate") or {}
    here = entry["latency_ms"]["p50"]
    if device.get("p50"):
        latency, where = device["p50"], "measured on the device"
    elif estimate.get("latency_ms"):
        latency, where = estimate["latency_ms"], f"estimated for {estimate.get('target', 'the target')}"
    else:
        latency, where = here, "measured here"
    if not per_token:
        return latency, where, where == "measured here"
    decode = _decode_ms(entry)
    if decode is None:
        return None
    if where == "measured here":
        return decode, "decoding measured here", True
    # no decode loop runs on a device or in the estimator: scale this host's by the forward
    return decode * latency / here, f"decoding here x (window forward {where} / here)", False


def candidates(report: dict, recipe: str, run_dir: Path, reference: dict | None = None) -> list[dict]:
    """One point per artifact the target takes: its drop vs `reference` (default: this
    run's own baseline), and the latency, size and memory the budgets judge."""
    ref = reference or reference_of(report)
    per_token = ref.get("latency_unit") == PER_TOKEN
    out = []
    for a in report["artifacts"]:
        if (a.get("refused") or a.get("same_file_as")  # a copy of another file: timing noise could pick it
                or a.get("seq_len", report["data"]["seq_len"]) != report["data"]["seq_len"]):
            continue
        judged = budget_latency(a, per_token)
        if judged is None:
            continue
        latency, where, here = judged
        device = a.get("device") or {}
        out.append({
            "recipe": recipe, "run_dir": str(run_dir), "artifact": str(run_dir / a["path"]), "format": a["format"],
            "precision": a["precision"], "metric": a["metric"]["value"],
            "drop": round(metric_drop(a["metric"]["value"], ref["value"], ref["name"]), 4),
            "unit": metrics.get(ref["name"]).unit,
            "latency_ms": round(latency, 4), "latency_basis": where, "size_mb": round(a["size_bytes"] / 2**20, 3),
            "memory_mb": device.get("peak_rss_mb") or a.get("peak_rss_mb"),
            "speedup": round(ref["pytorch_ms"] / latency, 2) if here and ref.get("pytorch_ms") and latency else None,
        })
    return out


def pareto(points: list[dict]) -> list[dict]:
    """The points no other point beats on both accuracy drop and latency."""
    return [p for p in points
            if not any(q["drop"] <= p["drop"] and q["latency_ms"] <= p["latency_ms"]
                       and (q["drop"] < p["drop"] or q["latency_ms"] < p["latency_ms"]) for q in points)]


def best_fit(points: list[dict], budgets: Budgets) -> dict | None:
    fits = [p for p in points if not budgets.misses(p)]
    return min(fits, key=lambda p: (p["latency_ms"], p["size_mb"], p["drop"])) if fits else None


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _recipe_config(config, recipe: Recipe, run_dir: Path):
    seq = {"seq_len": recipe.seq_len, "extra_seq_lens": ()} if recipe.seq_len else {}
    return replace(config, compress=recipe.stages, out_dir=str(run_dir), force=True, **seq)


def _finished_run(run_dir: Path, config) -> dict | None:
    """The report of a recipe's earlier run with this very config (--resume), else None.
    A run dir appears only when its run finished (staging.py), so a report means done."""
    try:
        report = json.loads((run_dir / "report.json").read_text())
    except (OSError, ValueError):
        return None
    want = {**asdict(config), "compress": [compress.describe(c) for c in config.compress]}
    skip = {"out_dir", "force", "resume"}
    same = all(report.get("config", {}).get(k) == _jsonable(v) for k, v in want.items() if k not in skip)
    return report if same else None


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def _train_seconds(report: dict) -> float:
    return round(sum((st.get("info") or {}).get("seconds", 0.0) for st in report.get("stages") or []), 1)


def _root(config, log_fn) -> tuple[Path, dict | None]:
    """The search directory, and with --resume the state an earlier search left in it."""
    if config.compress:
        raise UsageError("budgets (--max-latency-ms, --max-size-mb, --max-memory-mb, --min-speedup) search "
                         "compression recipes themselves; drop --distill / --prune / --trim-vocab, or drop the budgets")
    root = staging.resolve(config.out_dir, config.model)
    if config.resume and (root / "search.json").is_file():
        log_fn(f"search: resuming in {root}: finished recipes are reused")
        return root, json.loads((root / "search.json").read_text())
    root = staging.check_out_dir(config, log_fn)  # the run's own default and overwrite rules
    root.mkdir(parents=True, exist_ok=True)
    staging.mark(root, "search")  # a later --force may replace it
    return root, None


class _Progress:
    """One bar over the recipes; the pipeline's "[k/5] ..." lines name the stage on it."""

    def __init__(self, log_fn, total: int):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc="search", unit="recipe", position=0, leave=False, mininterval=1.0)
        self.log_fn, self.recipe = log_fn, ""

    def log(self, msg: str) -> None:
        stage = re.match(r"\s*\[(\d+/\d+)\] (.{0,40})", msg)
        if stage:
            self.bar.set_postfix_str(f"{self.recipe[:40]} | {stage.group(1)} {stage.group(2)}", refresh=False)
        with self.bar.external_write_mode():
            self.log_fn(msg)

    def next(self, recipe: str, total: int) -> None:
        self.recipe, self.bar.total = recipe, total
        self.bar.set_description_str(f"search {self.bar.n + 1}/{total}")
        self.bar.set_postfix_str(recipe[:40])

    def close(self) -> None:
        self.bar.close()


def search(config, budgets: Budgets, run: Callable[..., dict], log_fn: Callable[[str], None] = print,
           recipes: tuple[Recipe, ...] | None = None) -> dict:
    """Run recipes in order until one gives an artifact within every budget.

    `config` is the user's config.RunConfig (its own --distill/--prune are not combined
    with the recipes: give budgets or compression flags, not both); `run(config, log_fn)`
    is pipeline.run. `recipes`: a fixed list instead of the catalog the first run's model
    shape and text lengths give. Returns the search state (also in search.json)."""
    if budgets.min_speedup and (config.device or not targets.get(config.target).measured):
        raise UsageError(f"--min-speedup compares with PyTorch timed on this host, and target {config.target!r}"
                         + (f" is timed on {config.device}" if config.device else " is estimated, not timed here")
                         + "; give --max-latency-ms for it instead")
    root, earlier = _root(config, log_fn)
    state = {"model": config.model, "target": config.target, "budgets": asdict(budgets), "recipes": [],
             "candidates": [], "pareto": [], "best": None, "verdict": "", "reference": None, "seconds": 0.0,
             # --resume: each earlier recipe run's wall time, by its directory
             "resumed": {r["dir"]: r.get("seconds") for r in (earlier or {}).get("recipes", []) if r.get("dir")}}
    queue, measured, started = list(recipes or (FIRST,)), [], time.perf_counter() - (earlier or {}).get("seconds", 0)
    progress = _Progress(log_fn, len(queue))
    try:
        while queue and not state["best"]:
            recipe = queue.pop(0)
            i = len(state["recipes"]) + 1
            progress.next(recipe.name, i + len(queue))
            outcome, report = _step(config, budgets, run, root, state, recipe, i, measured, progress.log)
            if i == 1 and recipes is None and report is not None:
                queue = list(_plan(report, Path(state["recipes"][0]["dir"]), state))
            state["seconds"] = round(time.perf_counter() - started, 1)
            search_report.write(root, state)  # the best so far survives a later failure or Ctrl-C
            progress.bar.update(1)
            if outcome == "accuracy only":
                break
    except KeyboardInterrupt:  # Ctrl-C or kill (errors.Terminated): what finished is kept, with its time
        state["seconds"] = round(time.perf_counter() - started, 1)
        search_report.write(root, state)
        done = sum(1 for r in state["recipes"] if r.get("dir"))
        log_fn(f"\nsearch interrupted after {state['seconds'] / 60:.1f} min: {done} finished recipe run(s) and "
               f"search.json are kept in {root}; the same command with --resume reuses them and goes on")
        raise
    finally:
        progress.close()
    _verdict(state, log_fn)
    state["seconds"] = round(time.perf_counter() - started, 1)
    search_report.write(root, state)
    state["output_dir"] = str(root)
    return state


def _plan(report: dict, run_dir: Path, state: dict) -> tuple[Recipe, ...]:
    """The catalog after the first run, from its model's shape and its texts' lengths."""
    from edgeify import families

    family = families.get(report["model"]["family"])
    shape = shape_of(run_dir, report, family)
    lengths = report["data"].get("text_lengths")
    short = short_length(lengths, report["data"]["seq_len"])  # None for an LM: its lengths are not profiled
    state.update(shape=asdict(shape), text_lengths=lengths, short_seq_len=short)
    return catalog(shape, report["data"]["seq_len"], short, causal=family.task.causal)[1:]


def _step(config, budgets: Budgets, run, root: Path, state: dict, recipe: Recipe, i: int,
          measured: list, log_fn) -> tuple[str, dict | None]:
    """Run (or reuse, or skip) one recipe and add its candidates. Returns ("accuracy
    only" when compressing further cannot help, else "") and the run's report (None:
    skipped)."""
    budgets = budgets.with_reference(state["reference"])
    shape = state.get("shape")
    floor = (latency_floor(recipe, measured, Shape(**shape), state["reference"]["seq_len"])
             if shape and budgets.max_latency_ms and measured else None)
    if floor is not None and floor > budgets.max_latency_ms * SKIP_MARGIN:
        log_fn(f"\n=== recipe {i}: {recipe.name}: skipped, it cannot beat {floor:.2f} ms "
               f"(> {budgets.max_latency_ms:g} ms budget x {SKIP_MARGIN:g})")
        state["recipes"].append({**recipe.describe(), "outcome": f"skipped: latency floor {floor:.2f} ms"})
        return "", None
    run_dir = root / "recipes" / f"{i}-{_slug(recipe.name)}"
    cfg = _recipe_config(config, recipe, run_dir)
    t0 = time.perf_counter()
    report = _finished_run(run_dir, cfg) if config.resume else None
    if report is not None:
        log_fn(f"\n=== recipe {i}: {recipe.name}: finished in an earlier search, reused ({run_dir})")
        seconds = state["resumed"].get(str(run_dir))
    else:
        log_fn(f"\n=== recipe {i}: {recipe.name} -> {run_dir}")
        report = run(cfg, log_fn=log_fn)
        seconds = round(time.perf_counter() - t0, 1)
    if state["reference"] is None:
        state["reference"] = reference_of(report)
        budgets = budgets.with_reference(state["reference"])
        state["budgets"] = asdict(budgets)
        if budgets.min_speedup:
            ref = state["reference"]
            log_fn(f"search: {budgets.min_speedup:g}x PyTorch fp32 ({ref['pytorch_ms']:.2f} {ref['latency_unit']} "
                   f"here) means at most {budgets.max_latency_ms:.3f} ms")
    points = candidates(report, recipe.name, run_dir, state["reference"])
    for p in points:
        p["misses"] = budgets.misses(p)
    if points:
        measured.append((recipe, min(p["latency_ms"] for p in points)))
    state["recipes"].append({**recipe.describe(), "dir": str(run_dir), "seconds": seconds,
                             "train_seconds": _train_seconds(report), "outcome": _outcome(points)})
    state["candidates"] += points
    state["pareto"] = pareto(state["candidates"])
    state["best"] = best_fit(state["candidates"], budgets)
    if state["best"]:
        log_fn(f"search: {state['best']['artifact']} fits every budget; stopping after {recipe.name}")
    elif points and all(m.startswith(("accuracy", "%")) for p in points for m in p["misses"]):
        # compressing further only costs accuracy: if accuracy is all that is missed, stop
        state["verdict"] = (f"every artifact so far misses only the accuracy budget "
                            f"({budgets.max_accuracy_drop:g}); more compression cannot fix that")
        return "accuracy only", report
    return "", report


def _outcome(points: list[dict]) -> str:
    fits = [p for p in points if not p["misses"]]
    if fits:
        return f"{len(fits)} of {len(points)} artifacts fit"
    return f"ran: none of {len(points)} artifacts fits"


def _verdict(state: dict, log_fn) -> None:
    if state["best"]:
        return
    tried = sum(1 for r in state["recipes"] if not r["outcome"].startswith("skipped"))
    closest = min(state["candidates"], key=lambda p: len(p["misses"]), default=None)
    state["verdict"] = (state["verdict"] or f"all {len(state['recipes'])} recipes tried or ruled out "
                        f"({tried} run)") + (f"; closest: {closest['artifact']} ({'; '.join(closest['misses'])})"
                                             if closest else "")
    log_fn(f"search: nothing fits every budget: {state['verdict']}")
