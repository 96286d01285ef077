"""What the pipeline measured, as the report's rows: one dict per timed model.

Each row is built from the record of the thing it describes (a `Built` artifact with its
evaluation, the `Baseline`, a `Stage`) and that thing's timing, looked up by key, so
nothing is matched up by its position in a list.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass
from pathlib import Path

from edgeify import compress, targets
from edgeify.evaluate import metric_delta, parity
from edgeify.report import versions as library_versions


@dataclass(frozen=True)
class Built:
    """One artifact of one format at one length, and its evaluation."""

    artifact: object  # export.Artifact
    result: object    # evaluate.EvalResult
    seq_len: int


@dataclass(frozen=True)
class Baseline:
    """The PyTorch fp32 model as given: its directory, size, and evaluation per length."""

    path: Path
    size_bytes: int
    results: dict  # seq_len -> EvalResult


@dataclass(frozen=True)
class Stage:
    """One compression stage's PyTorch model: where it is saved, the data prepared for its
    tokenizer, and its report row (without timings until they are measured)."""

    path: Path
    data: object  # calibration.datasets.Prepared
    row: dict


def weights_size(model_dir: Path) -> int:
    return (sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
            or sum(p.stat().st_size for p in model_dir.glob("*.bin")))


def latency(bench: dict) -> dict:
    return {"p50": bench["p50"], "p90": bench["p90"], "mean": bench["mean"],
            "runs": bench["runs"], "rounds_p50": bench.get("rounds_p50")}


def baseline_entry(baseline: Baseline, seq_len: int, bench: dict, root: Path) -> dict:
    return _entry("pytorch", "fp32", baseline.path, baseline.size_bytes, baseline.results[seq_len], bench,
                  root, seq_len)


def artifact_entry(built: Built, bench: dict, root: Path, baseline: Baseline, baseline_bench: dict,
                   exported_result) -> dict:
    """An artifact's row, compared with PyTorch at its length; parity is with the PyTorch
    model that was exported (after compression, if any)."""
    art, result = built.artifact, built.result
    entry = _entry(art.format, art.precision, art.path, art.size_bytes, result, bench, root, built.seq_len)
    entry["metric_delta"] = round(metric_delta(result.value, baseline.results[built.seq_len].value,
                                               result.metric), 4)
    entry["parity"] = parity(result, exported_result) if exported_result is not None else None
    entry["speedup_vs_baseline"] = round(baseline_bench["p50"] / bench["p50"], 3)
    if art.config is not None:
        entry["config"] = art.config
    if art.notes:
        entry["notes"] = art.notes
    return entry


def add_stage_timing(row: dict, bench: dict, baseline_bench: dict, baseline_result) -> None:
    """A compression stage's row gets its latency, once timed beside the others."""
    row["latency_ms"] = {"p50": bench["p50"], "p90": bench["p90"], "rounds_p50": bench.get("rounds_p50")}
    if bench.get("generation"):
        row["generation"] = bench["generation"]
    row["speedup_vs_baseline"] = round(baseline_bench["p50"] / bench["p50"], 3)
    row["metric_delta"] = round(metric_delta(row["metric"]["value"], baseline_result.value,
                                             baseline_result.metric), 4)


def _entry(fmt: str, precision: str, path: Path, size: int, result, bench: dict, root: Path, seq_len: int) -> dict:
    return {
        "format": fmt, "precision": precision, "path": str(Path(path).relative_to(root)), "seq_len": seq_len,
        "size_bytes": size, "metric": result.as_dict(), "latency_ms": latency(bench),
        "peak_rss_mb": bench["peak_rss_mb"], "runtime": bench["runtime"],
        **({"generation": bench["generation"]} if bench.get("generation") else {}),
        "executed_precision": bench["precision"], "threads": bench["threads"],
        # True only when timed on the target device itself (here: host and its ISA caps)
        "measured": bench.get("on_target", True),
    }


def report_dict(config, loaded, data, target, threads: int, baselines: dict, stages, timing: dict,
                entries: list[dict], selection, plan, device_summary) -> dict:
    """report.json's content (report.write turns it into files)."""
    family, main_len = loaded.family, config.seq_len
    versions = library_versions()
    return {
        "edgeify_version": versions.get("edgeify", "unknown"),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": {**asdict(config), "compress": [compress.describe(c) for c in config.compress]},
        "model": {"id": loaded.model_id, "family": family.name, "task": family.task.name,
                  "params": loaded.params, "source": loaded.source,
                  **({"starter": loaded.starter} if loaded.starter else {})},
        "data": {**data.main.report(), "seq_len": main_len, "seq_lens": list(data.lengths),
                 **({"eval_context": data.contexts[main_len]} if family.task.causal else {}),
                 **({"labels": data.main.labels} if data.main.labels else {})},
        "target": {"name": target.name, "description": target.description,
                   "threads": target.threads, "measured": target.measured, "timing_threads": threads,
                   "env": dict(target.env), "cpu": targets.cpu_description()},
        "baseline": baselines[main_len],
        # PyTorch at the other --seq-len values, the reference for artifacts of that length
        "other_baselines": [baselines[n] for n in data.lengths[1:]],
        # each compression stage's PyTorch model: what every stage bought
        "stages": [st.row for st in stages],
        "timing": timing,
        "artifacts": entries,
        **({"device": device_summary} if device_summary is not None else {}),
        "selection": selection,
        "plan": asdict(plan),
        "versions": versions,
    }
