"""Where a run's output goes: a staging dir renamed into place, and the checkpoints that
must outlive a failed run (so --resume can continue it)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from edgeify.errors import UsageError


def default_out_dir(model: str) -> Path:
    name = Path(model).name if Path(model).expanduser().is_dir() else model.replace("/", "--")
    return Path("edgeify-out") / name


def check_out_dir(config) -> Path:
    out = Path(config.out_dir) if config.out_dir else default_out_dir(config.model)
    if out.exists() and not config.force:
        raise UsageError(f"output directory {out} already exists; use --force to overwrite it")
    if out.exists() and not out.is_dir():
        raise UsageError(f"output path {out} exists and is not a directory")
    return out


class Staging:
    """A temp directory beside `final`, renamed onto it on success, removed otherwise."""

    def __init__(self, final: Path):
        self.final = final

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.partial-", dir=self.final.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        if self.final.exists():
            old = self.final.with_name(f".{self.final.name}.old-{os.getpid()}")
            os.replace(self.final, old)
            os.replace(self.tmp, self.final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.final)
        return False


def checkpoint_dir(final: Path) -> Path:
    """Beside the output (not inside its staging dir): it must outlive a failed run."""
    return final.with_name(f"{final.name}.checkpoints")
