"""Hardware targets: what a run is tuned for and timed on.

Only `host` exists so far: the machine edgeify runs on, timed for real.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeify.errors import UsageError


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    threads: int
    formats: tuple[str, ...]
    measured: bool  # True: latency is timed on the device itself


def _host() -> Target:
    import platform

    import psutil

    cores = psutil.cpu_count(logical=False) or psutil.cpu_count() or 1
    return Target("host", f"this machine ({platform.machine()}, {cores} physical cores)",
                  threads=cores, formats=("onnx",), measured=True)


_TARGETS = {"host": _host}


def names() -> list[str]:
    return sorted(_TARGETS)


def get(name: str) -> Target:
    if name not in _TARGETS:
        raise UsageError(f"unknown target {name!r}; accepted: {', '.join(names())}")
    return _TARGETS[name]()


def cpu_description() -> str:
    """CPU model and the ISA features that decide int8 speed."""
    import platform

    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("", platform.machine()):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "avx_vnni") if f in flags]
    return f"{model} [{' '.join(isa)}]" if isa else model
