"""One small runner per runtime, all with the same interface.

A runner loads one artifact and maps a dict of numpy inputs (keyed by ONNX input name)
to a numpy array of logits. Evaluation and benchmarking only ever see this interface.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from edgeify.errors import UsageError


class Runner(Protocol):
    runtime: str          # e.g. "onnxruntime 1.32.0"
    precision: str        # what actually executed, as far as the runtime tells
    input_names: tuple[str, ...]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray: ...


# (predicate on the path, factory(path, threads) -> Runner), tried in order
_OPENERS: list[tuple[str, Callable[[Path], bool], Callable[..., Runner]]] = []


def register_runner(name: str, matches: Callable[[Path], bool]):
    def deco(factory):
        _OPENERS.append((name, matches, factory))
        return factory
    return deco


def open_runner(path: str | Path, threads: int) -> Runner:
    """Open an artifact with the runtime its file type calls for."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"artifact not found: {path}")
    for _, matches, factory in _OPENERS:
        if matches(path):
            return factory(path, threads)
    kinds = ", ".join(name for name, _, _ in _OPENERS)
    raise UsageError(f"{path}: not an artifact edgeify can run; accepted: {kinds}")


from edgeify.runtimes import (  # noqa: E402,F401  (registration)
    onnxruntime_runner as _ort, openvino_runner as _ov, tflite_runner as _tflite, torch_runner as _torch)


def input_names(path: Path) -> tuple[str, ...]:
    """The inputs an artifact expects, without loading its weights."""
    path = Path(path)
    if path.is_file() and path.suffix == ".onnx":
        import onnx

        try:
            graph = onnx.load(str(path), load_external_data=False).graph
        except Exception as e:  # noqa: BLE001
            from edgeify.errors import EdgeifyError

            raise EdgeifyError(f"{path}: cannot read ONNX model ({str(e)[:200]})") from None
        inits = {i.name for i in graph.initializer}
        names = tuple(i.name for i in graph.input if i.name not in inits)
        if not graph.node or not names:
            from edgeify.errors import EdgeifyError

            raise EdgeifyError(f"{path}: cannot read ONNX model (no graph)")
        return names
    if path.is_file() and path.suffix == ".xml":
        import xml.etree.ElementTree as ET

        from edgeify.errors import EdgeifyError

        try:
            layers = ET.parse(path).getroot().iter("layer")
        except ET.ParseError as e:
            raise EdgeifyError(f"{path}: not a valid OpenVINO IR .xml ({e})") from None
        names = []
        for layer in layers:
            if layer.get("type") == "Parameter":
                port = layer.find("output/port")
                names.append((port.get("names") if port is not None else None) or layer.get("name"))
        if not names:
            raise EdgeifyError(f"{path}: OpenVINO IR has no inputs")
        return tuple(n.split(",")[0] for n in names)
    if path.is_file() and path.suffix == ".tflite":
        from edgeify.runtimes.tflite_runner import TfliteRunner

        return TfliteRunner(path, 1).input_names
    if path.is_dir() and (path / "config.json").exists():
        from edgeify.families.loader import _family_of_dir

        return _family_of_dir(path).onnx_inputs
    if not path.exists():
        raise UsageError(f"artifact not found: {path}")
    raise UsageError(f"{path}: not an artifact edgeify can run")
