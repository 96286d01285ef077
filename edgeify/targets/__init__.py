"""Hardware targets: what a run is tuned for and timed on.

`host` is the machine edgeify runs on. `x86-avx2` is the same machine with the CPU's
instruction set capped at AVX2 for the runtimes that honour a cap, so an AVX2-only
server (no AVX-512, no VNNI) is timed for real rather than guessed. `rpi4` / `rpi5` are
Raspberry Pis: edgeify cannot time them from here (latency in the report is this host's,
and says so), but it refuses any TFLite file their runtime cannot load or computes wrongly.
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
    # Environment for the timing process (e.g. an ISA cap), as (name, value) pairs.
    env: tuple[tuple[str, str], ...] = ()
    # Why a format is missing from `formats`, for the error a user sees.
    refused: tuple[tuple[str, str], ...] = ()
    # The TFLite runtime the device has (a key of runtimes.tflite_ops.TABLES), or "".
    tflite_runtime: str = ""

    def check_format(self, fmt: str) -> None:
        if fmt not in self.formats:
            why = dict(self.refused).get(fmt, "not available on this target")
            raise UsageError(f"target {self.name!r} cannot run format {fmt!r}: {why}; "
                             f"formats here: {', '.join(self.formats)}")

    def refusal(self, fmt: str, notes: dict) -> str | None:
        """Why this target will not take an artifact (from its export notes), or None.

        A TFLite file is refused when the device's runtime lacks one of its ops or op
        versions (the measured op table), or when it was run on that runtime and failed or
        gave other results than the runtime it was built with."""
        if fmt != "tflite" or not self.tflite_runtime:
            return None
        missing = (notes.get("ops_missing_in") or {}).get(self.tflite_runtime)
        if missing:
            return f"{self.name} has {self.tflite_runtime}, which cannot load {', '.join(missing)}"
        for check in notes.get("runtimes", []):
            if check["runtime"].startswith(self.tflite_runtime) and not check.get("same_results"):
                what = check.get("error") or (
                    f"results differ: mean |diff| {check.get('mean_abs_diff_relative', 0):.0%} of the mean "
                    f"|logit|, argmax agreement {check.get('argmax_agreement_pct')}%")
                return f"{self.name} has {self.tflite_runtime}, on which this file does not run correctly ({what})"
        return None


def _cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or psutil.cpu_count() or 1


def _host() -> Target:
    import platform

    return Target("host", f"this machine ({platform.machine()}, {_cores()} physical cores)",
                  threads=_cores(), formats=("onnx", "openvino", "tflite"), measured=True)


# oneDNN (inside OpenVINO's CPU plugin and PyTorch) reads ONEDNN_MAX_CPU_ISA; PyTorch's
# own vectorised kernels read ATEN_CPU_CAPABILITY, and MKL reads MKL_ENABLE_INSTRUCTIONS.
# benchmarks/bench_openvino.py times the cap to show it takes effect.
AVX2_ENV = (("ONEDNN_MAX_CPU_ISA", "AVX2"), ("ATEN_CPU_CAPABILITY", "avx2"),
            ("MKL_ENABLE_INSTRUCTIONS", "AVX2"))


def _x86_avx2() -> Target:
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        raise UsageError(f"target 'x86-avx2' is timed by capping this CPU to AVX2, "
                         f"which needs an x86-64 host, not {platform.machine()}")
    return Target(
        "x86-avx2", f"this machine capped to AVX2 (no AVX-512, no VNNI), {_cores()} cores",
        threads=_cores(), formats=("openvino",), measured=True, env=AVX2_ENV,
        refused=(("onnx", "onnxruntime has no switch to cap its kernels to AVX2, so its "
                          "timing here would be AVX-512 timing"),
                 ("tflite", "XNNPACK has no switch to cap its kernels to AVX2, so its timing "
                            "here would be AVX-512 timing")))


def _pi(name: str, board: str) -> Target:
    return Target(
        name, f"{board}; TFLite through tflite-runtime 2.14 (what Raspberry Pi OS gets from pip); "
              "not timed from here: latency is this host's",
        threads=4, formats=("tflite", "onnx"), measured=False,
        refused=(("openvino", "edgeify does not build OpenVINO for ARM boards"),),
        tflite_runtime="tflite-runtime 2.14")


_TARGETS = {
    "host": _host,
    "x86-avx2": _x86_avx2,
    "rpi4": lambda: _pi("rpi4", "Raspberry Pi 4 (4x Cortex-A72 1.5 GHz, 1-8 GB; no int8 dot-product instructions)"),
    "rpi5": lambda: _pi("rpi5", "Raspberry Pi 5 (4x Cortex-A76 2.4 GHz, 2-16 GB; SDOT int8 dot product)"),
}
# `rpi` is the Pi most users have: the Pi 4 (2019) is still the most common board in use.
ALIASES = {"rpi": "rpi4"}


def names() -> list[str]:
    return sorted(_TARGETS)


def get(name: str) -> Target:
    name = ALIASES.get(name, name)
    if name not in _TARGETS:
        raise UsageError(f"unknown target {name!r}; accepted: {', '.join(names())} "
                         f"(aliases: {', '.join(f'{a} = {t}' for a, t in ALIASES.items())})")
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
