"""Text generation over any cached decoder (runtimes.Decoder): one loop for every format.

Sampling follows Hugging Face's order (temperature, then top-k, then top-p), so a seeded
greedy run here and `model.generate(do_sample=False)` pick the same tokens; tests check it
token for token on every exported format.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edgeify.errors import UsageError
from edgeify.runtimes import CacheFull, Decoder


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0: greedy (argmax); the other knobs are then unused
    top_k: int = 0            # 0: no top-k cut
    top_p: float = 1.0        # 1: no nucleus cut
    stop_ids: tuple[int, ...] = ()
    seed: int = 0

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise UsageError(f"max new tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise UsageError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k < 0:
            raise UsageError(f"top-k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise UsageError(f"top-p must be in (0, 1], got {self.top_p}")


@dataclass
class Generation:
    prompt_ids: list[int]
    tokens: list[int] = field(default_factory=list)
    stopped_by: str = ""    # "stop token" or "max new tokens"
    prefill_s: float = 0.0  # prompt through the model, first token's logits out
    decode_s: float = 0.0   # every later token: one step each

    @property
    def prefill_tokens_per_s(self) -> float:
        return len(self.prompt_ids) / self.prefill_s if self.prefill_s else float("nan")

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens per second after the first: each costs one decode step."""
        steps = len(self.tokens) - 1
        return steps / self.decode_s if steps > 0 and self.decode_s else float("nan")


def pick(logits: np.ndarray, sampling: Sampling, rng: np.random.Generator) -> int:
    """The next token from one position's logits (vocab,)."""
    if sampling.temperature == 0:
        return int(np.argmax(logits))
    x = logits.astype(np.float64) / sampling.temperature
    if 0 < sampling.top_k < x.size:
        kth = np.partition(x, -sampling.top_k)[-sampling.top_k]
        x = np.where(x < kth, -np.inf, x)
    p = np.exp(x - x.max())
    p /= p.sum()
    if sampling.top_p < 1:
        order = np.argsort(-p, kind="stable")
        cum = np.cumsum(p[order])
        keep = order[: int(np.searchsorted(cum, sampling.top_p) + 1)]  # always at least one
        q = np.zeros_like(p)
        q[keep] = p[keep]
        p = q / q.sum()
    return int(rng.choice(p.size, p=p))


def generate(decoder: Decoder, prompt_ids: list[int], sampling: Sampling = Sampling(),
             on_token: Callable[[int], None] | None = None) -> Generation:
    """Prefill the prompt, then decode one token per step until a stop token or the limit.

    Checks before running that prompt and output fit in the decoder's cache: the last new
    token is never fed back, so that is len(prompt) + max_new_tokens - 1 tokens.
    """
    if not prompt_ids:
        raise UsageError("the prompt is empty: at least one token is needed to start from")
    needed = len(prompt_ids) + sampling.max_new_tokens - 1
    if needed > decoder.max_length:
        raise CacheFull(f"the prompt ({len(prompt_ids)} tokens) plus {sampling.max_new_tokens} new tokens "
                        f"needs a cache of {needed} tokens; this decoder's holds {decoder.max_length} "
                        "(use a shorter prompt or fewer new tokens, or export with a larger maximum length)")
    rng = np.random.default_rng(sampling.seed)
    out = Generation(list(prompt_ids))
    decoder.reset()
    t0 = time.perf_counter()
    logits = decoder.forward(np.asarray([prompt_ids], dtype=np.int64))[0, -1]
    token = pick(logits, sampling, rng)
    out.prefill_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    while True:
        out.tokens.append(token)
        if on_token is not None:
            on_token(token)
        if token in sampling.stop_ids:
            out.stopped_by = "stop token"
            break
        if len(out.tokens) >= sampling.max_new_tokens:
            out.stopped_by = "max new tokens"
            break
        logits = decoder.forward(np.asarray([[token]], dtype=np.int64))[0, -1]
        token = pick(logits, sampling, rng)
    out.decode_s = time.perf_counter() - t0
    return out
