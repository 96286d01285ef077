"""int8 selection: fastest within the accuracy budget, judged on the best timing round,
across formats, each quantized artifact against the fp32 export of its own format."""

from edgeify.pipeline import _select_int8


def _entry(precision, acc, rounds, fmt="onnx"):
    return {"format": fmt, "precision": precision, "path": f"{fmt}/{precision}",
            "metric": {"name": "accuracy", "value": acc},
            "latency_ms": {"p50": sorted(rounds)[len(rounds) // 2], "rounds_p50": rounds}}


def test_fastest_within_budget_by_best_round():
    fp32 = _entry("fp32", 80.0, [20.0, 20.0, 20.0])
    dyn = _entry("int8-dynamic", 79.5, [13.3, 8.4, 13.3])   # one clean round: really ~8.4
    static = _entry("int8-static", 79.8, [17.3, 10.8, 11.1])
    sel = _select_int8([fp32, dyn, static], 1.0, "accuracy")
    assert sel["chosen"] == "onnx/int8-dynamic" and dyn["selected"] and "selected" not in static


def test_over_budget_keeps_most_accurate():
    fp32 = _entry("fp32", 80.0, [20.0])
    dyn = _entry("int8-dynamic", 77.0, [8.0])
    static = _entry("int8-static", 78.5, [11.0])
    sel = _select_int8([fp32, dyn, static], 1.0, "accuracy")
    assert sel["chosen"] == "onnx/int8-static" and "no int8 artifact within" in sel["reason"]


def test_perplexity_budget_is_relative():
    fp32 = {**_entry("fp32", 10.0, [5.0]), "metric": {"name": "perplexity", "value": 10.0}}
    dyn = {**_entry("int8-dynamic", 0, [3.0]), "metric": {"name": "perplexity", "value": 10.5}}
    static = {**_entry("int8-static", 0, [4.0]), "metric": {"name": "perplexity", "value": 10.05}}
    sel = _select_int8([fp32, dyn, static], 1.0, "perplexity")  # 5% > 1% budget
    assert sel["chosen"] == "onnx/int8-static"


def test_selection_spans_formats_each_against_its_own_fp32():
    onnx_fp32 = _entry("fp32", 80.0, [20.0])
    onnx_dyn = _entry("int8-dynamic", 79.5, [9.0])
    ov_fp32 = _entry("fp32", 78.0, [15.0], fmt="openvino")  # its own reference: 78
    ov_int8 = _entry("int8", 77.5, [6.0], fmt="openvino")   # 0.5 below its fp32: within
    ov_int4 = _entry("int4-weights", 76.0, [5.0], fmt="openvino")  # 2.0 below: outside
    entries = [onnx_fp32, onnx_dyn, ov_fp32, ov_int8, ov_int4]
    sel = _select_int8(entries, 1.0, "accuracy")
    assert sel["chosen"] == "openvino/int8" and "2 of 3 within" in sel["reason"]
    assert [e.get("selected", False) for e in entries] == [False, False, False, True, False]


def test_fp16_is_not_an_int8_candidate():
    fp32 = _entry("fp32", 80.0, [20.0], fmt="openvino")
    fp16 = _entry("fp16", 80.0, [5.0], fmt="openvino")
    assert _select_int8([fp32, fp16], 1.0, "accuracy") is None


def test_plan_refusals_reach_the_artifacts_of_that_precision():
    from edgeify.pipeline import _plan_refusal
    from edgeify.targets.planner import Plan

    plan = Plan(target="t", measured=True, formats=("onnx",), precisions={"onnx": ("int8",)}, threads=2,
                timing_threads=2, seq_lens=(128,), notes=(), int8_outlook=None,
                refused=(("onnx fp32", "too big"), ("onnx int4", "int4 too")))
    assert _plan_refusal(plan, {"format": "onnx", "precision": "fp32"}) == "too big"
    assert _plan_refusal(plan, {"format": "onnx", "precision": "int4-weights"}) == "int4 too"
    assert _plan_refusal(plan, {"format": "onnx", "precision": "int8-dynamic"}) is None
    assert _plan_refusal(plan, {"format": "tflite", "precision": "fp32"}) is None
