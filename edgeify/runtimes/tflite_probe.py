"""Run a .tflite file on whatever TFLite runtime this Python has; print one JSON line.

Standalone on purpose (numpy + tflite_runtime or ai_edge_litert only, no edgeify): it is
run with another Python, e.g. a venv holding tflite-runtime 2.14 as a Raspberry Pi has,
to check that an artifact loads and gives the same numbers there.

    python tflite_probe.py MODEL.tflite INPUTS.npz OUTPUT.npy [THREADS]
"""

import json
import sys

import numpy as np


def _interpreter():
    try:
        from ai_edge_litert.interpreter import Interpreter
        from importlib.metadata import version
        return Interpreter, f"ai-edge-litert {version('ai-edge-litert')}"
    except ImportError:
        from tflite_runtime.interpreter import Interpreter
        from importlib.metadata import version
        return Interpreter, f"tflite-runtime {version('tflite-runtime')}"


def main(model: str, inputs: str, output: str, threads: str = "1") -> dict:
    Interpreter, runtime = _interpreter()
    try:
        interpreter = Interpreter(model_path=model, num_threads=int(threads))
        runner = interpreter.get_signature_runner()
    except Exception as e:  # noqa: BLE001 - report, don't crash: this is a probe
        lines = [ln for ln in str(e).splitlines() if ln.strip()]
        return {"runtime": runtime, "loads": False, "error": (lines[0] if lines else type(e).__name__)[:300]}
    data = np.load(inputs)
    n = len(data[data.files[0]])
    outs = []
    try:
        for i in range(n):
            result = runner(**{k: data[k][i:i + 1].astype(np.int32) for k in data.files})
            outs.append(np.asarray(next(iter(result.values()))))
    except Exception as e:  # noqa: BLE001
        lines = [ln for ln in str(e).splitlines() if ln.strip()]
        return {"runtime": runtime, "loads": True, "runs": False,
                "error": (lines[0] if lines else type(e).__name__)[:300]}
    np.save(output, np.concatenate(outs))
    return {"runtime": runtime, "loads": True, "runs": True}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:5])))
