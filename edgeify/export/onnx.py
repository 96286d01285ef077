"""ONNX: export from PyTorch, transformer fusion, dynamic and static (QDQ) int8.

Why the TorchScript exporter (dynamo=False): onnxruntime's transformer optimizer matches
Attention / EmbedLayerNormalization patterns on its graph but fuses no Attention on a
dynamo/SDPA export. The dynamo exporter is kept as a fallback for models it cannot trace.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeify.export import (
    Artifact, Validation, config_record, handler_for, logits_module, register_backend, written_atomically)
from edgeify.export import accuracy_control
from edgeify.export.accuracy_control import AccuracyControlledInt8
from edgeify.export.onnx_graph import (
    bypass_weight_identities, check, dedupe_initializers, gather_rows_early, pin_head_counts)
from edgeify.export.onnx_norms import fold_norm_shifts, lower_norms

log = logging.getLogger(__name__)
OPSET = 17


@dataclass(frozen=True)
class DynamicInt8:
    """Weights int8 per channel, activations quantized on the fly per tensor."""

    per_channel: bool = True
    reduce_range: bool = False

    precision_class = "int8"  # planner.BYTES_PER_WEIGHT key; a class attribute, not in the report


@dataclass(frozen=True)
class StaticInt8:
    """QDQ int8 with activation ranges calibrated on the calibration set.

    Activations uint8, weights int8 (U8S8): the combination onnxruntime's x86 kernels run fastest.
    """

    per_channel: bool = True
    calibrate_method: str = "MinMax"
    activation_symmetric: bool = False

    precision_class = "int8"  # planner.BYTES_PER_WEIGHT key; a class attribute, not in the report


def _atomic_save(model, path: Path) -> None:
    import onnx

    with written_atomically(path) as tmp:
        onnx.save_model(model, tmp)


def export_fp32_raw(model, family, sample: dict[str, np.ndarray], path: Path) -> None:
    """Plain export with dynamic batch and sequence axes (no fusion)."""
    import torch

    names = list(family.onnx_inputs)
    args = tuple(torch.from_numpy(sample[n][:2]) for n in names)
    out_name = "logits"
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes[out_name] = {0: "batch"} if not family.task.causal else {0: "batch", 1: "sequence"}
    wrapped = logits_module(model, names)
    with written_atomically(path) as tmp, torch.no_grad():
        try:
            torch.onnx.export(wrapped, args, tmp, input_names=names, output_names=[out_name],
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False)
        except Exception as e:  # noqa: BLE001 - fall back to the dynamo exporter
            log.warning("TorchScript ONNX export failed (%s); trying the dynamo exporter", e)
            dims = {n: {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence")} for n in names}
            prog = torch.onnx.export(wrapped, args, None, input_names=names,
                                     output_names=[out_name], dynamic_shapes=dims,
                                     opset_version=max(OPSET, 18), dynamo=True)
            prog.save(tmp, external_data=False)


def fuse(raw: Path, family, model_config, out: Path, graph_passes: bool = True) -> dict:
    """onnxruntime transformer fusion, edgeify's graph passes (onnx_graph.py) and initializer
    dedupe; returns what each did.

    Cached decoders skip the passes (graph_passes=False) until their generation speed is
    measured with them (bench_generate.py): they decode one row per step, where the
    lowered norm is only 0.87x the fused one's time in isolation (bench_onnx_ops.py
    --seq-len 1), and the gain at 128 rows is what was measured end to end.
    """
    import onnx
    from onnxruntime.transformers.optimizer import optimize_model

    if not family.ort_model_type:
        model = onnx.load(raw)
        removed = dedupe_initializers(model)
        _atomic_save(model, out)
        return {"fused_ops": {}, "deduplicated_initializers": removed}
    heads = getattr(model_config, "num_attention_heads", None) or getattr(model_config, "num_heads", 0)
    hidden = getattr(model_config, "hidden_size", 0)
    pinned = None
    if getattr(model_config, "edgeify_shape", None):  # pruned: heads differ per layer
        model = onnx.load(raw)
        pinned = pin_head_counts(model)
        raw = raw.with_name(raw.stem + ".pinned.onnx")
        _atomic_save(model, raw)
    try:
        opt = optimize_model(str(raw), model_type=family.ort_model_type, num_heads=heads,
                             hidden_size=hidden, opt_level=0)
    finally:
        if pinned is not None:
            raw.unlink(missing_ok=True)
    stats = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
    model = opt.model
    domains = {n.domain for n in model.graph.node if n.domain}
    have = {o.domain for o in model.opset_import}
    for domain in sorted(domains - have):
        model.opset_import.append(onnx.helper.make_opsetid(domain, 1))
    passes = {}
    if graph_passes:
        passes = {"nodes_on_gathered_row": gather_rows_early(model),
                  "norm_shifts_folded": fold_norm_shifts(model), "lowered_ops": lower_norms(model)}
    removed = dedupe_initializers(model)
    _atomic_save(model, out)
    return {"fused_ops": stats, **passes,
            "deduplicated_initializers": removed,
            **({"pinned_head_counts": pinned} if pinned is not None else {})}


@contextlib.contextmanager
def _inside(directory: Path):
    old = os.getcwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(old)


def _pre_process(src: Path, dst: Path) -> str:
    """quant_pre_process, tolerating the known failure on exported transformers.

    Symbolic shape inference gives up ("Incomplete symbolic shape inference") on some
    exported transformer graphs; auto_merge + guess_output_rank usually gets it through,
    and plain ONNX shape inference is the last resort. Returns what worked, for the report.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src).resolve(), Path(dst).resolve()
    attempts = [
        ("symbolic shape inference", {}),
        ("symbolic shape inference (auto_merge, guess_output_rank)",
         {"auto_merge": True, "guess_output_rank": True}),
        ("onnx shape inference only (symbolic shape inference failed)", {"skip_symbolic_shape": True}),
    ]
    for label, kwargs in attempts:
        try:
            # symbolic shape inference drops scratch files into the working directory
            with _inside(dst.parent):
                quant_pre_process(str(src), str(dst), skip_optimization=True, **kwargs)
            return label
        except Exception as e:  # noqa: BLE001 - onnxruntime raises bare Exceptions here
            log.info("quant_pre_process (%s) failed: %s", label, e)
    shutil.copyfile(src, dst)
    return "skipped (shape inference failed)"


