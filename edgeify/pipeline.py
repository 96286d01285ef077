"""Run the stages for one model and one target, in order: load, data, baseline, compress,
build, time, select, report. Thin: no format logic lives here, and each stage takes and
returns small dataclasses, so nothing is matched up by its position in a list.

Everything is written into a temporary sibling of the output directory and renamed into
place at the end, so a failure or Ctrl-C leaves no half-written output behind.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgeify import compress, compressing, export, measured, metrics, report as report_mod, staging, targets
from edgeify.build import build_format, eval_context_for, formats_for, lengths_for, make_plan
from edgeify.calibration.datasets import prepare_for, read_data
from edgeify.config import RunConfig  # noqa: F401  (RunConfig: part of this module's API)
from edgeify.errors import UsageError
from edgeify.evaluate import evaluate, scorer
from edgeify.families import loader
from edgeify.measured import Baseline, Built
from edgeify.preflight import check_before_loading, static_int8
from edgeify.runtimes.torch_runner import TorchRunner
from edgeify.selection import select
from edgeify.targets import device_bench, local

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Setup:
    """What every stage reads: the run's settings, its target and threads, the formats'
    backends, the output directory and the --device (or None)."""

    config: RunConfig
    target: object
    threads: int
    backends: tuple
    final: Path
    device: object
    log: Callable[[str], None]


@dataclass(frozen=True)
class Data:
    """The run's examples, prepared (tokenized, split) at each length; lengths[0] is --seq-len."""

    examples: object
    lengths: tuple[int, ...]
    contexts: dict
    prepared: dict  # seq_len -> calibration.datasets.Prepared

    @property
    def main(self):
        return self.prepared[self.lengths[0]]


@dataclass(frozen=True)
class Exported:
    """What gets exported: the model after the compression stages (or the model as given),
    the data prepared for its tokenizer, and its evaluation, the reference for parity."""

    model: object
    prepared: dict
    results: dict  # seq_len -> EvalResult (compressed: the main length only)
    stages: tuple = ()  # measured.Stage per compression stage


def _setup(config: RunConfig, log_fn) -> tuple[Setup, object]:
    target = targets.get(config.target)
    # a device we cannot time from here is run with this host's threads, and says so
    threads = target.threads if target.measured else targets.get("host").threads
    backends = tuple(export.get_backend(f) for f in formats_for(config.formats, target))
    final, device, examples = check_before_loading(config, backends, log_fn)
    return Setup(config, target, threads, backends, final, device, log_fn), examples


def _load(s: Setup):
    s.log(f"[1/5] loading model {s.config.model}")
    loaded = loader.resolve(s.config.model, log_fn=s.log)
    s.log(f"      {loaded.family.name} ({loaded.family.task}), {loaded.params:,} parameters, "
          f"source: {loaded.source}")
    plan = make_plan(s.config, loaded.family, loaded.params)
    for line in plan.lines():
        s.log("      " + line)
    return loaded, plan


def _read_data(s: Setup, loaded, examples) -> Data:
    s.log("[2/5] reading data")
    config, family = s.config, loaded.family
    if examples is None:
        examples = read_data(family, config, default="synthetic" if loaded.source == "starter" else family.default_data,
                             static_int8=static_int8(config, family, s.backends))
    lengths = lengths_for(config, s.backends, s.log)
    contexts = {n: eval_context_for(config, family, loaded.model.config, s.backends, n) for n in lengths}
    prepared = {n: prepare_for(family, loaded.tokenizer, loaded.model.config.id2label, examples, config, n,
                               contexts[n], train=n == config.seq_len) for n in lengths}
    data = Data(examples, lengths, contexts, prepared)
    if config.compress and data.main.training is None:
        raise UsageError(f"compression needs training rows beyond the {len(data.main.evaluation)} evaluated "
                         f"and {len(data.main.calibration)} calibration ones; {data.main.description} has none "
                         "left (give more data, or a smaller --n-eval / --n-calibration)")
    for line in data.main.log_lines():
        s.log("      " + line)
    return data


def _baseline(s: Setup, loaded, data: Data, out: Path) -> Baseline:
    s.log("[3/5] PyTorch fp32 baseline: evaluate")
    path = out / "pytorch"
    loaded.model.save_pretrained(path)
    loaded.tokenizer.save_pretrained(path)
    if loaded.starter:
        (path / "starter.json").write_text(json.dumps(loaded.starter, indent=2))
    runner = TorchRunner(loaded.model, s.threads, family=loaded.family)
    return Baseline(path, measured.weights_size(path), {
        n: evaluate(runner, data.prepared[n].evaluation, loaded.family.task, s.config.eval_batch_size,
                    desc=f"pytorch fp32 seq {n}" if len(data.lengths) > 1 else "pytorch fp32")
        for n in data.lengths})


def _compress(s: Setup, loaded, data: Data, baseline: Baseline, out: Path) -> Exported:
    config = s.config
    if not config.compress:
        return Exported(loaded.model, data.prepared, baseline.results)
    stages, last, last_result = compressing.compress_and_evaluate(
        loaded, data.examples, data.main, config, s.threads, s.final, out, data.contexts[config.seq_len], s.log)
    prepared = data.prepared
    if last.tokenizer is not loaded.tokenizer:  # --trim-vocab: same text, new ids
        prepared = {n: stages[-1].data if n == config.seq_len else prepare_for(
            loaded.family, last.tokenizer, last.model.config.id2label, data.examples, config, n, data.contexts[n])
            for n in data.lengths}
    # exported artifacts are checked against the compressed model, at its length only
    return Exported(last.model, prepared, {config.seq_len: last_result}, stages)


