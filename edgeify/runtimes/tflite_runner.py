"""TFLite on CPU: ai-edge-litert when installed, tflite-runtime otherwise; XNNPACK with the
target's thread count. Files have static shapes (batch 1, one sequence length), so a
batch is run one row at a time."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgeify.contract import TFLITE_DECODE, TFLITE_IDS, TFLITE_LOGITS, TFLITE_POS, TFLITE_PREFILL
from edgeify.errors import EdgeifyError, UsageError, first_line as _first_line
from edgeify.runtimes import check_room, formats, register_decoder, register_runner
from edgeify.runtimes.tflite_file import describe

# Other Pythons to check a .tflite on (os.pathsep-separated), e.g. a venv with
# tflite-runtime 2.14 as on Raspberry Pi OS. The in-process runtime is always checked.
PYTHONS_ENV = "EDGEIFY_TFLITE_PYTHONS"


def _is_info(line: str) -> bool:
    """TFLite's `INFO: ` lines, and absl's info lines from before its logging is set up
    (`I0000 00:00:... port.cc:153] oneDNN custom operations are on`, printed when the
    LiteRT converter library loads on CPUs where oneDNN ops are on; TF_CPP_MIN_LOG_LEVEL does
    not reach them) with the notice that announces them."""
    return (line.startswith("INFO: ") or bool(_ABSL_INFO.match(line))
            or line.startswith("WARNING: All log messages before absl::InitializeLog()"))


_ABSL_INFO = re.compile(r"I\d{4} \d\d:\d\d:")


@contextlib.contextmanager
def hide_tflite_info():
    """TFLite's C++ logger prints `INFO: Created TensorFlow Lite XNNPACK delegate for CPU.` on
    stderr and has no switch. While third-party info lines are hidden (TF_CPP_MIN_LOG_LEVEL
    set, as the CLI does unless --debug), stderr is caught while an interpreter is made and
    replayed without its INFO lines."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") < "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [ln for ln in caught.read().decode(errors="replace").splitlines(True)
                    if not _is_info(ln)]
            if kept:
                sys.stderr.write("".join(kept))


def _interpreter_or_usage_error():
    """(Interpreter class, runtime name) of the TFLite runtime at hand, or how to get one."""
    from edgeify.runtimes.tflite_probe import _interpreter

    try:
        return _interpreter()
    except ImportError:
        raise UsageError("no TFLite runtime is installed; install one with: "
                         "pip install 'edgeify[tflite]' (or tflite-runtime)") from None


@register_runner(".tflite file (ai-edge-litert / tflite-runtime)", lambda p: formats.is_file_of(p, "tflite"))
class TfliteRunner:
    def __init__(self, path: Path, threads: int):
        Interpreter, self.runtime = _interpreter_or_usage_error()
        path = Path(path)
        if path.stat().st_size < 8 or path.read_bytes()[4:8] != b"TFL3":
            raise EdgeifyError(f"{path}: not a TFLite flatbuffer (no TFL3 identifier)")
        try:
            with hide_tflite_info():
                self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
                self.runner = self.interpreter.get_signature_runner()
        except Exception as e:  # noqa: BLE001 - the runtimes raise ValueError/RuntimeError
            raise EdgeifyError(f"{path}: cannot load TFLite model ({_first_line(e)})") from None
        details = self.runner.get_input_details()
        self.input_names = tuple(details)
        self.seq_len = int(next(iter(details.values()))["shape"][1])
        self.threads = threads
        self.precision = _precision_of(path)
        # XNNPACK's pthreadpool waits with a bounded spin, then a futex; the Python API has no
        # switch for it (and needs none: it does not collapse under load, issue 20)
        self.thread_settings = {"threads": threads, "pool": "XNNPACK pthreadpool"}

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise EdgeifyError(f"model needs inputs {missing}; got {sorted(feeds)}")
        got = feeds[self.input_names[0]].shape[1]
        if got != self.seq_len:
            raise EdgeifyError(f"this TFLite file takes sequences of exactly {self.seq_len} tokens "
                               f"(exported with --seq-len {self.seq_len}); got {got}")
        outs = []
        for i in range(len(feeds[self.input_names[0]])):
            row = {k: feeds[k][i:i + 1].astype(np.int32) for k in self.input_names}
            try:
                result = self.runner(**row)
            except Exception as e:  # noqa: BLE001 - e.g. a token id outside the vocabulary
                raise EdgeifyError(f"TFLite model failed on sample {i} ({_first_line(e)})") from None
            outs.append(np.asarray(next(iter(result.values()))))
        return np.concatenate(outs)


