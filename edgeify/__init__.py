"""edgeify: make transformers small and fast for CPUs and edge devices, and prove it."""

from __future__ import annotations

__all__ = ["run", "RunConfig"]


def run(model: str, **options) -> dict:
    """Python twin of `edgeify MODEL [options]`; returns the report as a dict.

    Options are RunConfig's fields, e.g. `edgeify.run("electra", int8=True, data="x.csv")`.
    """
    from edgeify.config import RunConfig
    from edgeify.pipeline import run as _run

    log_fn = options.pop("log_fn", print)
    if isinstance(options.get("formats"), str):
        options["formats"] = tuple(options["formats"].split(","))
    return _run(RunConfig(model=model, **options), log_fn=log_fn)


def __getattr__(name):
    if name == "RunConfig":
        from edgeify.config import RunConfig

        return RunConfig
    raise AttributeError(name)
