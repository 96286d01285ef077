"""TFLite cached decoder for causal LMs: one file, two signatures over one fixed-size cache.

- `prefill`: input_ids (1, prefill_len), input_pos (prefill_len,), and each layer's cache
  `kv_cache_k_{i}` / `kv_cache_v_{i}` (1, heads, max_length, head_dim) -> `logits`
  (1, prefill_len, vocab) and the caches updated (same names).
- `decode`: the same with one token.

Static shapes, as TFLite wants: a prompt is prefilled in chunks of prefill_len (the last
one padded), then each new token is one decode step. Positions go in as int32 (TFLite
has no use for int64 indices, and litert-torch would downcast them anyway).

The cache is written with DYNAMIC_UPDATE_SLICE at input_pos[0]: index_copy, the module's
default, converts to STABLEHLO_SCATTER, which tflite-runtime 2.14 (Raspberry Pi OS) cannot
load. The same weights serve both signatures (the converter shares the buffers).

The runtime side is TfliteDecoder in runtimes/tflite_runner.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeify.errors import UsageError
from edgeify.export import Artifact, config_record, handler_for, written_atomically
from edgeify.export.tflite_common import (
    DynamicInt8, converter_progress, family_ops, op_notes, quantize_file, recipe, with_runtime_checks)
from edgeify.runtimes.tflite_runner import DECODE, IDS, LOGITS, POS, PREFILL, PROBE_STEPS

log = logging.getLogger(__name__)


def cache_names(n_layers: int) -> list[str]:
    """Signature names of the cache tensors, in the module's order (key, value per layer);
    litert-torch's generative models use the same names."""
    return [f"kv_cache_{kind}_{i}" for i in range(n_layers) for kind in ("k", "v")]


@dataclass(frozen=True)
class DynamicInt4:
    """Fully connected weights int4, one scale per block of `block_size` input values
    (0: one per output channel); activations quantized at run time; everything else
    float. No calibration. A tied token table (GPT-Neo's lm_head is its wte) is int8
    per tensor, shared by the lookup and the lm_head (see _tied_scopes).

    Blockwise int4 runs on ai-edge-litert only: tflite-runtime 2.14 loads the file (the
    op versions do not tell) and computes garbage (0% argmax agreement; with an int4
    lm_head it segfaults). Per-channel int4 (block_size=0) runs on 2.14, agreeing with
    ai-edge-litert as closely as int8 files do, but is coarser than blockwise."""

    block_size: int = 32  # 32, 64, 128, 256 (what ai-edge-quantizer offers), or 0: per channel

    precision_class = "int4"  # planner.BYTES_PER_WEIGHT key; a class attribute, not in the report


