"""Where the applied log is written and the stored heads are read.

The log has one row per migration applied or reverted, written inside that migration's
transaction, so the log and the schema can never disagree. The version table is written by
Alembic, through statements compiled once per run (``VersionWrites``).
"""

from __future__ import annotations

import getpass
import hashlib
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BinaryExpression, ColumnClause

from .graph import Migration
from .settings import Settings


def timestamp() -> sa.types.TypeEngine:
    """A timestamp column type with microseconds everywhere (MariaDB's DATETIME keeps whole
    seconds unless told otherwise, which would reorder the log and zero short durations)."""
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(moment: datetime) -> datetime:
    """A time read back from the database, in UTC: SQLite and MariaDB return the UTC time
    written without its zone."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def archive_prefix(archive_table: str) -> str:
    """Archive tables are named ``<archive registry>_...`` (see archive.py)."""
    return f"{archive_table}_"


@cache
def who() -> tuple[str, str]:
    """(host, user) of this process: asked once, written on every log row."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return socket.gethostname(), user


@dataclass(frozen=True)
class LogEntry:
    """A row of the applied log."""

    id: int
    app: str
    revision: str
    name: str
    direction: str
    fake: bool
    started_at: datetime
    finished_at: datetime
    duration_ms: float
    sha256: str
    host: str
    user: str


