"""What a budget search writes: search.json (the whole state, for --resume and scripts),
search.md (budgets, time spent, each recipe, the candidates with their Pareto front, the
chosen artifact's deployment card) and pareto.png. Each file is written to a temporary
name and renamed, after every recipe, so an interrupted search keeps what it found."""

from __future__ import annotations

import json
from pathlib import Path

from edgeify import report_plots, staging

PNG = "pareto.png"


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    staging.apply_umask(tmp)
    tmp.replace(path)


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def _recipe_rows(state: dict) -> list[str]:
    lines = ["## Recipes", "", "| # | recipe | outcome | wall time | training time |", "|---|---|---|---|---|"]
    for i, r in enumerate(state["recipes"], 1):
        lines.append(f"| {i} | {r['recipe']} | {r['outcome']} | {_minutes(r.get('seconds'))} | "
                     f"{_minutes(r.get('train_seconds')) if r.get('train_seconds') else '-'} |")
    return lines + [""]


def _unit(state: dict) -> str:
    """What the latency column means: per batch-1 forward, or per decoded token."""
    return (state.get("reference") or {}).get("latency_unit") or "ms"


def _candidate_rows(state: dict) -> list[str]:
    ref = state.get("reference") or {}
    lines = ["## Candidates", "",
             f"Drop against the original model at seq len {ref.get('seq_len', '?')} on the same evaluation rows "
             f"({ref.get('name', 'metric')} {ref.get('value', '?')}); latency in {_unit(state)}; speed-up against "
             f"the original's PyTorch fp32 ({ref.get('pytorch_ms', '?')} {_unit(state)}), where the latency was "
             "measured here.", "",
             "| recipe | artifact | drop | latency | speed-up | basis | size MB | memory MB | Pareto | over budget |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    front = {p["artifact"] for p in state["pareto"]}
    for p in state["candidates"]:
        speedup = f"{p['speedup']:.1f}x" if p.get("speedup") else "-"
        lines.append(f"| {p['recipe']} | `{Path(p['artifact']).name}` ({p['format']} {p['precision']}) | "
                     f"{p['drop']:+.2f} | {p['latency_ms']:.2f} | {speedup} | {p['latency_basis']} | "
                     f"{p['size_mb']:.1f} | {p['memory_mb'] if p['memory_mb'] is not None else '-'} | "
                     f"{'yes' if p['artifact'] in front else ''} | {'; '.join(p['misses'])} |")
    return lines + [""]


def markdown(state: dict, card: str | None = None, plot: Path | None = None) -> str:
    best = state.get("best")
    lines = [f"# edgeify search: {state['model']} for {state['target']}", "",
             f"- budgets: {json.dumps(state['budgets'])}",
             f"- search wall time: {_minutes(state.get('seconds'))} ({len(state['recipes'])} recipes tried or "
             "skipped)"]
    if state.get("text_lengths"):
        t = state["text_lengths"]
        lines.append(f"- evaluation text lengths: p50 {t['p50']}, p90 {t['p90']}, p99 {t['p99']}, max {t['max']} "
                     f"tokens; shorter recipes run at seq len {state.get('short_seq_len') or '- (none fits)'}")
    lines.append("")
    lines += ([f"**Best within every budget: `{best['artifact']}`** ({best['recipe']}, {best['format']} "
               f"{best['precision']}): {best['unit']} drop {best['drop']:.2f}, {best['latency_ms']:.2f} {_unit(state)} "
               f"({best['latency_basis']})" + (f", {best['speedup']:.1f}x PyTorch" if best.get("speedup") else "")
               + f", {best['size_mb']:.1f} MB", ""] if best else
              [f"**Nothing fits every budget.** {state['verdict']}", ""])
    lines += _recipe_rows(state) + _candidate_rows(state)
    if plot is not None:
        lines += [f"![Pareto front]({plot.name})", ""]
    if card:
        lines += [card, ""]
    return "\n".join(lines) + "\n"


def write_plot(root: Path, state: dict) -> Path | None:
    """pareto.png: every candidate's drop vs latency, the front outlined, the best in red.
    None without candidates or without matplotlib (the tables still say it all)."""
    points = state["candidates"]
    if not points:
        return None
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    front = {p["artifact"] for p in state["pareto"]}
    best = (state.get("best") or {}).get("artifact")
    fig = Figure(figsize=(8, 5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    biggest = max(p["size_mb"] for p in points) or 1
    for p in points:
        on = p["artifact"] in front
        ax.scatter(p["latency_ms"], p["drop"], s=30 + 400 * p["size_mb"] / biggest, alpha=0.7,
                   c="#d62728" if p["artifact"] == best else ("#1f77b4" if on else "#9fb4cc"),
                   edgecolors="black" if on else "none")
    line = sorted((p for p in points if p["artifact"] in front), key=lambda p: p["latency_ms"])
    if len(line) > 1:
        ax.step([p["latency_ms"] for p in line], [p["drop"] for p in line], where="post", linestyle="--",
                color="#1f77b4", linewidth=1)
    budgets = state["budgets"]
    ax.axhline(budgets["max_accuracy_drop"], color="grey", linewidth=0.8, linestyle=":")
    if budgets.get("max_latency_ms"):
        ax.axvline(budgets["max_latency_ms"], color="grey", linewidth=0.8, linestyle=":")
    ax.set_xscale("log")
    ax.set_xlabel(f"latency, {_unit(state)} (log)")
    ax.set_ylabel(f"drop vs the original model ({points[0]['unit']}; lower is better)")
    ax.set_title(f"{state['model']}: every recipe's artifacts; outlined = Pareto front, red = chosen, "
                 "dotted = budgets", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return report_plots.save_atomically(fig, root / PNG)


def best_card(state: dict) -> str | None:
    """The chosen artifact's deployment card, from its own run's report."""
    best = state.get("best")
    if not best:
        return None
    from edgeify import deploy_card, report as run_report

    run_dir = Path(best["run_dir"])
    rep = json.loads((run_dir / "report.json").read_text())
    entry = next((a for a in rep["artifacts"] if str(run_dir / a["path"]) == best["artifact"]), None)
    if entry is None:
        return None
    why = f"the fastest artifact within every budget of the search ({best['recipe']})"
    return deploy_card.card(rep, entry, why, run_report.reproduce_command(rep), run_dir, level=2)


def write(root: Path, state: dict) -> None:
    plot = write_plot(root, state)
    try:
        card = best_card(state)
    except (OSError, ValueError, KeyError):  # a run dir moved or edited since: the tables still stand
        card = None
    _atomic_text(root / "search.json", json.dumps(state, indent=2, default=str) + "\n")
    _atomic_text(root / "search.md", markdown(state, card, plot))