def _precision_of(path: Path) -> str:
    ops, types = describe(path)
    if "QUANTIZE" in ops:
        return "int8 (static)"
    if "INT8" in types:
        return "int8 weights (dynamic range)"
    if "FLOAT16" in types:
        return "fp16 weights"
    return "fp32"


# Two runtimes' int8 kernels round differently, so an int8 file's logits differ between
# them a little; a runtime that mis-reads the file gives unrelated logits. On the real
# ELECTRA model, 1000 tweets, tflite-runtime 2.14 vs ai-edge-litert: sound int8 files
# differ by 3-7% of the mean |logit| with 96-98% argmax agreement (accuracy on 2.14 within
# 0.6 points), per-channel dynamic-range files by 100% with 39-47% (accuracy 74 -> 42).
MAX_RELATIVE_DIFF = 0.2
MIN_ARGMAX_AGREEMENT_PCT = 80.0


def _agreement(got: np.ndarray, reference: np.ndarray) -> dict:
    got, reference = got.astype(np.float64), reference.astype(np.float64)
    mean_diff = float(np.abs(got - reference).mean())
    relative = mean_diff / max(float(np.abs(reference).mean()), 1e-12)
    agree = float((got.argmax(-1) == reference.argmax(-1)).mean() * 100)
    return {"max_abs_diff": round(float(np.abs(got - reference).max()), 6),
            "mean_abs_diff_relative": round(relative, 4), "argmax_agreement_pct": round(agree, 2),
            "same_results": bool(agree >= MIN_ARGMAX_AGREEMENT_PCT and relative <= MAX_RELATIVE_DIFF)}


def check_runtimes(path: Path, feeds: dict[str, np.ndarray], reference: np.ndarray,
                   pythons: list[str] | None = None, timeout: float = 300.0,
                   command: list[str] | None = None) -> list[dict]:
    """Load and run `path` on this Python's TFLite runtime and on each other Python; compare
    each one's logits with `reference` (the in-process run). A runtime that loads the file
    but computes something else is as unusable as one that rejects it.

    `command`: what each Python runs, given MODEL INPUTS.npz OUTPUT.npy (default
    tflite_probe.py; the decoder check passes its own)."""
    if pythons is None:
        pythons = [p for p in os.environ.get(PYTHONS_ENV, "").split(os.pathsep) if p]
    command = command or [str(Path(__file__).with_name("tflite_probe.py"))]
    results = []
    with tempfile.TemporaryDirectory(prefix="edgeify-tflite-") as tmp:
        inputs = Path(tmp) / "inputs.npz"
        np.savez(inputs, **feeds)
        for python in [sys.executable, *pythons]:
            out = Path(tmp) / "out.npy"
            out.unlink(missing_ok=True)
            try:
                proc = subprocess.run([python, *command, str(path), str(inputs), str(out)],
                                      capture_output=True, text=True, timeout=timeout)
            except (subprocess.TimeoutExpired, OSError) as e:
                proc, res = None, {"runtime": f"python {python}", "loads": False,
                                   "error": f"probe failed: {e}"[:300]}
            if proc is not None:
                try:
                    res = json.loads(proc.stdout.strip().splitlines()[-1])
                except (ValueError, IndexError):
                    # no JSON: the runtime crashed (seen: tflite-runtime 2.14 segfaults on a
                    # truncated file) or this Python has no TFLite runtime at all
                    how = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
                           else f"exit code {proc.returncode}")
                    tail = (proc.stderr.strip().splitlines() or [""])[-1][:200]
                    res = {"runtime": f"python {python}", "loads": False,
                           "error": f"probe crashed ({how}) {tail}".strip()}
            res["python"] = python
            res["same_results"] = False
            if res.get("runs") and out.exists():
                got = np.load(out)
                if got.shape == reference.shape:
                    res.update(_agreement(got, reference))
                else:
                    res["error"] = f"output shape {list(got.shape)}, expected {list(reference.shape)}"
            results.append(res)
    return results


