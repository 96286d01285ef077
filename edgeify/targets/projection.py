"""Latency on a device edgeify cannot time, estimated from the same artifact timed here.

For each artifact: its cost (FLOPs and bytes, from its graph: cost.py), a roofline on this
host (rates measured here: roofline.host_machine) and on the device (its profile), and the
artifact's own efficiency here (host roofline / measured latency). The device estimate is
the device roofline divided by that efficiency: what the artifact would take if its
runtime reached the same share of the device's rates as it reaches of this host's.

Profile rates are nominal peaks while the host's are attained GEMM rates, so device peaks
are scaled by NOMINAL_ATTAINMENT first. Every figure made here is labelled estimated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgeify import metrics
from edgeify.targets import Target
from edgeify.targets.cost import graph_cost
from edgeify.targets.roofline import host_machine, roofline_ms

# Tuned GEMM libraries (XNNPACK, MLAS, oneDNN) reach about 70% of a core's nominal peak at
# transformer shapes; the host's rates are measured, a device's are data-sheet peaks.
NOMINAL_ATTAINMENT = 0.7


@dataclass(frozen=True)
class Attained:
    """A device's rates as a roofline machine: nominal peaks x NOMINAL_ATTAINMENT."""

    peak_gops: dict[str, float]
    bandwidth_gbs: float
    cores: int


def attained(target: Target) -> Attained:
    if not target.peak_gops.get("fp32") or not target.bandwidth_gbs:
        raise ValueError(f"target {target.name} has no rates to estimate with (peak_gops, bandwidth_gbs)")
    return Attained({k: v * NOMINAL_ATTAINMENT for k, v in target.peak_gops.items()},
                    target.bandwidth_gbs * NOMINAL_ATTAINMENT, target.cores)


def estimate_entries(entries: list[dict], root: Path, target: Target, timing_threads: int,
                     log_fn: Callable[[str], None] = print) -> None:
    """Add `estimate` (device latency, labelled estimated) to each timed report entry."""
    host = host_machine(timing_threads)
    device = attained(target)
    for entry in entries:
        try:
            cost = graph_cost(root / entry["path"], 1, entry["seq_len"])
        except Exception as e:  # noqa: BLE001 - an uncountable graph costs its estimate, not the run
            entry["estimate"] = {"target": target.name, "error": f"cannot count its graph: {str(e)[:160]}"}
            continue
        host_roof = roofline_ms(cost, host, timing_threads)
        efficiency = host_roof / entry["latency_ms"]["p50"]
        device_roof = roofline_ms(cost, device, target.threads)
        entry["estimate"] = {
            "target": target.name, "estimated": True, "latency_ms": round(device_roof / efficiency, 3),
            "roofline_ms": round(device_roof, 3), "host_roofline_ms": round(host_roof, 3),
            "efficiency": round(efficiency, 4), "flops": int(cost.dense_flops + cost.other_flops),
            "weight_bytes": int(cost.weight_bytes), "precision_class": cost.precision_class,
            "basis": (f"roofline on {target.name} ({NOMINAL_ATTAINMENT:.0%} of its nominal peaks, "
                      f"{target.threads} threads) / this artifact's efficiency measured here "
                      f"({efficiency:.2f} of this host's roofline)")}
    log_fn(f"      estimated {target.name} latency for {sum('latency_ms' in e.get('estimate', {}) for e in entries)} "
           f"models (roofline x efficiency measured here; host rates: {host.how})")


def choose_for_target(entries: list[dict], budget: float, metric: str, drop: Callable[[float, float, str], float],
                      margin: float = 0.1) -> dict | None:
    """The artifact to deploy on the target: the fastest estimated within the accuracy
    budget (each against its own format's fp32); a quantized one only when it is more than
    `margin` faster than the fastest float one, which is otherwise kept as more accurate."""
    fp32 = {e["format"]: e["metric"]["value"] for e in entries if e["precision"] == "fp32"}
    ok = [e for e in entries if "latency_ms" in (e.get("estimate") or {}) and not e.get("refused")
          and not e.get("same_file_as") and e["format"] in fp32
          and drop(e["metric"]["value"], fp32[e["format"]], metric) <= budget]
    if not ok:
        return None
    est = lambda e: e["estimate"]["latency_ms"]  # noqa: E731
    fastest = min(ok, key=est)
    floats = [e for e in ok if not e["precision"].startswith("int")]
    best_float = min(floats, key=est) if floats else None
    target = fastest["estimate"]["target"]
    if best_float is not None and fastest is not best_float and est(fastest) > est(best_float) * (1 - margin):
        chosen = best_float
        reason = (f"{fastest['precision']} is estimated only {est(best_float) / est(fastest):.2f}x as fast as "
                  f"{best_float['precision']} on {target} ({est(fastest):.1f} vs {est(best_float):.1f} ms): "
                  f"not worth its accuracy cost there")
    else:
        chosen = fastest
        unit = metrics.get(metric).unit
        reason = f"fastest estimated on {target} within the {budget:g} {unit} budget ({est(fastest):.1f} ms)"
    return {"chosen": chosen["path"], "reason": reason, "latency_ms": est(chosen), "estimated": True}
