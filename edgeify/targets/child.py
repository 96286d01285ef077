"""Child process for targets/local.py: load, warm up, time, print one JSON line."""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def _peak_rss_mb() -> float:
    """This process's own peak RSS. Not getrusage's ru_maxrss: Linux carries that over
    from the parent across fork+exec, so every child would report the parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB -> MiB
    except OSError:
        pass
    import resource  # not Linux: ru_maxrss is the best there is (bytes on macOS)

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def main(spec: dict) -> dict:
    import psutil

    from edgeify.runtimes import open_runner

    proc = psutil.Process()
    rss_before = proc.memory_info().rss
    t0 = time.perf_counter()
    runner = open_runner(spec["artifact"], spec["threads"])
    load_s = time.perf_counter() - t0
    data = np.load(spec["inputs"])
    feeds = {k: data[k] for k in data.files}
    for _ in range(spec["warmup"]):
        runner.run(feeds)
    times = []
    start = time.perf_counter()
    while len(times) < spec["max_runs"]:
        t = time.perf_counter()
        runner.run(feeds)
        times.append((time.perf_counter() - t) * 1000)
        if len(times) >= spec["min_runs"] and time.perf_counter() - start > spec["max_seconds"]:
            break
    peak = _peak_rss_mb()
    arr = np.asarray(times)
    return {
        "p50": round(float(np.percentile(arr, 50)), 3),
        "p90": round(float(np.percentile(arr, 90)), 3),
        "mean": round(float(arr.mean()), 3),
        "runs": len(times),
        "load_s": round(load_s, 3),
        "peak_rss_mb": round(peak, 1),
        "runtime_rss_mb": round(rss_before / 2**20, 1),
        "runtime": runner.runtime,
        "precision": runner.precision,
        "threads": spec["threads"],
        "batch": int(next(iter(feeds.values())).shape[0]),
        "seq_len": int(next(iter(feeds.values())).shape[1]),
    }


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
