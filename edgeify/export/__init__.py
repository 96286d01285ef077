"""Export and quantize, one backend module per format.

Each backend registers itself under its format name and offers the same two functions:
`export(model, family, sample, out_dir)` and `quantize(fp32_artifact, family,
calibration, config, out_dir)`. Quantization configs are small frozen dataclasses; the
handler is looked up by the config's type (as torchao's `quantize_` does), so a report can
print the exact config that produced an artifact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from edgeify import staging
from edgeify.errors import EdgeifyError, UsageError


@dataclass
class Artifact:
    format: str
    precision: str
    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    # Helper files for later stages (e.g. the unfused graph static int8 starts from);
    # not part of the report and removed when the run ends.
    internal: dict[str, Path] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        """The model file plus the files its format loads with it (runtimes.formats:
        ONNX external data, an IR's .bin)."""
        from edgeify.runtimes import formats

        fmt = formats.of(self.path)
        companions = fmt.companions(self.path) if fmt is not None else []
        return self.path.stat().st_size + sum(p.stat().st_size for p in companions if p != self.path)


@dataclass(frozen=True)
class Validation:
    """What accuracy-controlled quantization validates against: the evaluation set.

    `score(run, indices)` runs `run(feeds) -> logits` over the chosen evaluation samples
    and returns a higher-is-better score plus one value per sample. The pipeline builds
    it from evaluate.py, so a backend never needs to know the task or the metric.
    """

    n_items: int
    score: Callable[[Callable[[dict], Any], list[int]], tuple[float, list[float]]]
    unit: str  # what one point of score is: "accuracy points" or "% perplexity"


class Backend(Protocol):
    name: str
    requires: tuple[str, ...]  # importable modules the backend needs (optional extras)
    extra: str                 # the pip extra that installs them
    static_shapes: bool        # one file per sequence length (TFLite) or one for all

    def export(self, model, family, sample, out_dir: Path) -> Artifact: ...

    def quantize(self, fp32: Artifact, family, calibration, config, out_dir: Path,
                 validation: Validation | None = None) -> Artifact: ...

    def float_configs(self, family) -> list[Any]: ...

    def int8_configs(self, family, max_accuracy_drop: float | None = None) -> list[Any]: ...


_BACKENDS: dict[str, Callable[[], Backend]] = {}


def register_backend(name: str):
    def deco(factory):
        _BACKENDS[name] = factory
        return factory
    return deco


def unregister_backend(name: str) -> None:
    """Remove a backend: a plugin's undo."""
    _BACKENDS.pop(name, None)


def formats() -> list[str]:
    return sorted(_BACKENDS)


def get_backend(name: str) -> Backend:
    if name not in _BACKENDS:
        raise UsageError(f"unknown format {name!r}; accepted: {', '.join(formats())}")
    return _BACKENDS[name]()


def is_installed(backend: Backend) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in backend.requires)


def check_installed(backend: Backend) -> None:
    """Fail before any work when an optional runtime is missing, naming the fix."""
    import importlib.util

    missing = [m for m in backend.requires if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"format {backend.name!r} needs {', '.join(missing)}, which is not installed; "
                         "install it with: pip install " + (f"'edgeify[{backend.extra}]'" if backend.extra else "edgeify"))


@contextlib.contextmanager
def written_atomically(path: Path):
    """Yield a temp path beside `path`; renamed onto it on success, removed otherwise,
    so an interrupted write leaves no half file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        staging.apply_umask(Path(tmp))  # mkstemp made it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def logits_module(model, names: list[str]):
    """The HF model as a module taking positional inputs and returning only logits."""
    import inspect

    import torch

    extra = {"use_cache": False} if "use_cache" in inspect.signature(model.forward).parameters else {}

    class LogitsOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *args):
            return self.model(**dict(zip(names, args)), **extra, return_dict=True).logits

    return LogitsOnly().eval()


def handler_for(handlers: dict[type, Callable], config: Any, what: str) -> Callable:
    """The handler registered for a config's type (torchao-style), or an error listing them."""
    handler = handlers.get(type(config))
    if handler is None:
        raise EdgeifyError(f"no {what} for {type(config).__name__}; have: "
                           + ", ".join(t.__name__ for t in handlers))
    return handler


def config_record(config: Any) -> dict[str, Any]:
    """A quantization config as it goes into report.json."""
    return {"type": type(config).__name__, **dataclasses.asdict(config)}


from edgeify.export import onnx as _onnx, openvino as _openvino, tflite as _tflite  # noqa: E402,F401  (registration)
