"""Time (and optionally evaluate) one artifact on a device; print one JSON line.

Copied to the device by targets/remote.py, with the artifact, its inputs and a spec, and
run there with the device's own Python. The device does not have edgeify, so this file
needs only the standard library, numpy and the artifact's runtime.

Every runtime is configured exactly as edgeify's local runners configure it
(runtimes/onnxruntime_runner.py, openvino_runner.py, tflite_runner.py) and timed with the
loop of targets/child.py: a remote p50 is then comparable with a local one. When one of
those changes, change the mirror here: tests/targets/test_remote.py checks the copied
constants and that results match, benchmarks/bench_remote.py that the timing does.

    python3 device_runner.py SPEC.json

Output: the child.py result keys, or {"error": KIND, "message": ...} (exit code 3).
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
import xml.etree.ElementTree as ET

if __package__:  # imported inside edgeify
    from edgeify.contract import (CAPS_WITHOUT_BF16, OV_BIN_SHA256, OV_PRECISION, OV_SHAPES, TASK_CAUSAL_LM,
                                  ort_session_options, ort_thread_settings, sha256_of)
else:  # run as a script on a device: the copy targets/remote.py ships beside this file
    from contract import (CAPS_WITHOUT_BF16, OV_BIN_SHA256, OV_PRECISION, OV_SHAPES, TASK_CAUSAL_LM,
                          ort_session_options, ort_thread_settings, sha256_of)

TFLITE_MODULES = ("ai_edge_litert", "tflite_runtime", "tensorflow.lite")  # tried in this order


class Failure(Exception):
    """A failure this script reports as {"error": kind, ...} instead of a traceback."""

    def __init__(self, kind: str, message: str, **extra):
        super().__init__(message)
        self.kind, self.extra = kind, extra


def _first_line(e: BaseException) -> str:
    lines = [ln for ln in str(e).splitlines() if ln.strip() and not ln.startswith("Exception from")]
    return (lines[0] if lines else type(e).__name__)[:240]


def _peak_rss_mb() -> float:
    """As child.py: this process's VmHWM (ru_maxrss carries the parent's peak over on Linux)."""
    return _status_mb("VmHWM:")


def _status_mb(field: str) -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def _import_numpy():
    try:
        import numpy
    except ImportError as e:
        raise Failure("no_module", f"numpy cannot be imported ({_first_line(e)})", module="numpy",
                      tried=["numpy"], format="any") from None
    return numpy


# --- one opener per format: (input names, run(feeds) -> logits, runtime, precision or None)

def _open_onnx(path: str, threads: int, spec: dict):
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise Failure("no_runtime", f"onnxruntime cannot be imported ({_first_line(e)})",
                      format="onnx", tried=["onnxruntime"]) from None
    opts = ort_session_options(ort, threads)  # as this host's runner
    try:
        session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises several types
        raise Failure("load_failed", f"cannot load ONNX model ({_first_line(e)})") from None
    names = tuple(i.name for i in session.get_inputs())

    def run(feeds):
        return session.run(None, {n: feeds[n] for n in names})[0]

    return names, run, f"onnxruntime {ort.__version__}", None


def _tflite_interpreter():
    """(Interpreter class, runtime name): the first TFLite runtime that imports, in the
    order edgeify's tflite_probe.py tries them, then full TensorFlow."""
    from importlib.metadata import PackageNotFoundError, version

    why = []
    for module in TFLITE_MODULES:
        try:
            if module == "ai_edge_litert":
                from ai_edge_litert.interpreter import Interpreter
                return Interpreter, f"ai-edge-litert {version('ai-edge-litert')}"
            if module == "tflite_runtime":
                from tflite_runtime.interpreter import Interpreter
                return Interpreter, f"tflite-runtime {version('tflite-runtime')}"
            import tensorflow as tf
            return tf.lite.Interpreter, f"tensorflow {tf.__version__}"
        except (ImportError, PackageNotFoundError) as e:
            text = _first_line(e)
            why.append(module if text.startswith("No module named") else f"{module} ({text[:120]})")
    raise Failure("no_runtime", "no TFLite runtime can be imported: tried " + ", ".join(why),
                  format="tflite", tried=list(TFLITE_MODULES))


def _open_tflite(path: str, threads: int, spec: dict):
    np = _import_numpy()
    Interpreter, runtime = _tflite_interpreter()
    try:  # as TfliteRunner: the runtime's default delegates (XNNPACK) with the thread count
        interpreter = Interpreter(model_path=path, num_threads=threads)
        runner = interpreter.get_signature_runner()
    except Exception as e:  # noqa: BLE001 - the runtimes raise ValueError/RuntimeError
        raise Failure("load_failed", f"cannot load TFLite model ({_first_line(e)})") from None
    details = runner.get_input_details()
    names = tuple(details)
    seq_len = int(next(iter(details.values()))["shape"][1])

    def run(feeds):
        got = feeds[names[0]].shape[1]
        if got != seq_len:
            raise Failure("bad_input", f"this TFLite file takes sequences of exactly {seq_len} tokens; got {got}")
        outs = []
        for i in range(len(feeds[names[0]])):  # static batch 1: one row at a time
            result = runner(**{k: feeds[k][i:i + 1].astype(np.int32) for k in names})
            outs.append(np.asarray(next(iter(result.values()))))
        return np.concatenate(outs)

    return names, run, runtime, None


