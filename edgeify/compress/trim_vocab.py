"""Vocabulary trimming: keep only the tokens the user's data needs.

A 30k-token embedding table is about half of a MiniLM-sized model, and a domain dataset
uses a fraction of it. Dropping the unused rows is exact for the data itself:

- WordPiece (ELECTRA, BERT vocab): greedy longest-match only ever picks a token that was
  in the vocabulary, and longer matches that were absent stay absent.
- Unigram (ALBERT SentencePiece): removing pieces only removes Viterbi paths that were
  not the best; the best path for the data uses kept pieces only.
- Byte-level BPE (GPT-Neo): merges apply in rank order; a merge never applied to the data
  never won a step, so dropping it (and its result token) changes nothing. Every merge
  that was applied is kept, with the intermediate tokens it needs, and all single-byte
  tokens stay so unseen text still tokenizes.

Text outside the data may tokenize differently (more [UNK] or shorter pieces); the trimmed
tokenizer is checked against the original on every text given, and the stage fails
loudly on the first difference rather than ship a model that reads its input wrongly.

A causal LM's logits are unchanged on the kept tokens, but its softmax now covers only
them, so the probability the untrimmed model gave the dropped tokens is shared among the
kept ones: its perplexity on the data (whose tokens were all kept) comes out lower without
the model predicting any better (2.2% on the WikiText-2 GPT-Neo, benchmarks/RESULTS.md).
The stage measures that share on training windows and says so in its warning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch

from edgeify.errors import EdgeifyError

_CONFIG_TOKEN_IDS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id",
                     "cls_token_id", "decoder_start_token_id", "unk_token_id", "mask_token_id")


@dataclass(frozen=True)
class TrimResult:
    tokenizer: Any
    kept_ids: np.ndarray      # old id of every new id, ascending
    vocab_before: int
    vocab_after: int


def _encode_all(tokenizer, texts: list[str], batch: int = 2048) -> list[list[int]]:
    out: list[list[int]] = []
    for start in range(0, len(texts), batch):
        out += tokenizer(texts[start:start + batch], add_special_tokens=True, truncation=False)["input_ids"]
    return out


def _merge_pairs(merges: list) -> list[tuple[str, str]]:
    # tokenizers writes merges as "a b" strings (old) or [a, b] pairs (new)
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]


def _bpe_needs(backend, state: dict, texts: Iterable[str]) -> tuple[set[str], set[tuple[str, str]]]:
    """Tokens and merges that BPE uses on `texts`, by replaying the merges in rank order."""
    model = state["model"]
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise EdgeifyError("--trim-vocab: BPE with subword prefixes/suffixes is not supported")
    ranks = {pair: i for i, pair in enumerate(_merge_pairs(model["merges"]))}
    tokens: set[str] = set()
    used: set[tuple[str, str]] = set()
    seen: set[str] = set()
    normalizer, pre = backend.normalizer, backend.pre_tokenizer
    for text in texts:
        if normalizer is not None:
            text = normalizer.normalize_str(text)
        words = [w for w, _ in pre.pre_tokenize_str(text)] if pre is not None else [text]
        for word in words:
            if word in seen:
                continue
            seen.add(word)
            symbols = list(word)
            tokens.update(symbols)
            while len(symbols) > 1:
                pairs = [(ranks.get((a, b), len(ranks)), i) for i, (a, b) in enumerate(zip(symbols, symbols[1:]))]
                rank, i = min(pairs)
                if rank == len(ranks):
                    break
                pair = (symbols[i], symbols[i + 1])
                used.add(pair)
                # merge every occurrence of this pair, left to right, as tokenizers does
                merged, j = [], 0
                while j < len(symbols):
                    if j < len(symbols) - 1 and (symbols[j], symbols[j + 1]) == pair:
                        merged.append(pair[0] + pair[1])
                        j += 2
                    else:
                        merged.append(symbols[j])
                        j += 1
                symbols = merged
                tokens.update(symbols)
    return tokens, used


def _remap_ids(node: Any, new_id: dict[int, int]) -> Any:
    """Rewrite token ids inside a post-processor's JSON (Template, Bert, Roberta, Sequence)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "ids" and isinstance(value, list):
                out[key] = [new_id[i] for i in value]
            elif key in ("sep", "cls") and isinstance(value, list) and len(value) == 2:
                out[key] = [value[0], new_id[value[1]]]
            else:
                out[key] = _remap_ids(value, new_id)
        return out
    if isinstance(node, list):
        return [_remap_ids(v, new_id) for v in node]
    return node


