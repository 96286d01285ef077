"""The latency estimator against measured latency on this host (issue 8, item 3).

For ELECTRA-small, ALBERT-base and GPT-Neo-125M shapes (random weights: speed does not
depend on them), every artifact edgeify's backends make is costed from its graph
(edgeify.targets.cost), measured here (batch 1, seq 128, interleaved rounds, each in a fresh
process), and predicted as roofline / efficiency, the efficiency calibrated
LEAVE-ONE-FAMILY-OUT: fitted on the other two families' artifacts of the same runtime and
precision class, never on the artifact itself. GPT-Neo is the cached decoder the pipeline
exports, timed as the pipeline times it: a 128-token window from an empty cache; with
--decode also per decoded token (64-token prompt, 32 new tokens), predicted with the
efficiency fitted on the two encoders' windows. The encoders also get an OpenVINO weight-only
int8 file, which the pipeline makes for decoders only, so that GPT-Neo's weight-only files
have another family's of their class to be predicted from.

    python benchmarks/bench_estimator.py --work /tmp/est --name estimator-host
    python benchmarks/bench_estimator.py --work /tmp/est --formats onnx,openvino --decode

Artifacts and measurements are kept in --work and reused (--remeasure to time again).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_generate import SHAPE_125M  # noqa: E402
from bench_onnx import SHAPES, machine, save_result  # noqa: E402

warnings.filterwarnings("ignore")
FAMILIES = {"electra": SHAPES["electra-small"][1], "albert": SHAPES["albert-base"][1], "gpt-neo": SHAPE_125M}
ACCEPT = 1.5


def build(work: Path, formats: list[str], seq_len: int) -> list[tuple[str, str, str, Path]]:
    """[(family, format, precision, path)], exporting what is not in `work` yet."""
    import torch

    from edgeify import families
    from edgeify.calibration.tokenize import Batch
    from edgeify.export import get_backend
    from edgeify.export.openvino import Int8, WeightsOnly

    out = []
    for fam_name, cfg in FAMILIES.items():
        family = families.get(fam_name)
        done = work / fam_name / "done.json"
        if done.exists() and all(f in json.loads(done.read_text()) for f in formats):
            out += [(fam_name, *a[:2], Path(a[2])) for f, arts in json.loads(done.read_text()).items()
                    if f in formats for a in arts]
            continue
        config_cls, model_cls = family.transformers_classes()
        torch.manual_seed(0)
        model = model_cls(config_cls(**cfg, attn_implementation="eager")).eval()
        ids = np.random.default_rng(0).integers(5, 1000, (32, seq_len)).astype(np.int64)
        sample = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        sample = {n: sample[n] for n in family.onnx_inputs}
        record = json.loads(done.read_text()) if done.exists() else {}
        for fmt in formats:
            if fmt in record:
                continue
            backend, fmt_dir = get_backend(fmt), work / fam_name / fmt
            fmt_dir.mkdir(parents=True, exist_ok=True)
            t = time.perf_counter()
            if family.cached_decoder:
                fp32 = backend.export_decoder(model, family, fmt_dir, max_length=512, prefill_len=seq_len)
                configs = [c for c in backend.decoder_configs(family, True) if type(c).__name__ != "Fp16Weights"]
            else:
                fp32 = backend.export(model, family, sample, fmt_dir)
                # OpenVINO's weight-only class (what GPT-Neo's decoders use) for the encoders
                # too: leave-one-family-out needs another family of that class to fit it on.
                configs = backend.int8_configs(family) if fmt == "onnx" else [Int8(), WeightsOnly("int8_asym")]
            arts = [fp32] + [backend.quantize(fp32, family, Batch(sample), c, fmt_dir) for c in configs]
            record[fmt] = [(fmt, a.precision, str(a.path)) for a in arts]
            print(f"{fam_name} {fmt}: {len(arts)} artifacts in {time.perf_counter() - t:.0f}s", flush=True)
        done.write_text(json.dumps(record))
        out += [(fam_name, *a[:2], Path(a[2])) for f, arts in record.items() if f in formats for a in arts]
    return out


def feeds_for(family_name: str, seq_len: int) -> dict[str, np.ndarray]:
    from edgeify import families

    ids = np.random.default_rng(1).integers(5, 1000, (1, seq_len)).astype(np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    return {n: feeds[n] for n in families.get(family_name).onnx_inputs}


def measure_all(arts, args, cache: Path) -> dict[str, dict]:
    """path -> measurement (p50 ms, rounds, precision ran; with --decode, tokens/s)."""
    from edgeify.targets.local import measure_interleaved

    known = json.loads(cache.read_text()) if cache.exists() and not args.remeasure else {}
    todo = [a for a in arts if str(a[3]) not in known or (args.decode and a[0] == "gpt-neo"
                                                          and "generation" not in known[str(a[3])])]
    if todo:
        print(f"measuring {len(todo)} artifacts, {args.rounds} interleaved rounds ...", flush=True)
        gen = {"prompt_tokens": 64, "new_tokens": 32} if args.decode else None
        for decoders in (False, True):  # encoders and decoders apart: only decoders generate
            group = [a for a in todo if (a[0] == "gpt-neo") == decoders]
            if not group:
                continue
            res = measure_interleaved([a[3] for a in group], [feeds_for(a[0], args.seq_len) for a in group],
                                      args.threads, rounds=args.rounds, seconds_per_round=args.seconds,
                                      generate=gen if decoders else None)
            for a, r in zip(group, res):
                known[str(a[3])] = r
        cache.write_text(json.dumps(known, indent=1))
    known["_measured_now"] = len(todo)
    return known


def loo_predict(rows: list[dict], machine_, threads: int, mode: str) -> None:
    """Each row's prediction with the efficiencies fitted on the other families' rows of
    the same runtime: its own precision class when they have it, else what
    Efficiency.factor falls back to (a weight-only class: its compute precision's fit)."""
    from edgeify.targets.roofline import calibrate, roofline_ms

    for row in rows:
        others = [(r["cost"], r["runtime"], r["class"], r["measured_ms"]) for r in rows
                  if r["family"] != row["family"] and r["runtime"] == row["runtime"]]
        row[f"roofline_{mode}"] = roofline_ms(row["cost"], machine_, threads, mode)
        est = calibrate(others, machine_, threads, mode).predict(row["cost"], row["runtime"], machine_, threads)
        row[f"pred_{mode}"], row[f"basis_{mode}"] = est.ms, est.basis


def decode_rows(rows: list[dict], measured: dict, machine_, threads: int, mode: str) -> list[str]:
    """Per-token decode of each GPT-Neo decoder vs the estimate from the encoders' efficiency."""
    from edgeify.targets.cost import decode_cost
    from edgeify.targets.roofline import calibrate

    lines = ["", f"### Per decoded token (64-token prompt, 32 new tokens; cost at context 80; efficiency "
             f"fitted on the ELECTRA + ALBERT windows of the same runtime and class, or its fallback; "
             f"roofline {mode}; measured = the best round's tokens/s)", "",
             "| format | precision | weight MB | roofline ms | predicted ms | measured ms | measured / predicted |",
             "|---|---|---|---|---|---|---|"]
    for row in (r for r in rows if r["family"] == "gpt-neo"):
        gen = measured[str(row["path"])].get("generation")
        fit = [(r["cost"], r["runtime"], r["class"], r["measured_ms"]) for r in rows
               if r["family"] != "gpt-neo" and r["runtime"] == row["runtime"]]
        if not gen or not fit:
            continue
        cost = decode_cost(row["path"], 80)
        pred = calibrate(fit, machine_, threads, mode).predict(cost, row["runtime"], machine_, threads, row["class"])
        meas = 1000.0 / max(gen.get("rounds_decode_tokens_per_s") or [gen["decode_tokens_per_s"]])
        lines.append(f"| {row['format']} | {row['precision']} | {cost.weight_bytes / 1e6:.0f} | {pred.roofline_ms:.2f} | "
                     f"{pred.ms:.2f} | {meas:.2f} | {meas / pred.ms:.2f} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="artifacts and measurements (reused when present)")
    ap.add_argument("--formats", default="onnx")
    ap.add_argument("--name", default="estimator-host")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.5, help="timing budget per artifact per round")
    ap.add_argument("--remeasure", action="store_true")
    ap.add_argument("--refresh-host", action="store_true", help="measure the host's rates again (else cached)")
    ap.add_argument("--decode", action="store_true", help="also per-token decode of the GPT-Neo decoders")
    args = ap.parse_args()

    from edgeify.targets.cost import graph_cost
    from edgeify.targets.roofline import DEFAULT_MODE, MODES, host_machine, runtime_of

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    arts = build(work, [f for f in args.formats.split(",") if f], args.seq_len)
    host = host_machine(args.threads, refresh=args.refresh_host)
    measured = measure_all(arts, args, work / f"measured-{args.threads}t.json")
    rows = []
    for fam, fmt, precision, path in arts:
        cost = graph_cost(path, 1, args.seq_len)
        rows.append({"family": fam, "format": fmt, "precision": precision, "path": path, "cost": cost,
                     "runtime": runtime_of(path), "class": cost.precision_class,
                     # the least disturbed round: this machine is shared, and other work only slows a round down
                     "measured_ms": min(measured[str(path)]["rounds_p50"]), "ran": measured[str(path)]["precision"],
                     "rounds": measured[str(path)]["rounds_p50"]})
    for mode in MODES:
        loo_predict(rows, host, args.threads, mode)

    def ratio(r: dict, mode: str) -> float:
        return r["measured_ms"] / r[f"pred_{mode}"]

    mode = DEFAULT_MODE
    peaks = ", ".join(f"{k} {v:.0f}" for k, v in host.peak_gops.items())
    lines = [f"### Estimator vs measured latency on this host ({args.name})", "",
             f"- machine: {machine()}",
             f"- host model (host_machine): attained giga-ops/s {peaks}; bandwidth {host.bandwidth_gbs:.1f} GB/s; "
             f"{host.cores} threads ({host.how})",
             f"- batch 1, seq {args.seq_len}, {args.threads} threads; measured = the best of {args.rounds} interleaved "
             "rounds' p50 (the least disturbed round on a shared machine; every round listed), each artifact in "
             "a fresh process; GPT-Neo = its cached decoder, a 128-token window from an empty cache",
             f"- predicted = roofline ({mode}) / efficiency, the efficiency fitted LEAVE-ONE-FAMILY-OUT on the other "
             "two families' artifacts of the same runtime and precision class; ratio = measured / predicted",
             "", "| family | format | precision | class | GFLOP | weight MB | act MB | roofline ms | predicted ms "
             "| measured ms (rounds) | ratio |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    notes: dict[str, int] = {}
    for r in rows:
        c, pred, basis = r["cost"], r[f"pred_{mode}"], r[f"basis_{mode}"]
        mark = ""
        if "standing in" in basis or "pooled" in basis:
            mark = f" [{notes.setdefault(basis.split(' efficiency')[0] + ': ' + basis.split('), ')[-1], len(notes) + 1)}]"
        flag = "" if abs(math.log(ratio(r, mode))) <= math.log(ACCEPT) else " **outside**"
        lines.append(f"| {r['family']} | {r['format']} | {r['precision']} | {r['class']} | "
                     f"{(c.dense_flops + c.other_flops) / 1e9:.2f} | {c.weight_bytes / 1e6:.1f} | "
                     f"{c.activation_bytes / 1e6:.1f} | {r[f'roofline_{mode}']:.2f} | {pred:.2f}{mark} | "
                     f"{r['measured_ms']:.2f} ({', '.join(f'{x:.1f}' for x in r['rounds'])}) | "
                     f"{ratio(r, mode):.2f}{flag} |")
    lines += [""] + [f"[{n}] no other family has this class: {text}" for text, n in notes.items()]
    inside = sum(1 for r in rows if abs(math.log(ratio(r, mode))) <= math.log(ACCEPT))
    lines += ["", f"Within {ACCEPT}x: {inside}/{len(rows)}. By roofline mode (worst ratio, geometric mean error, "
              "rows within): " + "; ".join(
                  f"{m} {max(max(ratio(r, m), 1 / ratio(r, m)) for r in rows):.2f}x, "
                  f"{math.exp(sum(abs(math.log(ratio(r, m))) for r in rows) / len(rows)):.2f}x, "
                  f"{sum(1 for r in rows if abs(math.log(ratio(r, m))) <= math.log(ACCEPT))}/{len(rows)}"
                  for m in MODES) + "."]
    if args.decode:
        lines += decode_rows(rows, measured, host, args.threads, mode)
    lines += ["", f"Run took {time.time() - t0:.0f}s" + ("." if measured["_measured_now"] else
                                                     f" (measurements reused from {work}).")]
    save_result(args.name, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
