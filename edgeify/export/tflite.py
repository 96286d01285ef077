"""TFLite: convert from PyTorch with litert-torch (no TensorFlow), quantize with
ai-edge-quantizer, and record each artifact's ops and op versions.

Static shapes: one file per sequence length (batch 1), the shape a phone or a Pi runs.
The attention mask goes in as a 4D additive float mask built in the wrapper:
transformers' own 2D -> 4D mask code lowers to GATHER_ND version 5 on a bool tensor,
which tflite-runtime 2.14 (what Raspberry Pi OS users have) cannot load.

litert-torch, ai-edge-litert and ai-edge-quantizer are imported inside the functions:
they are an optional extra.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeify.export import Artifact, Validation, config_record, handler_for, register_backend, written_atomically
from edgeify.families import CAUSAL_LM

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class DynamicInt8:
    """Dynamic-range int8: weights int8, activations quantized at run time inside the fully
    connected layers; embedding tables stored int8 (rows scaled back to float at lookup);
    everything else float. Only the ops the family's int8 policy allows are touched.

    Per-tensor weight scales by default: tflite-runtime 2.14 (Raspberry Pi OS) loads a
    per-channel dynamic-range file without complaint and computes wrong logits (max |diff|
    1.06 on the ELECTRA starter, argmax flips; per-channel embedding tables: max |diff| 3.1
    on the real ELECTRA model), while per-tensor matches ai-edge-litert. Every artifact is
    checked on each runtime at hand anyway."""

    ops: tuple[str, ...] = ("FULLY_CONNECTED", "EMBEDDING_LOOKUP")
    granularity: str = "TENSORWISE"  # or "CHANNELWISE" (ai-edge-litert only, see above)


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


@contextlib.contextmanager
def _converter_progress(show: bool):
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


def _quiet():
    """The converter, the quantizer and our checks make interpreters: TFLite's INFO line
    about XNNPACK is hidden as the runners hide it."""
    from edgeify.runtimes.tflite_runner import hide_tflite_info

    return hide_tflite_info()


def _family_ops(family, allowed: tuple[str, ...]) -> list[str]:
    wanted = {t for op in family.int8_ops for t in TFLITE_OPS.get(op, ())}
    return [op for op in allowed if op in wanted]


def _wrapper(model, family):
    """Keyword inputs named as the family's (so the signature has those names), logits out."""
    import torch

    causal = family.task == CAUSAL_LM

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, **inputs):
            mask = inputs.pop("attention_mask", None)
            if mask is not None:
                # An additive 4D padding mask, as transformers builds it, minus the GATHER_ND.
                # GPT-Neo applies its causal and local-window masks inside each attention
                # layer, so padding is all this mask has to carry there too.
                mask = (1.0 - mask[:, None, None, :].to(torch.float32)) * torch.finfo(torch.float32).min
            kwargs = {"use_cache": False} if causal else {}
            return self.model(**inputs, attention_mask=mask, **kwargs).logits

    return Logits().eval()


def describe(path: Path) -> tuple[dict[str, dict], dict[str, int]]:
    """Every builtin/custom op in the file with its version(s) and how often it is used, and
    the constant tensors' element counts by type (what ended up int8 / fp16), from one read
    of the file (it can be ~100 MB).

    The op versions are as written in the file. ai-edge-quantizer does not raise them for
    quantized ops (int8 BATCH_MATMUL stays version 1, per-channel dynamic-range
    FULLY_CONNECTED version 5), so an old runtime may accept a file it then computes
    wrongly: that is why every artifact is also run on each runtime at hand."""
    schema, model = _flatbuffer(path)
    return _ops(schema, model), _constant_types(schema, model)


def op_notes(path: Path) -> dict:
    """The file's ops and versions, constants by type, and the ops each TFLite runtime we
    have a measured op table for cannot load (runtimes/tflite_ops)."""
    from edgeify.runtimes import tflite_ops

    ops, constants = describe(path)
    versions = {k: v["versions"] for k, v in ops.items()}
    return {"ops": versions, "constant_elements_by_type": constants,
            "ops_missing_in": {rt: tflite_ops.offending_ops(versions, rt) for rt in tflite_ops.TABLES}}


def _flatbuffer(path: Path):
    from ai_edge_litert import schema_py_generated as schema

    return schema, schema.Model.GetRootAsModel(Path(path).read_bytes(), 0)


