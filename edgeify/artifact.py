"""`edgeify eval` and `edgeify bench`: one artifact, measured on its own."""

from __future__ import annotations

from pathlib import Path

from edgeify import targets
from edgeify.calibration.datasets import ALL_ROWS, load_examples, prepare
from edgeify.errors import EdgeifyError, UsageError
from edgeify.evaluate import evaluate
from edgeify.runtimes import formats, open_runner
from edgeify.targets import local


def _run_model_dir(artifact: Path) -> Path | None:
    """The model directory an artifact came with: itself, or its run's pytorch/ folder."""
    for cand in (artifact, artifact.parent / "pytorch", artifact.parent.parent / "pytorch"):
        if cand.is_dir() and (cand / "config.json").exists():
            return cand
    return None


def _reference_dir(artifact: Path, given: str | None) -> Path:
    """Tokenizer and labels for an artifact: --model-dir, or the run's pytorch/ dir."""
    if given:
        path = Path(given)
        if not path.is_dir():  # else transformers takes it for a hub id
            raise UsageError(f"--model-dir {given}: no such directory; give the folder with the model's "
                             "tokenizer and config (e.g. the run's pytorch/)")
        return path
    found = _run_model_dir(artifact)
    if found is None:
        raise UsageError(f"cannot find the tokenizer for {artifact}; pass --model-dir with the "
                         "model directory (e.g. the run's pytorch/ folder)")
    return found


def check_seq_len(seq_len: int, artifact: Path, *, positions: int | None = None, config_dir: Path | None = None,
                  cache: int | None = None, static: int | None = None, exact: bool = True) -> None:
    """Refuse a --seq-len the artifact cannot take, before anything runs: past a limit it fails
    deep in the runtime (onnxruntime InvalidArgument, torch IndexError, a full cache).
    `static`: a length the file takes exactly (`exact`), or at most (a causal LM's window,
    which preceding context fills up to that length)."""
    if static and exact and seq_len != static:
        raise UsageError(f"--seq-len {seq_len}: {artifact} takes sequences of exactly {static} tokens "
                         f"(a static input shape); use --seq-len {static}")
    if static and not exact and seq_len > static:
        raise UsageError(f"--seq-len {seq_len}: {artifact} takes at most {static} tokens "
                         f"(a static input shape); use --seq-len {static} or less")
    if cache and seq_len > cache:
        raise UsageError(f"--seq-len {seq_len}: {artifact}'s key/value cache holds {cache} tokens; "
                         f"use --seq-len {cache} or less")
    if positions and seq_len > positions:
        raise UsageError(f"--seq-len {seq_len}: the model takes at most {positions} tokens (its position "
                         f"limit in {config_dir / 'config.json'}); use --seq-len {positions} or less")


def eval_artifact(artifact: str | Path, data: str, *, model_dir: str | None = None,
                  text_column: str | None = None, label_column: str | None = None,
                  seq_len: int = 128, n_eval: int | None = None, threads: int | None = None,
                  eval_context: int | None = None) -> dict:
    """Accuracy or perplexity of one artifact on a data file (`edgeify eval`).

    A causal LM's windows get `eval_context` preceding tokens (default seq_len), cut to
    what the artifact takes: its cache, its position limit, a static shape's length.
    """
    from edgeify import families
    from edgeify.families.loader import local_config, local_tokenizer

    artifact = Path(artifact)
    if not artifact.exists():
        raise UsageError(f"artifact not found: {artifact}")
    ref = _reference_dir(artifact, model_dir)
    config = local_config(ref)
    family = families.for_model_type(config.model_type)
    positions = families.position_limit(config)
    check_seq_len(seq_len, artifact, positions=positions, config_dir=ref)  # before any weights load
    runner = open_runner(artifact, threads or targets.get("host").threads)
    decoder = getattr(runner, "decoder", None)
    check_seq_len(seq_len, artifact, cache=decoder.max_length if decoder is not None else None,
                  static=getattr(runner, "seq_len", None), exact=not family.task.causal)
    tokenizer = local_tokenizer(ref)
    examples, desc = load_examples(family, data, synthetic_default=False, n_wanted=0,
                                   text_column=text_column, label_column=label_column)
    context = 0
    if family.task.causal:
        limits = [positions, decoder.max_length if decoder is not None else None,
                  getattr(runner, "seq_len", None)]  # a static-shape file takes exactly its length
        wanted = seq_len if eval_context is None else eval_context
        context = max(0, min([wanted] + [n - seq_len for n in limits if n]))
    # no calibration set: every row (or window) is evaluated, up to --n-eval
    prepared = prepare(family, tokenizer, config.id2label, examples, desc, seq_len=seq_len,
                       n_calibration=0, n_eval=n_eval or ALL_ROWS, context=context)
    result = evaluate(runner, prepared.evaluation, family.task)
    return {"artifact": str(artifact), "data": desc, "n_eval": len(prepared.evaluation), "metric": result.as_dict(),
            "runtime": runner.runtime, **({"eval_context": context} if family.task.causal else {})}


