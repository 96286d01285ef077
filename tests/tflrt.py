"""Where the tests find a Python with tflite-runtime 2.14 (as on Raspberry Pi OS).

.ci/run makes such a venv and names it in EDGEIFY_TFLITE_PYTHONS; EDGEIFY_TEST_TFLRT_PYTHON
overrides. Tests that need it are skipped where it is absent."""

import os
from pathlib import Path

import pytest

TFLRT = Path(os.environ.get("EDGEIFY_TEST_TFLRT_PYTHON")
             or os.environ.get("EDGEIFY_TFLITE_PYTHONS", "").split(os.pathsep)[0]
             or "/work/venv-tflrt/bin/python")
TFLRT_RUNTIME = "tflite-runtime 2.14.0"
needs_tflrt = pytest.mark.skipif(
    not TFLRT.exists(), reason=f"no tflite-runtime 2.14 venv at {TFLRT} (set EDGEIFY_TEST_TFLRT_PYTHON)")
