"""One training loop for every compression stage: knowledge distillation through Accelerate.

Accelerate runs the same code on this CPU, on several GPUs or nodes (`accelerate launch
-m edgeify ...`): it places the model, shards the batches and syncs gradients. The loop
checkpoints after every epoch (model, optimizer, scheduler and RNG states, written to a
temp dir and renamed), so an interrupted run resumed with `--resume` loses at most the
epoch it was in and then continues exactly as if it had never stopped.

The loss is the student's distance to the teacher: temperature-softened KL on the logits
(per token for a causal LM), cross-entropy on the true labels where they exist, and MSE
between each student layer's hidden states and those of the teacher layer it maps to.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from edgeify.errors import UsageError

IGNORE = -100


@dataclass(frozen=True)
class TrainSettings:
    """Where and how stages train; the same for every stage of one run."""

    checkpoint_dir: Path | None = None   # None: no checkpoints (and no resume)
    resume: bool = False
    seed: int = 0
    threads: int = 2
    progress: bool = True


@dataclass(frozen=True)
class KDLoss:
    temperature: float = 2.0
    hard_weight: float = 0.5     # weight of cross-entropy on true labels (when known)
    hidden_weight: float = 1.0   # weight of hidden-state MSE (summed over mapped layers)


@dataclass
class TrainData:
    """Padded token rows (numpy, as `calibration.tokenize.Batch` gives them) plus targets.

    labels: class ids (-100 = none, e.g. augmented rows) or None for a causal LM, whose
    targets are its own next tokens.
    """

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))


def process_index() -> int:
    """This process's rank under `accelerate launch` / torchrun (0 when run plainly)."""
    return int(os.environ.get("RANK", "0"))


def fingerprint(*parts: Any) -> str:
    """A short stable hash of what a checkpoint was made from (configs, shapes, data)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def batch_rows(data: TrainData, idx: np.ndarray, device) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Rows `idx`, cut to the longest real sequence among them (tweets pad to 128, use ~40)."""
    mask = data.inputs.get("attention_mask")
    width = int(mask[idx].sum(1).max()) if mask is not None else next(iter(data.inputs.values())).shape[1]
    feeds = {k: torch.from_numpy(v[idx, :width]).to(device) for k, v in data.inputs.items()}
    labels = None if data.labels is None else torch.from_numpy(data.labels[idx]).to(device)
    return feeds, labels


def kd_loss(student_out, teacher_out, labels, feeds, layer_map: Sequence[tuple[int, int]],
            loss: KDLoss, causal: bool, teacher_dims: torch.Tensor | None = None) -> torch.Tensor:
    """teacher_dims: the hidden dims a narrower student kept (compress/width.py); its hidden
    states are compared with the teacher's on those dims."""
    t = loss.temperature
    s_logits, t_logits = student_out.logits, teacher_out.logits
    mask = feeds.get("attention_mask")
    if causal:
        # next-token distributions at every real position
        s_logits, t_logits = s_logits[:, :-1], t_logits[:, :-1]
        keep = (mask[:, 1:] > 0) if mask is not None else torch.ones(s_logits.shape[:2], dtype=torch.bool,
                                                                     device=s_logits.device)
        s_logits, t_logits = s_logits[keep], t_logits[keep]
    total = F.kl_div(F.log_softmax(s_logits / t, -1), F.log_softmax(t_logits / t, -1),
                     reduction="batchmean", log_target=True) * t * t
    if loss.hard_weight:
        if causal:
            targets = feeds["input_ids"][:, 1:][keep]
            total = total + loss.hard_weight * F.cross_entropy(s_logits, targets)
        elif labels is not None and bool((labels != IGNORE).any()):
            total = total + loss.hard_weight * F.cross_entropy(student_out.logits, labels, ignore_index=IGNORE)
    if loss.hidden_weight and layer_map:
        weights = mask.unsqueeze(-1).float() if mask is not None else None
        for s_layer, t_layer in layer_map:
            hs, ht = student_out.hidden_states[s_layer], teacher_out.hidden_states[t_layer]
            if teacher_dims is not None:
                ht = ht.index_select(-1, teacher_dims)
            err = (hs - ht) ** 2
            if weights is not None:
                err = (err * weights).sum() / (weights.sum() * err.shape[-1])
            else:
                err = err.mean()
            total = total + loss.hidden_weight * err / len(layer_map)
    return total


