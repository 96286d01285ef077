"""Latency estimates: a roofline over an artifact's cost (cost.py), scaled by an efficiency
factor calibrated against latencies measured on this host.

Why a roofline and a calibrated factor rather than a per-op model: a device edgeify cannot
reach (a Raspberry Pi, a server it is not running on) is described by three numbers (peak
operations per second per precision, memory bandwidth, cores), and those numbers say how
fast the hardware could go, not how fast a runtime makes it go. How far a runtime falls
short of the roofline depends mostly on the runtime and the kind of arithmetic (its fp32
GEMM kernels, its int8 kernels), much less on which transformer it runs; so the shortfall
is measured once on this host, per (runtime, precision class), on artifacts timed here,
and carried over: predict_ms = roofline_ms(target) / efficiency.

Every number made here is an estimate. Estimate.measured is always False and its label
says "estimated"; nothing in this module may be reported as a measurement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

from edgeify.targets.cost import PRECISIONS, Cost

# How compute time and memory time combine, see roofline_ms.
MODES = ("max", "sum")
DEFAULT_MODE = "sum"


class Machine(Protocol):
    """What the roofline needs of a device; Target has these attributes too."""

    # "fp32" / "fp16" / "int8" -> giga-ops/s with all cores; 0 or missing: no native support.
    # Optional "elementwise": the rate of elementwise work (see elementwise_gops).
    peak_gops: dict[str, float]
    bandwidth_gbs: float          # memory bandwidth, GB/s
    cores: int


def runtime_of(path: str | Path) -> str:
    """The runtime an artifact runs on, by its format: the key efficiency factors are fitted per."""
    from edgeify.runtimes import formats

    fmt = formats.of(path)
    if fmt is None:
        raise ValueError(f"{path}: no runtime for {Path(path).suffix or 'a suffix-less file'!r}; "
                         f"accepted: {', '.join(formats.suffixes())}")
    return fmt.runtime


def rate_gops(machine: Machine, precision: str, threads: int) -> float:
    """Attainable giga-ops/s in `precision` with `threads` threads. A precision the machine
    has no native arithmetic for (0 or missing, e.g. fp16 on a CPU without fp16 FMA) runs at
    the fp32 rate: the runtime converts and computes in fp32. Peak scales with the cores used."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; accepted: {', '.join(PRECISIONS)}")
    peak = machine.peak_gops.get(precision) or machine.peak_gops.get("fp32") or 0.0
    if peak <= 0:
        raise ValueError(f"machine has no fp32 peak (peak_gops={machine.peak_gops!r})")
    cores = max(1, int(machine.cores))
    return peak * min(max(1, int(threads)), cores) / cores


# Elementwise work (normalisation, GELU, softmax, quantization) against fp32 GEMM peak on
# the host, measured by host_machine (about 25-30 vs 213 GFLOP/s, 2 threads): the rate a
# machine without its own "elementwise" figure is given.
ELEMENTWISE_SHARE = 1 / 8


def elementwise_gops(machine: Machine, threads: int) -> float:
    """Rate of elementwise work (cost.other_flops), giga-ops/s with `threads` threads.

    Far below GEMM peak: these ops stream their tensors once with a few operations per
    element, some of them transcendental, and each is a separate small parallel loop. A
    machine's own "elementwise" figure when it has one, else ELEMENTWISE_SHARE of fp32 peak."""
    own = machine.peak_gops.get("elementwise")
    if own:
        cores = max(1, int(machine.cores))
        return own * min(max(1, int(threads)), cores) / cores
    return rate_gops(machine, "fp32", threads) * ELEMENTWISE_SHARE


def compute_ms(cost: Cost, machine: Machine, threads: int) -> float:
    """Dense FLOPs at each precision's rate, plus the elementwise work at its own rate."""
    seconds = sum(f / (rate_gops(machine, p, threads) * 1e9) for p, f in cost.flops.items() if f)
    seconds += cost.other_flops / (elementwise_gops(machine, threads) * 1e9)
    return seconds * 1e3