def bench_artifact(artifact: str | Path, *, seq_len: int = 128, batch: int = 1, target: str = "host",
                   threads: int | None = None, seconds: float = 6.0) -> dict:
    """Latency and peak memory of one artifact on random token ids (`edgeify bench`)."""
    import numpy as np

    tgt = targets.get(target)
    fmt = formats.of(artifact)
    if fmt is not None:
        tgt.check_format(fmt.name)
    if fmt is not None and fmt.file_notes is not None and tgt.tflite_runtime and Path(artifact).is_file():
        reason = tgt.refusal(fmt.name, fmt.file_notes(Path(artifact)))
        if reason:
            raise EdgeifyError(f"target {tgt.name!r} refuses {artifact}: {reason}")
    names = _check_bench_shape(Path(artifact), seq_len, batch)
    ids = np.random.default_rng(0).integers(5, 100, size=(batch, seq_len), dtype=np.int64)
    fill = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    feeds = {n: fill.get(n, np.zeros_like(ids)) for n in names}
    host_threads = tgt.threads if tgt.measured else targets.get("host").threads
    result = local.measure(artifact, feeds, threads or host_threads, max_seconds=seconds, env=tgt.env)
    return {"artifact": str(artifact), "target": tgt.name, "measured": tgt.measured, **result}


def _check_bench_shape(artifact: Path, seq_len: int, batch: int) -> tuple[str, ...]:
    """The artifact's input names, once --seq-len and --batch are known to fit its static
    axes, a decoder's cache and, when its model directory is at hand (a run's pytorch/), the
    model's positions: the benchmark child would otherwise fail with the runtime's error.
    A decoder is opened here for its cache length (its files do not all state it)."""
    from edgeify import families
    from edgeify.families.loader import local_config
    from edgeify.runtimes import declared_inputs, is_decoder, open_decoder

    inputs = declared_inputs(artifact)
    shape = next(iter(inputs.values()), None) or ()
    if len(shape) > 0 and shape[0] and batch != shape[0]:
        raise UsageError(f"--batch {batch}: {artifact} takes a batch of exactly {shape[0]} "
                         f"(a static input shape); use --batch {shape[0]}")
    ref = _run_model_dir(artifact)
    cache = open_decoder(artifact, 1).max_length if artifact.is_file() and is_decoder(artifact) else None
    check_seq_len(seq_len, artifact, static=shape[1] if len(shape) > 1 else None, cache=cache, config_dir=ref,
                  positions=families.position_limit(local_config(ref)) if ref is not None else None)
    return tuple(inputs)


def generate_text(artifact: str | Path, prompt: str, sampling_args: dict, *, model_dir: str | None = None,
                  stop: tuple[str, ...] = (), ignore_eos: bool = False, threads: int | None = None,
                  write=print) -> dict:
    """Stream a continuation of `prompt` from a cached decoder (`edgeify generate`).

    Text is written as tokens arrive; a byte-level BPE token can end inside a UTF-8
    character, so text is only written once it decodes cleanly.
    """
    from edgeify.families.loader import local_tokenizer
    from edgeify.generate import Sampling, generate
    from edgeify.runtimes import open_decoder

    artifact = Path(artifact)
    decoder = open_decoder(artifact, threads or targets.get("host").threads)
    tokenizer = local_tokenizer(_reference_dir(artifact, model_dir))
    stop_ids = []
    for text in stop:
        ids = tokenizer.encode(text, add_special_tokens=False)
        if len(ids) != 1:
            raise UsageError(f"--stop {text!r} is {len(ids)} tokens; a stop must be exactly one token")
        stop_ids += ids
    if not stop and not ignore_eos and tokenizer.eos_token_id is not None:
        stop_ids.append(tokenizer.eos_token_id)
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    generated: list[int] = []
    shown = 0

    def on_token(token: int) -> None:
        nonlocal shown
        generated.append(token)
        text = tokenizer.decode(generated, skip_special_tokens=True)
        if not text.endswith("\ufffd") and len(text) > shown:
            write(text[shown:])
            shown = len(text)

    result = generate(decoder, prompt_ids, Sampling(stop_ids=tuple(stop_ids), **sampling_args), on_token)
    return {"artifact": str(artifact), "runtime": decoder.runtime, "precision": decoder.precision,
            "prompt_tokens": len(prompt_ids), "new_tokens": len(result.tokens), "stopped_by": result.stopped_by,
            "prefill_tokens_per_s": round(result.prefill_tokens_per_s, 1),
            "decode_tokens_per_s": round(result.decode_tokens_per_s, 1),
            "text": tokenizer.decode(result.tokens, skip_special_tokens=True)}
