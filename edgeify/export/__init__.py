"""Export and quantize, one backend module per format.

Each backend registers itself under its format name and offers the same two functions:
`export(model, family, sample, out_dir)` and `quantize(fp32_artifact, family,
calibration, config, out_dir)`. Quantization configs are small frozen dataclasses; the
handler is looked up by the config's type (as torchao's `quantize_` does), so a report can
print the exact config that produced an artifact.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from edgeify.errors import UsageError


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
        """Model file plus any external-data file next to it."""
        total = self.path.stat().st_size
        data = self.path.with_name(self.path.name + ".data")
        return total + (data.stat().st_size if data.exists() else 0)


class Backend(Protocol):
    name: str

    def export(self, model, family, sample, out_dir: Path) -> Artifact: ...

    def quantize(self, fp32: Artifact, family, calibration, config, out_dir: Path) -> Artifact: ...

    def int8_configs(self, family) -> list[Any]: ...


_BACKENDS: dict[str, Callable[[], Backend]] = {}


def register_backend(name: str):
    def deco(factory):
        _BACKENDS[name] = factory
        return factory
    return deco


def formats() -> list[str]:
    return sorted(_BACKENDS)


def get_backend(name: str) -> Backend:
    if name not in _BACKENDS:
        raise UsageError(f"unknown format {name!r}; accepted: {', '.join(formats())}")
    return _BACKENDS[name]()


def config_record(config: Any) -> dict[str, Any]:
    """A quantization config as it goes into report.json."""
    return {"type": type(config).__name__, **dataclasses.asdict(config)}


from edgeify.export import onnx as _onnx  # noqa: E402,F401  (registration)
