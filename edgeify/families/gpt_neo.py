"""GPT-Neo causal LM: alternating global and local (windowed) attention layers."""

from edgeify.families import Family, register
from edgeify.tasks import CAUSAL_LM
from edgeify.families.anatomy import Anatomy

FAMILY = register(Family(
    name="gpt-neo",
    aliases=("gpt_neo", "gptneo"),
    model_types=("gpt_neo",),
    task=CAUSAL_LM,
    config_class="GPTNeoConfig",
    model_class="GPTNeoForCausalLM",
    default_checkpoint="EleutherAI/gpt-neo-125m",
    onnx_inputs=("input_ids", "attention_mask"),
    keep_float_ops=(
        "LayerNormalization", "SkipLayerNormalization", "Gelu", "FastGelu", "BiasGelu",
        "Softmax", "Add", "Gather", "Tanh", "Pow",
    ),
    int8_ops=("MatMul", "Gemm"),
    # The gpt2 fusion patterns do not match GPT-Neo's attention (no 1/sqrt(d) scaling,
    # local window mask); LayerNorm/GELU fusion still applies under "gpt2".
    ort_model_type="gpt2",
    tokenizer_kind="bytelevel-bpe",
    anatomy=Anatomy(blocks="transformer.h", query="attn.attention.q_proj", key="attn.attention.k_proj",
                    value="attn.attention.v_proj", attn_out="attn.attention.out_proj",
                    ffn_in="mlp.c_fc", ffn_out="mlp.c_proj", heads_attr="attn.attention.num_heads",
                    layers_key="num_layers", heads_key="num_heads"),
    cached_decoder="edgeify.families.gpt_neo_cache",
    # test: the split GPT-Neo's perplexity is published on. Its int8 is weight-only (no
    # calibration), so the few windows taken first for export samples may share the split.
    default_data="hub:wikitext@wikitext-2-raw-v1:test",
    starter_lr=2e-3,
    starter_floor=0.10,  # x vocab size: under word-frequency guessing (~0.12); 50 steps give 0.07
    starter_config=dict(
        vocab_size=2048, hidden_size=128, num_layers=4, num_heads=4,
        attention_types=[[["global", "local"], 2]], window_size=256,
        max_position_embeddings=512, intermediate_size=512,
    ),
))
