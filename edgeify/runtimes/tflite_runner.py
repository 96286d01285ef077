"""TFLite on CPU: ai-edge-litert when installed, tflite-runtime otherwise; XNNPACK with the
target's thread count. Files have static shapes (batch 1, one sequence length), so a
batch is run one row at a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgeify.errors import EdgeifyError, UsageError
from edgeify.runtimes import register_runner

# Other Pythons to check a .tflite on (os.pathsep-separated), e.g. a venv with
# tflite-runtime 2.14 as on Raspberry Pi OS. The in-process runtime is always checked.
PYTHONS_ENV = "EDGEIFY_TFLITE_PYTHONS"


def _first_line(e: Exception) -> str:
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:240]


@register_runner(".tflite file (ai-edge-litert / tflite-runtime)", lambda p: p.is_file() and p.suffix == ".tflite")
class TfliteRunner:
    def __init__(self, path: Path, threads: int):
        from edgeify.runtimes.tflite_probe import _interpreter

        try:
            Interpreter, self.runtime = _interpreter()
        except ImportError:
            raise UsageError("no TFLite runtime is installed; install one with: "
                             "pip install 'edgeify[tflite]' (or tflite-runtime)") from None
        path = Path(path)
        if path.stat().st_size < 8 or path.read_bytes()[4:8] != b"TFL3":
            raise EdgeifyError(f"{path}: not a TFLite flatbuffer (no TFL3 identifier)")
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
            self.runner = self.interpreter.get_signature_runner()
        except Exception as e:  # noqa: BLE001 - the runtimes raise ValueError/RuntimeError
            raise EdgeifyError(f"{path}: cannot load TFLite model ({_first_line(e)})") from None
        details = self.runner.get_input_details()
        self.input_names = tuple(details)
        self.seq_len = int(next(iter(details.values()))["shape"][1])
        self.threads = threads
        self.precision = _precision_of(path)

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise EdgeifyError(f"model needs inputs {missing}; got {sorted(feeds)}")
        got = feeds[self.input_names[0]].shape[1]
        if got != self.seq_len:
            raise EdgeifyError(f"this TFLite file takes sequences of exactly {self.seq_len} tokens "
                               f"(exported with --seq-len {self.seq_len}); got {got}")
        outs = []
        for i in range(len(feeds[self.input_names[0]])):
            row = {k: feeds[k][i:i + 1].astype(np.int32) for k in self.input_names}
            try:
                result = self.runner(**row)
            except Exception as e:  # noqa: BLE001 - e.g. a token id outside the vocabulary
                raise EdgeifyError(f"TFLite model failed on sample {i} ({_first_line(e)})") from None
            outs.append(np.asarray(next(iter(result.values()))))
        return np.concatenate(outs)


def _precision_of(path: Path) -> str:
    from edgeify.export.tflite import describe

    ops, types = describe(path)
    if "QUANTIZE" in ops:
        return "int8 (static)"
    if "INT8" in types:
        return "int8 weights (dynamic range)"
    if "FLOAT16" in types:
        return "fp16 weights"
    return "fp32"


# Two runtimes' int8 kernels round differently, so an int8 file's logits differ between
# them a little; a runtime that mis-reads the file gives unrelated logits. On the real
# ELECTRA model, 1000 tweets, tflite-runtime 2.14 vs ai-edge-litert: sound int8 files
# differ by 3-7% of the mean |logit| with 96-98% argmax agreement (accuracy on 2.14 within
# 0.6 points), per-channel dynamic-range files by 100% with 39-47% (accuracy 74 -> 42).
MAX_RELATIVE_DIFF = 0.2
MIN_ARGMAX_AGREEMENT_PCT = 80.0


def _agreement(got: np.ndarray, reference: np.ndarray) -> dict:
    got, reference = got.astype(np.float64), reference.astype(np.float64)
    mean_diff = float(np.abs(got - reference).mean())
    relative = mean_diff / max(float(np.abs(reference).mean()), 1e-12)
    agree = float((got.argmax(-1) == reference.argmax(-1)).mean() * 100)
    return {"max_abs_diff": round(float(np.abs(got - reference).max()), 6),
            "mean_abs_diff_relative": round(relative, 4), "argmax_agreement_pct": round(agree, 2),
            "same_results": bool(agree >= MIN_ARGMAX_AGREEMENT_PCT and relative <= MAX_RELATIVE_DIFF)}


def check_runtimes(path: Path, feeds: dict[str, np.ndarray], reference: np.ndarray,
                   pythons: list[str] | None = None, timeout: float = 300.0) -> list[dict]:
    """Load and run `path` on this Python's TFLite runtime and on each other Python; compare
    each one's logits with `reference` (the in-process run). A runtime that loads the file
    but computes something else is as unusable as one that rejects it."""
    if pythons is None:
        pythons = [p for p in os.environ.get(PYTHONS_ENV, "").split(os.pathsep) if p]
    probe = Path(__file__).with_name("tflite_probe.py")
    results = []
    with tempfile.TemporaryDirectory(prefix="edgeify-tflite-") as tmp:
        inputs = Path(tmp) / "inputs.npz"
        np.savez(inputs, **feeds)
        for python in [sys.executable, *pythons]:
            out = Path(tmp) / "out.npy"
            out.unlink(missing_ok=True)
            try:
                proc = subprocess.run([python, str(probe), str(path), str(inputs), str(out)],
                                      capture_output=True, text=True, timeout=timeout)
            except (subprocess.TimeoutExpired, OSError) as e:
                proc, res = None, {"runtime": f"python {python}", "loads": False,
                                   "error": f"probe failed: {e}"[:300]}
            if proc is not None:
                try:
                    res = json.loads(proc.stdout.strip().splitlines()[-1])
                except (ValueError, IndexError):
                    # no JSON: the runtime crashed (seen: tflite-runtime 2.14 segfaults on a
                    # truncated file) or this Python has no TFLite runtime at all
                    how = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
                           else f"exit code {proc.returncode}")
                    tail = (proc.stderr.strip().splitlines() or [""])[-1][:200]
                    res = {"runtime": f"python {python}", "loads": False,
                           "error": f"probe crashed ({how}) {tail}".strip()}
            res["python"] = python
            res["same_results"] = False
            if res.get("runs") and out.exists():
                got = np.load(out)
                if got.shape == reference.shape:
                    res.update(_agreement(got, reference))
                else:
                    res["error"] = f"output shape {list(got.shape)}, expected {list(reference.shape)}"
            results.append(res)
    return results
