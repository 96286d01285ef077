"""The cost of a TFLite file (see cost.py), read from its flatbuffer: tensor shapes are
static in the file, so no interpreter is needed (and a decoder's prefill and decode
signatures, each its own subgraph, are read the same way).

Counted as TFLite runs them: a FULLY_CONNECTED with int8 (or int4) weights and float input
is dynamic-range ("hybrid"): it quantizes its input at run time and multiplies in int8, so
its FLOPs are int8. A DEQUANTIZE of a constant (fp16 weights) is done once when the
interpreter prepares, not per run; the weight counts at its stored size.
"""

from __future__ import annotations

import math
from pathlib import Path

from edgeify.targets.cost_model import Cost, Tally, prod

ITEMSIZE = {"FLOAT32": 4, "FLOAT16": 2, "BFLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "BOOL": 1,
            "INT16": 2, "INT8": 1, "FLOAT64": 8, "UINT32": 4, "UINT16": 2, "INT4": 0.5, "UINT4": 0.5,
            "INT2": 0.25, "UINT64": 8}
LOW_BIT = {"INT8", "UINT8", "INT4", "UINT4", "INT16"}
SIMPLE = {"ADD", "SUB", "MUL", "DIV", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM", "SELECT", "SELECT_V2",
          "LESS", "LESS_EQUAL", "GREATER", "GREATER_EQUAL", "EQUAL", "LOGICAL_AND", "RELU", "NEG", "ABS",
          "CAST"}
TRANSCENDENTAL = {"TANH", "LOGISTIC", "GELU", "EXP", "LOG", "POW", "SQRT", "RSQRT", "ERF"}
NORM = {"MEAN", "SUM", "REDUCE_MAX"}
FREE = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "SHAPE"}
GATHER = {"EMBEDDING_LOOKUP", "GATHER"}


def graph_cost(path: Path, batch: int, seq_len: int) -> Cost:
    schema, model = _flatbuffer(path)
    signatures = _signatures(model)
    if "prefill" in signatures:  # a cached decoder: the window runs as prefill chunks
        index = signatures["prefill"]
        chunk = _input_shape(model, index, "input_ids")[-1]
        if batch != 1:
            raise ValueError(f"{path}: a TFLite decoder runs batch 1, not {batch}")
        calls = math.ceil(seq_len / chunk)
        cost = _walk(schema, model, index, f"{path.name}: tflite prefill x{calls} ({chunk}-token chunks)")
        return _times(cost, calls)
    index = next(iter(signatures.values()), 0)
    shape = _input_shape(model, index, "input_ids")
    if shape and tuple(shape[:2]) != (batch, seq_len):
        raise ValueError(f"{path}: the file's static input shape is {tuple(shape)}, not batch {batch} x "
                         f"seq {seq_len}; TFLite files are built per length (--seq-len)")
    return _walk(schema, model, index, f"{path.name}: tflite, batch {batch}, seq {seq_len}")


def decode_cost(path: Path, context_len: int) -> Cost:
    schema, model = _flatbuffer(path)
    signatures = _signatures(model)
    if "decode" not in signatures:
        raise ValueError(f"{path}: no 'decode' signature (has: {', '.join(signatures) or 'none'}); "
                         "not a TFLite cached decoder")
    cost = _walk(schema, model, signatures["decode"], f"{path.name}: tflite decode signature")
    return Cost(cost.flops, cost.other_flops, cost.weight_bytes, cost.activation_bytes,
                cost.weight_bytes_by_dtype, cost.matmul_params, cost.n_ops, cost.source,
                cost.notes + (f"attends over every slot of the fixed cache, whatever the context "
                              f"({context_len} asked)",), cost.weight_only_flops)


def _flatbuffer(path: Path):
    from ai_edge_litert import schema_py_generated as schema

    return schema, schema.Model.GetRootAsModel(Path(path).read_bytes(), 0)


def _signatures(model) -> dict[str, int]:
    out = {}
    for i in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(i)
        out[sig.SignatureKey().decode()] = sig.SubgraphIndex()
    return out


def _input_shape(model, index: int, name: str) -> list[int]:
    """The shape of the subgraph's input called `name` (by signature name or tensor name),
    else of its first input."""
    sg = model.Subgraphs(index)
    for i in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(i)
        if sig.SubgraphIndex() == index:
            for j in range(sig.InputsLength()):
                if sig.Inputs(j).Name().decode() == name:
                    return list(sg.Tensors(sig.Inputs(j).TensorIndex()).ShapeAsNumpy())
    tensors = [sg.Tensors(sg.Inputs(j)) for j in range(sg.InputsLength())]
    named = [t for t in tensors if name in t.Name().decode()] or tensors
    return list(named[0].ShapeAsNumpy()) if named and named[0].ShapeLength() else []


