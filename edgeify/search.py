"""Budgets: search recipes (compression x format x precision) for the best artifact that fits.

One recipe is one ordinary run (pipeline.run) with a compression setting; each run
already tries every planned format and precision, so the search only walks the
compression axis, cheapest and most accurate first, and stops at the first recipe that
yields an artifact within every budget. After each recipe the candidates so far, their
Pareto front and the best one are written (search.json, search.md, pareto.png), so an
interrupted search keeps what it found.

Latency against a budget is the target's: measured on the device (--device), else the
estimate for it (a target edgeify cannot time), else this host's measurement.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from edgeify import compress, metrics, staging
from edgeify.errors import UsageError
from edgeify.evaluate import metric_drop

DEFAULT_ACCURACY_DROP = 1.0

# (name, compression stages), in the order tried: each costs more accuracy (or training)
# than the one before. Vocabulary trimming is lossless on the data (checked), so it comes first.
RECIPES: tuple[tuple[str, tuple], ...] = (
    ("as is", ()),
    ("trim-vocab", (compress.TrimVocab(),)),
    ("prune 30% + trim-vocab", (compress.Prune(ratio=0.3), compress.TrimVocab())),
    ("prune 50% + trim-vocab", (compress.Prune(ratio=0.5), compress.TrimVocab())),
    ("distill to half the layers + trim-vocab", (compress.Distill(), compress.TrimVocab())),
)


@dataclass(frozen=True)
class Budgets:
    max_accuracy_drop: float = DEFAULT_ACCURACY_DROP  # accuracy points, or % perplexity
    max_latency_ms: float | None = None
    max_size_mb: float | None = None
    max_memory_mb: float | None = None

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


def candidates(report: dict, recipe: str, run_dir: Path) -> list[dict]:
    """One point per artifact the target takes: its drop vs the original model, and the
    latency, size and memory the budgets judge."""
    base = report["baseline"]["metric"]
    out = []
    for a in report["artifacts"]:
        if a.get("refused") or a.get("seq_len", report["data"]["seq_len"]) != report["data"]["seq_len"]:
            continue
        device, estimate = a.get("device") or {}, a.get("estimate") or {}
        if device.get("p50"):
            latency, where = device["p50"], "measured on the device"
        elif estimate.get("latency_ms"):
            latency, where = estimate["latency_ms"], f"estimated for {estimate.get('target', 'the target')}"
        else:
            latency, where = a["latency_ms"]["p50"], "measured here"
        out.append({
            "recipe": recipe, "artifact": str(run_dir / a["path"]), "format": a["format"],
            "precision": a["precision"], "metric": a["metric"]["value"],
            "drop": round(metric_drop(a["metric"]["value"], base["value"], base["name"]), 4),
            "unit": metrics.get(base["name"]).unit,
            "latency_ms": latency, "latency_basis": where, "size_mb": round(a["size_bytes"] / 2**20, 3),
            "memory_mb": device.get("peak_rss_mb") or a.get("peak_rss_mb"),
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


def _write(root: Path, state: dict) -> None:
    """search.json and search.md, each written to a temp file and renamed."""
    lines = [f"# edgeify search: {state['model']} for {state['target']}", "",
             f"- budgets: {json.dumps(state['budgets'])}",
             f"- recipes tried: {', '.join(r['recipe'] for r in state['recipes'])}", ""]
    best = state.get("best")
    lines += ([f"**Best within every budget: `{best['artifact']}`** ({best['recipe']}, {best['format']} "
               f"{best['precision']}): {best['unit']} drop {best['drop']:.2f}, {best['latency_ms']:.2f} ms "
               f"({best['latency_basis']}), {best['size_mb']:.1f} MB", ""] if best else
              [f"**Nothing fits every budget.** {state['verdict']}", ""])
    lines += ["| recipe | artifact | drop | latency ms | basis | size MB | memory MB | Pareto | over budget |",
              "|---|---|---|---|---|---|---|---|---|"]
    front = {p["artifact"] for p in state["pareto"]}
    for p in state["candidates"]:
        lines.append(f"| {p['recipe']} | `{Path(p['artifact']).name}` ({p['format']} {p['precision']}) | "
                     f"{p['drop']:+.2f} | {p['latency_ms']:.2f} | {p['latency_basis']} | {p['size_mb']:.1f} | "
                     f"{p['memory_mb'] if p['memory_mb'] is not None else '-'} | "
                     f"{'yes' if p['artifact'] in front else ''} | {'; '.join(p['misses'])} |")
    for name, text in (("search.json", json.dumps(state, indent=2, default=str) + "\n"),
                       ("search.md", "\n".join(lines) + "\n")):
        tmp = root / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(root / name)


def search(config, budgets: Budgets, run: Callable[..., dict], log_fn: Callable[[str], None] = print,
           recipes: tuple[tuple[str, tuple], ...] | None = None) -> dict:
    """Run `recipes` in order until one gives an artifact within every budget.

    `config` is the user's config.RunConfig (its own --distill/--prune are not combined
    with the recipes: give budgets or compression flags, not both); `run(config, log_fn)`
    is pipeline.run. Returns the search state (also in search.json)."""
    if config.compress:
        raise UsageError("budgets (--max-latency-ms, --max-size-mb, --max-memory-mb) search compression "
                         "recipes themselves; drop --distill / --prune / --trim-vocab, or drop the budgets")
    root = staging.check_out_dir(config, log_fn)  # the run's own default and overwrite rules
    root.mkdir(parents=True, exist_ok=True)
    staging.mark(root, "search")  # a later --force may replace it
    recipes = RECIPES if recipes is None else recipes
    state = {"model": config.model, "target": config.target, "budgets": asdict(budgets),
             "recipes": [], "candidates": [], "pareto": [], "best": None, "verdict": ""}
    for i, (name, stages) in enumerate(recipes, 1):
        run_dir = root / "recipes" / f"{i}-{_slug(name)}"
        log_fn(f"\n=== recipe {i}/{len(recipes)}: {name} -> {run_dir}")
        report = run(replace(config, compress=stages, out_dir=str(run_dir), force=True), log_fn=log_fn)
        points = candidates(report, name, run_dir)
        for p in points:
            p["misses"] = budgets.misses(p)
        state["recipes"].append({"recipe": name, "dir": str(run_dir), "stages": [compress.describe(s) for s in stages]})
        state["candidates"] += points
        state["pareto"] = pareto(state["candidates"])
        state["best"] = best_fit(state["candidates"], budgets)
        _write(root, state)  # the best so far survives a later failure or Ctrl-C
        if state["best"]:
            log_fn(f"search: {state['best']['artifact']} fits every budget; stopping after {name}")
            break
        # compressing further only costs accuracy: if accuracy is all that is missed, stop
        if state["candidates"] and all(m.startswith(("accuracy", "%")) for p in points for m in p["misses"]):
            state["verdict"] = (f"every artifact so far misses only the accuracy budget "
                                f"({budgets.max_accuracy_drop:g}); more compression cannot fix that")
            break
    if not state["best"]:
        closest = min(state["candidates"], key=lambda p: len(p["misses"]), default=None)
        state["verdict"] = (state["verdict"] or f"all {len(state['recipes'])} recipes tried") + (
            f"; closest: {closest['artifact']} ({'; '.join(closest['misses'])})" if closest else "")
        log_fn(f"search: nothing fits every budget: {state['verdict']}")
    _write(root, state)
    state["output_dir"] = str(root)
    return state