def _ops(schema, model) -> dict[str, dict]:
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        custom = oc.CustomCode()
        name = f"CUSTOM:{custom.decode()}" if custom else names.get(code, str(code))
        codes.append((name, oc.Version()))
    used: Counter = Counter()
    for g in range(model.SubgraphsLength()):
        sg = model.Subgraphs(g)
        for j in range(sg.OperatorsLength()):
            used[codes[sg.Operators(j).OpcodeIndex()]] += 1
    out: dict[str, dict] = {}
    for (name, version), n in sorted(used.items()):
        entry = out.setdefault(name, {"versions": [], "count": 0})
        entry["versions"].append(version)
        entry["count"] += n
    return out


def _constant_types(schema, model) -> dict[str, int]:
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    counts: Counter = Counter()
    sg = model.Subgraphs(0)
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        buf = model.Buffers(t.Buffer())
        if buf is not None and (buf.DataLength() > 0 or buf.Size() > 0):
            counts[types.get(t.Type(), str(t.Type()))] += int(np.prod(t.ShapeAsNumpy())) if t.ShapeLength() else 1
    return dict(counts)


def _quantize(src: Path, out: Path, recipe, calibration_rows: list[dict] | None = None) -> None:
    from ai_edge_quantizer import quantizer

    qt = quantizer.Quantizer(str(src))
    qt.load_quantization_recipe(recipe)
    calibration = qt.calibrate({"serving_default": calibration_rows}) if calibration_rows is not None else None
    # its own size report goes to stdout; edgeify's report has the sizes
    result = qt.quantize(calibration, enable_progress_report=log.isEnabledFor(logging.DEBUG))
    with written_atomically(out) as tmp:
        result.export_model(tmp, overwrite=True)


def _recipe(add) -> list:
    from ai_edge_quantizer.recipe_manager import RecipeManager

    manager = RecipeManager()
    add(manager)
    return manager.get_quantization_recipe()


def make_fp16(fp32: Artifact, family, calibration, config: Fp16Weights, out: Path,
              validation: Validation | None = None) -> Artifact:
    from ai_edge_quantizer import algorithm_manager, qtyping

    _quantize(fp32.path, out, _recipe(lambda m: m.add_weight_only_config(
        regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
        algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING)))
    return _artifact(out, "fp16", config, _probe_rows(calibration.inputs, family))


def quantize_dynamic(fp32: Artifact, family, calibration, config: DynamicInt8, out: Path,
                     validation: Validation | None = None) -> Artifact:
    from ai_edge_quantizer import qtyping

    ops = _family_ops(family, config.ops)

    def add(m):
        for op in ops:
            m.add_dynamic_config(regex=".*", operation_name=qtyping.TFLOperationName[op], num_bits=8,
                                 granularity=qtyping.QuantGranularity[config.granularity])
    _quantize(fp32.path, out, _recipe(add))
    return _artifact(out, "int8-dynamic", config, _probe_rows(calibration.inputs, family), {"int8_ops": ops})


def quantize_static(fp32: Artifact, family, calibration, config: StaticInt8, out: Path,
                    validation: Validation | None = None) -> Artifact:
    from ai_edge_quantizer import qtyping

    ops = _family_ops(family, config.ops)
    tables = _family_ops(family, config.table_ops)
    names = family.onnx_inputs
    rows = [{n: calibration.inputs[n][i:i + 1].astype(np.int32) for n in names}
            for i in range(len(calibration))]

    def add(m):
        for op in ops:
            m.add_static_config(regex=".*", operation_name=qtyping.TFLOperationName[op],
                                activation_num_bits=8, weight_num_bits=8)
        for op in tables:
            m.add_dynamic_config(regex=".*", operation_name=qtyping.TFLOperationName[op], num_bits=8,
                                 granularity=qtyping.QuantGranularity.TENSORWISE)
    _quantize(fp32.path, out, _recipe(add), rows)
    return _artifact(out, "int8-static", config, _probe_rows(calibration.inputs, family),
                     {"int8_ops": ops + tables, "n_calibration": len(rows)})


def _artifact(path: Path, precision: str, config, probe_rows: dict[str, np.ndarray],
              notes: dict | None = None) -> Artifact:
    """The artifact with its op inventory and a load-and-run check on every TFLite runtime
    at hand (this Python's, plus EDGEIFY_TFLITE_PYTHONS, e.g. a tflite-runtime 2.14 venv)."""
    from edgeify.runtimes.tflite_runner import TfliteRunner, check_runtimes

    notes = {**(notes or {}), **op_notes(path)}
    reference = TfliteRunner(path, 1).run(probe_rows)
    return Artifact("tflite", precision, path, config_record(config) if config else {"type": "Fp32Export"},
                    with_runtime_checks(notes, check_runtimes(path, probe_rows, reference)))


