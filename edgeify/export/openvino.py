"""OpenVINO IR: convert from PyTorch, fp16 weights, NNCF int8 (plain and accuracy-controlled),
weight-only int8/int4 for decoders; on a CPU where a plain load runs bf16, each int8 IR
again as that plain load runs it (AsRunByDefault), since that is what users execute.

Why convert from PyTorch and not from edgeify's ONNX export: on the real ELECTRA model both
IRs ran at the same fp32 latency (17.4 vs 17.0 ms, batch 1, seq 128, interleaved), the
PyTorch route gives a smaller graph (354 vs 421 runtime nodes), is the route OpenVINO
itself recommends, and does not make the OpenVINO format depend on the ONNX stage.

openvino and nncf are imported inside the functions: they are an optional extra.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeify.errors import EdgeifyError
from edgeify.export import Artifact, Validation, config_record, handler_for, logits_module, register_backend
from edgeify.export.openvino_ir import RT_BIN_SHA256, RT_PRECISION, RT_SHAPES, save_ir  # noqa: F401

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fp16Weights:
    """Weights stored in fp16 (half the file). Executed in the CPU's native half type
    (bf16 on AVX512-BF16/AMX x86, fp16 on ARM with FP16, else fp32): the report says which."""

    inference_precision: str = "native"

    precision_class = "fp16"  # planner.BYTES_PER_WEIGHT key; a class attribute, not in the report


@dataclass(frozen=True)
class Int8:
    """`nncf.quantize` with the transformer model type: int8 weights and activations;
    LayerNorm, GELU, Softmax and the embeddings stay float (NNCF's transformer policy),
    SmoothQuant and fast bias correction on."""

    preset: str = "mixed"
    subset_size: int = 300
    fast_bias_correction: bool = True

    precision_class = "int8"  # planner.BYTES_PER_WEIGHT key; a class attribute, not in the report


@dataclass(frozen=True)
class AccuracyControlledInt8:
    """`nncf.quantize_with_accuracy_control`: int8 as above, then the layers that cost the
    most accuracy on the evaluation set go back to float until the drop is within
    `max_drop` (accuracy points, or % perplexity for language models)."""

    max_drop: float
    preset: str = "mixed"
    subset_size: int = 300
    ranking_subset_size: int = 300

    precision_class = "int8"  # planner.BYTES_PER_WEIGHT key; a class attribute, not in the report


@dataclass(frozen=True)
class WeightsOnly:
    """`nncf.compress_weights`: weights int8 or int4 (group-wise), activations float.
    For decoders, whose batch-1 speed is bound by reading the weights."""

    mode: str = "int8_asym"
    group_size: int = -1  # int4 only
    ratio: float = 1.0    # int4 only: share of layers in int4 (the rest int8)

    @property
    def precision_class(self) -> str:
        return "int4" if self.mode.startswith("int4") else "int8"


@dataclass(frozen=True)
class AsRunByDefault:
    """An int8 IR (`source`, built before this) as OpenVINO runs it when loaded plainly:
    int8 matmuls, the other layers in `runs_as`, the CPU's native float type (bf16 on
    AVX512_BF16 / AMX). The same weights as `source`, only its edgeify inference precision
    is "native" instead of f32: no second NNCF run. Its own row, because that is what a
    user's `compile_model(model, "CPU")` executes, and its accuracy and speed differ."""

    source: str = "int8"
    runs_as: str = "bf16"

    precision_class = "int8"  # planner.BYTES_PER_WEIGHT key; a class attribute, not in the report


def _precision_name(config) -> str:
    if isinstance(config, WeightsOnly):
        return f"{config.mode[:4]}-weights"
    if isinstance(config, AsRunByDefault):
        return f"{config.source}-{config.runs_as}"
    return {Fp16Weights: "fp16", Int8: "int8", AccuracyControlledInt8: "int8-accuracy-controlled"}[type(config)]


def quantized_matmuls(model) -> list[str]:
    """MatMuls that run in int8: those fed by a FakeQuantize on an input."""
    out = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        sources = {op.input_value(i).get_node().get_type_name() for i in range(op.get_input_size())}
        if "FakeQuantize" in sources:
            out.append(op.get_friendly_name())
    return out


def _read(path: Path):
    import openvino as ov

    return ov.Core().read_model(str(path))


def quantize_int8(fp32: Artifact, family, calibration, config: Int8, out: Path,
                  validation: Validation | None = None) -> Artifact:
    import nncf

    model = _read(fp32.path)
    quantized = nncf.quantize(
        model, nncf.Dataset(calibration.samples(family.onnx_inputs)),
        preset=nncf.QuantizationPreset(config.preset), model_type=nncf.ModelType.TRANSFORMER,
        subset_size=min(config.subset_size, len(calibration)),
        fast_bias_correction=config.fast_bias_correction)
    quantized.set_rt_info("f32", RT_PRECISION)
    quantized.set_rt_info("static", RT_SHAPES)
    save_ir(quantized, out)
    int8 = quantized_matmuls(quantized)
    return Artifact("openvino", "int8", out, config_record(config),
                    {"int8_matmuls": len(int8), "matmuls": _count(quantized, "MatMul"),
                     "n_calibration": len(calibration)})