def _rt_value(model, key) -> str | None:
    try:
        return model.get_rt_info(list(key)).astype(str)
    except Exception:  # noqa: BLE001 - missing key
        return None


def _open_openvino(path: str, threads: int, spec: dict):
    np = _import_numpy()
    try:
        import openvino as ov
    except ImportError as e:
        raise Failure("no_runtime", f"openvino cannot be imported ({_first_line(e)})",
                      format="openvino", tried=["openvino"]) from None
    weights = os.path.splitext(path)[0] + ".bin"
    node = ET.parse(path).getroot().find("rt_info/" + "/".join(OV_BIN_SHA256))
    expected = node.get("value") if node is not None else None
    if expected and sha256_of(weights) != expected:  # as OpenVinoRunner (and: the copy is whole)
        raise Failure("load_failed", f"{os.path.basename(weights)} does not match the .xml (checksum differs)")
    core = ov.Core()
    try:
        model = core.read_model(path, weights)
    except Exception as e:  # noqa: BLE001
        raise Failure("load_failed", f"cannot load OpenVINO IR ({_first_line(e)})") from None
    hint = _rt_value(model, OV_PRECISION) or "f32"
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1}
    if hint == "native":
        cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
        hint = "f32" if cap in CAPS_WITHOUT_BF16 else None
    if hint:
        config["INFERENCE_PRECISION_HINT"] = hint
    shapes = spec.get("openvino_shapes") or _rt_value(model, OV_SHAPES) or ""
    static = shapes == "static"  # openvino_runner.STATIC_SHAPES_DEFAULT is False
    names = tuple(next(iter(p.get_names())) for p in model.inputs)
    compiled: dict = {}
    last: list = []

    def compile_for(key):
        m = model
        if key is not None:
            m = model.clone()
            m.reshape(dict(zip(names, (list(s) for s in key))))
        try:
            c = core.compile_model(m, "CPU", config)
        except Exception as e:  # noqa: BLE001
            raise Failure("load_failed", f"cannot compile OpenVINO model ({_first_line(e)})") from None
        compiled[key] = (c, c.create_infer_request())
        return compiled[key]

    def run(feeds):
        inputs = {n: feeds[n] for n in names}
        key = tuple(inputs[n].shape for n in names) if static else None
        pair = compiled.get(key) or compile_for(key)
        last[:] = [pair[0]]
        return np.array(pair[1].infer(inputs).to_tuple()[0])

    if not static:
        last[:] = [compile_for(None)[0]]
    return names, run, f"openvino {ov.__version__}", lambda: _ov_precision(last[0], static) if last else None


def _ov_precision(compiled, static: bool) -> str:
    """As OpenVinoRunner.precision: the plugin's float type and the low-precision matmuls."""
    ran = str(compiled.get_property("INFERENCE_PRECISION_HINT")).replace("<Type: '", "").rstrip("'>")
    ran = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(ran, ran)
    layers: dict = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) in ("FullyConnected", "MatMul", "Convolution"):
            p = info["runtimePrecision"].astype(str)
            layers[p] = layers.get(p, 0) + 1
    total = sum(layers.values())
    low = {"int4": layers.get("i4", 0) + layers.get("u4", 0), "int8": layers.get("i8", 0) + layers.get("u8", 0)}
    parts = [f"{name} {n}/{total}" for name, n in low.items() if n]
    text = f"{' + '.join(parts)} matmuls, rest {ran}" if parts else ran
    return text + (", static shapes" if static else "")


OPENERS = {".onnx": _open_onnx, ".tflite": _open_tflite, ".xml": _open_openvino}


# --- timing and evaluation ------------------------------------------------------------

def _time(run, feeds, spec: dict) -> list:
    """child.py's loop: warm-up, then at least min_runs and at most max_runs, stopping
    once max_seconds have passed."""
    for _ in range(spec["warmup"]):
        run(feeds)
    times = []
    start = time.perf_counter()
    while len(times) < spec["max_runs"]:
        t = time.perf_counter()
        run(feeds)
        times.append((time.perf_counter() - t) * 1000)
        if len(times) >= spec["min_runs"] and time.perf_counter() - start > spec["max_seconds"]:
            break
    return times