def memory_ms(cost: Cost, machine: Machine) -> float:
    if machine.bandwidth_gbs <= 0:
        raise ValueError(f"machine bandwidth must be > 0 GB/s, not {machine.bandwidth_gbs!r}")
    return cost.bytes_moved / (machine.bandwidth_gbs * 1e9) * 1e3


def roofline_ms(cost: Cost, machine: Machine, threads: int, mode: str = DEFAULT_MODE) -> float:
    """The time the hardware needs at best for this cost: compute time summed over the
    precisions (elementwise work at its own rate), combined with memory time by `mode`.

    "max" is the textbook roofline (compute and memory overlap perfectly), "sum" assumes
    they do not overlap at all. At batch 1 a transformer alternates between GEMMs that are
    compute bound and steps that mostly stream data (a small matmul's weights, the cache,
    quantization passes), each op bound by one or the other, so per-op times add up.
    Measured (benchmarks/results/estimator-host.md, 17 artifacts, leave-one-family-out):
    "sum" 1.27x geometric mean error, worst 2.56x; "max" 1.30x, worst 2.99x. "sum" is
    the default.
    """
    if mode not in MODES:
        raise ValueError(f"unknown roofline mode {mode!r}; accepted: {', '.join(MODES)}")
    c, m = compute_ms(cost, machine, threads), memory_ms(cost, machine)
    return max(c, m) if mode == "max" else c + m


@dataclass(frozen=True)
class Estimate:
    """An estimated latency: never a measurement (measured is always False)."""

    ms: float
    roofline_ms: float
    efficiency: float
    basis: str  # which calibration it came from

    measured: bool = field(default=False, init=False)

    @property
    def label(self) -> str:
        return f"estimated {self.ms:.1f} ms ({self.basis})"

    def as_dict(self) -> dict:
        return {"estimated_ms": round(self.ms, 3), "measured": False, "roofline_ms": round(self.roofline_ms, 3),
                "efficiency": round(self.efficiency, 4), "basis": self.basis}


@dataclass(frozen=True)
class Efficiency:
    """Fraction of the roofline a runtime attains, per (runtime, precision class), fitted on
    artifacts measured on one machine (calibrate)."""

    factors: dict[tuple[str, str], float]
    counts: dict[tuple[str, str], int]
    mode: str = DEFAULT_MODE

    def factor(self, runtime: str, precision_class: str) -> tuple[float, str]:
        """(efficiency, basis). Without a fit for this precision class: for a weight-only
        class ("int8-weights") the fit of its compute precision ("int8"), else the runtime's
        other classes pooled (geometric mean); the basis says which."""
        key = (runtime, precision_class)
        if key in self.factors:
            return self.factors[key], f"{runtime} {precision_class} efficiency from {self.counts[key]} host measurement(s)"
        base = (runtime, precision_class.split("-")[0])
        if base in self.factors:
            return self.factors[base], (f"{runtime} {base[1]} efficiency from {self.counts[base]} host measurement(s), "
                                        f"standing in for {precision_class}")
        same = [(f, self.counts[k]) for k, f in self.factors.items() if k[0] == runtime]
        if not same:
            raise KeyError(f"no efficiency for runtime {runtime!r}; calibrated: "
                           f"{', '.join(f'{r} {p}' for r, p in self.factors) or 'nothing'}")
        pooled = math.exp(sum(math.log(f) * n for f, n in same) / sum(n for _, n in same))
        return pooled, f"{runtime} efficiency pooled over other precisions (no {precision_class} measured)"

    def predict(self, cost: Cost, runtime: str, machine: Machine, threads: int,
                precision_class: str | None = None) -> Estimate:
        """Expected latency of `cost` on `machine`: roofline / efficiency."""
        eff, basis = self.factor(runtime, precision_class or cost.precision_class)
        roof = roofline_ms(cost, machine, threads, self.mode)
        return Estimate(roof / eff, roof, eff, basis)