def trim_tokenizer(tokenizer, texts: list[str]) -> TrimResult:
    """A tokenizer holding only what `texts` need; new ids keep the old order."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    if not getattr(tokenizer, "is_fast", False):
        raise EdgeifyError("--trim-vocab needs a fast (tokenizers) tokenizer; this model has "
                           f"{type(tokenizer).__name__}")
    backend = tokenizer.backend_tokenizer
    state = json.loads(backend.to_str())
    model = state["model"]
    kind = model["type"]
    vocab_before = backend.get_vocab_size(with_added_tokens=True)

    old_ids = _encode_all(tokenizer, texts)
    keep = {i for ids in old_ids for i in ids}
    keep |= {t["id"] for t in state.get("added_tokens", [])}
    keep |= set(tokenizer.all_special_ids)
    if kind == "WordPiece":
        vocab = model["vocab"]
        keep.add(vocab[model["unk_token"]])
    elif kind == "Unigram":
        if model.get("unk_id") is not None:
            keep.add(model["unk_id"])
        if model.get("byte_fallback"):
            keep |= {i for i, (piece, _) in enumerate(model["vocab"]) if piece.startswith("<0x")}
    elif kind == "BPE":
        vocab = model["vocab"]
        tokens, used_merges = _bpe_needs(backend, state, texts)
        keep |= {vocab[t] for t in tokens if t in vocab}
        keep |= {i for t, i in vocab.items() if len(t) == 1}  # the base alphabet
    else:
        raise EdgeifyError(f"--trim-vocab: tokenizer model {kind!r} is not supported "
                           "(WordPiece, Unigram and BPE are)")

    kept = np.array(sorted(keep), dtype=np.int64)
    new_id = {int(old): new for new, old in enumerate(kept)}
    if kind == "WordPiece":
        model["vocab"] = {t: new_id[i] for t, i in model["vocab"].items() if i in new_id}
    elif kind == "Unigram":
        model["vocab"] = [model["vocab"][int(i)] for i in kept if int(i) < len(model["vocab"])]
        if model.get("unk_id") is not None:
            model["unk_id"] = new_id[model["unk_id"]]
    else:
        model["vocab"] = {t: new_id[i] for t, i in model["vocab"].items() if i in new_id}
        model["merges"] = [m for m, pair in zip(model["merges"], _merge_pairs(model["merges"]))
                           if pair in used_merges]
    for added in state.get("added_tokens", []):
        added["id"] = new_id[added["id"]]
    if state.get("post_processor"):
        state["post_processor"] = _remap_ids(state["post_processor"], new_id)
    if state.get("padding") and state["padding"].get("pad_id") is not None:
        state["padding"]["pad_id"] = new_id.get(state["padding"]["pad_id"], 0)

    trimmed = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(state)),
        model_max_length=tokenizer.model_max_length, padding_side=tokenizer.padding_side,
        truncation_side=tokenizer.truncation_side, model_input_names=list(tokenizer.model_input_names),
        **{k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)})
    _check_identical(trimmed, texts, old_ids, kept)
    return TrimResult(trimmed, kept, vocab_before, len(kept))


def _check_identical(trimmed, texts: list[str], old_ids: list[list[int]], kept: np.ndarray) -> None:
    new_ids = _encode_all(trimmed, texts)
    for text, old, new in zip(texts, old_ids, new_ids):
        if kept[np.asarray(new, dtype=np.int64)].tolist() != old:
            raise EdgeifyError(f"--trim-vocab: the trimmed tokenizer reads {text[:80]!r} differently "
                               "from the original; refusing to trim (please report this text)")


def trim_model(model, kept_ids: np.ndarray) -> None:
    """Keep the embedding rows (and tied or untied output rows) of `kept_ids`, in place."""
    index = torch.as_tensor(kept_ids, dtype=torch.long)
    old_in = model.get_input_embeddings()
    old_out = model.get_output_embeddings()
    tied = old_out is not None and old_out.weight is old_in.weight
    old_to_new = {int(o): n for n, o in enumerate(kept_ids)}
    pad = model.config.pad_token_id
    new_in = torch.nn.Embedding(len(kept_ids), old_in.embedding_dim,
                                padding_idx=old_to_new.get(pad) if pad is not None else None)
    new_in.weight = torch.nn.Parameter(old_in.weight.detach()[index].clone())
    model.set_input_embeddings(new_in)
    if old_out is not None:
        if tied:
            old_out.weight = new_in.weight
        else:
            old_out.weight = torch.nn.Parameter(old_out.weight.detach()[index].clone())
        if getattr(old_out, "bias", None) is not None:
            old_out.bias = torch.nn.Parameter(old_out.bias.detach()[index].clone())
        old_out.out_features = len(kept_ids)
    model.config.vocab_size = len(kept_ids)
    for cfg in (model.config, getattr(model, "generation_config", None)):
        for name in _CONFIG_TOKEN_IDS:
            value = getattr(cfg, name, None) if cfg is not None else None
            if isinstance(value, int):
                setattr(cfg, name, old_to_new.get(value))


def perplexity_shift_pct(model, kept_ids: np.ndarray, input_ids: np.ndarray, rows: int = 32) -> float | None:
    """How much lower a causal LM's perplexity gets from renormalizing its softmax over
    `kept_ids` alone, in %, on up to `rows` token windows (None: no windows): per token,
    log perplexity falls by -log(the untrimmed model's probability mass on the kept ids)."""
    if input_ids is None or not len(input_ids):
        return None
    kept = torch.as_tensor(kept_ids, dtype=torch.long)
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.as_tensor(input_ids[:rows])).logits.float(), dim=-1)
        log_mass = torch.logsumexp(logp[..., kept], dim=-1)[:, :-1]  # positions that predict a token
    return round(100 * (float(torch.exp(log_mass.mean())) - 1), 2)


