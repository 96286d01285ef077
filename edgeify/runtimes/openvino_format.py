"""The OpenVINO IR format's record: what the rest of edgeify knows about an .xml + .bin pair."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from edgeify.contract import OV_PRECISION, OV_SHAPES
from edgeify.errors import EdgeifyError, UsageError
from edgeify.runtimes.formats import Format, Snippet, register_format
from edgeify.runtimes.openvino_runner import ir_damage

_TYPES = {"i64": "int64", "i32": "int32", "f32": "float32", "f16": "float16", "u8": "uint8", "boolean": "bool"}


def _parameters(path: Path) -> list:
    try:
        layers = ET.parse(path).getroot().iter("layer")
    except ET.ParseError as e:
        raise EdgeifyError(f"{path}: not a valid OpenVINO IR .xml (corrupt or truncated: {e})") from None
    return [layer for layer in layers if layer.get("type") == "Parameter"]


def _name(layer) -> str:
    port = layer.find("output/port")
    return ((port.get("names") if port is not None else None) or layer.get("name")).split(",")[0]


def declared_inputs(path: Path) -> dict:
    inputs = {_name(layer): None for layer in _parameters(path)}  # the runner reshapes a static IR to the feeds
    if not inputs:
        raise EdgeifyError(f"{path}: OpenVINO IR has no inputs")
    return inputs


def card_inputs(path: Path) -> list[dict]:
    out = []
    for layer in _parameters(path):
        data = layer.find("data")
        shape = [int(d) if d.lstrip("-").isdigit() else d for d in (data.get("shape") or "").split(",") if d]
        etype = data.get("element_type", "?")
        out.append({"name": _name(layer), "shape": shape, "dtype": _TYPES.get(etype, etype)})
    return out


def companions(path: Path) -> list[Path]:
    """Its weights: an IR is an .xml + .bin pair."""
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise UsageError(f"{path}: its weights file {weights.name} is missing (an IR is an .xml + .bin pair)")
    return [weights]


def _rt_info(path: Path | None, *keys: tuple[str, ...]) -> list[str | None]:
    """The values of rt_info `keys` in the IR's .xml, parsed once (None: absent, or no file)."""
    root = ET.parse(path).getroot() if path is not None and path.exists() else None
    nodes = [root.find("rt_info/" + "/".join(key)) if root is not None else None for key in keys]
    return [node.get("value") if node is not None else None for node in nodes]


def snippet(s: Snippet) -> list[str]:
    """Loads the IR as edgeify timed it: its precision hint (none where the IR asks for the
    CPU's own choice, "native"), and static shapes where the IR was timed so."""
    precision, shapes = _rt_info(s.file, OV_PRECISION, OV_SHAPES)
    hint = None if precision == "native" else (precision or "f32")
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": s.threads, "NUM_STREAMS": 1,
              **({"INFERENCE_PRECISION_HINT": hint} if hint else {})}
    lines = ["core = ov.Core()", f"model = core.read_model({s.path!r})"]
    if not s.decoder and shapes == "static":
        lines += ["model.reshape({k: list(v.shape) for k, v in feeds.items()})  # static shapes: faster kernels"]
    lines += [f'request = core.compile_model(model, "CPU", {config!r}).create_infer_request()']
    if s.decoder:
        return lines + ["request.reset_state()  # the key/value cache lives in the request: empty it",
                        'logits = request.infer({"input_ids": ids})["logits"]']
    return lines + ["logits = request.infer(feeds)[0]"]


OPENVINO = register_format(Format(
    name="openvino", suffixes=(".xml",), runtime="openvino", packages=("openvino",),
    install="pip install openvino", declared_inputs=declared_inputs, card_inputs=card_inputs,
    snippet_imports=("import openvino as ov",), snippet=snippet, cost_reader="edgeify.targets.cost_openvino",
    companions=companions, corrupt_reason=ir_damage))
