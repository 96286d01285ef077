"""TFLite through edgeify vs PyTorch eager and vs the plain ai-edge-quantizer recipe, in one
run: fp32, fp16 weights, int8 dynamic range, int8 static, all from one `edgeify --int8
--formats tflite` run, plus `recipe.dynamic_wi8_afp32()` (what the quantizer's README has a
user do first) applied to the same fp32 file.

Every model is timed at batch 1 in a fresh process with the same threads and input, in
interleaved rounds (median of the rounds' p50s): the machine is shared and noisy, so the
ratios count, not the absolute times. Each file is also run on the tflite-runtime 2.14 at
EDGEIFY_TFLITE_PYTHONS (as on Raspberry Pi OS) when set.

    python benchmarks/bench_tflite.py --model DIR --data tweets.csv --name tflite-electra-minilm-tweets
    python benchmarks/bench_tflite.py --shape electra-small --name tflite-electra-small-shape

With --max-accuracy-drop X the accuracy-controlled files (dynamic and static) are built,
timed and listed too, with what each reverted to float.
"""

from __future__ import annotations

import os
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
    return sum(p.stat().st_size for p in path.glob("*.safetensors")) if path.is_dir() else path.stat().st_size


def plain_recipe(fp32: Path, out: Path) -> Path:
    """ai-edge-quantizer's stock dynamic-range recipe (per-channel int8 weights, every op it can)."""
    from ai_edge_quantizer import quantizer, recipe

    qt = quantizer.Quantizer(str(fp32))
    qt.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    qt.quantize().export_model(str(out), overwrite=True)
    return out


def accuracy_on(python: str, model: Path, batch, threads: int) -> float:
    """Accuracy of `model` run by another Python's TFLite runtime (the probe edgeify uses)."""
    import subprocess

    import numpy as np

    from edgeify.runtimes import tflite_runner

    probe = Path(tflite_runner.__file__).with_name("tflite_probe.py")
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "in.npz", **batch.inputs)
        subprocess.run([python, str(probe), str(model), f"{tmp}/in.npz", f"{tmp}/out.npy", str(threads)],
                       check=True, capture_output=True)
        logits = np.load(f"{tmp}/out.npy")
    return float((logits.argmax(-1) == batch.labels).mean() * 100)


CONTROLLED = ("int8-dynamic-accuracy-controlled", "int8-static-accuracy-controlled")


def controlled_notes(rep: dict, p50: dict, labels: dict) -> list[str]:
    """One line per accuracy-controlled file: the drops, what went back to float, and its
    latency against the uncontrolled file of the same base."""
    lines = []
    for a in rep["artifacts"]:
        n = a["notes"]
        if a["precision"] not in CONTROLLED:
            continue
        plain = a["precision"].replace("-accuracy-controlled", "")
        lines += ["", f"{a['precision']}: initial drop {n['initial_int8_drop']:g}, final {n['final_drop']:g} "
                      f"({'within' if n['within_budget'] else 'NOT within'} {a['config']['max_drop']:g}); "
                      f"{len(n['reverted_to_float'])} of {n['ranking']['layers_ranked']} ranked layers float; "
                      f"latency {p50[labels[a['precision']]] / p50[labels[plain]]:.2f}x {plain}"]
        lines += [f"  - {layer}" for layer in n["reverted_to_float"]]
    return lines


