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

import logging
from pathlib import Path

import numpy as np

from edgeify.export import (Artifact, Validation, accuracy_control, config_record, handler_for, register_backend,
                            written_atomically)
from edgeify.export.accuracy_control import AccuracyControlledInt8
from edgeify.export.tflite_common import (  # noqa: F401  (the configs are part of this backend's API)
    TFLITE_OPS, DynamicInt8, Fp16Weights, StaticInt8, calibrate, converter_progress, family_ops, keep_float,
    op_notes, op_scopes, quantize_file, quiet, recipe, with_runtime_checks)

log = logging.getLogger(__name__)


def _wrapper(model, family):
    """Keyword inputs named as the family's (so the signature has those names), logits out."""
    import torch

    causal = family.task.causal

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


def make_fp16(fp32: Artifact, family, calibration, config: Fp16Weights, out: Path,
              validation: Validation | None = None) -> Artifact:
    from ai_edge_quantizer import algorithm_manager, qtyping

    quantize_file(fp32.path, out, recipe(lambda m: m.add_weight_only_config(
        regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
        algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING)))
    return _artifact(out, config.precision, config, _probe_rows(calibration.inputs, family))


def quantize_dynamic(fp32: Artifact, family, calibration, config: DynamicInt8, out: Path,
                     validation: Validation | None = None) -> Artifact:
    ops = family_ops(family, config.ops)
    quantize_file(fp32.path, out, _dynamic_recipe(ops, config, ()))
    return _artifact(out, config.precision, config, _probe_rows(calibration.inputs, family), {"int8_ops": ops})


def _dynamic_recipe(ops: list[str], config: DynamicInt8, excluded: tuple[str, ...]) -> list:
    from ai_edge_quantizer import qtyping

    def add(m):
        for op in ops:
            m.add_dynamic_config(regex=".*", operation_name=qtyping.TFLOperationName[op], num_bits=8,
                                 granularity=qtyping.QuantGranularity[config.granularity])
        keep_float(m, excluded)
    return recipe(add)


def quantize_static(fp32: Artifact, family, calibration, config: StaticInt8, out: Path,
                    validation: Validation | None = None) -> Artifact:
    ops, tables = family_ops(family, config.ops), family_ops(family, config.table_ops)
    rows = _calibration_rows(calibration, family)
    full = _static_recipe(ops, tables, ())
    quantize_file(fp32.path, out, full, calibrated=calibrate(fp32.path, full, rows))
    return _artifact(out, config.precision, config, _probe_rows(calibration.inputs, family),
                     {"int8_ops": ops + tables, "n_calibration": len(rows)})


def _calibration_rows(calibration, family) -> list[dict]:
    return [{n: v.astype(np.int32) for n, v in row.items()} for row in calibration.samples(family.onnx_inputs)]


def _static_recipe(ops: list[str], tables: list[str], excluded: tuple[str, ...]) -> list:
    from ai_edge_quantizer import qtyping

    def add(m):
        for op in ops:
            m.add_static_config(regex=".*", operation_name=qtyping.TFLOperationName[op],
                                activation_num_bits=8, weight_num_bits=8)
        for op in tables:
            m.add_dynamic_config(regex=".*", operation_name=qtyping.TFLOperationName[op], num_bits=8,
                                 granularity=qtyping.QuantGranularity.TENSORWISE)
        keep_float(m, excluded)
    return recipe(add)


def quantize_accuracy_controlled(fp32: Artifact, family, calibration, config: AccuracyControlledInt8, out: Path,
                                 validation: Validation | None = None) -> Artifact:
    """The base int8 (dynamic-range or full int8) with the most harmful ops reverted to
    float until the drop is within the budget (accuracy_control), through recipe scopes.
    Full int8 calibrates once: the ranges of a tensor do not depend on which ops are int8."""
    rows = _calibration_rows(calibration, family)
    if config.base == "static":
        ops, tables = family_ops(family, StaticInt8().ops), family_ops(family, StaticInt8().table_ops)
        recipe_for = lambda excluded: _static_recipe(ops, tables, excluded)  # noqa: E731
        calibrated = calibrate(fp32.path, recipe_for(()), rows)
    else:
        ops, tables = family_ops(family, DynamicInt8().ops), []
        recipe_for = lambda excluded: _dynamic_recipe(ops, DynamicInt8(), excluded)  # noqa: E731
        calibrated = None
    labels = op_scopes(fp32.path, ops + tables)
    notes = accuracy_control.control(
        fp32.path, lambda first: list(labels),
        lambda excluded, path: quantize_file(fp32.path, path, recipe_for(excluded), calibrated=calibrated),
        rows, validation, config, out, labels.get)
    return _artifact(out, config.precision, config, _probe_rows(calibration.inputs, family), notes)


