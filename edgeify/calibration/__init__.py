"""Data for calibration and evaluation: read, label, split, tokenize."""

from edgeify.calibration.readers import read_examples, Example
from edgeify.calibration.splits import Split, split_examples, DEFAULT_SEED
from edgeify.calibration.tokenize import Batch, encode_classification, encode_language_model

__all__ = [
    "Example", "read_examples", "Split", "split_examples", "DEFAULT_SEED",
    "Batch", "encode_classification", "encode_language_model",
]
