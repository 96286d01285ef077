"""Accuracy-controlled int8 for ONNX: quantize, and while the drop on the evaluation set is
over the budget, put the most harmful quantized layers back to float.

onnxruntime has no accuracy-control loop of its own (NNCF's is OpenVINO-only here), but
its quantizers take `nodes_to_exclude`, so the loop only chooses which nodes to exclude and
re-runs the same quantizer; no graph surgery of ours.

Ranking (which layer harms most): each quantized node is reverted alone and the model's
logits on a few calibration rows are compared with the fp32 model's (mean squared
difference, a continuous signal: an accuracy count on a few rows is mostly ties). The
evaluation set is used only to check the drop, as the OpenVINO path does. Reverting goes
in doubling steps (1, 2, 4, ... of the ranked nodes), so the loop needs few full
evaluations; it stops at the first set within the budget, or keeps the best one found.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgeify.contract import ort_session_options
from edgeify.errors import EdgeifyError
from edgeify.export import Artifact, Validation, config_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AccuracyControlledInt8:
    """int8 (`base`: "dynamic" or "static", the configs of the same names) with the layers
    that cost the most accuracy on the evaluation set put back to float until the drop is
    within `max_drop` (accuracy points, or % perplexity for language models)."""

    max_drop: float
    base: str = "dynamic"
    ranking_rows: int = 16  # calibration rows the per-layer harm is measured on

    precision_class = "int8"  # planner.BYTES_PER_WEIGHT key; a class attribute, not in the report

    @property
    def precision(self) -> str:
        return f"int8-{self.base}-accuracy-controlled"


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), ort_session_options(ort, 2), providers=["CPUExecutionProvider"])


def _logits(path: Path, rows: list[dict]) -> np.ndarray:
    session = _session(path)
    names = [i.name for i in session.get_inputs()]
    return np.concatenate([session.run(None, {n: r[n] for n in names})[0] for r in rows])


def _score(path: Path, validation: Validation) -> float:
    session = _session(path)
    names = [i.name for i in session.get_inputs()]
    return validation.score(lambda feeds: session.run(None, {n: feeds[n] for n in names})[0],
                            list(range(validation.n_items)))[0]


def quantized_nodes(path: Path, candidates: list[str]) -> list[str]:
    """The candidate nodes the quantizer did quantize, the ones reverting can help: replaced
    by an integer node (dynamic: the name is gone), or reading a DequantizeLinear (QDQ; the
    attention's activation x activation MatMuls included, which QDQ quantizes too)."""
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    nodes = {n.name: n for n in graph.node}
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [c for c in candidates if c not in nodes or any(i in dequantized for i in nodes[c].input)]


def rank(quantize: Callable[[tuple[str, ...], Path], None], nodes: list[str], fp32_logits: np.ndarray,
         rows: list[dict], work: Path) -> list[tuple[str, float]]:
    """(node, logit error with only that node float), the node whose reverting helps most
    first. `quantize(excluded, out)` writes the int8 model with `excluded` left float."""
    from tqdm.auto import tqdm

    errors = []
    for node in tqdm(nodes, desc="ranking layers", unit="layer", leave=False, mininterval=1.0):
        out = work / "one.onnx"
        quantize((node,), out)
        errors.append((node, float(np.mean((_logits(out, rows) - fp32_logits) ** 2))))
    return sorted(errors, key=lambda e: e[1])


def _revert(quantize, ranked: list[str], drop_of, budget: float, best: tuple, work: Path) -> tuple:
    """Revert the first 1, 2, 4, ... ranked nodes until the drop is within `budget`; then
    bisect down to the fewest that still are (each float layer costs latency). Returns the
    best (drop, excluded, path): within budget with the fewest nodes, else the lowest drop."""
    tried: dict[int, tuple] = {}

    def attempt(n: int) -> tuple:
        if n not in tried:
            path = work / f"revert{n}.onnx"
            quantize(tuple(ranked[:n]), path)
            tried[n] = (drop_of(path), tuple(ranked[:n]), path)
            log.info("reverting %d layers: drop %.4g", n, tried[n][0])
        return tried[n]

    low, n = 0, 1  # low: most nodes known to be over budget
    while n <= len(ranked):
        if attempt(n)[0] <= budget:
            break
        low, n = n, (min(2 * n, len(ranked)) if n < len(ranked) else n + 1)
    else:
        return min([best, *tried.values()], key=lambda t: t[0])
    high = n
    while high - low > 1:  # the fewest reverted nodes within budget, between low and high
        mid = (low + high) // 2
        low, high = (low, mid) if attempt(mid)[0] <= budget else (mid, high)
    return tried[high]


def control(fp32: Artifact, candidates: list[str], quantize: Callable[[tuple[str, ...], Path], None],
            calibration_rows: list[dict], validation: Validation | None, config: AccuracyControlledInt8,
            out: Path) -> dict:
    """Run the loop over `candidates` (node names of the graph `quantize` starts from); the
    chosen model is written to `out`; returns the report's notes."""
    if validation is None:
        raise EdgeifyError("accuracy-controlled quantization needs the evaluation set")
    reference = _score(fp32.path, validation)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        work = Path(tmp)
        first = work / "initial.onnx"
        quantize((), first)
        initial_drop = round(reference - _score(first, validation), 4)
        best = (initial_drop, (), first)
        ranked: list[tuple[str, float]] = []
        if initial_drop > config.max_drop:
            nodes = quantized_nodes(first, candidates)
            rows = calibration_rows[: config.ranking_rows]
            ranked = rank(quantize, nodes, _logits(fp32.path, rows), rows, work)
            best = _revert(quantize, [node for node, _ in ranked], lambda p: round(reference - _score(p, validation), 4),
                           config.max_drop, best, work)
        drop, excluded, path = best
        path.replace(out)
    within = drop <= config.max_drop
    notes = {
        "validated_on": f"the evaluation set ({validation.n_items} samples)",
        "drop_unit": validation.unit, "initial_int8_drop": initial_drop, "final_drop": drop,
        "within_budget": within, "reverted_to_float": list(excluded),
        "ranking": {"rows": len(calibration_rows[: config.ranking_rows]), "measure": "logits MSE vs fp32",
                    "layers_ranked": len(ranked)},
    }
    if not within:
        notes["warning"] = (f"accuracy control found no int8 model within {config.max_drop:g} "
                            f"{validation.unit}; kept the best one found (drop {drop:g}, "
                            f"{len(excluded)} layers float)")
    return notes


def artifact(config: AccuracyControlledInt8, out: Path, notes: dict) -> Artifact:
    return Artifact("onnx", config.precision, out, config_record(config), notes)
