"""The cost of an ONNX graph (see cost.py): shapes from onnxruntime's symbolic shape
inference at the asked static input shape, then one walk over the nodes.

Why onnxruntime's symbolic shape inference and not onnx's: edgeify's graphs are full of
com.microsoft ops (Attention, SkipLayerNormalization, MatMulNBits, ...) that onnx's own
inference leaves shapeless, and every op after them with it. QAttention is missing from
onnxruntime's table too; it is added here. A matmul whose input shape is still unknown
is counted with batch x seq_len rows, and the Cost says so in its notes.
"""

from __future__ import annotations

from pathlib import Path

from edgeify.contract import PAST
from edgeify.targets.cost_model import Cost, Tally, prod

DENSE_INT8 = {"MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QLinearMatMul", "QGemm"}
ATTENTION = {"Attention", "QAttention", "MultiHeadAttention", "GroupQueryAttention"}
SIMPLE = {"Add", "Sub", "Mul", "Div", "Where", "Max", "Min", "Relu", "Neg", "Abs", "Equal", "Less",
          "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Not", "Clip", "BiasAdd"}
TRANSCENDENTAL = {"Erf", "Tanh", "Gelu", "FastGelu", "BiasGelu", "Sigmoid", "Exp", "Log", "Pow",
                  "Sqrt", "Reciprocal", "QuickGelu"}
NORM = {"LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization",
        "SkipSimplifiedLayerNormalization", "ReduceMean", "ReduceSum", "InstanceNormalization",
        "MeanVarianceNormalization"}
QUANT = {"DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear"}
FREE = {"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Shape", "Constant", "Size",
        "ConstantOfShape", "Range"}


def graph_cost(path: Path, batch: int, seq_len: int) -> Cost:
    return _cost(path, batch, seq_len, past=0)


def decode_cost(path: Path, context_len: int) -> Cost:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    if not any(i.name.startswith(PAST + ".") for i in model.graph.input):
        raise ValueError(f"{path}: not a cached decoder (no past_key_values.* inputs): "
                         "it has no per-token decode cost")
    return _cost(path, 1, 1, past=context_len)


def _cost(path: Path, batch: int, seq_len: int, past: int) -> Cost:
    import onnx

    model = onnx.load(str(path))
    _fix_inputs(model.graph, batch, seq_len, past)
    shapes, tally = _infer(model), Tally(f"{path.name}: onnx graph, batch {batch}, seq {seq_len}"
                                         + (f", past {past}" if past else ""))
    _Walk(model.graph, shapes, tally, batch * seq_len).run()
    return tally.cost()


def _fix_inputs(graph, batch: int, seq_len: int, past: int) -> None:
    """Every symbolic input dim made concrete: axis 0 the batch, a cache input's
    sequence axis the past length, any other the sequence length."""
    inits = {i.name for i in graph.initializer}
    for inp in graph.input:
        if inp.name in inits:
            continue
        for axis, dim in enumerate(inp.type.tensor_type.shape.dim):
            if dim.HasField("dim_value"):
                continue
            value = batch if axis == 0 else past if inp.name.startswith("past") else seq_len
            dim.Clear()
            dim.dim_value = value


def _infer(model) -> dict[str, tuple[tuple[int, ...] | None, int]]:
    """name -> (shape or None when unknown, onnx elem type), for every tensor."""
    out = model
    try:
        out = _symbolic(model)
    except Exception:  # noqa: BLE001 - inference is best effort; the walk falls back per op
        import onnx

        try:
            out = onnx.shape_inference.infer_shapes(model, data_prop=True)
        except Exception:  # noqa: BLE001
            out = model
    shapes = {}
    for vi in (*out.graph.value_info, *out.graph.input, *out.graph.output):
        t = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
        shapes[vi.name] = (None if any(d is None for d in dims) or not t.HasField("shape") else dims, t.elem_type)
    for init in model.graph.initializer:
        shapes[init.name] = (tuple(init.dims), init.data_type)
    return shapes