# --- cached decoder: one file with `prefill` and `decode` signatures (export/tflite_decoder.py)

PREFILL, DECODE, IDS, POS, LOGITS = TFLITE_PREFILL, TFLITE_DECODE, TFLITE_IDS, TFLITE_POS, TFLITE_LOGITS
PROBE_STEPS = 3  # decode steps after the prefill in a decoder's cross-runtime check


def _signature_keys(path: Path) -> set[str]:
    """The signature names in a .tflite file, read from its flatbuffer header through mmap:
    a few pages, not the (maybe hundreds of MB of) weights, and no TFLite runtime needed."""
    import mmap
    import struct

    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if buf[4:8] != b"TFL3":
                return set()

            def u32(at: int) -> int:
                return struct.unpack_from("<I", buf, at)[0]

            def field(table: int, i: int) -> int | None:
                vtable = table - struct.unpack_from("<i", buf, table)[0]
                if 4 + 2 * i >= struct.unpack_from("<H", buf, vtable)[0]:
                    return None
                offset = struct.unpack_from("<H", buf, vtable + 4 + 2 * i)[0]
                return table + offset if offset else None

            defs = field(u32(0), 7)  # Model.signature_defs
            if defs is None:
                return set()
            vector, keys = defs + u32(defs), set()
            for j in range(u32(vector)):
                item = vector + 4 + 4 * j
                key = field(item + u32(item), 2)  # SignatureDef.signature_key
                if key is not None:
                    text = key + u32(key)
                    keys.add(bytes(buf[text + 4:text + 4 + u32(text)]).decode("utf-8", "replace"))
            return keys
    except (OSError, ValueError, IndexError, struct.error):
        return set()


def _is_tflite_decoder(path: Path) -> bool:
    return formats.is_file_of(path, "tflite") and {PREFILL, DECODE} <= _signature_keys(path)


class _Signature:
    """One signature's subgraph, run through numpy views of the interpreter's own tensors.
    The SignatureRunner would resize and reallocate the subgraph and copy every input in
    and every output out on each call: the cache, tens of MB, three times per token."""

    def __init__(self, interpreter, name: str, signature: dict):
        self._w = interpreter._interpreter
        self.index = self._w.GetSubgraphIndexFromSignature(name)
        self.inputs, self.outputs = dict(signature["inputs"]), dict(signature["outputs"])
        self._w.AllocateTensors(self.index)  # once: static shapes, so the views stay valid

    def input(self, name: str) -> np.ndarray:
        return self._w.tensor(self._w, self.inputs[name], self.index)

    def output(self, name: str) -> np.ndarray:
        return self._w.tensor(self._w, self.outputs[name], self.index)

    def invoke(self) -> None:
        self._w.Invoke(self.index)


def _decoder_precision(path: Path) -> str:
    return "int4 weights (dynamic range)" if "INT4" in describe(path)[1] else _precision_of(path)