def _trim_stage(model, tokenizer, family, config, data, settings, **_):
    import copy

    result = trim_tokenizer(tokenizer, data.texts)
    shift = (perplexity_shift_pct(model, result.kept_ids, data.train.inputs.get("input_ids"))
             if family.task.causal else None)
    model = copy.deepcopy(model)  # the input is an earlier stage's model, reported on its own
    emb_before = model.get_input_embeddings().weight.numel()
    trim_model(model, result.kept_ids)
    emb_after = model.get_input_embeddings().weight.numel()
    info = {"vocab_before": result.vocab_before, "vocab_after": result.vocab_after,
            "embedding_cut_pct": round(100 * (1 - emb_after / emb_before), 2),
            "texts_checked": len(data.texts), "tokenization": "identical on every text checked"}
    if family.task.causal:
        info["perplexity_shift_pct"] = shift
        info["warning"] = (f"the softmax now covers only the {result.vocab_after:,} kept tokens, so perplexity on "
                           "this data is lower without the model predicting any better"
                           + (f" ({shift:+.2f}% measured on training windows)" if shift is not None else "")
                           + "; compare perplexities from before this stage")
    return model, result.tokenizer, info


def _register() -> None:
    # compress/__init__ imports this module after defining TrimVocab and handler
    from edgeify.compress import TrimVocab, handler

    handler(TrimVocab)(_trim_stage)


_register()
