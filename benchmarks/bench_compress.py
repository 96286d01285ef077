"""Issue 7: a compressed student vs its teacher, both int8, in one run.

Runs `edgeify MODEL --distill --prune R --trim-vocab --int8` (the student) and
`edgeify MODEL --int8` (the teacher) on the same data and split, then times the teacher's
and the student's int8 ONNX files (and both PyTorch fp32 models) in interleaved rounds,
each in a fresh process, same threads and input. Prints accuracy kept, parameter ratio
and latency ratios, and writes benchmarks/results/NAME.md.

    python benchmarks/bench_compress.py --model /work/models/electra-minilm-tweets \\
        --data ../shared/data/twitter_sentiment/tweets.csv --text-column text \\
        --label-column sentiment --name compress-electra-minilm-tweets
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_onnx import common_args, file_size, header, machine, save_result  # noqa: E402


def main() -> int:
    ap = common_args(__doc__, seconds=4.0)
    ap.add_argument("--student-layers", type=int)
    ap.add_argument("--prune", type=float, default=0.3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-samples", type=int, default=10000)
    ap.add_argument("--no-trim", action="store_true")
    args = ap.parse_args()

    import edgeify
    from edgeify import compress
    from edgeify.families import loader
    from edgeify.targets import local

    work = Path(args.work or tempfile.mkdtemp(prefix="edgeify-bench-compress-"))
    work.mkdir(parents=True, exist_ok=True)
    model_dir = Path(args.model)
    common = dict(int8=True, data=args.data, text_column=args.text_column, label_column=args.label_column,
                  seq_len=args.seq_len, n_eval=args.n_eval, force=True, bench_seconds=1.0, bench_rounds=1,
                  log_fn=lambda m: print(m, file=sys.stderr))
    stages = (compress.Distill(student_layers=args.student_layers, epochs=args.epochs),
              compress.Prune(ratio=args.prune)) + (() if args.no_trim else (compress.TrimVocab(),))
    t0 = time.time()
    student = edgeify.run(str(model_dir), compress=stages, n_train=args.train_samples,
                          out_dir=str(work / "student"), resume=True, **common)
    train_s = time.time() - t0
    teacher = edgeify.run(str(model_dir), out_dir=str(work / "teacher"), **common)
    family = loader.peek_family(str(model_dir))

    rows = {"teacher pytorch fp32": (Path(teacher["output_dir"]) / "pytorch", teacher["baseline"])}
    for s in student["stages"]:
        rows[f"student pytorch ({s['stage']})"] = (Path(student["output_dir"]) / s["path"], s)
    for rep, who in ((teacher, "teacher"), (student, "student")):
        for a in rep["artifacts"]:
            rows[f"{who} onnx {a['precision']}"] = (Path(rep["output_dir"]) / a["path"], a)
    # every model reads the same tweet; the student's ids are remapped by --trim-vocab
    from edgeify.calibration.datasets import load_examples, prepare

    examples = load_examples(family, args.data, synthetic_default=False, n_wanted=0,
                             text_column=args.text_column, label_column=args.label_column)
    feeds = {}
    for who, rep in (("teacher", teacher), ("student", student)):
        ref = Path(rep["output_dir"]) / (rep["stages"][-1]["path"] if rep.get("stages") else "pytorch")
        loaded = loader.load_local(ref)
        feeds[who] = prepare(family, loaded.tokenizer, loaded.model.config.id2label, *examples,
                             seq_len=args.seq_len, n_calibration=128, n_eval=args.n_eval).evaluation.rows(0, 1)
    labels = list(rows)
    timings = local.measure_interleaved(
        [rows[k][0] for k in labels],
        [feeds["teacher" if k.startswith("teacher") or k.endswith("(distill)") or k.endswith("(prune)")
               else "student"] for k in labels],
        args.threads, rounds=args.rounds, seconds_per_round=args.seconds)
    p50 = {k: t["p50"] for k, t in zip(labels, timings)}
    rounds = {k: t["rounds_p50"] for k, t in zip(labels, timings)}

    base = teacher["baseline"]["metric"]["value"]
    teacher_params = teacher["model"]["params"]
    student_params = student["stages"][-1]["params"]
    lines = [*header(args, model_dir, family, teacher), f"- machine: {machine()}",
             f"- student: `{json.dumps([compress.describe(s) for s in stages])}`, "
             f"{student['data']['n_eval']} eval tweets never trained on; compression took {train_s / 60:.1f} min",
             "", "| model | params | accuracy | % of teacher | p50 ms (rounds) | vs teacher same precision |",
             "|---|---|---|---|---|---|"]
    for k in labels:
        value = rows[k][1]["metric"]["value"]
        params = teacher_params if k.startswith("teacher") else rows[k][1].get("params", student_params)
        twin = k.replace("student", "teacher").split(" (")[0].replace("teacher pytorch", "teacher pytorch fp32")
        ratio = f"{p50[twin] / p50[k]:.2f}x faster" if k.startswith("student") and twin in p50 else ""
        lines.append(f"| {k} | {params / 1e6:.2f}M ({params / teacher_params:.0%}) | {value:.2f} | "
                     f"{100 * value / base:.1f}% | {p50[k]:.2f} ({', '.join(f'{x:.2f}' for x in rounds[k])}) | {ratio} |")
    sel_t = next(a for a in teacher["artifacts"] if a.get("selected"))
    sel_s = next(a for a in student["artifacts"] if a.get("selected"))
    lines += ["", f"Selected int8: teacher `{sel_t['precision']}` {p50['teacher onnx ' + sel_t['precision']]:.2f} ms, "
              f"student `{sel_s['precision']}` {p50['student onnx ' + sel_s['precision']]:.2f} ms: "
              f"**{p50['teacher onnx ' + sel_t['precision']] / p50['student onnx ' + sel_s['precision']]:.2f}x faster**; "
              f"student int8 accuracy {sel_s['metric']['value']:.2f} = "
              f"**{100 * sel_s['metric']['value'] / base:.1f}%** of the teacher's fp32 {base:.2f}; "
              f"student params **{student_params / teacher_params:.0%}** of the teacher's; "
              f"file size {file_size(Path(student['output_dir']) / sel_s['path']) / 2**20:.1f} MB vs "
              f"{file_size(Path(teacher['output_dir']) / sel_t['path']) / 2**20:.1f} MB.",
              "", "Stages:", ""]
    for s in student["stages"]:
        info = {k: v for k, v in s["info"].items() if k not in ("before", "after")}
        lines.append(f"- {s['stage']}: {s['info']['before']['params']:,} -> {s['info']['after']['params']:,} params; "
                     f"`{json.dumps(info, default=str)[:600]}`")
    save_result(args.name, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
