"""--trim-vocab: how much of the embedding goes, for how much data, and what it costs.

A dataset can only be trimmed to the tokens it uses, so the cut depends on its size. For
growing subsets of a data file (always containing edgeify's 1000 evaluation and 128
calibration rows), trims the model's vocabulary to the subset, checks that every text of
the subset tokenizes to the same (remapped) ids, and evaluates the trimmed model beside
the original on the evaluation rows.

    python benchmarks/bench_trim_vocab.py --model /work/models/electra-minilm-tweets \\
        --data ../shared/data/twitter_sentiment/tweets.csv --text-column text \\
        --label-column sentiment --name trim-vocab-electra-tweets
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_onnx import common_args, machine, save_result  # noqa: E402


def main() -> int:
    ap = common_args(__doc__, seconds=0.0)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000, 20000, 0],
                    help="subset sizes in rows (0 = the whole file)")
    args = ap.parse_args()

    from edgeify.calibration.datasets import load_examples, prepare
    from edgeify.calibration.splits import split_examples
    from edgeify.compress.trim_vocab import trim_model, trim_tokenizer
    from edgeify.evaluate import evaluate
    from edgeify.families import loader
    from edgeify.runtimes.torch_runner import TorchRunner

    loaded = loader.load_local(Path(args.model))
    family = loaded.family
    examples, desc = load_examples(family, args.data, synthetic_default=False, n_wanted=0,
                                   text_column=args.text_column, label_column=args.label_column)
    split = split_examples(examples, 128, args.n_eval, 0)  # the pipeline's own split
    held = [*split.evaluation, *split.calibration]
    data = prepare(family, loaded.tokenizer, loaded.model.config.id2label, examples, desc,
                   seq_len=args.seq_len, n_calibration=128, n_eval=args.n_eval)
    base = evaluate(TorchRunner(loaded.model, args.threads, family=family), data.evaluation, family.task,
                    desc="original").value
    emb = loaded.model.get_input_embeddings().weight.numel()
    lines = [f"### {args.name}", "",
             f"- model: `{Path(args.model).name}` ({family.name}, vocab {len(loaded.tokenizer):,}, "
             f"{emb:,} embedding params); data: {desc}; accuracy on its {len(data.evaluation)} evaluation rows",
             f"- machine: {machine()}", "",
             "| subset rows | vocab kept | embedding params cut | identical tokenization | accuracy before | "
             "after | Δ pts | trim s |",
             "|---|---|---|---|---|---|---|---|"]
    for size in args.sizes:
        rows = held + split.rest[:max(0, (size or len(examples)) - len(held))]
        texts = [e.text for e in rows]
        t0 = time.time()
        result = trim_tokenizer(loaded.tokenizer, texts)  # raises if any text tokenizes differently
        model = copy.deepcopy(loaded.model)
        trim_model(model, result.kept_ids)
        took = time.time() - t0
        trimmed = prepare(family, result.tokenizer, model.config.id2label, examples, desc,
                          seq_len=args.seq_len, n_calibration=128, n_eval=args.n_eval)
        after = evaluate(TorchRunner(model, args.threads, family=family), trimmed.evaluation, family.task,
                         desc=f"trimmed to {len(rows)}").value
        cut = 1 - model.get_input_embeddings().weight.numel() / emb
        lines.append(f"| {len(rows):,} | {result.vocab_after:,} of {result.vocab_before:,} | {cut:.1%} | "
                     f"yes ({len(texts):,} texts checked) | {base:.2f} | {after:.2f} | {after - base:+.2f} | {took:.0f} |")
    save_result(args.name, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
