"""Which student? Several --distill variants of one teacher, trained on the same rows and
timed side by side (PyTorch fp32 and ONNX fp32, interleaved rounds, fresh processes).

Made for issue 7's ALBERT question: with one shared block, is it better to apply the block
fewer times (same parameters, less compute) or to give the student its own smaller block
(--student-hidden: fewer parameters and less compute per application)?

    python benchmarks/bench_students.py --family albert --data synthetic \\
        --variants layers=2 hidden=64 layers=2,hidden=64 --name albert-students
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_onnx import common_args, machine, save_result  # noqa: E402


def _variant(text: str) -> dict:
    out = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        out[{"layers": "student_layers", "hidden": "student_hidden"}[key]] = int(value)
    return out


def main() -> int:
    ap = common_args(__doc__, seconds=3.0)
    ap.add_argument("--family", help="use this family's offline starter as the teacher")
    ap.add_argument("--variants", nargs="+", required=True, help="layers=N[,hidden=H] per student")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-samples", type=int, default=4000)
    args = ap.parse_args()

    from edgeify import compress, families
    from edgeify.calibration.datasets import load_examples, prepare
    from edgeify.evaluate import evaluate
    from edgeify.export import get_backend
    from edgeify.families import loader
    from edgeify.families.starter import build_starter
    from edgeify.runtimes.torch_runner import TorchRunner
    from edgeify.targets import local

    work = Path(args.work or tempfile.mkdtemp(prefix="edgeify-students-"))
    work.mkdir(parents=True, exist_ok=True)
    model_dir = Path(args.model) if args.model else build_starter(families.get(args.family))
    teacher = loader.load_local(model_dir)
    family = teacher.family
    examples = load_examples(family, args.data, synthetic_default=True,
                             n_wanted=args.n_eval + 128 + args.train_samples,
                             text_column=args.text_column, label_column=args.label_column)
    data = prepare(family, teacher.tokenizer, teacher.model.config.id2label, *examples, seq_len=args.seq_len,
                   n_calibration=128, n_eval=args.n_eval, n_train=args.train_samples)
    stage_data = compress.StageData(compress.TrainData(data.training.inputs, data.training.labels),
                                    [e.text for e in examples[0]])
    settings = compress.TrainSettings(seed=0, threads=args.threads)

    models = {"teacher": (teacher.model, model_dir)}
    train_s = {}
    for text in args.variants:
        t0 = time.time()
        config = compress.Distill(epochs=args.epochs, **_variant(text))
        student = compress.run_stages(teacher.model, teacher.tokenizer, family, [config], stage_data, settings,
                                      log_fn=lambda m: print(m, file=sys.stderr))[-1]
        train_s[text] = time.time() - t0
        path = work / text.replace(",", "_").replace("=", "")
        student.model.save_pretrained(path)
        teacher.tokenizer.save_pretrained(path)
        models[text] = (student.model, path, student.info["init"])

    rows, paths = {}, []
    sample = {k: v[:4] for k, v in data.calibration.inputs.items()}
    for label, (model, path, *rest) in models.items():
        value = evaluate(TorchRunner(model, args.threads, family=family), data.evaluation, family.task,
                         16, desc=label).value
        onnx_dir = work / f"onnx-{path.name}"
        onnx_dir.mkdir(exist_ok=True)
        onnx = get_backend("onnx").export(model, family, sample, onnx_dir).path
        rows[label] = (value, sum(p.numel() for p in model.parameters()), rest[0] if rest else "teacher")
        paths += [(label, "pytorch", path), (label, "onnx", onnx)]
    timings = local.measure_interleaved([p for _, _, p in paths], data.evaluation.rows(0, 1), args.threads,
                                        rounds=args.rounds, seconds_per_round=args.seconds)
    p50 = {(label, kind): t["p50"] for (label, kind, _), t in zip(paths, timings)}

    metric = family.metric
    lines = [f"### {args.name}", "",
             f"- teacher: `{model_dir}` ({family.name}, {rows['teacher'][1]:,} params); data: {examples[1]} "
             f"({len(data.evaluation)} eval, {len(data.training)} training rows); {args.epochs} epochs of KD; "
             f"batch 1, seq {args.seq_len}, {args.threads} threads, median of {args.rounds} interleaved rounds",
             f"- machine: {machine()}", "",
             f"| student | how | params | {metric} | PyTorch p50 ms | ONNX fp32 p50 ms | ONNX vs teacher | train s |",
             "|---|---|---|---|---|---|---|---|"]
    for label, (value, params, how) in rows.items():
        lines.append(f"| {label} | {how} | {params:,} | {value:.2f} | {p50[(label, 'pytorch')]:.2f} | "
                     f"{p50[(label, 'onnx')]:.2f} | {p50[('teacher', 'onnx')] / p50[(label, 'onnx')]:.2f}x faster | "
                     f"{train_s.get(label, 0):.0f} |")
    save_result(args.name, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