@register_decoder(".tflite decoder with prefill/decode signatures", _is_tflite_decoder)
class TfliteDecoder:
    """The cache lives in the interpreter's tensors: after each call it is in the outputs
    of the signature that ran, and is copied once (output -> input views, no numpy
    round trip) into the inputs of the next one. Prompts are prefilled in chunks of
    prefill_len, the last one padded: the padded slots are overwritten later and no real
    position sees them (causal mask)."""

    def __init__(self, path: Path, threads: int):
        Interpreter, self.runtime = _interpreter_or_usage_error()
        self.path = Path(path)
        try:
            with hide_tflite_info():
                self.interpreter = Interpreter(model_path=str(self.path), num_threads=threads)
                signatures = self.interpreter._get_full_signature_list()
                self._prefill, self._decode = (_Signature(self.interpreter, name, signatures[name])
                                               for name in (PREFILL, DECODE))
        except Exception as e:  # noqa: BLE001 - the runtimes raise ValueError/RuntimeError
            raise EdgeifyError(f"{self.path}: cannot load TFLite decoder ({_first_line(e)})") from None
        self.cache_names = [n for n in self._decode.inputs if n not in (IDS, POS)]
        self.max_length = int(self._decode.input(self.cache_names[0]).shape[2])
        self.prefill_len = int(self._prefill.input(IDS).shape[1])
        self.vocab_size = int(self._decode.output(LOGITS).shape[-1])
        self.threads = threads
        self._precision: str | None = None
        self.reset()

    @property
    def precision(self) -> str:
        if self._precision is None:  # reads the whole file: only when asked
            self._precision = _decoder_precision(self.path)
        return self._precision

    def reset(self) -> None:
        self.length = 0
        self._holder: _Signature | None = None  # whose outputs hold the cache; None: empty

    def forward(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.shape[0] != 1:
            raise UsageError(f"the TFLite decoder takes ids of shape (1, T); got {list(ids.shape)}")
        check_room(self.length, ids.shape[1], self.max_length)
        if ids.shape[1] == 1:
            return self._run(self._decode, ids)
        outs = [np.zeros((1, 0, self.vocab_size), np.float32)]
        size = self.prefill_len
        for start in range(0, ids.shape[1], size):
            chunk = ids[:, start:start + size]
            if chunk.shape[1] < size and self.length + size > self.max_length:
                # padded, the chunk would run past the cache's end: its tokens go one by one
                outs += [self._run(self._decode, chunk[:, i:i + 1]) for i in range(chunk.shape[1])]
            else:
                outs.append(self._run(self._prefill, chunk))
        return np.concatenate(outs, axis=1)

    def _run(self, sig: _Signature, ids: np.ndarray) -> np.ndarray:
        n = ids.shape[1]
        for name in self.cache_names:
            if self._holder is None:
                sig.input(name).fill(0)  # unwritten slots are masked, but must be finite
            else:
                np.copyto(sig.input(name), self._holder.output(name))
        tokens = sig.input(IDS)
        tokens.fill(0)
        tokens[0, :n] = ids[0]
        sig.input(POS)[:] = np.arange(self.length, self.length + tokens.shape[1], dtype=np.int32)
        try:
            sig.invoke()
        except Exception as e:  # noqa: BLE001 - e.g. a token id outside the vocabulary
            self.reset()  # the cache may be half written
            raise EdgeifyError(f"TFLite decoder failed ({_first_line(e)}); its cache was reset") from None
        self._holder = sig
        self.length += n
        return np.array(sig.output(LOGITS)[:, :n])

    def run_probe(self, ids: np.ndarray, steps: int = PROBE_STEPS) -> np.ndarray:
        """From an empty cache: ids minus the last `steps` as a prompt, then those one by
        one; all logits (1, len, vocab). What the cross-runtime check compares."""
        self.reset()
        outs = [self.forward(ids[:, :ids.shape[1] - steps])]
        outs += [self.forward(ids[:, i:i + 1]) for i in range(ids.shape[1] - steps, ids.shape[1])]
        return np.concatenate(outs, axis=1)


def _decoder_probe_main() -> None:
    """Run in another Python (argv: MODEL INPUTS.npz OUTPUT.npy): print one JSON line, as
    tflite_probe.py does for single-signature files."""
    model, inputs, output = sys.argv[1:4]
    try:
        decoder = TfliteDecoder(Path(model), 1)
    except (EdgeifyError, UsageError) as e:
        from edgeify.runtimes.tflite_probe import _interpreter

        print(json.dumps({"runtime": _interpreter()[1], "loads": False, "error": str(e)[:300]}))
        return
    result = {"runtime": decoder.runtime, "loads": True}
    try:
        np.save(output, decoder.run_probe(np.load(inputs)["input_ids"]))
        result["runs"] = True
    except Exception as e:  # noqa: BLE001 - report, don't crash: this is a probe
        result.update(runs=False, error=_first_line(e))
    print(json.dumps(result))


def check_decoder_runtimes(path: Path, ids: np.ndarray, reference: np.ndarray,
                           pythons: list[str] | None = None, timeout: float = 300.0) -> list[dict]:
    """check_runtimes for a decoder file: each Python runs TfliteDecoder.run_probe(ids)
    (this edgeify on its path; the other Python needs only numpy and a TFLite runtime)."""
    root = str(Path(__file__).resolve().parents[2])
    code = (f"import sys; sys.path.insert(0, {root!r}); "
            "from edgeify.runtimes.tflite_runner import _decoder_probe_main; _decoder_probe_main()")
    return check_runtimes(path, {"input_ids": ids}, reference, pythons, timeout, command=["-c", code])
