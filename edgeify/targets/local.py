"""Latency and peak memory of one artifact, timed in a fresh child process.

A fresh process per artifact keeps the measurements apart: no warm caches or arenas
from the previous model, and its peak RSS is the artifact's own (plus the runtime).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgeify.errors import EdgeifyError
from edgeify.targets.child import REFERENCE_CHUNKS, REFERENCE_CHUNK_BYTES

REFERENCE_BYTES = REFERENCE_CHUNKS * REFERENCE_CHUNK_BYTES


# How the timing process's OpenMP pool waits when the machine is busy. PyTorch's CPU wheel
# uses GNU OpenMP, whose idle threads spin GOMP_SPINCOUNT times (default 300000, several
# ms) before they sleep. With another process on one of two cores, the thread that
# finishes a parallel region first can spin through its whole count while the thread it
# waits for has no core, at each of the model's parallel regions. Measured (RESULTS.md,
# issue 20, bench_spin.py), ELECTRA starter at 2 threads with a hog on one core, p50 ms:
# Zen 4 VM default 64 (up to 220; 1 thread 13), 10000: 44, 1000: 12, 0: 9.5; Zen 3 VM
# default 18, 10000: 50, 1000: 16, 0: 10.6 (1 thread 8.8). Quiet, not spinning costs
# 1.5-3x (Zen 4 6.8 -> 9.9, Zen 3 7.4 -> 21): so no spinning (0) is set only when the
# reference kernel finds the machine busy right before the timing (spin_env), never on a
# quiet machine.
SPIN_ENV: tuple[tuple[str, str], ...] = (("GOMP_SPINCOUNT", "0"),)
BUSY_WAIT = 0.15  # the reference kernel's threads waited 15% of their work for a core


def spin_env(threads: int) -> tuple[tuple[str, str], ...]:
    """SPIN_ENV when another process holds a core right now (so spinning threads would
    starve their partners), else nothing: OpenMP's own default, fastest on a quiet machine.
    The user's own OMP_WAIT_POLICY / GOMP_SPINCOUNT always win (measure)."""
    if threads < 2:
        return ()
    from edgeify.targets.child import reference_kernel

    return SPIN_ENV if reference_kernel(threads)["wait"] > BUSY_WAIT else ()


