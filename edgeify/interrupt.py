"""Ctrl-C that cannot get lost.

A KeyboardInterrupt raised while a library is running can be swallowed by a broad
`except` inside it (seen in CI: SIGINT during an ONNX export, and the run went on to
finish and rename its output into place). The handler also sets a flag, and the pipeline
checks it at every stage boundary and before it publishes the output directory.
"""

from __future__ import annotations

import signal
import threading

_received = threading.Event()


def _handler(signum, frame):
    _received.set()
    raise KeyboardInterrupt


def install() -> None:
    """Called by the CLI; a no-op outside the main thread (signals only reach that one)."""
    _received.clear()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _handler)


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C arrived, even if something swallowed it."""
    if _received.is_set():
        raise KeyboardInterrupt
