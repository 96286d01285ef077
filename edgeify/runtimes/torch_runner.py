"""PyTorch eager on a Hugging Face model directory: the baseline every artifact faces."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeify.runtimes import register_runner


def thread_settings(torch) -> dict:
    """PyTorch's threads as they run, for the report: the thread count and how its GNU
    OpenMP pool waits between parallel regions. libgomp reads OMP_WAIT_POLICY and
    GOMP_SPINCOUNT once, when torch is imported, so they are set in the environment of
    the process that times (targets.local.spin_env: no spinning on a busy machine), not here."""
    spin = os.environ.get("GOMP_SPINCOUNT") or {"passive": "0", "active": "infinite"}.get(
        os.environ.get("OMP_WAIT_POLICY", "").lower(), "300000 (libgomp default)")
    return {"threads": torch.get_num_threads(), "backend": "OpenMP", "GOMP_SPINCOUNT": spin,
            **({"OMP_WAIT_POLICY": os.environ["OMP_WAIT_POLICY"]} if os.environ.get("OMP_WAIT_POLICY") else {})}


def _is_hf_dir(p: Path) -> bool:
    return p.is_dir() and (p / "config.json").exists()


@register_runner("Hugging Face model directory (PyTorch eager)", _is_hf_dir)
class TorchRunner:
    def __init__(self, path_or_model, threads: int, family=None):
        import torch

        torch.set_num_threads(threads)
        if isinstance(path_or_model, (str, Path)):
            from edgeify.families.loader import load_local

            loaded = load_local(Path(path_or_model))
            self.model, family = loaded.model, loaded.family
        else:
            self.model = path_or_model.eval()
        self.input_names = tuple(family.onnx_inputs)
        self.runtime = f"torch {torch.__version__}"
        self.precision = str(next(self.model.parameters()).dtype).replace("torch.", "")
        self.threads = threads
        self.thread_settings = thread_settings(torch)

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            kwargs = {n: torch.from_numpy(feeds[n]) for n in self.input_names}
            return self.model(**kwargs).logits.float().numpy()


class TorchDecoder:
    """A Hugging Face causal LM with its own cache (DynamicCache): the PyTorch eager
    baseline for generation, driven by the same loop as every exported decoder."""

    def __init__(self, path_or_model, threads: int):
        import inspect

        import torch

        torch.set_num_threads(threads)
        if isinstance(path_or_model, (str, Path)):
            from edgeify.families.loader import load_local

            self.model = load_local(Path(path_or_model)).model
        else:
            self.model = path_or_model.eval()
        # transformers 5 renamed past_key_values to cache
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self.max_length = int(self.model.config.max_position_embeddings)
        self.runtime = f"torch {torch.__version__}"
        self.precision = str(next(self.model.parameters()).dtype).replace("torch.", "")
        self.threads = threads
        self.reset()

    def reset(self) -> None:
        self._cache = None
        self.length = 0

    def forward(self, ids: np.ndarray) -> np.ndarray:
        import torch

        from edgeify.runtimes import check_room

        check_room(self.length, ids.shape[1], self.max_length)
        with torch.inference_mode():
            out = self.model(input_ids=torch.from_numpy(np.asarray(ids, dtype=np.int64)), use_cache=True,
                             **{self._cache_kw: self._cache})
        self._cache = getattr(out, self._cache_kw, None) or out.past_key_values
        self.length += ids.shape[1]
        return out.logits.float().numpy()
