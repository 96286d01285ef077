"""Ctrl-C that cannot get lost.

A KeyboardInterrupt raised while a library is running can be swallowed by a broad
`except` inside it (seen in CI: SIGINT during an ONNX export, and the run went on to
finish and rename its output into place). The handler also sets a flag, and the pipeline
checks it at every stage boundary and before it publishes the output directory.
"""

from __future__ import annotations

import contextlib
import signal
import threading

_received = threading.Event()


def _handler(signum, frame):
    _received.set()
    raise KeyboardInterrupt


@contextlib.contextmanager
def installed():
    """The handler for the duration of a CLI call, then the previous one again (the CLI can
    be called in-process, e.g. by tests). A no-op outside the main thread, which is the
    only one signals reach."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C arrived, even if something swallowed it."""
    if _received.is_set():
        raise KeyboardInterrupt
