"""Archives kept by --archive runs: list, restore, drop."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..archive import ArchiveLog, ArchiveRecord, RestoreResult
from ..database import mask
from ..errors import RollbackError
from ..interrupts import Interrupted
from ..lock import Announce
from ..project import Project
from .context import open_database

# -- archives ---------------------------------------------------------------------------------


def archives(project: Project) -> list[ArchiveRecord]:
    """The archives kept by ``--archive`` runs, newest first."""
    with project.connect() as connection:
        return ArchiveLog(project.settings.archive_table).all(connection)


def restore(
    project: Project,
    name: str,
    *,
    lock_timeout: float | None = None,
    announce: Announce | None = None,
) -> RestoreResult:
    """Write an archive's values back by primary key (in one transaction, batch by batch so a
    signal stops it within one batch), then drop it.

    A value the column no longer accepts (an enum re-created without its label, a longer string
    than the new length) fails the whole transaction: said as such, since the archive is kept."""
    log = ArchiveLog(project.settings.archive_table)
    try:
        with _archive_transaction(project, lock_timeout, announce) as connection:
            return log.restore(connection, log.get(connection, name))
    except Interrupted as exc:
        exc.outcome.append(f"the restore of {name} was rolled back: nothing was written, the archive is kept")
        raise
    except sa.exc.DBAPIError as exc:
        lines = str(exc.orig).strip().splitlines() or [type(exc.orig).__name__]
        raise RollbackError(
            f"cannot restore {name}: {mask(lines[0], project.url)}; nothing was written, "
            "the archive is kept"
        ) from exc


def drop_archive(
    project: Project,
    name: str,
    *,
    lock_timeout: float | None = None,
    announce: Announce | None = None,
) -> ArchiveRecord:
    """Discard an archive: its table and its registry row."""
    log = ArchiveLog(project.settings.archive_table)
    with _archive_transaction(project, lock_timeout, announce) as connection:
        record = log.get(connection, name)
        log.drop(connection, record)
        return record


@contextmanager
def _archive_transaction(
    project: Project, lock_timeout: float | None, announce: Announce | None
) -> Iterator[Connection]:
    """One transaction under the migration lock: archives change the database too."""
    with open_database(project, lock=True, lock_timeout=lock_timeout, announce=announce) as (
        connection,
        _planner,
    ):
        with connection.begin():
            yield connection
