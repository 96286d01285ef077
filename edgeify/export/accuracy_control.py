"""Accuracy-controlled int8 for the formats whose quantizer has no such loop of its own
(onnxruntime, ai-edge-quantizer; NNCF's is OpenVINO's): quantize, and while the drop on the
evaluation set is over the budget, put the most harmful quantized layers back to float.

Both quantizers take a list of layers to leave float (onnxruntime's `nodes_to_exclude`,
ai-edge-quantizer's per-op recipe scopes), so the loop only chooses that list and re-runs
the format's own quantizer; no graph surgery of ours. Files are run through the runner
the report uses (runtimes.open_runner), so the loop is the same for every format.

Ranking (which layer harms most): each quantized layer is quantized alone, the rest float,
and the model's logits on a few calibration rows are compared with the fp32 model's (mean
squared difference, a continuous signal: an accuracy count on a few rows is mostly ties). The
evaluation set is used only to check the drop, as the OpenVINO path does. Reverting goes
in doubling steps (1, 2, 4, ... of the ranked layers), so the loop needs few full
evaluations, then bisects down to the fewest layers within the budget; if none is within
it, it keeps the best one found and says so.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgeify.errors import EdgeifyError
from edgeify.export import Artifact, Validation, config_record

log = logging.getLogger(__name__)

THREADS = 2  # the loop's own runs (ranking, checking); the report times files separately

Quantize = Callable[[tuple[str, ...], Path], None]  # (layers left float, output file)


@dataclass(frozen=True)
class AccuracyControlledInt8:
    """int8 (`base`: "dynamic" or "static", the format's configs of the same names) with
    the layers that cost the most accuracy on the evaluation set put back to float until
    the drop is within `max_drop` (accuracy points, or % perplexity for language models)."""

    max_drop: float
    base: str = "dynamic"
    ranking_rows: int = 16  # calibration rows the per-layer harm is measured on

    precision_class = "int8"  # planner.BYTES_PER_WEIGHT key; a class attribute, not in the report

    @property
    def precision(self) -> str:
        return f"int8-{self.base}-accuracy-controlled"


def _runner(path: Path):
    from edgeify.runtimes import open_runner

    return open_runner(path, THREADS)


def _logits(path: Path, rows: list[dict]) -> np.ndarray:
    run = _runner(path).run
    return np.concatenate([run(r) for r in rows])


def _score(path: Path, validation: Validation) -> float:
    return validation.score(_runner(path).run, list(range(validation.n_items)))[0]


def rank(quantize: Quantize, layers: list[str], fp32_logits: np.ndarray, rows: list[dict],
         work: Path, suffix: str) -> list[tuple[str, float]]:
    """(layer, logit error with only that layer int8), the most harmful layer first.

    Each layer is measured alone, the rest float, rather than reverted alone from a fully
    int8 model: when several layers are broken (a scaled-up value projection and the output
    projection that reads it, in two layers), reverting any one leaves the others broken,
    and the errors of the one-reverted models hardly differ."""
    from tqdm.auto import tqdm

    errors = []
    for layer in tqdm(layers, desc="ranking layers", unit="layer", leave=False, mininterval=1.0):
        out = work / f"one{suffix}"
        quantize(tuple(x for x in layers if x != layer), out)
        errors.append((layer, float(np.mean((_logits(out, rows) - fp32_logits) ** 2))))
    return sorted(errors, key=lambda e: -e[1])


def _revert(quantize: Quantize, ranked: list[str], drop_of, budget: float, best: tuple, work: Path,
            suffix: str) -> tuple:
    """Revert the first 1, 2, 4, ... ranked layers until the drop is within `budget`; then
    bisect down to the fewest that still are (each float layer costs latency). Returns the
    best (drop, excluded, path): within budget with the fewest layers, else the lowest drop."""
    tried: dict[int, tuple] = {}

    def attempt(n: int) -> tuple:
        if n not in tried:
            path = work / f"revert{n}{suffix}"
            quantize(tuple(ranked[:n]), path)
            tried[n] = (drop_of(path), tuple(ranked[:n]), path)
            log.info("reverting %d layers: drop %.4g", n, tried[n][0])
        return tried[n]

    low, n = 0, 1  # low: most layers known to be over budget
    while n <= len(ranked):
        if attempt(n)[0] <= budget:
            break
        low, n = n, (min(2 * n, len(ranked)) if n < len(ranked) else n + 1)
    else:
        return min([best, *tried.values()], key=lambda t: t[0])
    high = n
    while high - low > 1:  # the fewest reverted layers within budget, between low and high
        mid = (low + high) // 2
        low, high = (low, mid) if attempt(mid)[0] <= budget else (mid, high)
    return tried[high]


def control(fp32_path: Path, layers_of: Callable[[Path], list[str]], quantize: Quantize,
            calibration_rows: list[dict], validation: Validation | None, config: AccuracyControlledInt8,
            out: Path, label: Callable[[str], str] = str) -> dict:
    """Run the loop; the chosen model is written to `out`; returns the report's notes.

    `quantize(excluded, path)` writes the format's int8 file with the layers `excluded`
    left float; `layers_of(path)` lists the layers a file written with none excluded did
    quantize (the candidates); `label` is a layer's name in the report."""
    if validation is None:
        raise EdgeifyError("accuracy-controlled quantization needs the evaluation set")
    suffix, rows = out.suffix, calibration_rows[: config.ranking_rows]
    reference = _score(fp32_path, validation)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        work = Path(tmp)
        first = work / f"initial{suffix}"
        quantize((), first)
        initial_drop = round(reference - _score(first, validation), 4)
        best = (initial_drop, (), first)
        ranked: list[tuple[str, float]] = []
        if initial_drop > config.max_drop:
            ranked = rank(quantize, layers_of(first), _logits(fp32_path, rows), rows, work, suffix)
            best = _revert(quantize, [layer for layer, _ in ranked],
                           lambda p: round(reference - _score(p, validation), 4), config.max_drop, best, work, suffix)
        drop, excluded, path = best
        path.replace(out)
    notes = _notes(config, validation, initial_drop, drop, [label(x) for x in excluded], len(rows), len(ranked))
    if not excluded:  # the plain int8 file again, byte for byte: selection keeps only one
        notes["same_as"] = f"int8-{config.base}"
    return notes


def _notes(config: AccuracyControlledInt8, validation: Validation, initial_drop: float, drop: float,
           reverted: list[str], rows: int, ranked: int) -> dict:
    within = drop <= config.max_drop
    notes = {
        "validated_on": f"the evaluation set ({validation.n_items} samples)",
        "drop_unit": validation.unit, "initial_int8_drop": initial_drop, "final_drop": drop,
        "within_budget": within, "reverted_to_float": reverted,
        "ranking": {"rows": rows, "measure": "logits MSE vs fp32, each layer int8 alone", "layers_ranked": ranked},
    }
    if not within:
        notes["warning"] = (f"accuracy control found no int8 model within {config.max_drop:g} "
                            f"{validation.unit}; kept the best one found (drop {drop:g}, "
                            f"{len(reverted)} layers float)")
    return notes


def artifact(fmt: str, config: AccuracyControlledInt8, out: Path, notes: dict) -> Artifact:
    return Artifact(fmt, config.precision, out, config_record(config), notes)
