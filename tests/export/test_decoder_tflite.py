"""TFLite cached decoder (prefill/decode signatures): greedy generation equals Hugging Face's
token for token, logits match, the cache resets and refuses to overflow, and the int8 /
int4 files still generate. Tiny random GPT-Neo models; exports shared per module."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("litert_torch")
torch = pytest.importorskip("torch")

from edgeify import families  # noqa: E402
from edgeify.export.tflite import DynamicInt8  # noqa: E402
from edgeify.export.tflite_decoder import DynamicInt4, export_decoder, quantize_decoder  # noqa: E402
from edgeify.generate import Sampling, generate  # noqa: E402
from edgeify.runtimes import CacheFull, DecoderRunner, is_decoder, open_decoder, open_runner  # noqa: E402

NEW = 36  # 26 + 36 - 1 tokens fit the small decoder's 64-slot cache


def _tiny(window: int, positions: int):
    """Large initial weights (0.2): greedy tokens vary instead of repeating one token."""
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    torch.manual_seed(0)
    config = GPTNeoConfig(vocab_size=512, hidden_size=64, num_layers=2, num_heads=4,
                          attention_types=[[["global", "local"], 1]], window_size=window,
                          max_position_embeddings=positions, intermediate_size=128,
                          initializer_range=0.2, bos_token_id=0, eos_token_id=0)
    config._attn_implementation = "eager"
    return GPTNeoForCausalLM(config).eval()


def _prompt(n: int) -> list[int]:
    return np.random.default_rng(n).integers(1, 512, n).tolist()


def _hf_greedy(model, prompt: list[int], n: int) -> list[int]:
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
    return out[0, len(prompt):].tolist()


def _hf_logits(model, ids) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(np.asarray(ids)), use_cache=False).logits.numpy()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Window 16, a 64-token cache, prefill chunks of 8: a 26-token prompt takes 4 chunks."""
    model = _tiny(16, 128)
    art = export_decoder(model, families.get("gpt-neo"), tmp_path_factory.mktemp("small"), prefill_len=8, max_length=64)
    return model, art


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """The real window (256) and a 300-token prompt; max_length asked 512, positions 352."""
    model = _tiny(256, 352)
    art = export_decoder(model, families.get("gpt-neo"), tmp_path_factory.mktemp("wide"), max_length=512)
    return model, art


@pytest.fixture(scope="module")
def quantized(small):
    _, fp32 = small
    family = families.get("gpt-neo")
    return {"int8": quantize_decoder(fp32, family, DynamicInt8()),
            "int4": quantize_decoder(fp32, family, DynamicInt4(block_size=32))}


def test_export_notes_and_signatures(small, wide):
    _, art = small
    assert art.path.name == "decoder.fp32.seq8.max64.tflite"
    assert art.notes["prefill_len"] == 8 and art.notes["max_length"] == 64 and art.notes["local_window"] == 16
    # the cache write is DYNAMIC_UPDATE_SLICE, not a scatter tflite-runtime 2.14 lacks
    assert "DYNAMIC_UPDATE_SLICE" in art.notes["ops"] and "STABLEHLO_SCATTER" not in art.notes["ops"]
    assert art.notes["ops_missing_in"]["tflite-runtime 2.14"] == []
    assert all(c["same_results"] for c in art.notes["runtimes"]), art.notes["runtimes"]
    assert "warning" not in art.notes
    _, wide_art = wide
    assert wide_art.path.name == "decoder.fp32.seq128.max352.tflite"  # clipped to the position table
    decoder = open_decoder(wide_art.path, 1)
    assert (decoder.max_length, decoder.prefill_len, decoder.precision) == (352, 128, "fp32")


def test_greedy_equals_hf_with_chunked_prefill(small):
    model, art = small
    prompt = _prompt(26)
    decoder = open_decoder(art.path, 2)
    assert decoder.prefill_len == 8
    got = generate(decoder, prompt, Sampling(max_new_tokens=NEW))
    want = _hf_greedy(model, prompt, NEW)
    assert got.tokens == want
    assert len(set(want)) > 5


