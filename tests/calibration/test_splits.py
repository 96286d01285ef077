"""The calibration / evaluation / training split: deterministic, disjoint, calibration first;
sets smaller than asked are warned about, duplicates of evaluated text dropped and counted."""

from __future__ import annotations

import numpy as np
import pytest

from edgeify.calibration.readers import Example
from edgeify.calibration.sources import Sources, role_specs
from edgeify.calibration.splits import DEFAULT_SEED, select, split_examples
from edgeify.calibration import datasets
from edgeify.errors import UsageError
from edgeify import tasks


def test_deterministic_across_calls():
    items = [f"s{i}" for i in range(500)]
    a = split_examples(items, n_calibration=64, n_eval=100)
    b = split_examples(list(items), n_calibration=64, n_eval=100, seed=DEFAULT_SEED)
    assert a == b
    assert a.evaluation != items[64:164] and a.calibration != items[:64]  # shuffled, not the file's rows


def test_seed_changes_the_split():
    items = list(range(500))
    a = split_examples(items, 64, 100, seed=0)
    b = split_examples(items, 64, 100, seed=1)
    assert set(a.evaluation) != set(b.evaluation)


@pytest.mark.parametrize("n, n_cal, n_eval", [(38158, 128, 1000), (1128, 128, 1000), (500, 10, 50)])
def test_same_held_out_rows_as_the_old_evaluation_first_split(n, n_cal, n_eval):
    """With rows enough for both sets, calibration + evaluation are the rows the old split
    (evaluation first, same permutation) held out, and `rest` is identical: a model
    fine-tuned on the old `rest` (examples/finetune_tweets.py) is still never evaluated
    or calibrated on its training rows."""
    items = list(range(n))
    order = np.random.default_rng(0).permutation(n)
    old_eval, old_cal = order[:n_eval], order[n_eval:n_eval + n_cal]
    s = split_examples(items, n_cal, n_eval, seed=0)
    assert (len(s.calibration), len(s.evaluation)) == (n_cal, n_eval)
    assert set(s.calibration) | set(s.evaluation) == set(old_eval) | set(old_cal)
    assert s.rest == [items[i] for i in order[n_eval + n_cal:]]


def test_disjoint_and_covering():
    items = list(range(1000))
    s = split_examples(items, n_calibration=128, n_eval=300, seed=7)
    assert (len(s.evaluation), len(s.calibration), len(s.rest)) == (300, 128, 572)
    ev, cal, rest = set(s.evaluation), set(s.calibration), set(s.rest)
    assert not ev & cal and not ev & rest and not cal & rest
    assert ev | cal | rest == set(items)


def test_872_row_dev_file_keeps_128_calibration_rows_and_warns():
    """Issue 20: evaluation-first left 1 calibration row of an 872-row file (NNCF int8 lost 8.8 points)."""
    items = [(f"text {i}", i % 2) for i in range(872)]
    sel = select([(("calibration", "evaluation"), "dev.tsv", items)], n_calibration=128, n_eval=1000,
                 text_of=lambda p: p[0])
    assert (len(sel.sets["calibration"]), len(sel.sets["evaluation"])) == (128, 744)
    assert sel.warnings == ("evaluation: 744 rows of the 1000 asked (dev.tsv has 872 rows; "
                            "calibration took 128 of them first)",)
    assert sel.dropped == {"calibration": 0}


def test_a_short_file_is_split_half_and_half():
    s = split_examples(list(range(80)), n_calibration=128, n_eval=1000)
    assert (len(s.calibration), len(s.evaluation), len(s.rest)) == (40, 40, 0)
    sel = select([(("calibration", "evaluation"), "small.csv", list(range(80)))], n_calibration=128, n_eval=1000)
    assert sel.warnings == ("calibration: 40 rows of the 128 asked (small.csv has 80 rows, split half and half "
                            "with evaluation)",
                            "evaluation: 40 rows of the 1000 asked (small.csv has 80 rows; calibration took "
                            "40 of them first)")


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


def test_evaluation_only_takes_every_row():
    """`edgeify eval` asks for no calibration: every row is evaluated (one was dropped before)."""
    s = split_examples(list(range(7)), n_calibration=0, n_eval=10**9)
    assert sorted(s.evaluation) == list(range(7)) and s.calibration == [] and s.rest == []


def test_separate_sources_each_role_from_its_own():
    dev = [(f"dev {i}", 0) for i in range(872)]
    train = [(f"train {i}", 1) for i in range(5000)]
    sel = select([(("evaluation",), "dev.tsv", dev), (("calibration", "training"), "train.tsv", train)],
                 n_calibration=128, n_eval=1000, n_train=300, text_of=lambda p: p[0])
    assert len(sel.sets["evaluation"]) == 872 and set(sel.sets["evaluation"]) == set(dev)
    assert len(sel.sets["calibration"]) == 128 and len(sel.sets["training"]) == 300
    assert set(sel.sets["calibration"]) <= set(train) and set(sel.sets["training"]) <= set(train)
    assert not set(sel.sets["calibration"]) & set(sel.sets["training"])
    # the whole dev file is evaluated: fewer than the 1000 asked, but nothing was taken from it
    assert sel.warnings == ()


