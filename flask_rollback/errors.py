"""The one exception type users see: a message meant for a person and an exit code."""

from __future__ import annotations


class RollbackError(Exception):
    """A failure the user can act on; the CLI prints it as one line and exits non-zero.

    ``message`` says what is wrong and what to do; ``exit_code`` is documented in the README.
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message
