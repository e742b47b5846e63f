"""Where partly applied migrations are recorded, and resolved.

On a backend whose DDL commits at once (MariaDB/MySQL) a migration that fails part-way leaves the
statements that ran in place. The version table still names the last complete migration; a row
here (the applied log's companion table, ``<log table>_partial``) names the migration, the
direction, the statements the database committed and the error. While a row is unresolved every
command that changes the schema refuses; ``flask db resolve APP REV --applied | --reverted``
says which side the person made the schema match, records that and clears the refusal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .errors import RollbackError
from .graph import Migration
from .recorder import timestamp, utcnow, who


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

    @property
    def label(self) -> str:
        return f"{self.app}.{self.name}"

    def advice(self) -> str:
        """What to do, in one clause."""
        return (
            f"make the schema match one side by hand, then run 'flask db resolve {self.app} "
            f"{self.revision} --applied' (all of the migration's {self.direction} changes are in "
            "place) or '--reverted' (none of them are)"
        )


def partial_table_name(log_table: str) -> str:
    """The companion table of the applied log (at most 63 characters, like every identifier)."""
    return f"{log_table[:55]}_partial"


class PartialLog:
    """Reads and writes the partly applied steps of one database."""

    def __init__(self, log_table: str) -> None:
        self.table = sa.Table(
            partial_table_name(log_table),
            sa.MetaData(),
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("app", sa.String(64), nullable=False),
            sa.Column("revision", sa.String(64), nullable=False),
            sa.Column("name", sa.String(255), nullable=False),
            sa.Column("direction", sa.String(8), nullable=False),
            sa.Column("started_at", timestamp(), nullable=False),
            sa.Column("failed_at", timestamp(), nullable=False),
            sa.Column("statements", sa.Text, nullable=False),
            sa.Column("error", sa.Text, nullable=False),
            sa.Column("host", sa.String(255), nullable=False),
            sa.Column("user", sa.String(255), nullable=False),
            sa.Column("resolved_at", timestamp(), nullable=True),
            sa.Column("resolution", sa.String(16), nullable=True),
        )

    @property
    def name(self) -> str:
        return self.table.name

    def record(
        self, connection: Connection, migration: Migration, direction: str, started_at: datetime,
        statements: list[str], error: str,
    ) -> None:
        """One row, committed at once (the failed step's transaction is already rolled back)."""
        if connection.in_transaction():
            connection.rollback()
        host, user = who()
        with connection.begin():
            self.table.create(connection, checkfirst=True)
        with connection.begin():
            connection.execute(
                self.table.insert().values(
                    app=migration.app, revision=migration.revision, name=migration.name,
                    direction=direction, started_at=started_at, failed_at=utcnow(),
                    statements=json.dumps(statements), error=error, host=host, user=user,
                )
            )

    def unresolved(self, connection: Connection) -> list[PartialStep]:
        """The rows not resolved yet, oldest first; none when the table does not exist."""
        if not sa.inspect(connection).has_table(self.table.name):
            connection.rollback()
            return []
        t = self.table
        rows = connection.execute(
            sa.select(t.c.id, t.c.app, t.c.revision, t.c.name, t.c.direction, t.c.failed_at,
                      t.c.statements, t.c.error)
            .where(t.c.resolved_at.is_(None)).order_by(t.c.id)
        ).all()
        connection.rollback()
        return [
            PartialStep(row.id, row.app, row.revision, row.name, row.direction, row.failed_at,
                        json.loads(row.statements), row.error)
            for row in rows
        ]

    def mark_resolved(self, connection: Connection, step: PartialStep, resolution: str) -> None:
        """Within the caller's transaction."""
        connection.execute(
            self.table.update().where(self.table.c.id == step.id)
            .values(resolved_at=utcnow(), resolution=resolution)
        )


def refuse_if_partial(log: PartialLog, connection: Connection) -> None:
    """Stop a command that would change the schema while a step is partly applied."""
    found = log.unresolved(connection)
    if not found:
        return
    first = found[0]
    more = f" (and {len(found) - 1} more: flask db showmigrations)" if len(found) > 1 else ""
    raise RollbackError(
        f"app {first.app} needs attention: migration {first.label} ({first.direction}) was "
        f"partly applied at {first.failed_at:%Y-%m-%d %H:%M:%S} ({len(first.statements)} "
        f"statement(s) committed before it failed){more}; {first.advice()}; nothing was changed"
    )
