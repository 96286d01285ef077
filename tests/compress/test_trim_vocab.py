"""--trim-vocab: identical tokenization of the data, real tokenizers, exact model outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeify import families
from edgeify.compress.trim_vocab import trim_model, trim_tokenizer
from edgeify.errors import EdgeifyError
from edgeify.families import loader


def _tweets(shared_data, n=3000):
    from edgeify.calibration.readers import read_examples

    return [e.text for e in read_examples(shared_data / "twitter_sentiment" / "tweets.csv",
                                          needs_labels=True)[:n]]


def _check_identical(old_tok, result, texts):
    for text in texts:
        old = old_tok(text)["input_ids"]
        new = result.tokenizer(text)["input_ids"]
        assert result.kept_ids[new].tolist() == old, text


def test_bert_wordpiece_on_tweets(shared_data):
    """The real BERT vocab (ELECTRA's) on real tweets: identical ids, >= 60% of rows cut."""
    from transformers import BertTokenizer  # the tokenizers-backed class in transformers 5

    tok = BertTokenizer.from_pretrained(str(shared_data / "tokenizers/bert-base-uncased"))
    texts = _tweets(shared_data)
    result = trim_tokenizer(tok, texts)
    assert result.vocab_before == 30522
    assert result.vocab_after < 0.4 * result.vocab_before, result.vocab_after
    _check_identical(tok, result, texts[:300])
    # specials survive with their meaning; a word the data never had still tokenizes
    for name in ("cls_token", "sep_token", "pad_token", "unk_token", "mask_token"):
        old_id = getattr(tok, name + "_id")
        assert result.kept_ids[getattr(result.tokenizer, name + "_id")] == old_id
    assert result.tokenizer("zyzzogeton quixotry")["input_ids"]


def test_gpt2_bpe_on_wikitext(shared_data):
    """Byte-level BPE keeps every merge the data used; all 256 bytes stay for unseen text."""
    from transformers import GPT2Tokenizer

    tok = GPT2Tokenizer.from_pretrained(str(shared_data / "tokenizers/gpt2"))
    lines = [ln for ln in (shared_data / "wikitext2/wiki.test.raw").read_text(encoding="utf-8").splitlines()
             if ln.strip()][:400]
    result = trim_tokenizer(tok, lines)
    assert result.vocab_after < 0.5 * result.vocab_before
    _check_identical(tok, result, lines[:100])
    unseen = "Ωμέγα 🙂 qwxz"
    ids = result.tokenizer(unseen)["input_ids"]
    assert result.tokenizer.decode(ids) == unseen  # bytes always round-trip


def test_sentencepiece_unigram(shared_data, tmp_path):
    """ALBERT's SentencePiece (Unigram) path: a real ALBERT-format model."""
    import shutil

    pytest.importorskip("sentencepiece")
    from transformers import AlbertTokenizer

    shutil.copy(shared_data / "tokenizers/albert-de-30k/30k-clean.model", tmp_path / "spiece.model")
    tok = AlbertTokenizer.from_pretrained(str(tmp_path))
    texts = _tweets(shared_data, 1000)
    result = trim_tokenizer(tok, texts)
    assert result.vocab_after < result.vocab_before
    _check_identical(tok, result, texts[:300])


@pytest.mark.parametrize("family", families.names())
def test_trimmed_model_gives_the_same_outputs(family, starter_dir, tmp_path):
    """Embedding rows are remapped, so logits are unchanged; GPT-Neo's tied head too."""
    loaded = loader.load_local(starter_dir(family))
    from edgeify.calibration import synthetic

    texts = (synthetic.paragraphs(30, seed=5) if family == "gpt-neo"
             else [t for t, _ in synthetic.labelled_reviews(60, seed=5)])
    result = trim_tokenizer(loaded.tokenizer, texts)
    enc_old = loaded.tokenizer(texts[:8], padding=True, return_tensors="pt")
    with torch.no_grad():
        before = loaded.model(**enc_old).logits
    trim_model(loaded.model, result.kept_ids)
    enc_new = result.tokenizer(texts[:8], padding=True, return_tensors="pt")
    with torch.no_grad():
        after = loaded.model(**enc_new).logits
    if family == "gpt-neo":
        before = before[..., torch.as_tensor(result.kept_ids)]
        assert loaded.model.get_output_embeddings().weight is loaded.model.get_input_embeddings().weight
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    # saved and reloaded, it is still the trimmed model
    loaded.model.save_pretrained(tmp_path)
    result.tokenizer.save_pretrained(tmp_path)
    again = loader.load_local(tmp_path)
    assert again.model.config.vocab_size == len(result.kept_ids) == len(again.tokenizer)


def test_mismatch_is_refused(starter_dir, monkeypatch):
    """If the trimmed tokenizer ever read the data differently, the stage must fail, not ship."""
    from edgeify.compress import trim_vocab

    loaded = loader.load_local(starter_dir("electra"))
    texts = ["the movie was great", "awful acting"]
    real_encode = trim_vocab._encode_all
    calls = []

    def skewed(tok, items, batch=2048):
        ids = real_encode(tok, items, batch)
        calls.append(1)
        if len(calls) == 2:  # the check of the trimmed tokenizer
            ids[0] = list(reversed(ids[0]))
        return ids

    monkeypatch.setattr(trim_vocab, "_encode_all", skewed)
    with pytest.raises(EdgeifyError, match="differently"):
        trim_tokenizer(loaded.tokenizer, texts)


def test_config_token_ids_follow(starter_dir):
    loaded = loader.load_local(starter_dir("gpt-neo"))
    eos = loaded.tokenizer.eos_token_id
    result = trim_tokenizer(loaded.tokenizer, ["a little text", "more text here"])
    trim_model(loaded.model, result.kept_ids)
    assert result.kept_ids[loaded.model.config.eos_token_id] == eos
    assert np.all(np.diff(result.kept_ids) > 0)  # old order kept


def test_a_trimmed_lms_perplexity_shift_is_measured_and_warned(starter_dir):
    """Its softmax over the kept tokens alone lowers perplexity on the data without any
    better prediction: the stage's figure is exactly that change, and it warns."""
    from edgeify import compress
    from edgeify.calibration import synthetic
    from edgeify.compress.trim_vocab import perplexity_shift_pct

    loaded = loader.load_local(starter_dir("gpt-neo"))
    texts = synthetic.paragraphs(30, seed=5)
    ids = loaded.tokenizer(texts[:4], return_tensors="np", truncation=True, max_length=24,
                           padding="max_length")["input_ids"]
    data = compress.StageData(compress.TrainData({"input_ids": ids}, None), texts)

    def perplexity(model, rows):
        with torch.no_grad():
            return float(model(input_ids=torch.as_tensor(rows), labels=torch.as_tensor(rows)).loss.exp())

    before = perplexity(loaded.model, ids)
    model, tok, info = compress.apply(loaded.model, loaded.tokenizer, loaded.family, compress.TrimVocab(), data,
                                      compress.TrainSettings())
    kept = trim_tokenizer(loaded.tokenizer, texts).kept_ids
    after = perplexity(model, np.searchsorted(kept, ids))
    assert after < before  # flattered
    assert info["perplexity_shift_pct"] == pytest.approx(100 * (after / before - 1), abs=0.02)
    assert info["perplexity_shift_pct"] == perplexity_shift_pct(loaded.model, kept, ids)
    assert "lower without the model predicting any better" in info["warning"]