def _score(model, validation: Validation) -> float:
    """The validation score of one model on the whole evaluation set, run in f32 as NNCF does."""
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return validation.score(lambda feeds: compiled(feeds)[0], list(range(validation.n_items)))[0]


def quantize_accuracy_controlled(fp32: Artifact, family, calibration, config: AccuracyControlledInt8,
                                 out: Path, validation: Validation | None = None) -> Artifact:
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    if validation is None:
        raise EdgeifyError("accuracy-controlled quantization needs the evaluation set")

    def validate(compiled, items):
        return validation.score(lambda feeds: compiled(feeds)[0], [int(i) for i in items])

    model = _read(fp32.path)
    reference = _score(model, validation)
    if reference == 0:  # NNCF divides by it
        raise EdgeifyError("accuracy-controlled quantization needs a non-zero fp32 score on the "
                           "evaluation set; check the labels of --data")
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        quantized = nncf.quantize_with_accuracy_control(
            model, nncf.Dataset(calibration.samples(family.onnx_inputs)),
            nncf.Dataset(list(range(validation.n_items))), validation_fn=validate,
            max_drop=config.max_drop, drop_type=nncf.DropType.ABSOLUTE,
            preset=nncf.QuantizationPreset(config.preset), model_type=nncf.ModelType.TRANSFORMER,
            subset_size=min(config.subset_size, len(calibration)),
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                ranking_subset_size=min(config.ranking_subset_size, validation.n_items),
                intermediate_model_dir=tmp))
        # NNCF saves the fully quantized model it started from: the difference is what it
        # reverted, and it is the fallback when reverting did not help.
        initial_xml = next(Path(tmp).rglob("*.xml"), None)
        initial = _read(initial_xml) if initial_xml else None
        initial_drop = None
        if initial is not None:
            initial_drop = round(reference - _score(initial, validation), 4)
            initial.set_rt_info("f32", RT_PRECISION)
    drop = round(reference - _score(quantized, validation), 4)
    kept = "accuracy-controlled"
    if drop > config.max_drop and initial_drop is not None and initial_drop < drop:
        # NNCF returns its last candidate, which can be worse than where it started.
        quantized, drop, kept = initial, initial_drop, "initial int8 (reverting layers made it worse)"
    final_int8 = set(quantized_matmuls(quantized))
    quantized.set_rt_info("f32", RT_PRECISION)
    quantized.set_rt_info("static", RT_SHAPES)
    save_ir(quantized, out)
    within = drop <= config.max_drop
    notes = {
        "validated_on": f"the evaluation set ({validation.n_items} samples)",
        "drop_unit": validation.unit,
        "initial_int8_drop": initial_drop,
        "final_drop": drop,
        "within_budget": within,
        "kept": kept,
        "int8_matmuls": len(final_int8), "matmuls": _count(quantized, "MatMul"),
        "reverted_to_float": sorted(set(quantized_matmuls(initial)) - final_int8) if initial else [],
    }
    if not within:
        notes["warning"] = (f"accuracy control found no int8 model within {config.max_drop:g} "
                            f"{validation.unit}; kept the best one found (drop {drop:g}, {kept})")
    return Artifact("openvino", "int8-accuracy-controlled", out, config_record(config), notes)


def compress_weights(fp32: Artifact, family, calibration, config: WeightsOnly, out: Path,
                     validation: Validation | None = None) -> Artifact:
    import nncf

    mode = nncf.CompressWeightsMode(config.mode)
    kwargs = {}
    if mode in (nncf.CompressWeightsMode.INT4_SYM, nncf.CompressWeightsMode.INT4_ASYM):
        kwargs = {"group_size": config.group_size, "ratio": config.ratio}
    model = _read(fp32.path)
    compressed = nncf.compress_weights(model, mode=mode, **kwargs)
    compressed.set_rt_info("f32", RT_PRECISION)
    save_ir(compressed, out)
    consts = [op for op in compressed.get_ordered_ops() if op.get_type_name() == "Constant"]
    by_type: dict[str, int] = {}
    for op in consts:
        t = op.get_element_type().get_type_name()
        if t in ("i8", "u8", "i4", "u4"):
            by_type[t] = by_type.get(t, 0) + int(np.prod(list(op.get_shape())))
    return Artifact("openvino", _precision_name(config), out, config_record(config),
                    {"compressed_weight_elements": by_type})


def make_fp16(fp32: Artifact, family, calibration, config: Fp16Weights, out: Path,
              validation: Validation | None = None) -> Artifact:
    model = _read(fp32.path)
    model.set_rt_info(config.inference_precision, RT_PRECISION)
    save_ir(model, out, compress_to_fp16=True)
    native, why = runtime_default()
    return Artifact("openvino", "fp16", out, config_record(config),
                    {"weights": "fp16", "inference_precision": config.inference_precision,
                     "precision_as_run": f"no INFERENCE_PRECISION_HINT: OpenVINO's default, {native} on this "
                                         f"CPU ({why})"})


