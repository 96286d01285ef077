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
