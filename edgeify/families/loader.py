"""Resolve what the user typed (family name, hub id, local directory) to a loaded model.

For a family name the real hub checkpoint is tried first (users have internet); when the
hub cannot be reached and nothing is cached, the offline starter is built instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgeify import families
from edgeify.errors import UsageError

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    family: families.Family
    source: str            # "hub" | "local" | "starter"
    model_id: str
    starter: dict | None = None

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def _family_of_dir(path: Path) -> families.Family:
    import json

    cfg = path / "config.json"
    if not cfg.exists():
        raise UsageError(f"{path}: not a Hugging Face model directory (no config.json)")
    try:
        model_type = json.loads(cfg.read_text()).get("model_type")
    except ValueError as e:
        raise UsageError(f"{cfg}: not valid JSON ({e})") from None
    if not model_type:
        raise UsageError(f"{cfg}: has no model_type")
    return families.for_model_type(model_type)


def peek_family(spec: str) -> families.Family | None:
    """The family a model spec will resolve to, without loading weights (None: a hub id)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return _family_of_dir(path)
    try:
        return families.get(spec)
    except UsageError:
        if "/" not in spec and not path.exists():
            raise
        return None


def load_local(path: Path) -> LoadedModel:
    from transformers import AutoTokenizer

    from edgeify.families.starter import starter_info

    family = _family_of_dir(path)
    try:
        model = family.load_model(str(path))
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: cannot load {family.name} model or tokenizer ({str(e).splitlines()[0][:200]})") from None
    info = starter_info(path)
    return LoadedModel(model, tokenizer, family, "starter" if info else "local",
                       str(path), starter=info)


def _load_hub(model_id: str, family: families.Family | None) -> LoadedModel:
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(model_id)
    family = family or families.for_model_type(config.model_type)
    model = family.load_model(model_id)
    tokenizer = AutoTokenizer.from_pretrained(model_id)
    return LoadedModel(model, tokenizer, family, "hub", model_id)


def resolve(spec: str, log_fn: Callable[[str], None] = print, allow_starter: bool = True) -> LoadedModel:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-tensor "Loading weights" bars drown our log
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_local(path)
    try:
        family = families.get(spec)
    except UsageError:
        family = None
    if family is not None:
        try:
            return _load_hub(family.default_checkpoint, family)
        except OSError as e:
            if not allow_starter:
                raise UsageError(f"cannot load {family.default_checkpoint} from the hub ({e})") from None
            log.info("hub load of %s failed: %s", family.default_checkpoint, e)
            log_fn(f"Hub checkpoint {family.default_checkpoint} is not reachable and not cached; "
                   f"using the offline STARTER {family.name} model instead.")
            from edgeify.families.starter import build_starter

            return load_local(build_starter(family, log=log_fn))
    if path.exists():
        raise UsageError(f"{spec}: a file, not a model; give a model directory, a hub id, "
                         f"or a family ({', '.join(families.names())})")
    if "/" not in spec:
        families.get(spec)  # raises the "unknown model family" usage error
    try:
        return _load_hub(spec, None)
    except OSError as e:
        raise UsageError(
            f"unknown model {spec!r}: not a family ({', '.join(families.names())}), not a local "
            f"directory, and not loadable from the hub ({str(e).splitlines()[0][:160]})"
        ) from None


def peek_size(spec: str) -> tuple[families.Family, int, str]:
    """Family, parameter count and where the config came from, without loading weights
    (for `--plan`): a local dir's config, the hub's (cached or online), else the starter's."""
    import torch
    from transformers import AutoConfig

    path = Path(spec).expanduser()
    family = peek_family(spec)
    config, source = None, ""
    if path.is_dir():
        config, source = AutoConfig.from_pretrained(str(path)), str(path)
    else:
        model_id = family.default_checkpoint if family is not None else spec
        try:
            config, source = AutoConfig.from_pretrained(model_id), model_id
        except OSError:
            if family is None:
                raise UsageError(f"unknown model {spec!r}: not a family ({', '.join(families.names())}), "
                                 "not a local directory, and its config is not on the hub or cached") from None
            config_cls, _ = family.transformers_classes()
            config, source = config_cls(**family.starter_config), "offline starter (hub not reachable)"
    family = family or families.for_model_type(config.model_type)
    _, model_cls = family.transformers_classes()
    with torch.device("meta"):
        params = sum(p.numel() for p in model_cls(config).parameters())
    return family, params, source
