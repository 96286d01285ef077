"""report.md's tables, the Pareto plot and the deployment cards (edgeify/report.py,
report_plots.py, deploy_card.py): the front on handmade points, estimated figures kept
apart and labelled, a valid PNG, a command line the CLI reads back as the same run, and
each card's Python snippet run for real on exported files."""

from __future__ import annotations

import copy
import inspect
import json
import math
import re
import shlex

import numpy as np
import pytest

from edgeify import deploy_card, export, report, report_plots
from edgeify.report_plots import pareto_front

def _skip_unless_installed(fmt: str) -> None:
    """What exports the format and runs its file (the backend's `requires`) is installed."""
    backend = export.get_backend(fmt)
    if not export.is_installed(backend):
        pytest.skip(f"{fmt}: needs {', '.join(backend.requires)}")


FAST = ["--n-eval", "48", "--n-calibration", "32", "--bench-seconds", "0.2", "--bench-rounds", "1", "--seq-len", "32"]


def test_pareto_front_on_handmade_points():
    # (drop, latency, size): size rides along and is not an objective
    points = [(0.0, 10.0, 400), (0.5, 4.0, 100), (0.5, 5.0, 50), (2.0, 1.0, 100), (1.0, 4.0, 1), (0.0, 12.0, 1)]
    assert pareto_front(points) == [0, 1, 3]  # 2 and 4 lose to 1, 5 to 0
    assert pareto_front([{"drop": d, "latency": t} for d, t, _ in points]) == [0, 1, 3]
    # equal points both stay; a point with a missing or non-finite objective never counts
    assert pareto_front([(1.0, 1.0), (1.0, 1.0), (None, 0.1), (math.nan, 0.1)]) == [0, 1]
    assert pareto_front([]) == []
    # other objectives by key, e.g. size too
    pts = [{"d": 0, "t": 5, "s": 1}, {"d": 0, "t": 5, "s": 2}, {"d": 1, "t": 1, "s": 9}]
    assert pareto_front(pts, keys=("d", "t", "s")) == [0, 2]


def _entry(fmt, precision, metric, p50, size, **extra):
    return {"format": fmt, "precision": precision, "path": f"{fmt}/model.{precision}.{fmt}", "seq_len": 128,
            "size_bytes": size, "metric": {"name": "accuracy", "value": metric, "n": 100},
            "metric_delta": round(metric - 90.0, 4), "latency_ms": {"p50": p50, "p90": p50 * 1.2},
            "speedup_vs_baseline": round(20.0 / p50, 3), "peak_rss_mb": 60.0, "runtime": "onnxruntime 1.32.0",
            "executed_precision": precision, "measured": False,
            "parity": {"max_abs_diff": 0.01, "argmax_agreement_pct": 100.0}, "config": {}, **extra}


def _estimate(ms, flops=2e9):
    return {"target": "rpi4", "latency_ms": ms, "roofline_ms": ms * 0.3, "host_roofline_ms": ms * 0.05,
            "efficiency": 0.3, "flops": int(flops), "weight_bytes": 4_000_000,
            "basis": "roofline for rpi4 x this artifact's efficiency measured on host"}


