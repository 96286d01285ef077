"""The `--device` part of report.md and of the terminal summary (edgeify/report.py).

The host's table holds what was timed on this host; what the device itself measured (or
why it could not) goes in a table of its own, so no host figure is ever read as the
device's, nor a device failure missed.
"""

from __future__ import annotations


def _fmt(value, digits=2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def address(report: dict) -> str | None:
    """The device the run was given: from report["device"], else --device in the config
    (a report written before report["device"] existed), else a measurement's own."""
    status = report.get("device") or {}
    if status.get("address"):
        return status["address"]
    if (report.get("config") or {}).get("device"):
        return report["config"]["device"]
    return next((a["device"].get("device") for a in report.get("artifacts", []) if a.get("device")
                 and a["device"].get("device")), None)


def has_device(report: dict) -> bool:
    """True when the run had --device: some artifact carries a device result."""
    return any("device" in a for a in report.get("artifacts", []))


def status_line(report: dict) -> str | None:
    """One sentence on how the device did, for the section's head; None without --device."""
    if not has_device(report):
        return None
    results = [a["device"] for a in report["artifacts"] if "device" in a]
    ok = sum(1 for r in results if "error" not in r)
    if ok == len(results):
        return f"All {ok} artifacts were timed on the device itself, with its own runtime."
    if ok == 0:
        return (f"**The device measured none of the {len(results)} artifacts**: every figure in the host's "
                "table above is this host's, not the device's. The run exits 1 after writing this report.")
    return f"{ok} of {len(results)} artifacts were timed on the device; the others failed (status column)."


def rows(report: dict) -> list[dict]:
    """One row per artifact with a device result: the device's metric, p50 and p90 beside
    the host's p50, the device's runtime, and "measured" or the error."""
    main_len = report["baseline"].get("seq_len")
    out = []
    for a in report.get("artifacts", []):
        if "device" not in a:
            continue
        dev = a["device"] or {}
        seq = f" seq{a['seq_len']}" if a.get("seq_len", main_len) != main_len else ""
        metric = dev.get("metric") or {}
        out.append({
            "artifact": f"{a['format']} {a['precision']}{seq}" + (" *" if a.get("selected") else ""),
            "metric": _fmt(metric.get("value")),
            "p50": _fmt(dev.get("p50")), "p90": _fmt(dev.get("p90")),
            "host_p50": _fmt((a.get("latency_ms") or {}).get("p50")),
            "runtime": str(dev.get("runtime") or "-"),
            "status": f"error: {dev['error']}" if "error" in dev else "measured",
        })
    return out


def _headers(report: dict) -> dict[str, str]:
    return {"artifact": "artifact", "metric": f"device {report['baseline']['metric']['name']}",
            "p50": "device p50 ms", "p90": "device p90 ms", "host_p50": "host p50 ms",
            "runtime": "device runtime", "status": "status"}


def title(report: dict) -> str:
    return f"Measured on the device {address(report) or '(unknown address)'}"


def markdown_lines(report: dict) -> list[str]:
    """report.md's device section (empty without --device)."""
    if not has_device(report):
        return []
    heads = _headers(report)
    lines = [f"## {title(report)}", "", status_line(report), "",
             "| " + " | ".join(heads.values()) + " |", "|" + "|".join("---" for _ in heads) + "|"]
    lines += ["| " + " | ".join(r[k].replace("|", "\\|").replace("\n", " ") for k in heads) + " |"
              for r in rows(report)]
    return lines + [""]


def terminal_lines(report: dict) -> list[str]:
    """The device table printed under the host's on the terminal (empty without --device)."""
    if not has_device(report):
        return []
    heads, data = _headers(report), rows(report)
    widths = {k: max(len(heads[k]), *(len(r[k]) for r in data)) for k in heads}
    return ["", f"{title(report)}: {status_line(report)}",
            "  ".join(heads[k].ljust(widths[k]) for k in heads).rstrip(),
            "  ".join("-" * widths[k] for k in heads),
            *("  ".join(r[k].ljust(widths[k]) for k in heads).rstrip() for r in data)]


def latency_where(report: dict) -> str:
    """How report.md's "latency:" line says where the figures were timed: the host's table
    is always this host (its CPU, capped to a target's ISA where one is set), a target that
    is not timed here says so, and --device names the section that is the device's."""
    t = report["target"]
    threads = t.get("timing_threads") or t.get("threads")
    if not t.get("measured"):
        where = f"timed on this host ({t.get('cpu')}) with {threads} threads, not on {t['name']}"
    elif t["name"] == "host":
        where = f"measured on this host ({t.get('cpu')}) with {threads} threads"
    else:
        where = f"measured on this host ({t.get('cpu')}) as target {t['name']}, {threads} threads"
    if has_device(report):
        where += (f"; the host's table is this host's, the section \"{title(report)}\" is the device's own "
                  "measurement")
    return where
