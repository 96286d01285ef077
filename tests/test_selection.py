"""The two answers of a run (edgeify/selection.py): the best int8 file and the best file of
any precision, each within the accuracy budget against the fp32 export of its own format,
judged on the best timing round; and the plan's refusals reaching the artifacts."""

from edgeify.selection import choose, plan_refusal, select_int8, select_overall
from edgeify.targets.planner import Plan


def _entry(precision, acc, rounds, fmt="onnx", ran=None):
    return {"format": fmt, "precision": precision, "path": f"{fmt}/{precision}",
            "metric": {"name": "accuracy", "value": acc}, "executed_precision": ran or precision,
            "latency_ms": {"p50": sorted(rounds)[len(rounds) // 2], "rounds_p50": rounds}}


# --- the best int8 file (today's selection, same keys) -----------------------------------

def test_fastest_within_budget_by_best_round():
    fp32 = _entry("fp32", 80.0, [20.0, 20.0, 20.0])
    dyn = _entry("int8-dynamic", 79.5, [13.3, 8.4, 13.3])   # one clean round: really ~8.4
    static = _entry("int8-static", 79.8, [17.3, 10.8, 11.1])
    sel = select_int8([fp32, dyn, static], 1.0, "accuracy")
    assert sel == {"chosen": "onnx/int8-dynamic", "budget": 1.0, "reason": sel["reason"]}
    assert dyn["selected"] and "selected" not in static


def test_over_budget_keeps_most_accurate():
    fp32 = _entry("fp32", 80.0, [20.0])
    dyn = _entry("int8-dynamic", 77.0, [8.0])
    static = _entry("int8-static", 78.5, [11.0])
    sel = select_int8([fp32, dyn, static], 1.0, "accuracy")
    assert sel["chosen"] == "onnx/int8-static" and "no int8 artifact within" in sel["reason"]


def test_perplexity_budget_is_relative():
    fp32 = {**_entry("fp32", 10.0, [5.0]), "metric": {"name": "perplexity", "value": 10.0}}
    dyn = {**_entry("int8-dynamic", 0, [3.0]), "metric": {"name": "perplexity", "value": 10.5}}
    static = {**_entry("int8-static", 0, [4.0]), "metric": {"name": "perplexity", "value": 10.05}}
    sel = select_int8([fp32, dyn, static], 1.0, "perplexity")  # 5% > 1% budget
    assert sel["chosen"] == "onnx/int8-static"


def test_selection_spans_formats_each_against_its_own_fp32():
    onnx_fp32 = _entry("fp32", 80.0, [20.0])
    onnx_dyn = _entry("int8-dynamic", 79.5, [9.0])
    ov_fp32 = _entry("fp32", 78.0, [15.0], fmt="openvino")  # its own reference: 78
    ov_int8 = _entry("int8", 77.5, [6.0], fmt="openvino")   # 0.5 below its fp32: within
    ov_int4 = _entry("int4-weights", 76.0, [5.0], fmt="openvino")  # 2.0 below: outside
    entries = [onnx_fp32, onnx_dyn, ov_fp32, ov_int8, ov_int4]
    sel = select_int8(entries, 1.0, "accuracy")
    assert sel["chosen"] == "openvino/int8" and "2 of 3 within" in sel["reason"]
    assert [e.get("selected", False) for e in entries] == [False, False, False, True, False]


def test_fp16_is_not_an_int8_candidate():
    fp32 = _entry("fp32", 80.0, [20.0], fmt="openvino")
    fp16 = _entry("fp16", 80.0, [5.0], fmt="openvino")
    assert select_int8([fp32, fp16], 1.0, "accuracy") is None
    assert choose([fp32, fp16], 1.0, "accuracy") is None  # no int8 run: no selection, as before


# --- both answers, on rows like an ALBERT run on a bf16 CPU ------------------------------

def _bf16_run() -> list[dict]:
    """OpenVINO on a bf16 CPU: the fp16-weights row and the int8 IR's as-run twin ran bf16."""
    return [_entry("fp32", 90.8, [7.4, 7.3]), _entry("int8-dynamic", 90.8, [3.1, 3.2]),
            _entry("fp32", 90.8, [17.4, 17.0], fmt="openvino", ran="f32"),
            _entry("fp16", 90.8, [4.9, 5.0], fmt="openvino", ran="bf16"),
            _entry("int8", 90.7, [5.6, 5.5], fmt="openvino", ran="int8 27/27 matmuls, rest f32"),
            _entry("int8-bf16", 90.6, [2.4, 2.5], fmt="openvino", ran="int8 27/27 matmuls, rest bf16"),
            _entry("int8-static", 88.0, [1.0], fmt="tflite"),  # fastest, but 2.8 pt below: out
            _entry("fp32", 90.8, [5.0], fmt="tflite")]


def test_the_as_run_int8_row_is_a_candidate_and_wins_when_fastest():
    entries = _bf16_run()
    sel = choose(entries, 1.0, "accuracy")
    assert sel["chosen"] == "openvino/int8-bf16" and sel["budget"] == 1.0
    assert sel["overall"]["chosen"] == "openvino/int8-bf16"
    assert "also the best int8 file" in sel["overall"]["reason"]
    assert sel["overall"]["executed_precision"] == "int8 27/27 matmuls, rest bf16"


def test_a_bf16_float_row_beating_every_int8_file_is_the_overall_answer():
    """Without the as-run twin (e.g. over budget), the fp16-weights row run in bf16 beats
    every int8 file in budget: it is the overall answer, the int8 answer stays the int8 one."""
    entries = [e for e in _bf16_run() if e["precision"] not in ("int8-bf16", "int8-dynamic")]
    sel = choose(entries, 1.0, "accuracy")
    assert sel["chosen"] == "openvino/int8"  # the best int8 file: today's key, today's meaning
    overall = sel["overall"]
    assert overall["chosen"] == "openvino/fp16" and overall["precision"] == "fp16"
    assert overall["executed_precision"] == "bf16"
    assert "any precision within the 1 points budget" in overall["reason"]
    assert "the best int8 file (openvino/int8) takes 1.12x as long (5.50 vs 4.90 ms" in overall["reason"]
    marked = {e["path"]: (e.get("selected", False), e.get("selected_overall", False)) for e in entries}
    assert marked["openvino/int8"] == (True, False) and marked["openvino/fp16"] == (False, True)


def test_overall_measures_each_row_against_its_own_formats_fp32():
    ov_fp32 = _entry("fp32", 70.0, [10.0], fmt="openvino")
    ov_fp16 = _entry("fp16", 69.5, [3.0], fmt="openvino")  # 0.5 below its own fp32: within
    onnx_fp32 = _entry("fp32", 90.0, [8.0])
    onnx_dyn = _entry("int8-dynamic", 88.0, [2.0])  # 2 below: outside
    overall = select_overall([ov_fp32, ov_fp16, onnx_fp32, onnx_dyn], 1.0, "accuracy")
    assert overall["chosen"] == "openvino/fp16" and "(3 of 4 within)" in overall["reason"]
    # an fp32 export is always within its own budget: there is always an overall answer
    assert select_overall([onnx_fp32, onnx_dyn], 0.0, "accuracy")["chosen"] == "onnx/fp32"
    assert select_overall([onnx_dyn], 1.0, "accuracy") is None  # no reference row


def test_decoders_are_compared_on_decode_rate():
    def dec(precision, rate, p50):
        return {**_entry(precision, 30.0, [p50]), "metric": {"name": "perplexity", "value": 30.0},
                "generation": {"decode_tokens_per_s": rate}}
    fast_decode = dec("int8-weights", 200.0, 9.0)
    entries = [dec("fp32", 100.0, 5.0), dec("fp16", 150.0, 4.0), fast_decode]
    sel = choose(entries, 1.0, "perplexity")
    assert sel["chosen"] == sel["overall"]["chosen"] == "onnx/int8-weights"
    assert sel["overall"]["reason"].startswith("fastest decoding file")


# --- the plan's refusals -----------------------------------------------------------------

def test_plan_refusals_reach_the_artifacts_of_that_precision():
    plan = Plan(target="t", measured=True, formats=("onnx",), precisions={"onnx": ("int8",)}, threads=2,
                timing_threads=2, seq_lens=(128,), notes=(), int8_outlook=None,
                refused=(("onnx fp32", "too big"), ("onnx int4", "int4 too"), ("openvino int8-bf16", "no bf16")))
    assert plan_refusal(plan, {"format": "onnx", "precision": "fp32"}) == "too big"
    assert plan_refusal(plan, {"format": "onnx", "precision": "int4-weights"}) == "int4 too"
    assert plan_refusal(plan, {"format": "onnx", "precision": "int8-dynamic"}) is None
    assert plan_refusal(plan, {"format": "tflite", "precision": "fp32"}) is None
    # an as-run row the target does not run, plain or accuracy-controlled; the f32 int8 stays
    assert plan_refusal(plan, {"format": "openvino", "precision": "int8-bf16"}) == "no bf16"
    assert plan_refusal(plan, {"format": "openvino", "precision": "int8-accuracy-controlled-bf16"}) == "no bf16"
    assert plan_refusal(plan, {"format": "openvino", "precision": "int8"}) is None


def test_an_accuracy_controlled_copy_of_the_plain_file_is_not_a_second_candidate():
    """Nothing reverted: the controlled file is the plain int8 file again. Timed twice, one
    copy is "faster" by noise alone; only the plain file may be chosen, and the copy says
    which file it is."""
    from types import SimpleNamespace

    from edgeify import targets
    from edgeify.selection import select

    entries = [_entry("fp32", 90.0, [10.0]), _entry("int8-static", 89.9, [6.0]),
               _entry("int8-dynamic", 90.0, [5.0]), _entry("int8-dynamic-accuracy-controlled", 90.0, [4.9]),
               _entry("int8-static-accuracy-controlled", 90.0, [6.1])]
    entries[3]["notes"] = {"same_as": "int8-dynamic"}  # nothing reverted
    entries[4]["notes"] = {"reverted_to_float": ["a"]}  # a file of its own
    for e in entries:
        e["seq_len"] = 128
    plan = Plan(target="host", measured=True, formats=("onnx",), precisions={"onnx": ("int8",)}, threads=2,
                timing_threads=2, seq_lens=(128,), notes=(), int8_outlook=None, refused=())
    config = SimpleNamespace(max_accuracy_drop=0.2, seq_len=128, int8=True)
    selection = select(targets.get("host"), config, plan, entries, None, "accuracy", 2, lambda *_: None)
    assert selection["chosen"] == "onnx/int8-dynamic"
    assert entries[3]["same_file_as"] == "onnx/int8-dynamic" and not entries[3].get("selected")
    assert "same_file_as" not in entries[4]
