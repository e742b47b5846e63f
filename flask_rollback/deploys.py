"""Where deploy records are written: what each deploy changed, so it can be undone exactly.

A record is inserted as ``running`` before the first migration and updated when the deploy
ends, so a crash leaves a record that says so (``flask db deploys --repair`` closes it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .errors import RollbackError
from .recorder import timestamp, utcnow, who

RUNNING, APPLIED, FAILED, ROLLED_BACK = "running", "applied", "failed", "rolled back"


@dataclass
class DeployRecord:
    """One deploy: heads before/after per app, the migrations applied, the gate's report."""

    id: int
    status: str
    started_at: datetime
    finished_at: datetime | None
    stored_heads_before: list[str]
    stored_heads_after: list[str]
    heads_before: dict[str, list[str]]
    heads_after: dict[str, list[str]]
    migrations: list[str]
    report: dict[str, Any] = field(default_factory=dict)
    label: str | None = None
    git_sha: str | None = None
    host: str = ""
    user: str = ""
    pid: int = 0
    backup: str | None = None
    error: str | None = None
    rolled_back_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.__dict__.items()}


JSON_COLUMNS = ("stored_heads_before", "stored_heads_after", "heads_before", "heads_after", "migrations", "report")


class DeployLog:
    """The deploy-records table of one database."""

    def __init__(self, table_name: str) -> None:
        self.table = sa.Table(
            table_name,
            sa.MetaData(),
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("started_at", timestamp(), nullable=False),
            sa.Column("finished_at", timestamp()),
            *(sa.Column(name, sa.Text, nullable=False) for name in JSON_COLUMNS),
            sa.Column("label", sa.String(255)),
            sa.Column("git_sha", sa.String(64)),
            sa.Column("host", sa.String(255), nullable=False),
            sa.Column("user", sa.String(255), nullable=False),
            sa.Column("pid", sa.Integer, nullable=False),
            sa.Column("backup", sa.Text),
            sa.Column("error", sa.Text),
            sa.Column("rolled_back_at", timestamp()),
        )

    def start(
        self,
        connection: Connection,
        *,
        stored_heads_before: list[str],
        heads_before: dict[str, list[str]],
        migrations: list[str],
        report: dict[str, Any],
        label: str | None,
        git_sha: str | None,
        backup: str | None,
    ) -> int:
        """Insert a ``running`` record in its own committed transaction; return its id."""
        host, user = who()
        with connection.begin():
            self.table.create(connection, checkfirst=True)
            result = connection.execute(
                self.table.insert().values(
                    status=RUNNING, started_at=utcnow(),
                    stored_heads_before=json.dumps(stored_heads_before),
                    stored_heads_after=json.dumps([]),
                    heads_before=json.dumps(heads_before), heads_after=json.dumps({}),
                    migrations=json.dumps(migrations), report=json.dumps(report),
                    label=label, git_sha=git_sha, host=host, user=user, pid=os.getpid(),
                    backup=backup,
                )
            )
            return int(result.inserted_primary_key[0])

    def finish(
        self,
        connection: Connection,
        deploy_id: int,
        status: str,
        *,
        stored_heads_after: list[str] | None = None,
        heads_after: dict[str, list[str]] | None = None,
        migrations: list[str] | None = None,
        error: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "error": error}
        if stored_heads_after is not None:
            values["stored_heads_after"] = json.dumps(stored_heads_after)
        if heads_after is not None:
            values["heads_after"] = json.dumps(heads_after)
        if migrations is not None:
            values["migrations"] = json.dumps(migrations)
        if connection.in_transaction():
            connection.rollback()
        with connection.begin():
            connection.execute(self.table.update().where(self.table.c.id == deploy_id).values(**values))

    def mark_rolled_back(self, connection: Connection, deploy_id: int) -> None:
        """Called inside the transaction of the rollback's last step."""
        connection.execute(
            self.table.update().where(self.table.c.id == deploy_id)
            .values(status=ROLLED_BACK, rolled_back_at=utcnow())
        )

    def all(self, connection: Connection) -> list[DeployRecord]:
        """Newest first; empty when no deploy ever ran."""
        if not sa.inspect(connection).has_table(self.table.name):
            return []
        rows = connection.execute(self.table.select().order_by(self.table.c.id.desc())).mappings()
        records = []
        for row in rows:
            data = dict(row)
            for name in JSON_COLUMNS:
                data[name] = json.loads(data[name])
            records.append(DeployRecord(**data))
        return records

    def get(self, connection: Connection, deploy_id: int) -> DeployRecord:
        for record in self.all(connection):
            if record.id == deploy_id:
                return record
        raise RollbackError(f"no deploy with id {deploy_id}; see 'flask db deploys'")

    def repair(
        self, connection: Connection, outcome: Callable[[DeployRecord], dict[str, Any]]
    ) -> list[int]:
        """Close records left ``running`` by a crash, with what the database shows they got
        done (``outcome``: finish() keywords). Only call while holding the migration lock:
        then no deploy can really be running."""
        stale = [r for r in self.all(connection) if r.status == RUNNING]
        for record in stale:
            self.finish(
                connection, record.id, FAILED,
                error="interrupted: the process ended mid-deploy", **outcome(record),
            )
        return [record.id for record in stale]
