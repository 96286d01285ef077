"""Hardware targets: what a run is tuned for and timed on.

Each target is a data file in profiles/ (one TOML per device: cores, ISA, memory,
bandwidth, peak rates, runtimes and formats, and where the numbers come from); adding a
device is adding a file. `host` is the machine edgeify runs on, its zeros read off it.
`x86-avx2` is this machine with the CPU's instruction set capped at AVX2 for the runtimes
that honour a cap, so it is timed for real. A device edgeify cannot time from here (a
Raspberry Pi, a phone) gets this host's latency plus a roofline estimate for the device,
labelled as such; it still refuses any TFLite file the device's runtime cannot load.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

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
    aliases: tuple[str, ...] = ()
    arch: str = ""
    cores: int = 0
    isa: tuple[str, ...] = ()       # the features that decide speed: dotprod, fp16, avx512_vnni, ...
    memory_mb: int = 0
    bandwidth_gbs: float = 0.0      # 0: not known yet (the host's is measured when needed)
    # peak rates in G ops/s for the whole device, by compute precision (fp32, fp16, bf16,
    # int8); missing = no native support (runs at another precision's rate)
    peak_gops: dict[str, float] = field(default_factory=dict)
    runtimes: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    default_formats: tuple[str, ...] = ()  # built when the user names none

    def __post_init__(self):
        if not self.default_formats:
            object.__setattr__(self, "default_formats", self.formats[:1])

    def check_format(self, fmt: str) -> None:
        if fmt not in self.formats:
            why = dict(self.refused).get(fmt, "not available on this target")
            raise UsageError(f"target {self.name!r} cannot run format {fmt!r}: {why}; "
                             f"formats here: {', '.join(self.formats)}")

    def refusal(self, fmt: str, notes: dict) -> str | None:
        """Why this target will not take an artifact (from its export notes), or None.

        A profile may pin the TFLite runtime its device has (`tflite_runtime`). A file that
        runtime runs (its format's record says so) is refused when the runtime lacks one of
        its ops or op versions (the measured op table), when it holds what that runtime is
        known to compute wrongly (per-channel dynamic-range weights in tflite-runtime 2.14),
        or when it was run on that runtime and failed or gave other results than the runtime
        it was built with."""
        from edgeify.runtimes import formats

        if not self.tflite_runtime or fmt not in formats.names() or formats.get(fmt).runtime != "tflite":
            return None
        missing = (notes.get("ops_missing_in") or {}).get(self.tflite_runtime)
        if missing:
            return f"{self.name} has {self.tflite_runtime}, which cannot load {', '.join(missing)}"
        wrong = (notes.get("known_wrong_on") or {}).get(self.tflite_runtime)
        if wrong:
            return f"{self.name} has {self.tflite_runtime}: {wrong}"
        for check in notes.get("runtimes", []):
            if check["runtime"].startswith(self.tflite_runtime) and not check.get("same_results"):
                what = check.get("error") or (
                    f"results differ: mean |diff| {check.get('mean_abs_diff_relative', 0):.0%} of the mean "
                    f"|logit|, argmax agreement {check.get('argmax_agreement_pct')}%")
                return f"{self.name} has {self.tflite_runtime}, on which this file does not run correctly ({what})"
        return None


PROFILES = Path(__file__).parent / "profiles"


def _cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or psutil.cpu_count() or 1


def _memory_mb() -> int:
    import psutil

    return int(psutil.virtual_memory().total / 2**20)


def _formats(listed) -> tuple[str, ...]:
    """A profile's formats; "all" (this host) is every format registered (runtimes.formats),
    so a format added by registration alone runs here."""
    if listed == "all":
        from edgeify.runtimes import formats

        return tuple(formats.names())
    return tuple(listed)


def _load(path: Path) -> Target:
    with open(path, "rb") as f:
        data = tomllib.load(f)
    try:
        return Target(
            name=data["name"], description=data["description"], threads=int(data["threads"]),
            formats=_formats(data["formats"]), measured=bool(data["measured"]),
            env=tuple(tuple(pair) for pair in data.get("env", ())),
            refused=tuple(data.get("refused", {}).items()), tflite_runtime=data.get("tflite_runtime", ""),
            aliases=tuple(data.get("aliases", ())), arch=data.get("arch", ""), cores=int(data["cores"]),
            isa=tuple(data.get("isa", ())), memory_mb=int(data.get("memory_mb", 0)),
            bandwidth_gbs=float(data.get("bandwidth_gbs", 0.0)),
            peak_gops={k: float(v) for k, v in data.get("peak_gops", {}).items() if v},
            runtimes=tuple(data.get("runtimes", ())), sources=tuple(data.get("sources", ())),
            default_formats=tuple(data.get("default_formats", ())))
    except KeyError as e:
        raise ValueError(f"target profile {path} lacks {e.args[0]!r}") from None


def _on_this_host(t: Target) -> Target:
    """Fill a profile's zeros from this machine; a profile whose CPU flags this host has
    (x86-avx512-vnni on a VNNI host) is this host, timed for real."""
    import platform

    flags = cpu_flags()
    if t.name == "host" or t.name == "x86-avx2" or (t.arch == platform.machine() and t.isa and set(t.isa) <= flags):
        cores = _cores()
        desc = t.description
        if t.name == "host":
            desc = f"this machine ({platform.machine()}, {cores} physical cores)"
        elif not t.measured:
            desc += f" — this host has it: timed here with its {cores} cores"
        return replace(t, description=desc, measured=True, cores=cores, threads=cores, memory_mb=_memory_mb(),
                       peak_gops={}, bandwidth_gbs=0.0,  # this machine's: measured when an estimate needs them
                       arch=t.arch or platform.machine(),
                       isa=t.isa or tuple(f for f in ISA_FLAGS if f in flags))
    return t


@lru_cache(maxsize=1)
def _profiles() -> dict[str, Path]:
    return {p.stem: p for p in sorted(PROFILES.glob("*.toml"))}


def _aliases() -> dict[str, str]:
    out = {}
    for name, path in _profiles().items():
        with open(path, "rb") as f:
            for alias in tomllib.load(f).get("aliases", ()):
                out[alias] = name
    return out


def names() -> list[str]:
    return sorted(_profiles())


def get(name: str) -> Target:
    aliases = _aliases()
    name = aliases.get(name, name)
    if name not in _profiles():
        raise UsageError(f"unknown target {name!r}; accepted: {', '.join(names())} "
                         f"(aliases: {', '.join(f'{a} = {t}' for a, t in sorted(aliases.items()))})")
    target = _on_this_host(_load(_profiles()[name]))
    if name == "x86-avx2":
        import platform

        if platform.machine().lower() not in ("x86_64", "amd64"):
            raise UsageError(f"target 'x86-avx2' is timed by capping this CPU to AVX2, "
                             f"which needs an x86-64 host, not {platform.machine()}")
    return target


ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "avx_vnni",
             "neon", "asimd", "asimddp", "dotprod", "fp16", "asimdhp")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags (x86 'flags' or Arm 'Features' in /proc/cpuinfo); Arm's
    names are also given as the profiles spell them (asimddp -> dotprod, asimdhp -> fp16)."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    for arm, name in (("asimd", "neon"), ("asimddp", "dotprod"), ("asimdhp", "fp16")):
        if arm in flags:
            flags.add(name)
    return frozenset(flags)


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
