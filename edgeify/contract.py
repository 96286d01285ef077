"""What an edgeify file promises its reader: the metadata keys and signature names the
exporters write and the runtimes read, and how every onnxruntime session is configured.

The writer (`export/`) and the readers (`runtimes/`, `targets/device_runner.py`) both
import this module, so neither copies the other's names and neither depends on the other.
It imports nothing beyond the standard library: `targets/remote.py` copies it to a device
beside `device_runner.py`, where edgeify is not installed.
"""

from __future__ import annotations

import hashlib

# --- the tasks, as the report and the device protocol spell them (edgeify/tasks.py) ---
TASK_SEQ_CLS = "sequence-classification"
TASK_CAUSAL_LM = "causal-lm"

# --- a cached decoder's key/value cache inputs and outputs (optimum's convention) ---
PAST, PRESENT = "past_key_values", "present"


def cache_names(n_layers: int, prefix: str = PAST) -> list[str]:
    """past_key_values.0.key, past_key_values.0.value, ... (present.0.key, ... out)."""
    return [f"{prefix}.{i}.{kind}" for i in range(n_layers) for kind in ("key", "value")]


# --- ONNX: custom metadata of a cached decoder (export/onnx_decoder.py) ---
ONNX_DECODER_LAYOUT = "edgeify.decoder"      # "grow": the cache grows by concatenation
ONNX_MAX_LENGTH = "edgeify.max_length"       # tokens the cache may hold
ONNX_LOCAL_WINDOW = "edgeify.local_window"   # attention window of the local layers

# --- OpenVINO: keys in the IR's rt_info (kept in the .xml) ---
OV_PRECISION = ("edgeify", "inference_precision")  # INFERENCE_PRECISION_HINT to compile with
OV_BIN_SHA256 = ("edgeify", "bin_sha256")          # the .bin it was saved with
# "static" or "dynamic": how a runner compiles it at batch 1. Measured
# (benchmarks/RESULTS.md): static shapes made NNCF int8 about 11% faster on both ELECTRA
# runs; for fp32 they were 0.93x on one and 1.12x on the other, so float IRs stay dynamic.
OV_SHAPES = ("edgeify", "shapes")
OV_DECODER = ("edgeify", "decoder")          # "stateful": the cache is the request's state
OV_MAX_LENGTH = ("edgeify", "max_length")    # tokens the cache may hold
OV_LOCAL_WINDOW = ("edgeify", "local_window")
OV_STATEFUL = "stateful"
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) under which bf16 cannot run. OpenVINO still picks
# bf16 by default from the CPU's own flags and then fails to compile (seen with AVX2), so
# a "native" model is compiled f32 there, as it would run on a real CPU without bf16.
CAPS_WITHOUT_BF16 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI"})

# --- TFLite: a cached decoder's two signatures and their tensors ---
TFLITE_PREFILL, TFLITE_DECODE = "prefill", "decode"
TFLITE_IDS, TFLITE_POS, TFLITE_LOGITS = "input_ids", "input_pos", "logits"

# --- onnxruntime: one way to open a session, on this host and on a device ---
# A bounded spin-wait: onnxruntime's default spinning made 2 threads 2.4x slower on a
# 2-core machine with one busy core; 50 us is as fast as the default when it is quiet
# (benchmarks/results/spin-electra.md).
ORT_SPIN_KEY = "session.intra_op.spin_duration_us"
ORT_SPIN_US = "50"


def ort_session_options(ort, threads: int):
    """onnxruntime's SessionOptions for `threads` (`ort`: the imported onnxruntime module,
    passed in so this module imports nothing outside the standard library)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    opts.add_session_config_entry(ORT_SPIN_KEY, ORT_SPIN_US)
    return opts


def ort_thread_settings(threads: int) -> dict:
    """ort_session_options' threading, as the report records it."""
    return {"threads": threads, "inter_op_threads": 1, ORT_SPIN_KEY: ORT_SPIN_US}


def sha256_of(path) -> str:
    """The hex SHA-256 of a file, read in 1 MB pieces (weights can be hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
