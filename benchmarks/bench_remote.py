"""Remote timing over SSH vs local timing of the same artifacts, in one run.

targets/remote.py times an artifact with device_runner.py, a standalone mirror of
edgeify's runners and of the child process targets/local.py starts. The mirror is only
worth something if it times like the original: here the "device" is this machine, reached
through a throw-away sshd on 127.0.0.1 (tests/sshd.py), so the same CPU runs both and the
remote / local p50 ratio should be 1.0 within the noise.

The noise is measured, not guessed: every round times each artifact locally twice (A, A')
and remotely once, in a rotating order, each in a fresh process. The local/local ratio
A'/A is the floor the remote/local ratio is judged against.

ELECTRA-small shape (random weights: latency does not depend on them), edgeify's ONNX fp32
and dynamic int8 exports, batch 1.

    python benchmarks/bench_remote.py --name remote-sshd
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT))  # tests/sshd.py: the sshd starter the tests use
from bench_onnx import SHAPES, machine, save_result  # noqa: E402

warnings.filterwarnings("ignore")


def build_artifacts(work: Path, seq_len: int) -> tuple[dict[str, Path], dict, int]:
    """ELECTRA-small-shaped model exported by edgeify: {label: path}, feeds (1, seq_len), params."""
    import numpy as np
    import torch

    from edgeify import families
    from edgeify.export.onnx import DynamicInt8, OnnxBackend

    fam_name, cfg = SHAPES["electra-small"]
    family = families.get(fam_name)
    config_cls, model_cls = family.transformers_classes()
    torch.manual_seed(0)
    model = model_cls(config_cls(**cfg, attn_implementation="eager")).eval()
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, cfg["vocab_size"], size=(4, seq_len)).astype(np.int64)
    sample = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    out = work / "onnx"
    out.mkdir(parents=True, exist_ok=True)
    backend = OnnxBackend()
    fp32 = backend.export(model, family, sample, out)
    int8 = backend.quantize(fp32, family, None, DynamicInt8(), out)
    feeds = {k: v[:1] for k, v in sample.items()}
    return {"onnx fp32": fp32.path, "onnx int8-dynamic": int8.path}, feeds, sum(p.numel() for p in model.parameters())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0, help="timing budget per measurement")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--work", help="work dir (default: a temp dir)")
    args = ap.parse_args()

    from edgeify.targets.local import measure
    from edgeify.targets.remote import measure_remote
    from tests.sshd import local_sshd, missing_reason

    if missing_reason():
        sys.exit(f"cannot start a local sshd: {missing_reason()}")
    work = Path(args.work or tempfile.mkdtemp(prefix="edgeify-bench-remote-"))
    t0 = time.time()
    artifacts, feeds, params = build_artifacts(work, args.seq_len)
    kinds = ("local A", "local A'", "remote")
    p50 = {(a, k): [] for a in artifacts for k in kinds}
    extra = {a: {"remote_wall_s": [], "remote_rss": [], "local_rss": [], "remote_load": [], "local_load": []}
             for a in artifacts}
    with local_sshd(work / "sshd") as sshd:
        device = sshd.device(python=sys.executable)
        for r in range(args.rounds):
            for i, (label, path) in enumerate(artifacts.items()):
                order = kinds[(r + i) % 3:] + kinds[:(r + i) % 3]  # rotate: no kind always goes first
                for kind in order:
                    if kind == "remote":
                        t = time.perf_counter()
                        res = measure_remote(device, path, feeds, args.threads, max_seconds=args.seconds)
                        extra[label]["remote_wall_s"].append(time.perf_counter() - t)
                        extra[label]["remote_rss"].append(res["peak_rss_mb"])
                        extra[label]["remote_load"].append(res["load_s"])
                    else:
                        res = measure(path, feeds, args.threads, max_seconds=args.seconds)
                        extra[label]["local_rss"].append(res["peak_rss_mb"])
                        extra[label]["local_load"].append(res["load_s"])
                    p50[label, kind].append(res["p50"])
                print(f"round {r + 1}/{args.rounds} {label}: " + ", ".join(
                    f"{k}={p50[label, k][-1]:.2f}" for k in kinds), file=sys.stderr)

    med = statistics.median
    lines = [
        f"### {args.name}",
        "",
        f"- model: ELECTRA-small shape ({params:,} params, random init), edgeify ONNX fp32 and dynamic int8; "
        f"batch 1, seq {args.seq_len}, {args.threads} threads, {args.seconds:g} s timing budget per measurement",
        "- device: this machine through a local sshd (tests/sshd.py), the device's Python = this venv's; "
        "remote = `edgeify.targets.remote.measure_remote` (device_runner.py), local = `edgeify.targets.local.measure` "
        "(child.py), each a fresh process",
        f"- {args.rounds} rounds; each round times every artifact locally twice (A, A') and remotely once, "
        "order rotated per round; ratios are per round, then the median and range over the rounds",
        f"- machine: {machine()}",
        f"- run took {time.time() - t0:.0f}s",
        "",
        "| artifact | local p50 ms (rounds) | remote p50 ms (rounds) | remote / local: median (range) | "
        "noise A'/A: median (range) | peak RSS MB local / remote | load s local / remote | remote wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    summary = []
    for label in artifacts:
        loc, rem, loc2 = p50[label, "local A"], p50[label, "remote"], p50[label, "local A'"]
        # remote against the mean of the two local runs of the same round
        ratios = [x / ((a + b) / 2) for x, a, b in zip(rem, loc, loc2)]
        noise = [b / a for a, b in zip(loc, loc2)]
        e = extra[label]
        lines.append(
            f"| {label} | {med(loc + loc2):.2f} ({', '.join(f'{x:.2f}' for x in loc)} / "
            f"{', '.join(f'{x:.2f}' for x in loc2)}) | {med(rem):.2f} ({', '.join(f'{x:.2f}' for x in rem)}) | "
            f"{med(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}) | {med(noise):.3f} "
            f"({min(noise):.3f}-{max(noise):.3f}) | {med(e['local_rss']):.0f} / {med(e['remote_rss']):.0f} | "
            f"{med(e['local_load']):.2f} / {med(e['remote_load']):.2f} | {med(e['remote_wall_s']):.1f} |")
        summary.append(f"{label}: remote/local {med(ratios):.3f} (noise A'/A {med(noise):.3f}, "
                       f"range {min(noise):.3f}-{max(noise):.3f})")
    lines += ["", "Summary: " + "; ".join(summary) + "."]
    save_result(args.name, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
