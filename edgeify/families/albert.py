"""ALBERT: one shared transformer block applied num_hidden_layers times.

The shared block is why ALBERT is small on disk; the ONNX export must keep it stored once
(see export/onnx.py: identical initializers are merged after fusion).
"""

from edgeify.families import Family, register
from edgeify.tasks import SEQ_CLS
from edgeify.families.anatomy import Anatomy
from edgeify.families.electra import ENCODER_INT8_OPS, ENCODER_KEEP_FLOAT

FAMILY = register(Family(
    name="albert",
    model_types=("albert",),
    task=SEQ_CLS,
    config_class="AlbertConfig",
    model_class="AlbertForSequenceClassification",
    default_checkpoint="textattack/albert-base-v2-SST-2",
    onnx_inputs=("input_ids", "attention_mask", "token_type_ids"),
    keep_float_ops=ENCODER_KEEP_FLOAT,
    int8_ops=ENCODER_INT8_OPS,
    ort_model_type="bert",
    tokenizer_kind="unigram",
    # A stored block is a layer group (edgeify handles inner_group_num == 1, ALBERT's
    # default); num_hidden_layers counts applications, num_hidden_groups stored blocks.
    anatomy=Anatomy(blocks="albert.encoder.albert_layer_groups",
                    query="albert_layers.0.attention.query", key="albert_layers.0.attention.key",
                    value="albert_layers.0.attention.value", attn_out="albert_layers.0.attention.dense",
                    ffn_in="albert_layers.0.ffn", ffn_out="albert_layers.0.ffn_output",
                    stored_key="num_hidden_groups"),
    default_data="hub:glue@sst2",  # validation evaluated, train calibrates
    starter_lr=1e-3,
    starter_floor=15.0,  # points above chance; the 450-step starter scores 88.4%
    starter_config=dict(
        vocab_size=2048, embedding_size=64, hidden_size=128, num_hidden_layers=4,
        num_attention_heads=4, intermediate_size=512, max_position_embeddings=512,
        hidden_act="gelu_new", classifier_dropout_prob=0.1,
    ),
))
