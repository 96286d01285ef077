"""pareto.png: accuracy (or perplexity) against latency for every model of a run, and the
Pareto front over them.

The latency axis is either what was timed on this host, or, for a target edgeify cannot
time (target.measured false), the per-artifact estimate for that device; the two are never
drawn together, and the title says which it is.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Sequence

from edgeify import metrics, staging


PNG = "pareto.png"


def pareto_front(points: Sequence, keys: Sequence[str] = ("drop", "latency")) -> list[int]:
    """Indices (in input order) of the points no other point dominates, every objective
    minimized: a point is dominated when another is no worse in every objective and better
    in one. Equal points do not dominate each other, so both stay.

    `points` are dicts holding `keys`, or tuples/lists whose first len(keys) items are the
    objectives (e.g. (drop, latency, size): size rides along, it is not minimized). A point
    with a missing or non-finite objective is never on the front."""
    n_obj = len(keys)

    def objectives(p) -> tuple[float, ...] | None:
        values = tuple(p[k] for k in keys) if isinstance(p, dict) else tuple(p[:n_obj])
        if len(values) < n_obj or any(v is None or not math.isfinite(v) for v in values):
            return None
        return values

    objs = [objectives(p) for p in points]
    front = []
    for i, a in enumerate(objs):
        if a is None:
            continue
        dominated = any(b is not None and j != i and all(y <= x for x, y in zip(a, b)) and b != a
                        for j, b in enumerate(objs))
        if not dominated:
            front.append(i)
    return front


def estimate_ms(entry: dict) -> float | None:
    """An entry's estimated latency on the target (ms), or None."""
    est = entry.get("estimate") or {}
    return est.get("latency_ms", est.get("estimated_ms"))


def estimate_target(report: dict) -> str | None:
    """The device the report's estimates are for, or None when nothing was estimated."""
    for entry in [report["baseline"], *report["artifacts"]]:
        if entry.get("estimate") and estimate_ms(entry) is not None:
            return entry["estimate"].get("target") or report["target"]["name"]
    return None


def int8_pick(report: dict) -> str | None:
    """The path of the int8 artifact picked on the measurements (the `*` row), or None: a run
    without --int8 for an estimated target has the target's pick as its selection."""
    chosen = (report.get("selection") or {}).get("chosen")
    return chosen if any(a["path"] == chosen and a.get("selected") for a in report["artifacts"]) else None


def chosen_paths(report: dict) -> dict[str, str]:
    """path -> why it is marked: the int8 pick on this host and the pick for the target."""
    sel = report.get("selection") or {}
    out = {}
    if int8_pick(report):
        out[int8_pick(report)] = "selected"
    choice = sel.get("target_choice") or {}
    if choice.get("chosen"):
        where = estimate_target(report) or report["target"]["name"]
        out[choice["chosen"]] = ("selected; " if choice["chosen"] in out else "") + f"chosen for {where}"
    return out


def plot_points(report: dict) -> tuple[list[dict], str]:
    """The points to draw and the latency axis label. Each point: label, drop (metric points
    or % perplexity worse than PyTorch fp32; negative = better), metric, latency (ms), size
    (bytes), refused, mark (why annotated, or ""). Only the main --seq-len: a shorter
    sequence is always faster, not a better model. Latency is the target's estimate when
    there are estimates; else, for cached decoders, the time per generated token (what
    their pick is made on); else the forward's p50 on this host."""
    from edgeify.evaluate import metric_drop

    base = report["baseline"]
    metric, ref = base["metric"]["name"], base["metric"]["value"]
    target = estimate_target(report)
    marks = chosen_paths(report)
    entries = [("pytorch fp32", base), *((f"pytorch {s['stage']}", s) for s in report.get("stages") or []),
               *((f"{a['format']} {a['precision']}", a) for a in report["artifacts"]
                 if a.get("seq_len", base.get("seq_len")) == base.get("seq_len"))]
    # cached decoders are chosen by their decode rate: plot the time per generated token
    decoding = not target and all((e.get("generation") or {}).get("decode_tokens_per_s") for _, e in entries)
    points = []
    for label, e in entries:
        if target:
            latency = estimate_ms(e)
        elif decoding:
            latency = 1000.0 / e["generation"]["decode_tokens_per_s"]
        else:
            latency = (e.get("latency_ms") or {}).get("p50")
        value = (e.get("metric") or {}).get("value")
        if latency is None or value is None or latency <= 0:
            continue  # e.g. no estimate for this one: never mix estimated and measured points
        points.append({"label": label, "drop": metric_drop(value, ref, metric), "metric": value,
                       "latency": float(latency), "size": e.get("size_bytes") or 0,
                       "refused": bool(e.get("refused")), "mark": marks.get(e.get("path", ""), "")})
    t = report["target"]
    threads = t.get("timing_threads") or t.get("threads")
    if target:
        axis = f"estimated latency on {target} (ms, not measured)"
    elif decoding:
        axis = f"ms per generated token on this host (1000 / decode tok/s, {threads} threads)"
    else:
        axis = f"latency on this host, p50 (ms, {threads} threads)"
    return points, axis


