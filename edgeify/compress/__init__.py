"""Compression stages: PyTorch model in, smaller PyTorch model out, before any export.

Each stage is a small frozen config (printed in the report, compared, saved) whose type
selects its handler in one registry, as torchao's `quantize_(model, config)` does:

    model, tokenizer, info = compress.apply(model, tokenizer, family, Distill(student_layers=3),
                                            data, settings)

`run_stages` applies several in the order the issue asks for (distill -> prune -> trim)
and, when a checkpoint dir is given, saves every finished stage so `--resume` skips it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgeify.compress.train import KDLoss, TrainData, TrainSettings, fingerprint, process_index

__all__ = ["Distill", "Prune", "TrimVocab", "KDLoss", "TrainData", "TrainSettings", "StageData",
           "Stage", "apply", "run_stages", "process_index", "ORDER"]


@dataclass(frozen=True)
class Distill:
    """A shallower student of the same family, trained to match the teacher."""

    student_layers: int | None = None   # None: half the teacher's layers
    student_hidden: int | None = None   # None: the teacher's width (see compress/width.py)
    epochs: int = 3
    lr: float = 1e-4
    batch_size: int = 32
    augment: int = 1                    # teacher-labelled token-dropout copies per training row
    loss: KDLoss = field(default_factory=KDLoss)
    name = "distill"


@dataclass(frozen=True)
class Prune:
    """Remove `ratio` of the transformer blocks' parameters (heads, FFN neurons, layers)."""

    ratio: float = 0.3
    importance_batches: int = 16        # batches used to measure importance
    epochs: int = 1                     # recovery fine-tuning (KD from the unpruned model)
    lr: float = 5e-5
    batch_size: int = 32
    loss: KDLoss = field(default_factory=KDLoss)
    name = "prune"


@dataclass(frozen=True)
class TrimVocab:
    """Keep only the tokens the user's data (plus special tokens) needs."""

    name = "trim-vocab"


ORDER = (Distill, Prune, TrimVocab)   # the order stages run in, whatever order they are given


@dataclass
class StageData:
    train: TrainData           # rows never evaluated or calibrated on
    texts: list[str]           # every text of the user's data: trimming keeps what they need


@dataclass
class Stage:
    name: str
    config: Any
    model: Any
    tokenizer: Any
    info: dict


_HANDLERS: dict[type, Callable] = {}


def handler(config_type: type) -> Callable:
    def register(fn: Callable) -> Callable:
        _HANDLERS[config_type] = fn
        return fn
    return register


def apply(model, tokenizer, family, config, data: StageData, settings: TrainSettings,
          **kwargs) -> tuple[Any, Any, dict]:
    try:
        fn = _HANDLERS[type(config)]
    except KeyError:
        raise TypeError(f"no compression handler for {type(config).__name__}; "
                        f"known: {', '.join(t.__name__ for t in _HANDLERS)}") from None
    return fn(model, tokenizer, family, config, data, settings, **kwargs)


def describe(config) -> dict:
    return {"stage": config.name, **asdict(config)}


def _param_counts(model) -> dict:
    emb = model.get_input_embeddings().weight.numel()
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    return {"params": total, "embedding_params": emb}


def run_stages(model, tokenizer, family, configs, data: StageData, settings: TrainSettings,
               log_fn: Callable[[str], None] = print) -> list[Stage]:
    """Apply `configs` in ORDER; each stage's output is the next one's input."""
    configs = sorted(configs, key=lambda c: ORDER.index(type(c)))
    ids = next(iter(data.train.inputs.values()))
    stages, fp = [], fingerprint(family.name, model.config.to_dict(), _param_counts(model), settings.seed,
                                 hashlib.sha256(ids.tobytes()).hexdigest(), len(data.texts))
    for i, config in enumerate(configs, 1):
        fp = fingerprint(fp, describe(config))
        saved = settings.checkpoint_dir / f"{i}-{config.name}" if settings.checkpoint_dir else None
        before = _param_counts(model)
        if saved is not None and settings.resume and _finished(saved, fp):
            log_fn(f"      {config.name}: finished in an earlier run, loaded from {saved}")
            model, tokenizer = family.load_model(str(saved)), _load_tokenizer(saved)
            info = json.loads((saved / "edgeify_stage.json").read_text())["info"]
        else:
            log_fn(f"      {config.name}: {describe(config)}")
            t0 = time.perf_counter()
            model, tokenizer, info = apply(model, tokenizer, family, config, data, settings, fingerprint=fp)
            info = {"before": before, "after": _param_counts(model), **info,
                    "seconds": round(time.perf_counter() - t0, 1)}  # the search reports training time
            if saved is not None and process_index() == 0:  # one writer under accelerate launch
                _save_stage(model, tokenizer, saved, fp, info)
        stages.append(Stage(config.name, config, model, tokenizer, info))
    return stages


def _load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def _finished(path: Path, fp: str) -> bool:
    marker = path / "edgeify_stage.json"
    return marker.exists() and json.loads(marker.read_text()).get("fingerprint") == fp


def _save_stage(model, tokenizer, path: Path, fp: str, info: dict) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "edgeify_stage.json").write_text(json.dumps({"fingerprint": fp, "info": info}, default=str))
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


from edgeify.compress import distill, prune, trim_vocab  # noqa: E402,F401  (handler registration)