def _report(estimates: bool = True) -> dict:
    """A report as pipeline.run writes it, for target rpi4 (not measured)."""
    base = _entry("pytorch", "fp32", 90.0, 20.0, 4_000_000)
    base.update(path="pytorch")
    for k in ("metric_delta", "parity", "speedup_vs_baseline"):
        base.pop(k)
    arts = [_entry("onnx", "fp32", 90.0, 8.0, 4_000_000),
            _entry("onnx", "int8-static", 89.5, 3.0, 1_000_000, selected=True),
            _entry("tflite", "fp32", 90.0, 7.0, 4_000_000),
            _entry("tflite", "int8-static", 88.0, 2.5, 1_000_000,
                   refused="rpi4 has tflite-runtime 2.14, which cannot load GELU v2")]
    rep = {
        "config": {"model": "electra", "int8": True, "formats": [], "target": "rpi", "data": None,
                   "n_calibration": 128, "n_eval": None, "seq_len": 128, "extra_seq_lens": [], "out_dir": None,
                   "force": False, "max_accuracy_drop": None, "max_memory_mb": None, "compress": [],
                   "n_train": 10000, "bench_seconds": 6.0, "bench_rounds": 3},
        "model": {"id": "howey/electra-small-sst2", "family": "electra", "task": "sequence-classification",
                  "params": 13_000_000, "source": "hub"},
        "data": {"eval": "tweets.csv", "n_eval": 100, "n_calibration": 16, "seq_len": 128, "seq_lens": [128],
                 "labels": {"0": "negative", "1": "positive"}},
        "target": {"name": "rpi4", "description": "Raspberry Pi 4", "threads": 4, "measured": False,
                   "timing_threads": 2, "env": {}, "cpu": "Test CPU [avx2]"},
        "baseline": base, "other_baselines": [], "stages": [], "artifacts": arts,
        "selection": {"chosen": "onnx/model.int8-static.onnx", "reason": "fastest int8 within budget", "budget": 1.0},
        "plan": {"target": "rpi4", "measured": False, "formats": ["tflite", "onnx"],
                 "precisions": {"tflite": ["fp32", "int8"], "onnx": ["fp32", "int8"]}, "threads": 4,
                 "timing_threads": 2, "seq_lens": [128], "refused": [["openvino", "no OpenVINO for ARM boards"]],
                 "notes": ["int8 is expected no faster than fp32 on rpi4"], "int8_outlook": 1.0},
        "versions": {"python": "3.11", "onnxruntime": "1.32.0", "ai-edge-litert": "2.3.0"},
    }
    if estimates:
        for entry, ms in zip([base, *arts], (900.0, 400.0, 350.0, 380.0, 330.0)):
            entry["estimate"] = _estimate(ms)
        rep["selection"]["target_choice"] = {"chosen": "onnx/model.fp32.onnx", "latency_ms": 400.0,
                                             "estimated": True, "reason": "int8 is no faster on rpi4"}
        rep["command"] = "edgeify electra --int8 --target rpi"
    return rep


def test_markdown_has_a_table_per_target_and_labels_estimates():
    md = report.markdown(_report())
    host, est = md.index("## Measured on this host: Test CPU [avx2] (2 threads)"), md.index(
        "## Estimated for rpi4 (not measured)")
    assert host < est
    measured_table = "\n".join(r for r in md[host:est].splitlines() if r.startswith("|"))
    est_table = md[est:md.index("##", est + 3)]
    # no estimated figure in the measured table, every latency in the estimated one says so
    assert "350.00" not in measured_table and "est." not in measured_table
    rows = [r for r in est_table.splitlines() if r.startswith("| onnx") or r.startswith("| tflite")
            or r.startswith("| pytorch")]
    assert len(rows) == 5 and all("| est. " in r for r in rows)
    onnx_int8 = next(r for r in rows if r.startswith("| onnx int8-static"))
    # est. speed-up vs the fp32 file of its own format: 400 / 350
    assert "| 1.14x |" in onnx_int8 and "| 2.000 |" in onnx_int8 and "| -0.50 |" in onnx_int8
    assert "cannot load GELU v2" in next(r for r in rows if r.startswith("| tflite int8-static"))
    assert "roofline ms" in est_table and "GFLOPs/forward" in est_table and "weight MB" in est_table
    # the target's pick, marked estimated
    assert "chosen for `rpi4`: **onnx/model.fp32.onnx** (est. 400.00 ms, not measured)" in md
    plan = md[md.index("## Plan for rpi4"):]
    assert "openvino: no OpenVINO for ARM boards" in plan and "int8 is expected no faster" in plan
    assert "threads:    4 on the device; timed here with 2" in plan
    # a card for each pick: host's int8 and the target's fp32; estimated latency labelled
    assert md.count("## Deployment card:") == 2
    card = md[md.index("## Deployment card: `onnx/model.fp32.onnx`"):]
    assert "**estimated** for rpi4 (not measured), 4 threads: ~400.00 ms" in card
    assert "**measured** on this host, not the target" in card
    assert "edgeify electra --int8 --target rpi" in card


