"""Run the stages for one model and one target. Thin: no format logic lives here.

Everything is written into a temporary sibling of the output directory and renamed into
place at the end, so a failure or Ctrl-C leaves no half-written output behind.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from edgeify import compress as compress_mod, export, report as report_mod, staging, targets
from edgeify.build import build_format, eval_context_for, formats_for, is_decoder_run, lengths_for, make_plan
from edgeify.calibration.datasets import prepare_for, read_data
from edgeify.errors import UsageError
from edgeify.evaluate import evaluate, metric_delta, metric_drop, parity, scorer
from edgeify import families
from edgeify.families import CAUSAL_LM, loader
from edgeify.runtimes.torch_runner import TorchRunner
from edgeify.selection import choose, plan_refusal
from edgeify.targets import device_bench, local, projection, remote

log = logging.getLogger(__name__)
DEFAULT_BUDGET = 1.0


@dataclass(frozen=True)
class RunConfig:
    model: str
    int8: bool = False
    formats: tuple[str, ...] = ()  # () = the target's default; ("all",) = all it can run
    target: str = "host"
    data: str | None = None  # the source of every set not given below (a file or hub:...)
    eval_data: str | None = None
    calibration_data: str | None = None
    train_data: str | None = None  # compression's training rows [default: the calibration source]
    text_column: str | None = None
    label_column: str | None = None
    n_calibration: int = 128
    n_eval: int | None = None
    seq_len: int = 128  # every model is evaluated and timed at this length
    # Further lengths for formats with static shapes (TFLite: one file per length), each
    # evaluated and timed at its own length beside PyTorch at that length.
    extra_seq_lens: tuple[int, ...] = ()
    out_dir: str | None = None
    force: bool = False
    # Accuracy points (classification) or % perplexity (LM) an int8 artifact may lose.
    # None: select within DEFAULT_BUDGET; given: formats with an accuracy-controlled
    # quantizer (OpenVINO) also run it with this bound.
    max_accuracy_drop: float | None = None
    max_memory_mb: float | None = None  # refuse artifacts whose weights + runtime need more
    # time (and evaluate) the artifacts on the device itself over SSH: user@host[:port]
    device: str | None = None
    device_python: str = "python3"
    device_key: str | None = None
    device_known_hosts: str | None = None  # [default: ssh's own; unknown hosts are added]
    seed: int = 0
    # compression stages before export (compress.Distill / Prune / TrimVocab configs), run
    # in compress.ORDER on up to n_train rows that are neither evaluated nor calibrated on
    compress: tuple = ()
    n_train: int = 10000
    resume: bool = False  # continue interrupted compression from its epoch checkpoints
    eval_batch_size: int = 16
    bench_seconds: float = 6.0  # timing budget per artifact, split over the rounds
    bench_rounds: int = 3
    # causal LMs: tokens a cached decoder holds (TFLite allocates them up front; default
    # 512 there, the model's position limit elsewhere), and the generation timed per model
    max_length: int | None = None
    # causal LMs: preceding tokens each evaluation window is given, unscored (sliding-window
    # perplexity); None = --seq-len, cut to what the model and its caches hold
    eval_context: int | None = None
    generate_prompt: int = 64
    generate_tokens: int = 32


def _entry(fmt: str, precision: str, path: Path, size: int, result, bench: dict, root: Path, seq_len: int,
           baseline_result=None, baseline_bench=None, config=None, notes=None, exported_result=None) -> dict:
    entry = {
        "format": fmt, "precision": precision, "path": str(path.relative_to(root)), "seq_len": seq_len,
        "size_bytes": size, "metric": result.as_dict(),
        "latency_ms": {"p50": bench["p50"], "p90": bench["p90"], "mean": bench["mean"],
                       "runs": bench["runs"], "rounds_p50": bench.get("rounds_p50")},
        "peak_rss_mb": bench["peak_rss_mb"], "runtime": bench["runtime"],
        **({"generation": bench["generation"]} if bench.get("generation") else {}),
        "executed_precision": bench["precision"], "threads": bench["threads"],
        # True only when timed on the target device itself (here: host and its ISA caps)
        "measured": bench.get("on_target", True),
    }
    if baseline_result is not None:
        entry["metric_delta"] = round(metric_delta(result.value, baseline_result.value, result.metric), 4)
        # parity is with the PyTorch model that was exported (after compression, if any)
        entry["parity"] = parity(result, exported_result) if exported_result is not None else None
        entry["speedup_vs_baseline"] = round(baseline_bench["p50"] / bench["p50"], 3)
    if config is not None:
        entry["config"] = config
    if notes:
        entry["notes"] = notes
    return entry


def _weights_size(model_dir: Path) -> int:
    return (sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
            or sum(p.stat().st_size for p in model_dir.glob("*.bin")))


def _train_settings(config: RunConfig, final: Path, threads: int, progress: bool = True):
    return compress_mod.TrainSettings(checkpoint_dir=staging.checkpoint_dir(final), resume=config.resume,
                                      seed=config.seed, threads=threads, progress=progress)


def _stage_data(data, examples) -> "compress_mod.StageData":
    return compress_mod.StageData(compress_mod.TrainData(data.training.inputs, data.training.labels),
                                  examples.texts())


def _compress(loaded, family, examples, data, config: RunConfig, threads: int, final: Path,
              out: Path, context: int, log_fn) -> tuple:
    """Run the compression stages; save and evaluate each stage's model.

    Returns [(stage dir, its data)] to time, report rows (no timings yet), the last stage,
    its data and its evaluation result.
    """
    stage_data = _stage_data(data, examples)
    settings = _train_settings(config, final, threads)
    log_fn(f"[3/5] compressing: {' -> '.join(c.name for c in config.compress)} "
           f"on {len(data.training)} training rows")
    try:
        stages = compress_mod.run_stages(loaded.model, loaded.tokenizer, family, config.compress, stage_data,
                                         settings, log_fn)
    except KeyboardInterrupt:
        if settings.checkpoint_dir.exists():
            log_fn(f"\ninterrupted: training checkpoints are kept in {settings.checkpoint_dir}; "
                   "run the same command with --resume to continue from the last finished epoch")
        raise
    timed, rows = [], []
    for i, stage in enumerate(stages, 1):
        path = out / "compress" / f"{i}-{stage.name}"
        stage.model.save_pretrained(path)
        stage.tokenizer.save_pretrained(path)
        stage_prepared = data if stage.tokenizer is loaded.tokenizer else prepare_for(
            family, stage.tokenizer, stage.model.config.id2label, examples, config, config.seq_len, context)
        result = evaluate(TorchRunner(stage.model, threads, family=family), stage_prepared.evaluation,
                          family.task, config.eval_batch_size, desc=f"pytorch {stage.name}")
        timed.append((path, stage_prepared))
        rows.append({"stage": stage.name, "config": compress_mod.describe(stage.config),
                     "path": str(path.relative_to(out)), "params": stage.info["after"]["params"],
                     "embedding_params": stage.info["after"]["embedding_params"],
                     "size_bytes": _weights_size(path),
                     "metric": result.as_dict(), "info": stage.info})
    return timed, rows, stages[-1], timed[-1][1], result


def _check_before_loading(config: RunConfig, backends, log_fn) -> tuple:
    """Every check that needs no model, before one is loaded or built: a typo must not cost
    a download or a starter build first. Returns the output path, the --device, and the
    user's data sources (None when they fall back to the model's default, read once it is loaded)."""
    bad = [n for n in (config.seq_len, *config.extra_seq_lens) if n < 8]
    if bad:
        raise UsageError(f"--seq-len must be at least 8, got {bad[0]}")
    final = staging.check_out_dir(config, log_fn)
    device = (remote.Device.parse(config.device, python=config.device_python, key=config.device_key,
                                  known_hosts=config.device_known_hosts)
              if config.device else None)  # a malformed --device fails before any work
    family, model_config, source = loader.peek_config(config.model)
    longest = max((config.seq_len, *config.extra_seq_lens))
    limit = families.position_limit(model_config)
    if limit and longest > limit:
        raise UsageError(f"--seq-len {longest} is longer than the {limit} positions {config.model} has "
                         f"(its config, {source}); accepted: 8 to {limit}")
    if config.max_length and family.cached_decoder and config.max_length < longest:
        raise UsageError(f"--max-length {config.max_length} is shorter than --seq-len {longest}: the "
                         "decoders are evaluated on windows of --seq-len tokens, which must fit the cache")
    return final, device, read_data(family, config, default=None, static_int8=_static_int8(config, family, backends))


def _static_int8(config: RunConfig, family, backends) -> bool:
    """Whether a quantizer that needs calibration runs (cached decoders' int8 is weight-only)."""
    return config.int8 and any(not is_decoder_run(b, family) for b in backends)


def run(config: RunConfig, log_fn: Callable[[str], None] = print) -> dict:
    target = targets.get(config.target)
    # a device we cannot time from here is run with this host's threads, and says so
    threads = target.threads if target.measured else targets.get("host").threads
    backends = [export.get_backend(f) for f in formats_for(config.formats, target)]
    final, device, examples = _check_before_loading(config, backends, log_fn)

    log_fn(f"[1/5] loading model {config.model}")
    loaded = loader.resolve(config.model, log_fn=log_fn)
    family = loaded.family
    log_fn(f"      {family.name} ({family.task}), {loaded.params:,} parameters, source: {loaded.source}")
    plan = make_plan(config, family, loaded.params)
    for line in plan.lines():
        log_fn("      " + line)

    log_fn("[2/5] reading data")
    if examples is None:
        examples = read_data(family, config, default="synthetic" if loaded.source == "starter" else family.default_data,
                             static_int8=_static_int8(config, family, backends))
    lengths = lengths_for(config, backends, log_fn)
    contexts = {n: eval_context_for(config, family, loaded.model.config, backends, n) for n in lengths}
    datas = {n: prepare_for(family, loaded.tokenizer, loaded.model.config.id2label, examples, config, n,
                            contexts[n], train=n == config.seq_len) for n in lengths}
    data = datas[config.seq_len]
    if config.compress and data.training is None:
        raise UsageError(f"compression needs training rows beyond the {len(data.evaluation)} evaluated "
                         f"and {len(data.calibration)} calibration ones; {data.description} has none left "
                         "(give more data, or a smaller --n-eval / --n-calibration)")
    for line in data.log_lines():
        log_fn("      " + line)
    if config.compress and compress_mod.process_index() > 0:
        # Another process of a multi-process `accelerate launch`: it trains beside process 0
        # (gradients are synced inside the stages) and leaves saving, evaluation, export and
        # the report to process 0.
        compress_mod.run_stages(loaded.model, loaded.tokenizer, family, config.compress, _stage_data(data, examples),
                                _train_settings(config, final, threads, progress=False), log_fn=lambda *_: None)
        return {}
    with staging.Staging(final) as out:
        log_fn("[3/5] PyTorch fp32 baseline: evaluate")
        base_dir = out / "pytorch"
        loaded.model.save_pretrained(base_dir)
        loaded.tokenizer.save_pretrained(base_dir)
        if loaded.starter:
            (base_dir / "starter.json").write_text(json.dumps(loaded.starter, indent=2))
        torch_runner = TorchRunner(loaded.model, threads, family=family)
        base_results = {n: evaluate(torch_runner, datas[n].evaluation, family.task, config.eval_batch_size,
                                    desc=f"pytorch fp32 seq {n}" if len(lengths) > 1 else "pytorch fp32")
                        for n in lengths}
        base_result = base_results[config.seq_len]
        base_size = _weights_size(base_dir)
        # what gets exported: the model after the compression stages, with its tokenizer's ids
        model, art_datas, stage_timed, stage_rows = loaded.model, datas, [], []
        exported_results = base_results
        if config.compress:
            stage_timed, stage_rows, last, last_data, last_result = _compress(
                loaded, family, examples, data, config, threads, final, out, contexts[config.seq_len], log_fn)
            # exported artifacts are checked against the compressed model, at its length only
            exported_results = {config.seq_len: last_result}
            model = last.model
            if last.tokenizer is not loaded.tokenizer:  # --trim-vocab: same text, new ids
                art_datas = {n: last_data if n == config.seq_len else prepare_for(
                    family, last.tokenizer, model.config.id2label, examples, config, n, contexts[n]) for n in lengths}

        # For accuracy-controlled quantization: the same evaluation set and metric as the
        # report, as a higher-is-better score (see evaluate.scorer).
        validation = export.Validation(
            n_items=len(art_datas[config.seq_len].evaluation),
            score=scorer(art_datas[config.seq_len].evaluation, family.task, base_result.value,
                         config.eval_batch_size),
            unit="accuracy points" if family.metric == "accuracy" else "% perplexity")
        evaluated = []  # (artifact, result, seq_len) per format and length, in order
        for backend in backends:
            fmt_dir = out / backend.name
            fmt_dir.mkdir()
            for n in (lengths if backend.static_shapes else (config.seq_len,)):
                evaluated += [(art, result, n) for art, result in build_format(
                    backend, model, family, art_datas[n], config, threads, fmt_dir,
                    validation if n == config.seq_len else None, log_fn)]

        log_fn(f"[5/5] timing {len(evaluated) + len(lengths) + len(stage_timed)} models at batch 1, "
               f"seq {'/'.join(map(str, lengths))}, {threads} threads, {config.bench_rounds} interleaved rounds"
               + ("" if target.measured else f" on this host (not on {target.name})"))
        from tqdm.auto import tqdm

        runs = ([(base_dir, datas[n]) for n in lengths] + [(path, d) for path, d in stage_timed]
                + [(art.path, art_datas[n]) for art, _, n in evaluated])
        with tqdm(total=len(runs) * config.bench_rounds, desc="timing", unit="run",
                  leave=False, mininterval=1.0) as bar:
            timings = local.measure_interleaved(
                [path for path, _ in runs], [d.evaluation.rows(0, 1) for _, d in runs],
                threads, rounds=config.bench_rounds,
                seconds_per_round=config.bench_seconds / max(1, config.bench_rounds), progress=bar,
                env=target.env, generate=({"prompt_tokens": min(config.generate_prompt, config.seq_len),
                                           "new_tokens": config.generate_tokens}
                                          if family.task == CAUSAL_LM else None))
        timing = timings.summary  # interference seen while timing (targets/local.py)
        for t in timings:
            t["on_target"] = target.measured
        base_benches = dict(zip(lengths, timings))
        stage_benches, timings = timings[len(lengths):len(lengths) + len(stage_timed)], \
            timings[len(lengths) + len(stage_timed):]
        for row, bench in zip(stage_rows, stage_benches):
            row["latency_ms"] = {"p50": bench["p50"], "p90": bench["p90"], "rounds_p50": bench.get("rounds_p50")}
            if bench.get("generation"):
                row["generation"] = bench["generation"]
            row["speedup_vs_baseline"] = round(base_benches[config.seq_len]["p50"] / bench["p50"], 3)
            row["metric_delta"] = round(metric_delta(row["metric"]["value"], base_result.value, base_result.metric), 4)
        baselines = {n: _entry("pytorch", "fp32", base_dir, base_size, base_results[n], base_benches[n], out, n)
                     for n in lengths}
        entries = [_entry(art.format, art.precision, art.path, art.size_bytes, result, bench, out, n,
                          base_results[n], base_benches[n], art.config, art.notes, exported_results.get(n))
                   for (art, result, n), bench in zip(evaluated, timings)]
        if device is not None:
            log_fn(f"      timing {len(entries)} artifacts on {device} with {target.threads} threads")
            on_device = device_bench.measure_on_device(
                device, [art.path for art, _, _ in evaluated], [art_datas[n].evaluation.rows(0, 1) for _, _, n in evaluated],
                [art_datas[n].evaluation for _, _, n in evaluated], family.task, target.threads,
                config.bench_seconds / max(1, config.bench_rounds), log_fn)
            for entry, result in zip(entries, on_device):
                entry["device"] = result
        for entry in entries:
            reason = target.refusal(entry["format"], entry.get("notes", {})) or plan_refusal(plan, entry)
            if reason:
                entry["refused"] = reason
                log_fn(f"      {target.name} refuses {entry['path']}: {reason}")
        budget = DEFAULT_BUDGET if config.max_accuracy_drop is None else config.max_accuracy_drop
        # chosen at the main length (a shorter file is always faster, not better), among
        # the files the target takes
        selection = (choose([e for e in entries if e["seq_len"] == config.seq_len and "refused" not in e],
                            budget, base_result.metric) if config.int8 else None)
        if not target.measured and target.peak_gops:
            # a device not timed from here: its latency estimated from these measurements
            projection.estimate_entries(entries, out, target, threads, log_fn)
            choice = projection.choose_for_target([e for e in entries if e["seq_len"] == config.seq_len],
                                                  budget, base_result.metric, metric_drop)
            if choice is not None:
                log_fn(f"      for {target.name}: {choice['chosen']} — {choice['reason']}")
                selection = {**(selection or {"chosen": choice["chosen"], "reason": choice["reason"],
                                              "budget": budget}), "target_choice": choice}

        versions = report_mod.versions()
        rep = {
            "edgeify_version": versions.get("edgeify", "unknown"),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "config": {**asdict(config), "compress": [compress_mod.describe(c) for c in config.compress]},
            "model": {"id": loaded.model_id, "family": family.name, "task": family.task,
                      "params": loaded.params, "source": loaded.source,
                      **({"starter": loaded.starter} if loaded.starter else {})},
            "data": {**data.report(), "seq_len": config.seq_len,
                     "seq_lens": list(lengths),
                     **({"eval_context": contexts[config.seq_len]} if family.task == CAUSAL_LM else {}),
                     **({"labels": data.labels} if data.labels else {})},
            "target": {"name": target.name, "description": target.description,
                       "threads": target.threads, "measured": target.measured, "timing_threads": threads,
                       "env": dict(target.env),
                       "cpu": targets.cpu_description()},
            "baseline": baselines[config.seq_len],
            # PyTorch at the other --seq-len values, the reference for artifacts of that length
            "other_baselines": [baselines[n] for n in lengths[1:]],
            # each compression stage's PyTorch model: what every stage bought
            "stages": stage_rows,
            "timing": timing,
            "artifacts": entries,
            **({"device": device_bench.summary(device, on_device)} if device is not None else {}),
            "selection": selection,
            "plan": asdict(plan),
            "versions": versions,
        }
        report_mod.write(rep, out)
    shutil.rmtree(staging.checkpoint_dir(final), ignore_errors=True)  # the run is complete: nothing to resume
    rep["output_dir"] = str(final)
    log_fn("")
    log_fn(report_mod.terminal_table(rep))
    log_fn(f"\nreport: {final / 'report.md'}")
    device_bench.check(rep, final / "report.md")  # --device measured nothing: exit 1, host report kept
    return rep