def _evaluate(np, run, inputs: dict, labels, task: str) -> dict:
    """edgeify.evaluate's metric with its batch sizes: accuracy (% argmax == label) for a
    classifier, perplexity (exp of the mean next-token NLL, no context) for a causal LM."""
    n = len(next(iter(inputs.values())))
    if task == TASK_CAUSAL_LM:
        nll, count = 0.0, 0
        for start in range(0, n, 4):
            feeds = {k: v[start:start + 4] for k, v in inputs.items()}
            logits = run(feeds).astype(np.float64)[:, :-1]
            logits = logits - logits.max(axis=-1, keepdims=True)
            logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
            per = -np.take_along_axis(logp, feeds["input_ids"][:, 1:, None], axis=-1)[..., 0]
            nll += float(per.sum())
            count += per.size
        return {"name": "perplexity", "value": round(math.exp(nll / max(count, 1)), 4), "n": n}
    correct = 0
    for start in range(0, n, 16):
        logits = run({k: v[start:start + 16] for k, v in inputs.items()})
        correct += int((logits.argmax(-1) == labels[start:start + 16]).sum())
    return {"name": "accuracy", "value": round(100.0 * correct / max(n, 1), 4), "n": n}


def _exit_when_stdin_closes() -> None:
    """The host keeps this process's stdin open through ssh: EOF means the host gave up
    (timeout, Ctrl-C, lost link), so stop rather than keep the device busy."""
    def watch():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        os._exit(4)

    threading.Thread(target=watch, daemon=True).start()


def main(spec: dict) -> dict:
    here = os.path.dirname(os.path.abspath(spec["_path"]))
    path = os.path.join(here, spec["artifact"])
    ext = os.path.splitext(path)[1]
    if ext not in OPENERS:
        raise Failure("bad_input", f"cannot run {spec['artifact']!r}: takes {', '.join(sorted(OPENERS))}")
    np = _import_numpy()
    data = np.load(os.path.join(here, spec["inputs"]))
    feeds = {k[len("feed."):]: data[k] for k in data.files if k.startswith("feed.")}
    rss_before = _status_mb("VmRSS:")
    t0 = time.perf_counter()
    names, run, runtime, precision = OPENERS[ext](path, spec["threads"], spec)
    load_s = time.perf_counter() - t0
    missing = [n for n in names if n not in feeds]
    if missing:
        raise Failure("bad_input", f"model needs inputs {missing}; got {sorted(feeds)}")
    feeds = {n: feeds[n] for n in names}
    times = _time(run, feeds, spec)
    peak = _peak_rss_mb()  # before evaluation: the timing's peak, as child.py reports it
    arr = np.asarray(times)
    out = {
        "p50": round(float(np.percentile(arr, 50)), 3),
        "p90": round(float(np.percentile(arr, 90)), 3),
        "mean": round(float(arr.mean()), 3),
        "runs": len(times),
        "load_s": round(load_s, 3),
        "peak_rss_mb": round(peak, 1),
        "runtime_rss_mb": round(rss_before, 1),
        "runtime": runtime,
        "precision": precision() if callable(precision) else precision,
        "threads": spec["threads"],
        "thread_settings": (ort_thread_settings(spec["threads"]) if ext == ".onnx"
                            else {"threads": spec["threads"]}),
        "batch": int(next(iter(feeds.values())).shape[0]),
        "seq_len": int(next(iter(feeds.values())).shape[1]),
    }
    if spec.get("task"):
        inputs = {k[len("eval."):]: data[k] for k in data.files if k.startswith("eval.")}
        missing = [n for n in names if n not in inputs]
        if missing:
            raise Failure("bad_input", f"evaluation needs inputs {missing}; got {sorted(inputs)}")
        labels = data["labels"] if "labels" in data.files else None
        out["metric"] = _evaluate(np, run, {n: inputs[n] for n in names}, labels, spec["task"])
    return out


if __name__ == "__main__":
    # Runtimes may print to stdout (banners, delegate notices): everything but the one
    # JSON line goes to stderr, so the host can read stdout as exactly that line.
    result_fd = os.dup(1)
    os.dup2(2, 1)
    with open(sys.argv[1]) as f:
        spec_ = dict(json.load(f), _path=sys.argv[1])
    if spec_.get("exit_on_stdin_eof"):
        _exit_when_stdin_closes()
    code = 0
    try:
        result = main(spec_)
    except Failure as e:
        result, code = {"error": e.kind, "message": str(e), **e.extra}, 3
    except Exception as e:  # noqa: BLE001 - report, not a traceback the host cannot parse
        import traceback

        traceback.print_exc()
        result, code = {"error": "failed", "message": f"{type(e).__name__}: {_first_line(e)}"}, 3
    if code:
        result["python_path"] = sys.executable
    os.write(result_fd, (json.dumps(result) + "\n").encode())
    sys.exit(code)
