"""A fourth artifact format, from outside edgeify, to prove that a format registers through
its record alone (issue 22): the artifact is a `.toy` file, an npz archive of the model's
weights and config, and its "runtime" rebuilds the Hugging Face model from it and runs it.

It registers on import: an exporter (export.register_backend), a runner
(runtimes.register_runner) and its record (runtimes.formats.register_format). Named in
EDGEIFY_PLUGINS, it is imported by edgeify.runtimes in every process, the timing children
included. `unregister()` undoes it, so the other tests never see a fourth format.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgeify.export import Artifact, register_backend, unregister_backend, written_atomically
from edgeify.runtimes import formats, register_runner, unregister_runner

NAME, SUFFIX, RUNTIME = "toy", ".toy", "toy-runtime 0.1"


class ToyBackend:
    name = NAME
    requires: tuple[str, ...] = ()
    extra = ""
    static_shapes = False

    def export(self, model, family, sample, out_dir: Path) -> Artifact:
        out = out_dir / f"model.fp32{SUFFIX}"
        arrays = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        with written_atomically(out) as tmp, open(tmp, "wb") as f:
            np.savez(f, __config__=np.array(model.config.to_json_string()), **arrays)
        return Artifact(NAME, "fp32", out, notes={"toy": True})

    def quantize(self, fp32, family, calibration, config, out_dir: Path, validation=None) -> Artifact:
        raise AssertionError("the toy format offers no quantization configs")

    def float_configs(self, family) -> list:
        return []

    def int8_configs(self, family, max_accuracy_drop=None) -> list:
        return []


class ToyRunner:
    """The toy runtime: the HF model rebuilt from the archive, run in eager PyTorch."""

    runtime, precision = RUNTIME, "fp32"

    def __init__(self, path: Path, threads: int):
        import torch
        import transformers

        with np.load(path) as archive:
            config = json.loads(str(archive["__config__"]))
            weights = {k: torch.from_numpy(archive[k]) for k in archive.files if k != "__config__"}
        cfg = transformers.AutoConfig.for_model(**config)
        cls = getattr(transformers, cfg.architectures[0])
        self.model = cls(cfg).eval()
        self.model.load_state_dict(weights)
        torch.set_num_threads(threads)
        self.input_names = ("input_ids", "attention_mask")
        self.threads = threads
        self._torch = torch

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        with self._torch.no_grad():
            out = self.model(**{k: self._torch.from_numpy(feeds[k]) for k in self.input_names if k in feeds})
        return out.logits.numpy()


def _card_inputs(path: Path) -> list[dict]:
    return [{"name": n, "shape": ["batch", "sequence"], "dtype": "int64"} for n in ToyRunner.input_names]


def _snippet(s: formats.Snippet) -> list[str]:
    return [f"runner = ToyRunner({s.path!r}, {s.threads})", "logits = runner.run(feeds)"]


RECORD = formats.Format(
    name=NAME, suffixes=(SUFFIX,), runtime="toy", packages=(), install="pip install toy-runtime",
    declared_inputs=lambda path: {n: None for n in ToyRunner.input_names}, card_inputs=_card_inputs,
    snippet_imports=("from tests.toy_format import ToyRunner",), snippet=_snippet, cost_reader=__name__)


def register() -> None:
    register_backend(NAME)(ToyBackend)
    unregister_runner(f"{SUFFIX} toy archive")
    register_runner(f"{SUFFIX} toy archive", lambda p: formats.is_file_of(p, NAME))(ToyRunner)
    formats.register_format(RECORD)


def unregister() -> None:
    unregister_backend(NAME)
    unregister_runner(f"{SUFFIX} toy archive")
    formats.unregister_format(NAME)


register()