def measure(artifact: str | Path, feeds: dict[str, np.ndarray], threads: int,
            warmup: int = 10, min_runs: int = 30, max_runs: int = 300,
            max_seconds: float = 6.0, timeout: float = 600.0,
            env: tuple[tuple[str, str], ...] = (), generate: dict | None = None,
            reference: bool = False) -> dict:
    """Latency p50/p90 (ms) at the given inputs' shape, plus peak RSS (MB); with
    `generate` ({prompt_tokens, new_tokens}) also a causal LM's tokens/s (see child.py);
    with `reference`, the reference kernel's times right before and after the timing
    (child.reference_kernel), to tell whether the machine was busy meanwhile."""
    with tempfile.TemporaryDirectory(prefix="edgeify-bench-") as tmp:
        inputs = Path(tmp) / "inputs.npz"
        np.savez(inputs, **feeds)
        spec = dict(artifact=str(artifact), inputs=str(inputs), threads=threads, warmup=warmup,
                    min_runs=min_runs, max_runs=max_runs, max_seconds=max_seconds, generate=generate,
                    reference_threads=threads if reference else 0)
        own = "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ
        child_env = dict(() if own else spin_env(threads), **os.environ)  # the user's own settings win
        child_env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), **dict(env))
        try:
            proc = subprocess.run([sys.executable, "-m", "edgeify.targets.child", json.dumps(spec)],
                                  capture_output=True, text=True, timeout=timeout, env=child_env)
        except subprocess.TimeoutExpired:
            raise EdgeifyError(f"benchmark of {artifact} timed out after {timeout:.0f}s") from None
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgeifyError(f"benchmark of {artifact} failed: {tail[:300]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# A round is disturbed when the reference kernel ran this much slower than it can (see
# disturbance()); such rounds are timed again, at most RETRIES times each and at most
# half of all rounds in total (a machine busy throughout would otherwise double the run).
THRESHOLD = 0.15
RETRIES = 2


class Timings(list):
    """measure_interleaved's answer: the per-artifact results, in order, as a list (as
    before), plus `summary`, the run's timing health (see timing_summary)."""

    summary: dict


def disturbance(reference: dict | None, best_all_ms: float) -> float:
    """How much slower than it can the machine ran one timing window, as a fraction
    (0.5: 50% slower), from the reference kernel's runs before and after it: the larger of

    - wait: the kernel's threads were ready but had no core for that share of their work
      (another process had it): a hog, whether or not any round of the run was quiet;
    - drift: the kernel's wall time vs its fastest in this run (the machine's speed
      moved: a hog came or went, the clock or a shared cache changed).

    None (no reference taken): 0."""
    if not reference:
        return 0.0
    worst = 0.0
    for ref in (reference["before"], reference["after"]):
        drift = ref["all_ms"] / best_all_ms - 1 if best_all_ms > 0 else 0.0
        worst = max(worst, drift, ref["wait"])
    return worst


def _best_all_ms(per: list[list[dict]]) -> float:
    alls = [r["reference"][k]["all_ms"] for runs in per for r in runs if r.get("reference")
            for k in ("before", "after")]
    return min(alls) if alls else 0.0


def retime_disturbed(per: list[list[dict]], remeasure, threshold: float = THRESHOLD,
                     retries: int = RETRIES, cap: int | None = None) -> int:
    """Time again each round whose disturbance() exceeds `threshold` (per[artifact][round];
    `remeasure(artifact index)` gives a new result), at most `retries` times per round and
    `cap` times in all (default: half the rounds). A new attempt replaces the old when it
    was less disturbed. Returns how many re-timings ran."""
    total = sum(len(runs) for runs in per)
    cap = max(1, total // 2) if cap is None else cap
    done = 0
    for _ in range(retries):
        best = _best_all_ms(per)
        bad = [(i, r) for i, runs in enumerate(per) for r, res in enumerate(runs)
               if disturbance(res.get("reference"), best) > threshold]
        if not bad:
            break
        for i, r in bad:
            if done >= cap:
                return done
            again = remeasure(i)
            done += 1
            if disturbance(again.get("reference"), best) < disturbance(per[i][r].get("reference"), best):
                per[i][r] = again
    return done


def timing_summary(per: list[list[dict]], retimed: int, threads: int,
                   threshold: float = THRESHOLD) -> dict:
    """The run's timing health, for report.json's `timing`: `noisy` when a kept round was
    still disturbed after re-timing; `spread`, the worst kept round's disturbance; the
    reference kernel's wall times and waits (before and after each kept round, in order);
    `p50_spread`, the widest max/min - 1 of an artifact's per-round p50s; each runtime's
    thread settings (a list when rounds differed, see spin_env)."""
    best = _best_all_ms(per)
    worst = [disturbance(r.get("reference"), best) for runs in per for r in runs]
    refs = [r["reference"][k] for runs in per for r in runs if r.get("reference") for k in ("before", "after")]
    p50s = [(max(x["p50"] for x in runs) / min(x["p50"] for x in runs) - 1) for runs in per
            if runs and min(x["p50"] for x in runs) > 0]
    disturbed = sum(w > threshold for w in worst)
    seen: dict[str, list[dict]] = {}
    for runs in per:
        for r in runs:
            kinds = seen.setdefault(r.get("runtime", "?"), [])
            if r.get("thread_settings", {}) not in kinds:
                kinds.append(r.get("thread_settings", {}))
    # one runtime under several settings (PyTorch: OpenMP's spin capped in busy rounds): all
    settings = {rt: kinds[0] if len(kinds) == 1 else kinds for rt, kinds in seen.items()}
    return {"noisy": disturbed > 0, "spread": round(max(worst, default=0.0), 3),
            "threshold": threshold, "rounds": sum(len(runs) for runs in per), "disturbed": disturbed,
            "retimed": retimed, "reference_ms": [x["all_ms"] for x in refs], "reference_best_ms": best,
            "reference_wait": [x["wait"] for x in refs],
            "p50_spread": round(max(p50s, default=0.0), 3), "threads": threads, "settings": settings,
            "reference_kernel": f"SHA-256 of {REFERENCE_BYTES // 2**20} MiB on each of {threads} threads"}


def measure_interleaved(artifacts: list[str | Path], feeds: dict[str, np.ndarray] | list[dict[str, np.ndarray]],
                        threads: int, rounds: int = 3, seconds_per_round: float = 2.0, progress=None,
                        env: tuple[tuple[str, str], ...] = (), generate: dict | None = None) -> Timings:
    """Time several artifacts in interleaved rounds; p50/p90 are medians over the rounds.
    `feeds` is one input set for all, or one per artifact (e.g. files of different lengths).

    On a shared, noisy machine a slow spell hits one artifact when they are timed one
    after the other; interleaving spreads it over all of them, so the ratios between
    artifacts (what the report compares) stay honest. A spell that still hits some rounds
    harder is caught by the reference kernel timed around each round: those rounds are
    timed again (retime_disturbed), and what stays disturbed is said in `.summary`.
    """
    per_feeds = feeds if isinstance(feeds, list) else [feeds] * len(artifacts)
    if len(per_feeds) != len(artifacts):
        raise ValueError(f"{len(per_feeds)} input sets for {len(artifacts)} artifacts")

    def one(i: int) -> dict:
        return measure(artifacts[i], per_feeds[i], threads, max_seconds=seconds_per_round, env=env,
                       generate=generate, reference=True)

    per: list[list[dict]] = [[] for _ in artifacts]
    for _ in range(max(1, rounds)):
        for i in range(len(artifacts)):
            per[i].append(one(i))
            if progress is not None:
                progress.update(1)
    retimed = retime_disturbed(per, one)
    out = Timings(_merge(runs) for runs in per)
    out.summary = timing_summary(per, retimed, threads)
    return out


def _merge(runs: list[dict]) -> dict:
    """One artifact's rounds as one result: medians of p50/p90/mean, all rounds' p50s."""
    import statistics

    merged = dict(runs[-1])
    merged.pop("reference", None)
    for key in ("p50", "p90", "mean"):
        merged[key] = round(statistics.median(r[key] for r in runs), 3)
    merged["runs"] = sum(r["runs"] for r in runs)
    merged["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    merged["rounds_p50"] = [r["p50"] for r in runs]
    gens = [r["generation"] for r in runs if r.get("generation")]
    if gens:  # tokens/s: the median round, as for latency
        merged["generation"] = dict(gens[-1])
        for key in ("prefill_tokens_per_s", "decode_tokens_per_s"):
            merged["generation"][key] = round(statistics.median(g[key] for g in gens), 2)
        merged["generation"]["rounds_decode_tokens_per_s"] = [g["decode_tokens_per_s"] for g in gens]
    return merged
