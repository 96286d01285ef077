"""Why PyTorch (and onnxruntime) at 2 threads collapse on a 2-core machine whose other core
is busy, and what edgeify's settings buy (issue 20). Measured, not assumed.

A finished run directory gives the files: its `pytorch/` model and `onnx/model.fp32.onnx`.
Each setting is timed quiet and with a busy loop this script pins to the last CPU (it starts
and stops it itself), in interleaved rounds, batch 1 at the run's sequence length:

- PyTorch in edgeify's timing child (targets.local.measure) at 1 and 2 threads, GNU OpenMP's
  GOMP_SPINCOUNT unset (libgomp default), 10000, 1000 and 0 (edgeify's SPIN_ENV, which it
  sets only when the machine is busy);
- onnxruntime at 2 threads: its default intra-op spinning, a 50 us spin (edgeify's), and
  no spinning (session.intra_op.allow_spinning 0); one thread for comparison.

    python benchmarks/bench_spin.py RUN_DIR [--rounds 3] [--seconds 1.5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_noise import start_hog  # noqa: E402
from bench_onnx import machine, save_result  # noqa: E402

TORCH = [("1 thread, libgomp default", 1, None), ("2 threads, libgomp default", 2, None),
         ("2 threads, GOMP_SPINCOUNT 10000", 2, "10000"), ("2 threads, GOMP_SPINCOUNT 1000", 2, "1000"),
         ("2 threads, GOMP_SPINCOUNT 0 (edgeify when busy)", 2, "0")]
ORT = [("1 thread, default", 1, {}), ("2 threads, default spinning", 2, {}),
       ("2 threads, spin 50 us (edgeify)", 2, {"session.intra_op.spin_duration_us": "50"}),
       ("2 threads, no spinning", 2, {"session.intra_op.allow_spinning": "0"})]


def _feeds(run_dir: Path, seq_len: int) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    names = [i.name for i in ort.InferenceSession(str(run_dir / "onnx/model.fp32.onnx")).get_inputs()]
    ids = (np.arange(seq_len, dtype=np.int64).reshape(1, seq_len) % 200) + 5
    base = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    return {n: base[n] for n in names}


def _torch_p50(run_dir: Path, feeds: dict, threads: int, spin: str | None, seconds: float) -> float:
    from edgeify.targets import local

    chooser = local.spin_env
    local.spin_env = lambda threads: ()  # the setting under test, not edgeify's choice
    try:
        env = (("GOMP_SPINCOUNT", spin),) if spin is not None else ()
        return local.measure(run_dir / "pytorch", feeds, threads, warmup=5, min_runs=10, max_seconds=seconds,
                             env=env)["p50"]
    finally:
        local.spin_env = chooser


def _ort_p50(run_dir: Path, feeds: dict, threads: int, entries: dict, seconds: float) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.log_severity_level = 3
    for k, v in entries.items():
        opts.add_session_config_entry(k, v)
    sess = ort.InferenceSession(str(run_dir / "onnx/model.fp32.onnx"), opts, providers=["CPUExecutionProvider"])
    for _ in range(10):
        sess.run(None, feeds)
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 20:
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t) * 1000)
    return float(np.percentile(times, 50))


def _rounds(run_dir: Path, feeds: dict, rounds: int, seconds: float) -> dict[str, list[float]]:
    got: dict[str, list[float]] = {}
    for _ in range(rounds):
        for label, threads, spin in TORCH:
            got.setdefault(f"pytorch {label}", []).append(_torch_p50(run_dir, feeds, threads, spin, seconds))
        for label, threads, entries in ORT:
            got.setdefault(f"onnxruntime {label}", []).append(_ort_p50(run_dir, feeds, threads, entries, seconds))
    return got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path, help="a finished edgeify run (pytorch/ and onnx/model.fp32.onnx)")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--name", default="spin")
    args = ap.parse_args()
    os.environ.pop("GOMP_SPINCOUNT", None)
    os.environ.pop("OMP_WAIT_POLICY", None)
    feeds = _feeds(args.run_dir, args.seq_len)
    load0 = os.getloadavg()[0]
    quiet = _rounds(args.run_dir, feeds, args.rounds, args.seconds)
    hog = start_hog(seconds=3600)
    try:
        time.sleep(0.5)
        loaded = _rounds(args.run_dir, feeds, args.rounds, args.seconds)
    finally:
        hog.kill()
        hog.wait()
    lines = [f"### {args.name}", "",
             f"- files of `{args.run_dir}`, batch 1, seq {args.seq_len}, {args.rounds} interleaved rounds of "
             f"{args.seconds:g} s per setting; machine: {machine()}; load average {load0:.2f} before",
             f"- loaded: a busy loop pinned to CPU {max(os.sched_getaffinity(0))}", "",
             "| setting | quiet p50 ms (median of rounds) | loaded p50 ms | loaded rounds |",
             "|---|---|---|---|"]
    for key in quiet:
        q, lo = statistics.median(quiet[key]), statistics.median(loaded[key])
        lines.append(f"| {key} | {q:.2f} | {lo:.2f} | {', '.join(f'{x:.1f}' for x in loaded[key])} |")
    save_result(args.name, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
