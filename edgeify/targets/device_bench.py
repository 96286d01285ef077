"""Time a run's artifacts on the device itself (`--device user@host`), after the host run.

The host's own figures are kept whatever the device does: a device that cannot be
reached, lacks a runtime or times out gets a clear error in the report, and the run goes
on. A connection failure ends the device's turn at once rather than failing per artifact.
A device that measured nothing at all still fails the run (`check`), but only once the
host's report is in place: the user asked for device numbers and got none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from edgeify.errors import EdgeifyError
from edgeify.runtimes import is_decoder
from edgeify.targets.remote import Device, RemoteError, measure_remote
from edgeify.tasks import Task


def measure_on_device(device: Device, artifacts: list[Path], feeds: list[dict[str, np.ndarray]],
                      evaluation: list, task: Task, threads: int, seconds: float,
                      log_fn: Callable[[str], None]) -> list[dict]:
    """One result per artifact: the device's measurement (plus its metric for
    classification), or {"error": why}. `evaluation` holds each artifact's eval Batch."""
    out: list[dict] = []
    unreachable = None
    for path, feed, batch in zip(artifacts, feeds, evaluation):
        if unreachable:
            out.append({"error": unreachable})
            continue
        if is_decoder(path):
            out.append({"error": "cached decoders are not timed on a device yet"})
            continue
        # perplexity on the device would be on plain windows, not the sliding ones used here
        with_eval = not task.causal
        try:
            result = measure_remote(device, path, feed, threads, max_seconds=seconds,
                                    eval_inputs=batch.inputs if with_eval else None,
                                    labels=batch.labels if with_eval else None, task=task if with_eval else None)
        except RemoteError as e:
            msg = str(e)
            log_fn(f"      device: {path.name}: {msg}")
            if "unreachable" in msg or "authentication failed" in msg or "host key" in msg:
                unreachable = msg
            out.append({"error": msg})
            continue
        log_fn(f"      device: {path.name}: p50 {result['p50']:.2f} ms on {result.get('runtime', '?')}")
        out.append(result)
    return out


class DeviceFailed(EdgeifyError):
    """--device measured none of the artifacts; the host's report was written anyway.
    `report` is that report, for callers (the Python API, a search) that want it."""

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message)
        self.report = report


def summary(device: Device | str, results: list[dict]) -> dict:
    """report["device"]: the address, how many artifacts were measured there and how many
    failed, and the first error (None when none failed)."""
    errors = [r["error"] for r in results if "error" in r]
    return {"address": str(device), "measured": len(results) - len(errors), "failed": len(errors),
            "error": errors[0] if errors else None}


def check(report: dict, report_path: Path) -> None:
    """Raise DeviceFailed when --device was given and measured nothing: the exit is 1, and
    the message says the host's report is at `report_path` and why the device failed."""
    status = report.get("device")
    if not status or status["measured"] or not status["failed"]:
        return
    errors = list(dict.fromkeys(a["device"]["error"] for a in report.get("artifacts", [])
                                if "error" in (a.get("device") or {})))
    why = errors[0] if errors else status.get("error")
    n = len(errors) - 1
    more = f" (+{n} other error{'s' if n > 1 else ''}, in the report)" if n > 0 else ""
    raise DeviceFailed(f"the host's report was written to {report_path}, but --device {status['address']} "
                       f"measured none of the {status['failed']} artifacts: {why}{more}", report)
