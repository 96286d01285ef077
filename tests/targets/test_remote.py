"""targets.remote: timing and evaluating an artifact on a device over SSH, against a real
sshd on 127.0.0.1 (tests/sshd.py) with this venv's Python standing in for the device's.

Skipped where /usr/sbin/sshd is absent, unless EDGEIFY_REQUIRE_SSHD is set (CI): then
they fail, so a CI machine without sshd cannot pass by skipping them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgeify.errors import UsageError
from edgeify.evaluate import evaluate
from edgeify.tasks import CAUSAL_LM, SEQ_CLS
from edgeify.calibration.tokenize import Batch
from edgeify.runtimes import open_runner
from edgeify.targets.remote import Device, RemoteError, measure_remote
from tests.sshd import free_port

SEQ = 16
FAST = dict(warmup=1, min_runs=5, max_runs=20, max_seconds=0.05)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A tiny random ELECTRA exported by edgeify, as (model, feeds (1, SEQ), eval Batch)."""
    import torch
    from transformers import ElectraConfig, ElectraForSequenceClassification

    from edgeify import families

    torch.manual_seed(0)
    cfg = ElectraConfig(vocab_size=200, embedding_size=32, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                        num_labels=2, attn_implementation="eager")
    model = ElectraForSequenceClassification(cfg).eval()
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 200, size=(40, SEQ)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[::3, SEQ - 5:] = 0
    batch = Batch({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
                  rng.integers(0, 2, size=40).astype(np.int64))
    return model, families.get("electra"), batch.rows(0, 1), batch, tmp_path_factory.mktemp("remote-export")


@pytest.fixture(scope="module")
def onnx_external(classifier):
    """edgeify's ONNX export, re-saved with its weights in X.onnx.data (a companion file)."""
    import onnx

    from edgeify.export.onnx import OnnxBackend

    model, family, feeds, batch, out = classifier
    art = OnnxBackend().export(model, family, feeds, out)
    path = out / "external.onnx"
    onnx.save_model(onnx.load(str(art.path)), str(path), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="external.onnx.data", size_threshold=0)
    assert (out / "external.onnx.data").stat().st_size > 10_000
    return path


def _numpy_only_python(root: Path) -> Path:
    """A venv with numpy (linked from this one) and no runtime at all: a device that has
    not installed onnxruntime / TFLite / OpenVINO."""
    import numpy

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, capture_output=True)
    site = next(root.glob("lib/python3*/site-packages"))
    src = Path(numpy.__file__).parent.parent
    for name in ("numpy", "numpy.libs"):
        if (src / name).exists():
            (site / name).symlink_to(src / name)
    return root / "bin" / "python"


def _leftovers(sshd) -> list[str]:
    return sorted(p.name for p in sshd.remote_tmp.iterdir() if p.name.startswith("edgeify-"))


# --- a real run -----------------------------------------------------------------------

def test_onnx_timed_and_evaluated_on_the_device(sshd, classifier, onnx_external):
    _, _, feeds, batch, _ = classifier
    r = measure_remote(sshd.device(python=sys.executable), onnx_external, feeds, threads=1, **FAST,
                       eval_inputs=batch.inputs, labels=batch.labels, task=SEQ_CLS)
    assert 0 < r["p50"] <= r["p90"] and r["mean"] > 0 and 5 <= r["runs"] <= 20
    assert r["runtime"].startswith("onnxruntime ") and r["precision"] == "fp32"
    assert r["peak_rss_mb"] >= r["runtime_rss_mb"] > 0 and r["load_s"] > 0
    assert (r["threads"], r["batch"], r["seq_len"]) == (1, 1, SEQ)
    assert r["device"] == f"{sshd.user}@127.0.0.1:{sshd.port}"
    assert r["metric"] == evaluate(open_runner(onnx_external, 1), batch, SEQ_CLS).as_dict()
    from edgeify.targets.local import measure

    assert set(r) == set(measure(onnx_external, feeds, 1, **FAST)) | {"device", "metric"}
    assert _leftovers(sshd) == []


