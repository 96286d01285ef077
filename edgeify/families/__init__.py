"""One registry of model families.

A family module declares everything edgeify needs to know about an architecture in one
frozen dataclass and registers it; nothing else in the package names a family. Adding a
family means adding one module here and importing it at the bottom of this file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgeify.errors import UsageError
from edgeify.families.anatomy import SHAPE_KEY, Anatomy
from edgeify.tasks import Task


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    task: Task
    config_class: str
    model_class: str
    default_checkpoint: str
    onnx_inputs: tuple[str, ...]
    # ONNX op types left in float by int8 quantization: they carry the accuracy
    # (normalisation, non-linearities, the residual adds feeding them, embeddings).
    keep_float_ops: tuple[str, ...]
    # ONNX op types that int8 quantization may touch at all.
    int8_ops: tuple[str, ...]
    # onnxruntime.transformers optimizer model_type, or "" for no fusion.
    ort_model_type: str
    tokenizer_kind: str
    starter_config: dict[str, Any] = field(default_factory=dict)
    # Evaluation data when the user gives no --data (hub: needs internet + `datasets`).
    default_data: str = ""
    starter_lr: float = 5e-4
    # Held-out quality the offline starter must reach to be cached (starter.quality_floor):
    # classifiers, accuracy points above chance; causal LMs, the largest perplexity as a
    # fraction of the vocabulary size (a uniform guess). None: starter.py's task default.
    starter_floor: float | None = None
    aliases: tuple[str, ...] = ()
    # where the blocks, heads and FFN neurons live (compress/ cuts them; see anatomy.py)
    anatomy: Anatomy | None = None
    # causal LMs: module whose build(model, layout, max_length) gives the model with its
    # key/value cache as explicit tensors, the graph every cached-decoder export traces
    cached_decoder: str = ""

    @property
    def metric(self) -> str:
        """The name of the task's metric ("accuracy", "perplexity"): see metrics.py."""
        return self.task.metric.name

    def transformers_classes(self) -> tuple[type, type]:
        import transformers

        return getattr(transformers, self.config_class), getattr(transformers, self.model_class)

    def load_model(self, path: str, **kwargs: Any):
        """Load with eager attention: onnxruntime fuses Attention only on the eager graph."""
        config_cls, model_cls = self.transformers_classes()
        config = config_cls.from_pretrained(path)
        if getattr(config, SHAPE_KEY, None) and self.anatomy is not None:
            return self._load_pruned(path, config, model_cls)
        model = model_cls.from_pretrained(path, attn_implementation="eager", **kwargs)
        return model.eval()

    def decoder_module(self, model, layout: str, max_length: int | None = None):
        """The model with an explicit key/value cache (see gpt_neo_cache.py)."""
        import importlib

        if not self.cached_decoder:
            raise UsageError(f"{self.name} is not a causal LM: it has no cached decoder to export")
        return importlib.import_module(self.cached_decoder).build(model, layout, max_length)

    def _load_pruned(self, path: str, config, model_cls):
        """A pruned model: build its narrower shape first, then load the weights strictly."""
        from pathlib import Path

        from safetensors.torch import load_file

        from edgeify.families.anatomy import build_with_shape

        config._attn_implementation = "eager"
        model = build_with_shape(model_cls, config, self.anatomy)
        files = sorted(Path(path).glob("*.safetensors"))
        if not files:
            raise OSError(f"{path}: no .safetensors weights for the pruned model")
        state = {}
        for f in files:
            state.update(load_file(str(f)))
        missing, unexpected = model.load_state_dict(state, strict=False)
        tied = {k for k in missing if k.endswith("lm_head.weight")}
        if set(missing) - tied or unexpected:
            raise OSError(f"{path}: weights do not match the pruned shape "
                          f"(missing {sorted(set(missing) - tied)[:3]}, unexpected {sorted(unexpected)[:3]})")
        if tied:
            model.tie_weights()
        return model.eval()


_REGISTRY: dict[str, Family] = {}


def position_limit(config) -> int | None:
    """The most token positions a model takes (a transformers config or its dict), None if
    it declares none: longer inputs fail deep inside the model with a shape error."""
    get = config.get if isinstance(config, dict) else (lambda k: getattr(config, k, None))
    for key in ("max_position_embeddings", "n_positions", "max_position"):
        value = get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def register(family: Family) -> Family:
    keys = (family.name, *family.aliases)
    taken = [k for k in keys if k in _REGISTRY]
    if taken:  # check all first: a clash must not leave the family half-registered
        raise ValueError(", ".join(f"family name {k!r} registered twice" for k in taken))
    for key in keys:
        _REGISTRY[key] = family
    return family


def names() -> list[str]:
    return sorted({f.name for f in _REGISTRY.values()})


def get(name: str) -> Family:
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise UsageError(
            f"unknown model family {name!r}; accepted: {', '.join(names())}, "
            "a Hugging Face hub id, or a local model directory"
        ) from None


def for_model_type(model_type: str) -> Family:
    for fam in _REGISTRY.values():
        if model_type in fam.model_types:
            return fam
    supported = sorted({t for f in _REGISTRY.values() for t in f.model_types})
    raise UsageError(
        f"model_type {model_type!r} is not supported; edgeify handles: {', '.join(supported)}"
    )


from edgeify.families import albert, electra, gpt_neo  # noqa: E402,F401  (registration)
