"""Deterministic calibration / evaluation split.

The split depends only on the data and the seed, so a fine-tuning script can train on
`Split.rest` and edgeify will never evaluate on what the model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Sequence, TypeVar

import numpy as np

from edgeify.errors import UsageError

T = TypeVar("T")
DEFAULT_SEED = 0


@dataclass(frozen=True)
class Split(Generic[T]):
    calibration: list[T]
    evaluation: list[T]
    rest: list[T]


def split_examples(items: Sequence[T], n_calibration: int, n_eval: int,
                   seed: int = DEFAULT_SEED, min_eval: int = 1) -> Split[T]:
    """Shuffle with a fixed seed; evaluation first, then calibration, then the rest.

    With too few items, evaluation keeps priority and calibration shrinks (to as few as
    one sample) rather than overlapping the evaluation set.
    """
    n = len(items)
    if n < min_eval + 1:
        raise UsageError(f"need at least {min_eval + 1} samples to split into evaluation and calibration, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_eval = min(n_eval, n - 1)
    n_cal = min(n_calibration, n - n_eval)
    ev = [items[i] for i in order[:n_eval]]
    cal = [items[i] for i in order[n_eval:n_eval + n_cal]]
    rest = [items[i] for i in order[n_eval + n_cal:]]
    return Split(calibration=cal, evaluation=ev, rest=rest)
