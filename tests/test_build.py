"""build.eval_context_for: how much text before each LM window the evaluation gives."""

from types import SimpleNamespace

from edgeify import export, families
from edgeify.build import eval_context_for
from edgeify.config import RunConfig


def _context(backends=("onnx",), positions=2048, seq_len=128, family="gpt-neo", **config):
    return eval_context_for(RunConfig(model="m", **config), families.get(family),
                            SimpleNamespace(max_position_embeddings=positions),
                            [export.get_backend(b) for b in backends], seq_len)


def test_default_is_seq_len():
    assert _context() == 128
    assert _context(seq_len=64) == 64


def test_cut_to_positions_cache_and_tflite_default():
    assert _context(positions=200) == 72                      # 72 + 128 positions
    assert _context(max_length=160) == 32                     # the user's cache
    assert _context(backends=("onnx", "tflite"), seq_len=384) == 128  # TFLite's 512 slots
    assert _context(backends=("tflite",), max_length=1024, seq_len=384) == 384  # asked for more room
    assert _context(max_length=128) == 0


def test_asked_and_classification():
    assert _context(eval_context=0) == 0
    assert _context(eval_context=512) == 512
    assert _context(family="electra") == 0
