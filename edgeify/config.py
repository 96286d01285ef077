"""One run's settings (what the CLI and the Python API build), apart from the stages that
read them: config <- build <- pipeline -> report is a line, not a circle."""

from __future__ import annotations

from dataclasses import dataclass

# Accuracy points (classification) or % perplexity (LM) the selection allows an int8 file
# to lose when --max-accuracy-drop is not given.
DEFAULT_BUDGET = 1.0


@dataclass(frozen=True)
class RunConfig:
    model: str
    int8: bool = False
    formats: tuple[str, ...] = ()  # () = the target's default; ("all",) = all it can run
    target: str = "host"
    data: str | None = None  # the source of every set not given below (a file or hub:...)
    eval_data: str | None = None
    calibration_data: str | None = None
    train_data: str | None = None  # compression's training rows [default: the calibration source]
    text_column: str | None = None
    label_column: str | None = None
    n_calibration: int = 128
    n_eval: int | None = None
    seq_len: int = 128  # every model is evaluated and timed at this length
    # Further lengths for formats with static shapes (TFLite: one file per length), each
    # evaluated and timed at its own length beside PyTorch at that length.
    extra_seq_lens: tuple[int, ...] = ()
    out_dir: str | None = None
    force: bool = False
    # Accuracy points (classification) or % perplexity (LM) an int8 artifact may lose.
    # None: select within DEFAULT_BUDGET; given: formats with an accuracy-controlled
    # quantizer (ONNX, OpenVINO) also run it with this bound.
    max_accuracy_drop: float | None = None
    max_memory_mb: float | None = None  # refuse artifacts whose weights + runtime need more
    # time (and evaluate) the artifacts on the device itself over SSH: user@host[:port]
    device: str | None = None
    device_python: str = "python3"
    device_key: str | None = None
    device_known_hosts: str | None = None  # [default: ssh's own; unknown hosts are added]
    seed: int = 0
    # compression stages before export (compress.Distill / Prune / TrimVocab configs), run
    # in compress.ORDER on up to n_train rows that are neither evaluated nor calibrated on
    compress: tuple = ()
    n_train: int = 10000
    resume: bool = False  # continue interrupted compression from its epoch checkpoints
    eval_batch_size: int = 16
    bench_seconds: float = 6.0  # timing budget per artifact, split over the rounds
    bench_rounds: int = 3
    # causal LMs: tokens a cached decoder holds (TFLite allocates them up front; default
    # 512 there, the model's position limit elsewhere), and the generation timed per model
    max_length: int | None = None
    # causal LMs: preceding tokens each evaluation window is given, unscored (sliding-window
    # perplexity); None = --seq-len, cut to what the model and its caches hold
    eval_context: int | None = None
    generate_prompt: int = 64
    generate_tokens: int = 32