def _symbolic(model):
    """onnxruntime's symbolic shape inference (its loop, without the scratch file its
    infer_shapes() writes into the working directory on failure), plus QAttention."""
    from onnx import helper
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    inf = SymbolicShapeInference(2**31 - 1, True, True, 0)

    def q_attention(node):  # output: (batch, seq, hidden), float like the scales
        shape = inf._get_shape(node, 0)
        bias = inf._try_get_shape(node, 2)
        hidden = bias[0] // 3 if bias and isinstance(bias[0], int) else inf._get_shape(node, 1)[1] // 3
        elem = inf.known_vi_[node.input[3]].type.tensor_type.elem_type
        inf.known_vi_[node.output[0]].CopyFrom(
            helper.make_tensor_value_info(node.output[0], elem, [*shape[:2], hidden]))

    def to_float(node):  # A (.., K) x B (K, N) -> (.., N) float
        a, b = inf._get_shape(node, 0), inf._get_shape(node, 1)
        inf.known_vi_[node.output[0]].CopyFrom(helper.make_tensor_value_info(node.output[0], 1, [*a[:-1], b[-1]]))

    inf.dispatcher_.setdefault("QAttention", q_attention)
    for op in ("DynamicQuantizeMatMul", "MatMulIntegerToFloat"):
        inf.dispatcher_.setdefault(op, to_float)
    inf._preprocess(model)
    while inf.run_:
        inf._infer_impl()
    inf._update_output_from_vi()
    return inf.out_mp_


def _itemsize(elem_type: int) -> float:
    from onnx import TensorProto, helper

    if elem_type in (TensorProto.INT4, TensorProto.UINT4):
        return 0.5
    try:
        return float(helper.tensor_dtype_to_np_dtype(elem_type).itemsize)
    except Exception:  # noqa: BLE001 - undefined / exotic types: count as 4 bytes
        return 4.0


def _dtype_name(elem_type: int) -> str:
    from onnx import TensorProto

    return TensorProto.DataType.Name(elem_type).lower()


