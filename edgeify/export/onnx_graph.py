"""Passes over an exported ONNX graph that make it store less or run faster on onnxruntime.

Each pass edits a loaded `onnx.ModelProto` in place and returns how much it changed, for the
artifact's notes. None changes what the model computes beyond float rounding. The layer-norm
passes are in onnx_norms.py. `check` is shared with the cached decoder (onnx_decoder.py),
which imports it from here, not from onnx.py, so the backend and its decoder form no circle.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from edgeify.errors import EdgeifyError

MS = "com.microsoft"


def dedupe_initializers(model) -> int:
    """Point all uses of byte-identical initializers at one copy; returns copies removed.

    ALBERT applies one shared block N times. Constant folding and attention fusion
    give each application its own copy of the (transposed, concatenated) weights; this
    puts the file back to one copy, as the model really is.
    """
    from onnx import numpy_helper

    graph = model.graph
    first: dict[tuple, str] = {}
    rename: dict[str, str] = {}
    keep = []
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        key = (init.data_type, tuple(init.dims), hashlib.sha1(arr.tobytes()).hexdigest())
        if key in first and arr.size > 1:
            rename[init.name] = first[key]
        else:
            first.setdefault(key, init.name)
            keep.append(init)
    if not rename:
        return 0
    del graph.initializer[:]
    graph.initializer.extend(keep)

    def fix(g):
        for node in g.node:
            for i, name in enumerate(node.input):
                if name in rename:
                    node.input[i] = rename[name]
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    fix(attr.g)
    fix(graph)
    return len(rename)


def bypass_weight_identities(model) -> int:
    """Make Identity(initializer) nodes' users read the initializer itself; returns how many.

    The TorchScript export reaches ALBERT's shared block weights, on each re-use, through
    an Identity node. quantize_static then takes each of them for an activation and puts a
    Quantize/DequantizeLinear pair after it, which onnxruntime never folds: every
    inference re-quantized all 66 weight matrices (47% of the time in DequantizeLinear),
    and int8-static ran at half fp32's speed. Found by the estimator (bench_estimator.py).
    """
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    source = {n.output[0]: n.input[0] for n in graph.node
              if n.op_type == "Identity" and n.input and n.input[0] in inits and n.output[0] not in outputs}
    if not source:
        return 0
    keep = [n for n in graph.node if not (n.op_type == "Identity" and n.output and n.output[0] in source)]
    for node in keep:
        for i, name in enumerate(node.input):
            if name in source:
                node.input[i] = source[name]
    del graph.node[:]
    graph.node.extend(keep)
    return len(source)


def pin_head_counts(model) -> int:
    """Write each attention's head count into its reshape, where the export left -1.

    transformers reshapes to (batch, seq, -1, head_size); onnxruntime's fusion then assumes
    the config's head count for every layer, which is wrong for a pruned model whose layers
    keep different numbers of heads (and the fused Attention fails to load). The count is
    the projection's output width / head_size, read from the weight or bias feeding the
    reshape. Returns how many reshapes were pinned.
    """
    from onnx import numpy_helper

    g = GraphIndex(model)
    const, producer = g.value, g.producers

    def width(name: str) -> int | None:
        node = producer.get(name)
        if node is None or node.op_type not in ("Add", "MatMul"):
            return None
        for inp in node.input:
            value = const(inp)
            if value is not None and value.ndim in (1, 2):
                return int(value.shape[-1])
        return None

    pinned = 0
    for node in model.graph.node:
        concat = producer.get(node.input[1]) if node.op_type == "Reshape" else None
        if concat is None or concat.op_type != "Concat" or len(concat.input) != 4:
            continue
        heads, size = const(concat.input[2]), const(concat.input[3])
        if heads is None or size is None or heads.size != 1 or int(heads.reshape(-1)[0]) != -1:
            continue
        n, d = width(node.input[0]), int(size.reshape(-1)[0])
        if not n or d <= 0 or n % d:
            continue
        name = f"edgeify_num_heads_{pinned}"
        model.graph.initializer.append(numpy_helper.from_array(np.array([n // d], dtype=heads.dtype), name))
        concat.input[2] = name
        pinned += 1
    return pinned


# --- shared by the passes here and in onnx_norms.py ---------------------------------------

class GraphIndex:
    """A graph's consumers, outputs and constant values, looked up by tensor name, and a
    way to add initializers; for the passes here and in onnx_norms.py."""

    def __init__(self, model):
        from onnx import numpy_helper

        self.graph = model.graph
        self.inits = {i.name: i for i in self.graph.initializer}
        self.consumers: dict[str, list] = defaultdict(list)
        for node in self.graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.producers = {o: n for n in self.graph.node for o in n.output}
        self.outputs = {o.name for o in self.graph.output}
        self.constant_nodes = {n.output[0]: n.attribute[0].t for n in self.graph.node
                               if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
        self._to_array = numpy_helper.to_array
        self._from_array = numpy_helper.from_array
        self._added = 0
        self._shared: dict[tuple, str] = {}

    def constant(self, values: tuple, dtype, hint: str) -> str:
        """An initializer holding `values`, one per graph for each distinct value."""
        key = (values, np.dtype(dtype).name)
        if key not in self._shared:
            self._shared[key] = self.add(np.array(values, dtype), hint)
        return self._shared[key]

    def value(self, name: str) -> np.ndarray | None:
        """The constant `name` holds (an initializer or a Constant node's), else None."""
        init = self.inits.get(name, self.constant_nodes.get(name))
        return None if init is None else self._to_array(init)

    def is_constant(self, name: str) -> bool:
        return name in self.inits or name in self.constant_nodes

    def ndim(self, name: str) -> int | None:
        """The rank of constant `name` (read from its dims, not its data), else None."""
        init = self.inits.get(name, self.constant_nodes.get(name))
        return None if init is None else len(init.dims)

    def add(self, array: np.ndarray, hint: str) -> str:
        """A new initializer (never an edit of an existing one: those may be shared)."""
        name = f"edgeify_{hint}_{self._added}"
        self._added += 1
        init = self._from_array(np.array(array, order="C"), name)  # keeps 0-d arrays 0-d
        self.graph.initializer.append(init)
        self.inits[name] = init
        return name

    def used(self, name: str) -> bool:
        return bool(name) and (bool(self.consumers.get(name)) or name in self.outputs)


def input_at(node, i: int) -> str:
    """The node's i-th input name, "" when it has fewer (an omitted optional input)."""
    return node.input[i] if len(node.input) > i else ""


def set_input(node, i: int, name: str) -> None:
    """Set the node's i-th input, padding omitted optional inputs before it with ""."""
    while len(node.input) <= i:
        node.input.append("")
    node.input[i] = name


def output_at(node, i: int) -> str:
    """The node's i-th output name, "" when it has fewer."""
    return node.output[i] if len(node.output) > i else ""


# --- a classifier reads one position: compute the last layers for that position only -----

# Ops that act on each position (row) of a (batch, sequence, hidden) tensor on its own, so
# picking a row before them gives what picking it after them gives.
ROWWISE = {"MatMul", "Add", "Sub", "Mul", "Div", "SkipLayerNormalization", "LayerNormalization",
           "BiasGelu", "Gelu", "FastGelu", "Tanh", "Relu", "Erf", "Cast"}
# Ops whose first output is (batch, sequence, hidden) by their schema.
SEQUENCE_OUTPUT = {"Attention", "MultiHeadAttention", "EmbedLayerNormalization"}


def _rank(g: GraphIndex, name: str, memo: dict) -> int | None:
    """The rank of tensor `name`, where the ops producing it make that certain, else None."""
    if name in memo:
        return memo[name]
    memo[name] = None  # guards cycles
    node = g.producers.get(name)
    rank = None
    if g.is_constant(name):
        rank = g.ndim(name)
    elif node is None:
        for inp in g.graph.input:
            if inp.name == name:
                rank = len(inp.type.tensor_type.shape.dim)
    elif node.op_type in SEQUENCE_OUTPUT and node.output[0] == name:
        rank = 3
    elif node.op_type == "Gather" and node.domain in ("", "ai.onnx"):  # an embedding lookup
        data_rank, index_rank = (_rank(g, i, memo) for i in node.input[:2])
        if data_rank is not None and index_rank is not None:
            rank = data_rank + index_rank - 1
    elif node.op_type in ROWWISE and node.output[0] == name:
        if node.op_type == "MatMul":
            ranks = [_rank(g, node.input[0], memo)] if g.ndim(input_at(node, 1)) == 2 else [None]
        else:  # numpy broadcasting: the highest rank of the inputs
            ranks = [_rank(g, i, memo) for i in node.input[:2] if i]
        rank = None if not ranks or None in ranks else max(ranks)
    elif node.op_type == "Shape":
        rank = 1
    elif node.op_type == "Reshape":
        rank = _length(g, node.input[1], memo)
    elif node.op_type == "Transpose":
        rank = _rank(g, node.input[0], memo)
    elif node.op_type == "Slice":
        rank = _rank(g, node.input[0], memo)
    elif node.op_type == "Unsqueeze":
        axes = g.value(input_at(node, 1))
        axes = axes if axes is not None else next((a.ints for a in node.attribute if a.name == "axes"), None)
        inner = _rank(g, node.input[0], memo)
        rank = None if axes is None or inner is None else inner + len(np.ravel(axes))
    memo[name] = rank
    return rank


def _length(g: GraphIndex, name: str, memo: dict) -> int | None:
    """The number of elements of a 1-D shape tensor, e.g. the one a Reshape is given."""
    constant = g.value(name)
    node = g.producers.get(name)
    if constant is not None:
        return constant.size
    if node is None:
        return None
    if node.op_type == "Concat":
        parts = [_length(g, i, memo) for i in node.input]
        return None if None in parts else sum(parts)
    if node.op_type == "Unsqueeze" and _rank(g, node.input[0], memo) == 0:
        return 1
    if node.op_type == "Shape" and not node.attribute:
        return _rank(g, node.input[0], memo)
    return None


def _rowwise(g: GraphIndex, node) -> bool:
    if node.op_type not in ROWWISE or node.domain not in ("", "ai.onnx", MS):
        return False
    if any(g.used(o) for o in node.output[1:]):  # a norm's mean / inverse std
        return False
    if node.op_type == "MatMul":
        return g.ndim(input_at(node, 1)) == 2
    if node.op_type == "LayerNormalization":
        return any(a.name == "axis" and a.i == -1 for a in node.attribute) or \
            not any(a.name == "axis" for a in node.attribute)
    # constants may only broadcast along the hidden axis
    return all(g.ndim(i) is None or g.ndim(i) <= 1 for i in node.input if i)


def gather_rows_early(model) -> int:
    """Where the graph ends in a Gather of one position (a classifier reading the [CLS]
    token), move that Gather up through the row-wise layers before it; returns how many
    nodes now compute one position instead of all of them.

    Sequence classifiers (ELECTRA, ALBERT) read only position 0 of the last layer, yet
    the exported graph runs the last layer's output projection, feed-forward and norms
    for every position. Those act on each position on its own, so selecting the row
    first gives the same logits: at sequence length 128 the last layer's feed-forward
    costs 1/128 of what it did. The attention before them still reads every position.
    """
    from onnx import helper

    g = GraphIndex(model)
    producer = g.producers
    narrowed = 0
    for gather in [n for n in g.graph.node if n.op_type == "Gather" and n.domain in ("", "ai.onnx")]:
        data, index = gather.input[0], gather.input[1]
        idx = g.value(index)
        axis = next((a.i for a in gather.attribute if a.name == "axis"), 0)
        if (idx is None or idx.ndim != 0 or axis != 1 or len(g.consumers[data]) != 1
                or data in g.outputs or _rank(g, data, {}) != 3):
            continue
        # Walk back in reverse topological order: a node joins when it is row-wise and
        # everything reading its output is already in (or is the gather).
        members: list = []
        member_ids: set[int] = set()
        wanted = {data}
        for node in reversed(list(g.graph.node)):
            if not any(o in wanted for o in node.output):
                continue
            readers = [c for o in node.output if o for c in g.consumers.get(o, [])]
            if _rowwise(g, node) and not any(o in g.outputs for o in node.output) and \
                    all(c is gather or id(c) in member_ids for c in readers):
                members.append(node)
                member_ids.add(id(node))
                wanted.update(i for i in node.input if i and not g.is_constant(i))
        if not members:
            continue
        made = {o for n in members for o in n.output}
        frontier = sorted({i for n in members for i in n.input if i and not g.is_constant(i) and i not in made})
        memo: dict = {}
        if any(_rank(g, f, memo) != 3 for f in frontier):
            continue
        rows = {f: f"{f}_edgeify_row" for f in frontier}
        row_index = g.add(idx, "row_index")  # an initializer: valid wherever the gathers go
        gathers = [helper.make_node("Gather", [f, row_index], [rows[f]], name=f"edgeify_row_of_{k}", axis=1)
                   for k, f in enumerate(frontier)]
        for node in members:
            for i, name in enumerate(node.input):
                if name in rows:
                    node.input[i] = rows[name]
            for i, name in enumerate(node.output):
                if name == data:
                    node.output[i] = gather.output[0]
        # The row gathers go right after their tensor's producer; the old gather goes.
        order = []
        pending = {producer[f].output[0] if f in producer else f: [] for f in frontier}
        for f, node in zip(frontier, gathers):
            pending[producer[f].output[0] if f in producer else f].append(node)
        order.extend(n for key in pending if key not in producer for n in pending[key])  # graph inputs
        for node in g.graph.node:
            if node is gather:
                continue
            order.append(node)
            if node.output and node.output[0] in pending:
                order.extend(pending[node.output[0]])
        del g.graph.node[:]
        g.graph.node.extend(order)
        narrowed += len(members)
        break  # one classifier per graph; consumers/producers are stale now
    return narrowed


def check(path: Path) -> None:
    """Structural check of a file we are about to trust, with a readable error."""
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except Exception as e:  # noqa: BLE001
        raise EdgeifyError(f"{path}: not a valid ONNX model ({str(e).splitlines()[0][:200]})") from None
