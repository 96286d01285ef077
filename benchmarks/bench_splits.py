"""Issue 20's split acceptance: does a GLUE-sized dev file starve calibration?

Three `edgeify MODEL --int8 --formats all` runs on one real-weight model:

- `one dev file`:  `--data DEV` (872 rows): calibration is taken first (128), 744 evaluated, a warning;
- `dev + train`:   `--eval-data DEV --calibration-data CAL`: all 872 rows evaluated;
- `large eval`:    `--eval-data LARGE --n-eval N --calibration-data CAL`: the reference.

For each format's int8 files it prints the accuracy and the drop vs that format's fp32
export, side by side, and checks that the one-file and dev+train runs are within 0.5 pt of
the large-eval run. The drop is the comparison that isolates calibration: absolute
accuracies on 744 / 872 / N different rows also differ by sampling (about 1.5 pt standard
error at 872 rows), which no calibration can fix, so both are shown.

    python benchmarks/bench_splits.py --model /work/models/electra-minilm-tweets \\
        --dev /work/data/tweets-dev872.csv --cal /work/data/tweets-cal.csv \\
        --large /work/data/tweets-large.csv --n-large 4000 --name splits-electra-minilm-tweets

The data files are tweets never trained on (see RESULTS.md, issue 20, for how they were cut
from ../shared/data/twitter_sentiment/tweets.csv).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOLERANCE = 0.5  # points


def run(model: str, args: list[str], out: Path, seq_len: int) -> dict:
    cmd = ["edgeify", model, "--int8", "--formats", "all", "--text-column", "text", "--label-column", "sentiment",
           "--seq-len", str(seq_len), "--bench-seconds", "1", "--bench-rounds", "1", "-o", str(out), *args]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    report["_seconds"] = round(time.time() - t0)
    return report


def int8_rows(report: dict) -> dict[tuple[str, str], tuple[float, float]]:
    """(format, precision) -> (accuracy %, drop vs the format's fp32 export in points);
    edgeify's accuracy is already in percent."""
    fp32 = {a["format"]: a["metric"]["value"] for a in report["artifacts"] if a["precision"] == "fp32"}
    return {(a["format"], a["precision"]): (a["metric"]["value"], fp32[a["format"]] - a["metric"]["value"])
            for a in report["artifacts"] if a["precision"].startswith("int")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--dev", required=True)
    p.add_argument("--cal", required=True)
    p.add_argument("--large", required=True)
    p.add_argument("--n-large", type=int, default=4000)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--name", required=True)
    a = p.parse_args()
    runs = {
        "one dev file": ["--data", a.dev],
        "dev + train": ["--eval-data", a.dev, "--calibration-data", a.cal],
        "large eval": ["--eval-data", a.large, "--n-eval", str(a.n_large), "--calibration-data", a.cal],
    }
    reports = {}
    with tempfile.TemporaryDirectory(prefix="bench-splits-") as tmp:
        for name, extra in runs.items():
            reports[name] = run(a.model, extra, Path(tmp) / name.replace(" ", "-").replace("+", ""), a.seq_len)
            d = reports[name]["data"]
            print(f"{name}: {d['n_eval']} eval / {d['n_calibration']} calibration, "
                  f"{len(d.get('warnings', []))} warning(s), {reports[name]['_seconds']} s", flush=True)
    lines = [f"# {a.name}", "", f"model `{a.model}`, seq {a.seq_len}, `--int8 --formats all`", "",
             "| run | eval rows | calibration rows | warnings |", "|---|---|---|---|"]
    for name, r in reports.items():
        d = r["data"]
        lines.append(f"| {name} | {d['n_eval']} | {d['n_calibration']} | {'; '.join(d.get('warnings', [])) or '-'} |")
    rows = {name: int8_rows(r) for name, r in reports.items()}
    ref = rows["large eval"]
    lines += ["", "| int8 file | " + " | ".join(f"{n} acc / drop" for n in runs) + " | drop within 0.5 of large | acc within 0.5 of large |",
              "|---|" + "---|" * (len(runs) + 2)]
    ok = True
    for key in ref:
        cells = [f"{rows[n][key][0]:.2f} / {rows[n][key][1]:+.2f}" if key in rows[n] else "-" for n in runs]
        drop_ok = all(key in rows[n] and abs(rows[n][key][1] - ref[key][1]) <= TOLERANCE for n in runs)
        acc_ok = all(key in rows[n] and abs(rows[n][key][0] - ref[key][0]) <= TOLERANCE for n in runs)
        ok &= drop_ok
        lines.append(f"| {key[0]} {key[1]} | " + " | ".join(cells) + f" | {'yes' if drop_ok else 'NO'} | {'yes' if acc_ok else 'no'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(__file__).parent / "results" / f"{a.name}.md"
    out.write_text(text)
    print(f"written: {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