def calibrate(artifacts_measured: Sequence[tuple[Cost, str, str, float]], machine: Machine,
              threads: int | None = None, mode: str = DEFAULT_MODE) -> Efficiency:
    """Fit the efficiency per (runtime, precision class) from (cost, runtime, precision
    class, measured ms) of artifacts timed on `machine` with `threads` threads (default: all
    its cores): the geometric mean of roofline / measured, which weighs a 2x miss the same
    whichever way it goes."""
    threads = threads or machine.cores
    logs: dict[tuple[str, str], list[float]] = {}
    for cost, runtime, precision_class, measured_ms in artifacts_measured:
        if not measured_ms or measured_ms <= 0 or not math.isfinite(measured_ms):
            raise ValueError(f"measured latency must be a positive number of ms, not {measured_ms!r} "
                             f"({runtime} {precision_class})")
        roof = roofline_ms(cost, machine, threads, mode)
        logs.setdefault((runtime, precision_class), []).append(math.log(roof / measured_ms))
    if not logs:
        raise ValueError("calibrate needs at least one measured artifact")
    return Efficiency({k: math.exp(sum(v) / len(v)) for k, v in logs.items()},
                      {k: len(v) for k, v in logs.items()}, mode)


@dataclass(frozen=True)
class MeasuredMachine:
    """This host's attained rates (a Machine), measured by host_machine(); `how` records how."""

    peak_gops: dict[str, float]
    bandwidth_gbs: float
    cores: int  # the threads the rates were measured with
    how: str
    cpu: str


# GEMM shapes of the transformers edgeify exports at seq 128: ELECTRA-small's FFN and a
# base model's FFN (rows x inner x outer).
GEMM_SHAPES = ((128, 256, 1024), (128, 768, 3072))
HOST_FILE = "host-machine-v2.json"


def host_machine(threads: int | None = None, refresh: bool = False) -> MeasuredMachine:
    """This host's attained fp32 and int8 GEMM rates, elementwise rate and memory
    bandwidth, measured once (about 6 s) and cached per CPU, onnxruntime version and thread
    count in the user cache.

    Measured with onnxruntime, the runtime most artifacts run on, with `threads` intra-op
    threads: fp32 MatMul and int8 MatMulInteger (u8 x s8) at GEMM_SHAPES; elementwise, a
    transformer layer's Add + LayerNormalization, Gelu and Softmax at the same two widths,
    in cost.ELEMENTWISE_FLOPS units. Each probe is run in 3 interleaved rounds and its best
    run kept, and the faster shape: peak = best attained, as on a shared machine a busy
    spell only ever slows a run down. Bandwidth from a 256 MB numpy copy (bytes read +
    written, best of 5; one thread, as a batch-1 weight stream mostly is). fp16 is left
    out: rate_gops() falls back to fp32 for it."""
    import json

    import onnxruntime as ort
    import psutil

    from edgeify.families.starter import cache_root
    from edgeify.targets import cpu_description

    threads = int(threads or psutil.cpu_count(logical=False) or 1)
    cpu = cpu_description()
    key = f"{cpu} | onnxruntime {ort.__version__} | {threads} threads"
    path = cache_root() / HOST_FILE
    try:
        cached = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        cached = {}
    if key not in cached or refresh:
        cached[key] = {"peak_gops": {k: round(v, 1) for k, v in _rates(threads).items()},
                       "bandwidth_gbs": round(_bandwidth_gbs(), 2),
                       "how": (f"onnxruntime {ort.__version__} MatMul (fp32) / MatMulInteger (u8s8) at "
                               f"{', '.join('x'.join(map(str, s)) for s in GEMM_SHAPES)}, {threads} threads; "
                               "elementwise: Add+LayerNormalization, Gelu, Softmax at the same widths; best run "
                               "of 3 interleaved rounds; bandwidth: 256 MB numpy copy, read+write, best of 5")}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(cached, indent=1))
        tmp.replace(path)
    rec = cached[key]
    return MeasuredMachine(dict(rec["peak_gops"]), float(rec["bandwidth_gbs"]), threads, rec["how"], cpu)


