"""report.json, report.md and the terminal summary table."""

from __future__ import annotations

import json
import logging
import platform
import shlex
from dataclasses import fields
from importlib import metadata
from pathlib import Path

from edgeify import deploy_card, metrics, report_device, report_plots
from edgeify.config import RunConfig
from edgeify.report_plots import estimate_ms

log = logging.getLogger(__name__)

LIBRARIES = ("edgeify", "torch", "transformers", "tokenizers", "onnx", "onnxruntime", "numpy",
             "openvino", "nncf", "ai-edge-litert", "ai-edge-quantizer", "tflite-runtime", "litert-torch")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            continue
    return out


def _fmt(value, digits=2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _stage_row(stage: dict) -> dict:
    lat = stage.get("latency_ms") or {}
    return {**_generation_cells(stage),
            "artifact": f"pytorch {stage['stage']}", "ran": "fp32", "metric": _fmt(stage["metric"]["value"]),
            "delta": f"{stage['metric_delta']:+.2f}", "p50": _fmt(lat.get("p50")), "p90": _fmt(lat.get("p90")),
            "speedup": f"{stage['speedup_vs_baseline']:.2f}x", "size": f"{stage['size_bytes'] / 2**20:.1f}",
            "params": f"{stage['params'] / 1e6:.2f}", "rss": "-", "parity": ""}


def rows(report: dict) -> list[dict]:
    """Baselines first, then each compression stage's PyTorch model, then artifacts; the
    fields the tables show. Rows at another --seq-len than the main one say so, and are
    compared with PyTorch at that length."""
    out = []
    bases = [report["baseline"], *report.get("other_baselines", [])]
    main_len = report["baseline"].get("seq_len")
    stages = report.get("stages") or []
    exported = stages[-1]["params"] if stages else report["model"]["params"]
    for entry in [*bases, *report["artifacts"]]:
        lat = entry.get("latency_ms") or {}
        par = entry.get("parity") or {}
        base = any(entry is b for b in bases)
        seq = f" seq{entry['seq_len']}" if entry.get("seq_len", main_len) != main_len else ""
        out.append({
            "artifact": f"{entry['format']} {entry['precision']}{seq}" + (" *" if entry.get("selected") else "")
                        + (" †" if entry.get("selected_overall") else "")
                        + (" (refused)" if entry.get("refused") else ""),
            "ran": str(entry.get("executed_precision", "")),
            "metric": _fmt(entry["metric"]["value"]),
            "delta": "" if base else f"{entry['metric_delta']:+.2f}",
            "p50": _fmt(lat.get("p50")), "p90": _fmt(lat.get("p90")),
            "speedup": "1.00x" if base else (f"{entry['speedup_vs_baseline']:.2f}x"
                                                       if entry.get("speedup_vs_baseline") else "-"),
            "size": f"{entry['size_bytes'] / 2**20:.1f}",
            "params": f"{(report['model']['params'] if base else exported) / 1e6:.2f}",
            "rss": _fmt(entry.get("peak_rss_mb"), 0),
            "parity": "" if base else (f"{par.get('max_abs_diff', float('nan')):.2g} / "
                                                f"{par.get('argmax_agreement_pct', float('nan')):.1f}%"),
            **_generation_cells(entry),
        })
    return out[:len(bases)] + [_stage_row(s) for s in stages] + out[len(bases):]


def _generation_cells(entry: dict) -> dict:
    gen = entry.get("generation") or {}
    return {"prefill": _fmt(gen.get("prefill_tokens_per_s"), 0), "decode": _fmt(gen.get("decode_tokens_per_s"), 1)}


def _headers(report: dict) -> dict[str, str]:
    metric = report["baseline"]["metric"]["name"]
    delta = metrics.get(metric).delta_header
    heads = {"artifact": "artifact", "ran": "ran as", "metric": metric, "delta": delta, "p50": "p50 ms",
             "p90": "p90 ms", "speedup": "speed-up", "size": "size MB", "params": "params M", "rss": "peak RSS MB",
             "parity": "max|Δlogit| / argmax agree"}
    if report["baseline"].get("generation"):  # a causal LM: its generation speed too
        heads.update(prefill="prefill tok/s", decode="decode tok/s")
    return heads


def terminal_table(report: dict) -> str:
    heads = _headers(report)
    data = rows(report)
    widths = {k: max(len(heads[k]), *(len(r[k]) for r in data)) for k in heads}
    line = "  ".join(heads[k].ljust(widths[k]) for k in heads)
    sep = "  ".join("-" * widths[k] for k in heads)
    body = ["  ".join(r[k].ljust(widths[k]) for k in heads) for r in data]
    # what --device measured, under the host's figures and never mixed into them
    return "\n".join([line, sep, *body, *selection_lines(report), *report_device.terminal_lines(report),
                      *data_warning_lines(report), *timing_lines(report)])


def selection_lines(report: dict, bold: str = "") -> list[str]:
    """The two answers (selection.py): the best int8 file (`*`) and the best file of any
    precision (`†`), which the deployment card follows."""
    sel = report.get("selection") or {}
    out = []
    if report_plots.int8_pick(report):
        out.append(f"`*` selected int8 artifact: {bold}{sel['chosen']}{bold} — {sel['reason']}" if bold else
                   f"* best int8 file: {sel['chosen']} — {sel['reason']}")
    overall = sel.get("overall") or {}
    if overall.get("chosen"):
        ran = f" (ran as {overall['executed_precision']})" if overall.get("executed_precision") else ""
        out.append(f"`†` best file overall: {bold}{overall['chosen']}{bold}{ran} — {overall['reason']}; "
                   "the deployment card follows it" if bold else
                   f"† best file overall: {overall['chosen']}{ran} — {overall['reason']}")
    return out


def timing_lines(report: dict, prefix: str = "timing warning: ") -> list[str]:
    """A machine busy while timing (targets.local.timing_summary): its speed-ups are suspect."""
    t = report.get("timing") or {}
    if not t.get("noisy"):
        return []
    return [prefix + f"the machine ran up to {t['spread']:.0%} slower than it can in {t['disturbed']} of "
            f"{t['rounds']} timing rounds, after {t['retimed']} re-timed (reference kernel on {t['threads']} "
            f"threads; rounds' p50 spread up to {t['p50_spread']:.0%}); latencies and speed-ups may be off "
            "— time again on an idle machine"]


def data_warning_lines(report: dict, prefix: str = "data warning: ") -> list[str]:
    """Sets smaller than asked (splits.select): a number on too few rows must say so."""
    return [prefix + w for w in report.get("data", {}).get("warnings") or []]


def _data_sources(d: dict) -> str:
    """Where calibration (and training) came from, when not from the evaluation data."""
    cal, train = d.get("calibration", d["eval"]), d.get("train")
    text = f" (calibration from {cal})" if cal != d["eval"] else ""
    if train and train not in (d["eval"], cal):
        text += f" (training rows from {train})"
    dropped = ", ".join(f"{n} {role}" for role, n in (d.get("dropped_duplicates") or {}).items() if n)
    return text + (f"; rows dropped as duplicates of evaluated text: {dropped}" if dropped else "")


def _text_length_line(d: dict) -> list[str]:
    """The evaluation texts' lengths, and what each shorter static length would cut."""
    t = d.get("text_lengths")
    if not t:
        return []
    cuts = ", ".join(f"{n}: {pct:g}%" for n, pct in t["truncated_pct_at"].items())
    return [f"- evaluation text lengths: p50 {t['p50']}, p90 {t['p90']}, p99 {t['p99']}, max {t['max']} tokens; "
            f"{t['truncated_pct']:g}% of rows cut at seq len {d['seq_len']} (rows cut at each length: {cuts})"]


def _generation_line(report: dict) -> list[str]:
    gen = report["baseline"].get("generation")
    if not gen:
        return []
    return [f"- generation: greedy, {gen['prompt_tokens']}-token prompt then {gen['new_tokens']} new tokens, "
            "batch 1, each model with its key/value cache (PyTorch: Hugging Face's DynamicCache); "
            "p50 ms is one forward over the whole window from an empty cache"]


def _stage_lines(stages: list[dict]) -> list[str]:
    """The compression stages: what each cut, its settings, and any warning it raised."""
    if not stages:
        return []
    lines = ["## Compression stages", "",
             "Each stage's PyTorch model, evaluated and timed beside the original (the first "
             "baseline row); the last one is what was exported.", ""]
    for s in stages:
        before, after = s["info"]["before"], s["info"]["after"]
        lines.append(f"- **{s['stage']}** → `{s['path']}`: {before['params']:,} → {after['params']:,} "
                     f"parameters (embeddings {before['embedding_params']:,} → {after['embedding_params']:,}); "
                     f"config `{json.dumps(s['config'])}`")
        details = {k: v for k, v in s["info"].items() if k not in ("before", "after", "warning")}
        lines.append(f"  - `{json.dumps(details, default=str)}`")
        if s["info"].get("warning"):
            lines.append(f"  - **warning**: {s['info']['warning']}")
    return lines + [""]


def markdown(report: dict, out_dir: Path | None = None, pareto: Path | None = None,
             cards: list[tuple[str, str]] | None = None) -> str:
    """report.md. With `out_dir`, the deployment cards read each chosen file's inputs from it;
    `pareto`: the plot to link; `cards`: deploy_card.cards() when already made."""
    m, d, t = report["model"], report["data"], report["target"]
    heads = _headers(report)
    where = report_device.latency_where(report)
    lines = [f"# edgeify report: {m['id']}", ""]
    if m["source"] == "starter":
        held = (m.get("starter") or {}).get("held_out", {})
        lines += [f"> **STARTER MODEL** — not a pretrained model. A small {m['family']} trained "
                  f"offline by edgeify on its own generated data (held-out {held.get('name')}: "
                  f"{held.get('value')}). Use a real checkpoint for real numbers.", ""]
    lines += [
        f"- model: `{m['id']}` ({m['family']}, {m['task']}, {m['params']:,} parameters, source: {m['source']})",
        f"- data: {d['eval']} — {d['n_eval']} evaluation / {d['n_calibration']} calibration samples, seq len {d['seq_len']}"
        + _data_sources(d)
        + (f"; perplexity over each window after {d['eval_context']} unscored tokens of the text before it "
           "(sliding window)" if d.get("eval_context") else ""),
        *_text_length_line(d),
        *data_warning_lines(report, "- **data warning**: "),
        *timing_lines(report, "- **timing warning**: "),
        f"- target: `{t['name']}` — {t['description']}, {t['threads']} threads; CPU: {t['cpu']}",
        f"- latency: batch 1, seq {'/'.join(map(str, d.get('seq_lens') or [d['seq_len']]))}, {where}",
        *_generation_line(report),
        "",
        f"## {_host_title(report)}",
        "",
        "| " + " | ".join(h.replace("|", "\\|") for h in heads.values()) + " |",
        "|" + "|".join("---" for _ in heads) + "|",
    ]
    lines += ["| " + " | ".join(r[k] for k in heads) + " |" for r in rows(report)]
    lines.append("")
    sel = report.get("selection")
    if sel and report_plots.int8_pick(report):
        lines += [line for text in selection_lines(report, bold="**") for line in (text, "")]
    for a in report["artifacts"]:
        if a.get("refused"):
            lines += [f"> **{a['path']}** refused by target `{t['name']}`: {a['refused']}", ""]
        elif a.get("notes", {}).get("warning"):
            lines += [f"> **{a['path']}**: {a['notes']['warning']}", ""]
        if a.get("same_file_as"):
            lines += [f"> **{a['path']}**: nothing needed reverting, so it is {a['same_file_as']} again "
                      "(not a second candidate)", ""]
        if a.get("notes", {}).get("plain_load_runs") not in (None, "f32"):
            # a reference row timed in another precision than a plain load gets here
            lines += [f"> **{a['path']}** (ran as {a.get('executed_precision')}): {a['notes']['precision_as_run']}", ""]
    lines += report_device.markdown_lines(report)
    lines += estimated_table(report) + _target_choice_lines(report)
    if pareto is not None:
        est = report_plots.estimate_target(report)
        lines += [f"![{pareto.name}]({pareto.name})", "",
                  f"[{pareto.name}]({pareto.name}): {report['baseline']['metric']['name']} against latency "
                  + (f"**estimated** for {est} (not measured)" if est else "measured on this host")
                  + ", marker area by file size, the Pareto-optimal models outlined.", ""]
    lines += plan_lines(report)
    if cards is None:
        cards = deploy_card.cards(report, report.get("command") or reproduce_command(report), out_dir)
    for name, text in cards:
        lines += [text, f"(also in [{name}]({name}))", ""]
    lines += _stage_lines(report.get("stages") or [])
    lines += ["## Artifacts", ""]
    for a in report["artifacts"]:
        lines.append(f"- `{a['path']}` ({a['format']} {a['precision']}): config `{json.dumps(a['config'])}`")
        for key, value in a.get("notes", {}).items():
            lines.append(f"  - {key}: `{json.dumps(value)}`")
    lines += ["", "## Versions", "", ", ".join(f"{k} {v}" for k, v in report["versions"].items()), ""]
    return "\n".join(lines)


def _host_title(report: dict) -> str:
    t = report["target"]
    threads = t.get("timing_threads") or t.get("threads")
    if t.get("measured"):
        return (f"Measured on this host: {t['cpu']} ({threads} threads"
                f"{'' if t['name'] == 'host' else ', target ' + t['name']})")
    return f"Measured on this host: {t['cpu']} ({threads} threads) — not on {t['name']}"


def _target_choice_lines(report: dict) -> list[str]:
    choice = (report.get("selection") or {}).get("target_choice")
    if not choice or not choice.get("chosen"):
        return []
    where = report_plots.estimate_target(report) or report["target"]["name"]
    ms = choice.get("latency_ms")
    how = "" if ms is None else (f" ({'est.' if choice.get('estimated') else 'measured'} {ms:.2f} ms"
                                 f"{', not measured' if choice.get('estimated') else ''})")
    return [f"chosen for `{where}`: **{choice['chosen']}**{how} — {choice.get('reason', '')}", ""]


def estimated_table(report: dict) -> list[str]:
    """The table for a target that was not timed: every figure in it is an estimate."""
    target = report_plots.estimate_target(report)
    if not target:
        return []
    bases = [report["baseline"], *report.get("other_baselines", [])]
    entries = [e for e in [*bases, *(report.get("stages") or []), *report["artifacts"]] if estimate_ms(e) is not None]
    fp32 = {(e["format"], e.get("seq_len")): estimate_ms(e) for e in entries
            if e.get("precision") == "fp32" and "format" in e}
    heads = _headers(report)
    main_len = report["baseline"].get("seq_len")
    threads = (report.get("plan") or {}).get("threads") or report["target"].get("threads")
    lines = [f"## Estimated for {target} (not measured)", "",
             f"Latency **estimated** for {target} with {threads} threads: the roofline for {target} of each "
             "artifact, divided by the efficiency its runtime reached on this host (measured). No figure in this "
             "table was timed on the device.", "",
             f"| artifact | {heads['metric']} | {heads['delta']} | est. latency ms | est. speed-up vs fp32 of "
             "same format | roofline ms | efficiency | GFLOPs/forward | weight MB | refused |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        est, ms = e["estimate"], estimate_ms(e)
        name = (f"pytorch {e['stage']}" if "stage" in e else f"{e['format']} {e['precision']}")
        name += f" seq{e['seq_len']}" if e.get("seq_len", main_len) != main_len else ""
        ref = fp32.get((e.get("format"), e.get("seq_len")))
        delta = "" if any(e is b for b in bases) else f"{e.get('metric_delta', 0):+.2f}"
        cells = [name + (" *" if e.get("selected") else ""), _fmt(e["metric"]["value"]), delta, f"est. {ms:.2f}",
                 f"{ref / ms:.2f}x" if ref and ms else "-", _fmt(est.get("roofline_ms")),
                 _fmt(est.get("efficiency"), 3),
                 _fmt(est["flops"] / 1e9, 3) if est.get("flops") is not None else "-",
                 _fmt(est["weight_bytes"] / 2**20) if est.get("weight_bytes") is not None else "-",
                 str(e["refused"]).replace("|", "\\|") if e.get("refused") else ""]
        lines.append("| " + " | ".join(cells) + " |")
    basis = list(dict.fromkeys(e["estimate"]["basis"] for e in entries if e["estimate"].get("basis")))
    if len(basis) > 1:  # the same method, each row with its own measured efficiency
        basis = [f"{basis[0]} (first row; every row likewise, with the efficiency in its column)"]
    failed = [e for e in [*bases, *report["artifacts"]] if (e.get("estimate") or {}).get("error")]
    lines += ["", *(f"- basis: {b}" for b in basis),
              *(f"- no estimate for `{e['path']}`: {e['estimate']['error']}" for e in failed), ""]
    return lines


def plan_lines(report: dict) -> list[str]:
    """The plan the run followed (what was built for the target, what was refused and why)."""
    plan = report.get("plan")
    if not plan:
        return []
    from edgeify.targets.planner import Plan

    known = {f.name for f in fields(Plan)}
    try:
        text = Plan(**{k: v for k, v in plan.items() if k in known}).lines()
    except TypeError:  # a report written by another edgeify: show what it holds
        text = [f"  {k}: {json.dumps(v, default=str)}" for k, v in plan.items()]
    return [f"## Plan for {plan.get('target', report['target']['name'])}", "", "```", *text, "```", ""]


# CLI flags for RunConfig fields, in the order `edgeify MODEL --help` lists them; fields
# without a flag (seed, eval_batch_size, generate_*) keep their defaults on the command line.
_FLAGS = (("formats", "--formats"), ("target", "--target"), ("max_memory_mb", "--max-memory-mb"),
          ("data", "--data"), ("eval_data", "--eval-data"), ("calibration_data", "--calibration-data"),
          ("train_data", "--train-data"), ("text_column", "--text-column"), ("label_column", "--label-column"),
          ("n_calibration", "--n-calibration"), ("n_eval", "--n-eval"),
          ("max_accuracy_drop", "--max-accuracy-drop"), ("out_dir", "-o"), ("force", "--force"),
          ("bench_seconds", "--bench-seconds"), ("bench_rounds", "--bench-rounds"),
          ("n_train", "--train-samples"), ("max_length", "--max-length"), ("eval_context", "--eval-context"))


def reproduce_command(report: dict) -> str:
    """The edgeify command line that makes this run again, rebuilt from report["config"]
    (options left at their defaults are left out)."""
    c = report["config"]
    defaults = {f.name: f.default for f in fields(RunConfig)}
    stages = {s["stage"]: s for s in c.get("compress") or []}
    args = ["edgeify", str(c["model"])] + (["--int8"] if c.get("int8") else [])
    for key, flag in _FLAGS:
        value = c.get(key, defaults.get(key))
        if key == "formats":
            value = ",".join(value or ())
            default = ",".join(defaults["formats"])
        else:
            default = defaults.get(key)
        if value in (None, False, "") or value == default or (key == "n_train" and not stages):
            continue
        args += [flag] if value is True else [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    lengths = [c.get("seq_len", defaults["seq_len"]), *(c.get("extra_seq_lens") or [])]
    if lengths != [defaults["seq_len"]]:
        args += [x for n in lengths for x in ("--seq-len", str(n))]
    if "distill" in stages:
        d = stages["distill"]
        args.append("--distill")
        for key, flag in (("student_layers", "--student-layers"), ("student_hidden", "--student-hidden")):
            if d.get(key) is not None:
                args += [flag, str(d[key])]
        if d.get("epochs", 3) != 3:
            args += ["--epochs", str(d["epochs"])]
    if "prune" in stages:
        args += ["--prune", f"{stages['prune']['ratio']:g}"]
    if "trim-vocab" in stages:
        args.append("--trim-vocab")
    return shlex.join(args)


def write(report: dict, out_dir: Path) -> None:
    """report.json, pareto.png, a DEPLOY-*.md per chosen artifact, and report.md linking them."""
    out_dir = Path(out_dir)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    try:
        pareto = report_plots.write_pareto(report, out_dir)
    except ImportError as e:
        log.warning("pareto.png not drawn: %s (pip install matplotlib)", e)
        pareto = None
    cards = deploy_card.cards(report, report.get("command") or reproduce_command(report), out_dir)
    deploy_card.write_cards(out_dir, cards)
    (out_dir / "report.md").write_text(markdown(report, out_dir, pareto, cards))
