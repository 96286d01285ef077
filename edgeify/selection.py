"""Which file a user should ship: two answers from the measured rows of one run.

- the best int8 file (`selection.chosen`): fastest quantized artifact within the accuracy
  budget. This is the question edgeify was first asked, and its keys stay as they were.
- the best file overall (`selection.overall`): fastest artifact of any precision within the
  same budget. A runtime's own default can beat every int8 file: OpenVINO runs fp16-weight
  and int8 IRs in bf16 on a bf16 CPU, and on a small model an int8 file can be slower than
  float. The deployment card follows this answer.

Every candidate is measured against the fp32 export of its own format (the export, not the
quantizer, is what the format's numbers rest on), and speed is compared on the fastest
round: interference on a shared machine only ever slows a process down (whole processes
were seen running 50% slow), so the fastest round is the truest comparison between files.
"""

from __future__ import annotations

from edgeify import metrics
from edgeify.config import DEFAULT_BUDGET
from edgeify.evaluate import metric_drop
from edgeify.targets import planner, projection


def _unit(metric: str) -> str:
    return metrics.get(metric).points


def _best_latency(entry: dict) -> float:
    lat = entry["latency_ms"]
    return min(lat.get("rounds_p50") or [lat["p50"]])


def _best_decode(entry: dict) -> float:
    gen = entry["generation"]
    return max(gen.get("rounds_decode_tokens_per_s") or [gen["decode_tokens_per_s"]])


def _within(candidates: list[dict], fp32: dict[str, float], budget: float, metric: str) -> list[dict]:
    return [e for e in candidates if metric_drop(e["metric"]["value"], fp32[e["format"]], metric) <= budget]


def _fastest(within: list[dict]) -> tuple[dict, str]:
    """The fastest of `within`, and what "fastest" meant: cached decoders are compared on
    their decode rate (what a user waits for), everything else on batch-1 latency."""
    if all(e.get("generation") for e in within):
        return max(within, key=_best_decode), "fastest decoding"
    return min(within, key=_best_latency), "fastest"


def _fp32_scores(entries: list[dict]) -> dict[str, float]:
    return {e["format"]: e["metric"]["value"] for e in entries if e["precision"] == "fp32"}


def select_int8(entries: list[dict], budget: float, metric: str) -> dict | None:
    """Fastest quantized artifact (any format) within the accuracy budget, each measured
    against the fp32 export of its own format; else the most accurate one. Marks the pick
    `selected`."""
    fp32 = _fp32_scores(entries)
    int8 = [e for e in entries if e["precision"].startswith("int") and e["format"] in fp32]
    if not int8:
        return None
    within = _within(int8, fp32, budget, metric)
    if within:
        best, how = _fastest(within)
        reason = (f"{how} int8 within the {budget:g} {_unit(metric)} budget vs the fp32 export of its "
                  f"format ({len(within)} of {len(int8)} within)")
    else:
        best = metrics.get(metric).best(int8, lambda e: e["metric"]["value"])
        reason = f"no int8 artifact within the {budget:g} {_unit(metric)} budget; kept the most accurate"
    best["selected"] = True
    return {"chosen": best["path"], "reason": reason, "budget": budget}


def select_overall(entries: list[dict], budget: float, metric: str, int8_choice: str | None = None) -> dict | None:
    """Fastest artifact of any precision within the budget (each vs the fp32 export of its
    format, so every fp32 export qualifies). The reason says how it compares with the int8
    pick `int8_choice`. Marks the pick `selected_overall`."""
    fp32 = _fp32_scores(entries)
    candidates = [e for e in entries if e["format"] in fp32]
    within = _within(candidates, fp32, budget, metric)
    if not within:
        return None
    best, how = _fastest(within)
    best["selected_overall"] = True
    reason = (f"{how} file of any precision within the {budget:g} {_unit(metric)} budget vs the fp32 "
              f"export of its format ({len(within)} of {len(candidates)} within)")
    by_path = {e["path"]: e for e in entries}
    pick = by_path.get(int8_choice)
    if pick is best:
        reason += "; it is also the best int8 file"
    elif pick is not None and not best.get("generation") and pick.get("latency_ms"):
        reason += (f"; the best int8 file ({pick['path']}) takes {_best_latency(pick) / _best_latency(best):.2f}x "
                   f"as long ({_best_latency(pick):.2f} vs {_best_latency(best):.2f} ms, fastest rounds)")
    return {"chosen": best["path"], "reason": reason, "precision": best["precision"],
            "executed_precision": best.get("executed_precision")}


def choose(entries: list[dict], budget: float, metric: str) -> dict | None:
    """Both answers: today's int8 selection with `overall` added, or None without int8 rows."""
    selection = select_int8(entries, budget, metric)
    if selection is None:
        return None
    overall = select_overall(entries, budget, metric, selection["chosen"])
    return {**selection, **({"overall": overall} if overall else {})}


def plan_refusal(plan: planner.Plan, entry: dict) -> str | None:
    """The plan's reason against an artifact: by its class and last tag (an as-run row the
    target does not run: int8-bf16 also covers int8-accuracy-controlled-bf16), else by its
    precision class (e.g. over the memory budget)."""
    precision, fmt = entry["precision"], entry["format"]
    kind = precision[:4] if precision.startswith(("int4", "int8")) else precision.split("-")[0]
    refused = dict(plan.refused)
    tagged = f"{kind}-{precision.rsplit('-', 1)[-1]}" if "-" in precision else None
    return (refused.get(f"{fmt} {tagged}") if tagged else None) or refused.get(f"{fmt} {kind}")


def _twin_of(entry: dict, entries: list[dict]) -> dict | None:
    """The file an accuracy-controlled one is a copy of when nothing was reverted (its notes
    say `same_as`): the same bytes timed twice, so only the plain file is a candidate and
    timing noise cannot make the copy "faster"."""
    same = entry.get("notes", {}).get("same_as")
    return next((e for e in entries if same and e is not entry and e["format"] == entry["format"]
                 and e["precision"] == same), None)


def select(target, config, plan: planner.Plan, entries: list[dict], out, base_metric: str, threads: int,
           log_fn) -> dict | None:
    """The select stage: refuse what the target cannot take, then choose the fastest int8
    file within the budget at the main length (a shorter file is always faster, not
    better), and for a device not timed from here, its estimated latencies and its own
    choice."""
    for entry in entries:
        reason = target.refusal(entry["format"], entry.get("notes", {})) or plan_refusal(plan, entry)
        if reason:
            entry["refused"] = reason
            log_fn(f"      {target.name} refuses {entry['path']}: {reason}")
    budget = DEFAULT_BUDGET if config.max_accuracy_drop is None else config.max_accuracy_drop
    main = [e for e in entries if e["seq_len"] == config.seq_len]
    for entry in main:
        twin = _twin_of(entry, main)
        if twin is not None:
            entry["same_file_as"] = twin["path"]
    candidates = [e for e in main if "refused" not in e and "same_file_as" not in e]
    selection = choose(candidates, budget, base_metric) if config.int8 else None
    if not target.measured and target.peak_gops:
        projection.estimate_entries(entries, out, target, threads, log_fn)
        choice = projection.choose_for_target(main, budget, base_metric, metric_drop)
        if choice is not None:
            log_fn(f"      for {target.name}: {choice['chosen']} — {choice['reason']}")
            selection = {**(selection or {"chosen": choice["chosen"], "reason": choice["reason"],
                                          "budget": budget}), "target_choice": choice}
    return selection
