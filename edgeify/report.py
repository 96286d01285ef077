"""report.json, report.md and the terminal summary table."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

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
    delta = "Δ pts" if metric == "accuracy" else "Δ %"
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
    return "\n".join([line, sep, *body])


def _generation_line(report: dict) -> list[str]:
    gen = report["baseline"].get("generation")
    if not gen:
        return []
    return [f"- generation: greedy, {gen['prompt_tokens']}-token prompt then {gen['new_tokens']} new tokens, "
            "batch 1, each model with its key/value cache (PyTorch: Hugging Face's DynamicCache); "
            "p50 ms is one forward over the whole window from an empty cache"]


def markdown(report: dict) -> str:
    m, d, t = report["model"], report["data"], report["target"]
    heads = _headers(report)
    where = ("measured on the device itself" if t["measured"]
             else f"timed on this host with {t.get('timing_threads')} threads, not on {t['name']}")
    lines = [f"# edgeify report: {m['id']}", ""]
    if m["source"] == "starter":
        held = (m.get("starter") or {}).get("held_out", {})
        lines += [f"> **STARTER MODEL** — not a pretrained model. A small {m['family']} trained "
                  f"offline by edgeify on its own generated data (held-out {held.get('name')}: "
                  f"{held.get('value')}). Use a real checkpoint for real numbers.", ""]
    lines += [
        f"- model: `{m['id']}` ({m['family']}, {m['task']}, {m['params']:,} parameters, source: {m['source']})",
        f"- data: {d['eval']} — {d['n_eval']} evaluation / {d['n_calibration']} calibration samples, seq len {d['seq_len']}"
        + (f"; perplexity over each window after {d['eval_context']} unscored tokens of the text before it "
           "(sliding window)" if d.get("eval_context") else ""),
        f"- target: `{t['name']}` — {t['description']}, {t['threads']} threads; CPU: {t['cpu']}",
        f"- latency: batch 1, seq {'/'.join(map(str, d.get('seq_lens') or [d['seq_len']]))}, {where}",
        *_generation_line(report),
        "",
        "| " + " | ".join(h.replace("|", "\\|") for h in heads.values()) + " |",
        "|" + "|".join("---" for _ in heads) + "|",
    ]
    lines += ["| " + " | ".join(r[k] for k in heads) + " |" for r in rows(report)]
    lines.append("")
    sel = report.get("selection")
    if sel:
        lines += [f"`*` selected int8 artifact: **{sel['chosen']}** — {sel['reason']}", ""]
    for a in report["artifacts"]:
        if a.get("refused"):
            lines += [f"> **{a['path']}** refused by target `{t['name']}`: {a['refused']}", ""]
        elif a.get("notes", {}).get("warning"):
            lines += [f"> **{a['path']}**: {a['notes']['warning']}", ""]
    stages = report.get("stages") or []
    if stages:
        lines += ["## Compression stages", "",
                  "Each stage's PyTorch model, evaluated and timed beside the original (the first "
                  "baseline row); the last one is what was exported.", ""]
        for s in stages:
            before, after = s["info"]["before"], s["info"]["after"]
            lines.append(f"- **{s['stage']}** → `{s['path']}`: {before['params']:,} → {after['params']:,} "
                         f"parameters (embeddings {before['embedding_params']:,} → {after['embedding_params']:,}); "
                         f"config `{json.dumps(s['config'])}`")
            details = {k: v for k, v in s["info"].items() if k not in ("before", "after")}
            lines.append(f"  - `{json.dumps(details, default=str)}`")
        lines.append("")
    lines += ["## Artifacts", ""]
    for a in report["artifacts"]:
        lines.append(f"- `{a['path']}` ({a['format']} {a['precision']}): config `{json.dumps(a['config'])}`")
        for key, value in a.get("notes", {}).items():
            lines.append(f"  - {key}: `{json.dumps(value)}`")
    lines += ["", "## Versions", "", ", ".join(f"{k} {v}" for k, v in report["versions"].items()), ""]
    return "\n".join(lines)


def write(report: dict, out_dir: Path) -> None:
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out_dir / "report.md").write_text(markdown(report))
