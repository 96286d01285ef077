"""The TFLite format's record: what the rest of edgeify knows about a .tflite file."""

from __future__ import annotations

from pathlib import Path

from edgeify.contract import TFLITE_IDS, TFLITE_LOGITS, TFLITE_POS, TFLITE_PREFILL
from edgeify.errors import EdgeifyError, UsageError
from edgeify.runtimes.formats import Format, Snippet, register_format
from edgeify.runtimes.tflite_file import op_notes
from edgeify.runtimes.tflite_runner import TfliteRunner, _precision_of


def declared_inputs(path: Path) -> dict:
    runner = TfliteRunner(path, 1)  # runs a batch one row at a time: any batch size
    return {n: (None, runner.seq_len) for n in runner.input_names}


def card_inputs(path: Path) -> list[dict]:
    from edgeify.runtimes.tflite_probe import _interpreter

    interpreter = _interpreter()[0](model_path=str(path))
    signatures = interpreter.get_signature_list()
    key = TFLITE_PREFILL if TFLITE_PREFILL in signatures else None  # a decoder: the signature a prompt runs
    details = interpreter.get_signature_runner(key).get_input_details()
    return [{"name": n, "shape": [int(x) for x in d["shape"]], "dtype": d["dtype"].__name__
             if hasattr(d["dtype"], "__name__") else str(d["dtype"])} for n, d in details.items()]


def corrupt_reason(path: Path) -> str | None:
    """Only a TFLite runtime verifies the flatbuffer: without one, it cannot tell (None); an
    op the runtime lacks is not damage."""
    try:
        TfliteRunner(path, 1)
    except UsageError:  # no TFLite runtime
        return None
    except EdgeifyError as e:
        msg = str(e).removeprefix(f"{path}: ")
        if "flatbuffer" in msg.lower():
            return msg.removeprefix("cannot load TFLite model (").removesuffix(")")
    return None


def snippet(s: Snippet) -> list[str]:
    lines = [f"interpreter = Interpreter(model_path={s.path!r}, num_threads={s.threads})"]
    if not s.decoder:
        return lines + ["run = interpreter.get_signature_runner()",
                        "logits = next(iter(run(**feeds).values()))"]
    return lines + [
        f"run = interpreter.get_signature_runner({TFLITE_PREFILL!r})",
        "inputs = {k: np.zeros(d['shape'], d['dtype']) for k, d in run.get_input_details().items()}",
        "n = ids.shape[1]  # at most the prefill length; the padding after it is never attended to",
        f"inputs[{TFLITE_IDS!r}][0, :n] = ids[0]",
        f"inputs[{TFLITE_POS!r}][...] = np.arange(inputs[{TFLITE_IDS!r}].shape[1])  # 0, 1, ...",
        f"logits = run(**inputs)[{TFLITE_LOGITS!r}][:, :n]"]


TFLITE = register_format(Format(
    name="tflite", suffixes=(".tflite",), runtime="tflite", packages=("ai-edge-litert", "tflite-runtime"),
    install="pip install tflite-runtime (or ai-edge-litert)", declared_inputs=declared_inputs,
    card_inputs=card_inputs, token_dtype="int32",
    snippet_imports=("try:", "    from ai_edge_litert.interpreter import Interpreter",
                     "except ImportError:  # Raspberry Pi OS: pip install tflite-runtime",
                     "    from tflite_runtime.interpreter import Interpreter"),
    snippet=snippet, cost_reader="edgeify.targets.cost_tflite", corrupt_reason=corrupt_reason,
    file_precision=_precision_of, file_notes=op_notes))
