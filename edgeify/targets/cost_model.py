"""The numbers a cost reader fills while it walks one graph (Tally) and what it returns
(Cost). A leaf: cost.py picks the reader for a file, and each reader (cost_onnx.py,
cost_openvino.py, cost_tflite.py) imports only this, so no reader and cost.py form a circle.
What is counted, and why, is in cost.py's docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

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
