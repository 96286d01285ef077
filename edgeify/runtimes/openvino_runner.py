"""OpenVINO on CPU: latency hint, the target's thread count, an explicit inference precision.

Shapes: the IR keeps dynamic batch and sequence axes. In static mode the runner reshapes
to each input shape it meets and compiles once per shape, which lets the CPU plugin pick
shape-specialised kernels. Which mode an IR runs in is written into it at export (see
contract.OV_SHAPES, chosen from benchmarks/bench_openvino.py); the
EDGEIFY_OPENVINO_SHAPES environment variable or `static_shapes=` overrides it.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np

from edgeify.contract import CAPS_WITHOUT_BF16, OV_BIN_SHA256, OV_MAX_LENGTH, OV_PRECISION, OV_SHAPES, sha256_of
from edgeify.errors import EdgeifyError, UsageError, first_line
from edgeify.runtimes import check_room, formats, register_decoder, register_runner

STATIC_SHAPES_DEFAULT = False  # for IRs that do not say (e.g. not written by edgeify)
SHAPES_ENV = "EDGEIFY_OPENVINO_SHAPES"  # "static" or "dynamic" overrides the default


def _first_line(e: Exception) -> str:
    return first_line(e, skip=("Exception from",))  # OpenVINO's "Exception from src/..." context


def _rt_value(model, key: tuple[str, ...]) -> str | None:
    try:
        return model.get_rt_info(list(key)).astype(str)
    except Exception:  # noqa: BLE001 - missing key
        return None


def _native_precision_hint(env: Mapping[str, str] | None = None) -> str | None:
    cap = _isa_cap(env)
    return "f32" if cap in CAPS_WITHOUT_BF16 else None


def _isa_cap(env: Mapping[str, str] | None) -> str:
    value = (env or {}).get("ONEDNN_MAX_CPU_ISA") or os.environ.get("ONEDNN_MAX_CPU_ISA", "")
    return value.strip().upper()


_OV_FLOAT_NAMES = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}


def _type_name(value) -> str:
    """OpenVINO's <Type: 'bfloat16'> as edgeify's short name (bf16)."""
    text = str(value).replace("<Type: '", "").rstrip("'>")
    return _OV_FLOAT_NAMES.get(text, text)


@lru_cache(maxsize=None)
def _plugin_default() -> tuple[str, tuple[str, ...]]:
    import openvino as ov

    core = ov.Core()
    return (_type_name(core.get_property("CPU", "INFERENCE_PRECISION_HINT")),
            tuple(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")))


def default_precision(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(the float type a plain `compile_model(model, "CPU")` runs in here, why).

    Why ask: on a CPU with bf16 (AVX512_BF16, AMX) OpenVINO runs every float layer in bf16
    unless told otherwise, which is 2-3x the f32 speed and what a user's plain load gets;
    a report that only timed f32 would not describe what users run. The plugin's own
    default is read, then a oneDNN ISA cap in `env` (or this process's environment) that
    rules bf16 out is applied, as the runner applies it."""
    try:
        native, caps = _plugin_default()
    except ImportError:
        return "f32", "openvino is not installed"
    cap = _isa_cap(env)
    if native != "f32" and cap in CAPS_WITHOUT_BF16:
        return "f32", (f"ONEDNN_MAX_CPU_ISA={cap} caps oneDNN below {native}, so float layers run f32 "
                       f"(the CPU itself would run {native})")
    if native == "f32":
        return "f32", f"this CPU has no bf16/fp16 arithmetic OpenVINO uses; its capabilities: {', '.join(caps)}"
    return native, f"the CPU plugin's default precision here; its capabilities: {', '.join(caps)}"


def _static_default(declared: str | None) -> bool:
    value = os.environ.get(SHAPES_ENV, "").strip().lower()
    if value and value not in ("static", "dynamic"):
        raise UsageError(f"{SHAPES_ENV}={value!r}; accepted: static, dynamic")
    value = value or declared or ""
    return value == "static" if value else STATIC_SHAPES_DEFAULT


def _bin_shortfall(root, weights: Path) -> str | None:
    """A .bin shorter than the .xml's constants reach (a copy cut short): said as such, not
    as a checksum mismatch or OpenVINO's out-of-range read."""
    need = 0
    for data in root.iter("data"):
        offset, size = data.get("offset"), data.get("size")
        if offset and size and offset.isdigit() and size.isdigit():
            need = max(need, int(offset) + int(size))
    have = weights.stat().st_size
    return f"{weights.name} holds {have} bytes, the .xml reads {need}" if have < need else None


