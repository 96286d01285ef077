"""What the TFLite backend (tflite.py) and its cached-decoder half (tflite_decoder.py)
share: the int8 configs, the ai-edge-quantizer calls, the converter's progress switch and
the checks every written file gets. A leaf: each of the two imports it, neither the other
(tflite.py dispatches to tflite_decoder.py, one way).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from edgeify.export import written_atomically
from edgeify.runtimes.tflite_file import describe, op_notes  # noqa: F401  (op_notes: used by the exporters)

log = logging.getLogger("edgeify.export.tflite")


# The family's int8 policy is written in ONNX op names; these are the TFLite ops they become.
TFLITE_OPS = {
    "MatMul": ("FULLY_CONNECTED", "BATCH_MATMUL"),
    "Gemm": ("FULLY_CONNECTED",),
    "Attention": ("FULLY_CONNECTED", "BATCH_MATMUL"),
    "Gather": ("EMBEDDING_LOOKUP",),
}


@dataclass(frozen=True)
class Fp16Weights:
    """Weights stored fp16 (ai-edge-quantizer float casting), computed in float."""

    precision_class = "fp16"  # planner.BYTES_PER_WEIGHT key; a class attribute, not in the report
    precision = "fp16"


@dataclass(frozen=True)
class DynamicInt8:
    """Dynamic-range int8: weights int8, activations quantized at run time inside the fully
    connected layers; embedding tables stored int8 (rows scaled back to float at lookup);
    everything else float. Only the ops the family's int8 policy allows are touched.

    Per-tensor weight scales by default: tflite-runtime 2.14 (Raspberry Pi OS) loads a
    per-channel dynamic-range file without complaint and computes wrong logits (max |diff|
    1.06 on the ELECTRA starter, argmax flips; per-channel embedding tables: max |diff| 3.1
    on the real ELECTRA model), while per-tensor matches ai-edge-litert. The per-channel
    file ("CHANNELWISE", usually more accurate) is built too; its notes say it is known
    wrong on 2.14 (runtimes/tflite_ops), so a target with that runtime refuses it."""

    ops: tuple[str, ...] = ("FULLY_CONNECTED", "EMBEDDING_LOOKUP")
    granularity: str = "TENSORWISE"  # or "CHANNELWISE" (not for tflite-runtime 2.14, see above)

    precision_class = "int8"  # planner.BYTES_PER_WEIGHT key; a class attribute, not in the report

    @property
    def precision(self) -> str:
        return "int8-dynamic" if self.granularity == "TENSORWISE" else "int8-dynamic-per-channel"


@dataclass(frozen=True)
class StaticInt8:
    """Full int8 on the family's int8 ops: weights and activations int8, activation
    ranges calibrated on the calibration set; the rest (LayerNorm, GELU, Softmax) float.
    Embedding tables have no int8 arithmetic to do: they are stored int8 per tensor, as in
    DynamicInt8 (per channel breaks tflite-runtime 2.14).

    The attention's two activation x activation matmuls (BATCH_MATMUL) stay float by
    default: int8 BATCH_MATMUL has no XNNPACK kernel and runs on TFLite's reference code.
    Measured on the ELECTRA-small shape, seq 128, 2 threads: 19.2 ms with them int8 vs
    5.8 ms without, fp32 14.9 ms (benchmarks/RESULTS.md, issue 5)."""

    ops: tuple[str, ...] = ("FULLY_CONNECTED",)  # add "BATCH_MATMUL" for int8 attention matmuls
    table_ops: tuple[str, ...] = ("EMBEDDING_LOOKUP",)

    precision_class = "int8"  # planner.BYTES_PER_WEIGHT key; a class attribute, not in the report
    precision = "int8-static"


@contextlib.contextmanager
def converter_progress(show: bool):
    """litert-torch prints a [START]/[DONE] line to stdout for each of its internal steps,
    unless LITERT_TORCH_SHOW_PROGRESS says no (read at each step). edgeify's own log already
    says what is running, so those lines are shown with --debug only."""
    key = "LITERT_TORCH_SHOW_PROGRESS"
    before = os.environ.get(key)
    os.environ[key] = "y" if show else "n"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def quiet():
    """The converter, the quantizer and our checks make interpreters: TFLite's INFO line
    about XNNPACK is hidden as the runners hide it."""
    from edgeify.runtimes.tflite_runner import hide_tflite_info

    return hide_tflite_info()


def family_ops(family, allowed: tuple[str, ...]) -> list[str]:
    wanted = {t for op in family.int8_ops for t in TFLITE_OPS.get(op, ())}
    return [op for op in allowed if op in wanted]


def quantize_file(src: Path, out: Path, recipe, calibrated: dict | None = None) -> None:
    """Quantize `src` by `recipe`; `calibrated`: calibrate()'s ranges, for a recipe with
    int8 activations."""
    from ai_edge_quantizer import quantizer

    qt = quantizer.Quantizer(str(src))
    qt.load_quantization_recipe(recipe)
    # its own size report goes to stdout; edgeify's report has the sizes
    result = qt.quantize(calibrated, enable_progress_report=log.isEnabledFor(logging.DEBUG))
    with written_atomically(out) as tmp:
        result.export_model(tmp, overwrite=True)


def calibrate(src: Path, recipe, rows: list[dict]) -> dict:
    """The activation ranges of `src` on `rows` (one feed dict each) as the recipe asks for
    them: {tensor name: min/max}. A range does not depend on which other ops are int8, so
    one calibration serves every recipe that quantizes a subset of these ops."""
    from ai_edge_quantizer import quantizer

    qt = quantizer.Quantizer(str(src))
    qt.load_quantization_recipe(recipe)
    return qt.calibrate({"serving_default": rows})


def recipe(add) -> list:
    from ai_edge_quantizer.recipe_manager import RecipeManager

    manager = RecipeManager()
    add(manager)
    return manager.get_quantization_recipe()


def keep_float(manager, scopes: tuple[str, ...]) -> None:
    """Leave the ops of these scopes float: ai-edge-quantizer uses the last recipe entry
    whose regex matches an op's scope, so an exact-match NO_QUANTIZE entry per scope
    overrides the ".*" entries added before it."""
    from ai_edge_quantizer import algorithm_manager, qtyping

    for scope in scopes:
        manager.add_quantization_config(regex=f"^{re.escape(scope)}$", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                        algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)


def op_scopes(path: Path, ops: list[str]) -> dict[str, str]:
    """{scope: readable label} of the file's ops of these types, in graph order. A scope is
    how ai-edge-quantizer names an op in a recipe (its output tensors' names, each a list of
    fused source locations); the label is the op type, its index and the module path of its
    most specific location (see _location)."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb

    model = fb.read_model(str(path))
    graph, wanted, found = model.subgraphs[0], set(ops), []
    for index, op in enumerate(graph.operators):
        code = fb.TFL_OP_CODE_TO_NAME.get(model.operatorCodes[op.opcodeIndex].builtinCode)
        name = getattr(code, "name", code)
        if name in wanted:
            found.append((fb.get_op_scope(op, graph.tensors), f"{name} #{index}"))
    shared = Counter(loc for scope, _ in found for loc in set(_locations(scope)))
    scopes: dict[str, str] = {}
    for scope, op in found:
        scopes.setdefault(scope, f"{op} {_location(scope, shared)}")
    return scopes


