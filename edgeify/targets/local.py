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


def measure(artifact: str | Path, feeds: dict[str, np.ndarray], threads: int,
            warmup: int = 10, min_runs: int = 30, max_runs: int = 300,
            max_seconds: float = 6.0, timeout: float = 600.0,
            env: tuple[tuple[str, str], ...] = (), generate: dict | None = None) -> dict:
    """Latency p50/p90 (ms) at the given inputs' shape, plus peak RSS (MB); with
    `generate` ({prompt_tokens, new_tokens}) also a causal LM's tokens/s (see child.py)."""
    with tempfile.TemporaryDirectory(prefix="edgeify-bench-") as tmp:
        inputs = Path(tmp) / "inputs.npz"
        np.savez(inputs, **feeds)
        spec = dict(artifact=str(artifact), inputs=str(inputs), threads=threads, warmup=warmup,
                    min_runs=min_runs, max_runs=max_runs, max_seconds=max_seconds, generate=generate)
        child_env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), **dict(env))
        try:
            proc = subprocess.run([sys.executable, "-m", "edgeify.targets.child", json.dumps(spec)],
                                  capture_output=True, text=True, timeout=timeout, env=child_env)
        except subprocess.TimeoutExpired:
            raise EdgeifyError(f"benchmark of {artifact} timed out after {timeout:.0f}s") from None
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgeifyError(f"benchmark of {artifact} failed: {tail[:300]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_interleaved(artifacts: list[str | Path], feeds: dict[str, np.ndarray] | list[dict[str, np.ndarray]],
                        threads: int, rounds: int = 3, seconds_per_round: float = 2.0, progress=None,
                        env: tuple[tuple[str, str], ...] = (), generate: dict | None = None) -> list[dict]:
    """Time several artifacts in interleaved rounds; p50/p90 are medians over the rounds.
    `feeds` is one input set for all, or one per artifact (e.g. files of different lengths).

    On a shared, noisy machine a slow spell hits one artifact when they are timed one
    after the other; interleaving spreads it over all of them, so the ratios between
    artifacts (what the report compares) stay honest.
    """
    import statistics

    per_feeds = feeds if isinstance(feeds, list) else [feeds] * len(artifacts)
    if len(per_feeds) != len(artifacts):
        raise ValueError(f"{len(per_feeds)} input sets for {len(artifacts)} artifacts")
    per: list[list[dict]] = [[] for _ in artifacts]
    for _ in range(max(1, rounds)):
        for i, path in enumerate(artifacts):
            per[i].append(measure(path, per_feeds[i], threads, max_seconds=seconds_per_round, env=env,
                                  generate=generate))
            if progress is not None:
                progress.update(1)
    out = []
    for runs in per:
        merged = dict(runs[-1])
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
        out.append(merged)
    return out
