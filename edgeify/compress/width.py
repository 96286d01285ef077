"""A narrower student (--student-hidden): the teacher with whole heads and hidden dims cut.

The head size stays (so attention scaling and every reshape stay valid): a hidden size of
H' keeps H'/head_dim heads per layer, the most important ones by the same Taylor score
--prune uses, and the H' hidden dims whose activations are largest on the user's data.
Every tensor dimension of the hidden size is then cut with the same index set: embedding
columns, the rows of Linears that write the residual stream, the columns of Linears that
read it, and the LayerNorms. The student starts close to the teacher and distillation
(with its hidden states compared on the kept dims) closes the rest.
"""

from __future__ import annotations

import numpy as np
import torch

from edgeify.compress.train import TrainData, batch_rows
from edgeify.errors import UsageError
from edgeify.families.anatomy import blocks, head_dim, keep_heads


def _hidden_dims(model, data: TrainData, keep: int, batches: int = 8, batch_size: int = 32) -> list[int]:
    """The `keep` residual-stream dims with the largest mean |activation| over all layers."""
    order = np.random.default_rng(5).permutation(len(data))
    total = None
    with torch.no_grad():
        for i in range(min(batches, max(1, len(data) // batch_size))):
            feeds, _ = batch_rows(data, order[i * batch_size:(i + 1) * batch_size], "cpu")
            states = model(**feeds, output_hidden_states=True).hidden_states
            mask = feeds.get("attention_mask")
            w = mask.unsqueeze(-1).float() if mask is not None else torch.ones_like(states[0][..., :1])
            mag = sum((h.abs() * w).sum((0, 1)) / w.sum() for h in states)
            total = mag if total is None else total + mag
    return sorted(torch.topk(total, keep).indices.tolist())


def _slice(module: torch.nn.Module, idx: torch.Tensor, hidden: int) -> None:
    """Cut every hidden-size dimension of one leaf module's parameters to `idx`."""
    if isinstance(module, torch.nn.Linear):
        w = module.weight.detach()
        if module.out_features == hidden:
            w = w[idx]
            if module.bias is not None:
                module.bias = torch.nn.Parameter(module.bias.detach()[idx].clone())
            module.out_features = len(idx)
        if module.in_features == hidden:
            w = w[:, idx]
            module.in_features = len(idx)
        module.weight = torch.nn.Parameter(w.clone())
    elif isinstance(module, torch.nn.LayerNorm) and tuple(module.normalized_shape) == (hidden,):
        module.weight = torch.nn.Parameter(module.weight.detach()[idx].clone())
        module.bias = torch.nn.Parameter(module.bias.detach()[idx].clone())
        module.normalized_shape = (len(idx),)
    elif isinstance(module, torch.nn.Embedding) and module.embedding_dim == hidden:
        module.weight = torch.nn.Parameter(module.weight.detach()[:, idx].clone())
        module.embedding_dim = len(idx)


def narrow(model, family, new_hidden: int, data: TrainData, head_scores: list[list[float]]) -> list[int]:
    """Cut `model` (in place) to hidden size `new_hidden`; returns the kept hidden dims."""
    config, anatomy = model.config, family.anatomy
    hidden, d = config.hidden_size, head_dim(config, anatomy)
    ffn = getattr(config, anatomy.ffn_key) or 4 * hidden
    if new_hidden >= hidden or new_hidden % d:
        raise UsageError(f"--student-hidden must be a multiple of the head size {d} and below the teacher's "
                         f"hidden size {hidden}, got {new_hidden}")
    if ffn == hidden or config.num_labels == hidden:
        raise UsageError(f"--student-hidden: this {family.name} has another dimension of size {hidden}; "
                         "its hidden dims cannot be told apart from it")
    dims = _hidden_dims(model, data, new_hidden)
    heads = new_hidden // d
    for block, scores in zip(blocks(model, anatomy), head_scores):
        keep_heads(block, config, anatomy, sorted(np.argsort(scores)[::-1][:heads].tolist()))
    idx = torch.tensor(dims, dtype=torch.long)
    out_emb = model.get_output_embeddings()
    tied = out_emb is not None and out_emb.weight is model.get_input_embeddings().weight
    for module in model.modules():
        if not list(module.children()):
            _slice(module, idx, hidden)
    if tied:  # sliced one at a time above: share the one tensor again
        out_emb.weight = model.get_input_embeddings().weight
    if getattr(config, "embedding_size", None) == hidden:
        config.embedding_size = new_hidden
    config.hidden_size = new_hidden
    setattr(config, anatomy.heads_key, heads)
    if getattr(config, anatomy.ffn_key, None) is None:
        setattr(config, anatomy.ffn_key, ffn)  # GPT-Neo's default (4 x hidden) would change with it
    return dims
