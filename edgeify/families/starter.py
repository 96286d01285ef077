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
from edgeify.families import CAUSAL_LM, Family

STARTER_VERSION = 2
TRAIN_STEPS = 450      # about a minute on 2 idle cores
MAX_TRAIN_SECONDS = 150.0
SEED = 0


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
           steps: int, max_seconds: float, lr: float, batch_size: int, progress) -> int:
    """Train for a fixed number of steps (reproducible), stopping early at the time cap
    (a loaded machine must not blow the run's time budget); returns the steps taken."""
    torch.manual_seed(SEED)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    rng = np.random.default_rng(SEED)
    n = len(next(iter(feeds.values())))
    model.train()
    start, done = time.perf_counter(), 0
    for idx in _batches(n, batch_size, rng):
        if done >= steps or time.perf_counter() - start > max_seconds:
            break
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
    if family.task == CAUSAL_LM:
        losses = [model(**{k: v[i:i + 32] for k, v in feeds.items()},
                        labels=feeds["input_ids"][i:i + 32]).loss.item()
                  for i in range(0, len(feeds["input_ids"]), 32)]
        return "perplexity", float(math.exp(np.mean(losses)))
    preds = torch.cat([model(**{k: v[i:i + 128] for k, v in feeds.items()}).logits.argmax(-1)
                       for i in range(0, len(labels), 128)])
    return "accuracy", float((preds == labels).float().mean().item() * 100)


def build_starter(family: Family, log=print, seconds: float | None = None) -> Path:
    """Build (or reuse) the family's starter model under the user cache dir.

    EDGEIFY_STARTER_SECONDS caps training time; EDGEIFY_STARTER_STEPS sets the planned
    steps (tests use a few dozen, so their starter is the same however busy the machine).
    """
    from tqdm.auto import tqdm

    if seconds is None:
        seconds = float(os.environ.get("EDGEIFY_STARTER_SECONDS", MAX_TRAIN_SECONDS))

    planned = int(os.environ.get("EDGEIFY_STARTER_STEPS", TRAIN_STEPS))
    final = starter_dir(family)
    if (final / "starter.json").exists():
        return final
    log(f"*** Building an offline STARTER {family.name} model (not a pretrained model): "
        f"small architecture trained {planned} steps (about a minute) on edgeify-generated data. ***")
    torch.manual_seed(SEED)
    t0 = time.perf_counter()
    config_cls, model_cls = family.transformers_classes()
    seq_len = 48 if family.task != CAUSAL_LM else 64
    corpus = synthetic.paragraphs(3000, seed=SEED + 1)
    tokenizer = _train_tokenizer(family.tokenizer_kind, corpus, family.starter_config["vocab_size"])
    cfg_kwargs = dict(family.starter_config, vocab_size=len(tokenizer))
    if family.task == CAUSAL_LM:
        cfg_kwargs.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
        text = synthetic.paragraphs(4000, seed=SEED + 2)
        ids = np.asarray(tokenizer("\n".join(text))["input_ids"], dtype=np.int64)
        n = len(ids) // seq_len
        windows = torch.from_numpy(ids[: n * seq_len].reshape(n, seq_len))
        held = max(64, n // 10)
        train_feeds = {"input_ids": windows[held:]}
        test_feeds, train_labels, test_labels = {"input_ids": windows[:held]}, None, None
    else:
        cfg_kwargs.update(num_labels=len(synthetic.LABELS), pad_token_id=tokenizer.pad_token_id,
                          id2label=dict(enumerate(synthetic.LABELS)),
                          label2id={n: i for i, n in enumerate(synthetic.LABELS)})
        data = synthetic.labelled_reviews(20000, seed=SEED + 3)
        enc = tokenizer([t for t, _ in data], padding="max_length", truncation=True,
                        max_length=seq_len, return_tensors="pt")
        labels = torch.tensor([synthetic.LABELS.index(lab) for _, lab in data])
        held = 2000
        feeds = {k: enc[k] for k in ("input_ids", "attention_mask")}
        train_feeds = {k: v[held:] for k, v in feeds.items()}
        test_feeds = {k: v[:held] for k, v in feeds.items()}
        train_labels, test_labels = labels[held:], labels[:held]
    config = config_cls(**cfg_kwargs, attn_implementation="eager")
    model = model_cls(config)
    with tqdm(total=planned, desc=f"training starter {family.name}", unit="step",
              mininterval=1.0) as bar:
        steps = _train(model, train_feeds, train_labels, planned, seconds, family.starter_lr, 32, bar)
    metric, value = _held_out_metric(family, model, test_feeds, test_labels)
    info = {
        "starter": True, "version": STARTER_VERSION, "family": family.name,
        "note": "edgeify offline starter: small architecture trained on edgeify-generated data; not a pretrained model",
        "train_steps": steps, "train_seconds": round(time.perf_counter() - t0, 1),
        "held_out": {"name": metric, "value": round(value, 3), "n": len(next(iter(test_feeds.values())))},
        "chance": (100.0 / len(synthetic.LABELS)) if metric == "accuracy" else None,
    }
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "starter.json").write_text(json.dumps(info, indent=2))
        if final.exists():  # a half-built leftover without starter.json
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"starter {family.name}: held-out {metric} {value:.2f} after {steps} steps "
        f"({info['train_seconds']}s); cached at {final}")
    if metric == "accuracy" and value < info["chance"] + 20:
        log(f"WARNING: the starter is barely above chance ({value:.1f}% vs {info['chance']:.0f}%): "
            f"training stopped after {steps} of {planned} steps (machine busy?). "
            f"Delete {final} to rebuild it.")
    return final


def starter_info(path: str | Path) -> dict | None:
    p = Path(path) / "starter.json"
    return json.loads(p.read_text()) if p.exists() else None
