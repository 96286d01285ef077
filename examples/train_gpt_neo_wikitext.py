"""Train a small GPT-Neo on WikiText-2 with the real GPT-2 tokenizer, offline.

    python examples/train_gpt_neo_wikitext.py --out /work/models/gpt-neo-wikitext

No pretrained GPT-Neo weights can be had offline, and a random model says nothing about
what quantization costs in perplexity (its logits are nearly flat). This trains a real
GPT-Neo (global + local layers, window 256, GPT-Neo's own tokenizer) on text, so the
weight-only int8/int4 perplexity comparison has a model with learned weights to work on.

Training windows are `prepare(..., seq_len=128, n_calibration=128, n_eval=100, seed=0)
.training`: exactly the windows edgeify neither evaluates nor calibrates on when run with
`--data wiki.test.raw` (its defaults), so the perplexity edgeify reports is on held-out text.
Botchan (a novel) is added to the training text. Written atomically (temp dir + rename).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from finetune_tweets import save_atomically  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared/data"
SHAPE = dict(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024,
             attention_types=[[["global", "local"], 2]], window_size=256, max_position_embeddings=2048)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data", type=Path, default=DATA / "wikitext2/wiki.test.raw")
    p.add_argument("--extra", type=Path, default=DATA / "botchan/botchan.txt", help="more training text")
    p.add_argument("--tokenizer", type=Path, default=DATA / "tokenizers/gpt2")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--force", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    from tqdm.auto import tqdm
    from transformers import GPT2TokenizerFast, GPTNeoConfig, GPTNeoForCausalLM

    from edgeify import families
    from edgeify.calibration.datasets import load_examples, prepare
    from edgeify.calibration.tokenize import encode_language_model

    args = parse_args(argv)
    if args.out.exists() and not args.force:
        print(f"{args.out} exists; pass --force to replace it", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    family = families.get("gpt-neo")
    # from_pretrained on the folder: in transformers 5 the vocab_file= constructor leaves it empty
    tokenizer = GPT2TokenizerFast.from_pretrained(str(args.tokenizer))
    examples, desc = load_examples(family, str(args.data), synthetic_default=False, n_wanted=0)
    data = prepare(family, tokenizer, None, examples, desc, seq_len=128, n_calibration=128, n_eval=100,
                   seed=0, n_train=10**9)
    train = data.training.inputs["input_ids"]
    if args.extra and args.extra.exists():
        lines = [ln for ln in args.extra.read_text(errors="replace").splitlines() if ln.strip()]
        train = np.concatenate([train, encode_language_model(tokenizer, lines, 128, ("input_ids",)).inputs["input_ids"]])
    print(f"{len(train)} training windows of 128 tokens; {len(data.evaluation)} held-out evaluation windows")

    config = GPTNeoConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.eos_token_id,
                          eos_token_id=tokenizer.eos_token_id, **SHAPE)
    config._attn_implementation = "eager"
    model = GPTNeoForCausalLM(config)
    steps = math.ceil(len(train) / args.batch_size * args.epochs)
    warm = max(1, steps // 20)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm))))
    rng = np.random.default_rng(args.seed)
    model.train()
    t0, step, ema = time.perf_counter(), 0, None
    with tqdm(total=steps, desc="training", unit="step", mininterval=2.0) as bar:
        while step < steps:
            for start in range(0, len(train), args.batch_size):
                if step >= steps:
                    break
                batch = torch.from_numpy(train[rng.permutation(len(train))[:args.batch_size]])
                loss = model(input_ids=batch, labels=batch).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
                bar.set_postfix(loss=f"{ema:.3f}", refresh=False)
                bar.update(1)
    model.eval()
    with torch.no_grad():
        held = torch.from_numpy(data.evaluation.inputs["input_ids"])
        nll = sum(model(input_ids=held[i:i + 20], labels=held[i:i + 20]).loss.item() for i in range(0, len(held), 20))
    ppl = math.exp(nll / math.ceil(len(held) / 20))
    print(f"{steps} steps in {(time.perf_counter() - t0) / 60:.1f} min; held-out perplexity {ppl:.1f}")
    save_atomically(model, tokenizer, args.out, {"steps": steps, "held_out_perplexity": ppl,
                                                 "train_windows": int(len(train)), "shape": SHAPE}, args.force)
    print(f"saved to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
