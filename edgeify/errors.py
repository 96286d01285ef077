"""Error types that the CLI turns into one-line messages and exit codes.

UsageError: the user asked for something we cannot accept (exit 2).
EdgeifyError: a well-understood failure while doing the work (exit 1).
"""


class EdgeifyError(Exception):
    """A failure with a message that is already fit to show a user."""

    exit_code = 1


class UsageError(EdgeifyError):
    """Bad model name, bad option combination, bad data file: the user can fix it."""

    exit_code = 2


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (kill, `timeout`, `docker stop`, CI cancellation, a closed SSH
    session): ends a run exactly like Ctrl-C, so every cleanup that handles one handles both."""

    def __init__(self, signum: int):
        import signal

        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


def first_line(e: BaseException, limit: int = 240, skip: tuple[str, ...] = ()) -> str:
    """An exception's first non-empty line, for a one-line message: runtimes put their call
    context or a traceback after it (`skip`: prefixes of lines that are only context)."""
    lines = [ln for ln in str(e).splitlines() if ln.strip() and not ln.startswith(skip)]
    return (lines[0] if lines else type(e).__name__)[:limit]
