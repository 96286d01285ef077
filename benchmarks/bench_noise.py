"""Issue 20: do speed-ups survive a busy machine? The same `edgeify MODEL --int8 --formats all`
run twice: once as the machine is, once with a CPU hog (a busy loop this script starts,
pinned to one core, and stops itself). Prints both runs' speed-up tables and checks that
every speed-up in the loaded run is within 25% of the quiet run's, or that the loaded
report says its timing was noisy, with the spread. Writes benchmarks/results/NAME.md.

The machine is shared: "quiet" is the machine as it is (its load average is printed with
each run); the hog is what this script adds.

    python benchmarks/bench_noise.py electra
    python benchmarks/bench_noise.py albert --name noise-albert
    python benchmarks/bench_noise.py electra -- --bench-rounds 2   # after --: edgeify options
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_onnx import machine, save_result  # noqa: E402

TOLERANCE = 0.25  # a loaded speed-up within 25% of the quiet one
HOG = ("import os, sys, time\n"
       "os.sched_setaffinity(0, {int(sys.argv[1])})\n"
       "end = time.time() + float(sys.argv[2])\n"
       "while time.time() < end: pass\n")


def start_hog(seconds: float) -> subprocess.Popen:
    """A busy loop on the last CPU, ending by itself after `seconds` at the latest."""
    cpu = max(os.sched_getaffinity(0))
    return subprocess.Popen([sys.executable, "-c", HOG, str(cpu), str(seconds)])


def run_edgeify(model: str, out: Path, extra: list[str]) -> tuple[dict, str]:
    """(report, when and under what load) of one `edgeify MODEL --int8 --formats all`."""
    cmd = [sys.executable, "-m", "edgeify", model, "--int8", "--formats", "all", "-o", str(out), "--force", *extra]
    load0, t0, start = os.getloadavg()[0], time.time(), time.strftime("%Y-%m-%d %H:%M")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"edgeify failed ({proc.returncode}): {' '.join(cmd)}")
    report = json.loads((out / "report.json").read_text())
    return report, (f"started {start}, {(time.time() - t0) / 60:.1f} min, load average {load0:.2f} before / "
                    f"{os.getloadavg()[0]:.2f} after")


def speedups(report: dict) -> dict[str, tuple[float, float, list]]:
    """'format precision seq' -> (speed-up vs PyTorch, p50 ms, rounds' p50s)."""
    out = {"pytorch fp32": (1.0, report["baseline"]["latency_ms"]["p50"],
                            report["baseline"]["latency_ms"].get("rounds_p50"))}
    for a in report["artifacts"]:
        key = f"{a['format']} {a['precision']}" + (f" seq{a['seq_len']}" if a["seq_len"] != report["data"]["seq_len"] else "")
        if key in out:  # two rows of one file (e.g. OpenVINO as forced and as it runs by default)
            key += f" ({a.get('executed_precision', '?')})"
        out[key] = (a["speedup_vs_baseline"], a["latency_ms"]["p50"], a["latency_ms"].get("rounds_p50"))
    return out


def timing_line(report: dict) -> str:
    t = report.get("timing") or {}
    if not t:
        return "no timing summary (edgeify before issue 20)"
    refs = t.get("reference_ms") or [0]
    return (f"noisy: **{t['noisy']}**, spread {t['spread']:.0%} (threshold {t['threshold']:.0%}), "
            f"{t['disturbed']} of {t['rounds']} rounds disturbed, {t['retimed']} re-timed, rounds' p50 spread "
            f"{t['p50_spread']:.0%}; reference kernel {min(refs):.1f}-{max(refs):.1f} ms on {t['threads']} threads")


def table(quiet: dict, loaded: dict) -> tuple[list[str], list[float]]:
    q, lo = speedups(quiet), speedups(loaded)
    lines = ["| artifact | quiet p50 ms | quiet speed-up | loaded p50 ms | loaded speed-up | loaded / quiet |",
             "|---|---|---|---|---|---|"]
    ratios = []
    for key, (sq, pq, _) in q.items():
        if key not in lo:
            continue
        sl, pl, _ = lo[key]
        ratio = sl / sq if sq else float("nan")
        if key != "pytorch fp32":
            ratios.append(ratio)
        flag = "" if abs(ratio - 1) <= TOLERANCE else " **out**"
        lines.append(f"| {key} | {pq:.2f} | {sq:.2f}x | {pl:.2f} | {sl:.2f}x | {ratio:.2f}{flag} |")
    return lines, ratios


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default="electra", help="family name, hub id or model directory")
    ap.add_argument("--name", help="result name (default noise-MODEL)")
    ap.add_argument("--work", help="work dir (default: a temp dir)")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args, extra = ap.parse_args(argv[:cut]), argv[cut + 1:]  # after --: more edgeify options
    name = args.name or f"noise-{Path(args.model).name}"
    work = Path(args.work or tempfile.mkdtemp(prefix="edgeify-bench-noise-"))
    work.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    quiet, q_when = run_edgeify(args.model, work / "quiet", extra)
    hog = start_hog(seconds=max(600.0, 3 * (time.time() - t0)))
    try:
        loaded, l_when = run_edgeify(args.model, work / "loaded", extra)
    finally:
        hog.kill()
        hog.wait()

    lines, ratios = table(quiet, loaded)
    within = all(abs(r - 1) <= TOLERANCE for r in ratios)
    noisy = bool((loaded.get("timing") or {}).get("noisy"))
    t = loaded.get("timing") or {}
    verdict = ("**Met**: every speed-up within 25% of the quiet run's" if within else
               f"**Met (flagged)**: speed-ups moved up to {max(abs(r - 1) for r in ratios):.0%}, and the loaded "
               f"report says so: noisy, spread {t.get('spread', 0):.0%}" if noisy else
               f"**Not met**: speed-ups moved up to {max(abs(r - 1) for r in ratios):.0%} and the report "
               "did not flag the timing")
    settings = "; ".join(f"{rt}: {json.dumps(s)}" for rt, s in (t.get("settings") or {}).items())
    text = "\n".join([
        f"### {name}", "",
        f"- `edgeify {args.model} --int8 --formats all {' '.join(extra)}`, twice; machine: {machine()}",
        f"- quiet run (no hog of ours): {q_when}; timing {timing_line(quiet)}",
        f"- loaded run (busy loop pinned to CPU {max(os.sched_getaffinity(0))}): {l_when}; timing {timing_line(loaded)}",
        f"- thread settings: {settings}", "",
        *lines, "",
        f"{verdict} (worst loaded/quiet {min(ratios):.2f}-{max(ratios):.2f}).", ""])
    save_result(name, text)
    return 0 if (within or noisy) else 1


if __name__ == "__main__":
    sys.exit(main())
