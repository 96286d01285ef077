"""Where a family keeps its blocks, heads and FFN neurons, and how to cut them.

Compression (compress/) removes whole layers, attention heads and FFN neurons; the
loader re-creates the same narrower shapes when a compressed model is read back. Both
need to find the same Linear layers, so each family states their paths once, in an
`Anatomy`, and everything structural goes through this module.

A pruned model keeps a different number of heads and neurons per block, which a
Hugging Face config cannot say. The counts are saved in `config.edgeify_shape`
({"heads": [...], "ffn": [...]}, one entry per stored block); `build_with_shape` makes a
model of that shape before its weights are loaded. transformers' attention code reshapes
with -1 heads, so narrower q/k/v/o Linears need no other change (GPT-Neo also reads a
head count attribute, named in its anatomy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import torch

SHAPE_KEY = "edgeify_shape"


@dataclass(frozen=True)
class Anatomy:
    blocks: str          # dotted path of the ModuleList of stored transformer blocks
    query: str           # paths relative to one block
    key: str
    value: str
    attn_out: str
    ffn_in: str
    ffn_out: str
    heads_attr: str = ""  # attribute (relative to a block) holding the head count, if the code reads it
    # config keys: number of layers applied, and of blocks stored (ALBERT shares blocks)
    layers_key: str = "num_hidden_layers"
    stored_key: str = ""
    heads_key: str = "num_attention_heads"
    ffn_key: str = "intermediate_size"


def get_path(root: Any, path: str) -> Any:
    for part in path.split("."):
        root = root[int(part)] if part.isdigit() else getattr(root, part)
    return root


def _set_path(root: Any, path: str, value: Any) -> None:
    head, _, last = path.rpartition(".")
    parent = get_path(root, head) if head else root
    if last.isdigit():
        parent[int(last)] = value
    else:
        setattr(parent, last, value)


def blocks(model, anatomy: Anatomy) -> "torch.nn.ModuleList":
    return get_path(model, anatomy.blocks)


def head_dim(config, anatomy: Anatomy) -> int:
    return config.hidden_size // getattr(config, anatomy.heads_key)


def _slice_linear(linear: "torch.nn.Linear", keep: "torch.Tensor", dim: int) -> "torch.nn.Linear":
    """A Linear keeping rows (dim 0: outputs) or columns (dim 1: inputs) `keep`."""
    import torch

    weight = linear.weight.detach().index_select(dim, keep).clone()
    bias = linear.bias
    if bias is not None and dim == 0:
        bias = bias.detach()[keep].clone()
    elif bias is not None:
        bias = bias.detach().clone()
    new = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                          dtype=weight.dtype, device=weight.device)
    new.weight = torch.nn.Parameter(weight)
    if bias is not None:
        new.bias = torch.nn.Parameter(bias)
    return new


def block_shape(block, config, anatomy: Anatomy) -> tuple[int, int]:
    """(heads, ffn neurons) one block holds now."""
    heads = get_path(block, anatomy.query).out_features // head_dim(config, anatomy)
    return heads, get_path(block, anatomy.ffn_in).out_features


def keep_heads(block, config, anatomy: Anatomy, heads: Sequence[int]) -> None:
    import torch

    size = head_dim(config, anatomy)
    idx = torch.tensor([h * size + j for h in sorted(heads) for j in range(size)], dtype=torch.long)
    for path in (anatomy.query, anatomy.key, anatomy.value):
        _set_path(block, path, _slice_linear(get_path(block, path), idx, 0))
    _set_path(block, anatomy.attn_out, _slice_linear(get_path(block, anatomy.attn_out), idx, 1))
    if anatomy.heads_attr:
        _set_path(block, anatomy.heads_attr, len(heads))


def keep_neurons(block, anatomy: Anatomy, neurons: Sequence[int]) -> None:
    import torch

    idx = torch.tensor(sorted(neurons), dtype=torch.long)
    _set_path(block, anatomy.ffn_in, _slice_linear(get_path(block, anatomy.ffn_in), idx, 0))
    _set_path(block, anatomy.ffn_out, _slice_linear(get_path(block, anatomy.ffn_out), idx, 1))


def record_shape(model, anatomy: Anatomy) -> None:
    """Write the per-block head and neuron counts into the config (None when uniform full)."""
    config = model.config
    shapes = [block_shape(b, config, anatomy) for b in blocks(model, anatomy)]
    full = (getattr(config, anatomy.heads_key), getattr(config, anatomy.ffn_key) or 4 * config.hidden_size)
    value = None if all(s == full for s in shapes) else {
        "heads": [h for h, _ in shapes], "ffn": [f for _, f in shapes]}
    setattr(config, SHAPE_KEY, value)


def build_with_shape(model_cls, config, anatomy: Anatomy):
    """An uninitialised model of the pruned shape in `config.edgeify_shape`."""
    shape = getattr(config, SHAPE_KEY)
    model = model_cls(config)
    for block, heads, ffn in zip(blocks(model, anatomy), shape["heads"], shape["ffn"]):
        keep_heads(block, config, anatomy, range(heads))
        keep_neurons(block, anatomy, range(ffn))
    return model


def keep_layers(model, anatomy: Anatomy, layers: Sequence[int]) -> None:
    """Keep the stored blocks `layers` (in order) and make the config match.

    GPT-Neo's attention pattern (global/local per layer) follows the kept layers, so each
    layer keeps the kind of attention it was trained with.
    """
    import torch

    config = model.config
    old = blocks(model, anatomy)
    new = torch.nn.ModuleList([old[i] for i in layers])
    _set_path(model, anatomy.blocks, new)
    if anatomy.stored_key:
        setattr(config, anatomy.stored_key, len(layers))
    if hasattr(config, "attention_layers"):
        kinds = [config.attention_layers[i] for i in layers]
        config.attention_types = [[[kind], 1] for kind in kinds]
        config.attention_layers = kinds
        for new_id, block in enumerate(new):  # GPT-Neo blocks know their index for the cache
            attn = getattr(block, "attn", None)
            if attn is not None and hasattr(attn, "layer_id"):
                attn.layer_id = new_id
            if hasattr(getattr(attn, "attention", None), "layer_id"):
                attn.attention.layer_id = new_id
    setattr(config, anatomy.layers_key, len(layers))
    shape = getattr(config, SHAPE_KEY, None)
    if shape:
        setattr(config, SHAPE_KEY, {k: [v[i] for i in layers] for k, v in shape.items()})
