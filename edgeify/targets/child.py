"""Child process for targets/local.py: load, warm up, time, print one JSON line."""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time

import numpy as np

# The reference kernel: SHA-256 over a 1 MiB buffer (cache-resident), `chunks` times per
# thread. Large chunks: the GIL is taken once per chunk, so threads seldom wait for it.
_CHUNK = bytes(range(256)) * 4096
REFERENCE_CHUNK_BYTES = len(_CHUNK)
REFERENCE_CHUNKS = 15  # ~9 ms of CPU per thread on a 2020s x86 core with SHA instructions
# Thread pools that spin after a run (OpenMP, onnxruntime) park within a few ms: the
# reference kernel waits this long so it does not time their spinning.
_PARK_S = 0.05


def _hash(chunks: int, out: list, i: int) -> None:
    wall, cpu = time.perf_counter(), time.thread_time()
    h = hashlib.sha256()
    for _ in range(chunks):
        h.update(_CHUNK)
    out[i] = (time.perf_counter() - wall, time.thread_time() - cpu)


def _run_threads(chunks: int, threads: int) -> dict:
    out: list = [None] * threads
    workers = [threading.Thread(target=_hash, args=(chunks, out, i)) for i in range(threads)]
    t = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t
    wait = max(w / c - 1 if c > 0 else 0.0 for w, c in out)
    return {"all_ms": round(wall * 1000, 3), "cpu_ms": round(max(c for _, c in out) * 1000, 3),
            "wait": round(max(wait, 0.0), 3)}


def reference_kernel(threads: int, chunks: int = REFERENCE_CHUNKS, repeats: int = 2) -> dict:
    """How freely this machine runs a fixed workload right now, on `threads` threads at
    once (the timing's thread count), each doing the same work: `all_ms`, the wall time;
    `cpu_ms`, the CPU time a thread needed; `wait`, the largest share by which a thread's
    wall time exceeded its CPU time (0.5: it waited half as long again for a core).

    Why this kernel: hashlib releases the GIL for large updates, so Python threads really
    run in parallel; SHA-256 on a cache-resident buffer is pure compute that never blocks,
    identical on every call and independent of the model's runtime. So a thread's wall
    time beyond its CPU time is time it was ready but had no core: another process had
    it. That needs no quiet measurement to compare with, and, unlike timing one thread
    against several, it holds on CPUs with cores of different speeds. Why `threads` copies:
    a hog on one of two cores leaves a one-thread workload untouched (it gets the free
    core) but stretches a two-thread one, which is what distorts the timings. Best of
    `repeats`: a one-off hiccup is not a busy machine; a hog that lasts survives it."""
    time.sleep(_PARK_S)
    return min((_run_threads(chunks, max(1, threads)) for _ in range(repeats)), key=lambda r: r["wait"])


def _thread_settings(runner, threads: int) -> dict:
    """The runtime's threading as it ran, for the report: the runner's own record (threads,
    spin-waiting), else OpenVINO's compile settings for threads and pinning."""
    own = getattr(runner, "thread_settings", None)
    if own:
        return dict(own)
    config = getattr(runner, "config", None) or {}
    keys = ("INFERENCE_NUM_THREADS", "NUM_STREAMS", "ENABLE_CPU_PINNING")
    return {"threads": threads, **{k: config[k] for k in keys if k in config}}


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
    ref_threads = spec.get("reference_threads", 0)
    before = reference_kernel(ref_threads) if ref_threads else None
    times = []
    start = time.perf_counter()
    while len(times) < spec["max_runs"]:
        t = time.perf_counter()
        runner.run(feeds)
        times.append((time.perf_counter() - t) * 1000)
        if len(times) >= spec["min_runs"] and time.perf_counter() - start > spec["max_seconds"]:
            break
    after = reference_kernel(ref_threads) if ref_threads else None
    generation = _generation(runner, feeds, spec["generate"]) if spec.get("generate") else None
    peak = _peak_rss_mb()
    arr = np.asarray(times)
    return {
        **({"generation": generation} if generation else {}),
        **({"reference": {"before": before, "after": after}} if ref_threads else {}),
        "thread_settings": _thread_settings(runner, spec["threads"]),
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


def _generation(runner, feeds: dict, spec: dict) -> dict | None:
    """Prefill and decode speed of a causal LM: a prompt from the timing input, then
    `new_tokens` greedy steps (no stop token), best of `repeats` runs. None for a model
    that cannot keep a cache (a logits-only export)."""
    from edgeify.generate import Sampling, generate
    from edgeify.runtimes import DecoderRunner
    from edgeify.runtimes.torch_runner import TorchDecoder, TorchRunner

    if isinstance(runner, DecoderRunner):
        decoder = runner.decoder
    elif isinstance(runner, TorchRunner) and hasattr(runner.model, "generate"):
        decoder = TorchDecoder(runner.model, runner.threads)
    else:
        return None
    # a small cache (--max-length) gets a shorter run rather than an overflow
    new = min(spec["new_tokens"], max(1, decoder.max_length // 2))
    prompt = [int(t) for t in feeds["input_ids"][0][: min(spec["prompt_tokens"], decoder.max_length - new + 1)]]
    runs = [generate(decoder, prompt, Sampling(max_new_tokens=new)) for _ in range(spec.get("repeats", 2))]
    return {"prompt_tokens": len(prompt), "new_tokens": new,
            "prefill_tokens_per_s": round(max(r.prefill_tokens_per_s for r in runs), 1),
            "decode_tokens_per_s": round(max(r.decode_tokens_per_s for r in runs), 2),
            "runtime": decoder.runtime}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
