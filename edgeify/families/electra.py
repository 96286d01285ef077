"""ELECTRA discriminator fine-tuned for sequence classification."""

from edgeify.families import Family, register
from edgeify.tasks import SEQ_CLS
from edgeify.families.anatomy import Anatomy

# Shared by the BERT-like encoders: what stays float and what int8 may touch.
ENCODER_KEEP_FLOAT = (
    "LayerNormalization", "SkipLayerNormalization", "EmbedLayerNormalization",
    "Gelu", "BiasGelu", "FastGelu", "Erf", "Softmax", "Add",
)
# Gather (the embedding tables) is weight-only: the table is stored int8 and looked-up rows
# are scaled back to float, with no int8 arithmetic. The tables are a third to a half of
# these models' parameters, so an int8 file is half float without it. Measured on the real
# MiniLM->ELECTRA model, 1000 tweets (benchmarks/RESULTS.md, issue 5): ONNX static int8
# 74.4 with int8 tables vs 74.2 with float tables; TFLite dynamic 74.2 vs 74.5, static 74.5
# vs 74.6 (fp32 74.5). The report's accuracy delta shows what it cost on the user's data.
ENCODER_INT8_OPS = ("MatMul", "Gemm", "Attention", "Gather")

FAMILY = register(Family(
    name="electra",
    model_types=("electra",),
    task=SEQ_CLS,
    config_class="ElectraConfig",
    model_class="ElectraForSequenceClassification",
    default_checkpoint="howey/electra-small-sst2",
    onnx_inputs=("input_ids", "attention_mask", "token_type_ids"),
    keep_float_ops=ENCODER_KEEP_FLOAT,
    int8_ops=ENCODER_INT8_OPS,
    ort_model_type="bert",
    tokenizer_kind="wordpiece",
    anatomy=Anatomy(blocks="electra.encoder.layer", query="attention.self.query",
                    key="attention.self.key", value="attention.self.value",
                    attn_out="attention.output.dense", ffn_in="intermediate.dense",
                    ffn_out="output.dense"),
    default_data="hub:glue@sst2",  # validation evaluated, train calibrates
    starter_floor=15.0,  # points above chance; the 450-step starter scores 91.5%
    starter_config=dict(
        vocab_size=2048, embedding_size=96, hidden_size=128, num_hidden_layers=4,
        num_attention_heads=4, intermediate_size=512, max_position_embeddings=512,
    ),
))
