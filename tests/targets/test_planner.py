"""Profiles as data files, and the planner: what it builds for a target, what it refuses
and why, and `--plan`, which prints that without loading weights."""

from __future__ import annotations

import tomllib
from dataclasses import replace

import pytest

from edgeify import targets
from edgeify.cli import main
from edgeify.targets.planner import make_plan

MENU = {"onnx": ("fp32", "int8"), "openvino": ("fp32", "fp16", "int8"), "tflite": ("fp32", "fp16", "int8")}
ALL = {"onnx": True, "openvino": True, "tflite": True}


def _plan(name, **kw):
    args = dict(asked_formats=(), installed=ALL, menu=MENU, params=14_000_000, seq_lens=(128,))
    return make_plan(targets.get(name), targets.get("host"), **{**args, **kw})


def test_every_profile_is_complete_and_sourced():
    for name in targets.names():
        with open(targets.PROFILES / f"{name}.toml", "rb") as f:
            raw = tomllib.load(f)
        t = targets.get(name)
        assert t.sources and t.formats and t.threads >= 1 and t.cores >= 1, name
        assert set(t.default_formats) <= set(t.formats), name
        if not raw["measured"] and raw["arch"] != "x86_64":  # a device edgeify estimates
            assert t.peak_gops["fp32"] > 0 and t.peak_gops["int8"] > 0 and t.bandwidth_gbs > 0, name
            assert t.memory_mb > 0 and t.isa, name


def test_rpi4_and_rpi5_differ_on_int8_for_the_stated_reason():
    pi4, pi5 = _plan("rpi4"), _plan("rpi5")
    assert pi4.formats == pi5.formats == ("tflite", "onnx")  # the Pi's own format first
    assert pi4.int8_outlook == pytest.approx(0.5) and pi5.int8_outlook == pytest.approx(2.0)
    assert any("int8 is expected no faster than fp32 on rpi4" in n and "no int8 dot-product" in n
               for n in pi4.notes)
    assert any("up to ~2.0x" in n for n in pi5.notes)
    assert pi4.threads == 4 and pi4.timing_threads == targets.get("host").threads and not pi4.measured
    assert any("rpi4 has no fp16 arithmetic" in n for n in pi4.notes)
    assert not any("fp16 arithmetic" in n for n in pi5.notes)


def test_refusals_name_the_reason():
    plan = _plan("rpi4", asked_formats=("all",))
    assert ("openvino", "edgeify does not build OpenVINO for ARM boards") in plan.refused
    missing = _plan("host", installed={**ALL, "openvino": False}, asked_formats=("all",))
    assert "openvino" not in missing.formats
    assert ("openvino", "its backend is not installed here (pip install 'edgeify[openvino]')") in missing.refused
    # 14M parameters: fp32 needs ~53 + 150 MB, int8 ~13 + 150 MB
    tight = _plan("host", max_memory_mb=190)
    assert tight.precisions["onnx"] == ("int8",)
    assert ("onnx fp32", "needs ~203 MB with the runtime, over the 190 MB --max-memory-mb") in tight.refused
    small = replace(targets.get("rpi4"), memory_mb=180)
    plan = make_plan(small, targets.get("host"), asked_formats=(), installed=ALL, menu=MENU,
                     params=14_000_000, seq_lens=(128,))
    assert ("tflite fp32", "needs ~203 MB with the runtime, over the 180 MB rpi4 has") in plan.refused
    assert plan.precisions["tflite"] == ("fp16", "int8")


def test_plan_flag_prints_without_building(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    assert main(["albert", "--int8", "--target", "rpi", "--plan"]) == 0
    out = capsys.readouterr().out
    assert "plan for target rpi4" in out and "tflite:     fp32, fp16, int8" in out
    assert "not timed on it" in out and "int8 is expected no faster" in out
    assert list(tmp_path.iterdir()) == []  # nothing written
    assert main(["albert", "--target", "rpi", "--plan", "--formats", "openvino"]) == 2
    assert "edgeify does not build OpenVINO for ARM boards" in capsys.readouterr().err


def test_as_run_rows_in_the_plan_by_cpu(tmp_path, capsys, monkeypatch):
    """The int8-as-run row (OpenVINO's default: int8 matmuls, bf16 for the rest) is planned
    where a plain load runs bf16, and absent with the reason where it does not: a CPU without
    bf16 (imitated by the oneDNN cap), or a target whose env caps it (x86-avx2). Real
    OpenVINO answers; nothing is mocked."""
    pytest.importorskip("openvino")
    from edgeify.runtimes.openvino_runner import default_precision

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    native, why = default_precision()
    assert main(["albert", "--int8", "--formats", "openvino", "--plan"]) == 0
    out = capsys.readouterr().out
    if native == "f32":
        assert "openvino:   fp32, fp16, int8\n" in out and "no int8 row as run by default" in out
    else:
        assert f"openvino:   fp32, fp16, int8, int8-{native}\n" in out
        assert f"a plain load runs {native} here" in out and why in out
        # the target caps oneDNN at AVX2: not built for it, and refused if this host builds it
        assert main(["albert", "--int8", "--target", "x86-avx2", "--plan"]) == 0
        capped = capsys.readouterr().out
        assert "openvino:   fp32, fp16, int8\n" in capped
        assert "no int8 row as run by default (int8 matmuls, bf16/fp16 for the rest): ONEDNN_MAX_CPU_ISA=AVX2" in capped
        assert f"refused:    openvino int8-{native}: this host runs {native} by default, x86-avx2 does not" in capped
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")  # this process: no bf16
    assert main(["albert", "--int8", "--formats", "openvino", "--plan"]) == 0
    out = capsys.readouterr().out
    assert "openvino:   fp32, fp16, int8\n" in out and "refused:" not in out
    # the reason: the cap where the CPU has bf16, else the CPU itself
    assert "no int8 row as run by default" in out
    assert ("ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI" if native != "f32" else "this CPU has no bf16") in out
    # without --int8 there is no int8 row to speak of
    assert main(["albert", "--formats", "openvino", "--plan"]) == 0
    assert "as run by default" not in capsys.readouterr().out


def test_as_run_rows_from_given_defaults():
    """make_plan itself, on a (type, why, this host's type) triple per format."""
    plan = _plan("host", asked_formats=("openvino",), runtime_defaults={"openvino": ("bf16", "BF16 here", "bf16")})
    assert plan.precisions["openvino"] == ("fp32", "fp16", "int8", "int8-bf16") and not plan.refused
    none = _plan("host", asked_formats=("openvino",), runtime_defaults={"openvino": ("f32", "no BF16", "f32")})
    assert none.precisions["openvino"] == ("fp32", "fp16", "int8") and not none.refused
    assert any("no int8 row as run by default" in n and "no BF16" in n for n in none.notes)
    # over the memory budget, int8 (and so its as-run row) is refused as before
    tight = _plan("host", asked_formats=("openvino",), max_memory_mb=100,
                  runtime_defaults={"openvino": ("bf16", "BF16 here", "bf16")})
    assert "int8-bf16" not in tight.precisions["openvino"]
