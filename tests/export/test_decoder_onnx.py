"""ONNX cached decoder: one graph for prefill and decode, exact against HF generate."""

from __future__ import annotations

import numpy as np
import pytest

from edgeify import families
from edgeify.errors import EdgeifyError
from edgeify.export import get_backend
from edgeify.generate import Sampling, generate
from edgeify.runtimes import CacheFull, is_decoder, open_decoder, open_runner
from tests.decoders import hf_greedy, hf_logits, prompt_ids, tiny_gpt_neo

FAMILY = families.get("gpt-neo")


@pytest.fixture(scope="module")
def short_window(tmp_path_factory):
    """Window 16, prompt 26: the local layers' window is crossed at once."""
    model = tiny_gpt_neo(window=16, max_positions=96)
    out = tmp_path_factory.mktemp("onnx-decoder")
    return model, get_backend("onnx").export_decoder(model, FAMILY, out)


def test_greedy_equals_hf_generate_past_the_window(short_window):
    model, art = short_window
    prompt = prompt_ids(26)
    expected = hf_greedy(model, prompt, 40)
    assert len(set(expected)) > 5  # a varied stream, or the comparison proves little
    decoder = open_decoder(art.path, 2)
    assert generate(decoder, prompt, Sampling(max_new_tokens=40)).tokens == expected
    # the cache is really emptied: the same again from the start
    assert generate(decoder, prompt, Sampling(max_new_tokens=40)).tokens == expected


def test_real_window_256_prompt_of_300(tmp_path):
    model = tiny_gpt_neo(window=256, max_positions=512, seed=3)
    art = get_backend("onnx").export_decoder(model, FAMILY, tmp_path)
    prompt = prompt_ids(300, seed=4)
    expected = hf_greedy(model, prompt, 32)
    assert len(set(expected)) > 5
    assert generate(open_decoder(art.path, 2), prompt, Sampling(max_new_tokens=32)).tokens == expected


def test_runner_view_matches_hf_logits(short_window):
    model, art = short_window
    prompt = prompt_ids(30, seed=2)
    runner = open_runner(art.path, 2)
    got = runner.run({"input_ids": np.asarray([prompt, prompt[::-1]]), "attention_mask": np.ones((2, 30), np.int64)})
    assert np.abs(got[0] - hf_logits(model, prompt)[0]).max() < 1e-3
    assert np.abs(got[1] - hf_logits(model, prompt[::-1])[0]).max() < 1e-3
    assert is_decoder(art.path)


def test_cache_overflow_is_a_clear_error(short_window):
    _, art = short_window
    decoder = open_decoder(art.path, 2)
    with pytest.raises(CacheFull, match="needs a cache of 105 tokens; this decoder's holds 96"):
        generate(decoder, prompt_ids(26), Sampling(max_new_tokens=80))
    decoder.reset()
    decoder.forward(np.asarray([prompt_ids(90)]))
    with pytest.raises(CacheFull, match="holds 96 tokens; 90 are used and 7 more do not fit"):
        decoder.forward(np.asarray([prompt_ids(7)]))
    assert decoder.length == 90  # nothing ran


def test_weight_only_int8_int4_generate_close_to_fp32(short_window, tmp_path):
    from edgeify.export.onnx_decoder import WeightOnly

    model, art = short_window
    backend = get_backend("onnx")
    prompt = prompt_ids(26)
    reference = hf_logits(model, prompt)[0]
    # int4 on a 64-wide random model is rough (mean |diff| about 40% of the mean |logit|,
    # correlation about 0.9); the real measure is perplexity on a trained model
    # (benchmarks/bench_generate.py)
    for bits, min_corr in ((8, 0.995), (4, 0.8)):
        q = backend.quantize(art, FAMILY, None, WeightOnly(bits=bits), tmp_path)
        assert q.path.name == f"decoder.int{bits}-weights.onnx" and q.notes["matmulnbits"] > 0
        decoder = open_decoder(q.path, 2)
        assert decoder.max_length == 96  # the limits survive quantization
        logits = decoder.forward(np.asarray([prompt]))[0]
        corr = np.corrcoef(logits.ravel(), reference.ravel())[0, 1]
        assert corr > min_corr, (bits, corr)
        if bits == 8:
            assert (logits.argmax(-1) == reference.argmax(-1)).mean() > 0.9
        assert len(generate(decoder, prompt, Sampling(max_new_tokens=8)).tokens) == 8


def test_sampling_is_seeded_and_respects_stop_tokens(short_window):
    _, art = short_window
    decoder = open_decoder(art.path, 2)
    prompt = prompt_ids(10)
    s = Sampling(max_new_tokens=20, temperature=0.8, top_k=50, top_p=0.9, seed=7)
    first = generate(decoder, prompt, s).tokens
    assert generate(decoder, prompt, s).tokens == first
    stop = first[3]
    stopped = generate(decoder, prompt, Sampling(max_new_tokens=20, temperature=0.8, top_k=50, top_p=0.9,
                                                  seed=7, stop_ids=(stop,)))
    assert stopped.tokens == first[:first.index(stop) + 1] and stopped.stopped_by == "stop token"


def test_bad_sampling_values_are_usage_errors():
    with pytest.raises(EdgeifyError, match="top-p must be in"):
        Sampling(top_p=0)
    with pytest.raises(EdgeifyError, match="temperature must be >= 0"):
        Sampling(temperature=-1)


def test_foreign_cached_onnx_is_refused_clearly(short_window, tmp_path):
    """A past_key_values graph without edgeify's metadata (e.g. from optimum) is named, not
    run with a guessed cache size."""
    import onnx

    _, art = short_window
    model = onnx.load(art.path)
    del model.metadata_props[:]
    foreign = tmp_path / "foreign.onnx"
    onnx.save_model(model, foreign)
    with pytest.raises(EdgeifyError, match="not an edgeify cached decoder"):
        open_decoder(foreign, 1)