class _Walk:
    def __init__(self, graph, shapes, tally: Tally, default_rows: int):
        self.graph, self.shapes, self.tally, self.default_rows = graph, shapes, tally, default_rows
        self.inits = {i.name: i for i in graph.initializer}
        self.producer = {o: n for n in graph.node for o in n.output}
        self.const = set(self.inits)
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for i in node.input:
                self.consumers.setdefault(i, []).append(node)
        self.rescaled: set[str] = set()  # outputs of a MatMulInteger and of its fused Cast
        for node in graph.node:  # constant subgraphs are folded at load: no run-time work ...
            if node.op_type == "Constant" or (node.input and all(not i or i in self.const for i in node.input)):
                if node.op_type == "DequantizeLinear" and not self.fused_weight(node):
                    continue  # ... except a DequantizeLinear onnxruntime cannot fuse (see fused_weight)
                self.const.update(node.output)

    def fused_weight(self, node) -> bool:
        """A DequantizeLinear of a constant that onnxruntime fuses into the op reading it.

        onnxruntime never constant-folds DequantizeLinear (it keeps them for its QDQ
        fusions), so one feeding anything but a matmul or a lookup directly (through
        Identity at most) runs at every inference: e.g. a weight shared by several
        layers reached through Identity nodes, which QDQ quantization then re-quantizes
        as if it were an activation."""
        users, todo = [], [node.output[0]]
        while todo:
            for user in self.consumers.get(todo.pop(), []):
                if user.op_type == "Identity":
                    todo.append(user.output[0])
                else:
                    users.append(user)
        return bool(users) and all(u.op_type in ("MatMul", "Gemm", "Gather") for u in users)

    # -- tensors
    def shape(self, name: str) -> tuple[int, ...] | None:
        return self.shapes.get(name, (None, 1))[0]

    def nbytes(self, name: str) -> float:
        shape, elem = self.shapes.get(name, (None, 1))
        return prod(shape) * _itemsize(elem) if shape is not None else 0.0

    def act_bytes(self, node) -> float:
        """Bytes of the non-constant inputs and the outputs; an input from a
        DequantizeLinear fused into this op is read quantized."""
        total = 0.0
        for name in (i for i in node.input if i and i not in self.const):
            src = self.producer.get(name)
            fused = src is not None and src.op_type == "DequantizeLinear" and node.op_type in ("MatMul", "Gemm")
            total += self.nbytes(src.input[0] if fused else name)
        return total + sum(self.nbytes(o) for o in node.output if o)

    def root(self, name: str):
        """The initializer a constant input comes from (through DequantizeLinear, Transpose,
        Cast, Reshape...), the largest when several feed it."""
        if name in self.inits:
            return self.inits[name]
        node = self.producer.get(name)
        if node is None:
            return None
        found = [r for r in (self.root(i) for i in node.input if i) if r is not None]
        return max(found, key=lambda r: prod(r.dims), default=None)

    def add_weight(self, name: str, extra: tuple[str, ...] = ()) -> None:
        init = self.root(name)
        if init is None:
            return
        nbytes = prod(init.dims) * _itemsize(init.data_type) + sum(self.nbytes(e) for e in extra if e)
        self.tally.weight(init.name, nbytes, _dtype_name(init.data_type), prod(init.dims))

    def quantized(self, name: str) -> bool:
        """Produced by a DequantizeLinear of 8-bit data: QDQ, which onnxruntime runs in int8."""
        node = self.producer.get(name)
        if node is None or node.op_type != "DequantizeLinear":
            return False
        elem = self.shapes.get(node.input[0], (None, 0))[1]
        return _itemsize(elem) == 1

    def rows(self, name: str, k: int) -> int:
        shape = self.shape(name)
        if shape is None:
            self.tally.note("a matmul input shape was unknown: counted with batch x seq rows")
            return self.default_rows
        return prod(shape) // max(int(k), 1)

    def absorbed(self, node) -> bool:
        """Work onnxruntime fuses into a neighbouring int8 matmul at load time: the
        DequantizeLinear feeding a QDQ matmul and the QuantizeLinear after it (QLinearMatMul),
        and the Cast / Mul rescaling after a MatMulInteger (MatMulIntegerToFloat)."""
        op = node.op_type
        if op == "DequantizeLinear":
            users = self.consumers.get(node.output[0], [])
            return bool(users) and all(u.op_type in ("MatMul", "Gemm") and all(
                self.quantized(i) for i in u.input[:2]) for u in users)
        src = self.producer.get(node.input[0]) if node.input else None
        if op == "QuantizeLinear":
            return src is not None and src.op_type in ("MatMul", "Gemm") and all(
                self.quantized(i) for i in src.input[:2])
        if op in ("Cast", "Mul"):
            return any(i in self.rescaled for i in node.input)
        return False

    # -- ops
    def run(self) -> None:
        for node in self.graph.node:
            if node.output and all(o in self.const for o in node.output if o) or node.op_type in FREE:
                continue
            if node.op_type == "MatMulInteger":
                self.rescaled.add(node.output[0])
            elif self.absorbed(node):
                if node.op_type == "Cast":  # the Mul by the scales after it is fused too, no further op
                    self.rescaled.update(node.output)
                continue
            handler = getattr(self, f"_op_{node.op_type}", None)
            if handler is not None:
                handler(node)
            elif node.op_type in DENSE_INT8:
                self._matmul(node, "int8")
            elif node.op_type in ATTENTION:
                self._attention(node)
            else:
                self._generic(node)

    def _generic(self, node) -> None:
        out = self.shape(node.output[0]) if node.output and node.output[0] else None
        elements = prod(out) if out is not None else 0
        op = node.op_type
        if op in SIMPLE:
            self.tally.elementwise(elements, "simple")
        elif op in TRANSCENDENTAL:
            self.tally.elementwise(elements, "transcendental")
        elif op in NORM:
            self.tally.elementwise(elements, "norm")
        elif op == "DequantizeLinear" and node.input[0] in self.const:  # a weight, every run
            self.add_weight(node.input[0])
            self.tally.elementwise(elements, "quantize", self.nbytes(node.input[0]) + self.act_bytes(node))
            self.tally.note("a DequantizeLinear of a weight runs at every inference (not fusable)")
        elif op in QUANT:
            self.tally.elementwise(elements, "quantize", self.act_bytes(node))
        elif op == "Softmax":
            self.tally.elementwise(elements, "softmax")
        elif op == "Gather" and node.input[0] in self.const:
            self.tally.gather(self.nbytes(node.output[0]), self.nbytes(node.output[0]))
        else:
            self.tally.move(self.act_bytes(node))

    def _matmul(self, node, precision: str | None = None, transpose_b: bool = False) -> None:
        a, b = node.input[0], node.input[3 if node.op_type == "QLinearMatMul" else 1]
        b_shape = self.shape(b)
        if b_shape is None:
            self.tally.note(f"{node.op_type} {node.name}: weight shape unknown, not counted")
            return
        k, n = (b_shape[-1], b_shape[-2]) if transpose_b else (b_shape[-2], b_shape[-1])
        out = self.shape(node.output[0])  # batched and broadcast products included
        flops = 2.0 * k * (prod(out) if out is not None else self.rows(a, k) * n)
        if precision is None:
            elem = self.shapes.get(a, (None, 1))[1]
            precision = ("int8" if self.quantized(a) and self.quantized(b)
                         else "fp16" if elem in (10, 16) else "fp32")  # FLOAT16, BFLOAT16
        if b in self.const:
            self.add_weight(b, tuple(node.input[2:]) if node.op_type in DENSE_INT8 else ())
        self.tally.dense(flops, precision, self.act_bytes(node))

    def _op_MatMul(self, node) -> None:
        self._matmul(node)

    def _op_Gemm(self, node) -> None:
        trans_b = any(a.name == "transB" and a.i for a in node.attribute)
        self._matmul(node, transpose_b=bool(trans_b))

    def _op_MatMulNBits(self, node) -> None:
        attrs = {a.name: a.i for a in node.attribute}
        k, n = attrs["K"], attrs["N"]
        precision = "fp32"  # weight-only: float activations (see cost.py on accuracy_level 4)
        packed = [self.nbytes(i) for i in node.input[1:4] if i]
        self.tally.weight(node.input[1], sum(packed), f"int{attrs.get('bits', 4)}", k * n)
        self.tally.dense(2.0 * self.rows(node.input[0], k) * k * n, precision, self.act_bytes(node),
                         weight_only=True)
        if attrs.get("accuracy_level", 0) == 4:
            self.tally.note("MatMulNBits accuracy_level 4 quantizes its input per block and multiplies in int8 "
                            "inside the op; counted as float weight-only work (see cost.py)")

    def _attention(self, node) -> None:
        """Fused attention: the QKV projection (int8 in QAttention) plus the score and
        context products over past + new tokens, in float, and the softmax."""
        op = node.op_type
        x = self.shape(node.input[0])
        heads = next((a.i for a in node.attribute if a.name == "num_heads"), 1)
        if x is None or len(x) != 3:
            self.tally.note(f"{op} {node.name}: input shape unknown, not counted")
            return
        b, s, hidden_in = x
        if op in ("Attention", "QAttention"):
            w = self.shape(node.input[1])
            qkv = w[1] if w is not None else 3 * hidden_in
            hq = qkv // 3
            self.add_weight(node.input[1])
            self.tally.dense(2.0 * b * s * hidden_in * qkv, "int8" if op == "QAttention" else "fp32")
            past_idx = 8 if op == "QAttention" else 4
        else:  # MultiHeadAttention / GroupQueryAttention: projections are separate MatMuls
            hq, past_idx = hidden_in, 6
        past = self.shape(node.input[past_idx]) if len(node.input) > past_idx and node.input[past_idx] else None
        t = s + (past[-2] if past is not None else 0)
        kv = self.shape(node.input[1]) if op != "Attention" and op != "QAttention" else None
        if kv is not None and len(kv) == 3 and op == "MultiHeadAttention":
            t = kv[1] + (past[-2] if past is not None else 0)
        self.tally.dense(4.0 * b * s * t * hq, "fp32", self.act_bytes(node))
        self.tally.elementwise(b * heads * s * t, "softmax")

    def _op_EmbedLayerNormalization(self, node) -> None:
        out = self.shape(node.output[0])
        if out is None:
            return
        tables = sum(1 for i in node.input[2:5] if i)
        self.tally.gather(tables * self.nbytes(node.output[0]), self.nbytes(node.output[0]))
        self.tally.elementwise(prod(out), "norm")