def _slice_write():
    """The fixed cache's write as litert-torch's dynamic_update_slice (its KV cache's op):
    new (1, heads, T, head_dim) at slots input_pos[0] .. input_pos[0]+T-1."""
    import torch

    from litert_torch.generative.custom_ops.dynamic_update_slice import dynamic_update_slice

    def write(cache: torch.Tensor, new: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        zero = torch.zeros((), dtype=torch.int32)
        start = positions[0].to(torch.int32).reshape(())
        return dynamic_update_slice(cache, new, [zero, zero, start, zero])

    return write


def _named(module):
    """Keyword inputs and a dict out, so the signatures' tensors have readable names."""
    import torch

    names = cache_names(module.n_layers)

    class Named(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.decoder = module

        def forward(self, input_ids, input_pos, **cache):
            out = self.decoder(input_ids, input_pos, *(cache[n] for n in names))
            return {LOGITS: out[0], **dict(zip(names, out[1:]))}

    return Named().eval()


def _sample(module, length: int) -> dict:
    import torch

    return {IDS: torch.zeros((1, length), dtype=torch.int32), POS: torch.arange(length, dtype=torch.int32),
            **dict(zip(cache_names(module.n_layers), module.empty_cache()))}


def export_decoder(model, family, out_dir: Path, prefill_len: int = 128, max_length: int = 512) -> Artifact:
    """Convert with litert-torch (both signatures in one call, so the weights are stored
    once), then check the file on every TFLite runtime at hand."""
    import torch

    from edgeify.runtimes.tflite_runner import hide_tflite_info

    with hide_tflite_info():  # loading the converter prints absl/oneDNN info lines
        import litert_torch

    module = family.decoder_module(model, "fixed", max_length)
    module.write = _slice_write()
    max_length = module.max_length  # clipped to the position table
    prefill_len = max(1, min(prefill_len, max_length))
    # one file per prefill length (a --seq-len each), like the logits-only files
    out = Path(out_dir) / f"decoder.fp32.seq{prefill_len}.max{max_length}.tflite"
    named = _named(module)
    with torch.no_grad(), converter_progress(log.isEnabledFor(logging.DEBUG)):
        edge = (litert_torch.signature(PREFILL, named, sample_kwargs=_sample(module, prefill_len))
                .signature(DECODE, named, sample_kwargs=_sample(module, 1)).convert())
        with written_atomically(out) as tmp:
            edge.export(tmp)
    notes = {"converter": "litert-torch", "signatures": [PREFILL, DECODE], "prefill_len": prefill_len,
             "max_length": max_length, "local_window": module.window,
             "cache": "kv_cache_{k,v}_{layer} in and out, (1, heads, max_length, head_dim)"}
    return _artifact(out, "fp32", None, notes)


def quantize_decoder(fp32: Artifact, family, config, out: Path | None = None) -> Artifact:
    """Weight quantization of a decoder file (dynamic: no calibration data, which a
    two-signature file with its caches would make awkward)."""
    handler = handler_for(HANDLERS, config, "TFLite decoder handler")
    precision = PRECISIONS[type(config)]
    out = out or fp32.path.with_name(fp32.path.name.replace(".fp32.", f".{_file_tag(config)}."))
    notes = handler(fp32.path, family, config, out)
    return _artifact(out, precision, config, {**_kept(fp32.notes), **notes})


def _tied_scopes(path: Path) -> tuple[list[str], list[str]]:
    """Quantizer scopes (exact regexes) of the EMBEDDING_LOOKUPs whose table is also a
    FULLY_CONNECTED weight (tied embeddings), and of those FULLY_CONNECTEDs.

    A constant whose readers are quantized differently is duplicated by ai-edge-quantizer,
    once per signature: a float table for the lookup plus an int8 one for the lm_head in
    each of prefill and decode, four copies: GPT-Neo-125M's int8 decoder was 478 MB (fp32:
    501 MB). Quantized alike, the readers share one int8 copy: 130 MB."""
    import re

    from edgeify.runtimes.tflite_file import flatbuffer

    schema, model = flatbuffer(path)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    readers: dict[str, dict[int, list[str]]] = {"EMBEDDING_LOOKUP": {}, "FULLY_CONNECTED": {}}
    for g in range(model.SubgraphsLength()):
        sg = model.Subgraphs(g)
        for j in range(sg.OperatorsLength()):
            op = sg.Operators(j)
            code = model.OperatorCodes(op.OpcodeIndex())
            kind = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
            if kind in readers and op.InputsLength() > 1:
                buffer = sg.Tensors(op.Inputs(1)).Buffer()  # the table / the weights
                outs = [sg.Tensors(op.Outputs(k)).Name().decode() for k in range(op.OutputsLength())]
                readers[kind].setdefault(buffer, []).append("^" + re.escape(";".join(outs) + ";") + "$")
    tied = readers["EMBEDDING_LOOKUP"].keys() & readers["FULLY_CONNECTED"].keys()
    return ([s for b in tied for s in readers["EMBEDDING_LOOKUP"][b]],
            [s for b in tied for s in readers["FULLY_CONNECTED"][b]])


def _dynamic_int8(src: Path, family, config: DynamicInt8, out: Path) -> dict:
    from ai_edge_quantizer import qtyping

    ops = family_ops(family, config.ops)
    lookups, _ = _tied_scopes(src) if "FULLY_CONNECTED" in ops else ([], [])
    granularity = qtyping.QuantGranularity[config.granularity]

    def add(m):
        for op in ops:
            m.add_dynamic_config(regex=".*", operation_name=qtyping.TFLOperationName[op], num_bits=8,
                                 granularity=granularity)
        for scope in lookups:  # the lm_head's int8 weights are the table: one copy
            m.add_dynamic_config(regex=scope, operation_name=qtyping.TFLOperationName.EMBEDDING_LOOKUP,
                                 num_bits=8, granularity=granularity)
    quantize_file(src, out, recipe(add))
    return {"int8_ops": ops, "tied_table_int8": bool(lookups)}


def _dynamic_int4(src: Path, family, config: DynamicInt4, out: Path) -> dict:
    from ai_edge_quantizer import qtyping

    granularity = f"BLOCKWISE_{config.block_size}" if config.block_size else "CHANNELWISE"
    if granularity not in qtyping.QuantGranularity.__members__:
        offered = sorted(int(g.split("_")[1]) for g in qtyping.QuantGranularity.__members__ if g.startswith("BLOCKWISE_"))
        raise UsageError(f"int4 block size {config.block_size}; ai-edge-quantizer offers {offered} (or 0: per channel)")
    lookups, heads = _tied_scopes(src)
    per_tensor = qtyping.QuantGranularity.TENSORWISE

    def add(m):
        m.add_dynamic_config(regex=".*", operation_name=qtyping.TFLOperationName.FULLY_CONNECTED, num_bits=4,
                             granularity=qtyping.QuantGranularity[granularity])
        for scope in heads:  # later configs win in a recipe
            m.add_dynamic_config(regex=scope, operation_name=qtyping.TFLOperationName.FULLY_CONNECTED,
                                 num_bits=8, granularity=per_tensor)
        for scope in lookups:
            m.add_dynamic_config(regex=scope, operation_name=qtyping.TFLOperationName.EMBEDDING_LOOKUP,
                                 num_bits=8, granularity=per_tensor)
    quantize_file(src, out, recipe(add))
    return {"int4_ops": ["FULLY_CONNECTED"], "int4_granularity": granularity.lower(),
            "tied_table_int8": bool(lookups)}


HANDLERS = {DynamicInt8: _dynamic_int8, DynamicInt4: _dynamic_int4}
PRECISIONS = {DynamicInt8: "int8-dynamic", DynamicInt4: "int4-dynamic"}


def _file_tag(config) -> str:
    """The precision in the file name; int4 says its blocks, so two int4 files coexist."""
    if isinstance(config, DynamicInt4):
        return f"int4-dynamic-{f'b{config.block_size}' if config.block_size else 'ch'}"
    return PRECISIONS[type(config)]


def _kept(notes: dict) -> dict:
    return {k: notes[k] for k in ("converter", "signatures", "prefill_len", "max_length", "local_window", "cache")
            if k in notes}


def probe_ids(vocab: int, prefill_len: int, max_length: int) -> np.ndarray:
    """A fixed token sequence: one full prefill chunk, one padded, then decode steps."""
    n = min(prefill_len + max(2, prefill_len // 2) + PROBE_STEPS, max_length)
    return np.random.default_rng(0).integers(0, vocab, (1, n), dtype=np.int64)


def _artifact(path: Path, precision: str, config, notes: dict) -> Artifact:
    """As export/tflite.py's _artifact, for a decoder: the op inventory, and the same token
    sequence (prefill chunks, then decode steps) run on every TFLite runtime at hand."""
    from edgeify.runtimes.tflite_runner import TfliteDecoder, check_decoder_runtimes

    notes = {**notes, **op_notes(path)}
    decoder = TfliteDecoder(path, 1)
    ids = probe_ids(decoder.vocab_size, decoder.prefill_len, decoder.max_length)
    notes = with_runtime_checks(notes, check_decoder_runtimes(path, ids, decoder.run_probe(ids)))
    return Artifact("tflite", precision, path,
                    config_record(config) if config else {"type": "Fp32DecoderExport"}, notes)
