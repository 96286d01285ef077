"""PyTorch eager on a Hugging Face model directory: the baseline every artifact faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeify.runtimes import register_runner


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

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            kwargs = {n: torch.from_numpy(feeds[n]) for n in self.input_names}
            return self.model(**kwargs).logits.float().numpy()