def _nodes_kept_float(model_path: Path, family) -> list[str]:
    import onnx

    model = onnx.load(model_path, load_external_data=False)
    return [n.name for n in model.graph.node if n.op_type in family.keep_float_ops]


class _Reader:
    """CalibrationDataReader over the calibration batch, one sample at a time."""

    def __init__(self, batch, names):
        self._rows = batch.samples(names)
        self._it = iter(self._rows)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self._rows)


def quantize_dynamic_int8(fp32: Artifact, family, calibration, config: DynamicInt8, out: Path,
                          excluded: tuple[str, ...] = ()) -> Artifact:
    """`excluded`: more nodes left float (accuracy control), beside the family's float ops."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        pre = Path(tmp) / "pre.onnx"
        pre_note = _pre_process(fp32.path, pre)
        tmp_out = Path(tmp) / out.name
        quantize_dynamic(str(pre), str(tmp_out), op_types_to_quantize=list(family.int8_ops),
                         per_channel=config.per_channel, reduce_range=config.reduce_range,
                         weight_type=QuantType.QInt8, nodes_to_exclude=_nodes_kept_float(pre, family) + list(excluded),
                         extra_options={"MatMulConstBOnly": True,
                                        "DefaultTensorType": onnx.TensorProto.FLOAT})
        os.replace(tmp_out, out)
    return Artifact("onnx", "int8-dynamic", out, config_record(config),
                    {"pre_process": pre_note, "kept_float_op_types": list(family.keep_float_ops),
                     "int8_op_types": list(family.int8_ops)})


def quantize_static_int8(fp32: Artifact, family, calibration, config: StaticInt8, out: Path,
                         excluded: tuple[str, ...] = ()) -> Artifact:
    """`excluded`: more nodes left float (accuracy control), beside the family's float ops."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    # QDQ cannot quantize contrib ops (fused Attention, SkipLayerNorm): start from the
    # plain export; onnxruntime re-fuses the float parts and the QDQ MatMuls at load time.
    src = fp32.internal.get("plain", fp32.path)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        pre = Path(tmp) / "pre.onnx"
        pre_note = _pre_process(Path(src), pre)
        excluded = _nodes_kept_float(pre, family) + list(excluded)
        tmp_out = Path(tmp) / out.name
        quantize_static(str(pre), str(tmp_out), _Reader(calibration, family.onnx_inputs),
                        quant_format=QuantFormat.QDQ, op_types_to_quantize=[o for o in family.int8_ops if o in STATIC_OPS],
                        per_channel=config.per_channel, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
                        calibrate_method=CalibrationMethod[config.calibrate_method],
                        extra_options={"ActivationSymmetric": config.activation_symmetric,
                                       "WeightSymmetric": True, "MatMulConstBOnly": True,
                                       "DefaultTensorType": onnx.TensorProto.FLOAT})
        os.replace(tmp_out, out)
    return Artifact("onnx", "int8-static", out, config_record(config),
                    {"pre_process": pre_note, "n_calibration": len(calibration),
                     "kept_float_op_types": list(family.keep_float_ops)})