@cache
def _tables(log_table: str, version_table: str) -> tuple[sa.Table, sa.Table]:
    """The applied log and Alembic's version table of these names, made once per process (a
    test suite makes a Recorder per command) and never changed."""
    metadata = sa.MetaData()
    log = sa.Table(
        log_table,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("app", sa.String(64), nullable=False),
        sa.Column("revision", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("fake", sa.Boolean, nullable=False, default=False),
        sa.Column("started_at", timestamp(), nullable=False),
        sa.Column("finished_at", timestamp(), nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
    )
    version = sa.Table(
        version_table,
        metadata,
        sa.Column("version_num", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("version_num", name=f"{version_table}_pkc"),
    )
    return log, version


class Recorder:
    """Reads and writes the version table and the applied log of one database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.log, self.version = _tables(settings.log_table, settings.version_table)
        #: Built once: a run writes one row per step, and a statement built per row is compiled
        #: per row (its parameters as bind values keep SQLAlchemy's compiled cache warm).
        self._log_insert = self.log.insert()

    @property
    def own_tables(self) -> set[str]:
        """Tables autogenerate must never touch."""
        settings = self.settings
        return {
            settings.log_table, settings.version_table, settings.lock_table,
            settings.deploy_table, settings.archive_table, f"{settings.log_table[:55]}_partial",
        }

    def is_own_table(self, name: str) -> bool:
        """One of the tables above, or an archive table (named after the archive registry)."""
        return name in self.own_tables or name.startswith(archive_prefix(self.settings.archive_table))

    def stored_heads(self, connection: Connection) -> tuple[str, ...]:
        """The rows of Alembic's version table, read as Alembic reads them (none when the table
        is absent), without loading Alembic's runtime for a command that only looks."""
        name = self.settings.version_table
        if not connection.dialect.has_table(connection, name, None):
            return ()
        version = sa.table(name, sa.column("version_num"))
        return tuple(row[0] for row in connection.execute(sa.select(version.c.version_num)))

    def ensure_log(self, connection: Connection) -> None:
        with connection.begin_nested() if connection.in_transaction() else connection.begin():
            self.log.create(connection, checkfirst=True)

    def write(
        self,
        connection: Connection,
        migration: Migration,
        direction: str,
        started_at: datetime,
        fake: bool = False,
        sha256: str | None = None,
    ) -> datetime:
        """One log row, finished now; ``sha256`` is the file's digest when already known (the
        revision index's), else the file is read. Returns when it finished."""
        finished = utcnow()
        host, user = who()
        connection.execute(
            self._log_insert,
            {
                "app": migration.app,
                "revision": migration.revision,
                "name": migration.name,
                "direction": direction,
                "fake": fake,
                "started_at": started_at,
                "finished_at": finished,
                "duration_ms": (finished - started_at).total_seconds() * 1000,
                "sha256": sha256 or file_sha256(migration.path),
                "host": host,
                "user": user,
            },
        )
        return finished

    def set_heads(self, connection: Connection, heads: tuple[str, ...]) -> None:
        """Rewrite the version table (stamp); caller owns the transaction."""
        self.version.create(connection, checkfirst=True)
        connection.execute(self.version.delete())
        if heads:
            connection.execute(self.version.insert(), [{"version_num": h} for h in heads])

    def entries(self, connection: Connection) -> list[LogEntry]:
        """All rows, oldest first; empty when the log does not exist yet."""
        if not sa.inspect(connection).has_table(self.settings.log_table):
            return []
        rows = connection.execute(self.log.select().order_by(self.log.c.id)).mappings()
        return [LogEntry(**row) for row in rows]

    def newest(self, connection: Connection, app: str | None = None, limit: int | None = None) -> list[LogEntry]:
        """Rows newest first (``app``'s only, at most ``limit``); empty when the log does not
        exist yet."""
        if not connection.dialect.has_table(connection, self.settings.log_table, None):
            return []
        query = self.log.select().order_by(self.log.c.id.desc()).limit(limit)
        if app is not None:
            query = query.where(self.log.c.app == app)
        return [LogEntry(**row) for row in connection.execute(query).mappings()]

    def applied_times(
        self, connection: Connection, known: Mapping[str, Migration] | None = None
    ) -> dict[str, datetime]:
        """The revisions the log says are applied, each with when it was last applied, in the
        order they were (oldest first); empty when the log does not exist yet.

        One pass over three columns, keeping no rows: every command that plans reads the whole
        log, and a history of 10,000 migrations has a log at least that long. A revision of
        ``known`` (the graph's migrations) is keyed by the graph's own string: no second copy
        of each id is kept."""
        if not connection.dialect.has_table(connection, self.settings.log_table, None):
            return {}
        known = known or {}
        log = self.log.c
        query = sa.select(log.revision, log.direction, log.finished_at).order_by(log.id)
        times: dict[str, datetime] = {}
        for revision, direction, finished_at in connection.execute(query):
            migration = known.get(revision)
            if migration is not None:
                revision = migration.revision
            times.pop(revision, None)  # re-inserted at the end: the order of last application
            if direction == "up":
                times[revision] = finished_at
        return times

    def faked(self, connection: Connection) -> set[str]:
        """Revisions recorded as applied without running (a stamp, ``--fake-initial``): their
        latest log row is a fake ``up``."""
        if not connection.dialect.has_table(connection, self.settings.log_table, None):
            return set()
        log = self.log.c
        latest = sa.select(sa.func.max(log.id)).group_by(log.revision)
        query = sa.select(log.revision).where(log.id.in_(latest), log.fake == sa.true(), log.direction == "up")
        return set(connection.execute(query).scalars())

    def logged_names(self, connection: Connection, revisions: Sequence[str]) -> dict[str, str]:
        """``APP.NAME`` of revisions as the log last recorded them (to name revisions that no
        file provides any more)."""
        if not revisions or not connection.dialect.has_table(connection, self.settings.log_table, None):
            return {}
        log = self.log.c
        query = sa.select(log.revision, log.app, log.name).where(log.revision.in_(list(revisions)))
        return {revision: f"{app}.{name}" for revision, app, name in connection.execute(query.order_by(log.id))}


class VersionWrites:
    """Alembic's version-table writes, each sent through a statement compiled once per run.

    Alembic (``HeadMaintainer``) builds a new INSERT, UPDATE or DELETE at every step with the
    revision ids as SQL literals, so SQLAlchemy compiles each one anew: the largest cost of a
    step besides its own DDL. While ``listening``, a statement of exactly that shape on the
    version table runs as the same statement with bound parameters instead (one compiled form
    per kind, reused). Alembic still decides what to write and checks the rows it changed;
    any other statement, or one whose shape is not recognised, runs as it was built."""

    def __init__(self, version_table: str) -> None:
        self.version_table = version_table
        #: (kind, Alembic's version Table) -> the statement with bound parameters.
        self._statements: dict[tuple[str, sa.Table], sa.Executable] = {}

    @contextmanager
    def listening(self, connection: Connection) -> Iterator[None]:
        sa.event.listen(connection, "before_execute", self._swap, retval=True)
        try:
            yield
        finally:
            sa.event.remove(connection, "before_execute", self._swap)

    def _swap(
        self, conn: Connection, clause: object, multiparams: object, params: object, options: object
    ) -> tuple[object, object, object]:
        found = None if multiparams or params else self._revisions(clause)
        if found is None:
            return clause, multiparams, params
        kind, table, values = found
        statement = self._statements.get((kind, table))
        if statement is None:
            statement = self._statements[(kind, table)] = _bound_version_statement(kind, table)
        return statement, [], values

    def _revisions(self, clause: object) -> tuple[str, sa.Table, dict[str, str]] | None:
        """``("insert" | "update" | "delete", table, parameters)`` for Alembic's version
        statements (``version_num = '<id>'`` in SET / VALUES / WHERE), else None."""
        if not isinstance(clause, (sa.Insert, sa.Update, sa.Delete)):
            return None
        table = clause.table
        if not isinstance(table, sa.Table) or table.name != self.version_table or table.schema:
            return None
        column = table.c.get("version_num")
        if column is None or getattr(clause, "_multi_values", None) or getattr(clause, "_ordered_values", None):
            return None
        values = getattr(clause, "_values", None) or {}
        new = _literal(values.get("version_num")) if len(values) == 1 else None
        where = getattr(clause, "whereclause", None)
        old = _compared(where, column)
        if isinstance(clause, sa.Insert):
            return ("insert", table, {"new_version": new}) if new and where is None else None
        if isinstance(clause, sa.Update):
            return ("update", table, {"new_version": new, "old_version": old}) if new and old else None
        return ("delete", table, {"old_version": old}) if old and not values else None


def _literal(element: object) -> str | None:
    """The revision id in Alembic's ``literal_column("'<id>'")``, else None."""
    if isinstance(element, ColumnClause) and element.is_literal and element.table is None:
        text = element.name
        if len(text) > 2 and text[0] == text[-1] == "'" and "'" not in text[1:-1]:
            return text[1:-1]
    return None


def _compared(where: object, column: sa.Column) -> str | None:
    """The id of ``version_num = '<id>'``, else None."""
    if isinstance(where, BinaryExpression) and where.operator is operators.eq and where.left is column:
        return _literal(where.right)
    return None


def _bound_version_statement(kind: str, table: sa.Table) -> sa.Executable:
    column = table.c.version_num
    if kind == "insert":
        return table.insert().values({column: sa.bindparam("new_version")})
    if kind == "update":
        return table.update().values({column: sa.bindparam("new_version")}).where(
            column == sa.bindparam("old_version"))
    return table.delete().where(column == sa.bindparam("old_version"))
