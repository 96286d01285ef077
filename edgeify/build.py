"""Build one format for the pipeline: export, quantize and evaluate each artifact.

A causal LM whose family has a cached decoder is exported as that decoder (its key/value
cache in the graph): it computes the same logits on a window from an empty cache, so
perplexity and latency are measured as for any model, and it can also generate.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgeify import export
from edgeify.evaluate import evaluate
from edgeify.runtimes import open_runner

if TYPE_CHECKING:
    from edgeify.pipeline import RunConfig


def formats_for(asked: tuple[str, ...], target) -> tuple[str, ...]:
    if not asked:
        return target.formats[:1]  # each target lists its own format first
    if asked == ("all",):
        return tuple(f for f in export.formats() if f in target.formats)
    return asked


def lengths_for(config: RunConfig, backends, log_fn) -> tuple[int, ...]:
    """The main --seq-len first, then the others, when a static-shape format will use them."""
    extra = tuple(dict.fromkeys(n for n in config.extra_seq_lens if n != config.seq_len))
    if extra and not any(b.static_shapes for b in backends):
        log_fn(f"      note: {', '.join(b.name for b in backends)} take any sequence length; "
               f"--seq-len {', '.join(map(str, extra))} ignored (only static-shape formats, "
               "e.g. tflite, get one file per length)")
        return (config.seq_len,)
    return (config.seq_len, *extra)


def is_decoder_run(backend, family) -> bool:
    """Export the family's cached decoder (a causal LM) rather than a logits-only graph."""
    return bool(family.cached_decoder) and hasattr(backend, "export_decoder")


def build_format(backend, model, family, data, config: RunConfig, threads: int, fmt_dir: Path,
                 validation, log_fn) -> list:
    """Export, quantize and evaluate one format at one sequence length: [(artifact, result)]."""
    seq_len = data.evaluation.inputs[family.onnx_inputs[0]].shape[1]
    seq = f" seq {seq_len}" if backend.static_shapes else ""
    if is_decoder_run(backend, family):
        log_fn(f"[4/5] {backend.name}{seq}: export fp32 cached decoder")
        fp32 = backend.export_decoder(model, family, fmt_dir, max_length=config.max_length, prefill_len=seq_len)
        qconfigs = backend.decoder_configs(family, config.int8)
    else:
        log_fn(f"[4/5] {backend.name}{seq}: export fp32")
        fp32 = backend.export(model, family, data.calibration.inputs, fmt_dir)
        qconfigs = backend.float_configs(family)
        if config.int8:
            # accuracy-controlled modes need the validation set, which is at the main length
            qconfigs += backend.int8_configs(family, config.max_accuracy_drop if validation else None)
    if fp32.notes.get("warning"):
        log_fn(f"      warning: {fp32.notes['warning']}")
    artifacts = [fp32]
    for qconfig in qconfigs:
        log_fn(f"      {backend.name}{seq}: {qconfig}")
        artifacts.append(backend.quantize(fp32, family, data.calibration, qconfig, fmt_dir,
                                          validation=validation))
        if artifacts[-1].notes.get("warning"):
            log_fn(f"      warning: {artifacts[-1].notes['warning']}")
    results = []
    for art in artifacts:
        log_fn(f"      {art.format} {art.precision}{seq}: evaluate")
        results.append((art, evaluate(open_runner(art.path, threads), data.evaluation, family.task,
                                      config.eval_batch_size, desc=f"{art.format} {art.precision}{seq}")))
    for art in artifacts:
        for helper in art.internal.values():
            Path(helper).unlink(missing_ok=True)
    return results