def test_estimated_run_without_int8_and_an_uncountable_graph():
    """No --int8: the selection is the target's pick alone (no `*` row, no "selected int8");
    an artifact whose graph could not be counted says so instead of a number."""
    rep = _report()
    for a in rep["artifacts"]:
        a.pop("selected", None)
    choice = rep["selection"]["target_choice"]
    rep["selection"] = {"chosen": choice["chosen"], "reason": choice["reason"], "budget": 1.0,
                        "target_choice": choice}
    rep["artifacts"][2]["estimate"] = {"target": "rpi4", "error": "cannot count its graph: boom"}
    md = report.markdown(rep)
    assert "selected int8 artifact" not in md
    assert "- no estimate for `tflite/model.fp32.tflite`: cannot count its graph: boom" in md
    assert "| tflite fp32 |" not in md[md.index("## Estimated for rpi4"):]
    [(entry, why)] = deploy_card.chosen(rep)
    assert entry["path"] == "onnx/model.fp32.onnx" and why.startswith("chosen for rpi4:")
    assert {p["label"]: p["mark"] for p in report_plots.plot_points(rep)[0]}["onnx fp32"] == "chosen for rpi4"


def test_markdown_without_estimates_has_only_the_measured_table():
    rep = _report(estimates=False)
    md = report.markdown(rep)
    assert "## Measured on this host" in md and "Estimated for" not in md and "est." not in md
    assert md.count("## Deployment card:") == 1
    # no --int8 pick: the card goes to the first format's fp32 file
    rep["selection"] = None
    assert [e["path"] for e, _ in deploy_card.chosen(rep)] == ["onnx/model.fp32.onnx"]



def _host_report_with_device() -> dict:
    """A `--target host --device pi@board:2222` report: two artifacts measured on the
    device, one the device failed, as pipeline.run writes them."""
    rep = _report(estimates=False)
    rep["target"] = {"name": "host", "description": "this machine", "threads": 2, "measured": True,
                     "timing_threads": 2, "env": {}, "cpu": "Test CPU [avx2]"}
    rep["config"].update(target="host", device="pi@board:2222")
    for a in rep["artifacts"]:
        a.pop("refused", None)
    ok = {"p50": 41.25, "p90": 47.5, "mean": 42.0, "runs": 30, "peak_rss_mb": 80.0, "runtime": "onnxruntime 1.16.3",
          "precision": "fp32", "threads": 4, "device": "pi@board:2222", "metric": {"name": "accuracy", "value": 89.75,
                                                                                 "n": 100}}
    rep["artifacts"][0]["device"] = ok
    rep["artifacts"][1]["device"] = {**ok, "p50": 17.5, "p90": 19.0, "metric": {"name": "accuracy", "value": 88.25,
                                                                               "n": 100}}
    rep["artifacts"][2]["device"] = {"error": "pi@board:2222: the device's Python (/usr/bin/python3) has no tflite "
                                              "runtime | tried tflite_runtime"}
    rep["artifacts"][3]["device"] = {"error": "cached decoders are not timed on a device yet"}
    rep["device"] = {"address": "pi@board:2222", "measured": 2, "failed": 2,
                     "error": rep["artifacts"][2]["device"]["error"]}
    return rep


