"""Which builtin op versions a TFLite runtime can load, so a file is checked against the
runtime a device has without that device (or that runtime) at hand.

The tables are measured, not copied from release notes: tools/tflite_op_table.py hands
the runtime one minimal model per (op, version) and records the highest version that
loads. tflite-runtime 2.14 is what `pip install tflite-runtime` gives on Raspberry Pi OS.
Loading is not the whole story (2.14 loads per-channel dynamic-range files and computes
them wrongly), so an artifact is also run on every runtime at hand (check_runtimes).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

TABLES = {"tflite-runtime 2.14": "tflite-runtime-2.14.json"}

# Files a runtime loads and then computes wrongly, found by running them there
# (check_runtimes with EDGEIFY_TFLITE_PYTHONS) and kept here for devices whose runtime is
# not at hand. tflite-runtime 2.14, dynamic-range ops with per-channel int8 weights: max
# |logit diff| 1.06 on the ELECTRA starter, argmax flips; per-channel embedding tables:
# 3.1 on the real-weight ELECTRA; the same files match ai-edge-litert 2.x.
WRONG_PER_CHANNEL_DYNAMIC_RANGE = ("tflite-runtime 2.14",)


@lru_cache(maxsize=None)
def max_versions(runtime: str) -> dict[str, int]:
    if runtime not in TABLES:
        raise ValueError(f"no op table for {runtime!r}; known: {', '.join(TABLES)}")
    return json.loads((Path(__file__).parent / TABLES[runtime]).read_text())["max_version"]


def offending_ops(ops: dict[str, list[int]], runtime: str) -> list[str]:
    """The ops (name -> versions used, as in an artifact's notes) `runtime` cannot load.

    Flex ops (select TensorFlow ops) need TensorFlow's own kernels linked in, which no
    standalone TFLite runtime has, so they are always offending."""
    limits = max_versions(runtime)
    out = []
    for name, versions in sorted(ops.items()):
        if name.startswith("CUSTOM:Flex"):
            out.append(f"{name} (a select-TensorFlow op: needs the Flex delegate, which {runtime} lacks)")
        elif name.startswith("CUSTOM:"):
            out.append(f"{name} (a custom op {runtime} does not have)")
        elif name not in limits:
            out.append(f"{name} (not in {runtime})")
        elif max(versions) > limits[name]:
            out.append(f"{name} v{max(versions)} ({runtime} has up to v{limits[name]})")
    return out


def known_wrong(per_channel_dynamic_range: dict[str, int]) -> dict[str, str]:
    """{runtime: why it computes this file wrongly}, from the file's per-channel
    dynamic-range ops (tflite_file.per_channel_dynamic_range)."""
    if not per_channel_dynamic_range:
        return {}
    ops = ", ".join(f"{n} {op}" for op, n in sorted(per_channel_dynamic_range.items()))
    return {rt: f"per-channel int8 weights in dynamic-range ops ({ops}), which {rt} loads and computes wrongly"
            for rt in WRONG_PER_CHANNEL_DYNAMIC_RANGE}