def _locations(scope: str) -> list[str]:
    return [part for part in scope.split(";") if "/" in part] or [scope]


def _location(scope: str, shared: Counter) -> str:
    """The op's own source location, the one fewest other ops share (a fused key
    projection's scope also names the LayerNorm before it and the query beside it), as its
    last 4 module names: ElectraLayer_1/ElectraAttention_attention/ElectraSelfAttention_self/
    Linear_key for `m.ElectraEncoder_encoder/m.ElectraLayer_1/.../torch.nn.modules.linear.Linear_key`."""
    own = min(reversed(_locations(scope)), key=lambda loc: shared[loc])
    return "/".join(seg.rsplit(".", 1)[-1] for seg in own.split("/")[-4:])


def with_runtime_checks(notes: dict, checks: list[dict]) -> dict:
    """Notes (holding op_notes) plus each runtime's check, and one warning naming every
    runtime that lacks an op, fails to run the file, or computes something else."""
    warnings = [f"needs ops {rt} lacks: {', '.join(bad)}" for rt, bad in notes["ops_missing_in"].items() if bad]
    notes["runtimes"] = [{k: v for k, v in c.items() if k != "python"} for c in checks]
    # the tag a target reads beside known_wrong_on: the runtimes this file was run on and matched
    notes["runs_correctly_on"] = [c["runtime"] for c in checks if c.get("same_results")]
    bad = [c for c in checks if not c.get("same_results")]
    if bad:
        warnings.append(f"does not run correctly on {', '.join(c['runtime'] for c in bad)}: " + "; ".join(
            c.get("error") or f"results differ ({difference(c)})" for c in bad))
    if warnings:
        notes["warning"] = "; ".join(warnings)
    return notes


def difference(check: dict) -> str:
    return (f"mean |diff| {check.get('mean_abs_diff_relative', 0):.0%} of the mean |logit|, "
            f"argmax agreement {check.get('argmax_agreement_pct')}%")
