"""Does a deployment card's snippet, run on its own, give the latency the report promises?

Takes a finished run directory, extracts the Python snippet from each DEPLOY-*.md (or the
ones named), appends a timing loop around the snippet's own `logits = ...` line, and runs
it as a script in a fresh process from the output directory, as a user would: no edgeify
imported, only the plain runtime. Each round is followed by `edgeify bench` on the same
file at the same moment, so a machine that got busier since the run shows up as such and
is not blamed on the snippet.

    python benchmarks/bench_deploy_card.py /tmp/prec-a [--card DEPLOY-x.md] [--rounds 3] [--seconds 4]
    python benchmarks/bench_deploy_card.py /tmp/prec-a --artifact openvino/model.fp32.xml

`--artifact` renders the snippet a card for that file would hold (deploy_card.snippet),
e.g. to check that the f32 reference's snippet (hint f32) and a bf16 row's (no hint) each
reproduce their own row, not each other's.

Prints one JSON line per card: the report's p50 (and its fastest round), the snippet's p50
per round, `edgeify bench`'s p50 per round, and the ratios (snippet / report, snippet / bench).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TIMING = """
import time as _time
_ts, _end = [], _time.perf_counter() + {seconds}
for _ in range(20):  # warm-up, as edgeify's timing child does
    {call}
while _time.perf_counter() < _end or len(_ts) < 30:
    _t = _time.perf_counter()
    {call}
    _ts.append(_time.perf_counter() - _t)
_ts.sort()
print("SNIPPET_P50_MS", _ts[len(_ts) // 2] * 1e3, len(_ts))
"""


def snippet_of(card: Path) -> str:
    found = re.search(r"```python\n(.*?)```", card.read_text(), re.S)
    if not found:
        raise SystemExit(f"{card}: no ```python block")
    return found.group(1)


def timed_script(code: str, seconds: float) -> str:
    """The snippet as written, then its own inference line again in a timing loop."""
    calls = [ln for ln in code.splitlines() if ln.startswith("logits = ")]
    if not calls:
        raise SystemExit("the snippet has no `logits = ...` line to time")
    return code + TIMING.format(seconds=seconds, call=calls[-1])


def run_snippet(script: Path, run_dir: Path) -> float:
    out = subprocess.run([sys.executable, str(script)], cwd=run_dir, capture_output=True, text=True, check=True)
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("SNIPPET_P50_MS"))
    return float(line.split()[1])


def run_bench(artifact: Path, seq_len: int, threads: int, seconds: float) -> float:
    out = subprocess.run([sys.executable, "-m", "edgeify", "bench", str(artifact), "--seq-len", str(seq_len),
                          "--threads", str(threads), "--seconds", str(seconds)],
                         capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout[out.stdout.index("{"):])["p50"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--card", action="append", help="DEPLOY-*.md file name(s) [default: every card]")
    ap.add_argument("--artifact", action="append", help="an artifact path of the run: its card's snippet")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    run_dir = args.run_dir.resolve()
    report = json.loads((run_dir / "report.json").read_text())
    entries = {e["path"]: e for e in report["artifacts"]}
    if args.artifact:
        from edgeify import deploy_card

        snippets = {f"(card for {a})": (a, deploy_card.snippet(report, entries[a], run_dir)) for a in args.artifact}
    else:
        cards = [run_dir / c for c in args.card] if args.card else sorted(run_dir.glob("DEPLOY-*.md"))
        snippets = {c.name: (re.search(r"# Deployment card: `([^`]+)`", c.read_text()).group(1), snippet_of(c))
                    for c in cards}
    for card, (path, code) in snippets.items():
        entry = entries[path]
        threads = entry["threads"]
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "snippet.py"
            script.write_text(timed_script(code, args.seconds))
            snippet_ms, bench_ms = [], []
            for _ in range(args.rounds):  # interleaved: both see the same machine
                snippet_ms.append(round(run_snippet(script, run_dir), 3))
                bench_ms.append(round(run_bench(run_dir / path, entry["seq_len"], threads, args.seconds), 3))
        lat = entry["latency_ms"]
        snip = statistics.median(snippet_ms)
        print(json.dumps({
            "card": card, "artifact": path,
            "hint": re.findall(r"'INFERENCE_PRECISION_HINT': '(\w+)'", code) or None, "executed_precision": entry.get("executed_precision"),
            "threads": threads, "report_p50": lat["p50"], "report_best_round": min(lat.get("rounds_p50") or [lat["p50"]]),
            "snippet_p50": snippet_ms, "bench_p50": bench_ms,
            "snippet_over_report": round(snip / lat["p50"], 3),
            "snippet_over_bench": round(snip / statistics.median(bench_ms), 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