def test_device_results_are_in_report_md_and_the_terminal_table():
    rep = _host_report_with_device()
    md = report.markdown(rep)
    host = md.index("## Measured on this host: Test CPU [avx2] (2 threads)")
    dev = md.index("## Measured on the device pi@board:2222")
    assert host < dev
    host_table = "\n".join(r for r in md[host:dev].splitlines() if r.startswith("|"))
    assert "41.25" not in host_table and "17.50" not in host_table  # the device's figures stay out of it
    section = md[dev:md.index("\n## ", dev + 3)]
    assert "2 of 4 artifacts were timed on the device" in section
    rows = {r.split(" | ")[0][2:]: r for r in section.splitlines() if r.startswith("| onnx") or r.startswith("| tflite")}
    assert set(rows) == {"onnx fp32", "onnx int8-static *", "tflite fp32", "tflite int8-static"}
    # device metric, p50, p90, the host's p50 beside them, the device's runtime, the status
    assert rows["onnx fp32"] == "| onnx fp32 | 89.75 | 41.25 | 47.50 | 8.00 | onnxruntime 1.16.3 | measured |"
    assert "| 17.50 | 19.00 | 3.00 |" in rows["onnx int8-static *"]
    assert "error: pi@board:2222: the device's Python (/usr/bin/python3) has no tflite runtime \\| tried" \
        in rows["tflite fp32"]  # a | in an error does not split the row
    assert "| error: cached decoders are not timed on a device yet |" in rows["tflite int8-static"]
    # the terminal: the host's table first, then the device's
    table = report.terminal_table(rep)
    head = table.index("Measured on the device pi@board:2222")
    assert "p50 ms" in table[:head] and "41.25" not in table[:head]
    lines = table[head:].splitlines()
    onnx = next(ln for ln in lines if ln.startswith("onnx fp32 "))
    assert onnx.split() == ["onnx", "fp32", "89.75", "41.25", "47.50", "8.00", "onnxruntime", "1.16.3", "measured"]
    assert any(ln.startswith("tflite fp32 ") and "error: pi@board:2222: the device's Python" in ln for ln in lines)
    # without --device, no device section anywhere
    plain = _report(estimates=False)
    assert "Measured on the device" not in report.markdown(plain) + report.terminal_table(plain)


def test_host_numbers_are_never_said_to_be_the_devices():
    md = report.markdown(_host_report_with_device())
    latency = next(ln for ln in md.splitlines() if ln.startswith("- latency:"))
    assert "device itself" not in latency
    assert "measured on this host (Test CPU [avx2])" in latency
    assert "the host's table is this host's" in latency and "Measured on the device pi@board:2222" in latency
    # the host target without a device: this host, its CPU, and no device mentioned
    plain = _host_report_with_device()
    plain.pop("device")
    for a in plain["artifacts"]:
        a.pop("device")
    latency = next(ln for ln in report.markdown(plain).splitlines() if ln.startswith("- latency:"))
    assert "measured on this host (Test CPU [avx2]) with 2 threads" in latency and "device" not in latency


def test_a_device_that_measured_nothing_is_said_so():
    rep = _host_report_with_device()
    for a in rep["artifacts"]:
        a["device"] = {"error": "pi@board:2222: unreachable: nothing accepts connections on port 2222"}
    md = report.markdown(rep)
    assert "**The device measured none of the 4 artifacts**" in md
    assert md.count("| error: pi@board:2222: unreachable: nothing accepts connections on port 2222 |") == 4
    assert "measured none of the 4 artifacts" in report.terminal_table(rep)

def test_pareto_png_is_written_from_estimates_or_measurements(tmp_path):
    rep = _report()
    points, axis = report_plots.plot_points(rep)
    assert "estimated" in axis and "rpi4" in axis
    assert {p["label"]: p["latency"] for p in points}["onnx fp32"] == 400.0  # the estimate, not 8 ms
    marks = {p["label"]: p["mark"] for p in points if p["mark"]}
    assert marks == {"onnx int8-static": "selected", "onnx fp32": "chosen for rpi4"}
    path = report_plots.write_pareto(rep, tmp_path)
    assert path == tmp_path / "pareto.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(path) as img:
        img.verify()
    assert [p.name for p in tmp_path.iterdir()] == ["pareto.png"]  # no temporary file left
    measured, axis = report_plots.plot_points(_report(estimates=False))
    assert "this host" in axis and {p["label"]: p["latency"] for p in measured}["onnx fp32"] == 8.0
    # cached decoders are picked by decode rate: the axis is the time per generated token
    dec = _report(estimates=False)
    for e in [dec["baseline"], *dec["artifacts"]]:
        e["generation"] = {"decode_tokens_per_s": 500.0 / e["latency_ms"]["p50"]}
    per_token, axis = report_plots.plot_points(dec)
    assert "per generated token" in axis and {p["label"]: p["latency"] for p in per_token}["onnx fp32"] == 16.0
    # perplexity (lower is better) draws too
    lm = _report(estimates=False)
    for e in [lm["baseline"], *lm["artifacts"]]:
        e["metric"] = {"name": "perplexity", "value": 30.0 + e["latency_ms"]["p50"], "n": 10}
    assert report_plots.write_pareto(lm, tmp_path / "..") is not None