def test_greedy_equals_hf_past_the_local_window(wide):
    model, art = wide
    prompt = _prompt(300)
    got = generate(open_decoder(art.path, 2), prompt, Sampling(max_new_tokens=32))
    want = _hf_greedy(model, prompt, 32)
    assert got.tokens == want
    assert len(set(want)) > 5


def test_runner_logits_match_hf(small):
    model, art = small
    runner = open_runner(art.path, 2)
    assert isinstance(runner, DecoderRunner)
    ids = np.array([_prompt(26), _prompt(26)[::-1]])  # two rows: each from an empty cache
    np.testing.assert_allclose(runner.run({"input_ids": ids}), _hf_logits(model, ids), atol=1e-3)


def test_reset_and_a_padded_chunk_near_the_end(small):
    model, art = small
    decoder = open_decoder(art.path, 1)
    ids = np.array([_prompt(61)])
    first = decoder.forward(ids[:, :3])
    # from position 3, 58 tokens: 7 chunks, then 2 tokens whose padded chunk would end
    # past slot 64, so they go through decode
    rest = decoder.forward(ids[:, 3:])
    assert decoder.length == 61
    np.testing.assert_allclose(np.concatenate([first, rest], axis=1), _hf_logits(model, ids), atol=1e-3)
    decoder.reset()
    assert decoder.length == 0
    np.testing.assert_allclose(decoder.forward(ids[:, :3]), first, atol=1e-6)


def test_cache_full_names_the_sizes(small):
    _, art = small
    decoder = open_decoder(art.path, 1)
    with pytest.raises(CacheFull, match="holds 64 tokens; 0 are used and 65 more"):
        decoder.forward(np.zeros((1, 65), dtype=np.int64))
    assert decoder.length == 0
    decoder.forward(np.ones((1, 64), dtype=np.int64))
    with pytest.raises(CacheFull, match="holds 64 tokens; 64 are used and 1 more"):
        decoder.forward(np.ones((1, 1), dtype=np.int64))


def test_only_two_signature_files_are_decoders(small, tmp_path):
    import litert_torch

    _, art = small
    assert is_decoder(art.path)
    plain = tmp_path / "plain.tflite"
    litert_torch.convert(torch.nn.Linear(4, 3).eval(), (torch.zeros(1, 4),)).export(str(plain))
    assert not is_decoder(plain)
    assert not isinstance(open_runner(plain, 1), DecoderRunner)
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(art.path.read_bytes()[:200])
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    assert not is_decoder(truncated) and not is_decoder(empty)


@pytest.mark.parametrize("name,precision", [("int8", "int8 weights (dynamic range)"),
                                            ("int4", "int4 weights (dynamic range)")])
def test_quantized_decoders_generate_close_to_fp32(small, quantized, name, precision):
    model, fp32 = small
    art = quantized[name]
    assert art.path.name == {"int8": "decoder.int8-dynamic.seq8.max64.tflite", "int4": "decoder.int4-dynamic-b32.seq8.max64.tflite"}[name]
    assert art.precision == f"{name}-dynamic"
    assert art.notes["prefill_len"] == 8 and art.notes["tied_table_int8"]
    # the tied table is stored once (int8), not once per signature next to a float copy
    assert art.size_bytes < 0.5 * fp32.size_bytes
    decoder = open_decoder(art.path, 2)
    assert decoder.precision == precision
    tokens = generate(decoder, _prompt(26), Sampling(max_new_tokens=32)).tokens
    assert len(tokens) == 32 and all(0 <= t < 512 for t in tokens)
    ids = np.array([_prompt(26)])
    got, want = open_runner(art.path, 2).run({"input_ids": ids}), _hf_logits(model, ids)
    relative = np.abs(got - want).mean() / np.abs(want).mean()
    # int4 on this tiny random model with large weights is coarse (simulated blockwise
    # int4 weights in torch: the same error); the bound only catches a broken file
    assert relative < (0.15 if name == "int8" else 0.7), relative  # measured 0.06 and 0.47; broken ~1.4
    if name == "int8":
        assert (got.argmax(-1) == want.argmax(-1)).mean() >= 0.8
