"""Issue 23: does the budget search find a 10x-faster-than-PyTorch artifact within one
accuracy point, on the user's own train/eval split, and how long does it take?

Cuts the data into three disjoint files the way finetune_tweets.py split it (calibration,
evaluation, training rows; held-out texts never in training), runs

    edgeify MODEL --int8 --formats all --train-data T --eval-data E --calibration-data C
        --max-accuracy-drop 1 --min-speedup 10

(the latency budget is a tenth of the PyTorch fp32 p50 the search's first run measures),
then times the chosen artifact side by side with the original PyTorch fp32 eager model in
interleaved rounds, each in a fresh process: at the user's --seq-len (what the speed-up
means) and at the artifact's own length (what a shorter length alone buys). Writes
benchmarks/results/NAME.md with the search's recipes, wall and training times.

    python benchmarks/bench_search.py --model /work/models/electra-minilm-tweets \\
        --data ../shared/data/twitter_sentiment/tweets.csv --name search-electra-minilm-tweets
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_onnx import common_args, machine, save_result  # noqa: E402


def write_split(data: str, work: Path, n_train: int, text_column: str, label_column: str) -> dict[str, Path]:
    """calibration.csv, eval.csv, train.csv (text,label): finetune_tweets.py's split of `data`."""
    from edgeify.calibration.readers import read_examples
    from edgeify.calibration.splits import split_examples

    examples = read_examples(data, needs_labels=True, text_column=text_column, label_column=label_column)
    split = split_examples(examples, n_calibration=128, n_eval=1000, seed=0)
    held = {e.text for e in [*split.calibration, *split.evaluation]}
    sets = {"calibration": split.calibration, "eval": split.evaluation,
            "train": [e for e in split.rest if e.text not in held][:n_train]}
    paths = {}
    for name, rows in sets.items():
        paths[name] = work / f"{name}.csv"
        with paths[name].open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows([e.text, e.label] for e in rows)
    return paths


def feeds_for(model_dir: Path, texts_file: Path, seq_len: int) -> dict:
    """One evaluation text as `model_dir`'s tokenizer encodes it (trim-vocab remaps ids)."""
    from edgeify.calibration.readers import read_examples
    from edgeify.calibration.tokenize import encode_classification
    from edgeify.families import loader

    loaded = loader.load_local(model_dir)
    text = read_examples(texts_file, needs_labels=True)[0].text
    return encode_classification(loaded.tokenizer, [text], None, seq_len, loaded.family.onnx_inputs).rows(0, 1)


def main() -> int:
    ap = common_args(__doc__, seconds=4.0)
    ap.add_argument("--min-speedup", type=float, default=10.0)
    ap.add_argument("--accuracy-drop", type=float, default=1.0)
    ap.add_argument("--train-rows", type=int, default=10000)
    ap.add_argument("--resume", action="store_true", help="continue the search an interrupted run left in --work")
    ap.set_defaults(rounds=7)  # 3 rounds let one noisy round decide a 1 ms file's ratio (issue 23's ALBERT)
    args = ap.parse_args()
    from edgeify.targets import local

    work = Path(args.work or tempfile.mkdtemp(prefix="edgeify-bench-search-"))
    work.mkdir(parents=True, exist_ok=True)
    files = write_split(args.data, work, args.train_rows, args.text_column or "text",
                        args.label_column or "sentiment")
    out = work / "search"
    cmd = ["edgeify", args.model, "--int8", "--formats", "all", "--train-data", str(files["train"]),
           "--eval-data", str(files["eval"]), "--calibration-data", str(files["calibration"]),
           "--max-accuracy-drop", str(args.accuracy_drop), "--min-speedup", str(args.min_speedup),
           "--seq-len", str(args.seq_len), "--train-samples", str(args.train_rows), "-o", str(out), "--resume" if args.resume else "--force"]
    print("$", " ".join(cmd), file=sys.stderr)
    t0 = time.time()
    rc = subprocess.run(cmd).returncode
    wall = time.time() - t0
    state = json.loads((out / "search.json").read_text())
    lines = [f"### {args.name}", "", f"- machine: {machine()}",
             f"- `{' '.join(cmd)}`", f"- exit {rc}; search wall time **{wall / 60:.1f} min** "
             f"(search.json: {state.get('seconds', 0) / 60:.1f} min); budgets {json.dumps(state['budgets'])}",
             f"- train / eval / calibration rows: {args.train_rows} / 1000 / 128, disjoint (held-out texts "
             "dropped from training)", "", "| # | recipe | outcome | wall | training |", "|---|---|---|---|---|"]
    for i, r in enumerate(state["recipes"], 1):
        lines.append(f"| {i} | {r['recipe']} | {r['outcome']} | {(r.get('seconds') or 0) / 60:.1f} min | "
                     f"{(r.get('train_seconds') or 0) / 60:.1f} min |")
    best = state.get("best")
    if best:
        run_dir = Path(best["run_dir"])
        report = json.loads((run_dir / "report.json").read_text())
        own = run_dir / (report["stages"][-1]["path"] if report.get("stages") else "pytorch")
        seq = report["data"]["seq_len"]
        rows = {f"PyTorch fp32 eager, seq {args.seq_len}": (Path(args.model), feeds_for(Path(args.model), files["eval"],
                                                                                          args.seq_len))}
        if seq != args.seq_len:
            rows[f"PyTorch fp32 eager, seq {seq}"] = (Path(args.model), feeds_for(Path(args.model), files["eval"], seq))
        rows[f"chosen: {best['format']} {best['precision']} ({best['recipe']})"] = (
            Path(best["artifact"]), feeds_for(own, files["eval"], seq))
        labels = list(rows)
        timings = local.measure_interleaved([rows[k][0] for k in labels], [rows[k][1] for k in labels],
                                            args.threads, rounds=args.rounds, seconds_per_round=args.seconds)
        base = timings[0]["p50"]
        lines += ["", f"Chosen: `{best['artifact']}`, accuracy {best['metric']:.2f}, drop {best['drop']:+.2f} pts vs "
                  f"the original at seq {args.seq_len} ({state['reference']['value']:.2f}), size {best['size_mb']:.1f} MB; "
                  f"the search's own figure {best['latency_ms']:.2f} ms ({best.get('speedup')}x).", "",
                  "| model | p50 ms (rounds) | speed-up vs PyTorch seq " f"{args.seq_len} |", "|---|---|---|"]
        for k, t in zip(labels, timings):
            lines.append(f"| {k} | {t['p50']:.2f} ({', '.join(f'{x:.2f}' for x in t['rounds_p50'])}) | "
                         f"{base / t['p50']:.2f}x |")
    else:
        lines += ["", f"Nothing found: {state['verdict']}"]
    save_result(args.name, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
