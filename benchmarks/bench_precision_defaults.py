"""What each runtime computes in when a file is loaded plainly on this CPU (issue 20).

OpenVINO runs float layers in bf16 on a bf16 CPU unless told otherwise. Do onnxruntime
(MLAS) and TFLite (XNNPACK) have such a default here too? Measured, not assumed: for the
fp32 (and fp16-weight) files of a finished run, the logits of a plain load against
PyTorch fp32 on 16 texts (bf16 arithmetic moves logits by ~1e-2 of their scale, f32 by
~1e-6), and the latency of the plain load against the explicit-f32 one, interleaved.

    python benchmarks/bench_precision_defaults.py /tmp/prec-a [--threads 2] [--seconds 2]

Variants timed: onnxruntime default session, and with the only bf16 switch it has
(`mlas.enable_gemm_fastmath_arm64_bfloat16`, documented as Arm-only) set to 1; TFLite with
its default delegate (XNNPACK) and without any delegate (built-in kernels); OpenVINO plain
and with INFERENCE_PRECISION_HINT f32.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np


def _feeds(run_dir: Path, names, dtype, n: int = 16, seq_len: int = 128) -> list[dict]:
    from transformers import AutoTokenizer

    from edgeify.calibration import synthetic
    from edgeify.calibration.tokenize import encode_classification

    tok = AutoTokenizer.from_pretrained(run_dir / "pytorch")
    texts = [t for t, _ in synthetic.labelled_reviews(n, seed=7)]
    enc = encode_classification(tok, texts, None, seq_len, names).inputs
    return [{k: enc[k][i:i + 1].astype(dtype) for k in names} for i in range(n)]


def _torch(run_dir: Path, feeds: list[dict]) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(run_dir / "pytorch").eval()
    with torch.no_grad():
        return np.concatenate([model(**{k: torch.from_numpy(v.astype(np.int64)) for k, v in f.items()}).logits.numpy()
                               for f in feeds])


def _onnx(path: Path, threads: int, fastmath: bool):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    if fastmath:
        opts.add_session_config_entry("mlas.enable_gemm_fastmath_arm64_bfloat16", "1")
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda f: session.run(None, f)[0]


def _tflite(path: Path, threads: int, delegate: bool):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = OpResolverType.AUTO if delegate else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    run = Interpreter(model_path=str(path), num_threads=threads, experimental_op_resolver_type=kind
                      ).get_signature_runner()
    return lambda f: next(iter(run(**f).values()))


def _openvino(path: Path, threads: int, hint: str | None):
    import openvino as ov

    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
              **({"INFERENCE_PRECISION_HINT": hint} if hint else {})}
    compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    ran = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    request = compiled.create_infer_request()
    fn = lambda f: request.infer(f)[0]  # noqa: E731
    fn.ran = ran
    return fn


def _variants(run_dir: Path, threads: int) -> dict:
    """name -> (opener, input dtype)."""
    out = {}
    for fmt, stem, ext in (("onnx", "model.fp32", "onnx"), ("tflite", "model.fp32.seq128", "tflite"),
                           ("tflite", "model.fp16.seq128", "tflite"), ("openvino", "model.fp32", "xml"),
                           ("openvino", "model.fp16", "xml"), ("openvino", "model.int8", "xml")):
        path = run_dir / fmt / f"{stem}.{ext}"
        if not path.exists():
            continue
        if fmt == "onnx":
            out[f"{path.name} default"] = (lambda p=path: _onnx(p, threads, False), np.int64)
            out[f"{path.name} arm64 bf16 fastmath=1"] = (lambda p=path: _onnx(p, threads, True), np.int64)
        elif fmt == "tflite":
            out[f"{path.name} default (XNNPACK)"] = (lambda p=path: _tflite(p, threads, True), np.int32)
            out[f"{path.name} no delegate"] = (lambda p=path: _tflite(p, threads, False), np.int32)
        else:
            out[f"{path.name} plain load"] = (lambda p=path: _openvino(p, threads, None), np.int64)
            out[f"{path.name} f32 hint"] = (lambda p=path: _openvino(p, threads, "f32"), np.int64)
    return out


def _time(fn, feed, seconds: float) -> float:
    for _ in range(10):
        fn(feed)
    ts, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(ts) < 20:
        t = time.perf_counter()
        fn(feed)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from edgeify.families import get

    names = get(json.loads((args.run_dir / "report.json").read_text())["model"]["family"]).onnx_inputs
    ref = _torch(args.run_dir, _feeds(args.run_dir, names, np.int64))
    scale = float(np.abs(ref).max())
    opened = {name: (opener(), dtype) for name, (opener, dtype) in _variants(args.run_dir, args.threads).items()}
    rows = {}
    for name, (fn, dtype) in opened.items():
        feeds = _feeds(args.run_dir, names, dtype)
        got = np.concatenate([np.asarray(fn(f)).reshape(1, -1) for f in feeds])
        rows[name] = {"max_abs_diff_vs_torch_fp32": float(np.abs(got - ref).max()),
                      "relative": float(np.abs(got - ref).max()) / scale, "ms": [],
                      **({"openvino_ran": fn.ran} if hasattr(fn, "ran") else {})}
    for _ in range(args.rounds):  # interleaved rounds: every variant sees the same machine
        for name, (fn, dtype) in opened.items():
            rows[name]["ms"].append(round(_time(fn, _feeds(args.run_dir, names, dtype, n=1)[0], args.seconds), 3))
    for name, row in rows.items():
        row["p50_ms"] = statistics.median(row["ms"])
        print(json.dumps({"variant": name, **row}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