def _latest(ckpt: Path, fp: str) -> tuple[int, Path] | None:
    state = ckpt / "progress.json"
    if not state.exists():
        return None
    info = json.loads(state.read_text())
    if info.get("fingerprint") != fp:
        raise UsageError(f"--resume: the checkpoint in {ckpt} was made by a different run "
                         f"(settings, model or data differ); remove it or run without --resume")
    return info["epoch"], ckpt / info["dir"]


def _save_checkpoint(accelerator, ckpt: Path, epoch: int, fp: str) -> None:
    """Write epoch N's state beside the old one, then switch progress.json to it atomically."""
    partial, final = ckpt / f".epoch-{epoch}.partial", ckpt / f"epoch-{epoch}"
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))  # every process writes its own RNG state
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        tmp = ckpt / ".progress.json.tmp"
        tmp.write_text(json.dumps({"epoch": epoch, "dir": final.name, "fingerprint": fp}))
        os.replace(tmp, ckpt / "progress.json")
        for old in ckpt.glob("epoch-*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def distill_train(student, teacher, data: TrainData, *, layer_map: Sequence[tuple[int, int]], causal: bool,
                  epochs: int, lr: float, batch_size: int, loss: KDLoss, settings: TrainSettings,
                  name: str, fp: str, on_epoch_end: Callable[[int], None] | None = None,
                  teacher_dims: Sequence[int] | None = None) -> dict:
    """Train `student` (in place) to match `teacher`; returns what happened, for the report."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    torch.set_num_threads(settings.threads)
    set_seed(settings.seed)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    dims = torch.tensor(teacher_dims, dtype=torch.long) if teacher_dims is not None else None
    steps_per_epoch = max(1, len(data) // (batch_size * accelerator.num_processes))
    total = steps_per_epoch * epochs
    warm = max(1, total // 10)
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    wrapped, optimizer, scheduler = accelerator.prepare(student, optimizer, scheduler)
    teacher = teacher.to(accelerator.device).eval()

    start, ckpt = 0, settings.checkpoint_dir
    if ckpt is not None:
        ckpt = ckpt / name
        found = _latest(ckpt, fp) if settings.resume else None
        if found:
            start, path = found
            accelerator.load_state(str(path))
        elif ckpt.exists() and accelerator.is_main_process:
            shutil.rmtree(ckpt, ignore_errors=True)  # a fresh run: an old checkpoint is not ours to continue
        accelerator.wait_for_everyone()
        ckpt.mkdir(parents=True, exist_ok=True)

    rank, world = accelerator.process_index, accelerator.num_processes
    history = []
    bar = tqdm(total=total, initial=start * steps_per_epoch, desc=name, unit="step", leave=False,
               mininterval=1.0, disable=not settings.progress or not accelerator.is_main_process)
    for epoch in range(start, epochs):
        wrapped.train()
        # the order of epoch N depends on the seed and N only: a resumed run sees the same batches
        order = np.random.default_rng([settings.seed, epoch]).permutation(len(data))
        running, count = 0.0, 0
        for step in range(steps_per_epoch):
            rows = order[(step * world + rank) * batch_size:(step * world + rank + 1) * batch_size]
            feeds, labels = batch_rows(data, rows, accelerator.device)
            with torch.no_grad():
                t_out = teacher(**feeds, output_hidden_states=True)
            s_out = wrapped(**feeds, output_hidden_states=True)
            value = kd_loss(s_out, t_out, labels, feeds, layer_map, loss, causal,
                            None if dims is None else dims.to(accelerator.device))
            accelerator.backward(value)
            accelerator.clip_grad_norm_(wrapped.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            running += value.item()
            count += 1
            bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{running / count:.3f}", refresh=False)
            bar.update(1)
        history.append(round(running / max(1, count), 4))
        if ckpt is not None:
            _save_checkpoint(accelerator, ckpt, epoch + 1, fp)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)
    bar.close()
    # back where the rest of edgeify (export, evaluation) expects them
    student.cpu().eval()
    teacher.cpu()
    return {"epochs": epochs, "resumed_from_epoch": start, "steps_per_epoch": steps_per_epoch,
            "train_rows": len(data), "epoch_loss": history, "processes": world,
            "loss": {"temperature": loss.temperature, "hard_weight": loss.hard_weight,
                     "hidden_weight": loss.hidden_weight}}


def evenly_spaced(n_from: int, n_to: int) -> list[int]:
    """n_to of n_from layers, evenly spaced and ending with the last one."""
    if not 1 <= n_to <= n_from:
        raise UsageError(f"a student needs between 1 and {n_from} layers, got {n_to}")
    return [math.ceil((j + 1) * n_from / n_to) - 1 for j in range(n_to)]
