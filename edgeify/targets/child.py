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
    generation = _generation(runner, feeds, spec["generate"]) if spec.get("generate") else None
    peak = _peak_rss_mb()
    arr = np.asarray(times)
    return {
        **({"generation": generation} if generation else {}),
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