# QDQ handles plain ops only (no fused Attention); Gather only where the family asks.
STATIC_OPS = ("MatMul", "Gather")


def quantize_accuracy_controlled(fp32: Artifact, family, calibration, config: AccuracyControlledInt8, out: Path,
                                 validation: Validation | None = None) -> Artifact:
    """The base int8 (dynamic or static) with the most harmful nodes reverted to float until
    the drop is within the budget (accuracy_control), through `nodes_to_exclude`."""
    import onnx

    static = config.base == "static"
    quantize, base = (quantize_static_int8, StaticInt8()) if static else (quantize_dynamic_int8, DynamicInt8())
    source = Path(fp32.internal.get("plain", fp32.path)) if static else fp32.path
    ops = [o for o in family.int8_ops if o in STATIC_OPS] if static else list(family.int8_ops)
    candidates = [n.name for n in onnx.load(source, load_external_data=False).graph.node
                  if n.op_type in ops and n.op_type not in family.keep_float_ops and n.name]
    notes = accuracy_control.control(
        fp32.path, lambda first: quantized_nodes(first, candidates),
        lambda excluded, path: quantize(fp32, family, calibration, base, path, excluded),
        calibration.samples(family.onnx_inputs), validation, config, out)
    return accuracy_control.artifact("onnx", config, out, notes)


def quantized_nodes(path: Path, candidates: list[str]) -> list[str]:
    """The candidate nodes the quantizer did quantize, the ones reverting can help: replaced
    by an integer node (dynamic: the name is gone), or reading a DequantizeLinear (QDQ; the
    attention's activation x activation MatMuls included, which QDQ quantizes too)."""
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    nodes = {n.name: n for n in graph.node}
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [c for c in candidates if c not in nodes or any(i in dequantized for i in nodes[c].input)]


QUANTIZERS = {DynamicInt8: quantize_dynamic_int8, StaticInt8: quantize_static_int8}
VALIDATED = {AccuracyControlledInt8: quantize_accuracy_controlled}  # handlers that take the evaluation set


