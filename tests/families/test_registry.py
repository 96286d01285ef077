"""The family registry: names, aliases, model types, and the errors for everything else."""

from __future__ import annotations

import pytest

from edgeify import families
from edgeify.errors import UsageError
from edgeify.tasks import CAUSAL_LM, SEQ_CLS


@pytest.mark.parametrize("name, expected", [
    ("albert", "albert"), ("electra", "electra"), ("gpt-neo", "gpt-neo"),
    ("gpt_neo", "gpt-neo"), ("gptneo", "gpt-neo"),
    ("ALBERT", "albert"), ("Electra", "electra"), ("GPT-Neo", "gpt-neo"), ("GPT_NEO", "gpt-neo"),
])
def test_get_names_and_aliases(name, expected):
    fam = families.get(name)
    assert fam.name == expected
    assert fam is families.get(expected)


def test_names():
    assert families.names() == ["albert", "electra", "gpt-neo"]


@pytest.mark.parametrize("name", ["bert", "gpt2", "", "albert-base-v2", "electra "])
def test_unknown_name(name):
    with pytest.raises(UsageError) as info:
        families.get(name)
    assert info.value.exit_code == 2
    assert str(info.value) == (f"unknown model family {name!r}; accepted: albert, electra, gpt-neo, "
                               "a Hugging Face hub id, or a local model directory")


@pytest.mark.parametrize("model_type, expected", [
    ("albert", "albert"), ("electra", "electra"), ("gpt_neo", "gpt-neo"),
])
def test_for_model_type(model_type, expected):
    assert families.for_model_type(model_type).name == expected


@pytest.mark.parametrize("model_type", ["bert", "gpt-neo", "gpt2", "ALBERT"])
def test_for_model_type_unsupported(model_type):
    with pytest.raises(UsageError) as info:
        families.for_model_type(model_type)
    assert info.value.exit_code == 2
    assert str(info.value) == (f"model_type {model_type!r} is not supported; "
                               "edgeify handles: albert, electra, gpt_neo")


def test_family_declarations():
    electra, albert, neo = (families.get(n) for n in ("electra", "albert", "gpt-neo"))
    assert (electra.task, electra.metric) == (SEQ_CLS, "accuracy")
    assert (albert.task, albert.metric) == (SEQ_CLS, "accuracy")
    assert (neo.task, neo.metric) == (CAUSAL_LM, "perplexity")
    assert electra.onnx_inputs == albert.onnx_inputs == ("input_ids", "attention_mask", "token_type_ids")
    assert neo.onnx_inputs == ("input_ids", "attention_mask")
    for fam in (electra, albert, neo):
        config_cls, model_cls = fam.transformers_classes()
        assert config_cls.__name__ == fam.config_class and model_cls.__name__ == fam.model_class
        assert config_cls.model_type in fam.model_types
        # what int8 may touch and what it must leave float never overlap
        assert not set(fam.int8_ops) & set(fam.keep_float_ops)
        assert "MatMul" in fam.int8_ops and "LayerNormalization" in fam.keep_float_ops


def test_load_model_uses_eager_attention(starter_dir):
    fam = families.get("electra")
    model = fam.load_model(str(starter_dir("electra")))
    assert model.config._attn_implementation == "eager"
    assert not model.training
    assert type(model).__name__ == "ElectraForSequenceClassification"


def test_register_refuses_a_taken_name(monkeypatch):
    monkeypatch.setattr(families, "_REGISTRY", dict(families._REGISTRY))
    clash = families.Family(**{**families.get("electra").__dict__, "aliases": ()})
    with pytest.raises(ValueError, match="family name 'electra' registered twice"):
        families.register(clash)


def test_register_clash_on_alias_registers_nothing(monkeypatch):
    monkeypatch.setattr(families, "_REGISTRY", dict(families._REGISTRY))
    new = families.Family(**{**families.get("electra").__dict__, "name": "electra-x",
                             "aliases": ("electra",)})
    with pytest.raises(ValueError, match="registered twice"):
        families.register(new)
    assert families.names() == ["albert", "electra", "gpt-neo"]  # got electra-x too
    with pytest.raises(UsageError):
        families.get("electra-x")
