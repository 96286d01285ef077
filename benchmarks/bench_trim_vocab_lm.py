"""--trim-vocab on a causal LM: how much lower its perplexity gets for no better prediction.

A trimmed LM's logits are the same on the kept tokens, but its softmax covers only them,
so the probability the untrimmed model gave the dropped tokens is shared among the kept
ones. This scores edgeify's evaluation windows (no context) with the same logits twice:
full softmax, and the softmax over the tokens `--trim-vocab` would keep for the data.

    python benchmarks/bench_trim_vocab_lm.py --model /work/models/gpt-neo-wikitext \\
        --data ../shared/data/wikitext2/wiki.test.raw --name trim-vocab-lm-gpt-neo-wikitext
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_onnx import machine, save_result  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--name", default="trim-vocab-lm")
    ap.add_argument("--seq-len", type=int, default=128)
    args = ap.parse_args()
    import torch

    from edgeify.calibration.datasets import load_examples, prepare
    from edgeify.compress.trim_vocab import perplexity_shift_pct, trim_tokenizer
    from edgeify.families import loader

    loaded = loader.load_local(Path(args.model))
    examples, desc = load_examples(loaded.family, args.data, synthetic_default=False, n_wanted=0)
    data = prepare(loaded.family, loaded.tokenizer, None, examples, desc, seq_len=args.seq_len, n_calibration=128, n_train=64,
                   n_eval=100)
    kept = torch.as_tensor(trim_tokenizer(loaded.tokenizer, [e.text for e in examples]).kept_ids)
    ids = torch.as_tensor(data.evaluation.inputs["input_ids"])
    nll_full = nll_kept = n = 0.0
    with torch.no_grad():
        for i in range(0, len(ids), 10):
            logits = loaded.model(input_ids=ids[i:i + 10]).logits[:, :-1].float()
            target = ids[i:i + 10, 1:]
            nll_full -= torch.log_softmax(logits, -1).gather(-1, target[..., None]).sum().item()
            kept_logp = torch.log_softmax(logits[..., kept], -1)
            nll_kept -= kept_logp.gather(-1, torch.searchsorted(kept, target)[..., None]).sum().item()
            n += target.numel()
    full, trimmed = math.exp(nll_full / n), math.exp(nll_kept / n)
    stage = perplexity_shift_pct(loaded.model, kept.numpy(), data.training.inputs["input_ids"]
                                 if data.training is not None else None)
    save_result(args.name, "\n".join([
        f"# --trim-vocab on a causal LM ({args.name})", "", f"- machine: {machine()}",
        f"- {args.model} on {desc}: {len(ids)} evaluation windows of {args.seq_len} tokens, no context",
        f"- vocabulary kept: {len(kept):,} of {len(loaded.tokenizer):,} tokens (every token of the data)", "",
        "| softmax over | perplexity | vs full |", "|---|---|---|",
        f"| every token (the untrimmed model) | {full:.2f} | |",
        f"| the kept tokens (the trimmed model) | {trimmed:.2f} | {100 * (trimmed / full - 1):+.2f}% |", "",
        f"The stage's own estimate on training windows (`perplexity_shift_pct`): "
        f"{stage if stage is not None else '-'}%.", ""]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
