"""Offline starter models: the real architecture at small size, trained here in ~1 minute.

Used only when the hub cannot be reached and nothing is cached. The tokenizer is trained
with `tokenizers` and the model on text edgeify generates itself
(calibration/synthetic.py), so a user with no internet still gets a real model that
exports, quantizes and measures like the real thing. It is not a pretrained model, and
every report and log line says so.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgeify.calibration import synthetic
from edgeify import staging
from edgeify.errors import EdgeifyError
from edgeify.families import Family

STARTER_VERSION = 2
TRAIN_STEPS = 450      # about a minute on 2 idle cores
MAX_TRAIN_SECONDS = 150.0  # past this, training says the machine is busy (it never stops early)
SEED = 0
# Held-out quality floor when a family declares none (Family.starter_floor): classifiers
# must reach chance + this many accuracy points; causal LMs must stay under this fraction
# of the vocabulary size (the perplexity of a uniform guess; word frequencies alone give
# about 0.12 on the starter's text).
DEFAULT_LM_FLOOR = 0.10
DEFAULT_CLASSIFIER_FLOOR = 15.0


def cache_root() -> Path:
    import platformdirs

    return Path(os.environ.get("EDGEIFY_CACHE") or platformdirs.user_cache_dir("edgeify"))


def starter_dir(family: Family) -> Path:
    return cache_root() / "starters" / f"{family.name}-v{STARTER_VERSION}"


def _add_cls_sep(tok) -> None:
    """[CLS] text [SEP], as BERT-style classifiers expect (their head reads position 0)."""
    from tokenizers import processors

    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])


def _train_tokenizer(kind: str, corpus: list[str], vocab_size: int):
    from tokenizers import ByteLevelBPETokenizer, BertWordPieceTokenizer, SentencePieceUnigramTokenizer
    from transformers import PreTrainedTokenizerFast

    if kind == "wordpiece":
        tok = BertWordPieceTokenizer(lowercase=True)
        tok.train_from_iterator(corpus, vocab_size=vocab_size,
                                special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
        _add_cls_sep(tok)
        special = dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                       sep_token="[SEP]", mask_token="[MASK]")
    elif kind == "unigram":
        tok = SentencePieceUnigramTokenizer()
        tok.train_from_iterator(corpus, vocab_size=vocab_size, unk_token="<unk>",
                                special_tokens=["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"])
        _add_cls_sep(tok)
        special = dict(pad_token="<pad>", unk_token="<unk>", cls_token="[CLS]",
                       sep_token="[SEP]", mask_token="[MASK]")
    elif kind == "bytelevel-bpe":
        tok = ByteLevelBPETokenizer()
        tok.train_from_iterator(corpus, vocab_size=vocab_size, special_tokens=["<|endoftext|>"])
        special = dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                       unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}")
    return PreTrainedTokenizerFast(tokenizer_object=tok._tokenizer, model_max_length=512, **special)


def _batches(n: int, batch_size: int, rng: np.random.Generator):
    while True:
        order = rng.permutation(n)
        for i in range(0, n - batch_size + 1, batch_size):
            yield order[i:i + batch_size]


def _train(model, feeds: dict[str, torch.Tensor], labels: torch.Tensor | None,
           steps: int, warn_seconds: float, lr: float, batch_size: int, progress, log) -> int:
    """Train exactly `steps` steps (reproducible, whatever the machine's load); past
    `warn_seconds` say so once and carry on: a starter cut short is a broken starter."""
    torch.manual_seed(SEED)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    rng = np.random.default_rng(SEED)
    n = len(next(iter(feeds.values())))
    model.train()
    start, done, warned = time.perf_counter(), 0, False
    for idx in _batches(n, batch_size, rng):
        if done >= steps:
            break
        if not warned and time.perf_counter() - start > warn_seconds:
            warned = True
            log(f"training is taking longer than {warn_seconds:g}s (machine busy?); "
                f"continuing to the planned {steps} steps")
        for g in opt.param_groups:  # warm-up then cosine decay over the planned steps
            g["lr"] = lr * min(1.0, (done + 1) / 50) * 0.5 * (1 + math.cos(math.pi * done / steps))
        batch = {k: v[idx] for k, v in feeds.items()}
        target = labels[idx] if labels is not None else batch["input_ids"]
        model(**batch, labels=target).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        done += 1
        progress.update(1)
    model.eval()
    return done


@torch.no_grad()
def _held_out_metric(family: Family, model, feeds, labels) -> tuple[str, float]:
    if family.task.causal:
        losses = [model(**{k: v[i:i + 32] for k, v in feeds.items()},
                        labels=feeds["input_ids"][i:i + 32]).loss.item()
                  for i in range(0, len(feeds["input_ids"]), 32)]
        return family.metric, float(math.exp(np.mean(losses)))
    preds = torch.cat([model(**{k: v[i:i + 128] for k, v in feeds.items()}).logits.argmax(-1)
                       for i in range(0, len(labels), 128)])
    return family.metric, float((preds == labels).float().mean().item() * 100)


def quality_floor(family: Family, vocab_size: int) -> tuple[str, float, str]:
    """(metric, floor, how the floor is set) for the family's starter: accuracy must reach
    the floor, perplexity must stay under it."""
    declared = family.starter_floor
    if family.task.causal:
        frac = DEFAULT_LM_FLOOR if declared is None else declared
        return family.metric, frac * vocab_size, f"{frac:g} x the uniform-guess perplexity {vocab_size}"
    points = DEFAULT_CLASSIFIER_FLOOR if declared is None else declared
    chance = 100.0 / len(synthetic.LABELS)
    return family.metric, chance + points, f"chance {chance:.0f}% + {points:g} points"


def _below_floor(family: Family, metric: str, value: float, vocab_size: int) -> str | None:
    """Why a held-out result is not good enough, or None when it clears the floor."""
    want, floor, rule = quality_floor(family, vocab_size)
    if metric != want:
        return f"it records a held-out {metric}, not a {want}"
    if not math.isfinite(value):
        return f"held-out {metric} is {value}"
    side = "below" if family.task.metric.higher_is_better else "above"
    if (value < floor) if side == "below" else (value > floor):
        return f"held-out {metric} {value:.2f} is {side} its floor {floor:.2f} ({rule})"
    return None


def floor_enforced(planned: int) -> bool:
    """The floor holds for every starter a user gets (the default steps, or more). Fewer
    steps (EDGEIFY_STARTER_STEPS, for tests) ask for a weaker starter: checked, said, kept."""
    return planned >= TRAIN_STEPS


def cache_problem(family: Family, path: Path, planned: int) -> str | None:
    """Why the cached starter at `path` must be rebuilt, or None when it can be reused."""
    try:
        info = json.loads((path / "starter.json").read_text())
        held = info["held_out"]
        vocab = int(json.loads((path / "config.json").read_text())["vocab_size"])
        steps, metric, value = int(info["train_steps"]), str(held["name"]), float(held["value"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"its starter.json or config.json is unreadable or incomplete ({type(e).__name__}: {e})"
    if steps < planned:
        return f"it trained {steps} of the {planned} planned steps"
    return _below_floor(family, metric, value, vocab) if floor_enforced(planned) else None


def _starter_data(family: Family, tokenizer, seq_len: int):
    """The starter's config extras and its train / held-out feeds: language-model windows
    of the synthetic paragraphs, or labelled synthetic reviews (labels None for a LM)."""
    cfg_kwargs = dict(family.starter_config, vocab_size=len(tokenizer))
    if family.task.causal:
        cfg_kwargs.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
        text = synthetic.paragraphs(4000, seed=SEED + 2)
        ids = np.asarray(tokenizer("\n".join(text))["input_ids"], dtype=np.int64)
        n = len(ids) // seq_len
        windows = torch.from_numpy(ids[: n * seq_len].reshape(n, seq_len))
        held = max(64, n // 10)
        return cfg_kwargs, {"input_ids": windows[held:]}, None, {"input_ids": windows[:held]}, None
    cfg_kwargs.update(num_labels=len(synthetic.LABELS), pad_token_id=tokenizer.pad_token_id,
                      id2label=dict(enumerate(synthetic.LABELS)),
                      label2id={n: i for i, n in enumerate(synthetic.LABELS)})
    data = synthetic.labelled_reviews(20000, seed=SEED + 3)
    enc = tokenizer([t for t, _ in data], padding="max_length", truncation=True,
                    max_length=seq_len, return_tensors="pt")
    labels = torch.tensor([synthetic.LABELS.index(lab) for _, lab in data])
    held = 2000
    feeds = {k: enc[k] for k in ("input_ids", "attention_mask")}
    return (cfg_kwargs, {k: v[held:] for k, v in feeds.items()}, labels[held:],
            {k: v[:held] for k, v in feeds.items()}, labels[:held])


def _cache(final: Path, model, tokenizer, info: dict) -> None:
    """Save the starter beside `final` and rename it into place, so a cache is whole or absent."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "starter.json").write_text(json.dumps(info, indent=2))
        staging.apply_umask(tmp)  # mkdtemp made it 0700; the cache gets the user's modes
        if final.exists():  # a half-built leftover without starter.json
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build_starter(family: Family, log=print, seconds: float | None = None) -> Path:
    """Build (or reuse) the family's starter model under the user cache dir.

    EDGEIFY_STARTER_STEPS sets the planned steps, always all trained (tests use a few
    dozen); EDGEIFY_STARTER_SECONDS (`seconds`) is when training warns that it is slow.
    A starter below its family's quality floor is not cached: EdgeifyError says why. A
    cached one below the floor, unreadable, or trained fewer steps is rebuilt. (With fewer
    than the default steps the floor is only reported: see floor_enforced.)
    """
    from tqdm.auto import tqdm

    if seconds is None:
        seconds = float(os.environ.get("EDGEIFY_STARTER_SECONDS", MAX_TRAIN_SECONDS))

    planned = int(os.environ.get("EDGEIFY_STARTER_STEPS", TRAIN_STEPS))
    final = starter_dir(family)
    if (final / "starter.json").exists():
        problem = cache_problem(family, final, planned)
        if problem is None:
            return final
        log(f"cached starter {family.name} at {final} is not usable: {problem}; rebuilding it")
        shutil.rmtree(final, ignore_errors=True)
    log(f"*** Building an offline STARTER {family.name} model (not a pretrained model): "
        f"small architecture trained {planned} steps (about a minute) on edgeify-generated data. ***")
    torch.manual_seed(SEED)
    t0 = time.perf_counter()
    config_cls, model_cls = family.transformers_classes()
    seq_len = 48 if not family.task.causal else 64
    corpus = synthetic.paragraphs(3000, seed=SEED + 1)
    tokenizer = _train_tokenizer(family.tokenizer_kind, corpus, family.starter_config["vocab_size"])
    cfg_kwargs, train_feeds, train_labels, test_feeds, test_labels = _starter_data(family, tokenizer, seq_len)
    config = config_cls(**cfg_kwargs, attn_implementation="eager")
    model = model_cls(config)
    with tqdm(total=planned, desc=f"training starter {family.name}", unit="step",
              mininterval=1.0) as bar:
        steps = _train(model, train_feeds, train_labels, planned, seconds, family.starter_lr, 32, bar, log)
    metric, value = _held_out_metric(family, model, test_feeds, test_labels)
    problem = _below_floor(family, metric, value, len(tokenizer))
    if problem and floor_enforced(planned):  # training is seeded: a retry would score the same
        raise EdgeifyError(
            f"offline starter {family.name} not cached: {problem} after {steps} training steps; "
            "its numbers would mean nothing. Use a real checkpoint (go online once so the hub "
            "model is cached, or give a local model directory), and please report this edgeify bug")
    if problem:
        log(f"WARNING: starter {family.name}: {problem} after {steps} steps; kept only because "
            f"EDGEIFY_STARTER_STEPS={planned} asks for fewer than the default {TRAIN_STEPS} steps: "
            "its numbers mean nothing")
    floor_metric, floor, rule = quality_floor(family, len(tokenizer))
    info = {
        "starter": True, "version": STARTER_VERSION, "family": family.name,
        "note": "edgeify offline starter: small architecture trained on edgeify-generated data; not a pretrained model",
        "train_steps": steps, "train_seconds": round(time.perf_counter() - t0, 1),
        "held_out": {"name": metric, "value": round(value, 3), "n": len(next(iter(test_feeds.values())))},
        "chance": (100.0 / len(synthetic.LABELS)) if family.task.labelled else None,
        "floor": {"name": floor_metric, "value": round(floor, 3), "rule": rule, "met": not problem},
        "planned_steps": planned,
    }
    _cache(final, model, tokenizer, info)
    log(f"starter {family.name}: held-out {metric} {value:.2f} (floor {floor:.2f}) after {steps} "
        f"steps ({info['train_seconds']}s); cached at {final}")
    return final


def starter_info(path: str | Path) -> dict | None:
    p = Path(path) / "starter.json"
    return json.loads(p.read_text()) if p.exists() else None
