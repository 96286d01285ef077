"""--prune R: structured pruning to a smaller dense model, then recovery by distillation.

What is removed is ranked by a measured importance, in one unit: the loss change it is
expected to cause. Heads and FFN neurons use the first-order Taylor estimate |sum w*dL/dw|
over the parameters they own (Molchanov et al. 2019), measured on the user's training
rows; a whole layer uses the loss change actually measured with that layer left out.
Candidates are taken cheapest-per-parameter first until R of the transformer blocks'
parameters are gone (embeddings are --trim-vocab's job). Every kept block keeps at least
one head and a few neurons. ALBERT's shared block is one block, so pruning it prunes every
application of it; its layers are applications, not stored blocks, and are not removed.

The pruned model is then fine-tuned against the unpruned one (KD, hidden states of the
same layers), which recovers most of what the cut cost.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from edgeify.compress import Prune, handler
from edgeify.compress.train import IGNORE, TrainData, batch_rows, distill_train
from edgeify.errors import UsageError
from edgeify.families.anatomy import (blocks, get_path, head_dim, keep_heads, keep_layers, keep_neurons,
                                      record_shape)

MIN_NEURONS = 8
MICRO_BATCH = 4


def _loss(model, feeds, labels, causal: bool) -> torch.Tensor:
    logits = model(**feeds).logits
    if causal:
        mask = feeds.get("attention_mask")
        keep = mask[:, 1:] > 0 if mask is not None else torch.ones_like(feeds["input_ids"][:, 1:], dtype=torch.bool)
        return F.cross_entropy(logits[:, :-1][keep], feeds["input_ids"][:, 1:][keep])
    # rows without a label are scored against the model's own prediction
    target = logits.argmax(-1).detach()
    if labels is not None:
        target = torch.where(labels == IGNORE, target, labels)
    return F.cross_entropy(logits, target)


def _taylor(w: torch.Tensor, dim: int, groups: int) -> torch.Tensor:
    """sum(w * grad) per group of rows (dim 0) or columns (dim 1)."""
    prod = (w.detach() * w.grad).transpose(0, dim) if dim else w.detach() * w.grad
    return prod.reshape(groups, -1).sum(1)


def importance(model, family, data: TrainData, n_batches: int, batch_size: int, seed: int,
               score_layers: bool = True) -> dict:
    """Expected loss change of removing each head, neuron and (if asked) stored layer.

    The Taylor sums are taken per micro-batch of MICRO_BATCH rows and their magnitudes
    added: a model trained on these rows sits near a minimum where a large batch's mean
    gradient is ~0 and ranks nothing, while small groups of rows still disagree about
    what each head is worth (Molchanov et al. sum per-example magnitudes the same way).
    """
    anatomy, config = family.anatomy, model.config
    causal = family.task.causal
    d = head_dim(config, anatomy)
    order = np.random.default_rng([seed, 11]).permutation(len(data))
    micro = min(MICRO_BATCH, batch_size)
    n_micro = min(n_batches * batch_size // micro, max(1, len(data) // micro))
    batches = [batch_rows(data, order[i * micro:(i + 1) * micro], "cpu") for i in range(n_micro)]
    layers = blocks(model, anatomy)
    heads = [torch.zeros(get_path(b, anatomy.query).out_features // d) for b in layers]
    neurons = [torch.zeros(get_path(b, anatomy.ffn_in).out_features) for b in layers]
    model.eval()  # no dropout: the estimate is of the model as it will run
    base = 0.0
    for feeds, labels in batches:
        model.zero_grad(set_to_none=True)
        loss = _loss(model, feeds, labels, causal)
        loss.backward()
        base += loss.item() / len(batches)
        for n, block in enumerate(layers):
            q, k, v, o = (get_path(block, p) for p in (anatomy.query, anatomy.key, anatomy.value, anatomy.attn_out))
            h = len(heads[n])
            per_head = sum(_taylor(m.weight, 0, h) for m in (q, k, v)) + _taylor(o.weight, 1, h)
            for m in (q, k, v):
                if m.bias is not None:
                    per_head = per_head + (m.bias.detach() * m.bias.grad).reshape(h, -1).sum(1)
            heads[n] += per_head.abs() / len(batches)
            fin, fout = get_path(block, anatomy.ffn_in), get_path(block, anatomy.ffn_out)
            per_neuron = _taylor(fin.weight, 0, fin.out_features) + _taylor(fout.weight, 1, fin.out_features)
            if fin.bias is not None:
                per_neuron = per_neuron + fin.bias.detach() * fin.bias.grad
            neurons[n] += per_neuron.abs() / len(batches)
    model.zero_grad(set_to_none=True)
    layer_scores = []
    if score_layers and len(layers) == getattr(config, anatomy.layers_key) and len(layers) > 1:
        with torch.no_grad():
            for n in range(len(layers)):
                probe = copy.deepcopy(model)
                keep_layers(probe, anatomy, [i for i in range(len(layers)) if i != n])
                layer_scores.append(sum(_loss(probe, f, lab, causal).item() for f, lab in batches)
                                    / len(batches) - base)
    return {"heads": [h.tolist() for h in heads], "neurons": [x.tolist() for x in neurons],
            "layers": layer_scores, "base_loss": base}


def plan(model, family, scores: dict, ratio: float) -> dict:
    """Which heads, neurons and layers to remove so `ratio` of the block parameters go."""
    anatomy, config = family.anatomy, model.config
    d, hidden = head_dim(config, anatomy), config.hidden_size
    layers = blocks(model, anatomy)
    head_cost = 4 * hidden * d + 3 * d
    neuron_cost = 2 * hidden + 1
    block_params = [sum(p.numel() for p in b.parameters()) for b in layers]
    total = sum(block_params)
    cands = []
    for n, hs in enumerate(scores["heads"]):
        cands += [(s / head_cost, "head", n, i) for i, s in enumerate(hs)]
    for n, ns in enumerate(scores["neurons"]):
        cands += [(s / neuron_cost, "neuron", n, i) for i, s in enumerate(ns)]
    for n, s in enumerate(scores["layers"]):
        cands.append((max(s, 0.0) / block_params[n], "layer", n, None))
    heads_left = [set(range(len(h))) for h in scores["heads"]]
    neurons_left = [set(range(len(x))) for x in scores["neurons"]]
    layers_left = set(range(len(layers)))
    removed, goal = 0, ratio * total
    for _, kind, n, i in sorted(cands, key=lambda c: c[0]):
        if removed >= goal:
            break
        if n not in layers_left:
            continue
        if kind == "head" and len(heads_left[n]) > 1:
            if removed + head_cost > goal + 0.01 * total:
                continue  # a head would overshoot R: neurons finish the job more finely
            heads_left[n].discard(i)
            removed += head_cost
        elif kind == "neuron" and len(neurons_left[n]) > MIN_NEURONS:
            neurons_left[n].discard(i)
            removed += neuron_cost
        elif kind == "layer" and len(layers_left) > 1:
            left = (len(heads_left[n]) * head_cost + len(neurons_left[n]) * neuron_cost
                    + block_params[n] - len(scores["heads"][n]) * head_cost
                    - len(scores["neurons"][n]) * neuron_cost)
            if removed + left > goal + 0.02 * total:
                continue  # a whole layer would overshoot R: heads and neurons finish the job
            layers_left.discard(n)
            removed += left
    return {"heads": [sorted(h) for h in heads_left], "neurons": [sorted(x) for x in neurons_left],
            "layers": sorted(layers_left)}


def apply_plan(model, family, keep: dict) -> None:
    anatomy = family.anatomy
    for n, block in enumerate(blocks(model, anatomy)):
        keep_heads(block, model.config, anatomy, keep["heads"][n])
        keep_neurons(block, anatomy, keep["neurons"][n])
    if len(keep["layers"]) < len(blocks(model, anatomy)):
        keep_layers(model, anatomy, keep["layers"])
    record_shape(model, anatomy)


@handler(Prune)
def _prune(model, tokenizer, family, config: Prune, data, settings, fingerprint: str = ""):
    if not 0 < config.ratio < 1:
        raise UsageError(f"--prune takes a fraction between 0 and 1 (of the transformer blocks' "
                         f"parameters to remove), got {config.ratio}")
    torch.set_num_threads(settings.threads)
    teacher = model
    student = copy.deepcopy(model)
    scores = importance(student, family, data.train, config.importance_batches, config.batch_size, settings.seed)
    keep = plan(student, family, scores, config.ratio)
    block_before = sum(p.numel() for b in blocks(student, family.anatomy) for p in b.parameters())
    apply_plan(student, family, keep)
    block_after = sum(p.numel() for b in blocks(student, family.anatomy) for p in b.parameters())
    applied = getattr(student.config, family.anatomy.layers_key)
    # hidden states of kept layers match the unpruned model's same layers
    layer_map = ([(j + 1, k + 1) for j, k in enumerate(keep["layers"])]
                 if len(scores["layers"]) else [(j + 1, j + 1) for j in range(applied)])
    info = {}
    if config.epochs:
        info = distill_train(student, teacher, data.train, layer_map=layer_map,
                             causal=family.task.causal, epochs=config.epochs, lr=config.lr,
                             batch_size=config.batch_size, loss=config.loss, settings=settings,
                             name="prune", fp=fingerprint)
    return student, tokenizer, {
        "block_params_removed_pct": round(100 * (1 - block_after / block_before), 2),
        "heads_kept": [len(h) for h in keep["heads"]], "neurons_kept": [len(x) for x in keep["neurons"]],
        "layers_kept": keep["layers"], "importance": "first-order Taylor (heads, neurons); "
        "measured loss change (layers)", "recovery": info}