def _artifact(path: Path, precision: str, config, probe_rows: dict[str, np.ndarray],
              notes: dict | None = None) -> Artifact:
    """The artifact with its op inventory and a load-and-run check on every TFLite runtime
    at hand (this Python's, plus EDGEIFY_TFLITE_PYTHONS, e.g. a tflite-runtime 2.14 venv)."""
    from edgeify.runtimes.tflite_runner import TfliteRunner, check_runtimes

    notes = {**(notes or {}), **op_notes(path)}
    reference = TfliteRunner(path, 1).run(probe_rows)
    return Artifact("tflite", precision, path, config_record(config) if config else {"type": "Fp32Export"},
                    with_runtime_checks(notes, check_runtimes(path, probe_rows, reference)))


PROBE_ROWS = 32  # samples run on every runtime to compare results (enough for argmax agreement)


def _probe_rows(inputs: dict[str, np.ndarray], family) -> dict[str, np.ndarray]:
    return {n: inputs[n][:PROBE_ROWS] for n in family.onnx_inputs}


HANDLERS = {Fp16Weights: make_fp16, DynamicInt8: quantize_dynamic, StaticInt8: quantize_static,
            AccuracyControlledInt8: quantize_accuracy_controlled}


@register_backend("tflite")
class TfliteBackend:
    name = "tflite"
    requires = ("litert_torch", "ai_edge_litert", "ai_edge_quantizer")
    extra = "tflite"
    static_shapes = True

    def export(self, model, family, sample, out_dir: Path) -> Artifact:
        with quiet():
            return self._export(model, family, sample, out_dir)

    def _export(self, model, family, sample, out_dir: Path) -> Artifact:
        import torch

        with quiet():  # loading the converter prints absl/oneDNN info lines
            import litert_torch

        seq_len = int(next(iter(sample.values())).shape[1])
        kwargs = {n: torch.from_numpy(sample[n][:1]) for n in family.onnx_inputs}
        out = out_dir / f"model.fp32.seq{seq_len}.tflite"
        with torch.no_grad(), converter_progress(log.isEnabledFor(logging.DEBUG)):
            edge = litert_torch.convert(_wrapper(model, family), sample_args=(), sample_kwargs=kwargs)
            with written_atomically(out) as tmp:
                edge.export(tmp)
        return _artifact(out, "fp32", None, _probe_rows(sample, family), {"converter": "litert-torch", "input_shape": [1, seq_len]})

    def quantize(self, fp32: Artifact, family, calibration, config, out_dir: Path,
                 validation: Validation | None = None) -> Artifact:
        with quiet():
            return self._quantize(fp32, family, calibration, config, out_dir, validation)

    def _quantize(self, fp32: Artifact, family, calibration, config, out_dir: Path,
                  validation: Validation | None) -> Artifact:
        if fp32.path.name.startswith("decoder."):
            from edgeify.export.tflite_decoder import quantize_decoder

            return quantize_decoder(fp32, family, config)
        handler = handler_for(HANDLERS, config, "TFLite handler")
        out = out_dir / fp32.path.name.replace(".fp32.", f".{config.precision}.")
        return handler(fp32, family, calibration, config, out, validation)

    def float_configs(self, family) -> list:
        return [Fp16Weights()]

    def int8_configs(self, family, max_accuracy_drop: float | None = None) -> list:
        """Dynamic-range (per-tensor, and per-channel for the runtimes that compute it right)
        and full int8; with a budget also per-tensor dynamic and full int8 accuracy-controlled."""
        configs: list = [DynamicInt8(), DynamicInt8(granularity="CHANNELWISE"), StaticInt8()]
        if max_accuracy_drop is not None:
            configs += [AccuracyControlledInt8(max_drop=max_accuracy_drop, base=b) for b in ("dynamic", "static")]
        return configs

    decoder_default_length = 512  # cache slots, allocated up front, when --max-length is not given

    def export_decoder(self, model, family, out_dir: Path, max_length: int | None = None,
                       prefill_len: int | None = None) -> Artifact:
        """Prefill (prefill_len tokens, the run's --seq-len) and decode signatures over a
        cache of max_length slots."""
        from edgeify.export.tflite_decoder import export_decoder

        with quiet():
            return export_decoder(model, family, out_dir, prefill_len or 128,
                                  max_length or self.decoder_default_length)

    def decoder_configs(self, family, int8: bool) -> list:
        """Dynamic-range int8 and blockwise int4 weights (int8 / int4 x float activations,
        quantized on the fly in XNNPACK): no calibration through the cache needed."""
        from edgeify.export.tflite_decoder import DynamicInt4

        return [DynamicInt8(), DynamicInt4(block_size=32)] if int8 else []
