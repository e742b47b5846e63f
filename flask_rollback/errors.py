"""The one exception type users see, and the exit codes of every command (docs/exit-codes.md).

A boot script that retries ``flask db upgrade`` can tell "try again later" (2: could not run,
e.g. the database is unreachable or the lock is busy) from "a person must decide" (6: refused
to protect data) and from a real error (1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .dataloss import DataLossReport

#: Done, or nothing to do.
EXIT_OK = 0
#: An error: a migration failed, a bad target, a refused plan (cascade, irreversible step).
EXIT_ERROR = 1
#: Usage error, or the command could not run (database unreachable, lock timeout, no scratch copy:
#: the scratch database could not be created or the schema not copied into it).
EXIT_COULD_NOT_RUN = 2
#: ``check`` / ``makemigrations --check``: the models differ from the migrations.
EXIT_MODELS_DIFFER = 3
#: ``check``: the database is behind its migrations.
EXIT_DATABASE_BEHIND = 4
#: ``check``: an app has more than one head.
EXIT_MULTIPLE_HEADS = 5
#: Refused to protect data: the plan (or a step, counted again as it ran) would destroy data
#: that ``--allow-data-loss`` did not accept and ``--archive`` did not keep.
EXIT_REFUSED = 6
#: ``check``: a schema snapshot does not match the migrations (``flask db snapshot`` makes it again).
EXIT_SNAPSHOT_STALE = 7
#: Stopped by SIGTERM (128 + 15): the running migration was rolled back, the scratch database removed.
EXIT_TERMINATED = 143
#: Stopped by Ctrl-C (SIGINT, 128 + 2): the same cleanup as for SIGTERM.
EXIT_INTERRUPTED = 130


class RollbackError(Exception):
    """A failure the user can act on; the CLI prints it as one line and exits non-zero.

    ``message`` says what is wrong and what to do; ``exit_code`` is one of the codes above.
    """

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class DataLossError(RollbackError):
    """A plan (or a step, counted again as it ran) refused because it would destroy existing
    data; ``report`` says where. Exit code 6: a person must decide, retrying will not help."""

    def __init__(self, report: DataLossReport, message: str) -> None:
        super().__init__(message, exit_code=EXIT_REFUSED)
        self.report = report
