"""onnxruntime on CPU with a fixed thread count."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeify.errors import EdgeifyError
from edgeify.runtimes import register_runner


@register_runner(".onnx file (onnxruntime)", lambda p: p.is_file() and p.suffix == ".onnx")
class OnnxRuntimeRunner:
    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises several types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EdgeifyError(f"{path}: cannot load ONNX model ({first[:240]})") from None
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.runtime = f"onnxruntime {ort.__version__}"
        self.precision = _precision_of(path)
        self.threads = threads

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise EdgeifyError(f"model needs inputs {missing}; got {sorted(feeds)}")
        return self.session.run(None, {n: feeds[n] for n in self.input_names})[0]


def _precision_of(path: Path) -> str:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    ops = {n.op_type for n in model.graph.node}
    if ops & {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul", "QAttention"}:
        return "int8 (dynamic)"
    if "QuantizeLinear" in ops or "QLinearMatMul" in ops:
        return "int8 (static QDQ)"
    return "fp32"
