"""What to build for a target, and what not to, with the reason, before anything runs.

The plan rests on the target's profile (profiles/*.toml) only, so `--plan` can print it
without loading weights. What the plan cannot know (does int8 really beat fp32 there?) is
settled after the run by the estimate for the device (estimate.py), from the same
artifacts measured on this host; the plan says which questions are left to that.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeify.targets import Target

RUNTIME_OVERHEAD_MB = 150  # a runtime's own resident memory beside the weights (measured: 130-200)
# int8 GEMM kernels reach a smaller share of their peak than fp32 ones (measured on this
# host: about half, VNNI included), so int8 needs about twice fp32's peak just to break even
INT8_PEAK_SHARE = 0.5


@dataclass(frozen=True)
class Plan:
    target: str
    measured: bool              # timed on the device itself, or estimated from this host
    formats: tuple[str, ...]
    precisions: dict[str, tuple[str, ...]]  # format -> what is built ("fp32", "fp16", "int8")
    threads: int                # the device's threads (what latency is estimated for)
    timing_threads: int         # the threads timing uses here
    seq_lens: tuple[int, ...]
    refused: tuple[tuple[str, str], ...]    # (option, why)
    notes: tuple[str, ...]
    int8_outlook: float | None  # expected int8 / fp32 speed on compute-bound layers (None: no int8)

    def lines(self) -> list[str]:
        how = "timed on this host" if self.measured else "estimated from this host's measurements, not timed on it"
        out = [f"plan for target {self.target} ({how})",
               f"  formats:    {', '.join(self.formats) or 'none'}"]
        for fmt in self.formats:
            out.append(f"  {fmt + ':':11} {', '.join(self.precisions.get(fmt, ()))}")
        out.append(f"  threads:    {self.threads}" + ("" if self.timing_threads == self.threads
                                                       else f" on the device; timed here with {self.timing_threads}"))
        out.append(f"  seq len:    {', '.join(map(str, self.seq_lens))}")
        out += [f"  note:       {n}" for n in self.notes]
        out += [f"  refused:    {what}: {why}" for what, why in self.refused]
        return out


BYTES_PER_WEIGHT = {"fp32": 4, "fp16": 2, "int8": 1, "int4": 0.5}


def make_plan(target: Target, host: Target, *, asked_formats: tuple[str, ...], installed: dict[str, bool],
              menu: dict[str, tuple[str, ...]], params: int, seq_lens: tuple[int, ...],
              static_formats: tuple[str, ...] = ("tflite",), max_memory_mb: float | None = None,
              runtime_defaults: dict[str, tuple[str, str, str]] | None = None) -> Plan:
    """`asked_formats` () = the target's defaults, ("all",) = every format it runs;
    `installed` says which format backends are importable here; `menu` what precision
    classes each format's backend would build (keys of BYTES_PER_WEIGHT); `runtime_defaults`
    format -> (float type a plain load runs on the target, why, the same on this host as
    the build sees it) for the backends whose runtime picks one (see _as_run)."""
    refused: list[tuple[str, str]] = []
    notes: list[str] = []
    why_not = dict(target.refused)
    if asked_formats == ("all",) or not asked_formats:
        wanted = target.formats if asked_formats == ("all",) else target.default_formats
    else:
        wanted = asked_formats
    formats = []
    for fmt in wanted:
        if fmt not in target.formats:
            refused.append((fmt, why_not.get(fmt, f"not available on {target.name}")))
        elif not installed.get(fmt, False):
            refused.append((fmt, f"its backend is not installed here (pip install 'edgeify[{fmt}]')"))
        else:
            formats.append(fmt)
    for fmt, why in target.refused:
        if fmt not in wanted and (fmt, why) not in refused and asked_formats == ("all",):
            refused.append((fmt, why))

    budget_mb = min(x for x in (target.memory_mb or None, max_memory_mb) if x) if (target.memory_mb or max_memory_mb) else None
    precisions: dict[str, tuple[str, ...]] = {}
    for fmt in formats:
        keep = []
        for p in menu.get(fmt, ("fp32",)):
            need = params * BYTES_PER_WEIGHT[p.split("-")[0]] / 2**20 + RUNTIME_OVERHEAD_MB
            if budget_mb is not None and need > budget_mb:
                refused.append((f"{fmt} {p}", f"needs ~{need:.0f} MB with the runtime, over the "
                                f"{budget_mb:.0f} MB {'--max-memory-mb' if max_memory_mb == budget_mb else target.name + ' has'}"))
            else:
                keep.append(p)
        precisions[fmt] = tuple(keep)
    as_run_notes, as_run_refused = _as_run(formats, precisions, runtime_defaults or {}, target.name)
    notes += as_run_notes
    refused += as_run_refused

    outlook = None
    wanted_precisions = {p for fmt in formats for p in menu.get(fmt, ())}
    if "int8" in wanted_precisions or "int4" in wanted_precisions:
        outlook = int8_outlook(target)
        if outlook is not None and outlook < 1.2:
            notes.append(f"int8 is expected no faster than fp32 on {target.name} (int8 peak "
                         f"{target.peak_gops.get('int8', 0):g} vs fp32 {target.peak_gops.get('fp32', 0):g} G ops/s"
                         f"{', no int8 dot-product instructions' if not _has_int8_dot(target) else ''}); "
                         "it is built and estimated, and chosen only if its estimate beats fp32")
        elif outlook is not None:
            notes.append(f"int8 is expected up to ~{outlook:.1f}x fp32 on {target.name}'s compute-bound layers "
                         f"({'int8 dot product' if _has_int8_dot(target) else 'no int8 dot product'})")
    if "fp16" in wanted_precisions and not _has_fp16(target) and target.peak_gops:
        notes.append(f"fp16 halves the file; {target.name} has no fp16 arithmetic, so it computes in fp32")
    statics = [f for f in formats if f in static_formats]
    if statics:
        notes.append(f"{', '.join(statics)} has static shapes: one file per seq len ({', '.join(map(str, seq_lens))})")
    return Plan(target=target.name, measured=target.measured, formats=tuple(formats), precisions=precisions,
                threads=target.threads, timing_threads=target.threads if target.measured else host.threads,
                seq_lens=seq_lens, refused=tuple(refused), notes=tuple(notes), int8_outlook=outlook)


def _as_run(formats, precisions: dict[str, tuple[str, ...]], defaults: dict[str, tuple[str, str, str]],
            target_name: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Notes (and refusals) on the int8 rows built a second time as the runtime runs them by
    default. Why: OpenVINO runs an IR's float layers in bf16 on a bf16 CPU unless told
    otherwise, so the f32-forced int8 row is not what a user's plain load executes; where
    the target has no lower float type the extra row is absent, and the plan says why.
    Adds the extra class to `precisions` (e.g. "int8-bf16")."""
    notes, refused = [], []
    for fmt in formats:
        if fmt not in defaults or "int8" not in precisions.get(fmt, ()):
            continue
        native, why, here = defaults[fmt]
        if native != "f32":
            precisions[fmt] += (f"int8-{native}",)
            notes.append(f"{fmt}: a plain load runs {native} here ({why}); each int8 file is also evaluated and "
                         f"timed as run so (int8 matmuls, {native} for the rest: int8-{native}); fp32 keeps an "
                         "explicit f32 as the reference")
            continue
        notes.append(f"{fmt}: no int8 row as run by default (int8 matmuls, bf16/fp16 for the rest): {why}")
        if here != "f32":  # built from this host's CPU, but not what the target runs
            refused.append((f"{fmt} int8-{here}", f"this host runs {here} by default, {target_name} does not: {why}"))
    return notes, refused


def int8_outlook(target: Target) -> float | None:
    """Expected int8/fp32 speed on compute-bound layers: the peak ratio times the share of
    it int8 kernels reach relative to fp32. None when the profile gives no rates (a host
    whose rates are measured when needed)."""
    fp32, i8 = target.peak_gops.get("fp32"), target.peak_gops.get("int8")
    if not fp32 or not i8:
        return None
    return i8 / fp32 * INT8_PEAK_SHARE


def _has_int8_dot(target: Target) -> bool:
    return bool({"dotprod", "avx512_vnni", "avx_vnni", "amx_int8"} & set(target.isa))


def _has_fp16(target: Target) -> bool:
    return "fp16" in target.isa or "avx512_fp16" in target.isa
