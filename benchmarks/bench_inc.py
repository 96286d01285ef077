"""Weight-only int4/int8 on the PyTorch side: Intel Neural Compressor's RTN vs GPTQ.

Perplexity on the held-out windows edgeify evaluates (`--data wiki.test.raw`, seq 128,
seed 0), of the fp32 model and of INC's round-to-nearest and GPTQ at the grids the
exported decoders use (symmetric, groups of 32 / 64 input rows), with GPT-Neo's tied
lm_head quantized too (as onnxruntime's MatMulNBits does) or left fp32. GPTQ calibrates on
edgeify's calibration windows. A perplexity equal to the vocabulary size means the model
outputs a uniform distribution (non-finite logits).

    python benchmarks/bench_inc.py --model /work/models/gpt-neo-wikitext --name inc-gpt-neo-wikitext
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_onnx import machine, save_result  # noqa: E402

warnings.filterwarnings("ignore")
DATA = Path(__file__).resolve().parents[2] / "shared/data/wikitext2/wiki.test.raw"


def perplexity(model, windows, batch: int = 10) -> float:
    import torch

    nll, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(windows), batch):
            ids = torch.from_numpy(windows[i:i + batch])
            nll += model(input_ids=ids, labels=ids).loss.item() * len(ids)
            n += len(ids)
    return math.exp(nll / n)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--name", default="inc-gpt-neo-wikitext")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch
    from neural_compressor.torch.quantization import GPTQConfig, RTNConfig, convert, prepare, quantize
    from transformers import AutoTokenizer

    from edgeify import families
    from edgeify.calibration.datasets import load_examples, prepare as prepare_data
    from edgeify.families.loader import load_local

    torch.set_num_threads(args.threads)
    family = families.get("gpt-neo")
    loaded = load_local(Path(args.model))
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    examples, desc = load_examples(family, args.data, synthetic_default=False, n_wanted=0)
    data = prepare_data(family, tokenizer, None, examples, desc, seq_len=128, n_calibration=128, n_eval=100, seed=0)
    held = data.evaluation.inputs["input_ids"]
    calib = data.calibration.inputs["input_ids"]
    base = perplexity(loaded.model, held)
    rows = [("fp32", base, 0.0)]
    for bits, group, lm_head in ((8, 32, True), (4, 32, True), (4, 32, False), (4, 64, False)):
        for algo in ("RTN", "GPTQ"):
            model = copy.deepcopy(loaded.model)
            t = time.perf_counter()
            common = dict(bits=bits, group_size=group, use_sym=True, quant_lm_head=lm_head)
            if algo == "RTN":
                model = quantize(model, RTNConfig(use_layer_wise=False, **common))
            else:
                model = prepare(model, GPTQConfig(**common))
                with torch.no_grad():
                    for i in range(0, len(calib), 8):
                        model(input_ids=torch.from_numpy(calib[i:i + 8]))
                model = convert(model)
            ppl = perplexity(model, held)
            what = "all Linear incl. the tied lm_head" if lm_head else "blocks only (lm_head fp32)"
            rows.append((f"INC {algo} int{bits} sym g{group}, {what}", ppl, time.perf_counter() - t))
            print(rows[-1], flush=True)
    lines = [f"# INC weight-only RTN vs GPTQ ({args.name})", "", f"- machine: {machine()}",
             f"- model: `{args.model}`, {loaded.params:,} parameters; {len(held)} held-out windows of 128 "
             f"tokens ({desc}); GPTQ calibrated on {len(calib)} calibration windows", "",
             "| weights | perplexity | vs fp32 | quantize s |", "|---|---|---|---|"]
    for name, ppl, secs in rows:
        lines.append(f"| {name} | {ppl:.2f} | {100 * (ppl - base) / base:+.2f}% | {secs:.0f} |")
    save_result(args.name, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
