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

import math
from dataclasses import dataclass, field
from pathlib import Path

PRECISIONS = ("fp32", "fp16", "int8")

# Rough FLOPs per output element of non-matmul work, by kind (see module docstring).
ELEMENTWISE_FLOPS = {"simple": 1, "quantize": 3, "transcendental": 10, "norm": 8, "softmax": 8}


@dataclass(frozen=True)
class Cost:
    """FLOPs and bytes of one forward (or one decoded token) of one artifact, counted from
    its graph. Estimated quantities: nothing here was timed."""

    flops: dict[str, float]            # dense FLOPs by compute precision ("fp32", "fp16", "int8")
    other_flops: float                 # elementwise / normalisation / softmax (rough)
    weight_bytes: int                  # weights read once per forward, as stored
    activation_bytes: int              # inputs + outputs of the ops that do work (rough)
    weight_bytes_by_dtype: dict[str, int] = field(default_factory=dict)
    matmul_params: int = 0             # weight elements feeding dense ops (each tensor once)
    n_ops: int = 0                     # ops that do work (not views, not constants)
    source: str = ""                   # what was read, at which shape
    notes: tuple[str, ...] = ()        # approximations made while reading this graph
    weight_only_flops: float = 0.0     # dense FLOPs of weight-only matmuls (int8/int4 weights, float in/out)

    @property
    def dense_flops(self) -> float:
        return float(sum(self.flops.values()))

    @property
    def bytes_moved(self) -> int:
        return self.weight_bytes + self.activation_bytes

    @property
    def precision_mix(self) -> dict[str, float]:
        """Share of the dense FLOPs in each compute precision."""
        total = self.dense_flops or 1.0
        return {p: round(f / total, 4) for p, f in self.flops.items() if f}

    @property
    def precision_class(self) -> str:
        """What an efficiency factor is fitted per: the precision most dense FLOPs run in,
        with "-weights" when most of them are weight-only matmuls, whose kernels (unpacking
        int4/int8 blocks, quantizing activations on the fly) reach another share of peak."""
        if not any(self.flops.values()):
            return "fp32"
        base = max(self.flops, key=lambda p: self.flops[p])
        return f"{base}-weights" if self.weight_only_flops * 2 > self.dense_flops else base


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
    if not path.is_file():
        raise FileNotFoundError(f"artifact not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from edgeify.targets import cost_onnx as reader
    elif suffix == ".xml":
        from edgeify.targets import cost_openvino as reader
    elif suffix == ".tflite":
        from edgeify.targets import cost_tflite as reader
    else:
        raise ValueError(f"{path}: cannot read the cost of a {suffix or 'suffix-less'!r} file; "
                         "accepted: .onnx, .xml (OpenVINO IR), .tflite")
    return reader


class Tally:
    """Accumulates one graph's cost while a format reader walks its ops."""

    def __init__(self, source: str):
        self.source = source
        self.flops = {p: 0.0 for p in PRECISIONS}
        self.other_flops = 0.0
        self.activation_bytes = 0.0
        self.n_ops = 0
        self.weight_only_flops = 0.0
        self._weights: dict[object, tuple[float, str, int]] = {}  # key -> (bytes, dtype, elements)
        self.gathered_bytes = 0.0
        self.notes: list[str] = []

    def dense(self, flops: float, precision: str, act_bytes: float = 0.0, weight_only: bool = False) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown compute precision {precision!r}; accepted: {', '.join(PRECISIONS)}")
        self.flops[precision] += float(flops)
        self.weight_only_flops += float(flops) if weight_only else 0.0
        self.activation_bytes += act_bytes
        self.n_ops += 1

    def weight(self, key: object, nbytes: float, dtype: str, elements: int) -> None:
        """A weight a dense op reads; counted once however many ops share it."""
        self._weights.setdefault(key, (float(nbytes), dtype, int(elements)))

    def elementwise(self, elements: float, kind: str, act_bytes: float = 0.0) -> None:
        """Elementwise work. Its bytes are left out (act_bytes 0) except for quantization:
        runtimes fuse normalisation and activation functions into their neighbours to
        different degrees, and at batch 1 those tensors mostly stay in cache; a
        (de)quantization that survives is a pass of its own over its tensor."""
        self.other_flops += ELEMENTWISE_FLOPS[kind] * float(elements)
        self.activation_bytes += act_bytes
        self.n_ops += 1

    def move(self, act_bytes: float) -> None:
        """Data movement (transpose, concat, slice, copies): bytes, no FLOPs."""
        self.activation_bytes += act_bytes
        self.n_ops += 1

    def gather(self, row_bytes: float, act_bytes: float = 0.0) -> None:
        """A table lookup: only the rows read count as weight traffic."""
        self.gathered_bytes += row_bytes
        self.activation_bytes += act_bytes
        self.n_ops += 1

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def cost(self) -> Cost:
        by_dtype: dict[str, int] = {}
        for nbytes, dtype, _ in self._weights.values():
            by_dtype[dtype] = by_dtype.get(dtype, 0) + int(nbytes)
        weights = sum(int(b) for b, _, _ in self._weights.values()) + int(self.gathered_bytes)
        return Cost(dict(self.flops), self.other_flops, weights, int(self.activation_bytes), by_dtype,
                    sum(n for _, _, n in self._weights.values()), self.n_ops, self.source, tuple(self.notes),
                    self.weight_only_flops)


def prod(dims) -> int:
    return int(math.prod(int(d) for d in dims))
