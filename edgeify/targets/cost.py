"""What one forward of an exported artifact costs: FLOPs by compute precision and bytes moved.

Read from the exported graph itself (ONNX, OpenVINO IR, TFLite), at the static input shape
asked for, so the figure belongs to the artifact a target would run, not to the PyTorch
model it came from: fused attention, quantized matmuls, fp16 weights and int4 blocks all
show up as the runtime will see them. These counts feed the roofline in roofline.py; they
are never a latency, and nothing built from them is a measurement.

What is counted, and why:

- dense FLOPs (2 x M x N x K per matmul, attention's score and context products included)
  by the precision the runtime computes in: "fp32", "fp16" (fp16 or bf16) or "int8". An
  int8 x int8 matmul (dynamic, static QDQ, NNCF FakeQuantize, TFLite full int8 or
  dynamic-range) counts as int8. A weight-only matmul (float activations, int8/int4
  weights: onnxruntime's MatMulNBits, OpenVINO's compressed weights) counts as float FLOPs
  with int8/int4 weight bytes. MatMulNBits at accuracy_level 4 does quantize its input per
  block and multiply in int8 inside the op, but on a 128-token window it ran at about the
  host's fp32 GEMM rate, half its dynamic-int8 rate (benchmarks/results/estimator-host.md):
  its speed is that of float work, so it is counted as such.
- other FLOPs: elementwise work (normalisation, GELU, softmax, (de)quantization), a rough
  per-element weight (ELEMENTWISE_FLOPS). It runs far below GEMM speed, so the roofline
  times it at its own rate (roofline.elementwise_gops); it weighs most in narrow models
  (ELECTRA-small, hidden 256), which have few FLOPs per element.
- weight bytes: every distinct weight a dense op reads, once, as stored (int8/int4
  weights at their size); embedding tables only for the rows a lookup reads.
- activation bytes: inputs plus outputs of the dense ops (attention included) and of the
  data movement (transpose, concat, slice: a decoder's key/value cache is read and copied
  there), and of (de)quantization passes. Rough: at batch 1 most of it stays in cache.
"""

from __future__ import annotations

from pathlib import Path

from edgeify.targets.cost_model import ELEMENTWISE_FLOPS, PRECISIONS, Cost, Tally, prod  # noqa: F401


def graph_cost(path: Path, batch: int, seq_len: int) -> Cost:
    """Cost of one forward at (batch, seq_len) from an artifact's graph (.onnx, .xml, .tflite).

    A cached decoder is costed as the pipeline times it: a window of seq_len tokens from an
    empty cache (TFLite: the prefill signature, once per prefill-sized chunk)."""
    path = Path(path)
    _check_shape(batch, seq_len)
    reader = _reader(path)
    return reader.graph_cost(path, batch, seq_len)


def decode_cost(path: Path, context_len: int) -> Cost:
    """Cost of one decoded token (batch 1) with `context_len` tokens already in the cache,
    from a cached-decoder artifact's graph: ONNX with past_key_values inputs (past =
    context_len), a stateful OpenVINO IR (its cache variables given that length), or a
    TFLite file's decode signature (which attends over all its fixed cache slots, whatever
    the context: that is what it computes). See kv_cache_bytes() for the cache alone."""
    path = Path(path)
    if context_len < 0:
        raise ValueError(f"context_len must be >= 0, not {context_len}")
    return _reader(path).decode_cost(path, context_len)


def kv_cache_bytes(layers: int, heads: int, head_dim: int, context_len: int, dtype_bytes: float = 4) -> int:
    """Bytes of a key/value cache: 2 (keys and values) x layers x heads x head_dim x context
    x bytes per element. A decoded token reads all of it at least once."""
    return int(2 * layers * heads * head_dim * context_len * dtype_bytes)


def weight_streaming_cost(cost: Cost, cache_bytes: int) -> Cost:
    """One decoded token from a forward's cost when its graph cannot be read at decode
    shape: every matmul weight read once (weight_bytes), 2 x matmul_params FLOPs, plus the
    key/value cache. A lower bound: attention FLOPs and elementwise work are left out."""
    flops = {p: 0.0 for p in PRECISIONS}
    base = cost.precision_class.split("-")[0]
    flops[base] = 2.0 * cost.matmul_params
    return Cost(flops, 0.0, cost.weight_bytes, cache_bytes, dict(cost.weight_bytes_by_dtype),
                cost.matmul_params, cost.n_ops, cost.source + "; decode: weights + cache formula",
                cost.notes + ("decode cost from 2 x matmul params and weight + cache bytes",),
                flops[base] if cost.weight_only_flops else 0.0)


def _check_shape(batch: int, seq_len: int) -> None:
    if batch < 1:
        raise ValueError(f"batch must be >= 1, not {batch}")
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, not {seq_len}")


def _reader(path: Path):
    """The module that reads the cost of this file's format (its record's cost_reader)."""
    from edgeify.runtimes import formats

    if not path.is_file():
        raise FileNotFoundError(f"artifact not found: {path}")
    fmt = formats.of(path)
    if fmt is None:
        raise ValueError(f"{path}: cannot read the cost of a {path.suffix or 'suffix-less'!r} file; "
                         f"accepted: {', '.join(formats.suffixes())}")
    return fmt.cost_module()
