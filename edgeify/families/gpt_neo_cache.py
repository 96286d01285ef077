"""GPT-Neo with its key/value cache as plain tensors: the module every exported decoder runs.

HF's GPT-Neo keeps its cache in a Python object (DynamicCache) and slices its causal and
local-window masks out of a max_positions x max_positions boolean buffer; neither exports
well. This module reuses the HF layers (weights, LayerNorms, MLPs) unchanged and rewrites
only the attention, with the cache as explicit inputs and outputs:

- "grow" layout (ONNX, OpenVINO): each layer's past keys and values come in as
  (batch, heads, past, head_dim) and go out with the new tokens appended. The past length is
  read from their shape, so one graph does both prefill (past 0) and decode (1 new token).
- "fixed" layout (TFLite, static shapes): each layer has a cache of `max_length` slots,
  written at `input_pos`, which holds consecutive positions (start .. start+T-1); slots
  not written yet are hidden by the causal mask. How the new keys/values are written is
  the module's `write` (index_copy by default): an exporter swaps in the op its runtime
  has, e.g. TFLite's DYNAMIC_UPDATE_SLICE, as index_copy becomes a scatter that older
  TFLite runtimes lack (export/tflite_decoder.py).

The masks are computed from positions, as HF's buffer encodes them: a key at position j is
visible to a query at position i when j <= i and, in a local layer, i - j < window_size.
So prompts plus outputs longer than the 256-token window behave exactly as in HF.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

GROW, FIXED = "grow", "fixed"


class CachedGPTNeo(nn.Module):
    def __init__(self, model, layout: str = GROW, max_length: int | None = None):
        super().__init__()
        if layout not in (GROW, FIXED):
            raise ValueError(f"layout {layout!r}; accepted: {GROW}, {FIXED}")
        config = model.config
        body = model.transformer
        self.wte, self.wpe, self.blocks, self.ln_f = body.wte, body.wpe, body.h, body.ln_f
        self.lm_head = model.lm_head
        self.layout = layout
        self.window = int(config.window_size)
        self.local = [config.attention_layers[i] == "local" for i in range(len(self.blocks))]
        # per layer: a pruned model keeps a different number of heads in each
        self.heads = [int(b.attn.attention.num_heads) for b in self.blocks]
        self.head_dim = int(self.blocks[0].attn.attention.head_dim)
        positions = int(config.max_position_embeddings)
        self.max_length = min(int(max_length or positions), positions)
        self.write: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] = index_write
        self.eval()

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    def cache_shapes(self, batch: int = 1, length: int | None = None) -> list[tuple[int, ...]]:
        """Shape of each cache tensor (key, value per layer), empty or of `length` slots."""
        n = (self.max_length if self.layout == FIXED else 0) if length is None else length
        return [(batch, h, n, self.head_dim) for h in self.heads for _ in ("key", "value")]

    def empty_cache(self, batch: int = 1, length: int | None = None) -> list[torch.Tensor]:
        return [torch.zeros(s) for s in self.cache_shapes(batch, length)]

    def forward(self, input_ids: torch.Tensor, *args: torch.Tensor):
        """grow: (input_ids, *past) -> (logits, *present);
        fixed: (input_ids, input_pos, *cache) -> (logits, *cache updated)."""
        if self.layout == GROW:
            cache = args
            # positions past .. past+T-1, from shapes only, so exporters keep them dynamic
            # (past may be 0: the prefill of an empty cache)
            seen = torch.ones_like(cache[0][0, 0, :, 0], dtype=torch.long)
            new = torch.ones_like(input_ids[0], dtype=torch.long)
            k_pos = torch.cumsum(torch.cat([seen, new]), 0) - 1
            q_pos = torch.cumsum(new, 0) - 1 + seen.sum()
        else:
            q_pos, cache = args[0], args[1:]
            k_pos = torch.arange(self.max_length, dtype=q_pos.dtype)
        visible = k_pos[None, :] <= q_pos[:, None]
        in_window = visible & (q_pos[:, None] - k_pos[None, :] < self.window)
        h = self.wte(input_ids) + self.wpe(q_pos)[None]
        out = []
        for i, block in enumerate(self.blocks):
            attn = block.attn.attention
            x = block.ln_1(h)
            q, k, v = (self._heads(p(x), self.heads[i]) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
            k, v = self._update(cache[2 * i], k, q_pos), self._update(cache[2 * i + 1], v, q_pos)
            out += [k, v]
            # GPT-Neo does not scale the scores by 1/sqrt(head_dim), and scores them in fp32
            scores = q.float() @ k.float().transpose(-1, -2)
            mask = in_window if self.local[i] else visible
            scores = torch.where(mask, scores, torch.finfo(scores.dtype).min)
            y = torch.softmax(scores, dim=-1).to(v.dtype) @ v
            y = y.transpose(1, 2).reshape(y.shape[0], y.shape[2], self.heads[i] * self.head_dim)
            h = h + attn.out_proj(y)
            h = h + block.mlp(block.ln_2(h))
        return (self.lm_head(self.ln_f(h)), *out)

    def _heads(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], heads, self.head_dim).transpose(1, 2)

    def _update(self, cache: torch.Tensor, new: torch.Tensor, q_pos: torch.Tensor) -> torch.Tensor:
        if self.layout == GROW:
            return torch.cat([cache, new], dim=2)
        return self.write(cache, new, q_pos)


def index_write(cache: torch.Tensor, new: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The fixed layout's default write: new (batch, heads, T, head_dim) into cache slots
    `positions` along the sequence axis."""
    return cache.index_copy(2, positions, new)


def build(model, layout: str = GROW, max_length: int | None = None) -> CachedGPTNeo:
    return CachedGPTNeo(model, layout, max_length)
