"""The cost of an OpenVINO IR (see cost.py): the model read, made static at the asked
shape, and its ops walked.

A stateful decoder's cache variables (ReadValue) are replaced by parameters of the
cache length asked for (0 for a window from an empty cache), so every attention product
gets a static shape. Subgraphs of constants (weight decompression: Convert, Subtract,
Multiply on an int8/int4 Constant) are folded or fused by the CPU plugin: no run-time
work, and the weight counts at its stored element type; such a weight-only matmul runs in
int8, the plugin quantizing its activations on the fly (see cost.py). Float work is counted as "fp16"
when the IR asks for the CPU's native half type (edgeify's fp16 IRs), as "fp32" otherwise.
"""

from __future__ import annotations

from pathlib import Path

from edgeify.targets.cost_model import Cost, Tally, prod

SIMPLE = {"Add", "Subtract", "Multiply", "Divide", "Select", "Maximum", "Minimum", "Relu", "Negative",
          "Abs", "Equal", "Less", "LessEqual", "Greater", "GreaterEqual", "LogicalAnd", "BitwiseAnd",
          "Clamp", "SquaredDifference", "Convert"}
TRANSCENDENTAL = {"Erf", "Tanh", "Gelu", "Sigmoid", "Exp", "Log", "Power", "Sqrt", "Swish", "HSwish"}
NORM = {"MVN", "ReduceMean", "ReduceSum", "NormalizeL2", "RMS"}
FREE = {"Parameter", "Result", "Constant", "Reshape", "Squeeze", "Unsqueeze", "ShapeOf", "Range",
        "Assign", "ReadValue"}
HALF = {"native", "bf16", "f16"}  # inference precisions edgeify writes into an IR's rt_info


def graph_cost(path: Path, batch: int, seq_len: int) -> Cost:
    model = _read(path)
    _make_static(model, batch, seq_len, past=0)
    return _walk(model, f"{path.name}: openvino IR, batch {batch}, seq {seq_len}", batch * seq_len)


def decode_cost(path: Path, context_len: int) -> Cost:
    model = _read(path)
    if not any(op.get_type_name() == "ReadValue" for op in model.get_ops()):
        raise ValueError(f"{path}: not a stateful cached decoder (no ReadValue state): "
                         "it has no per-token decode cost")
    _make_static(model, 1, 1, past=context_len)
    return _walk(model, f"{path.name}: openvino IR, one token after {context_len}", 1)


def _read(path: Path):
    import openvino as ov

    return ov.Core().read_model(str(path))


def _make_static(model, batch: int, seq_len: int, past: int) -> None:
    from openvino import opset13

    states = [op for op in model.get_ordered_ops() if op.get_type_name() == "ReadValue"]
    params = []
    for state in states:
        shape = [batch if axis == 0 else d.get_length() if d.is_static else past
                 for axis, d in enumerate(state.get_output_partial_shape(0))]
        param = opset13.parameter(shape, state.get_output_element_type(0), name=state.get_variable_id())
        for target in list(state.output(0).get_target_inputs()):
            target.replace_source_output(param.output(0))
        params.append(param)
    if params:
        model.add_parameters(params)
    shapes = {}
    for port in model.inputs:
        node = port.get_node()
        if node in params:
            continue
        pshape = port.get_partial_shape()
        shapes[port] = [batch if axis == 0 else d.get_length() if d.is_static else seq_len
                        for axis, d in enumerate(pshape)]
    model.reshape(shapes)


def _shape(output) -> tuple[int, ...] | None:
    pshape = output.get_partial_shape()
    return tuple(pshape.to_shape()) if pshape.is_static else None


def _nbytes(output) -> float:
    shape = _shape(output)
    return prod(shape) * output.get_element_type().bitwidth / 8 if shape is not None else 0.0


def _walk(model, source: str, default_rows: int) -> Cost:
    tally = Tally(source)
    half = False
    if model.has_rt_info(["edgeify", "inference_precision"]):
        half = str(model.get_rt_info(["edgeify", "inference_precision"]).astype(str)) in HALF
    float_precision = "fp16" if half else "fp32"
    if half:
        tally.note("float work counted as fp16: the IR asks for the CPU's native half type")
    const: set[int] = set()
    for op in model.get_ordered_ops():
        name = op.get_type_name()
        inputs = [op.input_value(i).get_node() for i in range(op.get_input_size())]
        if name == "Constant" or (inputs and all(id(i) in const or i.get_type_name() == "Constant" for i in inputs)
                                  and name not in ("Parameter", "ReadValue")):
            const.add(id(op))
            continue
        if name in FREE:
            continue
        _op(op, name, inputs, const, tally, float_precision, default_rows)
    return tally.cost()


