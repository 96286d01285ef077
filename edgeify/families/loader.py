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
        data = json.loads(cfg.read_text(encoding="utf-8", errors="replace"))
    except ValueError as e:
        raise UsageError(f"{cfg}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{cfg}: not a model config (a JSON {type(data).__name__}, expected an object)")
    model_type = data.get("model_type")
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


def _first_line(e: BaseException) -> str:
    """The gist of a library's error, on one line (some put the cause on the second)."""
    lines = [ln.strip().rstrip(":") for ln in str(e).splitlines() if ln.strip()]
    return "; ".join(lines[:2])[:200] or type(e).__name__


def local_config(path: Path):
    """The transformers config of a local model directory. A config.json that parses but
    holds a bad value fails in transformers' validation with a message naming no file."""
    from transformers import AutoConfig

    _family_of_dir(path)  # no config.json, bad JSON, no or unknown model_type
    try:
        return AutoConfig.from_pretrained(str(path))
    except Exception as e:  # noqa: BLE001 - ValueError, TypeError, huggingface_hub's StrictDataclassError
        raise UsageError(f"{path / 'config.json'}: not a valid model config ({_first_line(e)})") from None


def local_tokenizer(path: Path):
    """The tokenizer of a local model directory; a truncated tokenizer.json is a JSON error."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: cannot load its tokenizer ({_first_line(e)})") from None


def check_weights(path: Path) -> None:
    """Refuse a truncated or garbled weights file (an interrupted download or copy), naming
    it: safetensors and torch fail deep inside with a message naming no file. Only the
    headers are read (safetensors checks its data covers the file; a torch zip's central
    directory sits at its end), so this is cheap; same-size corruption is not detectable."""
    import zipfile

    from safetensors import safe_open

    for f in sorted(path.glob("*.safetensors")):
        try:
            with safe_open(str(f), framework="pt"):
                pass
        except Exception as e:  # noqa: BLE001 - SafetensorError, OSError
            raise UsageError(f"{f} is corrupt or truncated ({_first_line(e)}); re-download or re-save it") from None
    for f in sorted(path.glob("pytorch_model*.bin")):
        with open(f, "rb") as fh:
            is_zip = fh.read(2) == b"PK"  # torch.save's format since 1.6; older pickles are not checked
        if is_zip:
            try:
                zipfile.ZipFile(f).close()
            except (zipfile.BadZipFile, OSError) as e:
                raise UsageError(f"{f} is corrupt or truncated ({e}); re-download or re-save it") from None


def load_local(path: Path) -> LoadedModel:
    from edgeify.families.starter import starter_info

    family = _family_of_dir(path)
    local_config(path)
    check_weights(path)
    try:
        model = family.load_model(str(path))
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: cannot load {family.name} model ({_first_line(e)})") from None
    tokenizer = local_tokenizer(path)
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


def peek_config(spec: str) -> tuple[families.Family, Any, str]:
    """Family, transformers config and where the config came from, without loading weights:
    a local dir's config, the hub's (cached or online), else the offline starter's."""
    from transformers import AutoConfig

    path = Path(spec).expanduser()
    family = peek_family(spec)
    if path.is_dir():
        return family, local_config(path), str(path)
    model_id = family.default_checkpoint if family is not None else spec
    try:
        config = AutoConfig.from_pretrained(model_id)
    except OSError:
        if family is None:
            raise UsageError(f"unknown model {spec!r}: not a family ({', '.join(families.names())}), "
                             "not a local directory, and its config is not on the hub or cached") from None
        config_cls, _ = family.transformers_classes()
        return family, config_cls(**family.starter_config), "offline starter (hub not reachable)"
    return family or families.for_model_type(config.model_type), config, model_id


def peek_size(spec: str) -> tuple[families.Family, int, str]:
    """Family, parameter count and where the config came from, without loading weights (`--plan`)."""
    import torch

    family, config, source = peek_config(spec)
    _, model_cls = family.transformers_classes()
    with torch.device("meta"):
        params = sum(p.numel() for p in model_cls(config).parameters())
    return family, params, source