@pytest.mark.parametrize("args", [
    ["electra", "--int8"],
    ["electra", "--int8", "--formats", "onnx,tflite", "--target", "rpi", "--data", "my data.csv",
     "--text-column", "text", "--n-eval", "48", "-o", "out dir", "--force", "--bench-seconds", "0.5",
     "--seq-len", "32", "--seq-len", "64", "--max-accuracy-drop", "0.5"],
    ["albert", "--formats", "all", "--distill", "--student-layers", "2", "--epochs", "1", "--prune", "0.3",
     "--trim-vocab", "--train-samples", "500", "--n-calibration", "16"],
])
def test_reproduce_command_is_read_back_as_the_same_run(args, monkeypatch):
    from dataclasses import asdict

    from edgeify import compress, pipeline
    from edgeify.cli import main

    seen = []
    monkeypatch.setattr(pipeline, "run", lambda config, log_fn=None: seen.append(config))
    assert main(args) == 0
    config = seen[0]
    rep = {"config": {**asdict(config), "compress": [compress.describe(c) for c in config.compress]}}
    rep = json.loads(json.dumps(rep))  # as report.json holds it
    command = report.reproduce_command(rep)
    assert command.startswith("edgeify ")
    assert main(shlex.split(command)[1:]) == 0
    assert seen[1] == config


def _snippet(md: str) -> str:
    return re.search(r"```python\n(.*?)```", md, re.S).group(1)


