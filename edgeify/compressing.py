"""The compression step of a run: train the stages (compress/) on the run's training rows,
then save and evaluate each stage's PyTorch model, so the report shows what every stage
bought. The last stage's model is what gets exported."""

from __future__ import annotations

from pathlib import Path

from edgeify import compress, staging
from edgeify.calibration.datasets import prepare_for
from edgeify.config import RunConfig
from edgeify.evaluate import evaluate
from edgeify.measured import Stage, weights_size
from edgeify.runtimes.torch_runner import TorchRunner


def train_settings(config: RunConfig, final: Path, threads: int, progress: bool = True) -> compress.TrainSettings:
    return compress.TrainSettings(checkpoint_dir=staging.checkpoint_dir(final), resume=config.resume,
                                  seed=config.seed, threads=threads, progress=progress)


def stage_data(data, examples) -> compress.StageData:
    return compress.StageData(compress.TrainData(data.training.inputs, data.training.labels), examples.texts())


def train_beside_process_0(loaded, data, examples, config: RunConfig, final: Path, threads: int) -> None:
    """Another process of a multi-process `accelerate launch`: it trains beside process 0
    (gradients are synced inside the stages) and leaves saving, evaluation, export and the
    report to process 0."""
    compress.run_stages(loaded.model, loaded.tokenizer, loaded.family, config.compress, stage_data(data, examples),
                        train_settings(config, final, threads, progress=False), log_fn=lambda *_: None)


def compress_and_evaluate(loaded, examples, data, config: RunConfig, threads: int, final: Path, out: Path,
                          context: int, log_fn) -> tuple[tuple[Stage, ...], object, object]:
    """Run the stages; save and evaluate each one's model. Returns the stages (their report
    rows without timings yet), the last stage (model, tokenizer) and its evaluation."""
    family = loaded.family
    settings = train_settings(config, final, threads)
    log_fn(f"[3/5] compressing: {' -> '.join(c.name for c in config.compress)} "
           f"on {len(data.training)} training rows")
    try:
        trained = compress.run_stages(loaded.model, loaded.tokenizer, family, config.compress,
                                      stage_data(data, examples), settings, log_fn)
    except KeyboardInterrupt:
        if settings.checkpoint_dir.exists():
            log_fn(f"\ninterrupted: training checkpoints are kept in {settings.checkpoint_dir}; "
                   "run the same command with --resume to continue from the last finished epoch")
        raise
    stages = []
    for i, stage in enumerate(trained, 1):
        if stage.info.get("warning"):
            log_fn(f"      warning ({stage.name}): {stage.info['warning']}")
        path = out / "compress" / f"{i}-{stage.name}"
        stage.model.save_pretrained(path)
        stage.tokenizer.save_pretrained(path)
        prepared = data if stage.tokenizer is loaded.tokenizer else prepare_for(
            family, stage.tokenizer, stage.model.config.id2label, examples, config, config.seq_len, context)
        result = evaluate(TorchRunner(stage.model, threads, family=family), prepared.evaluation,
                          family.task, config.eval_batch_size, desc=f"pytorch {stage.name}")
        stages.append(Stage(path, prepared, {
            "stage": stage.name, "config": compress.describe(stage.config), "path": str(path.relative_to(out)),
            "params": stage.info["after"]["params"], "embedding_params": stage.info["after"]["embedding_params"],
            "size_bytes": weights_size(path), "metric": result.as_dict(), "info": stage.info}))
    return tuple(stages), trained[-1], result
