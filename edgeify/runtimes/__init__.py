"""One small runner per runtime, all with the same interface.

A runner loads one artifact and maps a dict of numpy inputs (keyed by ONNX input name)
to a numpy array of logits. Evaluation and benchmarking only ever see this interface.

A cached decoder (a causal LM exported with its key/value cache) is also opened as a
`Decoder`: it keeps the cache between calls, which is what generation needs. Opened with
`open_runner`, it runs each row from an empty cache, so evaluation treats it like any model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from edgeify.errors import EdgeifyError, UsageError


class Runner(Protocol):
    runtime: str          # e.g. "onnxruntime 1.32.0"
    precision: str        # what actually executed, as far as the runtime tells
    input_names: tuple[str, ...]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray: ...


class Decoder(Protocol):
    """One sequence (batch 1) with its key/value cache kept inside between calls."""

    runtime: str
    precision: str
    max_length: int  # tokens the cache holds: prompt plus generated
    length: int      # tokens in the cache now

    def reset(self) -> None: ...

    def forward(self, ids: np.ndarray) -> np.ndarray:
        """ids (1, T) int64 -> logits (1, T, vocab) float32; appends the T tokens to the
        cache. Raises CacheFull, before running anything, when they do not fit."""
        ...


class CacheFull(EdgeifyError):
    """More tokens than the exported cache holds."""


def check_room(length: int, new: int, max_length: int) -> None:
    if length + new > max_length:
        raise CacheFull(f"the key/value cache holds {max_length} tokens; {length} are used and "
                        f"{new} more do not fit (export with a larger maximum length, or use a "
                        "shorter prompt / fewer new tokens)")


# (name, predicate on the path, factory(path, threads) -> Decoder), tried before _OPENERS
_DECODERS: list[tuple[str, Callable[[Path], bool], Callable[..., Decoder]]] = []


def register_decoder(name: str, matches: Callable[[Path], bool]):
    def deco(factory):
        _DECODERS.append((name, matches, factory))
        return factory
    return deco


def _decoder_factory(path: Path) -> Callable[..., Decoder] | None:
    """The factory of the first decoder kind whose predicate takes `path`. Asked once per
    open: the ONNX predicate parses the whole file."""
    if not path.exists():
        return None
    return next((factory for _, matches, factory in _DECODERS if matches(path)), None)


def is_decoder(path: str | Path) -> bool:
    return _decoder_factory(Path(path)) is not None


def open_decoder(path: str | Path, threads: int) -> Decoder:
    """Open a cached-decoder artifact (or a Hugging Face causal-LM directory) for generation."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"artifact not found: {path}")
    factory = _decoder_factory(path)
    if factory is not None:
        return factory(path, threads)
    if path.is_dir() and (path / "config.json").exists():
        from edgeify.families import CAUSAL_LM
        from edgeify.families.loader import _family_of_dir
        from edgeify.runtimes.torch_runner import TorchDecoder

        if _family_of_dir(path).task == CAUSAL_LM:
            return TorchDecoder(path, threads)
    kinds = ", ".join(name for name, _, _ in _DECODERS)
    raise UsageError(f"{path}: not a cached decoder edgeify can generate with; accepted: {kinds}")


class DecoderRunner:
    """A Decoder as a Runner: each row runs from an empty cache (a prefill), as the
    evaluation windows are independent; the attention mask is not needed (no padding)."""

    input_names = ("input_ids",)

    def __init__(self, decoder: Decoder):
        self.decoder = decoder
        self.runtime = decoder.runtime
        self.threads = getattr(decoder, "threads", None)

    @property
    def precision(self) -> str:
        return self.decoder.precision

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if "input_ids" not in feeds:
            raise EdgeifyError(f"model needs inputs ['input_ids']; got {sorted(feeds)}")
        outs = []
        for row in feeds["input_ids"]:
            self.decoder.reset()
            outs.append(self.decoder.forward(row[None]))
        return np.concatenate(outs)


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
    decoder = _decoder_factory(path)
    if decoder is not None:
        return DecoderRunner(decoder(path, threads))
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
    if is_decoder(path):
        return DecoderRunner.input_names
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
