"""Where partly applied migrations are recorded, and resolved.

On a backend whose DDL commits at once (MariaDB/MySQL) a migration that fails part-way leaves the
statements that ran in place. The version table still names the last complete migration; a row
here (the applied log's companion table, ``<log table>_partial``) names the migration, the
direction, the statements the database committed and the error. While a row is unresolved every
command that changes the schema refuses; ``flask db resolve APP REV --applied | --reverted``
says which side the person made the schema match, records that and clears the refusal
(``--undo`` runs the inverses of the statements instead, when each has a safe one: undo.py).

So that a SIGKILL or a lost server between two DDL statements leaves a marker too, the row is
written *before* the step's first statement that commits at once ("running", updated with each
such statement before it runs, on a connection of its own) and deleted in the step's own
transaction when it completes. A "running" row found by a run that holds the migration lock
belongs to a process that is gone: :func:`settle_stale` turns it into a partly applied step (or
clears it when the live schema shows that nothing of it ran).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .errors import RollbackError
from .graph import Migration
from .recorder import timestamp, utcnow, who
from .undo import CannotUndo, in_place, plan_undo, read
from .wording import format_time, plural

RUNNING = "running"
FAILED = "failed"
#: The error of a step whose process ended while it ran.
GONE = "interrupted: the process running it ended (killed, or its connection to the server was lost) while it ran"


@dataclass(frozen=True)
class PartialStep:
    """A migration that failed after some of its statements were committed."""

    id: int
    app: str
    revision: str
    name: str
    direction: str
    failed_at: datetime
    statements: list[str]
    error: str
    #: RUNNING while its process runs it (or until a locked run finds it gone), else FAILED.
    state: str = FAILED
    #: Why ``resolve --undo`` would stop on the schema as it is now (``undo_checked``); None:
    #: it would run, or it was not asked.
    undo_blocked: str | None = None

    @property
    def label(self) -> str:
        return f"{self.app}.{self.name}"

    def undo_checked(self, connection: Connection) -> PartialStep:
        """This step, with whether ``resolve --undo`` would run now (``plan_undo``, which only
        reads the live schema), so the advice offers it only then."""
        try:
            plan_undo(connection, self.statements)
        except CannotUndo as exc:
            return replace(self, undo_blocked=str(exc))
        except sa.exc.SQLAlchemyError as exc:
            connection.rollback()
            return replace(self, undo_blocked=str(getattr(exc, "orig", None) or exc).strip().splitlines()[0])
        return self

    def advice(self) -> str:
        """What to do, in one clause: ``--undo`` first unless it is known to stop."""
        command = f"flask db resolve {self.app} {self.revision}"
        by_hand = (
            f"make the schema match one side by hand, then run '{command} --applied' (the schema "
            "has all of the migration's upgrade) or '--reverted' (none of it)"
        )
        if self.undo_blocked is not None:
            return f"'--undo' cannot reverse it ({self.undo_blocked}): {by_hand}"
        return f"run '{command} --undo' to reverse its committed statements, or {by_hand}"


def partial_table_name(log_table: str) -> str:
    """The companion table of the applied log (at most 63 characters, like every identifier)."""
    return f"{log_table[:55]}_partial"


@cache
def _table(name: str) -> sa.Table:
    """The table of partly applied steps, made once per process and never changed."""
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("app", sa.String(64), nullable=False),
        sa.Column("revision", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("started_at", timestamp(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("failed_at", timestamp(), nullable=True),
        sa.Column("statements", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("resolved_at", timestamp(), nullable=True),
        sa.Column("resolution", sa.String(16), nullable=True),
    )


class PartialLog:
    """Reads and writes the partly applied steps of one database."""

    def __init__(self, log_table: str) -> None:
        self.table = _table(partial_table_name(log_table))
        #: Built once: a run on MariaDB/MySQL writes a marker per step (compiled once, cached).
        self._insert = self.table.insert()

    @property
    def name(self) -> str:
        return self.table.name

    def ensure(self, connection: Connection) -> None:
        """Create the table (committed) if it does not exist."""
        if connection.in_transaction():
            connection.rollback()
        with connection.begin():
            self.table.create(connection, checkfirst=True)

    def begin(
        self, connection: Connection, migration: Migration, direction: str, started_at: datetime,
        statements: list[str],
    ) -> int:
        """The marker of a step about to run ``statements[-1]`` (autocommit ``connection``)."""
        host, user = who()
        result = connection.execute(
            self._insert,
            {
                "app": migration.app, "revision": migration.revision, "name": migration.name,
                "direction": direction, "started_at": started_at, "state": RUNNING,
                "statements": json.dumps(statements), "error": "", "host": host, "user": user,
            },
        )
        key = result.inserted_primary_key
        assert key is not None  # an autoincrement id, always returned on insert
        return int(key[0])

    def progress(self, connection: Connection, row: int, statements: list[str]) -> None:
        """The running step is about to run ``statements[-1]``; the ones before it ran."""
        connection.execute(
            self.table.update().where(self.table.c.id == row).values(statements=json.dumps(statements))
        )

    def fail(self, connection: Connection, row: int, statements: list[str], error: str) -> None:
        """The running step failed with ``statements`` committed (the caller commits)."""
        connection.execute(
            self.table.update().where(self.table.c.id == row)
            .values(state=FAILED, failed_at=utcnow(), statements=json.dumps(statements), error=error)
        )

    def clear(self, connection: Connection, row: int) -> None:
        """The step completed, or nothing of it stayed (within the caller's transaction)."""
        connection.execute(self.table.delete().where(self.table.c.id == row))

    def record(
        self, connection: Connection, migration: Migration, direction: str, started_at: datetime,
        statements: list[str], error: str,
    ) -> None:
        """One row, committed at once (the failed step's transaction is already rolled back)."""
        self.ensure(connection)
        with connection.begin():
            row = self.begin(connection, migration, direction, started_at, statements)
            self.fail(connection, row, statements, error)

    def is_empty(self, connection: Connection) -> bool:
        """No row at all (or no table); within the caller's transaction."""
        if not sa.inspect(connection).has_table(self.table.name):
            return False
        return connection.execute(sa.select(sa.func.count()).select_from(self.table)).scalar() == 0

    def unresolved(self, connection: Connection) -> list[PartialStep]:
        """The rows not resolved yet, oldest first; none when the table does not exist (on
        MariaDB/MySQL it exists only while it holds rows, see executor.py)."""
        if not sa.inspect(connection).has_table(self.table.name):
            connection.rollback()
            return []
        t = self.table
        try:
            rows = connection.execute(
                sa.select(t.c.id, t.c.app, t.c.revision, t.c.name, t.c.direction, t.c.started_at,
                          t.c.failed_at, t.c.statements, t.c.error, t.c.state)
                .where(t.c.resolved_at.is_(None)).order_by(t.c.id)
            ).all()
        except sa.exc.ProgrammingError:  # dropped since, empty, by the run that held the lock
            connection.rollback()
            if sa.inspect(connection).has_table(self.table.name):
                raise
            rows = []
        connection.rollback()
        return [
            PartialStep(row.id, row.app, row.revision, row.name, row.direction,
                        row.failed_at or row.started_at, json.loads(row.statements), row.error,
                        row.state)
            for row in rows
        ]

    def mark_resolved(self, connection: Connection, step: PartialStep, resolution: str) -> None:
        """Within the caller's transaction."""
        connection.execute(
            self.table.update().where(self.table.c.id == step.id)
            .values(resolved_at=utcnow(), resolution=resolution)
        )


def settle_stale(log: PartialLog, connection: Connection) -> None:
    """Under the migration lock: a RUNNING row belongs to a process that is gone (it held the
    lock while it ran). Its statements but the last committed; the last one may have run: the
    live schema says whether. When nothing ran the row is cleared (the server rolled the rest
    back); otherwise it becomes a partly applied step with what the schema shows."""
    for step in log.unresolved(connection):
        if step.state != RUNNING:
            continue
        ran = list(step.statements)
        last = read(ran[-1]) if ran else None
        if last is None and ran:
            note = "; the live schema cannot tell whether its last statement ran (listed as committed)"
        elif last is not None and not in_place(connection, last):
            ran.pop()
            note = "; the live schema shows its last statement did not run"
        else:
            note = "; the live schema shows its last statement ran" if ran else ""
        with connection.begin():
            if ran:
                log.fail(connection, step.id, ran, GONE + note)
            else:
                log.clear(connection, step.id)


def refuse_if_partial(log: PartialLog, connection: Connection) -> None:
    """Stop a command that would change the schema while a step is partly applied."""
    found = log.unresolved(connection)
    if not found:
        return
    first = found[0].undo_checked(connection)
    more = f" (and {len(found) - 1} more: flask db showmigrations)" if len(found) > 1 else ""
    raise RollbackError(
        f"app {first.app} needs attention: migration {first.label} ({first.direction}) was "
        f"partly applied at {format_time(first.failed_at)} ("
        f"{plural(len(first.statements), 'statement')} committed before it stopped: {first.error})"
        f"{more}; {first.advice()}; nothing was changed"
    )