def _act_bytes(op, const: set[int]) -> float:
    ins = [op.input_value(i) for i in range(op.get_input_size())]
    total = sum(_nbytes(v) for v in ins if id(v.get_node()) not in const and v.get_node().get_type_name() != "Constant")
    return total + sum(_nbytes(op.output(i)) for i in range(op.get_output_size()))


def _constants(node, seen=None) -> list:
    """The Constant ops a constant subgraph is built from."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return []
    seen.add(id(node))
    if node.get_type_name() == "Constant":
        return [node]
    return [c for i in range(node.get_input_size()) for c in _constants(node.input_value(i).get_node(), seen)]


def _through_layout(node):
    """Skip the ops that only move data between a quantizer and a matmul."""
    while node.get_type_name() in ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Convert"):
        node = node.input_value(0).get_node()
    return node


def _op(op, name, inputs, const, tally: Tally, float_precision: str, default_rows: int) -> None:
    out = _shape(op.output(0)) if op.get_output_size() else None
    elements = prod(out) if out is not None else 0
    if name in ("MatMul", "FullyConnected"):
        _matmul(op, name, inputs, const, tally, float_precision, default_rows)
    elif name == "ScaledDotProductAttention":
        q, k, v = (_shape(op.input_value(i)) for i in range(3))
        if q is None or k is None or v is None:
            tally.note("an attention input shape was unknown: not counted")
            return
        heads_rows = prod(q[:-1])  # batch x heads x queries
        tally.dense(2.0 * heads_rows * k[-2] * (q[-1] + v[-1]), float_precision, _act_bytes(op, const))
        tally.elementwise(heads_rows * k[-2], "softmax")
    elif name == "Gather" and id(inputs[0]) in const or name == "Gather" and inputs[0].get_type_name() == "Constant":
        tally.gather(_nbytes(op.output(0)), _nbytes(op.output(0)))
    elif name in SIMPLE:
        tally.elementwise(elements, "simple")
    elif name in TRANSCENDENTAL:
        tally.elementwise(elements, "transcendental")
    elif name in NORM:
        tally.elementwise(elements, "norm")
    elif name == "Softmax":
        tally.elementwise(elements, "softmax")
    elif name == "FakeQuantize":
        tally.elementwise(elements, "quantize")
    else:
        tally.move(_act_bytes(op, const))


def _matmul(op, name, inputs, const, tally: Tally, float_precision: str, default_rows: int) -> None:
    b = op.input_value(1)
    attrs = op.get_attributes()
    b_shape = _shape(b)
    if b_shape is None:
        tally.note(f"{name} {op.get_friendly_name()}: weight shape unknown, not counted")
        return
    if name == "FullyConnected":  # weights (N, K)
        k, n = b_shape[-1], b_shape[-2]
    else:
        k = b_shape[-1] if attrs.get("transpose_b") else b_shape[-2]
        n = b_shape[-2] if attrs.get("transpose_b") else b_shape[-1]
    out = _shape(op.output(0))
    if out is None:
        tally.note("a matmul shape was unknown: counted with batch x seq rows")
    flops = 2.0 * k * (prod(out) if out is not None else default_rows * n)
    b_const = id(inputs[1]) in const or inputs[1].get_type_name() == "Constant"
    constants = _constants(inputs[1]) if b_const else []
    low_bit = any(c.get_element_type().get_type_name() in ("i8", "u8", "i4", "u4") for c in constants)
    a_fq = _through_layout(inputs[0]).get_type_name() == "FakeQuantize"
    b_fq = _through_layout(inputs[1]).get_type_name() == "FakeQuantize"
    precision = "int8" if a_fq and (b_fq or low_bit) else float_precision
    weight_only = low_bit and not a_fq
    if weight_only:  # the CPU plugin quantizes the activations of compressed-weight matmuls on the fly
        precision = "int8"
        tally.note("compressed-weight matmuls counted as int8: OpenVINO's CPU plugin quantizes their "
                   "activations on the fly (DYNAMIC_QUANTIZATION_GROUP_SIZE, 32 by default)")
    if constants:
        main = max(constants, key=lambda c: prod(c.get_output_shape(0)))
        nbytes = sum(_nbytes(c.output(0)) for c in constants)
        tally.weight(main.get_friendly_name(), nbytes, main.get_element_type().get_type_name(), k * n)
    tally.dense(flops, precision, _act_bytes(op, const), weight_only=weight_only)
