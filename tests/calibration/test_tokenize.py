"""Tokenizing to fixed-shape numpy batches keyed by the model's ONNX input names."""

from __future__ import annotations

import numpy as np
import pytest

from edgeify import families
from edgeify.calibration.tokenize import Batch, encode_classification, encode_language_model

TEXTS = [
    "the movie was not good but the soundtrack was really lovely",
    "ok",
    "honestly, the hotel was terrible " * 10,  # longer than any seq_len used here
]


@pytest.fixture(scope="module")
def electra_tokenizer(starter_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(starter_dir("electra")))


@pytest.fixture(scope="module")
def gpt_neo_tokenizer(starter_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(starter_dir("gpt-neo")))


@pytest.mark.parametrize("seq_len", [8, 24])
def test_classification_fixed_length(electra_tokenizer, seq_len):
    names = families.get("electra").onnx_inputs
    batch = encode_classification(electra_tokenizer, TEXTS, [1, 0, 1], seq_len, names)
    assert tuple(batch.inputs) == names
    for name in names:
        assert batch.inputs[name].shape == (3, seq_len)
        assert batch.inputs[name].dtype == np.int64
    assert batch.labels.dtype == np.int64 and batch.labels.tolist() == [1, 0, 1]
    assert len(batch) == 3


def test_classification_padding_and_truncation(electra_tokenizer):
    names = families.get("electra").onnx_inputs
    batch = encode_classification(electra_tokenizer, TEXTS, None, 16, names)
    assert batch.labels is None
    mask, ids = batch.inputs["attention_mask"], batch.inputs["input_ids"]
    n_ok = len(electra_tokenizer("ok")["input_ids"])
    assert 0 < n_ok < 16
    # short text: real tokens then padding, masked out
    assert mask[1].tolist() == [1] * n_ok + [0] * (16 - n_ok)
    assert (ids[1, n_ok:] == electra_tokenizer.pad_token_id).all()
    assert ids[1, :n_ok].tolist() == electra_tokenizer("ok")["input_ids"]
    # long text: truncated, nothing masked
    assert mask[2].tolist() == [1] * 16


def test_token_type_ids_zero_filled_when_tokenizer_has_none(electra_tokenizer):
    assert "token_type_ids" not in electra_tokenizer("x")  # the starter tokenizer gives none
    batch = encode_classification(electra_tokenizer, TEXTS, [0, 1, 0], 12,
                                  ("input_ids", "attention_mask", "token_type_ids"))
    tt = batch.inputs["token_type_ids"]
    assert tt.shape == (3, 12) and tt.dtype == np.int64 and not tt.any()


def test_token_type_ids_taken_from_tokenizer_when_given(starter_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(starter_dir("electra")),
                                        model_input_names=["input_ids", "token_type_ids", "attention_mask"])
    assert "token_type_ids" in tok("x")
    batch = encode_classification(tok, TEXTS, None, 12, ("input_ids", "token_type_ids"))
    assert tuple(batch.inputs) == ("input_ids", "token_type_ids")
    assert batch.inputs["token_type_ids"].tolist() == tok(TEXTS, padding="max_length", truncation=True,
                                                         max_length=12)["token_type_ids"]


def test_unknown_input_name(electra_tokenizer):
    with pytest.raises(ValueError, match="tokenizer gives no 'pixel_values'"):
        encode_classification(electra_tokenizer, TEXTS, None, 8, ("input_ids", "pixel_values"))


def _stream(tokenizer, texts):
    ids = []
    for t in texts:
        ids += tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return ids


@pytest.mark.parametrize("seq_len", [16, 33])
def test_lm_windows_full_and_consecutive(gpt_neo_tokenizer, seq_len):
    from edgeify.calibration import synthetic

    texts = synthetic.paragraphs(12, seed=42)
    stream = _stream(gpt_neo_tokenizer, texts)
    batch = encode_language_model(gpt_neo_tokenizer, texts, seq_len, ("input_ids", "attention_mask"))
    ids = batch.inputs["input_ids"]
    n = len(stream) // seq_len
    assert n >= 4
    assert ids.shape == (n, seq_len) and ids.dtype == np.int64
    # consecutive: the windows, laid end to end, are the token stream (eos between texts)
    assert ids.ravel().tolist() == stream[: n * seq_len]
    assert (ids == gpt_neo_tokenizer.eos_token_id).sum() == stream[: n * seq_len].count(
        gpt_neo_tokenizer.eos_token_id) >= 1
    # all full: nothing is padding
    assert batch.inputs["attention_mask"].dtype == np.int64
    assert (batch.inputs["attention_mask"] == 1).all()
    assert batch.labels is None