def ir_damage(path: Path) -> str | None:
    """Why an IR pair cannot be read (the .xml does not parse, the .bin is cut short), or None."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        return f"not valid XML: {e}"
    if root.tag != "net":
        return f"root element <{root.tag}>, expected <net>"
    weights = Path(path).with_suffix(".bin")
    return _bin_shortfall(root, weights) if weights.exists() else None


@register_runner(".xml OpenVINO IR (openvino)", lambda p: formats.is_file_of(p, "openvino"))
class OpenVinoRunner:
    def __init__(self, path: Path, threads: int, static_shapes: bool | None = None):
        try:
            import openvino as ov
        except ImportError:
            raise UsageError("openvino is not installed; install it with: "
                             "pip install 'edgeify[openvino]'") from None
        path = Path(path)
        weights = path.with_suffix(".bin")
        try:  # OpenVINO's own message for a broken .xml lists every frontend it tried
            root = ET.parse(path).getroot()
        except ET.ParseError as e:
            raise EdgeifyError(f"{path}: not a valid OpenVINO IR .xml (corrupt or truncated: {e})") from None
        if root.tag != "net":
            raise EdgeifyError(f"{path}: not an OpenVINO IR .xml (root element <{root.tag}>, expected <net>)")
        if not weights.exists():
            raise EdgeifyError(f"{path}: its weights file {weights.name} is missing (an IR is an .xml + .bin pair)")
        # Before OpenVINO reads the pair: a wrong .bin fails there with C++ shape-check noise,
        # or (same size) loads silently wrong weights.
        node = root.find("rt_info/" + "/".join(OV_BIN_SHA256))
        expected = node.get("value") if node is not None else None
        if expected and sha256_of(weights) != expected:
            raise EdgeifyError(f"{path}: {weights.name} does not match this .xml (checksum differs); "
                               "the pair must come from the same export")
        short = None if expected else _bin_shortfall(root, weights)  # no checksum to tell
        if short:
            raise EdgeifyError(f"{path}: {weights.name} is truncated ({short}); re-export it or copy it again")
        self.core = ov.Core()
        try:
            self.model = self.core.read_model(str(path), str(weights))
        except Exception as e:  # noqa: BLE001 - openvino raises RuntimeError with C++ context
            raise EdgeifyError(f"{path}: cannot load OpenVINO IR ({_first_line(e)})") from None
        hint = _rt_value(self.model, OV_PRECISION) or "f32"
        self.config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1}
        if hint == "native":
            hint = _native_precision_hint()
        if hint:
            self.config["INFERENCE_PRECISION_HINT"] = hint
        declared = _rt_value(self.model, OV_SHAPES)
        self.static = _static_default(declared) if static_shapes is None else static_shapes
        self.input_names = tuple(next(iter(p.get_names())) for p in self.model.inputs)
        self.runtime = f"openvino {ov.__version__}"
        self.threads = threads
        self._compiled: dict[tuple, object] = {}
        self._last = None
        if not self.static:
            self._last = self._compile(None)

    def _compile(self, shapes: tuple | None):
        model = self.model
        if shapes is not None:
            model = self.model.clone()
            model.reshape(dict(zip(self.input_names, (list(s) for s in shapes))))
        try:
            compiled = self.core.compile_model(model, "CPU", self.config)
        except Exception as e:  # noqa: BLE001
            raise EdgeifyError(f"cannot compile OpenVINO model ({_first_line(e)})") from None
        request = compiled.create_infer_request()
        self._compiled[shapes] = (compiled, request)
        return compiled, request

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise EdgeifyError(f"model needs inputs {missing}; got {sorted(feeds)}")
        inputs = {n: feeds[n] for n in self.input_names}
        key = tuple(inputs[n].shape for n in self.input_names) if self.static else None
        pair = self._compiled.get(key) or self._compile(key)
        self._last = pair
        result = pair[1].infer(inputs)
        return np.array(result.to_tuple()[0])

    @property
    def precision(self) -> str:
        """What ran: the plugin's float precision and the matmuls that ran in lower precision
        (int8 compute for NNCF int8; the weights' type for weight-only models)."""
        if self._last is None:
            return "not compiled yet"
        compiled = self._last[0]
        ran = _type_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
        layers = Counter()
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if info["layerType"].astype(str) in ("FullyConnected", "MatMul", "Convolution"):
                layers[info["runtimePrecision"].astype(str)] += 1
        total = sum(layers.values())
        low = {"int4": layers["i4"] + layers["u4"], "int8": layers["i8"] + layers["u8"]}
        parts = [f"{name} {n}/{total}" for name, n in low.items() if n]
        text = f"{' + '.join(parts)} matmuls, rest {ran}" if parts else ran
        return text + (", static shapes" if self.static else "")


def _is_stateful_ir(path: Path) -> bool:
    """An IR with ReadValue layers (a model keeping state between calls). Reads only the
    layers section, which precedes the edges; anything unreadable is left to the runner."""
    if not formats.is_file_of(path, "openvino"):
        return False
    try:
        for _, element in ET.iterparse(path, events=("start",)):
            if element.tag == "layer" and element.get("type") == "ReadValue":
                return True
            if element.tag == "edges":
                return False
    except (ET.ParseError, OSError):
        return False
    return False


@register_decoder(".xml OpenVINO stateful decoder (openvino)", _is_stateful_ir)
class OpenVinoDecoder:
    """The key/value cache lives in the infer request's state (see export/openvino_decoder.py):
    each call feeds input_ids only, and reset() empties the state. Loading, checksum and
    compile settings are the plain runner's, with dynamic shapes: a reshape would compile a
    second model with its own, separate state."""

    def __init__(self, path: Path, threads: int):
        self._runner = OpenVinoRunner(path, threads, static_shapes=False)
        if self._runner.input_names != ("input_ids",):
            raise EdgeifyError(f"{path}: a stateful IR with inputs {list(self._runner.input_names)}; edgeify's "
                               "decoder feeds input_ids only (export it with edgeify)")
        max_length = _rt_value(self._runner.model, OV_MAX_LENGTH)
        if not max_length:
            raise EdgeifyError(f"{path}: stateful IR without edgeify's max_length in its rt_info "
                               "(the cache size); export it with edgeify")
        self.max_length = int(max_length)
        self._request = self._runner._last[1]
        self.runtime, self.threads = self._runner.runtime, threads
        self.reset()

    @property
    def precision(self) -> str:
        return self._runner.precision

    def reset(self) -> None:
        self._request.reset_state()
        self.length = 0

    def forward(self, ids: np.ndarray) -> np.ndarray:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        check_room(self.length, ids.shape[1], self.max_length)
        result = self._request.infer({"input_ids": ids}, share_inputs=True, share_outputs=True)
        self.length += ids.shape[1]
        return np.array(result["logits"])
