"""Generation speed: edgeify's cached decoders vs Hugging Face `generate`, in one run.

GPT-Neo-125M-shaped model (random weights: speed does not depend on them), batch 1, a
64-token prompt then 128 new tokens, greedy, no stop token. Compared, each in a fresh
process with the same threads, in interleaved rounds (the median round is reported):

- `model.generate` fp32 eager with its cache (what a user runs first),
- every cached decoder edgeify makes: ONNX fp32 / dynamic int8 / weight-only int8 / int4
  (MatMulNBits), OpenVINO stateful fp32 / weight-only int8 / int4 (NNCF), TFLite prefill +
  decode signatures fp32 / dynamic int8 / blockwise int4.

Decode tokens/s counts the 127 tokens after the first (one step each); end-to-end
tokens/s is 128 / (prefill + decode). For HF, prefill is `generate(max_new_tokens=1)`.

    python benchmarks/bench_generate.py --name generate-gpt-neo-125m-shape

With `--model DIR --artifacts A,B`, a trained model and decoders already made (say, what a
budget search chose) are timed the same way against HF `generate` on that model:

    python benchmarks/bench_generate.py --model /work/models/gpt-neo-wikitext \
        --artifacts OUT/recipes/1-as-is/onnx/model-int4-weights.onnx --name search-gpt-neo-side-by-side
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_onnx import machine, save_result  # noqa: E402

warnings.filterwarnings("ignore")

SHAPE_125M = dict(vocab_size=50257, hidden_size=768, num_layers=12, num_heads=12,
                  attention_types=[[["global", "local"], 6]], window_size=256,
                  max_position_embeddings=2048, intermediate_size=3072)


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(spec: dict) -> dict:
    """One model in this process: warm up, then time one generation."""
    import numpy as np

    prompt = np.random.default_rng(0).integers(100, 50000, spec["prompt"]).tolist()
    new = spec["new_tokens"]
    if spec["artifact"].startswith("hf:"):
        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(spec["threads"])
        model = AutoModelForCausalLM.from_pretrained(spec["artifact"][3:], attn_implementation="eager").eval()
        ids = torch.tensor([prompt])

        def run(n: int) -> tuple[float, list[int]]:
            t = time.perf_counter()
            with torch.no_grad():
                out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                     pad_token_id=0)
            return time.perf_counter() - t, out[0, len(prompt):].tolist()

        run(4)  # warm-up
        prefill = min(run(1)[0] for _ in range(3))
        total, tokens = run(new)
        decode = total - prefill
        return {"prefill_ms": prefill * 1000, "decode_tps": (new - 1) / decode, "total_s": total,
                "runtime": f"torch {torch.__version__}", "precision": "fp32", "peak_rss_mb": _peak_rss_mb(),
                "tokens": tokens}
    from edgeify.generate import Sampling, generate
    from edgeify.runtimes import open_decoder

    decoder = open_decoder(spec["artifact"], spec["threads"])
    generate(decoder, prompt, Sampling(max_new_tokens=4))  # warm-up
    g = generate(decoder, prompt, Sampling(max_new_tokens=new))
    return {"prefill_ms": g.prefill_s * 1000, "decode_tps": g.decode_tokens_per_s,
            "total_s": g.prefill_s + g.decode_s, "runtime": decoder.runtime, "precision": decoder.precision,
            "peak_rss_mb": _peak_rss_mb(), "tokens": g.tokens}


def measure(artifact: str, args) -> dict:
    spec = {"artifact": artifact, "prompt": args.prompt, "new_tokens": args.new_tokens, "threads": args.threads}
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True,
                          text=True, env=env, timeout=1800)
    if proc.returncode:
        raise RuntimeError(f"{artifact}: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def build(work: Path, formats: list[str], max_length: int, prefill_len: int) -> list[tuple[str, str, Path]]:
    """The model directory and every decoder artifact: [(format, precision, path)]."""
    import torch
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    from edgeify import families
    from edgeify.export import get_backend

    family = families.get("gpt-neo")
    model_dir = work / "model"
    torch.manual_seed(0)
    model = GPTNeoForCausalLM(GPTNeoConfig(**SHAPE_125M, attn_implementation="eager")).eval()
    model.save_pretrained(model_dir)
    out = []
    for fmt in formats:
        backend = get_backend(fmt)
        fmt_dir = work / fmt
        fmt_dir.mkdir(exist_ok=True)
        t = time.perf_counter()
        fp32 = backend.export_decoder(model, family, fmt_dir, max_length=max_length, prefill_len=prefill_len)
        print(f"{fmt}: exported in {time.perf_counter() - t:.0f}s", flush=True)
        out.append((fmt, "fp32", fp32.path))
        for config in backend.decoder_configs(family, True):
            art = backend.quantize(fp32, family, None, config, fmt_dir)
            out.append((fmt, art.precision, art.path))
            print(f"{fmt}: {art.precision} done", flush=True)
    return out


def models(args) -> tuple[Path, str, list[tuple[str, str, Path]]]:
    """The model HF generate runs, what its weights are, and the decoders to time: a
    trained model's given files (--model --artifacts), else a random 125M shape's, built."""
    if args.model:
        return (args.model, f"{args.model.name} (trained weights)",
                [(a.parent.name, a.stem, a) for a in args.artifacts])
    work = Path(args.work or tempfile.mkdtemp(prefix="edgeify-bench-gen-"))
    work.mkdir(parents=True, exist_ok=True)
    formats = [f for f in args.formats.split(",") if f]
    return (work / "model", "GPT-Neo-125M shape, random weights",
            build(work, formats, args.max_length, prefill_len=args.prompt))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--name", default="generate-gpt-neo-125m-shape")
    ap.add_argument("--formats", default="onnx,openvino,tflite")
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-length", type=int, default=512, help="TFLite's fixed cache (ONNX/OpenVINO grow)")
    ap.add_argument("--work", help="keep the model and artifacts here (reused when present)")
    ap.add_argument("--model", type=Path, help="a trained GPT-Neo directory: HF generate runs on it, and only "
                    "--artifacts are timed (nothing is built)")
    ap.add_argument("--artifacts", default=[], type=lambda v: [Path(a) for a in v.split(",") if a],
                    help="with --model: comma-separated decoder files to time")
    ap.add_argument("--target-ratio", type=float, default=3.0, help="the decode speed-up over HF to meet")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0

    if args.model and not args.artifacts:
        ap.error("--model needs --artifacts: the decoder files to time against HF generate")
    model_dir, weights, artifacts = models(args)
    runs = [("pytorch", "fp32 HF generate", f"hf:{model_dir}")] + [(f, p, str(a)) for f, p, a in artifacts]
    results: dict[str, list[dict]] = {r[2]: [] for r in runs}
    for i in range(args.rounds):
        for _, _, path in runs:
            results[path].append(measure(path, args))
        print(f"round {i + 1}/{args.rounds} done", flush=True)

    def med(path: str, key: str) -> float:
        return statistics.median(r[key] for r in results[path])

    hf = runs[0][2]
    hf_tokens = results[hf][0]["tokens"]
    # HF's min_new_tokens (exactly N tokens, as timed) bans the end-of-text token, which
    # edgeify's loop may pick without a stop id: tokens are compared up to its first one
    eos = json.loads((model_dir / "config.json").read_text()).get("eos_token_id")

    def same(tokens: list[int]) -> bool:
        cut = tokens.index(eos) if eos in tokens else len(tokens)
        return tokens[:cut] == hf_tokens[:cut]

    lines = [f"# Generation speed: cached decoders vs HF generate ({args.name})", "",
             f"- machine: {machine()}",
             f"- {weights}; batch 1, {args.threads} threads; {args.prompt}-token prompt, "
             f"{args.new_tokens} new tokens, greedy; TFLite cache {args.max_length} slots, prefill signature "
             f"{args.prompt} tokens; median of {args.rounds} interleaved rounds, each model in a fresh process",
             "- same tokens: greedy output equal to HF generate's up to the first end-of-text token (fp32 must "
             "be; a quantized model's can drift at a near-tie, and on random weights, with near-flat logits, its "
             "tokens say nothing about accuracy)", "",
             "| model | ran as | size MB | prefill ms | decode tok/s | decode vs HF | end-to-end vs HF | peak RSS MB | same tokens |",
             "|---|---|---|---|---|---|---|---|---|"]
    for fmt, precision, path in runs:
        size = (sum(p.stat().st_size for p in model_dir.glob("*.safetensors")) if path == hf
                else Path(path).stat().st_size + sum(p.stat().st_size for p in [Path(path).with_suffix(".bin")]
                                                     if p.exists() and p != Path(path)))
        last = results[path][-1]
        lines.append(f"| {fmt} {precision} | {last['precision']} | {size / 2**20:.0f} | {med(path, 'prefill_ms'):.0f} | "
                     f"{med(path, 'decode_tps'):.1f} | {med(path, 'decode_tps') / med(hf, 'decode_tps'):.2f}x | "
                     f"{med(hf, 'total_s') / med(path, 'total_s'):.2f}x | {max(r['peak_rss_mb'] for r in results[path]):.0f} | "
                     f"{'yes' if same(last['tokens']) else 'no'} |")
    best = max(runs[1:], key=lambda r: med(r[2], "decode_tps"))
    lines += ["", f"Best: **{best[0]} {best[1]}**, {med(best[2], 'decode_tps'):.1f} decode tokens/s = "
              f"{med(best[2], 'decode_tps') / med(hf, 'decode_tps'):.2f}x HF generate "
              f"({med(hf, 'decode_tps'):.1f}); target >= {args.target_ratio:g}x.", ""]
    save_result(args.name, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