def main() -> int:
    args = common_args(__doc__, seconds=4.0).parse_args()

    from edgeify.evaluate import evaluate
    from edgeify.runtimes import open_runner
    from edgeify.runtimes.tflite_runner import check_runtimes
    from edgeify.targets import local

    work = Path(args.work or tempfile.mkdtemp(prefix="edgeify-bench-tflite-"))
    work.mkdir(parents=True, exist_ok=True)
    model_dir = Path(args.model) if args.model else build_shape(args.shape, work / "model")
    t0 = time.time()
    rep, values, paths = edgeify_int8_run(args, "tflite", work, model_dir)
    metric = rep["baseline"]["metric"]["name"]
    on_pi = {a["precision"]: [r for r in a["notes"].get("runtimes", []) if r["runtime"].startswith("tflite-runtime")]
             for a in rep["artifacts"]}

    loaded, data = pipeline_data(args, model_dir)
    family = loaded.family
    paths["plain"] = plain_recipe(paths["fp32"], work / "plain.dynamic_wi8_afp32.tflite")
    values["plain"] = evaluate(open_runner(paths["plain"], args.threads), data.evaluation, family.task).value
    probe = {n: data.calibration.inputs[n][:4] for n in family.onnx_inputs}
    checks = check_runtimes(paths["plain"], probe, open_runner(paths["plain"], 1).run(probe))
    on_pi["plain"] = [c for c in checks if c["runtime"].startswith("tflite-runtime")]

    # the whole evaluation set on tflite-runtime 2.14 too: what a Pi user would measure
    pi_python = next((p for p in os.environ.get("EDGEIFY_TFLITE_PYTHONS", "").split(os.pathsep) if p), None)
    on_pi_acc = {}
    if pi_python and not family.task.causal:
        # ~2.5 min per file there (1000 rows): the files a Pi user would take; the others'
        # 2.14 check on 32 rows is in the last column anyway
        for key in ("fp32", "int8-dynamic", "int8-static", "plain"):
            on_pi_acc[key] = accuracy_on(pi_python, paths[key], data.evaluation, args.threads)
            print(f"{key} on tflite-runtime 2.14: {on_pi_acc[key]:.2f}", file=sys.stderr)

    runs = [("PyTorch fp32 eager", "pytorch"), ("TFLite fp32", "fp32"), ("TFLite fp16 weights", "fp16"),
            ("edgeify TFLite int8 dynamic range", "int8-dynamic"),
            *[("edgeify TFLite int8 dynamic range, per channel", k) for k in ("int8-dynamic-per-channel",) if k in paths],
            ("edgeify TFLite int8 static", "int8-static"),
            *[(f"edgeify TFLite {key}", key) for key in CONTROLLED if key in paths],
            ("plain ai-edge-quantizer dynamic_wi8_afp32", "plain")]
    feeds = data.evaluation.rows(0, 1)
    lat: dict[str, list[float]] = {label: [] for label, _ in runs}
    for r in range(args.rounds):
        for label, key in runs:
            lat[label].append(local.measure(paths[key], feeds, args.threads, max_seconds=args.seconds)["p50"])
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k}={v[-1]:.2f}" for k, v in lat.items()),
              file=sys.stderr)
    p50 = {k: statistics.median(v) for k, v in lat.items()}

    def pi(key: str) -> str:
        c = on_pi.get(key)
        if not c:
            return "not checked"
        c = c[0]
        verdict = "same results" if c["same_results"] else (c.get("error") or "WRONG")
        if c.get("runs"):
            verdict += (f" (mean diff {c['mean_abs_diff_relative']:.0%}, argmax agree "
                        f"{c['argmax_agreement_pct']:.0f}%)")
        if key in on_pi_acc:
            verdict += f"; {metric} there {on_pi_acc[key]:.2f}"
        return verdict

    base, t32 = p50["PyTorch fp32 eager"], p50["TFLite fp32"]
    s32 = size_of(paths["fp32"])
    lines = [
        *header(args, model_dir, family, rep),
        f"- machine: {machine()}, ai-edge-litert {rep['versions'].get('ai-edge-litert')}, "
        f"ai-edge-quantizer {rep['versions'].get('ai-edge-quantizer')}, litert-torch {rep['versions'].get('litert-torch')}",
        f"- run took {time.time() - t0:.0f}s",
        "",
        f"| model | {metric} | Δ vs PyTorch | p50 ms (rounds) | vs PyTorch eager | vs TFLite fp32 | size MB "
        "| size vs TFLite fp32 | tflite-runtime 2.14 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, key in runs:
        v, size = values[key], size_of(paths[key])
        lines.append(f"| {label} | {v:.2f} | {v - values['pytorch']:+.2f} | {p50[label]:.2f} "
                     f"({', '.join(f'{x:.2f}' for x in lat[label])}) | {p50[label] / base:.2f}x | "
                     f"{p50[label] / t32:.2f}x | {size / 2**20:.1f} | {size / s32:.2f}x | "
                     f"{'' if key == 'pytorch' else pi(key)} |")
    best = min(("int8-dynamic", "int8-static"), key=lambda k: p50[[lb for lb, kk in runs if kk == k][0]])
    best_label = [lb for lb, kk in runs if kk == best][0]
    lines += ["",
              f"Fastest edgeify int8 ({best}): latency {p50[best_label] / t32:.2f}x TFLite fp32 (target <= 0.7x), "
              f"file {size_of(paths[best]) / s32:.2f}x (target <= 0.3x), {metric} "
              f"{values[best] - values['pytorch']:+.2f} vs PyTorch fp32 (target: drop <= 1.5)."]
    lines += controlled_notes(rep, p50, {key: label for label, key in runs})
    save_result(args.name, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