def _rates(threads: int, rounds: int = 3, seconds: float = 0.2) -> dict[str, float]:
    """Best attained giga-ops/s per kind ("fp32", "int8", "elementwise") over GEMM_SHAPES."""
    probes = [(p, *_gemm_probe(p, *shape, threads)) for shape in GEMM_SHAPES for p in ("fp32", "int8")]
    probes += [("elementwise", *_elementwise_probe(*shape, threads)) for shape in GEMM_SHAPES]
    best = [float("inf")] * len(probes)
    for _ in range(rounds):
        for i, (_, session, feeds, _ops) in enumerate(probes):
            best[i] = min(best[i], _best_seconds(session, feeds, seconds))
    rates: dict[str, float] = {}
    for (kind, _, _, ops), t in zip(probes, best):
        rates[kind] = max(rates.get(kind, 0.0), ops / t / 1e9)
    return rates


def _session(model, threads: int):
    import onnxruntime as ort

    model.ir_version = 9
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _best_seconds(session, feeds: dict, seconds: float) -> float:
    import time

    for _ in range(2):
        session.run(None, feeds)
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        session.run(None, feeds)
        best = min(best, time.perf_counter() - t)
    return best


def _gemm_probe(precision: str, m: int, k: int, n: int, threads: int):
    """(session, feeds, ops) of one onnxruntime GEMM, m x k times a k x n weight."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if precision == "fp32":
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        node, a_type, y_type = helper.make_node("MatMul", ["A", "B"], ["Y"]), TensorProto.FLOAT, TensorProto.FLOAT
    elif precision == "int8":
        a = rng.integers(0, 255, (m, k), dtype=np.uint8)
        b = rng.integers(-127, 127, (k, n), dtype=np.int8)
        node, a_type, y_type = helper.make_node("MatMulInteger", ["A", "B"], ["Y"]), TensorProto.UINT8, TensorProto.INT32
    else:
        raise ValueError(f"no GEMM measurement for precision {precision!r}; accepted: fp32, int8")
    graph = helper.make_graph([node], "gemm", [helper.make_tensor_value_info("A", a_type, [m, k])],
                              [helper.make_tensor_value_info("Y", y_type, [m, n])],
                              [numpy_helper.from_array(b, "B")])
    session = _session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), threads)
    return session, {"A": a}, 2.0 * m * k * n


def _elementwise_probe(rows: int, hidden: int, inner: int, threads: int, layers: int = 4):
    """(session, feeds, FLOPs) of `layers` transformer layers' non-matmul ops at width
    `hidden`: residual Add + LayerNormalization on (rows, hidden), Gelu on (rows, inner),
    Softmax over (hidden / 64 heads, rows, rows); FLOPs counted with cost.ELEMENTWISE_FLOPS."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from edgeify.targets.cost import ELEMENTWISE_FLOPS as W

    heads = max(1, hidden // 64)
    shapes = {"X": [rows, hidden], "R": [rows, hidden], "H": [rows, inner], "S": [heads, rows, rows]}
    nodes, x, outs = [], "X", []
    for i in range(layers):
        nodes += [helper.make_node("Add", [x, "R"], [f"a{i}"]),
                  helper.make_node("LayerNormalization", [f"a{i}", "g", "b"], [f"n{i}"], axis=-1),
                  helper.make_node("Gelu", ["H"], [f"u{i}"]), helper.make_node("Softmax", ["S"], [f"p{i}"], axis=-1)]
        x = f"n{i}"
        outs += [f"u{i}", f"p{i}"]
    graph = helper.make_graph(
        nodes, "elementwise", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in shapes.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in [x, *outs]],
        [numpy_helper.from_array(np.ones(hidden, np.float32), "g"), numpy_helper.from_array(np.zeros(hidden, np.float32), "b")])
    session = _session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), threads)
    rng = np.random.default_rng(0)
    flops = layers * ((W["simple"] + W["norm"]) * rows * hidden + W["transcendental"] * rows * inner
                      + W["softmax"] * heads * rows * rows)
    return session, {n: rng.standard_normal(s, dtype=np.float32) for n, s in shapes.items()}, flops


def _bandwidth_gbs(mbytes: int = 256) -> float:
    import time

    import numpy as np

    src = np.ones(mbytes * 2**20 // 4, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # page in
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return 2.0 * src.nbytes / best / 1e9
