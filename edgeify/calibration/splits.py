"""Deterministic calibration / evaluation / training split of one source.

The split depends only on the data, the sizes asked and the seed, so a fine-tuning
script can train on `Split.rest` and edgeify will never evaluate or calibrate on what the
model was trained on.

Calibration is taken first: a static int8 quantizer calibrated on a handful of rows loses
points (NNCF lost 8.8 on an 872-row file that left it one row), while evaluation on 744
rows instead of 872 only widens the error bar. The permutation is the one edgeify has
always used, and with rows enough for both sets calibration + evaluation are the first
n_calibration + n_eval rows of it, as before, so `rest` is unchanged.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Generic, Sequence, TypeVar

import numpy as np

from edgeify.errors import UsageError

T = TypeVar("T")
DEFAULT_SEED = 0
ALL_ROWS = sys.maxsize  # n_eval meaning "every row" (`edgeify eval`)


@dataclass(frozen=True)
class Split(Generic[T]):
    calibration: list[T]
    evaluation: list[T]
    rest: list[T]


def split_sizes(n: int, n_calibration: int, n_eval: int) -> tuple[int, int]:
    """(calibration, evaluation) sizes for n items: calibration first, evaluation next.

    When the items cannot hold both sets, calibration still gets its share first but at
    most half of the items, so a short file is never all calibration and no evaluation.
    """
    if n_calibration and n_eval:
        n_cal = min(n_calibration, max(n - n_eval, n // 2))
    else:
        n_cal = min(n_calibration, n)
    return n_cal, min(n_eval, n - n_cal)


def split_examples(items: Sequence[T], n_calibration: int, n_eval: int,
                   seed: int = DEFAULT_SEED, min_eval: int = 1) -> Split[T]:
    """Shuffle with a fixed seed; calibration first, then evaluation, then the rest.

    `n_calibration=0`: an evaluation-only source; `n_eval=0`: a calibration (and training)
    source. Fewer items than asked shrink the sets (see split_sizes); the caller warns.
    """
    n = len(items)
    need = (min_eval if n_eval else 0) + (1 if n_calibration else 0)
    if n < max(need, 1):
        sets = " and ".join(s for s, k in (("evaluation", n_eval), ("calibration", n_calibration)) if k)
        raise UsageError(f"need at least {max(need, 1)} samples to split into {sets or 'training'}, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_cal, n_ev = split_sizes(n, n_calibration, n_eval)
    cal = [items[i] for i in order[:n_cal]]
    ev = [items[i] for i in order[n_cal:n_cal + n_ev]]
    rest = [items[i] for i in order[n_cal + n_ev:]]
    return Split(calibration=cal, evaluation=ev, rest=rest)


@dataclass(frozen=True)
class Selection:
    """The rows of each set (role -> items), what fell short of the ask, what was dropped."""

    sets: dict
    warnings: tuple[str, ...]
    dropped: dict


def _shortfall(role: str, got: int, asked: int, where: tuple, dropped: int, unit: str) -> str:
    roles, desc, total, first = where
    why = f"{desc} has {total} {unit}"
    if first:
        taken = " and ".join(r for r in ("calibration", "evaluation") if r in roles and r != role)
        why += f"; {taken} took {first} of them first"
    elif role == "calibration" and "evaluation" in roles and got + dropped == total // 2:
        why += ", split half and half with evaluation"
    if dropped:
        seen = "evaluated" if role == "calibration" else "evaluated or calibrated on"
        why += f"; {dropped} dropped: the same text is {seen}"
    return f"{role}: {got} {unit} of the {asked} asked ({why})"


def select(groups, *, n_calibration: int, n_eval: int, n_train: int = 0, seed: int = DEFAULT_SEED,
           unit: str = "rows", text_of=None, dropped: dict | None = None) -> Selection:
    """Split each source among the roles it serves; drop from calibration and training any
    item whose text is also evaluated (a retweet, a repeated sentence: calibrating or
    training on it is seeing the test); note every set smaller than asked.

    `groups`: (roles, description, items) per source, each role in exactly one of them.
    `text_of(item)`: its text for the duplicate check (None: items have no text, e.g. LM
    windows, whose sources the caller de-duplicates by line, passing its counts in `dropped`).
    """
    sets, where = {}, {}
    for roles, desc, items in groups:
        split = split_examples(items, n_calibration if "calibration" in roles else 0,
                               n_eval if "evaluation" in roles else 0, seed)
        parts = {"calibration": split.calibration, "evaluation": split.evaluation, "training": split.rest}
        first = {"calibration": 0, "evaluation": len(split.calibration),
                 "training": len(split.calibration) + len(split.evaluation)}
        for role in roles:
            sets[role], where[role] = parts[role], (roles, desc, len(items), first[role])
    dropped = dict(dropped or {})
    if text_of is not None:
        held = {text_of(x) for x in sets.get("evaluation", ())}
        for role in ("calibration", "training"):  # training also skips calibration texts
            if role in sets:
                kept = [x for x in sets[role] if text_of(x) not in held]
                dropped[role] = len(sets[role]) - len(kept)
                sets[role] = kept
                held |= {text_of(x) for x in kept}
    if "training" in sets:
        sets["training"] = sets["training"][:n_train]
    asked = {"calibration": n_calibration, "evaluation": n_eval, "training": n_train}
    # an evaluation set holding every row of its source (a dev file given for it) is the
    # whole file the user chose, not a shortfall; calibration below the ask always is
    notes = tuple(_shortfall(role, len(sets[role]), asked[role], where[role], dropped.get(role, 0), unit)
                  for role in ("calibration", "evaluation", "training")
                  if role in sets and 0 < asked[role] < ALL_ROWS and len(sets[role]) < asked[role]
                  and not (role == "evaluation" and len(sets[role]) == where[role][2]))
    return Selection(sets, notes, {k: v for k, v in dropped.items() if k in sets})
