"""OpenVINO through edgeify vs PyTorch eager, in one run: fp32, fp16 weights, NNCF int8;
dynamic vs static shapes; the host CPU vs the same CPU capped to AVX2 (target x86-avx2);
and the stock path a user would try instead: `nncf.quantize(model, nncf.Dataset(rows),
model_type=nncf.ModelType.TRANSFORMER)` on the same fp32 IR and calibration rows, saved with
`ov.save_model`'s defaults. With --max-accuracy-drop X also edgeify's accuracy-controlled IR.

Every model is timed at batch 1 in a fresh process with the same threads and input, in
interleaved rounds (median of the rounds' p50s): the machine is shared and noisy, so the
ratios count, not the absolute times.

    python benchmarks/bench_openvino.py --model DIR --data tweets.csv --name ov-electra-minilm-tweets
    python benchmarks/bench_openvino.py --shape electra-small --name ov-electra-small-shape
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_onnx import build_shape, common_args, edgeify_int8_run, header, machine, pipeline_data, save_result  # noqa: E402

warnings.filterwarnings("ignore")


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.glob("*.safetensors"))
    return path.stat().st_size + (path.with_suffix(".bin").stat().st_size if path.suffix == ".xml" else 0)


def stock_nncf(fp32: Path, calibration, family, out: Path) -> Path:
    """What NNCF's documentation has a user write for a transformer. Timed and evaluated as
    edgeify's int8 row is (f32 for the float part, the rt_info edgeify's runner reads), so
    the two differ only in how they were quantized and saved."""
    import nncf
    import openvino as ov

    from edgeify.contract import OV_BIN_SHA256, OV_PRECISION

    quantized = nncf.quantize(ov.Core().read_model(str(fp32)), nncf.Dataset(calibration.samples(family.onnx_inputs)),
                              model_type=nncf.ModelType.TRANSFORMER)
    quantized.set_rt_info("f32", list(OV_PRECISION))
    quantized.set_rt_info("", list(OV_BIN_SHA256))  # the fp32 IR's checksum, read in with it, is not this .bin's
    ov.save_model(quantized, str(out))
    return out


def main() -> int:
    ap = common_args(__doc__, seconds=4.0)
    ap.add_argument("--no-avx2", action="store_true", help="skip the AVX2-capped timings")
    args = ap.parse_args()

    from edgeify.runtimes.openvino_runner import SHAPES_ENV
    from edgeify import targets
    from edgeify.targets import local

    AVX2_ENV = targets.get("x86-avx2").env  # the profile's ONEDNN_MAX_CPU_ISA cap

    work = Path(args.work or tempfile.mkdtemp(prefix="edgeify-bench-ov-"))
    work.mkdir(parents=True, exist_ok=True)
    model_dir = Path(args.model) if args.model else build_shape(args.shape, work / "model")
    t0 = time.time()
    rep, values, paths = edgeify_int8_run(args, "openvino", work, model_dir)
    metric = rep["baseline"]["metric"]["name"]

    from edgeify.evaluate import evaluate
    from edgeify.runtimes import open_runner

    loaded, full = pipeline_data(args, model_dir)  # the pipeline's own split, for the stock path
    paths["stock"] = stock_nncf(paths["fp32"], full.calibration, loaded.family, work / "stock.int8.xml")
    values["stock"] = evaluate(open_runner(paths["stock"], args.threads), full.evaluation, loaded.family.task).value
    print(f"stock nncf.quantize: {values['stock']:.2f} ({values['int8']:.2f} edgeify int8)", file=sys.stderr)

    dyn, static = ((SHAPES_ENV, "dynamic"),), ((SHAPES_ENV, "static"),)
    # (label, artifact key, env)
    runs = [("PyTorch fp32 eager", "pytorch", ()),
            ("OpenVINO fp32, dynamic shapes", "fp32", dyn),
            ("OpenVINO fp32, static shapes", "fp32", static),
            ("OpenVINO fp16 weights (runs bf16)", "fp16", dyn),
            ("OpenVINO int8, dynamic shapes", "int8", dyn),
            ("OpenVINO int8, static shapes", "int8", static),
            *[("OpenVINO int8 accuracy-controlled", k, dyn) for k in ("int8-accuracy-controlled",) if k in paths],
            ("stock nncf.quantize (TRANSFORMER)", "stock", dyn)]
    if not args.no_avx2:
        runs += [("x86-avx2: PyTorch fp32 eager", "pytorch", AVX2_ENV),
                 ("x86-avx2: OpenVINO fp32", "fp32", AVX2_ENV + dyn),
                 ("x86-avx2: OpenVINO fp16 weights (runs f32)", "fp16", AVX2_ENV + dyn),
                 ("x86-avx2: OpenVINO int8", "int8", AVX2_ENV + dyn)]

    loaded, data = pipeline_data(args, model_dir, n_calibration=8, n_eval=16, n_wanted=200)
    family = loaded.family
    feeds = data.evaluation.rows(0, 1)

    lat: dict[str, list[float]] = {label: [] for label, _, _ in runs}
    ran: dict[str, str] = {}
    for r in range(args.rounds):
        for label, key, env in runs:
            res = local.measure(paths[key], feeds, args.threads, max_seconds=args.seconds, env=env)
            lat[label].append(res["p50"])
            ran[label] = res["precision"]
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k}={v[-1]:.2f}" for k, v in lat.items()),
              file=sys.stderr)
    p50 = {k: statistics.median(v) for k, v in lat.items()}

    base = p50["PyTorch fp32 eager"]
    ov32 = p50["OpenVINO fp32, dynamic shapes"]
    lines = [
        *header(args, model_dir, family, rep),
        f"- machine: {machine()}, openvino {rep['versions'].get('openvino')}, nncf {rep['versions'].get('nncf')}",
        f"- run took {time.time() - t0:.0f}s",
        "",
        f"| model | ran as | {metric} | Δ vs PyTorch | p50 ms (rounds) | vs PyTorch eager | vs OpenVINO fp32 | size MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, key, _ in runs:
        v = values[key]
        lines.append(f"| {label} | {ran[label]} | {v:.2f} | {v - values['pytorch']:+.2f} | {p50[label]:.2f} "
                     f"({', '.join(f'{x:.2f}' for x in lat[label])}) | {p50[label] / base:.2f}x | "
                     f"{p50[label] / ov32:.2f}x | {size_of(paths[key]) / 2**20:.1f} |")
    best_int8 = min(p50["OpenVINO int8, dynamic shapes"], p50["OpenVINO int8, static shapes"])
    lines += ["",
              f"OpenVINO int8 vs OpenVINO fp32: {p50['OpenVINO int8, dynamic shapes'] / ov32:.2f}x (dynamic), "
              f"{best_int8 / ov32:.2f}x (best shape mode); vs PyTorch fp32 eager: "
              f"{p50['OpenVINO int8, dynamic shapes'] / base:.2f}x; int8 {metric} "
              f"{values['int8'] - values['fp32']:+.2f} vs OpenVINO fp32.",
              f"Static / dynamic shapes: fp32 {p50['OpenVINO fp32, static shapes'] / ov32:.2f}x, "
              f"int8 {p50['OpenVINO int8, static shapes'] / p50['OpenVINO int8, dynamic shapes']:.2f}x."]
    if not args.no_avx2:
        lines.append(
            f"AVX2 cap: OpenVINO fp32 {p50['x86-avx2: OpenVINO fp32'] / ov32:.2f}x host, int8 "
            f"{p50['x86-avx2: OpenVINO int8'] / p50['OpenVINO int8, dynamic shapes']:.2f}x host, "
            f"PyTorch {p50['x86-avx2: PyTorch fp32 eager'] / base:.2f}x host; on x86-avx2 int8 is "
            f"{p50['x86-avx2: OpenVINO int8'] / p50['x86-avx2: OpenVINO fp32']:.2f}x fp32.")
    save_result(args.name, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
