"""Deployment cards: one per chosen artifact, everything needed to ship it.

A card says what goes in and comes out (read from the file itself), which runtime and
version ran it, with how many threads, how fast it was (measured here, and estimated for
the target when the target was not timed, each labelled as what it is), how accurate, the
command that made it, and a short Python program that runs it with the plain runtime
(no edgeify). Cards are written into report.md and as DEPLOY-<artifact>.md beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeify import metrics, tasks
from edgeify.families import get as get_family
from edgeify.runtimes import formats
from edgeify.report_plots import estimate_ms, estimate_target, int8_pick

# What the tokenizers library's Encoding calls each model input.
_ENCODING_FIELDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


def chosen(report: dict) -> list[tuple[dict, str]]:
    """(artifact entry, why it gets a card): the best file overall first (what a user should
    ship: it may be a float file the runtime runs in bf16, faster than any int8 one), the
    int8 pick when it differs, the pick for the target when it differs, or, with no pick
    (no --int8), the fp32 file of the first format."""
    sel = report.get("selection") or {}
    by_path = {a["path"]: a for a in report["artifacts"]}
    why: dict[str, list[str]] = {}
    overall = sel.get("overall") or {}
    if overall.get("chosen") in by_path:
        why.setdefault(overall["chosen"], []).append(f"best file overall: {overall.get('reason', '')}".rstrip(": "))
    if int8_pick(report) in by_path:
        why.setdefault(sel["chosen"], []).append(f"selected: {sel.get('reason', '')}".rstrip(": "))
    choice = sel.get("target_choice") or {}
    if choice.get("chosen") in by_path:
        where = estimate_target(report) or report["target"]["name"]
        why.setdefault(choice["chosen"], []).append(f"chosen for {where}: {choice.get('reason', '')}".rstrip(": "))
    if not why:
        main = report["baseline"].get("seq_len")
        fp32 = [a for a in report["artifacts"] if a["precision"] == "fp32" and not a.get("refused")
                and a.get("seq_len", main) == main]
        if fp32:
            why[fp32[0]["path"]] = ["the fp32 export of the first format (no int8 pick in this run)"]
    return [(by_path[p], "; ".join(reasons)) for p, reasons in why.items()]


def filename(entry: dict) -> str:
    """DEPLOY-onnx-model.int8-static.md for onnx/model.int8-static.onnx."""
    stem = Path(entry["path"]).with_suffix("").as_posix().replace("/", "-")
    return f"DEPLOY-{stem}.md"


def tokenizer_dir(report: dict) -> str:
    """Where the tokenizer of the exported model is, relative to the output directory: the
    last compression stage's (--trim-vocab gives it new ids), else the baseline's."""
    stages = report.get("stages") or []
    return stages[-1]["path"] if stages else str(Path(report["baseline"]["path"]))


def input_spec(report: dict, entry: dict, out_dir: Path | None) -> list[dict]:
    """[{name, shape, dtype}] as the file declares them (symbolic axes as names), or, when
    the file is not at hand, the family's inputs at [1, seq_len]."""
    path = Path(out_dir) / entry["path"] if out_dir else None
    if path is not None and path.is_file():
        try:
            return formats.get(entry["format"]).card_inputs(path)
        except Exception:  # noqa: BLE001 - e.g. no TFLite runtime here: the family's inputs still hold
            pass
    names = (("input_ids",) if tasks.get(report["model"]["task"]).causal
             else get_family(report["model"]["family"]).onnx_inputs)
    dtype = formats.get(entry["format"]).token_dtype
    return [{"name": n, "shape": [1, entry.get("seq_len")], "dtype": dtype} for n in names]


def _model_config(out_dir: Path | None, report: dict) -> dict:
    if out_dir is None:
        return {}
    config = Path(out_dir) / tokenizer_dir(report) / "config.json"
    return json.loads(config.read_text()) if config.exists() else {}


def _labels(report: dict, out_dir: Path | None) -> list[str]:
    labels = report["data"].get("labels") or _model_config(out_dir, report).get("id2label") or {}
    if isinstance(labels, dict):  # {"0": "negative", ...}
        return [labels[k] for k in sorted(labels, key=int)]
    return list(labels)


def _pad_token(report: dict, out_dir: Path | None) -> str:
    if out_dir is not None:
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            f = Path(out_dir) / tokenizer_dir(report) / name
            if f.exists():
                pad = json.loads(f.read_text()).get("pad_token")
                if pad:
                    return pad["content"] if isinstance(pad, dict) else pad
    return "[PAD]"


def _is_decoder(report: dict, entry: dict) -> bool:
    return bool(entry.get("generation")) or tasks.get(report["model"]["task"]).causal


def _threads(report: dict) -> int:
    plan, t = report.get("plan") or {}, report["target"]
    return int(plan.get("threads") or t.get("threads") or 1)


