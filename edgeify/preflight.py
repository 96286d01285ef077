"""Every check of a run that needs no model, made before one is loaded or built: a typo
must not cost a download or a starter build first."""

from __future__ import annotations

from edgeify import families, staging
from edgeify.build import is_decoder_run
from edgeify.calibration.datasets import read_data
from edgeify.config import RunConfig
from edgeify.errors import UsageError
from edgeify.families import loader
from edgeify.targets import remote


def check_before_loading(config: RunConfig, backends, log_fn) -> tuple:
    """Returns the output path, the --device, and the user's data sources (None when they
    fall back to the model's default, read once it is loaded)."""
    bad = [n for n in (config.seq_len, *config.extra_seq_lens) if n < 8]
    if bad:
        raise UsageError(f"--seq-len must be at least 8, got {bad[0]}")
    final = staging.check_out_dir(config, log_fn)
    device = (remote.Device.parse(config.device, python=config.device_python, key=config.device_key,
                                  known_hosts=config.device_known_hosts)
              if config.device else None)  # a malformed --device fails before any work
    family, model_config, source = loader.peek_config(config.model)
    longest = max((config.seq_len, *config.extra_seq_lens))
    limit = families.position_limit(model_config)
    if limit and longest > limit:
        raise UsageError(f"--seq-len {longest} is longer than the {limit} positions {config.model} has "
                         f"(its config, {source}); accepted: 8 to {limit}")
    if config.max_length and family.cached_decoder and config.max_length < longest:
        raise UsageError(f"--max-length {config.max_length} is shorter than --seq-len {longest}: the "
                         "decoders are evaluated on windows of --seq-len tokens, which must fit the cache")
    return final, device, read_data(family, config, default=None, static_int8=static_int8(config, family, backends))


def static_int8(config: RunConfig, family, backends) -> bool:
    """Whether a quantizer that needs calibration runs (cached decoders' int8 is weight-only)."""
    return config.int8 and any(not is_decoder_run(b, family) for b in backends)