def _build(s: Setup, family, exported: Exported, baseline: Baseline, out: Path) -> list[Built]:
    config, main = s.config, exported.prepared[s.config.seq_len]
    # For accuracy-controlled quantization: the same evaluation set and metric as the
    # report, as a higher-is-better score (see evaluate.scorer).
    validation = export.Validation(
        n_items=len(main.evaluation),
        score=scorer(main.evaluation, family.task, baseline.results[config.seq_len].value, config.eval_batch_size),
        unit=metrics.get(family.metric).unit)
    built = []
    for backend in s.backends:
        fmt_dir = out / backend.name
        fmt_dir.mkdir()
        for n in (tuple(exported.prepared) if backend.static_shapes else (config.seq_len,)):
            built += [Built(art, result, n) for art, result in build_format(
                backend, exported.model, family, exported.prepared[n], config, s.threads, fmt_dir,
                validation if n == config.seq_len else None, log_fn=s.log)]
    return built


def _time(s: Setup, family, data: Data, baseline: Baseline, exported: Exported, built: list[Built]):
    """Every model timed in interleaved rounds: {key: bench} and the timing's health, keys
    ("pytorch", seq_len), ("stage", i), ("artifact", i)."""
    config, target = s.config, s.target
    jobs = ([(("pytorch", n), baseline.path, data.prepared[n]) for n in data.lengths]
            + [(("stage", i), st.path, st.data) for i, st in enumerate(exported.stages)]
            + [(("artifact", i), b.artifact.path, exported.prepared[b.seq_len]) for i, b in enumerate(built)])
    s.log(f"[5/5] timing {len(jobs)} models at batch 1, seq {'/'.join(map(str, data.lengths))}, {s.threads} "
          f"threads, {config.bench_rounds} interleaved rounds"
          + ("" if target.measured else f" on this host (not on {target.name})"))
    from tqdm.auto import tqdm

    with tqdm(total=len(jobs) * config.bench_rounds, desc="timing", unit="run", leave=False, mininterval=1.0) as bar:
        timings = local.measure_interleaved(
            [path for _, path, _ in jobs], [d.evaluation.rows(0, 1) for _, _, d in jobs], s.threads,
            rounds=config.bench_rounds, seconds_per_round=config.bench_seconds / max(1, config.bench_rounds),
            progress=bar, env=target.env,
            generate=({"prompt_tokens": min(config.generate_prompt, config.seq_len),
                       "new_tokens": config.generate_tokens} if family.task.causal else None))
    for t in timings:
        t["on_target"] = target.measured
    return {key: t for (key, _, _), t in zip(jobs, timings)}, timings.summary


def _on_device(s: Setup, family, exported: Exported, built: list[Built], entries: list[dict]):
    """--device: each artifact timed (and evaluated) on the device itself over SSH."""
    s.log(f"      timing {len(entries)} artifacts on {s.device} with {s.target.threads} threads")
    evals = [exported.prepared[b.seq_len].evaluation for b in built]
    results = device_bench.measure_on_device(
        s.device, [b.artifact.path for b in built], [e.rows(0, 1) for e in evals], evals, family.task,
        s.target.threads, s.config.bench_seconds / max(1, s.config.bench_rounds), s.log)
    for entry, result in zip(entries, results):
        entry["device"] = result
    return results


def run(config: RunConfig, log_fn: Callable[[str], None] = print) -> dict:
    s, examples = _setup(config, log_fn)
    loaded, plan = _load(s)
    family = loaded.family
    data = _read_data(s, loaded, examples)
    if config.compress and compress.process_index() > 0:
        compressing.train_beside_process_0(loaded, data.main, data.examples, config, s.final, s.threads)
        return {}
    with staging.Staging(s.final) as out:
        baseline = _baseline(s, loaded, data, out)
        exported = _compress(s, loaded, data, baseline, out)
        built = _build(s, family, exported, baseline, out)
        benches, timing = _time(s, family, data, baseline, exported, built)
        base_bench = benches[("pytorch", config.seq_len)]
        for i, stage in enumerate(exported.stages):
            measured.add_stage_timing(stage.row, benches[("stage", i)], base_bench, baseline.results[config.seq_len])
        baselines = {n: measured.baseline_entry(baseline, n, benches[("pytorch", n)], out) for n in data.lengths}
        entries = [measured.artifact_entry(b, benches[("artifact", i)], out, baseline, benches[("pytorch", b.seq_len)],
                                           exported.results.get(b.seq_len)) for i, b in enumerate(built)]
        on_device = _on_device(s, family, exported, built, entries) if s.device is not None else None
        selection = select(s.target, config, plan, entries, out, baseline.results[config.seq_len].metric, s.threads,
                           s.log)
        rep = measured.report_dict(config, loaded, data, s.target, s.threads, baselines, exported.stages, timing,
                                   entries, selection, plan,
                                   device_bench.summary(s.device, on_device) if s.device is not None else None)
        report_mod.write(rep, out)
    shutil.rmtree(staging.checkpoint_dir(s.final), ignore_errors=True)  # the run is complete: nothing to resume
    rep["output_dir"] = str(s.final)
    log_fn("")
    log_fn(report_mod.terminal_table(rep))
    log_fn(f"\nreport: {s.final / 'report.md'}")
    device_bench.check(rep, s.final / "report.md")  # --device measured nothing: exit 1, host report kept
    return rep
