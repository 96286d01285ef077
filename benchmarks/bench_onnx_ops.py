"""Why edgeify rewrites some fused onnxruntime ops (edgeify/export/onnx_norms.py).

Times, side by side in one process, one transformer layer's worth of each op as
onnxruntime's transformer optimizer leaves it and as edgeify lowers it, at batch 1,
seq 128 on the CPU execution provider:

- SkipLayerNormalization (residual add + layer norm) vs what onnx_norms.lower_norms makes
  of it: Add + InstanceNormalization over (rows, 1, hidden) + Mul(gamma) + Add(beta), and
  the same without the Add(beta), which fold_norm_shifts moves into the next layer's biases;
- BiasGelu vs Add + Gelu (after dynamic quantization the Add goes into the int8 matmul).

Prints each pair's latency ratio; results in benchmarks/RESULTS.md.

    python benchmarks/bench_onnx_ops.py [--hidden 384] [--ffn 1536] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _model(nodes, inputs, inits):
    from onnx import TensorProto, helper

    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "g", inputs, outs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid("com.microsoft", 1)])


def norm_variants(seq: int, hidden: int) -> dict:
    """The fused norm, and what edgeify's lower_norms makes of it with and without a shift."""
    from onnx import TensorProto, helper, numpy_helper

    from edgeify.export.onnx_norms import lower_norms

    rng = np.random.default_rng(0)
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, seq, hidden]) for n in ("x", "skip")]
    inits = [numpy_helper.from_array(rng.random(hidden).astype(np.float32) + 0.5, "gamma"),
             numpy_helper.from_array(rng.random(hidden).astype(np.float32), "beta")]

    def skip_norm(with_shift: bool):
        names = ["x", "skip", "gamma", "beta"] if with_shift else ["x", "skip", "gamma"]
        node = helper.make_node("SkipLayerNormalization", names, ["y"], domain="com.microsoft", epsilon=1e-12)
        return _model([node], inputs, inits if with_shift else inits[:1])

    lowered, folded = skip_norm(True), skip_norm(False)
    lower_norms(lowered)
    lower_norms(folded)
    return {"SkipLayerNormalization": skip_norm(True), "lowered (InstanceNormalization)": lowered,
            "lowered, shift folded": folded}


def gelu_variants(seq: int, ffn: int) -> dict:
    from onnx import TensorProto, helper, numpy_helper

    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, seq, ffn])]
    inits = [numpy_helper.from_array(np.random.default_rng(1).standard_normal(ffn).astype(np.float32), "b")]
    node = helper.make_node
    return {
        "BiasGelu": _model([node("BiasGelu", ["x", "b"], ["y"], domain="com.microsoft")], inputs, inits),
        "Gelu (bias in the matmul)": _model([node("Gelu", ["x"], ["y"], domain="com.microsoft")], inputs, inits),
    }


def time_models(models: dict, feeds: dict, threads: int, rounds: int = 5, runs: int = 300) -> dict:
    """Median over interleaved rounds of each model's median run time, in microseconds."""
    import onnxruntime as ort

    sessions = {}
    for name, model in models.items():
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        sessions[name] = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    per_round: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, session in sessions.items():
            for _ in range(30):
                session.run(None, feeds)
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                session.run(None, feeds)
                times.append(time.perf_counter() - t0)
            per_round[name].append(1e6 * statistics.median(times))
    return {name: statistics.median(v) for name, v in per_round.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--ffn", type=int, default=1536)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()

    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # unused-initializer chatter
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, args.seq_len, args.hidden)).astype(np.float32)
    h = rng.standard_normal((1, args.seq_len, args.ffn)).astype(np.float32)
    print(f"onnxruntime {ort.__version__}, batch 1, seq {args.seq_len}, hidden {args.hidden}, ffn {args.ffn}")
    print("| threads | as fused | us | as edgeify lowers it | us | lowered / fused |")
    print("|---|---|---|---|---|---|")
    for threads in args.threads:
        norms = time_models(norm_variants(args.seq_len, args.hidden), {"x": x, "skip": x[:, ::-1].copy()}, threads)
        gelus = time_models(gelu_variants(args.seq_len, args.ffn), {"x": h}, threads)
        for times in (norms, gelus):
            (fused_name, fused_us), *lowered = times.items()
            for name, us in lowered:
                print(f"| {threads} | {fused_name} | {fused_us:.1f} | {name} | {us:.1f} | "
                      f"{us / fused_us:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
