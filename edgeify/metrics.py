"""The two metrics a report can carry, each with its direction, its units and how a drop
is measured, so that no stage re-derives them from the metric's name.

Accuracy drops in absolute points. Perplexity drops in % of the reference: a perplexity
of 20 -> 21 is a 5% drop. Standard library only: every layer reads it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    unit: str          # what a drop or a budget is in: "accuracy points", "% perplexity"
    points: str        # the same, where the metric is named beside it: "points", "% perplexity"
    short: str         # on a deployment card: "pts", "% perplexity"
    delta_header: str  # the report's change column: "Δ pts", "Δ %"

    @property
    def relative(self) -> bool:
        """A change measured in % of the reference (perplexity), not in absolute points."""
        return not self.higher_is_better

    def drop(self, value: float, reference: float) -> float:
        """How much worse `value` is than `reference`, in `unit`."""
        if self.relative:
            return 100.0 * (value - reference) / reference
        return reference - value

    def delta(self, value: float, reference: float) -> float:
        """The report's change column (what `delta_header` says): positive is higher."""
        if self.relative:
            return 100.0 * (value - reference) / reference
        return value - reference

    def best(self, entries: list, value) -> object:
        """The entry with the best `value(entry)`."""
        return (max if self.higher_is_better else min)(entries, key=value)


ACCURACY = Metric("accuracy", True, "accuracy points", "points", "pts", "Δ pts")
PERPLEXITY = Metric("perplexity", False, "% perplexity", "% perplexity", "% perplexity", "Δ %")
_METRICS = {m.name: m for m in (ACCURACY, PERPLEXITY)}


def get(name: str) -> Metric:
    if name not in _METRICS:
        raise KeyError(f"unknown metric {name!r}; accepted: {', '.join(_METRICS)}")
    return _METRICS[name]