def with_runtime_checks(notes: dict, checks: list[dict]) -> dict:
    """Notes (holding op_notes) plus each runtime's check, and one warning naming every
    runtime that lacks an op, fails to run the file, or computes something else."""
    warnings = [f"needs ops {rt} lacks: {', '.join(bad)}" for rt, bad in notes["ops_missing_in"].items() if bad]
    notes["runtimes"] = [{k: v for k, v in c.items() if k != "python"} for c in checks]
    bad = [c for c in checks if not c.get("same_results")]
    if bad:
        warnings.append(f"does not run correctly on {', '.join(c['runtime'] for c in bad)}: " + "; ".join(
            c.get("error") or f"results differ ({_difference(c)})" for c in bad))
    if warnings:
        notes["warning"] = "; ".join(warnings)
    return notes


def _difference(check: dict) -> str:
    return (f"mean |diff| {check.get('mean_abs_diff_relative', 0):.0%} of the mean |logit|, "
            f"argmax agreement {check.get('argmax_agreement_pct')}%")


PROBE_ROWS = 32  # samples run on every runtime to compare results (enough for argmax agreement)


def _probe_rows(inputs: dict[str, np.ndarray], family) -> dict[str, np.ndarray]:
    return {n: inputs[n][:PROBE_ROWS] for n in family.onnx_inputs}


HANDLERS = {Fp16Weights: make_fp16, DynamicInt8: quantize_dynamic, StaticInt8: quantize_static}


@register_backend("tflite")
class TfliteBackend:
    name = "tflite"
    requires = ("litert_torch", "ai_edge_litert", "ai_edge_quantizer")
    extra = "tflite"
    static_shapes = True

    def export(self, model, family, sample, out_dir: Path) -> Artifact:
        with _quiet():
            return self._export(model, family, sample, out_dir)

    def _export(self, model, family, sample, out_dir: Path) -> Artifact:
        import torch

        with _quiet():  # loading the converter prints absl/oneDNN info lines
            import litert_torch

        seq_len = int(next(iter(sample.values())).shape[1])
        kwargs = {n: torch.from_numpy(sample[n][:1]) for n in family.onnx_inputs}
        out = out_dir / f"model.fp32.seq{seq_len}.tflite"
        with torch.no_grad(), _converter_progress(log.isEnabledFor(logging.DEBUG)):
            edge = litert_torch.convert(_wrapper(model, family), sample_args=(), sample_kwargs=kwargs)
            with written_atomically(out) as tmp:
                edge.export(tmp)
        return _artifact(out, "fp32", None, _probe_rows(sample, family), {"converter": "litert-torch", "input_shape": [1, seq_len]})

    def quantize(self, fp32: Artifact, family, calibration, config, out_dir: Path,
                 validation: Validation | None = None) -> Artifact:
        with _quiet():
            return self._quantize(fp32, family, calibration, config, out_dir, validation)

    def _quantize(self, fp32: Artifact, family, calibration, config, out_dir: Path,
                  validation: Validation | None) -> Artifact:
        if fp32.path.name.startswith("decoder."):
            from edgeify.export.tflite_decoder import quantize_decoder

            return quantize_decoder(fp32, family, config)
        handler = handler_for(HANDLERS, config, "TFLite handler")
        precision = {Fp16Weights: "fp16", DynamicInt8: "int8-dynamic", StaticInt8: "int8-static"}[type(config)]
        out = out_dir / fp32.path.name.replace(".fp32.", f".{precision}.")
        return handler(fp32, family, calibration, config, out, validation)

    def float_configs(self, family) -> list:
        return [Fp16Weights()]

    def int8_configs(self, family, max_accuracy_drop: float | None = None) -> list:
        return [DynamicInt8(), StaticInt8()]

    decoder_default_length = 512  # cache slots, allocated up front, when --max-length is not given

    def export_decoder(self, model, family, out_dir: Path, max_length: int | None = None,
                       prefill_len: int | None = None) -> Artifact:
        """Prefill (prefill_len tokens, the run's --seq-len) and decode signatures over a
        cache of max_length slots."""
        from edgeify.export.tflite_decoder import export_decoder

        with _quiet():
            return export_decoder(model, family, out_dir, prefill_len or 128,
                                  max_length or self.decoder_default_length)

    def decoder_configs(self, family, int8: bool) -> list:
        """Dynamic-range int8 and blockwise int4 weights (int8 / int4 x float activations,
        quantized on the fly in XNNPACK): no calibration through the cache needed."""
        from edgeify.export.tflite_decoder import DynamicInt4

        return [DynamicInt8(), DynamicInt4(block_size=32)] if int8 else []
