"""Tiny GPT-Neo models for the cached-decoder tests, and HF's own greedy generation.

Weights are drawn with a large spread (initializer_range 0.2) so that greedy decoding
wanders over many tokens instead of repeating one: a test comparing token streams is
only worth something when the streams vary.
"""

from __future__ import annotations

import torch


def tiny_gpt_neo(window: int = 16, max_positions: int = 128, seed: int = 0, vocab: int = 512):
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    torch.manual_seed(seed)
    config = GPTNeoConfig(vocab_size=vocab, hidden_size=64, num_layers=2, num_heads=4,
                          attention_types=[[["global", "local"], 1]], window_size=window,
                          max_position_embeddings=max_positions, intermediate_size=128,
                          initializer_range=0.2, bos_token_id=0, eos_token_id=0)
    config._attn_implementation = "eager"
    return GPTNeoForCausalLM(config).eval()


def prompt_ids(n: int, vocab: int = 512, seed: int = 1) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, vocab, (n,), generator=g).tolist()


def hf_greedy(model, prompt: list[int], n: int) -> list[int]:
    """`model.generate` with its own cache, greedy, exactly n new tokens."""
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=n, min_new_tokens=n, do_sample=False)
    return out[0, len(prompt):].tolist()


def hf_logits(model, prompt: list[int]):
    with torch.no_grad():
        return model(torch.tensor([prompt]), use_cache=False).logits.numpy()
