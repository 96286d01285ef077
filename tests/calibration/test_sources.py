"""hub:PATH without a split: its validation split is evaluated, its train split calibrates.

Read for real through `datasets.load_dataset` on a local directory holding train.csv and
validation.csv (what a hub dataset is, offline); skipped where `datasets` (edgeify[hub])
is not installed.
"""

from __future__ import annotations

import pytest

from edgeify import families
from edgeify.calibration import datasets
from edgeify.families import starter


from tests.calibration.test_splits import _Config  # noqa: E402  (the RunConfig fields the data stage reads)


@pytest.fixture()
def hub_dir(tmp_path, monkeypatch):
    hf = pytest.importorskip("datasets", reason="the hub path needs `datasets` (pip install edgeify[hub])")
    monkeypatch.setattr(hf.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    root = tmp_path / "sst-like"
    root.mkdir()
    (root / "train.csv").write_text("sentence,label\n" + "".join(
        f"train review {i} was {'good' if i % 2 else 'bad'},{i % 2}\n" for i in range(400)))
    (root / "validation.csv").write_text("sentence,label\n" + "".join(
        f"dev review {i} was {'good' if i % 2 else 'bad'},{i % 2}\n" for i in range(87)))
    return root


def _tokenizer(family):
    return starter._train_tokenizer(family.tokenizer_kind, [f"train dev review {i} was good bad" for i in range(400)],
                                    300)


def test_hub_without_split_evaluates_validation_and_calibrates_on_train(hub_dir):
    family = families.get("electra")
    sources = datasets.read_data(family, _Config(data=f"hub:{hub_dir}"), default=None, static_int8=True)
    assert {g.description: g.roles for g in sources.groups} == {
        f"hub:{hub_dir}:train": ("calibration",), f"hub:{hub_dir}:validation": ("evaluation",)}
    data = datasets.prepare_for(family, _tokenizer(family), {0: "negative", 1: "positive"}, sources,
                                _Config(), seq_len=16, context=0)
    # the whole validation split is evaluated, calibration is 128 rows of train
    assert (len(data.evaluation), len(data.calibration)) == (87, 128)
    assert data.warnings == () and data.description == f"hub:{hub_dir}:validation"
    assert sorted(data.evaluation.labels.tolist()) == sorted(i % 2 for i in range(87))
    report = data.report()
    assert report["eval"] == f"hub:{hub_dir}:validation" and report["calibration"] == f"hub:{hub_dir}:train"


def test_hub_with_a_split_is_one_source(hub_dir):
    family = families.get("electra")
    sources = datasets.read_data(family, _Config(data=f"hub:{hub_dir}:validation", n_eval=40), default=None,
                                 static_int8=True)
    assert [g.roles for g in sources.groups] == [("calibration", "evaluation")]
    data = datasets.prepare_for(family, _tokenizer(family), {0: "negative", 1: "positive"}, sources,
                                _Config(n_eval=40), seq_len=16, context=0)
    assert (len(data.calibration), len(data.evaluation)) == (47, 40)
    assert data.warnings == ("calibration: 47 rows of the 128 asked (hub:%s:validation has 87 rows)" % hub_dir,)


def test_hub_default_is_read_with_its_own_columns(hub_dir):
    """--text-column names the user's file's column, not the default dataset's."""
    family = families.get("electra")
    cal = hub_dir / "mine.csv"
    cal.write_text("body\n" + "".join(f"mine {i}\n" for i in range(50)))
    sources = datasets.read_data(family, _Config(calibration_data=str(cal), text_column="body"),
                                 default=f"hub:{hub_dir}", static_int8=True)
    assert sources.of("evaluation").description == f"hub:{hub_dir}:validation"
    assert sources.of("evaluation").examples[0].text == "dev review 0 was bad"
    assert sources.of("calibration").examples[0].text == "mine 0"
