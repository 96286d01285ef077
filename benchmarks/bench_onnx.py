"""PyTorch eager vs the naive ONNX path vs edgeify's ONNX fp32/int8, in one run.

The naive path is what a user would try first: `torch.onnx.export(model, args, path)` with
default settings, then `onnxruntime.quantization.quantize_dynamic(path, out)` with default
settings. Every artifact is timed at batch 1 in a fresh process with the same threads and
the same input, in interleaved rounds (median of the rounds' p50s), because the machine
is shared and noisy: the ratios are what count, not the absolute times.

    python benchmarks/bench_onnx.py --model DIR --data tweets.csv --text-column text \\
        --label-column sentiment --name electra-minilm-tweets
    python benchmarks/bench_onnx.py --family electra --shape electra-small --name electra-small-shape
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path


warnings.filterwarnings("ignore")

# Published model shapes, for latency/size runs without real weights (random init).
SHAPES = {
    "electra-small": ("electra", dict(vocab_size=30522, embedding_size=128, hidden_size=256,
                                      num_hidden_layers=12, num_attention_heads=4,
                                      intermediate_size=1024, num_labels=2)),
    "albert-base": ("albert", dict(vocab_size=30000, embedding_size=128, hidden_size=768,
                                   num_hidden_layers=12, num_attention_heads=12,
                                   intermediate_size=3072, num_labels=2)),
}


def build_shape(name: str, out: Path) -> Path:
    import torch

    from edgeify import families
    from edgeify.families.starter import _train_tokenizer
    from edgeify.calibration import synthetic

    fam_name, cfg = SHAPES[name]
    family = families.get(fam_name)
    config_cls, model_cls = family.transformers_classes()
    torch.manual_seed(0)
    model = model_cls(config_cls(**cfg, attn_implementation="eager",
                                 id2label={0: "negative", 1: "positive"},
                                 label2id={"negative": 0, "positive": 1})).eval()
    tok = _train_tokenizer(family.tokenizer_kind, synthetic.paragraphs(500), 2000)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def naive_export(model_dir: Path, family, seq_len: int, out_dir: Path) -> tuple[Path, Path]:
    """Plain torch.onnx.export (all defaults) + default quantize_dynamic."""
    import torch
    from onnxruntime.quantization import quantize_dynamic

    model = family.load_model(str(model_dir))
    args = tuple(torch.ones(1, seq_len, dtype=torch.long) if n != "token_type_ids"
                 else torch.zeros(1, seq_len, dtype=torch.long) for n in family.onnx_inputs)
    fp32 = out_dir / "naive.fp32.onnx"
    torch.onnx.export(model, args, str(fp32), input_names=list(family.onnx_inputs),
                      output_names=["logits"])
    int8 = out_dir / "naive.int8.onnx"
    quantize_dynamic(str(fp32), str(int8))
    return fp32, int8


def file_size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.glob("*.safetensors"))
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def machine() -> str:
    import psutil

    from edgeify.report import versions
    from edgeify.targets import cpu_description

    v = versions()
    return (f"{cpu_description()}, {psutil.cpu_count(logical=False)} physical cores, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB; Python {platform.python_version()}; "
            + ", ".join(f"{k} {v[k]}" for k in ("torch", "transformers", "onnx", "onnxruntime") if k in v))


def common_args(doc: str, seconds: float) -> argparse.ArgumentParser:
    """The options every benchmark script here takes: which model, data, shape, timing."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="HF model directory (real weights)")
    ap.add_argument("--shape", choices=sorted(SHAPES), help="random-init model of a published shape")
    ap.add_argument("--data")
    ap.add_argument("--text-column")
    ap.add_argument("--label-column")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-eval", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=seconds, help="timing budget per model per round")
    ap.add_argument("--max-accuracy-drop", type=float,
                    help="also edgeify's accuracy-controlled int8 files, with this budget")
    ap.add_argument("--name", required=True)
    ap.add_argument("--work", help="work dir (default: a temp dir)")
    return ap


def edgeify_int8_run(args, fmt: str, work: Path, model_dir: Path) -> tuple[dict, dict, dict]:
    """`edgeify MODEL --int8 --formats FMT` for a benchmark (timing done by the script, so one
    short round here): the report, and metric values and paths keyed by precision, with the
    PyTorch baseline as "pytorch"."""
    import edgeify

    rep = edgeify.run(str(model_dir), int8=True, formats=(fmt,), data=args.data or "synthetic",
                      text_column=args.text_column, label_column=args.label_column,
                      seq_len=args.seq_len, n_eval=args.n_eval, out_dir=str(work / "edgeify"),
                      force=True, bench_seconds=1.0, bench_rounds=1,
                      max_accuracy_drop=getattr(args, "max_accuracy_drop", None),
                      log_fn=lambda m: print(m, file=sys.stderr))
    out = Path(rep["output_dir"])
    values = {"pytorch": rep["baseline"]["metric"]["value"]}
    paths = {"pytorch": out / "pytorch"}
    for a in rep["artifacts"]:
        values[a["precision"]] = a["metric"]["value"]
        paths[a["precision"]] = out / a["path"]
    return rep, values, paths


def pipeline_data(args, model_dir: Path, n_calibration: int = 128, n_eval: int | None = None,
                  n_wanted: int | None = None):
    """The model and the same examples and split the pipeline used: (loaded, prepared data)."""
    from edgeify.calibration.datasets import load_examples, prepare
    from edgeify.families import loader

    loaded = loader.load_local(model_dir)
    n_eval = args.n_eval if n_eval is None else n_eval
    examples = load_examples(loaded.family, args.data or "synthetic", synthetic_default=True,
                             n_wanted=n_wanted or n_eval + n_calibration, text_column=args.text_column,
                             label_column=args.label_column)
    data = prepare(loaded.family, loaded.tokenizer, loaded.model.config.id2label, *examples,
                   seq_len=args.seq_len, n_calibration=n_calibration, n_eval=n_eval)
    return loaded, data


