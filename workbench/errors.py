"""The one exception type for bad input from a user."""

from __future__ import annotations


class WorkbenchError(ValueError):
    """Bad input from a user (a problem file, a config, a model name); the message alone says what to fix.

    The CLI and the app catch it and show its one line (exit code 2, no traceback). Anything else
    raised by the library is a bug and keeps its traceback.
    """

    def __init__(self, message: str) -> None:
        if "\n" in message:
            message = " ".join(message.split())
        super().__init__(message)
