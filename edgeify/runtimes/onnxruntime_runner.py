"""onnxruntime on CPU with a fixed thread count."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeify.contract import ONNX_MAX_LENGTH, PAST, PRESENT, ort_session_options, ort_thread_settings
from edgeify.errors import EdgeifyError
from edgeify.runtimes import check_room, formats, register_decoder, register_runner


@register_runner(".onnx file (onnxruntime)", lambda p: formats.is_file_of(p, "onnx"))
class OnnxRuntimeRunner:
    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        opts = ort_session_options(ort, threads)  # with a bounded spin-wait (see there)
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises several types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if type(e).__name__ == "InvalidProtobuf":  # the bytes do not parse: not a model problem
                why = first.rsplit("failed:", 1)[-1].strip()  # after onnxruntime's "Load model from ... failed:"
                raise EdgeifyError(f"{path}: cannot load ONNX model (corrupt or truncated file: "
                                   f"{why[:200]}); re-export it or copy it again") from None
            raise EdgeifyError(f"{path}: cannot load ONNX model ({first[:240]})") from None
        inputs = self.session.get_inputs()
        self.input_names = tuple(i.name for i in inputs)
        # a static sequence axis: the file takes exactly this many tokens (None: any)
        dims = inputs[0].shape if inputs else []
        self.seq_len = dims[1] if len(dims) > 1 and isinstance(dims[1], int) and dims[1] > 0 else None
        self.runtime = f"onnxruntime {ort.__version__}"
        self.precision = _precision_of(path)
        self.threads = threads
        self.thread_settings = ort_thread_settings(threads)

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise EdgeifyError(f"model needs inputs {missing}; got {sorted(feeds)}")
        return self.session.run(None, {n: feeds[n] for n in self.input_names})[0]


def _precision_of(path: Path) -> str:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    ops = {n.op_type for n in model.graph.node}
    bits = {a.i for n in model.graph.node if n.op_type == "MatMulNBits" for a in n.attribute if a.name == "bits"}
    if bits:
        return "+".join(f"int{b}" for b in sorted(bits)) + " weights (MatMulNBits), activations fp32"
    if ops & {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul", "QAttention"}:
        return "int8 (dynamic)"
    if "QuantizeLinear" in ops or "QLinearMatMul" in ops:
        return "int8 (static QDQ)"
    return "fp32"


def _is_onnx_decoder(path: Path) -> bool:
    if not formats.is_file_of(path, "onnx"):
        return False
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # noqa: BLE001 - not readable: the plain runner reports it
        return False
    return any(i.name.startswith(PAST + ".") for i in graph.input)


@register_decoder(".onnx cached decoder (onnxruntime)", _is_onnx_decoder)
class OnnxDecoder:
    """The cache stays in onnxruntime's own buffers (OrtValues) between steps: each step's
    `present` outputs are bound as the next step's `past` inputs, never copied to numpy."""

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        self._runner = OnnxRuntimeRunner(path, threads)
        self.session = self._runner.session
        meta = self.session.get_modelmeta().custom_metadata_map
        inputs = self.session.get_inputs()
        self.past_names = [i.name for i in inputs if i.name.startswith(PAST + ".")]
        other = [i.name for i in inputs if i.name != "input_ids" and i.name not in self.past_names]
        if other or ONNX_MAX_LENGTH not in meta:
            # e.g. optimum's decoders, which also take attention_mask / position_ids
            raise EdgeifyError(f"{path}: not an edgeify cached decoder (inputs besides input_ids and the "
                               f"cache: {other or 'none'}; max_length in metadata: "
                               f"{ONNX_MAX_LENGTH in meta}); export it with edgeify")
        self.max_length = int(meta[ONNX_MAX_LENGTH])
        self.present_names = [PRESENT + n.removeprefix(PAST) for n in self.past_names]
        self._past_shapes = [(i.shape[1], i.shape[3]) for i in inputs if i.name in self.past_names]
        self._float = np.float32
        self.runtime, self.precision, self.threads = self._runner.runtime, self._runner.precision, threads
        self._ort = ort
        self.reset()

    def reset(self) -> None:
        self.length = 0
        self._past = [self._ort.OrtValue.ortvalue_from_numpy(np.zeros((1, h, 0, d), self._float))
                      for h, d in self._past_shapes]

    def forward(self, ids: np.ndarray) -> np.ndarray:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        check_room(self.length, ids.shape[1], self.max_length)
        binding = self.session.io_binding()
        binding.bind_cpu_input("input_ids", ids)
        for name, value in zip(self.past_names, self._past):
            binding.bind_ortvalue_input(name, value)
        binding.bind_output("logits")
        for name in self.present_names:
            binding.bind_output(name)
        self.session.run_with_iobinding(binding)
        outs = binding.get_outputs()
        self._past = list(outs[1:])
        self.length += ids.shape[1]
        return outs[0].numpy()
