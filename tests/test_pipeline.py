"""int8 selection: fastest within the accuracy budget, judged on the best timing round."""

from edgeify.pipeline import _select_int8


def _entry(precision, acc, rounds):
    return {"format": "onnx", "precision": precision, "path": f"onnx/{precision}.onnx",
            "metric": {"name": "accuracy", "value": acc},
            "latency_ms": {"p50": sorted(rounds)[len(rounds) // 2], "rounds_p50": rounds}}


def test_fastest_within_budget_by_best_round():
    fp32 = _entry("fp32", 80.0, [20.0, 20.0, 20.0])
    dyn = _entry("int8-dynamic", 79.5, [13.3, 8.4, 13.3])   # one clean round: really ~8.4
    static = _entry("int8-static", 79.8, [17.3, 10.8, 11.1])
    sel = _select_int8([fp32, dyn, static], fp32, 1.0, "accuracy")
    assert sel["chosen"] == "onnx/int8-dynamic.onnx" and dyn["selected"] and "selected" not in static


def test_over_budget_keeps_most_accurate():
    fp32 = _entry("fp32", 80.0, [20.0])
    dyn = _entry("int8-dynamic", 77.0, [8.0])
    static = _entry("int8-static", 78.5, [11.0])
    sel = _select_int8([fp32, dyn, static], fp32, 1.0, "accuracy")
    assert sel["chosen"] == "onnx/int8-static.onnx" and "no int8 artifact within" in sel["reason"]


def test_perplexity_budget_is_relative():
    fp32 = {**_entry("fp32", 10.0, [5.0]), "metric": {"name": "perplexity", "value": 10.0}}
    dyn = {**_entry("int8-dynamic", 0, [3.0]), "metric": {"name": "perplexity", "value": 10.5}}
    static = {**_entry("int8-static", 0, [4.0]), "metric": {"name": "perplexity", "value": 10.05}}
    sel = _select_int8([fp32, dyn, static], fp32, 1.0, "perplexity")  # 5% > 1% budget
    assert sel["chosen"] == "onnx/int8-static.onnx"
