"""Which library options make a better int8 default (issue 21, "better defaults"): each
option the quantizers offer, tried on the same fp32 file, calibration rows and evaluation
rows, with accuracy and latency side by side in one run.

- onnxruntime static QDQ (edgeify's StaticInt8 fields): calibration method (MinMax,
  Entropy, Percentile), per-channel weights, symmetric activations.
- OpenVINO / NNCF (edgeify's Int8 fields): fast vs full bias correction, the preset.
- TFLite / ai-edge-quantizer: dynamic-range per tensor vs per channel, full int8 with
  the attention matmuls int8 too.

A default is worth changing only if it wins on the real models and costs at most 10%
latency (the issue's rule); the table gives both. Latency: median of interleaved rounds.

    python benchmarks/bench_int8_options.py --model DIR --data tweets.csv --name int8-options-electra
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_onnx import common_args, header, machine, pipeline_data, save_result  # noqa: E402

warnings.filterwarnings("ignore")


def variants() -> dict[str, list]:
    """Per format: (label, config) with the default first."""
    from edgeify.export.onnx import StaticInt8 as OnnxStatic
    from edgeify.export.openvino import Int8 as OvInt8
    from edgeify.export.tflite_common import DynamicInt8 as TflDynamic, StaticInt8 as TflStatic

    return {
        "onnx": [("static, default (MinMax, per channel, asymmetric activations)", OnnxStatic()),
                 ("static, Entropy", OnnxStatic(calibrate_method="Entropy")),
                 ("static, Percentile", OnnxStatic(calibrate_method="Percentile")),
                 ("static, per tensor", OnnxStatic(per_channel=False)),
                 ("static, symmetric activations", OnnxStatic(activation_symmetric=True))],
        "openvino": [("nncf, default (mixed, fast bias correction)", OvInt8()),
                     ("nncf, full bias correction", OvInt8(fast_bias_correction=False)),
                     ("nncf, performance preset", OvInt8(preset="performance"))],
        "tflite": [("dynamic range, default (per tensor)", TflDynamic()),
                   ("dynamic range, per channel", TflDynamic(granularity="CHANNELWISE")),
                   ("full int8, default", TflStatic()),
                   ("full int8, attention matmuls int8 too", TflStatic(ops=("FULLY_CONNECTED", "BATCH_MATMUL")))],
    }


def main() -> int:
    ap = common_args(__doc__, seconds=3.0)
    ap.add_argument("--formats", default="onnx,openvino,tflite")
    args = ap.parse_args()

    from edgeify.evaluate import evaluate
    from edgeify.export import get_backend
    from edgeify.runtimes import open_runner
    from edgeify.targets import local

    work = Path(args.work or tempfile.mkdtemp(prefix="edgeify-bench-options-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    loaded, data = pipeline_data(args, Path(args.model))
    family = loaded.family
    rows = []  # (format, label, config, path, accuracy, quantize seconds)
    for fmt in args.formats.split(","):
        backend = get_backend(fmt)
        out = work / fmt
        out.mkdir(exist_ok=True)
        fp32 = backend.export(loaded.model, family, data.calibration.inputs, out)
        acc = evaluate(open_runner(fp32.path, args.threads), data.evaluation, family.task).value
        rows.append((fmt, "fp32", None, fp32.path, acc, 0.0))
        for i, (label, config) in enumerate(variants()[fmt]):
            sub = out / f"v{i}"
            sub.mkdir(exist_ok=True)
            t = time.time()
            art = backend.quantize(fp32, family, data.calibration, config, sub)
            took = time.time() - t
            acc = evaluate(open_runner(art.path, args.threads), data.evaluation, family.task).value
            rows.append((fmt, label, config, art.path, acc, took))
            print(f"{fmt} {label}: {acc:.2f} ({took:.0f} s)", file=sys.stderr)

    feeds = data.evaluation.rows(0, 1)
    lat: list[list[float]] = [[] for _ in rows]
    for r in range(args.rounds):
        for i, row in enumerate(rows):
            lat[i].append(local.measure(row[3], feeds, args.threads, max_seconds=args.seconds)["p50"])
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    p50 = [statistics.median(v) for v in lat]

    rep = {"model": {"params": sum(p.numel() for p in loaded.model.parameters())},
           "data": {"eval": args.data, "n_eval": len(data.evaluation)}}
    metric = "accuracy"
    lines = [*header(args, Path(args.model), family, rep), f"- machine: {machine()}",
             f"- {len(data.calibration)} calibration rows; run took {time.time() - t0:.0f}s", "",
             f"| format | variant | {metric} | Δ vs fp32 | p50 ms (rounds) | vs default | quantize s | config |",
             "|---|---|---|---|---|---|---|---|"]
    fp32_acc, default_p50 = {}, {}
    for (fmt, label, config, _, acc, took), p, rounds in zip(rows, p50, lat):
        if config is None:
            fp32_acc[fmt] = acc
        elif "default" in label:
            default_p50[(fmt, label.split(",")[0])] = p
        base = default_p50.get((fmt, label.split(",")[0]))
        fields = "" if config is None else ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(config).items())
        lines.append(f"| {fmt} | {label} | {acc:.2f} | {acc - fp32_acc[fmt]:+.2f} | {p:.2f} "
                     f"({', '.join(f'{x:.2f}' for x in rounds)}) | {f'{p / base:.2f}x' if base else ''} | "
                     f"{took:.0f} | {fields} |")
    save_result(args.name, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
