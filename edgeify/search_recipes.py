"""The budget search's recipes: what each one does to the model, how much work per forward
it leaves, and which recipes a measured run already rules out.

A recipe is a compression setting (compress/ stages) and, where the data's lengths allow
it, a shorter static sequence length: the cheapest speed-up there is, since tweets and
most dev-set sentences are a fraction of 128 tokens. The catalog is ordered by what a
recipe costs in accuracy and training time, least first.

Ruling out: a forward's time is a fixed overhead plus a part proportional to its work
(per layer, sequence length x hidden size squared). Scaling a measured latency down by the
work ratio of a smaller recipe drops nothing from the proportional part but shrinks the
overhead, so the scaled figure is not above what the smaller recipe will measure, but for
two slips: attention's seq^2 part shrinks faster than the length (about 5% of the work of
a 384-wide model at 128 tokens), and the measured latency itself moves ~15% between
rounds. So a recipe is skipped unrun only when the scaled figure is over the budget by more
than SKIP_MARGIN.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgeify import compress

# A shorter length is taken when it cuts at most this share of the evaluation rows.
MAX_TRUNCATED_PCT = 1.0
# How far over the latency budget a recipe's floor must be to skip it (see above).
SKIP_MARGIN = 1.25


@dataclass(frozen=True)
class Shape:
    """What a forward's work depends on: blocks applied, hidden size, head size."""

    layers: int
    hidden: int
    head_dim: int


@dataclass(frozen=True)
class Recipe:
    name: str
    stages: tuple = ()
    seq_len: int | None = None  # a shorter static length than the run's; None: the run's

    def work(self, shape: Shape, seq_len: int) -> float:
        """A forward's work relative to the unchanged model at `seq_len`: the layers kept,
        the width kept (squared: every matmul shrinks on both sides), the parameters
        pruning keeps, the tokens."""
        w = (self.seq_len or seq_len) / seq_len
        for s in self.stages:
            if isinstance(s, compress.Distill):
                w *= (s.student_layers or max(1, shape.layers // 2)) / shape.layers
                w *= ((s.student_hidden or shape.hidden) / shape.hidden) ** 2
            elif isinstance(s, compress.Prune):
                w *= 1.0 - s.ratio
        return w

    def describe(self) -> dict:
        return {"recipe": self.name, "stages": [compress.describe(s) for s in self.stages],
                **({"seq_len": self.seq_len} if self.seq_len else {})}


def shape_of(run_dir: Path, report: dict, family) -> Shape:
    """The model's shape, from the config.json of the run's PyTorch baseline."""
    config = json.loads((run_dir / report["baseline"]["path"] / "config.json").read_text())
    layers = config[family.anatomy.layers_key] if family.anatomy else config.get("num_hidden_layers", 1)
    hidden = config["hidden_size"]
    heads = config.get("num_attention_heads") or config.get("num_heads") or 1
    return Shape(int(layers), int(hidden), int(hidden // heads))


def short_length(text_lengths: dict | None, seq_len: int) -> int | None:
    """The shortest standard length (calibration.tokenize.STANDARD_LENGTHS, what the data's
    lengths profile reports on) below `seq_len` that cuts at most MAX_TRUNCATED_PCT of
    the evaluation rows (None: no shorter length fits the data, or no lengths known)."""
    cut = (text_lengths or {}).get("truncated_pct_at") or {}
    fits = [int(n) for n, pct in cut.items() if int(n) < seq_len and pct <= MAX_TRUNCATED_PCT]
    return min(fits) if fits else None


def catalog(shape: Shape, seq_len: int, short: int | None, causal: bool = False) -> tuple[Recipe, ...]:
    """Every recipe, least costly in accuracy and training first; the compressed ones at
    the short length when the data allows one. Recipes that come out the same (a 2-layer
    model has no distinct third and quarter) are listed once.

    A causal LM keeps its vocabulary and its window: trimming the vocabulary to the data's
    tokens renormalizes its softmax over them, which lowers the perplexity measured on
    those very texts (a flattering number, not a better model), and its window is what the
    perplexity is scored over, not a length to shorten."""
    if causal:
        short = None
    at = f" @ seq {short}" if short else ""
    trim, plus = ((), "") if causal else ((compress.TrimVocab(),), " + trim-vocab")
    layers = {f: max(1, shape.layers // f) for f in (2, 3, 4)}
    narrow = (shape.hidden // 2) // shape.head_dim * shape.head_dim

    def distill(n: int, *more, hidden: int | None = None, extra: str = "") -> Recipe:
        return Recipe(f"distill to {n} layers{extra}{plus}{at}",
                      (compress.Distill(student_layers=n, student_hidden=hidden), *more, *trim), short)

    recipes = [Recipe("as is")]
    if not causal:
        recipes.append(Recipe("trim-vocab", trim))
    if short:
        recipes.append(Recipe(f"trim-vocab{at}", trim, short))
    recipes += [
        Recipe(f"prune 30%{plus}{at}", (compress.Prune(ratio=0.3), *trim), short),
        Recipe(f"prune 50%{plus}{at}", (compress.Prune(ratio=0.5), *trim), short),
        distill(layers[2]), distill(layers[3]),
        distill(layers[3], compress.Prune(ratio=0.3), extra=" + prune 30%"),
        distill(layers[4]),
    ]
    if shape.head_dim <= narrow < shape.hidden:
        recipes.append(distill(layers[3], hidden=narrow, extra=f", hidden {narrow}"))
    seen, out = set(), []
    for r in recipes:
        key = (tuple(map(repr, r.stages)), r.seq_len)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return tuple(out)


def latency_floor(recipe: Recipe, runs: list[tuple[Recipe, float]], shape: Shape, seq_len: int) -> float | None:
    """The least latency `recipe` can measure, from runs already made ((recipe, its fastest
    artifact's latency)): each run's latency scaled by the work ratio, where the recipe does
    less work than that run (see the module's docstring); the largest such bound."""
    mine = recipe.work(shape, seq_len)
    bounds = [lat * mine / r.work(shape, seq_len) for r, lat in runs if mine <= r.work(shape, seq_len)]
    return max(bounds) if bounds else None