def test_duplicates_of_evaluated_text_are_dropped_and_counted():
    """A retweet in calibration or training is the evaluated text seen in advance."""
    dev = [(f"dev {i}", 0) for i in range(50)]
    train = [(f"train {i}", 1) for i in range(400)] + dev[:30]  # 30 verbatim copies of dev rows
    sel = select([(("evaluation",), "dev.tsv", dev), (("calibration", "training"), "train.tsv", train)],
                 n_calibration=200, n_eval=1000, n_train=1000, text_of=lambda p: p[0])
    evaluated = {t for t, _ in sel.sets["evaluation"]}
    for role in ("calibration", "training"):
        assert not evaluated & {t for t, _ in sel.sets[role]}
    assert sum(sel.dropped.values()) == 30
    assert len(sel.sets["calibration"]) + sel.dropped["calibration"] == 200
    assert len(sel.sets["training"]) + sel.dropped["training"] == 230


def test_one_source_duplicates_are_dropped_from_calibration_too():
    rows = [(f"t{i % 150}", 0) for i in range(300)]  # every text twice
    sel = select([(("calibration", "evaluation", "training"), "d.csv", rows)], n_calibration=100, n_eval=100,
                 n_train=100, text_of=lambda p: p[0])
    evaluated = {t for t, _ in sel.sets["evaluation"]}
    assert sel.dropped["calibration"] > 0
    assert not evaluated & {t for t, _ in sel.sets["calibration"]}
    assert not (evaluated | {t for t, _ in sel.sets["calibration"]}) & {t for t, _ in sel.sets["training"]}
    assert any("dropped: the same text is evaluated" in w for w in sel.warnings)


def test_role_specs():
    assert role_specs("d.csv") == {"calibration": "d.csv", "evaluation": "d.csv"}
    assert role_specs(None, "dev.tsv") == {"calibration": "dev.tsv", "evaluation": "dev.tsv"}
    assert role_specs("all.csv", "dev.tsv", training=True) == {
        "calibration": "all.csv", "evaluation": "dev.tsv", "training": "all.csv"}
    assert role_specs(None, "dev.tsv", "train.tsv", training=True) == {
        "calibration": "train.tsv", "evaluation": "dev.tsv", "training": "train.tsv"}
    # a hub dataset without a split: validation evaluated, train calibrates and trains
    assert role_specs(None, default="hub:glue@sst2", training=True) == {
        "calibration": "hub:glue@sst2:train", "evaluation": "hub:glue@sst2:validation",
        "training": "hub:glue@sst2:train"}
    assert role_specs("hub:glue@sst2:validation") == {  # a split given: one source
        "calibration": "hub:glue@sst2:validation", "evaluation": "hub:glue@sst2:validation"}
    assert role_specs(None, calibration_data="c.txt")["evaluation"] is None  # the default, not known yet


class _Family:
    task = tasks.SEQ_CLS
    onnx_inputs = ("input_ids", "attention_mask")


class _Config:
    def __init__(self, **kw):
        self.data = self.eval_data = self.calibration_data = self.train_data = None
        self.text_column = self.label_column = None
        self.n_calibration, self.n_eval, self.n_train, self.seed, self.compress = 128, None, 0, 0, ()
        self.__dict__.update(kw)


def _tsv(path, n, start=0):
    path.write_text("sentence\tlabel\n" + "".join(f"row {start + i}\t{i % 2}\n" for i in range(n)))
    return str(path)


def test_static_int8_with_fewer_than_32_calibration_rows_is_refused(tmp_path):
    dev = _tsv(tmp_path / "dev.tsv", 60)
    with pytest.raises(UsageError) as info:
        datasets.read_data(_Family, _Config(data=dev, n_eval=50), default=None, static_int8=True)
    assert info.value.exit_code == 2
    # 60 rows, 50 asked for evaluation: calibration gets half (30), below the 32 static int8 needs
    assert str(info.value) == (f"calibration: 30 rows from {dev}, fewer than the 32 a static int8 quantizer "
                               "needs (--int8); give --calibration-data FILE (a train file), more rows, "
                               "or a smaller --n-eval")
    # the fixes it names work: a separate calibration file, or a smaller --n-eval
    train = _tsv(tmp_path / "train.tsv", 200, start=1000)
    assert datasets.read_data(_Family, _Config(data=dev, calibration_data=train, n_eval=50), default=None,
                              static_int8=True) is not None
    assert datasets.read_data(_Family, _Config(data=dev, n_eval=20), default=None, static_int8=True) is not None
    # no static quantizer (no --int8, or a cached decoder's weight-only int8): allowed
    assert datasets.read_data(_Family, _Config(data=dev, n_eval=50), default=None, static_int8=False) is not None


def test_explicitly_few_calibration_rows_are_the_users_choice(tmp_path):
    dev = _tsv(tmp_path / "dev.tsv", 60)
    assert datasets.read_data(_Family, _Config(data=dev, n_calibration=8, n_eval=48), default=None,
                              static_int8=True) is not None


def test_calibration_only_file_needs_no_labels(tmp_path):
    dev = _tsv(tmp_path / "dev.tsv", 40)
    cal = tmp_path / "cal.txt"
    cal.write_text("".join(f"unlabelled {i}\n" for i in range(64)))
    sources = datasets.read_data(_Family, _Config(eval_data=dev, calibration_data=str(cal)), default=None,
                                 static_int8=True)
    assert [g.roles for g in sources.groups] == [("calibration",), ("evaluation",)]
    assert sources.of("calibration").examples[0] == Example("unlabelled 0")


def test_sources_single_serves_every_role():
    s = Sources.single([Example("a", "0")], "d.csv")
    assert s.of("evaluation") is s.of("calibration") is s.of("training")
    assert s.texts() == ["a"]