def test_lm_windows_on_real_text(gpt_neo_tokenizer, shared_data):
    lines = [ln.strip() for ln in (shared_data / "wikitext2" / "wiki.test.raw").read_text(
        encoding="utf-8").splitlines() if ln.strip()][:40]
    stream = _stream(gpt_neo_tokenizer, lines)
    batch = encode_language_model(gpt_neo_tokenizer, lines, 64, ("input_ids", "attention_mask"))
    n = len(stream) // 64
    assert len(batch) == n > 10
    assert batch.inputs["input_ids"].ravel().tolist() == stream[: n * 64]


def test_lm_without_attention_mask_input(gpt_neo_tokenizer):
    batch = encode_language_model(gpt_neo_tokenizer, ["the movie was good . " * 20], 8, ("input_ids",))
    assert list(batch.inputs) == ["input_ids"]


def test_lm_text_shorter_than_a_window(gpt_neo_tokenizer):
    batch = encode_language_model(gpt_neo_tokenizer, ["short"], 64, ("input_ids", "attention_mask"))
    assert batch.inputs["input_ids"].shape == (0, 64)
    assert len(batch) == 0


def test_lm_tokenizer_without_eos_joins_texts(electra_tokenizer):
    assert electra_tokenizer.eos_token_id is None
    texts = ["the movie was good", "the phone was bad"]
    stream = sum((electra_tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts), [])
    batch = encode_language_model(electra_tokenizer, texts, 3, ("input_ids",))
    n = len(stream) // 3
    assert batch.inputs["input_ids"].ravel().tolist() == stream[: n * 3]


def test_batch_rows():
    b = Batch({"input_ids": np.arange(12).reshape(6, 2), "attention_mask": np.ones((6, 2))})
    rows = b.rows(4, 10)
    assert rows["input_ids"].tolist() == [[8, 9], [10, 11]]
    assert rows["attention_mask"].shape == (2, 2)


def test_with_context_gives_each_window_the_stream_before_it(gpt_neo_tokenizer):
    from edgeify.calibration import synthetic
    from edgeify.calibration.tokenize import with_context

    names = families.get("gpt-neo").onnx_inputs
    windows = encode_language_model(gpt_neo_tokenizer, synthetic.paragraphs(20, seed=5), 16, names)
    stream = windows.meta["stream"]
    assert len(windows) >= 6 and len(stream) >= 16 * len(windows)
    picked = with_context(windows, [3, 0, 1], 24)
    np.testing.assert_array_equal(picked.inputs["input_ids"], windows.inputs["input_ids"][[3, 0, 1]])
    # window 3 starts at token 48: its 24 tokens before; window 1 has only 16; window 0 none
    assert picked.meta["context_len"].tolist() == [24, 0, 16]
    ctx = picked.meta["context"]
    np.testing.assert_array_equal(ctx[0], stream[24:48])
    np.testing.assert_array_equal(ctx[2, 8:], stream[0:16])
    np.testing.assert_array_equal(ctx[0, 16:], windows.inputs["input_ids"][2, 8:])  # really the text before
    assert "context" not in with_context(windows, [3], 0).meta


def test_length_profile_counts_tokens_uncut(electra_tokenizer):
    """Lengths with the special tokens, never cut at seq_len: the share a shorter static
    length would cut is what the budget search reads before it runs a shorter recipe."""
    from edgeify.calibration.tokenize import length_profile

    short, long = "good film", " ".join(["word"] * 200)
    n_short = len(electra_tokenizer(short)["input_ids"])
    prof = length_profile(electra_tokenizer, [short] * 9 + [long], 128)
    assert prof["p50"] == n_short and prof["max"] > 200  # not cut at 128
    assert prof["truncated_pct"] == 10.0
    assert prof["truncated_pct_at"] == {"16": 10.0, "32": 10.0, "48": 10.0, "64": 10.0, "96": 10.0, "128": 10.0}
    assert length_profile(electra_tokenizer, [], 128) == {}
