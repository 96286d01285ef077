"""The ONNX format's record: what the rest of edgeify knows about a .onnx file."""

from __future__ import annotations

from pathlib import Path

from edgeify.contract import ORT_SPIN_KEY, ORT_SPIN_US
from edgeify.errors import EdgeifyError, UsageError, first_line
from edgeify.runtimes.formats import Format, Snippet, register_format
from edgeify.runtimes.onnxruntime_runner import _precision_of


def _graph(path: Path):
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False).graph
    except Exception as e:  # noqa: BLE001 - protobuf DecodeError and friends
        raise EdgeifyError(f"{path}: cannot read ONNX model (corrupt or truncated file: "
                           f"{first_line(e, 200).strip()}); re-export it or copy it again") from None


def _dim(value) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def declared_inputs(path: Path) -> dict:
    graph = _graph(path)
    inits = {i.name for i in graph.initializer}
    inputs = {i.name: tuple(_dim(d.dim_value) for d in i.type.tensor_type.shape.dim)
              for i in graph.input if i.name not in inits}
    if not graph.node or not inputs:
        raise EdgeifyError(f"{path}: cannot read ONNX model (no graph)")
    return inputs


def card_inputs(path: Path) -> list[dict]:
    from onnx.helper import tensor_dtype_to_np_dtype

    graph = _graph(path)
    inits = {i.name for i in graph.initializer}
    out = []
    for i in graph.input:
        if i.name in inits:
            continue
        t = i.type.tensor_type
        out.append({"name": i.name, "dtype": tensor_dtype_to_np_dtype(t.elem_type).name,
                    "shape": [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]})
    return out


def corrupt_reason(path: Path) -> str | None:
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as e:  # noqa: BLE001 - protobuf DecodeError and friends
        return first_line(e, 200).strip()
    return None if graph.node else "no graph in the file"


def companions(path: Path) -> list[Path]:
    """Its external weights: each a file beside it (refused otherwise)."""
    import onnx

    graph = _graph(path)
    names = {e.value for t in graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
             for e in t.external_data if e.key == "location"}
    default = path.name + ".data"
    if (path.parent / default).is_file():
        names.add(default)
    for name in sorted(names):
        if Path(name).name != name or not (path.parent / name).is_file():
            raise UsageError(f"{path}: its external weights {name!r} are not a file beside it")
    return [path.parent / name for name in sorted(names)]


def snippet(s: Snippet) -> list[str]:
    lines = [f"opts = ort.SessionOptions(); opts.intra_op_num_threads = {s.threads}",
             f"opts.add_session_config_entry({ORT_SPIN_KEY!r}, {ORT_SPIN_US!r})  "
             f"# as timed: spin-wait at most {ORT_SPIN_US} us",
             f'session = ort.InferenceSession({s.path!r}, opts, providers=["CPUExecutionProvider"])']
    if not s.decoder:
        return lines + ["logits = session.run(None, feeds)[0]"]
    return lines + ['feeds = {"input_ids": ids}',
                    "for i in session.get_inputs()[1:]:  # key/value cache: empty for a new sequence",
                    "    feeds[i.name] = np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32)",
                    'logits = session.run(["logits"], feeds)[0]']


ONNX = register_format(Format(
    name="onnx", suffixes=(".onnx",), runtime="onnxruntime", packages=("onnxruntime",),
    install="pip install onnxruntime", declared_inputs=declared_inputs, card_inputs=card_inputs,
    snippet_imports=("import onnxruntime as ort",), snippet=snippet, cost_reader="edgeify.targets.cost_onnx",
    companions=companions, corrupt_reason=corrupt_reason, file_precision=_precision_of))