def _tokenize_lines(report: dict, entry: dict, spec: list[dict], out_dir: Path | None) -> list[str]:
    lines = [f"tok = Tokenizer.from_file({tokenizer_dir(report) + '/tokenizer.json'!r})"]
    if _is_decoder(report, entry):
        return lines + ['ids = np.array([tok.encode("Once upon a time", add_special_tokens=False).ids], np.int64)']
    n, pad = entry.get("seq_len") or report["data"]["seq_len"], _pad_token(report, out_dir)
    lines += [f"tok.enable_truncation({n})",
              f"tok.enable_padding(length={n}, pad_id=tok.token_to_id({pad!r}), pad_token={pad!r})",
              'enc = tok.encode("the movie was great")']
    feeds = ", ".join(f"{s['name']!r}: np.array([enc.{_ENCODING_FIELDS.get(s['name'], 'ids')}], np.{s['dtype']})"
                      for s in spec)
    return lines + [f"feeds = {{{feeds}}}"]


def snippet(report: dict, entry: dict, out_dir: Path | None = None) -> str:
    """Python that loads the artifact with its plain runtime and runs one input; run it in
    the output directory. Ends with `logits` (numpy) and prints the prediction."""
    spec = input_spec(report, entry, out_dir)
    fmt, decoder = formats.get(entry["format"]), _is_decoder(report, entry)
    lines = ["import numpy as np", "from tokenizers import Tokenizer", *fmt.snippet_imports, "",
             *_tokenize_lines(report, entry, spec, out_dir), *_as_run_comment(entry)]
    lines += fmt.snippet(formats.Snippet(entry["path"], Path(out_dir) / entry["path"] if out_dir else None,
                                         _threads(report), decoder))
    if decoder:
        lines += ["print(tok.decode([int(logits[0, -1].argmax())]))  # the next token"]
    else:
        labels = _labels(report, out_dir)
        lines += [f"print({labels!r}[int(logits.argmax(-1)[0])])" if labels else "print(logits.argmax(-1))"]
    return "\n".join(lines) + "\n"


def _as_run_comment(entry: dict) -> list[str]:
    """The backend's note on the precision the file runs in as loaded here (e.g. why an f32
    hint is set, and what a plain load would run instead), as a comment in the snippet."""
    note = (entry.get("notes") or {}).get("precision_as_run")
    return [f"# {note}"] if note else []


def _runtime_line(report: dict, entry: dict) -> str:
    versions = report.get("versions") or {}
    pins = [f"{p}=={versions[p]}" for p in formats.get(entry["format"]).packages if p in versions]
    line = f"{entry.get('runtime') or entry['format']}" + (f" (`pip install {pins[0]}`)" if pins else "")
    # other runtimes the exporter checked the file on (TFLite: tflite-runtime 2.14 beside ai-edge-litert)
    checked = [c for c in (entry.get("notes") or {}).get("runtimes", [])
               if c.get("runtime") and c["runtime"] != entry.get("runtime")]
    if checked:
        line += "; also checked on " + ", ".join(
            f"{c['runtime']} (" + ("same results" if c.get("same_results")
                                  else f"FAILS: {c.get('error') or 'results differ'}") + ")"
            for c in checked)
    return line


def _latency_lines(report: dict, entry: dict) -> list[str]:
    t, lat = report["target"], entry.get("latency_ms") or {}
    # every figure but a --device one is timed here: never say "the device" for it
    host = ("this host" + ("" if t.get("name") == "host" else f" as target {t['name']}")
            if t.get("measured") else "this host, not the target")
    out = [f"- latency, **measured** on {host} ({t.get('cpu')}, {t.get('timing_threads') or t.get('threads')} "
           f"threads, batch 1, seq {entry.get('seq_len')}): p50 {lat.get('p50', float('nan')):.2f} ms, "
           f"p90 {lat.get('p90', float('nan')):.2f} ms; peak RSS {entry.get('peak_rss_mb') or 0:.0f} MB"]
    dev = entry.get("device") or {}
    if dev.get("p50") is not None:
        out.append(f"- latency, **measured on the device** {(report.get('device') or {}).get('address', '')} "
                   f"({dev.get('runtime', '?')}): p50 {dev['p50']:.2f} ms, p90 {dev.get('p90', float('nan')):.2f} ms")
    gen = entry.get("generation")
    if gen:
        out.append(f"- generation, **measured** on the same host: prefill {gen.get('prefill_tokens_per_s', 0):.0f} "
                   f"tok/s, decode {gen.get('decode_tokens_per_s', 0):.1f} tok/s")
    est, ms = entry.get("estimate") or {}, estimate_ms(entry)
    if ms is not None:
        out.append(f"- latency, **estimated** for {est.get('target') or t['name']} (not measured), "
                   f"{_threads(report)} threads: ~{ms:.2f} ms (roofline {est.get('roofline_ms', float('nan')):.2f} ms "
                   f"/ efficiency {est.get('efficiency', float('nan')):.2f}; {est.get('basis', '')})")
    return out