def header(args, model_dir: Path, family, rep: dict) -> list[str]:
    """The lines every result table starts with: what was measured, and how."""
    return [
        f"### {args.name}",
        "",
        f"- model: `{model_dir.name}` ({family.name}, {rep['model']['params']:,} params, "
        f"{'random init, shape ' + args.shape if args.shape else 'real weights'}); data: {rep['data']['eval']} "
        f"({rep['data']['n_eval']} eval samples); batch 1, seq {args.seq_len}, {args.threads} threads; "
        f"latency = median of {args.rounds} interleaved rounds of p50, each in a fresh process",
    ]


def save_result(name: str, text: str) -> None:
    """Print the table and keep it in benchmarks/results/NAME.md."""
    print(text)
    res_dir = Path(__file__).parent / "results"
    res_dir.mkdir(exist_ok=True)
    (res_dir / f"{name}.md").write_text(text)


def main() -> int:
    args = common_args(__doc__, seconds=5.0).parse_args()

    import edgeify
    from edgeify.evaluate import evaluate
    from edgeify.families import loader
    from edgeify.runtimes import open_runner
    from edgeify.targets import local

    work = Path(args.work or tempfile.mkdtemp(prefix="edgeify-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    model_dir = Path(args.model) if args.model else build_shape(args.shape, work / "model")
    args.data = args.data or "synthetic"

    t0 = time.time()
    rep = edgeify.run(str(model_dir), int8=True, data=args.data, text_column=args.text_column,
                      label_column=args.label_column, seq_len=args.seq_len, n_eval=args.n_eval,
                      out_dir=str(work / "edgeify"), force=True, max_accuracy_drop=args.max_accuracy_drop,
                      log_fn=lambda m: print(m, file=sys.stderr))
    out = Path(rep["output_dir"])
    family = loader.peek_family(str(model_dir))
    naive_fp32, naive_int8 = naive_export(model_dir, family, args.seq_len, work)

    _, data = pipeline_data(args, model_dir)

    rows = {"pytorch fp32 eager": (out / "pytorch", rep["baseline"]["metric"]["value"])}
    for a in rep["artifacts"]:
        rows[f"edgeify onnx {a['precision']}"] = (out / a["path"], a["metric"]["value"])
    for label, path in (("naive onnx fp32", naive_fp32), ("naive onnx int8 (quantize_dynamic)", naive_int8)):
        # naive exports have a fixed 1 x seq_len input: evaluate one sample at a time
        res = evaluate(open_runner(path, args.threads), data.evaluation, family.task, batch_size=1, desc=label)
        rows[label] = (path, res.value)

    feeds = data.evaluation.rows(0, 1)
    lat: dict[str, list[float]] = {k: [] for k in rows}
    for r in range(args.rounds):
        for label, (path, _) in rows.items():
            lat[label].append(local.measure(path, feeds, args.threads, max_seconds=args.seconds)["p50"])
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k}={v[-1]:.2f}" for k, v in lat.items()),
              file=sys.stderr)
    p50 = {k: statistics.median(v) for k, v in lat.items()}

    metric = rep["baseline"]["metric"]["name"]
    base_p50 = p50["pytorch fp32 eager"]
    base_metric = rows["pytorch fp32 eager"][1]
    naive_int8_p50 = p50["naive onnx int8 (quantize_dynamic)"]
    naive_fp32_size = file_size(naive_fp32)
    selected = next((a for a in rep["artifacts"] if a.get("selected")), None)
    lines = [
        *header(args, model_dir, family, rep),
        f"- machine: {machine()}",
        f"- run took {time.time() - t0:.0f}s",
        "",
        f"| artifact | {metric} | Δ vs PyTorch | p50 ms (rounds) | vs PyTorch eager | vs naive int8 | size MB | size vs naive fp32 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, (path, value) in rows.items():
        size = file_size(path)
        sel = " (selected)" if selected and (out / selected["path"]) == path else ""
        lines.append(
            f"| {label}{sel} | {value:.2f} | {value - base_metric:+.2f} | {p50[label]:.2f} "
            f"({', '.join(f'{x:.2f}' for x in lat[label])}) | {p50[label] / base_p50:.2f}x | "
            f"{p50[label] / naive_int8_p50:.2f}x | {size / 2**20:.1f} | {size / naive_fp32_size:.2f}x |")
    if selected:
        s_label = f"edgeify onnx {selected['precision']}"
        lines += ["", f"Selected edgeify int8 (`{selected['precision']}`): "
                  f"{p50[s_label] / base_p50:.2f}x PyTorch eager latency, "
                  f"{p50[s_label] / naive_int8_p50:.2f}x naive int8 latency, "
                  f"{metric} {rows[s_label][1] - rows['edgeify onnx fp32'][1]:+.2f} vs edgeify fp32, "
                  f"size {file_size(rows[s_label][0]) / naive_fp32_size:.2f}x naive fp32.",
                  f"Fused ops in edgeify fp32: `{json.dumps(rep['artifacts'][0]['notes'].get('fused_ops'))}`; "
                  "then (export/onnx_graph.py) "
                  + ", ".join(f"{k}: `{json.dumps(rep['artifacts'][0]['notes'].get(k))}`"
                              for k in ("nodes_on_gathered_row", "norm_shifts_folded", "lowered_ops"))]
    save_result(args.name, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
