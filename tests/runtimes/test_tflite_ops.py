"""The measured op tables: which op versions a TFLite runtime can load."""

import pytest

from edgeify.runtimes.tflite_ops import max_versions, offending_ops

RT = "tflite-runtime 2.14"


def test_table_has_the_ops_edgeify_files_use():
    limits = max_versions(RT)
    assert limits["GATHER_ND"] == 4  # v5 (bool params) came after 2.14
    for op in ("FULLY_CONNECTED", "BATCH_MATMUL", "EMBEDDING_LOOKUP", "GELU", "SOFTMAX", "QUANTIZE", "DEQUANTIZE"):
        assert limits[op] >= 1
    with pytest.raises(ValueError, match="no op table for 'tflite-runtime 1.0'"):
        max_versions("tflite-runtime 1.0")


def test_offending_ops():
    assert offending_ops({"GATHER_ND": [4], "FULLY_CONNECTED": [5]}, RT) == []
    assert offending_ops({"GATHER_ND": [4, 5], "ADD": [1]}, RT) == ["GATHER_ND v5 (tflite-runtime 2.14 has up to v4)"]
    assert offending_ops({"CUSTOM:FlexErf": [1], "CUSTOM:MyOp": [1], "NOT_AN_OP": [1]}, RT) == [
        "CUSTOM:FlexErf (a select-TensorFlow op: needs the Flex delegate, which tflite-runtime 2.14 lacks)",
        "CUSTOM:MyOp (a custom op tflite-runtime 2.14 does not have)",
        "NOT_AN_OP (not in tflite-runtime 2.14)"]