def write_pareto(report: dict, out_dir: Path) -> Path | None:
    """Draw pareto.png into out_dir (atomically: a temporary file, then a rename). None when
    there is nothing to draw; ImportError when matplotlib is missing."""
    points, axis = plot_points(report)
    if not points:
        return None
    # A bare Figure on the Agg canvas: no pyplot, so no global backend switch or figure
    # registry in the program that calls this (a notebook keeps its own backend).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metric = report["baseline"]["metric"]["name"]
    live = [p for p in points if not p["refused"]]  # a refused file is no option on the target
    front_ids = {id(live[i]) for i in pareto_front(live)}
    biggest = max(p["size"] for p in points) or 1
    fig = Figure(figsize=(10, 5.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    key = []  # each point is numbered on the plot and named in a key beside it: labels never overprint
    for n, p in enumerate(points, 1):
        on = id(p) in front_ids
        area = 40 + 600 * p["size"] / biggest
        color = "#bbbbbb" if p["refused"] else ("#d62728" if p["mark"] else ("#1f77b4" if on else "#7f9fbf"))
        ax.scatter(p["latency"], p["metric"], s=area, c=color, alpha=0.75,
                   edgecolors="black" if on else "none", linewidths=1.2, zorder=3)
        ax.annotate(str(n), (p["latency"], p["metric"]), ha="center", va="center", fontsize=7, zorder=4,
                    color="#666666" if p["refused"] else "black", fontweight="bold" if p["mark"] else "normal")
        key.append(f"{n:>2} {p['label']}" + (" (refused)" if p["refused"] else "") + (" *" if on else "")
                   + (f"  <- {p['mark']}" if p["mark"] else ""))
    fig.text(0.745, 0.5, "\n".join([*key, "", "* Pareto-optimal"]), ha="left", va="center",
             fontsize=7, family="monospace")
    line = sorted((p for p in points if id(p) in front_ids), key=lambda p: p["latency"])
    if len(line) > 1:
        ax.step([p["latency"] for p in line], [p["metric"] for p in line], where="post",
                color="#1f77b4", linewidth=1, linestyle="--", zorder=2, label="Pareto front")
        ax.legend(loc="best", fontsize=8)
    lats = [p["latency"] for p in points]
    if max(lats) / min(lats) > 10:
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
    if not metrics.get(metric).higher_is_better:
        ax.invert_yaxis()  # up is better on both kinds of model
    ax.set_xlabel(axis)
    better = "higher is better" if metrics.get(metric).higher_is_better else "lower is better, axis inverted"
    ax.set_ylabel(f"{metric} ({better})")
    t = report["target"]
    where = (f"estimated for {estimate_target(report)} (not measured)" if estimate_target(report)
             else f"measured on {t['name']}" if t.get("measured")
             else f"measured on this host, not on {t['name']}")
    ax.set_title(f"{report['model']['id']}: {metric} vs latency, {where}\n"
                 "marker area ∝ file size; outlined = Pareto-optimal; red = chosen; grey = refused by the target",
                 fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.margins(x=0.08, y=0.12)
    fig.tight_layout(rect=(0, 0, 0.74, 1))  # the key takes the right quarter
    return save_atomically(fig, Path(out_dir) / PNG)


def save_atomically(fig, path: Path) -> Path:
    """A temporary file beside `path`, renamed over it: a reader never sees half a PNG."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png")
        staging.apply_umask(Path(tmp))  # mkstemp made it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
