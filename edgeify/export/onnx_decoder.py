"""ONNX cached decoder for causal LMs: one graph for prefill and decode.

Inputs `input_ids` (batch, sequence) and each layer's `past_key_values.{i}.key/value`
(batch, heads, past, head_dim); outputs `logits` (batch, sequence, vocab) and
`present.{i}.key/value` with the new tokens appended. The past length is read from the
cache's shape: an empty cache (past 0) is the prefill, one token with a full cache a
decode step. The maximum length (the position table's size) is written into the file's
metadata, so the runner refuses to overflow it with a clear error.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgeify.contract import (ONNX_DECODER_LAYOUT as META_LAYOUT, ONNX_LOCAL_WINDOW as META_WINDOW,
                              ONNX_MAX_LENGTH as META_MAX_LENGTH, PRESENT, cache_names)
from edgeify.export import Artifact, config_record, written_atomically

log = logging.getLogger(__name__)


def _export_raw(module, path: Path, opset: int) -> None:
    import torch

    names = cache_names(module.n_layers)
    presents = cache_names(module.n_layers, PRESENT)
    ids = torch.zeros((1, 3), dtype=torch.long)
    past = module.empty_cache(1, 2)  # a non-empty past: no shape gets traced as a constant 0
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"}}
    axes.update({n: {0: "batch", 2: "past_sequence"} for n in names})
    axes.update({n: {0: "batch", 2: "total_sequence"} for n in presents})
    with written_atomically(path) as tmp, torch.no_grad():
        torch.onnx.export(module, (ids, *past), tmp, input_names=["input_ids", *names],
                          output_names=["logits", *presents], dynamic_axes=axes,
                          opset_version=opset, dynamo=False)


def export_decoder(model, family, out_dir: Path, opset: int, fuse, max_length: int | None = None) -> Artifact:
    """Export, fuse what onnxruntime's optimizer fuses for the family, stamp the metadata."""
    from edgeify.export.onnx_graph import check

    module = family.decoder_module(model, "grow", max_length)
    raw = out_dir / ".decoder.raw.onnx"
    out = out_dir / "decoder.fp32.onnx"
    _export_raw(module, raw, opset)
    check(raw)
    notes = {"opset": opset, "exporter": "torch.onnx (TorchScript)", "cache": "past_key_values in, present out",
             "max_length": module.max_length, "local_window": module.window}
    try:
        notes.update(fuse(raw, family, model.config, out, graph_passes=False))
    except Exception as e:  # noqa: BLE001 - fusion is an optimisation, not a must
        log.warning("transformer fusion failed on the decoder (%s); keeping the plain export", e)
        notes.update({"fused_ops": {}, "fusion_error": str(e)[:300]})
        with written_atomically(out) as tmp:
            shutil.copyfile(raw, tmp)
    raw.unlink()
    restamp(out, module.max_length, module.window)
    check(out)
    return Artifact("onnx", "fp32", out, {"type": "Fp32DecoderExport", "opset": opset}, notes)


def restamp(path: Path, max_length: int, window: int) -> None:
    """Write the decoder's limits into the file's metadata (quantizers may drop it)."""
    import onnx

    model = onnx.load(path)
    props = {p.key: p for p in model.metadata_props}
    for key, value in ((META_LAYOUT, "grow"), (META_MAX_LENGTH, str(max_length)), (META_WINDOW, str(window))):
        if key in props:
            props[key].value = value
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    with written_atomically(path) as tmp:
        onnx.save_model(model, tmp)


@dataclass(frozen=True)
class WeightOnly:
    """onnxruntime's MatMulNBits: every MatMul's weights (the tied LM head included) in
    `bits` (4 or 8), symmetric, one scale per `block_size` input rows; activations stay
    float. accuracy_level 4 runs the products in int8 with the activations quantized per
    block on the fly (VNNI on x86, SDOT on ARM), the fast path for batch-1 decoding, whose
    speed is bound by reading the weights. The embedding table stays float: onnxruntime's
    quantized Gather takes int4 only and needs opset 21."""

    bits: int = 4
    block_size: int = 32
    symmetric: bool = True
    accuracy_level: int = 4

    @property
    def precision_class(self) -> str:
        return f"int{self.bits}"


def quantize_weights(fp32: Artifact, family, calibration, config: WeightOnly, out: Path) -> Artifact:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer)

    model = onnx.load(fp32.path)
    algo = DefaultWeightOnlyQuantConfig(block_size=config.block_size, is_symmetric=config.symmetric,
                                        accuracy_level=config.accuracy_level, bits=config.bits)
    quantizer = MatMulNBitsQuantizer(model, bits=config.bits, block_size=config.block_size,
                                     is_symmetric=config.symmetric, accuracy_level=config.accuracy_level,
                                     algo_config=algo)
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    quantizer.process()
    quantized = quantizer.model.model
    n_quantized = sum(n.op_type == "MatMulNBits" for n in quantized.graph.node)
    with written_atomically(out) as tmp:
        onnx.save_model(quantized, tmp)
    return Artifact("onnx", f"int{config.bits}-weights", out, config_record(config),
                    {**{k: v for k, v in fp32.notes.items() if k in ("max_length", "local_window")},
                     "matmulnbits": n_quantized, "kept_float": "embedding table, LayerNorm, attention"})
