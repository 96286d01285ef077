"""Offline starter models: built once into the cache, reused, never left half-built."""

from __future__ import annotations

import json
import time

import pytest

from edgeify import families
from edgeify.calibration import synthetic
from edgeify.families import starter
from edgeify.families.loader import load_local


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """A cache of our own: this module builds a starter from scratch."""
    monkeypatch.setenv("EDGEIFY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_starter_dir_location(fresh_cache):
    fam = families.get("gpt-neo")
    assert starter.cache_root() == fresh_cache
    assert starter.starter_dir(fam) == fresh_cache / "starters" / f"gpt-neo-v{starter.STARTER_VERSION}"


def test_build_replaces_partial_dir_then_reuses_cache(fresh_cache):
    fam = families.get("gpt-neo")
    final = starter.starter_dir(fam)
    final.mkdir(parents=True)
    (final / "config.json").write_text("{half written")  # an interrupted earlier build
    (final / "junk.bin").write_bytes(b"\0" * 10)

    logs: list[str] = []
    path = starter.build_starter(fam, log=logs.append, seconds=1.0)
    assert path == final
    assert not (final / "junk.bin").exists()
    assert sorted(p.name for p in final.parent.iterdir()) == [final.name]  # no temp dirs left

    info = json.loads((final / "starter.json").read_text())
    assert info["starter"] is True and info["family"] == "gpt-neo"
    assert info["version"] == starter.STARTER_VERSION
    assert info["train_steps"] >= 1
    held = info["held_out"]
    assert held["name"] == "perplexity" and held["n"] >= 64
    assert 1.0 < held["value"] < 10 * json.loads((final / "config.json").read_text())["vocab_size"]
    assert info["chance"] is None
    assert "STARTER" in logs[0] and "not a pretrained model" in logs[0]
    assert logs[-1].startswith("starter gpt-neo: held-out perplexity")

    loaded = load_local(final)
    assert loaded.source == "starter" and loaded.family is fam and loaded.starter == info
    assert loaded.model.config.model_type == "gpt_neo"

    mtime = (final / "starter.json").stat().st_mtime_ns
    logs.clear()
    t0 = time.perf_counter()
    assert starter.build_starter(fam, log=logs.append, seconds=1.0) == final
    assert time.perf_counter() - t0 < 1.0
    assert logs == []
    assert (final / "starter.json").stat().st_mtime_ns == mtime


def test_session_starter_classification_info(starter_dir):
    path = starter_dir("electra")
    info = starter.starter_info(path)
    assert info["family"] == "electra" and info["starter"] is True
    held = info["held_out"]
    assert held["name"] == "accuracy" and held["n"] == 2000
    assert 0.0 <= held["value"] <= 100.0
    assert info["chance"] == pytest.approx(100.0 / len(synthetic.LABELS))
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["model_type"] == "electra"
    assert cfg["id2label"] == {"0": "negative", "1": "positive"}


def test_cached_starter_is_reused(starter_dir):
    path = starter_dir("albert")
    t0 = time.perf_counter()
    assert starter.build_starter(families.get("albert"), log=lambda *_: None) == path
    assert time.perf_counter() - t0 < 1.0


def test_starter_info_absent(tmp_path):
    assert starter.starter_info(tmp_path) is None


def test_electra_starter_tokenizer_adds_cls_and_sep(starter_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(starter_dir("electra")))
    tokens = tok.convert_ids_to_tokens(tok("the movie was good")["input_ids"])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"


def test_albert_starter_tokenizer_adds_cls_and_sep(starter_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(starter_dir("albert")))
    tokens = tok.convert_ids_to_tokens(tok("the movie was good")["input_ids"])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
