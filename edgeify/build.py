"""Build one format for the pipeline: export, quantize and evaluate each artifact; and
the plan of what is built for a target (make_plan, `--plan`).

A causal LM whose family has a cached decoder is exported as that decoder (its key/value
cache in the graph): it computes the same logits on a window from an empty cache, so
perplexity and latency are measured as for any model, and it can also generate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from edgeify import export, targets
from edgeify.config import RunConfig
from edgeify.evaluate import evaluate
from edgeify.families import loader
from edgeify.runtimes import open_runner
from edgeify.targets import planner


def formats_for(asked: tuple[str, ...], target) -> tuple[str, ...]:
    """The formats to build: the asked ones (checked, so a bad ask is an error), or the
    target's defaults / all it runs, less those whose backend is not installed here."""
    if asked and asked != ("all",):
        for fmt in asked:
            target.check_format(fmt)
            export.check_installed(export.get_backend(fmt))
        return asked
    wanted = target.default_formats if not asked else tuple(f for f in export.formats() if f in target.formats)
    have = tuple(f for f in wanted if export.is_installed(export.get_backend(f)))
    if not have:  # nothing installed: the first one's install hint is the error
        export.check_installed(export.get_backend(wanted[0]))
    return have


def lengths_for(config: RunConfig, backends, log_fn) -> tuple[int, ...]:
    """The main --seq-len first, then the others, when a static-shape format will use them."""
    extra = tuple(dict.fromkeys(n for n in config.extra_seq_lens if n != config.seq_len))
    if extra and not any(b.static_shapes for b in backends):
        log_fn(f"      note: {', '.join(b.name for b in backends)} take any sequence length; "
               f"--seq-len {', '.join(map(str, extra))} ignored (only static-shape formats, "
               "e.g. tflite, get one file per length)")
        return (config.seq_len,)
    return (config.seq_len, *extra)


def eval_context_for(config: RunConfig, family, model_config, backends, seq_len: int) -> int:
    """Tokens of preceding text each LM evaluation window sees (sliding-window perplexity):
    --eval-context, by default --seq-len (a stride of half the evaluated length, as in
    HF's perplexity guide), cut so context + window fit the model's positions and every
    decoder's cache. 0 for classification."""
    if not family.task.causal:
        return 0
    wanted = seq_len if config.eval_context is None else config.eval_context
    limits = [getattr(model_config, "max_position_embeddings", None), config.max_length]
    if not config.max_length:
        limits += [getattr(b, "decoder_default_length", None) for b in backends if is_decoder_run(b, family)]
    return max(0, min([wanted] + [n - seq_len for n in limits if n]))


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


def _menu(backend, family, int8: bool) -> tuple[str, ...]:
    """The precision classes a format's backend builds for this family (planner.BYTES_PER_WEIGHT)."""
    if is_decoder_run(backend, family):
        classes = {c.precision_class for c in backend.decoder_configs(family, int8)}
    else:
        classes = {c.precision_class for c in backend.float_configs(family)}
    # int8 is asked for by --int8 (a decoder's int8 files are int8 whatever their configs say)
    return tuple(p for p in ("fp32", "fp16", "int8", "int4")
                 if p == "fp32" or (p == "int8" and int8) or (p != "int8" and p in classes))


def make_plan(config: RunConfig, family, params: int) -> planner.Plan:
    """What the run builds for its target, and what it refuses, with the reasons."""
    target = targets.get(config.target)
    all_backends = {f: export.get_backend(f) for f in export.formats()}
    lengths = (config.seq_len, *dict.fromkeys(n for n in config.extra_seq_lens if n != config.seq_len))
    return planner.make_plan(target, targets.get("host"), asked_formats=config.formats,
                             installed={f: export.is_installed(b) for f, b in all_backends.items()},
                             menu={f: _menu(b, family, config.int8) for f, b in all_backends.items()},
                             params=params, seq_lens=lengths,
                             static_formats=tuple(f for f, b in all_backends.items() if b.static_shapes),
                             max_memory_mb=config.max_memory_mb,
                             runtime_defaults=_runtime_defaults(all_backends, family, target.env))


def _runtime_defaults(backends: dict, family, env) -> dict[str, tuple[str, str, str]]:
    """format -> (float type a plain load runs under the target's `env`, why, the type on this
    host as the build sees it) for backends whose runtime picks one (OpenVINO: bf16 on a bf16
    CPU); decoders are built from their own configs and get no extra rows."""
    out = {}
    for fmt, b in backends.items():
        if hasattr(b, "runtime_default") and export.is_installed(b) and not is_decoder_run(b, family):
            native, why = b.runtime_default(dict(env))
            out[fmt] = (native, why, b.runtime_default()[0])
    return out


def plan_only(config: RunConfig, log_fn: Callable[[str], None] = print) -> planner.Plan:
    """`--plan`: the plan from the model's config alone; nothing is loaded, built or written."""
    formats_for(config.formats, targets.get(config.target))  # an impossible --formats is an error here too
    family, params, source = loader.peek_size(config.model)
    log_fn(f"{config.model}: {family.name} ({family.task}), ~{params:,} parameters (config: {source})")
    plan = make_plan(config, family, params)
    for line in plan.lines():
        log_fn(line)
    return plan
