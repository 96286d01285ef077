"""Read a .tflite flatbuffer without running it: its ops with their versions, and its
constants by type. The runtimes use it to say what a file computes in (int8, fp16), the
exporters to record each file's op inventory; it belongs to neither, so neither imports
the other for it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np


def describe(path: Path) -> tuple[dict[str, dict], dict[str, int]]:
    """Every builtin/custom op in the file with its version(s) and how often it is used, and
    the constant tensors' element counts by type (what ended up int8 / fp16), from one read
    of the file (it can be ~100 MB).

    The op versions are as written in the file. ai-edge-quantizer does not raise them for
    quantized ops (int8 BATCH_MATMUL stays version 1, per-channel dynamic-range
    FULLY_CONNECTED version 5), so an old runtime may accept a file it then computes
    wrongly: that is why every artifact is also run on each runtime at hand."""
    schema, model = flatbuffer(path)
    return ops_of(schema, model), constant_types(schema, model)


def flatbuffer(path: Path):
    from ai_edge_litert import schema_py_generated as schema

    return schema, schema.Model.GetRootAsModel(Path(path).read_bytes(), 0)


def op_codes(schema, model) -> list[tuple[str, int]]:
    """(name, version) of each operator code, by opcode index: CUSTOM:<name> for custom ops."""
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        custom = oc.CustomCode()
        codes.append((f"CUSTOM:{custom.decode()}" if custom else names.get(code, str(code)), oc.Version()))
    return codes


def ops_of(schema, model) -> dict[str, dict]:
    codes = op_codes(schema, model)
    used: Counter = Counter()
    for g in range(model.SubgraphsLength()):
        sg = model.Subgraphs(g)
        for j in range(sg.OperatorsLength()):
            used[codes[sg.Operators(j).OpcodeIndex()]] += 1
    out: dict[str, dict] = {}
    for (name, version), n in sorted(used.items()):
        entry = out.setdefault(name, {"versions": [], "count": 0})
        entry["versions"].append(version)
        entry["count"] += n
    return out


def constant_types(schema, model) -> dict[str, int]:
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    counts: Counter = Counter()
    sg = model.Subgraphs(0)
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        buf = model.Buffers(t.Buffer())
        if buf is not None and (buf.DataLength() > 0 or buf.Size() > 0):
            counts[types.get(t.Type(), str(t.Type()))] += int(np.prod(t.ShapeAsNumpy())) if t.ShapeLength() else 1
    return dict(counts)


def per_channel_dynamic_range(schema, model) -> dict[str, int]:
    """{op: count} of ops with a float output computed from int8 weights with one scale per
    channel: dynamic-range FULLY_CONNECTED and embedding tables quantized per channel. Full
    int8 ops (int8 output) do not count: every runtime computes those per channel."""
    codes, sg, found = op_codes(schema, model), model.Subgraphs(0), Counter()
    for j in range(sg.OperatorsLength()):
        op = sg.Operators(j)
        if not any(sg.Tensors(i).Type() == schema.TensorType.FLOAT32 for i in op.OutputsAsNumpy() if i >= 0):
            continue
        weights = [sg.Tensors(i) for i in op.InputsAsNumpy() if i >= 0]
        if any(t.Type() == schema.TensorType.INT8 and t.Quantization() is not None
               and t.Quantization().ScaleLength() > 1 for t in weights):
            found[codes[op.OpcodeIndex()][0]] += 1
    return dict(found)


def op_notes(path: Path) -> dict:
    """The file's ops and versions, constants by type, and per runtime we have knowledge of
    (runtimes/tflite_ops): the ops it cannot load, and what in the file it loads but
    computes wrongly ("known_wrong_on"), so a device is protected without its runtime here."""
    from edgeify.runtimes import tflite_ops

    schema, model = flatbuffer(path)
    ops, constants = ops_of(schema, model), constant_types(schema, model)
    versions = {k: v["versions"] for k, v in ops.items()}
    per_channel = per_channel_dynamic_range(schema, model)
    return {"ops": versions, "constant_elements_by_type": constants, "per_channel_dynamic_range": per_channel,
            "ops_missing_in": {rt: tflite_ops.offending_ops(versions, rt) for rt in tflite_ops.TABLES},
            "known_wrong_on": tflite_ops.known_wrong(per_channel)}
