"""Shared fixtures: tiny starter models (real tokenizer, real architecture, seconds of
training) in a per-session cache, and paths to the real files in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory):
    """Offline, a throw-away starter cache, and short starter training for every test:
    a fixed number of steps (about 7 s on 2 idle cores), so the starters the tests see are
    the same however busy the machine is; the time cap only guards against a stall."""
    cache = tmp_path_factory.mktemp("edgeify-cache")
    keys = ("HF_HUB_OFFLINE", "EDGEIFY_CACHE", "EDGEIFY_STARTER_SECONDS", "EDGEIFY_STARTER_STEPS")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(HF_HUB_OFFLINE="1", EDGEIFY_CACHE=str(cache), EDGEIFY_STARTER_SECONDS="90",
                      EDGEIFY_STARTER_STEPS="50")
    yield cache
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def starter_dir():
    """family name -> directory of its (tiny, quickly trained) starter model."""
    from edgeify import families
    from edgeify.families.starter import build_starter

    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = build_starter(families.get(name), log=lambda *_: None)
        return built[name]

    return get


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (only in the project's workspace)")
    return SHARED_DATA


def write_labelled_csv(path: Path) -> Path:
    """80 short reviews labelled positive/negative, the labels the starters know."""
    rows = ["sentence,label"] + [f"the movie was {'great' if i % 2 else 'awful'} {i},"
                                 f"{'positive' if i % 2 else 'negative'}" for i in range(80)]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture()
def labelled_csv(tmp_path) -> Path:
    return write_labelled_csv(tmp_path / "reviews.csv")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A throw-away sshd on 127.0.0.1 (tests/sshd.py). Skipped where none can run, unless
    EDGEIFY_REQUIRE_SSHD is set (CI): then a failure, so CI cannot pass by skipping."""
    from tests.sshd import REQUIRE_ENV, local_sshd, missing_reason

    why = missing_reason()
    if why:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{REQUIRE_ENV} is set but no local sshd can run: {why}")
        pytest.skip(f"no local sshd: {why} (set {REQUIRE_ENV}=1 to make this a failure)")
    with local_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server
