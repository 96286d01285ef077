"""The calibration / evaluation split: deterministic, disjoint, evaluation first."""

from __future__ import annotations

import pytest

from edgeify.calibration.splits import DEFAULT_SEED, split_examples
from edgeify.errors import UsageError


def test_deterministic_across_calls():
    items = [f"s{i}" for i in range(500)]
    a = split_examples(items, n_calibration=64, n_eval=100)
    b = split_examples(list(items), n_calibration=64, n_eval=100, seed=DEFAULT_SEED)
    assert a == b
    assert a.evaluation != items[:100]  # shuffled, not the file's first rows


def test_seed_changes_the_split():
    items = list(range(500))
    a = split_examples(items, 64, 100, seed=0)
    b = split_examples(items, 64, 100, seed=1)
    assert set(a.evaluation) != set(b.evaluation)


def test_independent_of_n_calibration():
    """A script training on `rest` never sees eval data, whatever n_calibration it used."""
    items = list(range(300))
    assert split_examples(items, 10, 50).evaluation == split_examples(items, 200, 50).evaluation


def test_disjoint_and_covering():
    items = list(range(1000))
    s = split_examples(items, n_calibration=128, n_eval=300, seed=7)
    assert (len(s.evaluation), len(s.calibration), len(s.rest)) == (300, 128, 572)
    ev, cal, rest = set(s.evaluation), set(s.calibration), set(s.rest)
    assert not ev & cal and not ev & rest and not cal & rest
    assert ev | cal | rest == set(items)


def test_evaluation_has_priority_when_data_is_small():
    items = list(range(10))
    s = split_examples(items, n_calibration=5, n_eval=8)
    assert (len(s.evaluation), len(s.calibration), len(s.rest)) == (8, 2, 0)


def test_calibration_keeps_at_least_one_sample():
    items = list(range(10))
    s = split_examples(items, n_calibration=128, n_eval=1000)
    assert (len(s.evaluation), len(s.calibration), len(s.rest)) == (9, 1, 0)
    assert set(s.evaluation) | set(s.calibration) == set(items)


def test_two_items_is_the_minimum():
    s = split_examples(["a", "b"], n_calibration=10, n_eval=10)
    assert len(s.evaluation) == 1 and len(s.calibration) == 1
    assert sorted(s.evaluation + s.calibration) == ["a", "b"]


@pytest.mark.parametrize("items", [[], ["only"]])
def test_fewer_than_two_items(items):
    with pytest.raises(UsageError) as info:
        split_examples(items, n_calibration=4, n_eval=4)
    assert info.value.exit_code == 2
    assert str(info.value) == ("need at least 2 samples to split into evaluation and "
                               f"calibration, got {len(items)}")


def test_items_are_kept_as_given():
    pairs = [(f"text {i}", i % 3) for i in range(50)]
    s = split_examples(pairs, 10, 20)
    assert all(p in pairs for p in s.evaluation + s.calibration + s.rest)
    assert sorted(s.evaluation + s.calibration + s.rest) == sorted(pairs)
