"""Layer norms for onnxruntime's CPU kernels: fold each norm's shift into the biases
downstream, then run the norm as vectorised InstanceNormalization (see lower_norms)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from edgeify.export.onnx_graph import MS, GraphIndex, input_at, output_at, set_input

# op type -> (index of scale (gamma), index of shift (beta)) among the inputs
NORMS = {"SkipLayerNormalization": (2, 3), "LayerNormalization": (1, 2)}


def _shift_bias(g: GraphIndex, node, index: int, delta: np.ndarray) -> None:
    """Add delta to the bias `node` reads at input `index` (a zero bias when it has none)."""
    current = g.value(input_at(node, index))
    bias = delta if current is None else current + delta
    set_input(node, index, g.add(bias.astype(np.float32), "folded_bias"))


def _bias_slot(g: GraphIndex, node, output: str):
    """Where a constant 1-D bias can be added to `output`, which `node` reads: (node, index)."""
    if node.op_type in ("BiasGelu", "FastGelu") and node.domain == MS and input_at(node, 0) == output:
        return node, 1
    if node.op_type == "SkipLayerNormalization" and output in node.input[:2]:
        return node, 4
    if node.op_type == "Add" and output in node.input:
        other = node.input[1] if node.input[0] == output else node.input[0]
        value = g.value(other)
        if value is not None and value.ndim == 1:
            return node, list(node.input).index(other)
    return None


def _shift_plan(g: GraphIndex, norm, beta: np.ndarray):
    """How every reader of the norm's output can take beta instead: [(node, index, delta)].

    None when one reader cannot (a graph output, a gather, a matmul with nowhere to put
    beta @ W): that norm keeps its shift.
    """
    out = norm.output[0]
    if out in g.outputs:
        return None
    plan = []
    for reader in g.consumers.get(out, []):
        weight = g.value(input_at(reader, 1))
        if reader.op_type == "Attention" and reader.domain == MS and list(reader.input).count(out) == 1 \
                and reader.input[0] == out and weight is not None and g.is_constant(input_at(reader, 2)):
            plan.append((reader, 2, beta @ weight))
        elif reader.op_type == "MatMul" and reader.input[0] == out and weight is not None and weight.ndim == 2:
            after = g.consumers.get(reader.output[0], [])
            slot = _bias_slot(g, after[0], reader.output[0]) if len(after) == 1 else None
            if slot is None or reader.output[0] in g.outputs:
                return None
            plan.append((*slot, beta @ weight))
        elif reader.op_type == "SkipLayerNormalization" and list(reader.input[:2]).count(out) == 1:
            plan.append((reader, 4, beta))  # the residual: x + (m + beta)
        else:
            return None
    return plan


def fold_norm_shifts(model) -> int:
    """Move each layer norm's shift (beta) into the biases of the layers that read it.

    y = n * gamma + beta feeds matmuls (y @ W + b = (n * gamma) @ W + (beta @ W + b)) and
    residual adds (x + y = (x + beta) + n * gamma). Once the norm is lowered (lower_norms)
    the shift is a full pass over the activations of its own; folded, it costs nothing.
    Norms whose output also goes elsewhere (the last one, into the classifier) keep it.
    Returns how many norms were folded.
    """
    g = GraphIndex(model)
    folded = 0
    for norm in list(g.graph.node):
        if norm.op_type not in NORMS or norm.domain not in ("", "ai.onnx", MS):
            continue
        beta_index = NORMS[norm.op_type][1]
        beta = g.value(input_at(norm, beta_index))
        if beta is None or beta.ndim != 1 or not np.any(beta):
            continue
        plan = _shift_plan(g, norm, beta.astype(np.float64))
        if not plan:
            continue
        for node, index, delta in plan:
            _shift_bias(g, node, index, delta)
        norm.input[beta_index] = ""
        folded += 1
    return folded


def _normalize(g: GraphIndex, p: str, x: str, eps: float, hidden: int, rows_shapes: dict) -> tuple[list, str]:
    """(x - mean) / sqrt(var + eps) over the last axis, as InstanceNormalization on rows.

    onnxruntime's CPU LayerNormalization and SkipLayerNormalization kernels are scalar
    loops with a division per element; InstanceNormalization is vectorised and ran
    2.4x faster on a 128 x 384 input (2 threads, benchmarks/bench_onnx_ops.py), so the
    normalisation runs as one instance norm over (rows, 1, hidden).

    The (-1, 1, hidden) shape is computed in the graph, once per hidden size
    (`rows_shapes`), not stored: onnxruntime cannot load a Reshape whose shape constant
    was saved as external data (onnx.save with size_threshold=0).
    """
    from onnx import helper

    one = g.constant((1.0,), np.float32, "one")
    zero = g.constant((0.0,), np.float32, "zero")
    nodes = []
    if hidden not in rows_shapes:
        lead = g.constant((-1, 1), np.int64, "rows_lead")
        nodes += [helper.make_node("Shape", [x], [p + "hidden"], name=p + "hidden", start=-1),
                  helper.make_node("Concat", [lead, p + "hidden"], [p + "rows_shape"], name=p + "rows_shape", axis=0)]
        rows_shapes[hidden] = p + "rows_shape"
    nodes += [
        helper.make_node("Reshape", [x, rows_shapes[hidden]], [p + "rows"], name=p + "to_rows"),
        helper.make_node("InstanceNormalization", [p + "rows", one, zero], [p + "normed_rows"],
                         name=p + "normalize", epsilon=float(eps)),
        helper.make_node("Shape", [x], [p + "shape"], name=p + "shape"),
        helper.make_node("Reshape", [p + "normed_rows", p + "shape"], [p + "normed"], name=p + "from_rows"),
    ]
    return nodes, p + "normed"


def _affine(p: str, x: str, gamma: str, beta: str, out: str) -> list:
    from onnx import helper

    if not beta:
        return [helper.make_node("Mul", [x, gamma], [out], name=p + "scale")]
    return [helper.make_node("Mul", [x, gamma], [p + "scaled"], name=p + "scale"),
            helper.make_node("Add", [p + "scaled", beta], [out], name=p + "shift")]


def lower_norms(model) -> dict[str, int]:
    """Rewrite fused LayerNormalization / SkipLayerNormalization / BiasGelu into plain ops
    that onnxruntime's CPU kernels vectorise; returns how many of each were lowered.

    BiasGelu becomes Add + Gelu: after dynamic quantization onnxruntime folds that Add
    into the int8 matmul before it (its bias input), and its Gelu kernel takes 0.8x
    BiasGelu's time (benchmarks/bench_onnx_ops.py). Nodes whose mean / inverse-std
    outputs are read are left alone.
    """
    from onnx import helper

    g = GraphIndex(model)
    lowered: dict[str, int] = defaultdict(int)
    rows_shapes: dict[int, str] = {}
    new_nodes = []
    for k, node in enumerate(g.graph.node):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        p = f"edgeify_lowered_{k}_"
        kind = node.op_type if node.domain in ("", "ai.onnx", MS) else ""
        if kind in NORMS:
            gamma_index, beta_index = NORMS[kind]
            gamma = g.value(input_at(node, gamma_index))
            if (g.used(output_at(node, 1)) or g.used(output_at(node, 2)) or gamma is None
                    or gamma.ndim != 1 or attrs.get("axis", -1) not in (-1, None)):
                new_nodes.append(node)
                continue
            x = node.input[0]
            if kind == "SkipLayerNormalization":
                total = output_at(node, 3) if g.used(output_at(node, 3)) else p + "sum"
                bias = input_at(node, 4)
                if bias:
                    new_nodes.append(helper.make_node("Add", [x, bias], [p + "biased"], name=p + "bias"))
                    x = p + "biased"
                new_nodes.append(helper.make_node("Add", [x, node.input[1]], [total], name=p + "residual"))
                x = total
            default_eps = 1e-12 if kind == "SkipLayerNormalization" else 1e-5
            nodes, normed = _normalize(g, p, x, attrs.get("epsilon", default_eps), gamma.shape[0], rows_shapes)
            new_nodes += nodes + _affine(p, normed, node.input[gamma_index], input_at(node, beta_index),
                                         node.output[0])
            lowered[kind] += 1
        elif kind == "BiasGelu" and node.domain == MS:
            new_nodes += [helper.make_node("Add", list(node.input[:2]), [p + "biased"], name=p + "bias"),
                          helper.make_node("Gelu", [p + "biased"], [node.output[0]], name=p + "gelu", domain=MS)]
            lowered[kind] += 1
        else:
            new_nodes.append(node)
    del g.graph.node[:]
    g.graph.node.extend(new_nodes)
    return dict(lowered)