def as_run_by_default(fp32: Artifact, family, calibration, config: AsRunByDefault, out: Path,
                      validation: Validation | None = None) -> Artifact:
    source = out.with_name(f"{fp32.path.name.split('.')[0]}.{config.source}.xml")
    if not source.is_file():
        raise EdgeifyError(f"{out.name} is derived from {source.name}, which is not built yet "
                           f"(configs are built in order: the {config.source} config comes first)")
    model = _read(source)
    model.set_rt_info("native", RT_PRECISION)
    save_ir(model, out)
    return Artifact("openvino", _precision_name(config), out, config_record(config),
                    {"derived_from": source.name, "inference_precision": "native",
                     "int8_matmuls": len(quantized_matmuls(model)), "matmuls": _count(model, "MatMul"),
                     "precision_as_run": f"no INFERENCE_PRECISION_HINT: OpenVINO's default, int8 matmuls "
                                         f"and {config.runs_as} for the rest on this CPU"})


def runtime_default(env=None) -> tuple[str, str]:
    """(float type a plain load runs here, why): see openvino_runner.default_precision."""
    from edgeify.runtimes.openvino_runner import default_precision

    return default_precision(env)


def _count(model, op_type: str) -> int:
    return sum(op.get_type_name() == op_type for op in model.get_ordered_ops())


HANDLERS = {
    Fp16Weights: make_fp16,
    Int8: quantize_int8,
    AccuracyControlledInt8: quantize_accuracy_controlled,
    WeightsOnly: compress_weights,
    AsRunByDefault: as_run_by_default,
}


@register_backend("openvino")
class OpenVinoBackend:
    name = "openvino"
    requires = ("openvino", "nncf")
    extra = "openvino"
    static_shapes = False

    def export(self, model, family, sample, out_dir: Path) -> Artifact:
        import openvino as ov
        import torch

        names = list(family.onnx_inputs)
        example = tuple(torch.from_numpy(sample[n][:2]) for n in names)
        with torch.no_grad():
            ov_model = ov.convert_model(logits_module(model, names), example_input=example,
                                        input=[(ov.PartialShape([-1, -1]), ov.Type.i64)] * len(names))
        # The PyTorch frontend names ports after the wrapper's *args; give them the
        # model's input names so every runner is fed the same dict.
        for port, name in zip(ov_model.inputs, names):
            port.get_tensor().set_names({name})
        ov_model.outputs[0].get_tensor().set_names({"logits"})
        ov_model.set_rt_info("f32", RT_PRECISION)
        out = out_dir / "model.fp32.xml"
        save_ir(ov_model, out)
        native, why = runtime_default()
        plain = ("the same" if native == "f32" else native)
        return Artifact("openvino", "fp32", out, {"type": "Fp32Export"},
                        {"converter": f"openvino.convert_model from PyTorch (openvino {ov.__version__})",
                         "inference_precision": f"f32 (set explicitly; a plain load runs {plain} here: {why})",
                         "plain_load_runs": native,
                         "precision_as_run": f"INFERENCE_PRECISION_HINT f32 set explicitly (the reference); "
                                             f"a plain load runs {plain} on this CPU ({why})"})

    def quantize(self, fp32: Artifact, family, calibration, config, out_dir: Path,
                 validation: Validation | None = None) -> Artifact:
        handler = handler_for(HANDLERS, config, "OpenVINO handler")
        stem = fp32.path.name.split(".")[0]  # model or decoder
        out = out_dir / f"{stem}.{_precision_name(config)}.xml"
        return handler(fp32, family, calibration, config, out, validation)

    def float_configs(self, family) -> list:
        return [Fp16Weights()]

    def runtime_default(self, env=None) -> tuple[str, str]:
        return runtime_default(env)

    def int8_configs(self, family, max_accuracy_drop: float | None = None, env=None) -> list:
        """Int8 (and accuracy-controlled int8), each followed, where a plain load runs a
        lower float type than f32 (bf16 CPUs; `env` may cap oneDNN), by its as-run twin."""
        configs: list = [Int8()]
        if max_accuracy_drop is not None:
            configs.append(AccuracyControlledInt8(max_drop=max_accuracy_drop))
        native, _ = self.runtime_default(env)
        if native != "f32":
            configs += [AsRunByDefault(_precision_name(c), native) for c in list(configs)]
        if family.task.causal:
            configs += self.decoder_configs(family, True)[1:]
        return configs

    def export_decoder(self, model, family, out_dir: Path, max_length: int | None = None,
                       prefill_len: int | None = None) -> Artifact:
        from edgeify.export.openvino_decoder import export_decoder

        return export_decoder(model, family, out_dir, max_length)

    def decoder_configs(self, family, int8: bool) -> list:
        # Decoding reads every weight per token: weight-only is what makes it fast.
        weights = [WeightsOnly("int8_asym"), WeightsOnly("int4_sym", group_size=64, ratio=1.0)]
        return [Fp16Weights(), *(weights if int8 else [])]