def _times(cost: Cost, n: int) -> Cost:
    if n == 1:
        return cost
    return Cost({p: f * n for p, f in cost.flops.items()}, cost.other_flops * n, cost.weight_bytes * n,
                cost.activation_bytes * n, {k: v * n for k, v in cost.weight_bytes_by_dtype.items()},
                cost.matmul_params, cost.n_ops * n, cost.source, cost.notes, cost.weight_only_flops * n)


def _op_codes(schema, model) -> list[str]:
    """Each operator code's name (CUSTOM:name for a custom op), by opcode index."""
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        custom = oc.CustomCode()
        codes.append(f"CUSTOM:{custom.decode()}" if custom else
                     op_names.get(max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()), "?"))
    return codes


def _matmul_kn(schema, name: str, op, a_shape: tuple, w_shape: tuple) -> tuple[int, int]:
    """(k, n) of a FULLY_CONNECTED (weights stored [n, k]) or a BATCH_MATMUL (adj_x/adj_y
    transpose the operands)."""
    if name == "FULLY_CONNECTED":
        return w_shape[-1], w_shape[0]
    opts, table = schema.BatchMatMulOptions(), op.BuiltinOptions()
    adj_x = adj_y = False
    if table is not None:
        opts.Init(table.Bytes, table.Pos)
        adj_x, adj_y = opts.AdjX(), opts.AdjY()
    return (a_shape[-2] if adj_x else a_shape[-1]), (w_shape[-2] if adj_y else w_shape[-1])


def _walk(schema, model, index: int, source: str) -> Cost:
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    codes = _op_codes(schema, model)
    sg = model.Subgraphs(index)
    tally = Tally(source)

    def tensor(i: int):
        t = sg.Tensors(i)
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        return t, shape, type_names.get(t.Type(), "FLOAT32")

    def nbytes(i: int) -> float:
        if i < 0:
            return 0.0
        _, shape, dtype = tensor(i)
        return prod(shape) * ITEMSIZE.get(dtype, 4)

    def is_const(i: int) -> bool:
        if i < 0:
            return False
        buf = model.Buffers(sg.Tensors(i).Buffer())
        return buf is not None and (buf.DataLength() > 0 or buf.Size() > 0)

    ops = [sg.Operators(j) for j in range(sg.OperatorsLength())]
    producer = {int(o): op for op in ops for o in op.OutputsAsNumpy()}
    stored = {i for i in range(sg.TensorsLength()) if is_const(i)}
    const = set(stored)
    for op in ops:  # constant DEQUANTIZE (fp16 weights): done at prepare time
        if codes[op.OpcodeIndex()] == "DEQUANTIZE" and all(int(i) in const for i in op.InputsAsNumpy()):
            const.update(int(o) for o in op.OutputsAsNumpy())

    def source_of(i: int) -> int:
        op = producer.get(i)
        if op is not None and codes[op.OpcodeIndex()] == "DEQUANTIZE" and int(op.InputsAsNumpy()[0]) in stored:
            return int(op.InputsAsNumpy()[0])
        return i

    def act(op) -> float:
        ins = [int(i) for i in op.InputsAsNumpy() if int(i) >= 0 and int(i) not in const]
        return sum(nbytes(i) for i in ins) + sum(nbytes(int(o)) for o in op.OutputsAsNumpy())

    for op in ops:
        name = codes[op.OpcodeIndex()]
        ins = [int(i) for i in op.InputsAsNumpy()]
        outs = [int(o) for o in op.OutputsAsNumpy()]
        if name in FREE or (outs and all(o in const for o in outs)):
            continue
        out_elements = prod(tensor(outs[0])[1]) if outs else 0
        if name in ("FULLY_CONNECTED", "BATCH_MATMUL"):
            _, a_shape, a_type = tensor(ins[0])
            w = source_of(ins[1])
            _, w_shape, w_type = tensor(w)
            k, n = _matmul_kn(schema, name, op, a_shape, w_shape)
            # int8 input (full int8), or int8/int4 weights taken as such (dynamic range)
            precision = "int8" if a_type in LOW_BIT or tensor(ins[1])[2] in LOW_BIT else (
                "fp16" if a_type in ("FLOAT16", "BFLOAT16") else "fp32")
            if ins[1] in const:
                tally.weight(("buffer", sg.Tensors(w).Buffer()), nbytes(w), w_type.lower(), k * n)
            tally.dense(2.0 * out_elements * k, precision, act(op))
        elif name in GATHER and ins and ins[0 if name == "GATHER" else 1] in const:
            tally.gather(nbytes(outs[0]), nbytes(outs[0]))
        elif name in SIMPLE:
            tally.elementwise(out_elements, "simple")
        elif name in TRANSCENDENTAL:
            tally.elementwise(out_elements, "transcendental")
        elif name in NORM or name in ("LAYER_NORM", "RMS_NORM"):
            tally.elementwise(out_elements, "norm")
        elif name == "SOFTMAX":
            tally.elementwise(out_elements, "softmax")
        elif name in ("QUANTIZE", "DEQUANTIZE"):
            tally.elementwise(out_elements, "quantize")
        else:
            tally.move(act(op))
    return tally.cost()

