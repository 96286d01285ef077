"""OpenVINO stateful cached decoder for causal LMs: the key/value cache lives in the plugin.

Converted from the same "grow" module as the ONNX decoder (past keys/values in, present
out), then made stateful with OpenVINO's MakeStateful transformation: each past input and
its present output become one variable (a ReadValue/Assign pair) that the infer request
keeps between calls. The graph's only input is then `input_ids`: no cache crosses the
Python boundary per token, and `reset_state()` empties it for the next sequence.

A ReadValue starts from its initializer subgraph; the transformation leaves none, so one is
built (as optimum-intel does): zeros of shape (batch of input_ids, heads, 0, head_dim), so
the first call is the prefill of an empty cache. The maximum length (the position table's
size) and the local window go into the IR's rt_info; the runner refuses to overflow it.

openvino is imported inside the functions: it is an optional extra.
"""

from __future__ import annotations

from pathlib import Path

from edgeify import contract
from edgeify.export import Artifact

# Keys written into the IR's rt_info (kept in the .xml), next to export/openvino.py's.
RT_DECODER = list(contract.OV_DECODER)        # "stateful"
RT_MAX_LENGTH = list(contract.OV_MAX_LENGTH)  # tokens the cache may hold
RT_WINDOW = list(contract.OV_LOCAL_WINDOW)    # attention window of the local layers
STATEFUL = contract.OV_STATEFUL


def _convert(module):
    """The grow module as an ov.Model with named ports: input_ids, past_key_values.* in;
    logits, present.* out. Batch, sequence and past axes are dynamic."""
    import openvino as ov
    import torch

    pasts, presents = contract.cache_names(module.n_layers), contract.cache_names(module.n_layers, contract.PRESENT)
    ids = torch.zeros((1, 3), dtype=torch.long)
    past = module.empty_cache(1, 2)  # a non-empty past: no shape gets traced as a constant 0
    shapes = [(ov.PartialShape([-1, -1]), ov.Type.i64)]
    shapes += [(ov.PartialShape([-1, s[1], -1, s[3]]), ov.Type.f32) for s in module.cache_shapes()]
    with torch.no_grad():
        ov_model = ov.convert_model(module, example_input=(ids, *past), input=shapes)
    # The PyTorch frontend names ports after forward's *args: name them as the ONNX decoder does.
    for port, name in zip(ov_model.inputs, ["input_ids", *pasts]):
        port.get_tensor().set_names({name})
    for port, name in zip(ov_model.outputs, ["logits", *presents]):
        port.get_tensor().set_names({name})
    return ov_model, pasts, presents


def make_stateful(ov_model, pasts: list[str], presents: list[str], batch_input: str = "input_ids") -> int:
    """Turn each past input / present output pair into a plugin-held variable; returns how many.

    Each variable starts (after reset_state) from zeros of shape (batch, heads, 0, head_dim),
    the batch read from `batch_input`'s shape, so a fresh request begins with an empty cache.
    """
    import numpy as np
    from openvino import opset13
    from openvino._offline_transformations import apply_make_stateful_transformation

    apply_make_stateful_transformation(ov_model, dict(zip(pasts, presents)))
    shape = opset13.shape_of(ov_model.input(batch_input), output_type="i64")
    batch = opset13.gather(shape, opset13.constant([0]), opset13.constant(0))
    states = [op for op in ov_model.get_ops() if op.get_type_name() == "ReadValue"]
    for op in states:
        dims = [batch] + [opset13.constant(np.array([d.get_length() if d.is_static else 0], np.int64))
                          for d in list(op.get_output_partial_shape(0))[1:]]
        zero = opset13.constant(0.0, dtype=op.get_output_element_type(0))
        op.set_arguments([opset13.broadcast(zero, opset13.concat(dims, axis=0))])
    ov_model.validate_nodes_and_infer_types()
    return len(states)


def export_decoder(model, family, out_dir: Path, max_length: int | None = None) -> Artifact:
    """Convert the family's grow decoder module, make it stateful, stamp rt_info, save fp32."""
    import openvino as ov

    from edgeify.export.openvino_ir import RT_PRECISION, save_ir

    module = family.decoder_module(model, "grow", max_length)
    ov_model, pasts, presents = _convert(module)
    n_states = make_stateful(ov_model, pasts, presents)
    if n_states != len(pasts):
        from edgeify.errors import EdgeifyError

        raise EdgeifyError(f"OpenVINO made {n_states} cache states out of {len(pasts)} past inputs")
    for value, key in ((STATEFUL, RT_DECODER), (str(module.max_length), RT_MAX_LENGTH),
                       (str(module.window), RT_WINDOW), ("f32", RT_PRECISION)):
        ov_model.set_rt_info(value, key)
    out = out_dir / "decoder.fp32.xml"
    save_ir(ov_model, out)
    notes = {"converter": f"openvino.convert_model from PyTorch (openvino {ov.__version__})",
             "cache": "stateful: past_key_values kept in the plugin (MakeStateful), input_ids only",
             "states": n_states, "max_length": module.max_length, "local_window": module.window,
             "inference_precision": "f32 (set explicitly: this CPU would run bf16 by default)"}
    return Artifact("openvino", "fp32", out, {"type": "Fp32DecoderExport"}, notes)