def test_deployment_card_snippet_runs_on_the_exported_file(tmp_path, starter_dir, monkeypatch):
    """The real pipeline: its card's snippet, run as written, gives the logits edgeify measured."""
    from transformers import AutoTokenizer

    from edgeify.calibration.tokenize import encode_classification
    from edgeify.cli import main
    from edgeify.families import get
    from edgeify.runtimes import open_runner

    starter_dir("electra")
    out = tmp_path / "out"
    assert main(["electra", "--int8", "-o", str(out), *FAST]) == 0
    rep = json.loads((out / "report.json").read_text())
    chosen = rep["selection"]["chosen"]
    card_file = out / deploy_card.filename({"path": chosen})
    md, card = (out / "report.md").read_text(), card_file.read_text()
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG" and "](pareto.png)" in md
    assert f"## Deployment card: `{chosen}`" in md and card.startswith(f"# Deployment card: `{chosen}`")
    assert "`input_ids` [1, 32] int64" in card
    assert "p50" in card and report.reproduce_command(rep) in card
    assert "-o " + shlex.quote(str(out)) in card
    monkeypatch.chdir(out)  # the snippet runs in the output directory
    scope: dict = {}
    exec(_snippet(card), scope)
    text = "the movie was great"  # what the snippet classifies
    tok = AutoTokenizer.from_pretrained(out / "pytorch")
    feeds = encode_classification(tok, [text], None, 32, get("electra").onnx_inputs).inputs
    expected = open_runner(out / chosen, 1).run(feeds)
    np.testing.assert_allclose(scope["logits"], expected, rtol=1e-4, atol=1e-4)
    # the same card for another format's file of this run: a snippet for each runtime
    for entry in rep["artifacts"]:
        scope = {}
        exec(deploy_card.snippet(rep, entry, out), scope)
        np.testing.assert_allclose(scope["logits"], open_runner(out / entry["path"], 1).run(feeds),
                                   rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fmt", export.formats())
def test_snippet_runs_each_formats_fp32_file(fmt, tmp_path, starter_dir, monkeypatch):
    """One card per registered format: its fp32 export of the starter, run as the card says."""
    _skip_unless_installed(fmt)
    from transformers import AutoTokenizer

    from edgeify.calibration.tokenize import encode_classification
    from edgeify.export import get_backend
    from edgeify.families import get
    from edgeify.runtimes import open_runner

    family = get("electra")
    model_dir = starter_dir("electra")
    out = tmp_path / "out"
    model, tok = family.load_model(str(model_dir)), AutoTokenizer.from_pretrained(model_dir)
    tok.save_pretrained(out / "pytorch")
    feeds = encode_classification(tok, ["the movie was great"], None, 32, family.onnx_inputs).inputs
    rep = _report(estimates=False)
    rep["model"].update(family="electra")
    rep["data"].update(seq_len=32)
    rep["baseline"].update(seq_len=32)
    backend = get_backend(fmt)
    (out / fmt).mkdir()
    art = backend.export(model, family, feeds, out / fmt)
    entry = {**copy.deepcopy(rep["artifacts"][0]), "format": fmt, "path": str(art.path.relative_to(out)),
             "seq_len": 32}
    monkeypatch.chdir(out)
    scope: dict = {}
    exec(deploy_card.snippet(rep, entry, out), scope)
    np.testing.assert_allclose(scope["logits"], open_runner(art.path, 1).run(feeds), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fmt", [f for f in export.formats() if hasattr(export.get_backend(f), "export_decoder")])
def test_decoder_snippets_give_the_models_logits(fmt, tmp_path, monkeypatch):
    """A cached decoder's card: its snippet's prefill logits are the model's own."""
    _skip_unless_installed(fmt)
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers

    from edgeify.export import get_backend
    from edgeify.families import get
    from tests.decoders import tiny_gpt_neo

    model = tiny_gpt_neo(window=16, max_positions=64)
    out = tmp_path / "out"
    (out / "pytorch").mkdir(parents=True)
    words = ["<unk>", "Once", "upon", "a", "time"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(out / "pytorch" / "tokenizer.json"))
    (out / fmt).mkdir()
    backend = get_backend(fmt)
    # a decoder with a fixed prefill length (TFLite's signatures) is kept small
    takes_prefill = "prefill_len" in inspect.signature(backend.export_decoder).parameters
    kwargs = {"prefill_len": 8, "max_length": 32} if takes_prefill else {}
    art = backend.export_decoder(model, get("gpt-neo"), out / fmt, **kwargs)
    rep = _report(estimates=False)
    rep["model"].update(family="gpt-neo", task="causal-lm")
    rep["data"].pop("labels")
    entry = {**rep["artifacts"][0], "format": fmt, "path": str(art.path.relative_to(out)),
             "generation": {"decode_tokens_per_s": 100.0, "prefill_tokens_per_s": 1000.0}}
    code = deploy_card.snippet(rep, entry, out)
    monkeypatch.chdir(out)
    scope: dict = {}
    exec(code, scope)
    with torch.no_grad():
        expected = model(torch.tensor([[1, 2, 3, 4]]), use_cache=False).logits.numpy()
    np.testing.assert_allclose(scope["logits"], expected, rtol=1e-3, atol=1e-3)
    card = deploy_card.card(rep, entry, "test", "edgeify gpt-neo", out)
    assert "`input_ids`" in card and "[1, T, " in card


def test_card_follows_the_overall_answer_with_its_rows_hint(tmp_path, starter_dir, monkeypatch):
    """The best file overall (here OpenVINO fp16 weights, run in the CPU's native type) gets
    the first card; its snippet sets no precision hint (a plain load: what was timed), the
    fp32 reference's snippet sets f32 and says what a plain load runs instead. Real files."""
    pytest.importorskip("openvino")
    from transformers import AutoTokenizer

    from edgeify.calibration.tokenize import encode_classification
    from edgeify.export import get_backend
    from edgeify.export.openvino import Fp16Weights
    from edgeify.families import get
    from edgeify.runtimes import open_runner
    from edgeify.runtimes.openvino_runner import default_precision

    family, model_dir, out = get("electra"), starter_dir("electra"), tmp_path / "out"
    model, tok = family.load_model(str(model_dir)), AutoTokenizer.from_pretrained(model_dir)
    tok.save_pretrained(out / "pytorch")
    feeds = encode_classification(tok, ["the movie was great"], None, 32, family.onnx_inputs).inputs
    (out / "openvino").mkdir()
    backend = get_backend("openvino")
    fp32 = backend.export(model, family, feeds, out / "openvino")
    fp16 = backend.quantize(fp32, family, None, Fp16Weights(), out / "openvino")
    rep = _report(estimates=False)
    rep["model"].update(family="electra")
    rep["data"].update(seq_len=32)
    rep["baseline"].update(seq_len=32)
    native = default_precision()[0]
    for art, ran in ((fp32, "f32"), (fp16, native)):
        rep["artifacts"].append({**copy.deepcopy(rep["artifacts"][0]), "format": "openvino",
                                 "precision": art.precision, "path": str(art.path.relative_to(out)),
                                 "seq_len": 32, "notes": art.notes, "executed_precision": ran})
    rep["artifacts"][-1]["selected_overall"] = True
    rep["selection"]["overall"] = {"chosen": "openvino/model.fp16.xml", "reason": "fastest file of any precision",
                                   "precision": "fp16", "executed_precision": native}
    picks = deploy_card.chosen(rep)
    assert [e["path"] for e, _ in picks] == ["openvino/model.fp16.xml", "onnx/model.int8-static.onnx"]
    assert picks[0][1] == "best file overall: fastest file of any precision"
    assert picks[1][1].startswith("selected: ")
    md = report.markdown(rep, out)
    assert "`†` best file overall: **openvino/model.fp16.xml**" in md and "`*` selected int8 artifact" in md
    assert "| openvino fp16 † |" in md
    assert "† best file overall: openvino/model.fp16.xml" in report.terminal_table(rep)
    monkeypatch.chdir(out)
    for art, hint in ((fp16, None), (fp32, "f32")):
        entry = next(a for a in rep["artifacts"] if a["path"] == str(art.path.relative_to(out)))
        card = deploy_card.card(rep, entry, "test", "edgeify electra", out)
        code = _snippet(card)
        assert ("'INFERENCE_PRECISION_HINT': 'f32'" in code) == (hint == "f32") and "bf16'" not in code
        assert f"# {art.notes['precision_as_run']}" in code and "- precision: " in card
        scope: dict = {}
        exec(code, scope)
        np.testing.assert_allclose(scope["logits"], open_runner(art.path, 1).run(feeds), rtol=2e-2, atol=2e-2)
    if native != "f32":  # the reference's card and report say what a plain load runs here
        assert f"a plain load runs {native} on this CPU" in fp32.notes["precision_as_run"]
        assert "> **openvino/model.fp32.xml** (ran as f32): INFERENCE_PRECISION_HINT f32 set explicitly" in md


def test_a_controlled_file_that_is_the_plain_one_again_says_so():
    rep = _report()
    rep["artifacts"][-1]["same_file_as"] = rep["artifacts"][1]["path"]
    md = report.markdown(rep)
    assert (f"> **{rep['artifacts'][-1]['path']}**: nothing needed reverting, so it is "
            f"{rep['artifacts'][1]['path']} again (not a second candidate)") in md


def test_report_md_gives_the_evaluation_text_lengths():
    rep = _report(estimates=False)
    rep["data"]["text_lengths"] = {"p50": 21, "p90": 38, "p99": 55, "max": 97, "truncated_pct": 0.0,
                                   "truncated_pct_at": {"32": 22.5, "64": 0.4, "128": 0.0}}
    line = next(x for x in report.markdown(rep).splitlines() if "evaluation text lengths" in x)
    assert line == ("- evaluation text lengths: p50 21, p90 38, p99 55, max 97 tokens; 0% of rows cut at seq len "
                    f"{rep['data']['seq_len']} (rows cut at each length: 32: 22.5%, 64: 0.4%, 128: 0%)")