def _tiny_lm_onnx(path: Path, vocab: int = 50) -> Path:
    """input_ids (batch, seq) -> logits (batch, seq, vocab): embedding then projection."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    emb = numpy_helper.from_array(rng.normal(size=(vocab, 8)).astype(np.float32), "emb")
    proj = numpy_helper.from_array(rng.normal(size=(8, vocab)).astype(np.float32), "proj")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["emb", "input_ids"], ["h"]), helper.make_node("MatMul", ["h", "proj"], ["logits"])],
        "lm", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "sequence", vocab])],
        initializer=[emb, proj])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


def test_perplexity_on_the_device(sshd, tmp_path):
    path = _tiny_lm_onnx(tmp_path / "lm.onnx")
    ids = np.random.default_rng(2).integers(0, 50, size=(10, 12)).astype(np.int64)
    batch = Batch({"input_ids": ids})
    r = measure_remote(sshd.device(python=sys.executable), path, batch.rows(0, 1), threads=1, **FAST,
                       eval_inputs=batch.inputs, task=CAUSAL_LM)
    expected = evaluate(open_runner(path, 1), batch, CAUSAL_LM).as_dict()
    assert r["metric"]["name"] == "perplexity" and r["metric"]["n"] == 10
    assert r["metric"]["value"] == pytest.approx(expected["value"], rel=1e-6)


def test_openvino_ir_with_its_bin(sshd, classifier):
    pytest.importorskip("openvino")
    from edgeify.export.openvino import OpenVinoBackend

    model, family, feeds, batch, out = classifier
    (out / "ov").mkdir(exist_ok=True)
    art = OpenVinoBackend().export(model, family, feeds, out / "ov")
    r = measure_remote(sshd.device(python=sys.executable), art.path, feeds, threads=1, **FAST,
                       eval_inputs=batch.inputs, labels=batch.labels, task=SEQ_CLS)
    local = open_runner(art.path, 1)
    assert r["runtime"].startswith("openvino ") and r["p50"] > 0
    assert r["metric"] == evaluate(local, batch, SEQ_CLS).as_dict()
    assert r["precision"] == local.precision  # what the plugin ran, reported by the device


def test_tflite(sshd, classifier):
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("litert_torch")
    from edgeify.export.tflite import TfliteBackend
    from tests.tflrt import TFLRT

    model, family, feeds, batch, out = classifier
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("EDGEIFY_TFLITE_PYTHONS", raising=False)
        (out / "tflite").mkdir(exist_ok=True)
        art = TfliteBackend().export(model, family, feeds, out / "tflite")
    r = measure_remote(sshd.device(python=sys.executable), art.path, feeds, threads=1, **FAST,
                       eval_inputs=batch.inputs, labels=batch.labels, task=SEQ_CLS)
    assert r["runtime"].startswith("ai-edge-litert ") and r["p50"] > 0 and r["precision"] == "fp32"
    assert r["metric"] == evaluate(open_runner(art.path, 1), batch, SEQ_CLS).as_dict()
    if TFLRT.exists():  # the runtime a Raspberry Pi has, in its own venv
        pi = measure_remote(sshd.device(python=str(TFLRT)), art.path, feeds, threads=1, **FAST)
        assert pi["runtime"] == "tflite-runtime 2.14.0" and pi["p50"] > 0


def test_runner_reads_the_shipped_contract_and_edgeify_settings(tmp_path):
    """device_runner.py runs where edgeify is not installed: it reads edgeify's metadata keys
    from the contract.py shipped beside it (the same file edgeify's own runners import),
    and that file needs nothing beyond the standard library."""
    import ast
    import shutil
    import subprocess
    import sys

    from edgeify import contract
    from edgeify.runtimes import openvino_runner
    from edgeify.targets import device_runner, remote

    imported = {n.names[0].name if isinstance(n, ast.Import) else n.module
                for n in ast.walk(ast.parse(remote.CONTRACT.read_text())) if isinstance(n, (ast.Import, ast.ImportFrom))}
    assert {m.split(".")[0] for m in imported} <= set(sys.stdlib_module_names), imported
    for f in (remote.RUNNER, remote.CONTRACT):
        shutil.copy(f, tmp_path)
    probe = ("import device_runner, contract; assert device_runner.sha256_of is contract.sha256_of; "
             "print(device_runner.OV_PRECISION)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(contract.OV_PRECISION)
    assert device_runner.OV_PRECISION is contract.OV_PRECISION  # inside edgeify: the package's own
    assert openvino_runner.CAPS_WITHOUT_BF16 is contract.CAPS_WITHOUT_BF16
    assert openvino_runner.STATIC_SHAPES_DEFAULT is False  # the runner's default too
    assert (CAUSAL_LM.name, SEQ_CLS.name) == (contract.TASK_CAUSAL_LM, contract.TASK_SEQ_CLS)  # the wire names


# --- failures: each one line, saying what to do --------------------------------------

def test_unreachable_and_refused_login(sshd, tmp_path):
    t0 = time.monotonic()
    model = _tiny_lm_onnx(tmp_path / "m.onnx")
    closed = Device("pi", "127.0.0.1", free_port(), known_hosts=str(tmp_path / "kh"), connect_timeout_s=5)
    with pytest.raises(RemoteError, match=r"unreachable: nothing accepts connections on port \d+.*"
                                          r"\(ssh: .*Connection refused\)") as e:
        measure_remote(closed, model, {}, 1)
    assert str(e.value).startswith(f"pi@127.0.0.1:{closed.port}: ") and "\n" not in str(e.value)
    assert time.monotonic() - t0 < 5
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "stranger")], check=True)
    stranger = sshd.device(key=str(tmp_path / "stranger"))
    with pytest.raises(RemoteError, match=r"authentication failed: login as .* with key .*stranger was refused"
                                          r".*\(ssh: .*Permission denied"):
        measure_remote(stranger, model, {}, 1)


def test_device_python_missing_or_without_runtime(sshd, classifier, onnx_external, tmp_path):
    _, _, feeds, _, _ = classifier
    with pytest.raises(RemoteError, match=r"no Python at '/nowhere/python3' on the device; give the device's Python"):
        measure_remote(sshd.device(python="/nowhere/python3"), onnx_external, feeds, 1, **FAST)
    bare = _numpy_only_python(tmp_path / "bare")
    with pytest.raises(RemoteError, match=r"has no onnx runtime: tried onnxruntime \(onnxruntime cannot be "
                                          r"imported .*\); install it there: pip install onnxruntime"):
        measure_remote(sshd.device(python=str(bare)), onnx_external, feeds, 1, **FAST)
    tflite = tmp_path / "model.tflite"  # never loaded: the runtime import fails first
    tflite.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    with pytest.raises(RemoteError, match=r"has no tflite runtime: tried ai_edge_litert, tflite_runtime, "
                                          r"tensorflow.lite .*pip install tflite-runtime"):
        measure_remote(sshd.device(python=str(bare)), tflite, {"input_ids": np.zeros((1, 4), np.int64)}, 1)
    system = Path("/usr/bin/python3")
    if system.exists() and subprocess.run([str(system), "-c", "import numpy"], capture_output=True).returncode:
        with pytest.raises(RemoteError, match=r"has no numpy .*install it there: pip install numpy"):
            measure_remote(sshd.device(python=str(system)), onnx_external, feeds, 1, **FAST)
    assert _leftovers(sshd) == []


def test_cached_decoder_refused_before_connecting(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["past_key_values.0.key"], ["logits"])], "dec",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "s"]),
         helper.make_tensor_value_info("past_key_values.0.key", TensorProto.FLOAT, [1, 2, "p", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2, "p", 4])])
    path = tmp_path / "decoder.fp32.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    nowhere = Device("pi", "127.0.0.1", free_port())  # a connection attempt would be a RemoteError
    with pytest.raises(UsageError, match="a cached decoder .* not supported yet"):
        measure_remote(nowhere, path, {"input_ids": np.zeros((1, 4), np.int64)}, 1)


def test_timeout_stops_the_runner_and_removes_its_dir(sshd, classifier, onnx_external):
    import psutil

    _, _, feeds, _, _ = classifier
    device = sshd.device(python=sys.executable, timeout_s=6)
    t0 = time.monotonic()
    with pytest.raises(RemoteError, match=r"timed out after 6s \(the device's timeout_s\) while .*; "
                                          r"the runner was stopped and its temp dir removed"):
        measure_remote(device, onnx_external, feeds, 1, warmup=0, min_runs=10**9, max_runs=10**9, max_seconds=1e9)
    assert time.monotonic() - t0 < 6 + 10
    assert _leftovers(sshd) == []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        runners = [p for p in psutil.process_iter(["cmdline"]) if "device_runner.py" in " ".join(p.info["cmdline"] or [])]
        if not runners:
            break
        time.sleep(0.1)
    assert not runners


# --- Device.parse ---------------------------------------------------------------------

def test_parse():
    assert Device.parse("pi@raspberrypi.local") == Device("pi", "raspberrypi.local", 22)
    d = Device.parse("pi@10.0.0.7:2222", python="~/venv/bin/python")
    assert (d.port, d.python, str(d)) == (2222, "~/venv/bin/python", "pi@10.0.0.7:2222")
    assert str(Device.parse("pi@[fe80::1]:22")) == "pi@[fe80::1]:22"


@pytest.mark.parametrize("spec, says", [
    ("raspberrypi", "bad device 'raspberrypi': expected user@host[:port]"),
    ("pi@", "bad device 'pi@': host is empty"),
    ("@pi", "bad device '@pi': user is empty"),
    ("pi@host:ssh", "port 'ssh' is not a number from 1 to 65535"),
    ("pi@host:0", "bad device port 0: a number from 1 to 65535"),
    ("pi@host:70000", "bad device port 70000"),
    ("pi@-oProxyCommand=x", "bad device host '-oProxyCommand=x'"),
    ("-l@host", "bad device user '-l'"),
])
def test_parse_errors(spec, says):
    with pytest.raises(UsageError) as e:
        Device.parse(spec)
    assert says in str(e.value) and "user@host[:port]" in str(e.value)


def test_device_option_errors(tmp_path):
    with pytest.raises(UsageError, match="bad device timeout_s 0: a positive number of seconds"):
        Device("pi", "host", timeout_s=0)
    with pytest.raises(UsageError, match="device key '.*nokey' is not a file"):
        Device("pi", "host", key=str(tmp_path / "nokey"))