def _inputs_text(spec: list[dict], length) -> str:
    """Token inputs one by one, a file's free batch and length axes as used (batch 1,
    `length` tokens); a decoder's key/value cache tensors summed up."""
    cache = [s for s in spec if s["name"] not in ("input_ids", "input_pos", "attention_mask", "token_type_ids")]
    free = False

    def shape(s: dict) -> str:
        nonlocal free
        dims = list(s["shape"])
        for i, used in ((0, 1), (1, length)):
            if i < len(dims) and not isinstance(dims[i], int):
                dims[i], free = used, True
        return "[" + ", ".join(map(str, dims)) + "]"

    text = ", ".join(f"`{s['name']}` {shape(s)} {s['dtype']}" for s in spec if s not in cache)
    if free:
        text += " (the file's batch and length axes are free; the figures below are at this shape)"
    if cache:
        text += (f"; plus {len(cache)} key/value cache tensors such as `{cache[0]['name']}` {shape(cache[0])} "
                 f"{cache[0]['dtype']} (zeros for a new sequence)")
    return text


def card(report: dict, entry: dict, why: str, command: str, out_dir: Path | None = None, level: int = 2) -> str:
    """The card for one artifact as markdown; `level` is its heading's."""
    h = "#" * level
    spec = input_spec(report, entry, out_dir)
    metric, m = report["baseline"]["metric"]["name"], entry["metric"]
    unit = metrics.get(metric).short
    labels = _labels(report, out_dir)
    if _is_decoder(report, entry):
        vocab = _model_config(out_dir, report).get("vocab_size", "vocab")
        output = f"`logits` [1, T, {vocab}] float32 (next-token scores for each of the T positions)"
    else:
        output = f"`logits` [1, {len(labels) or 'labels'}] float32" + (f", classes {labels}" if labels else "")
    t = report["target"]
    lines = [f"{h} Deployment card: `{entry['path']}`", "",
             f"- why this file: {why}",
             f"- format: {entry['format']} {entry['precision']} (ran as: {entry.get('executed_precision', '?')}); "
             f"size {entry['size_bytes'] / 2**20:.2f} MB",
             *([f"- precision: {entry['notes']['precision_as_run']}"]
               if (entry.get("notes") or {}).get("precision_as_run") else []),
             f"- target: `{t['name']}` — {t.get('description', '')}",
             "- input (batch 1, token ids from the tokenizer in "
             f"`{tokenizer_dir(report)}/`): "
             + _inputs_text(spec, "T" if _is_decoder(report, entry) else entry.get("seq_len")),
             f"- output: {output}",
             f"- runtime: {_runtime_line(report, entry)}",
             f"- threads: {_threads(report)} on `{t['name']}`"
             + ("" if _threads(report) == (t.get("timing_threads") or t.get("threads"))
                else f"; timed here with {t.get('timing_threads')}"),
             *_latency_lines(report, entry),
             f"- {metric}: {m['value']:.4g} on {m.get('n', '?')} samples of {report['data'].get('eval')} "
             f"(Δ {entry.get('metric_delta', 0):+.2f} {unit} vs PyTorch fp32)",
             *([f"- refused by `{t['name']}`: {entry['refused']}"] if entry.get("refused") else []),
             "", "Reproduce (from the directory the run was started in):", "", "```sh", command, "```", "",
             "Run it with the plain runtime (from the output directory; needs numpy, tokenizers and the runtime):",
             "", "```python", snippet(report, entry, out_dir).rstrip("\n"), "```", "",
             *([f"That is one forward from an empty cache. To generate text with the cache kept between "
                f"tokens: `edgeify generate {entry['path']} --prompt \"Once upon a time\" --model-dir "
                f"{tokenizer_dir(report)}` (from the output directory).", ""]
               if _is_decoder(report, entry) else []),
             "Library versions: " + ", ".join(f"{k} {v}" for k, v in (report.get("versions") or {}).items()), ""]
    return "\n".join(lines)


def cards(report: dict, command: str, out_dir: Path | None = None) -> list[tuple[str, str]]:
    """(file name, markdown with a level-2 heading) for every chosen artifact."""
    return [(filename(entry), card(report, entry, why, command, out_dir, level=2)) for entry, why in chosen(report)]


def write_cards(out_dir: Path, made: list[tuple[str, str]]) -> list[Path]:
    """Each card of `cards()` as its own file, its heading raised to level 1; the paths."""
    out = []
    for name, text in made:
        path = Path(out_dir) / name
        path.write_text(text[1:] if text.startswith("## ") else text)
        out.append(path)
    return out