@register_backend("onnx")
class OnnxBackend:
    name = "onnx"
    requires = ("onnx", "onnxruntime")
    extra = ""  # core dependencies
    static_shapes = False

    def export(self, model, family, sample, out_dir: Path) -> Artifact:
        import onnx

        raw = out_dir / ".model.raw.onnx"
        out = out_dir / "model.fp32.onnx"
        export_fp32_raw(model, family, sample, raw)
        check(raw)
        notes = {"opset": OPSET, "exporter": "torch.onnx (TorchScript)",
                 "raw_size_bytes": raw.stat().st_size}
        # The plain graph, deduplicated: static QDQ starts from it (see quantize_static_int8)
        # and it is the fp32 artifact when fusion fails.
        plain = out_dir / ".model.plain.onnx"
        plain_model = onnx.load(raw)
        plain_removed = dedupe_initializers(plain_model)
        notes["weight_identities_bypassed"] = bypass_weight_identities(plain_model)
        notes["plain_lowered_ops"] = lower_norms(plain_model)
        _atomic_save(plain_model, plain)
        del plain_model
        try:
            notes.update(fuse(raw, family, model.config, out))
            check(out)  # contrib-op domains are accepted
        except Exception as e:  # noqa: BLE001 - fusion is an optimisation, not a must
            log.warning("transformer fusion failed (%s); keeping the plain export", e)
            notes.update({"fused_ops": {}, "fusion_error": str(e)[:300],
                          "deduplicated_initializers": plain_removed})
            with written_atomically(out) as tmp:
                shutil.copyfile(plain, tmp)
        raw.unlink()
        return Artifact("onnx", "fp32", out, {"type": "Fp32Export", "opset": OPSET},
                        notes, internal={"plain": plain})

    def quantize(self, fp32: Artifact, family, calibration, config, out_dir: Path,
                 validation=None) -> Artifact:
        from edgeify.export import onnx_decoder

        stem = fp32.path.name.split(".")[0]  # model or decoder
        if type(config) in VALIDATED:
            return VALIDATED[type(config)](fp32, family, calibration, config,
                                           out_dir / f"{stem}.{config.precision}.onnx", validation)
        handlers = {**QUANTIZERS, onnx_decoder.WeightOnly: onnx_decoder.quantize_weights}
        handler = handler_for(handlers, config, "ONNX quantizer")
        precision = (f"int{config.bits}-weights" if isinstance(config, onnx_decoder.WeightOnly)
                     else {DynamicInt8: "int8-dynamic", StaticInt8: "int8-static"}[type(config)])
        art = handler(fp32, family, calibration, config, out_dir / f"{stem}.{precision}.onnx")
        if "max_length" in fp32.notes:  # a cached decoder: the runner reads its limits from the file
            onnx_decoder.restamp(art.path, fp32.notes["max_length"], fp32.notes["local_window"])
        return art

    def float_configs(self, family) -> list:
        return []

    def int8_configs(self, family, max_accuracy_drop: float | None = None) -> list:
        """Dynamic and static int8; with a budget also each of them accuracy-controlled."""
        configs: list = [DynamicInt8(), StaticInt8()]
        if max_accuracy_drop is not None:
            configs += [AccuracyControlledInt8(max_drop=max_accuracy_drop, base=b) for b in ("dynamic", "static")]
        return configs

    def export_decoder(self, model, family, out_dir: Path, max_length: int | None = None,
                       prefill_len: int | None = None) -> Artifact:
        from edgeify.export import onnx_decoder

        return onnx_decoder.export_decoder(model, family, out_dir, OPSET, fuse, max_length)

    def decoder_configs(self, family, int8: bool) -> list:
        """Dynamic int8 (weights and activations), and weight-only int8 / int4: batch-1
        decoding reads every weight once per token, so the weights' size sets its speed."""
        from edgeify.export.onnx_decoder import WeightOnly

        return [DynamicInt8(), WeightOnly(bits=8), WeightOnly(bits=4)] if int8 else []
