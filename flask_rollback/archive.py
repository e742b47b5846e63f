"""Archives: what a destructive step would remove, kept in the same database so it can come back.

Just before a step that drops a table or column holding data runs, the rows (whole table) or
the primary key plus the column's non-NULL values are copied with ``CREATE TABLE ... AS SELECT``
into ``<archive_table>_<revision>_<table>[__<column>]``, inside the step's own transaction, and
registered in the archive table. ``restore`` writes the values back by primary key once the
object exists again, then drops the archive.

An archive must not get in the way of the migration it protects: on PostgreSQL, values of types
and collations created in the database (enums, domains, extension types) are copied as text, so
the migration can still ``DROP TYPE`` them; ``restore`` casts them back to the column's type.
Names fit the backend's identifier limit (in bytes on PostgreSQL) and never collide.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .dataloss import UNKNOWN, DataLossReport, RowsWhere
from .errors import EXIT_REFUSED, RollbackError
from .plan import Step
from .recorder import archive_prefix, timestamp, utcnow

#: PostgreSQL's first OID for objects created after initdb (``FirstNormalObjectId``): a type or
#: collation from ``CREATE TYPE/DOMAIN/COLLATION/EXTENSION`` has one at least this large.
FIRST_USER_OID = 16384


@dataclass(frozen=True)
class IdentifierLimit:
    """How long a table name the backend keeps: PostgreSQL silently truncates past 63 bytes
    (NAMEDATALEN - 1, UTF-8 bytes, not characters), MariaDB/MySQL refuse past 64 characters,
    and past ``file_bytes`` bytes of the name as a file name."""

    size: int
    in_bytes: bool
    #: MariaDB/MySQL store a table in files named after it: ASCII letters, digits and ``_``
    #: stay as they are, any other character takes up to 5 bytes (``@`` + 4 hex digits); the
    #: server refuses a table whose encoded name exceeds 251 bytes (50 CJK characters).
    file_bytes: int | None = None

    def length(self, name: str) -> int:
        return len(name.encode()) if self.in_bytes else len(name)

    def fits(self, name: str) -> bool:
        return self.length(name) <= self.size and (
            self.file_bytes is None or _file_name_bytes(name) <= self.file_bytes
        )

    def clip(self, text: str, tail: str) -> str:
        """The longest start of ``text`` that fits with ``tail`` after it, never cutting a
        character in two."""
        room = max(self.size - self.length(tail), 0)
        start = text.encode()[:room].decode(errors="ignore") if self.in_bytes else text[:room]
        while start and not self.fits(start + tail):
            start = start[:-1]
        return start


def _file_name_bytes(name: str) -> int:
    """At most how many bytes MariaDB/MySQL's file name for table ``name`` takes."""
    return sum(1 if char.isascii() and (char.isalnum() or char == "_") else 5 for char in name)


#: By dialect name; any other backend (SQLite included) gets PostgreSQL's, the strictest, so
#: archive names stay portable.
IDENTIFIER_LIMITS = {
    "mysql": IdentifierLimit(64, in_bytes=False, file_bytes=251),
    "mariadb": IdentifierLimit(64, in_bytes=False, file_bytes=251),
}
PORTABLE_LIMIT = IdentifierLimit(63, in_bytes=True)


def identifier_limit(dialect: str) -> IdentifierLimit:
    return IDENTIFIER_LIMITS.get(dialect, PORTABLE_LIMIT)


@dataclass(frozen=True)
class ArchiveSpec:
    """One archive a step will write: which object, keyed by which columns, under what name."""

    name: str
    step: Step
    table: str
    column: str | None  # None: the whole table
    key: tuple[str, ...]
    #: Only the rows a DELETE/UPDATE acts on (None: every row), so a restore puts back those
    #: rows and leaves later changes to the others alone.
    where: RowsWhere | None = None


@dataclass(frozen=True)
class ArchiveRecord:
    """A registered archive."""

    name: str
    app: str
    migration: str
    revision: str
    direction: str
    table: str
    column: str | None
    key: tuple[str, ...]
    rows: int
    created_at: datetime

    @property
    def object(self) -> str:
        return f"{self.table}.{self.column}" if self.column else self.table

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["key"] = list(self.key)
        data["created_at"] = self.created_at.isoformat()
        return data


@dataclass(frozen=True)
class RestoreResult:
    """What ``restore`` wrote back; the archive is kept when some rows found no match."""

    archive: ArchiveRecord
    updated: int
    inserted: int
    unmatched: int

    @property
    def dropped(self) -> bool:
        return self.unmatched == 0


class ArchiveLog:
    """The registry table of archives, and the archive tables it names."""

    def __init__(self, table_name: str) -> None:
        self.prefix = archive_prefix(table_name)
        self.table = sa.Table(
            table_name,
            sa.MetaData(),
            # 64: the longest archive name of any backend (MySQL counts characters).
            sa.Column("name", sa.String(64), primary_key=True),
            sa.Column("app", sa.String(64), nullable=False),
            sa.Column("migration", sa.String(255), nullable=False),
            sa.Column("revision", sa.String(64), nullable=False),
            sa.Column("direction", sa.String(8), nullable=False),
            sa.Column("source_table", sa.String(255), nullable=False),
            sa.Column("source_column", sa.String(255)),
            sa.Column("key_columns", sa.String(1000), nullable=False),
            sa.Column("rows", sa.Integer, nullable=False),
            sa.Column("created_at", timestamp(), nullable=False),
        )

    def owns(self, table: str) -> bool:
        """The registry itself and every archive table: autogenerate and drift ignore them."""
        return table == self.table.name or table.startswith(self.prefix)

    # -- planning -----------------------------------------------------------------------

    def plan(
        self, connection: Connection, report: DataLossReport, skip_unarchivable: bool = False
    ) -> list[ArchiveSpec]:
        """The archives that make ``report``'s losses recoverable, or a refusal naming the
        one that cannot be archived (no primary key, or a loss that cannot be delimited);
        ``skip_unarchivable`` (with --allow-data-loss) lets those go unarchived instead."""
        inspector = sa.inspect(connection)
        limit = identifier_limit(connection.dialect.name)
        taken = _names_in_use(connection) | {r.name.lower() for r in self.all(connection)}
        specs: list[ArchiveSpec] = []
        for risk in report.losses:
            loss = risk.loss
            assert loss is not None
            migration = risk.step.migration
            if loss.rows == UNKNOWN:
                if skip_unarchivable:
                    continue
                raise RollbackError(
                    f"cannot archive what {migration.label} does to {risk.object} "
                    f"({risk.operation.reason}): the rows it touches are not known before it "
                    "runs; check it and re-run with --allow-data-loss",
                    exit_code=EXIT_REFUSED,
                )
            if loss.schema not in (None, inspector.default_schema_name):
                if skip_unarchivable:
                    continue
                raise RollbackError(
                    f"cannot archive {risk.object} for {migration.label}: archives keep tables "
                    "of the default schema only; re-run with --allow-data-loss to lose it",
                    exit_code=EXIT_REFUSED,
                )
            key = tuple(inspector.get_pk_constraint(loss.table).get("constrained_columns") or ())
            if not key:
                if skip_unarchivable:
                    continue
                raise RollbackError(
                    f"cannot archive {risk.object} for {migration.label}: table {loss.table} has "
                    "no primary key to restore by; re-run with --allow-data-loss to lose it",
                    exit_code=EXIT_REFUSED,
                )
            if any(
                s.step == risk.step and s.table == loss.table and s.column in (None, loss.column)
                and s.where is None and loss.rows_where is None
                for s in specs
            ):
                continue  # already kept by this step's whole-table or same-column archive
            name = self._name(migration.revision, loss.table, loss.column, taken, limit)
            taken.add(name.lower())
            specs.append(ArchiveSpec(name, risk.step, loss.table, loss.column, key, loss.rows_where))
        return specs

    def _name(
        self, revision: str, table: str, column: str | None, taken: set[str], limit: IdentifierLimit
    ) -> str:
        """``<prefix><revision>_<table>[__<column>]`` when it fits and is free. Too long: its
        start, cut to fit, plus ``_`` and 8 hex digits of the whole name, so that long names
        sharing a start still differ. Taken: ``_2``, ``_3``... ``taken`` holds lower-cased
        names: SQLite and MySQL compare table names without case."""
        base = f"{self.prefix}{revision}_{table}" + (f"__{column}" if column else "")
        digest = "_" + hashlib.sha256(base.encode()).hexdigest()[:8]
        number = 1
        while True:
            suffix = "" if number == 1 else f"_{number}"
            name = base + suffix
            if not limit.fits(name):
                name = limit.clip(base, digest + suffix) + digest + suffix
                if not name.startswith(self.prefix):
                    raise RollbackError(
                        f"archive table name {self.table.name!r} is too long to name archives "
                        f"within {limit.size} {'bytes' if limit.in_bytes else 'characters'}; "
                        "set a shorter ROLLBACK_ARCHIVE_TABLE"
                    )
            if name.lower() not in taken:
                return name
            number += 1

    # -- writing ------------------------------------------------------------------------

    def ensure(self, connection: Connection) -> None:
        with connection.begin_nested() if connection.in_transaction() else connection.begin():
            self.table.create(connection, checkfirst=True)

    def write(self, connection: Connection, spec: ArchiveSpec) -> int:
        """Copy the object into its archive and register it; runs in the step's transaction."""
        quote = connection.dialect.identifier_preparer.quote
        columns = None if spec.column is None else (*spec.key, spec.column)
        conditions = [] if spec.column is None else [f"{quote(spec.column)} IS NOT NULL"]
        prefix, source = "", quote(spec.table)
        if spec.where is not None:
            prefix = f"{spec.where.prefix} " if spec.where.prefix else ""
            source += f" AS {quote(spec.where.alias)}"
            conditions.append(f"({spec.where.condition})")
            if connection.dialect.paramstyle in ("format", "pyformat"):  # the migration's own SQL
                prefix, conditions = prefix.replace("%", "%%"), [c.replace("%", "%%") for c in conditions]
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        selected = _copied_columns(connection, spec.table, columns)
        connection.exec_driver_sql(
            f"CREATE TABLE {quote(spec.name)} AS {prefix}SELECT {selected} FROM {source}{where}"
        )
        rows = int(
            connection.execute(sa.select(sa.func.count()).select_from(sa.table(spec.name))).scalar_one()
        )
        connection.execute(
            self.table.insert().values(
                name=spec.name,
                app=spec.step.app,
                migration=spec.step.migration.label,
                revision=spec.step.migration.revision,
                direction=spec.step.direction,
                source_table=spec.table,
                source_column=spec.column,
                key_columns=",".join(spec.key),
                rows=rows,
                created_at=utcnow(),
            )
        )
        return rows

    # -- reading ------------------------------------------------------------------------

    def all(self, connection: Connection) -> list[ArchiveRecord]:
        if not sa.inspect(connection).has_table(self.table.name):
            return []
        rows = connection.execute(self.table.select().order_by(self.table.c.created_at.desc()))
        return [self._record(row) for row in rows.mappings()]

    def get(self, connection: Connection, name: str) -> ArchiveRecord:
        known = self.all(connection)
        found = next((record for record in known if record.name == name), None)
        if found is None:
            hint = f" (archives: {', '.join(r.name for r in known)})" if known else " (there are none)"
            raise RollbackError(f"no archive named {name!r}{hint}; see 'flask db archives'")
        return found

    @staticmethod
    def _record(row: Any) -> ArchiveRecord:
        created = row["created_at"]
        return ArchiveRecord(
            name=row["name"], app=row["app"], migration=row["migration"],
            revision=row["revision"], direction=row["direction"], table=row["source_table"],
            column=row["source_column"], key=tuple(row["key_columns"].split(",")),
            rows=row["rows"], created_at=created,
        )

    # -- restoring and discarding -------------------------------------------------------

    def drop(self, connection: Connection, record: ArchiveRecord) -> None:
        connection.exec_driver_sql(
            f"DROP TABLE {connection.dialect.identifier_preparer.quote(record.name)}"
        )
        connection.execute(self.table.delete().where(self.table.c.name == record.name))

    def restore(
        self, connection: Connection, record: ArchiveRecord, batch_size: int | None = None
    ) -> RestoreResult:
        """Write the archived values back by key: update rows that exist, insert the others
        (whole-table archives only), then drop the archive if every row found its place.

        Linear in the rows: the archive gets an index on the key, each batch of
        ``batch_size`` keys is one join with the table (``UPDATE ... FROM``, ``INSERT ...
        SELECT ... WHERE NOT EXISTS`` through the table's primary key)."""
        batch_size = batch_size or RESTORE_BATCH_ROWS
        inspector = sa.inspect(connection)
        if not inspector.has_table(record.table):
            raise RollbackError(
                f"table {record.table} does not exist; upgrade to the migration that creates it, "
                f"then restore {record.name}"
            )
        present = {c["name"] for c in inspector.get_columns(record.table)}
        archived = [c["name"] for c in inspector.get_columns(record.name)]
        missing = [c for c in archived if c not in present]
        if missing:
            raise RollbackError(
                f"cannot restore {record.name}: table {record.table} has no "
                f"{'column' if len(missing) == 1 else 'columns'} "
                f"{', '.join(missing)} any more; its columns no longer match the archive"
            )
        values = [c for c in archived if c not in record.key]
        target = sa.table(record.table, *(sa.column(c) for c in archived))
        archive = sa.table(record.name, *(sa.column(c) for c in archived))
        casts = _restore_casts(connection, record)

        def archived_value(column: str) -> Any:
            value = archive.c[column]
            return sa.cast(value, _TypeNamed(casts[column])) if column in casts else value

        self._index(connection, record)
        _analyze(connection, record.name)
        _stop_with_client(connection)
        match = sa.and_(*(archived_value(k) == target.c[k] for k in record.key))
        joined = _update_from_supported(connection)
        matched = inserted = 0
        for batch in _key_ranges(connection, archive, record.key, batch_size):
            # Counted: drivers do not all report rowcount for UPDATE/INSERT ... SELECT.
            found = connection.execute(
                sa.select(sa.func.count()).select_from(archive).where(batch, sa.exists().where(match))
            ).scalar_one()
            matched += found
            if values and found:
                if joined:  # one join on the key: UPDATE ... FROM
                    update = sa.update(target).values({c: archived_value(c) for c in values})
                    connection.execute(update.where(match, batch))
                else:  # SQLite < 3.33: a lookup per row, through the archive's key index
                    connection.execute(
                        sa.update(target)
                        .where(sa.exists().where(match, batch))
                        .values({
                            c: sa.select(archived_value(c)).where(match).scalar_subquery()
                            for c in values
                        })
                    )
            if record.column is None:
                # PostgreSQL plans the anti-join from statistics taken before this transaction
                # inserted anything: an emptied table looks empty, and each batch would scan
                # every row inserted so far (quadratic). Sampled again per batch: bounded cost.
                _analyze(connection, record.table)
                missing_rows = sa.select(*(archived_value(c) for c in archived)).where(
                    batch, ~sa.exists().where(match)
                )
                inserted += connection.execute(
                    sa.select(sa.func.count()).select_from(missing_rows.subquery())
                ).scalar_one()
                connection.execute(sa.insert(target).from_select(archived, missing_rows))
        if record.column is None:
            _advance_sequence(connection, record.table, record.key)
        updated = matched if values else 0
        unmatched = record.rows - matched - inserted
        result = RestoreResult(record, updated, inserted, max(unmatched, 0))
        if result.dropped:
            self.drop(connection, record)
        return result

    def _index(self, connection: Connection, record: ArchiveRecord) -> None:
        """An index on the archive's key, so that each batch range is an index range and the
        per-row lookups of the fallback are index lookups (archives are plain ``CREATE TABLE
        AS`` copies: no key, no index)."""
        name = f"{self.prefix}key_{hashlib.sha256(record.name.encode()).hexdigest()[:16]}"
        if not PORTABLE_LIMIT.fits(name):
            name = f"ix_{hashlib.sha256(record.name.encode()).hexdigest()[:32]}"
        if any(index["name"] == name for index in sa.inspect(connection).get_indexes(record.name)):
            return
        quote = connection.dialect.identifier_preparer.quote
        columns = ", ".join(quote(k) for k in record.key)
        connection.exec_driver_sql(f"CREATE INDEX {quote(name)} ON {quote(record.name)} ({columns})")


#: Rows written back per statement: each statement is short, so a signal (or a client that
#: went away) stops a restore within one batch, while the total stays linear in the rows.
RESTORE_BATCH_ROWS = 20_000


def _key_ranges(
    connection: Connection, archive: Any, key: Sequence[str], size: int
) -> Iterator[Any]:
    """Conditions that split ``archive`` into consecutive ranges of ``size`` rows by key
    (row-value comparisons, an index range scan each): ``key > last AND key <= upper``."""
    columns = [archive.c[k] for k in key]
    row = sa.tuple_(*columns)

    def bound(values: Sequence[Any]) -> Any:
        # Untyped: a Python int must not become "::INTEGER" against a BIGINT key.
        return sa.tuple_(*(sa.bindparam(None, v, type_=sa.types.NullType()) for v in values))

    last: Sequence[Any] | None = None
    while True:
        after = [] if last is None else [row > bound(last)]
        upper = connection.execute(
            sa.select(*columns).where(*after).order_by(*columns).offset(size - 1).limit(1)
        ).first()
        if upper is None:
            yield sa.and_(sa.true(), *after)
            return
        yield sa.and_(*after, row <= bound(tuple(upper)))
        last = tuple(upper)


def _analyze(connection: Connection, table: str) -> None:
    """PostgreSQL: fresh planner statistics for ``table`` (allowed inside a transaction)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"ANALYZE {connection.dialect.identifier_preparer.quote(table)}")


def _update_from_supported(connection: Connection) -> bool:
    """``UPDATE ... FROM``: PostgreSQL, SQLite from 3.33."""
    if connection.dialect.name == "sqlite":
        return sqlite3.sqlite_version_info >= (3, 33, 0)
    return connection.dialect.name == "postgresql"


def _stop_with_client(connection: Connection) -> None:
    """PostgreSQL 14+: end the running statement within a second of its client going away (a
    killed ``restore``), instead of when it would have finished; for this transaction only."""
    if connection.dialect.name == "postgresql" and (connection.dialect.server_version_info or (0,)) >= (14,):
        connection.exec_driver_sql("SET LOCAL client_connection_check_interval = 1000")


def _names_in_use(connection: Connection) -> set[str]:
    """Lower-cased names a new table of the default schema cannot take: on PostgreSQL every
    relation (table, view, sequence, index) and type, on SQLite every table, index, view and
    trigger; elsewhere tables and views."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        query = (
            "SELECT relname FROM pg_catalog.pg_class "
            "WHERE relnamespace = CAST(current_schema() AS regnamespace) "
            "UNION SELECT typname FROM pg_catalog.pg_type "
            "WHERE typnamespace = CAST(current_schema() AS regnamespace)"
        )
    elif dialect == "sqlite":
        query = "SELECT name FROM sqlite_master"
    else:
        inspector = sa.inspect(connection)
        return {name.lower() for name in (*inspector.get_table_names(), *inspector.get_view_names())}
    return {name.lower() for name in connection.exec_driver_sql(query).scalars()}


def _advance_sequence(connection: Connection, table: str, key: Sequence[str]) -> None:
    """PostgreSQL: rows inserted with explicit ids leave the serial/identity sequence behind;
    move it past them so the application's next insert does not collide."""
    if connection.dialect.name != "postgresql" or len(key) != 1:
        return
    quote = connection.dialect.identifier_preparer.quote
    sequence = connection.execute(
        sa.select(sa.func.pg_get_serial_sequence(quote(table), key[0]))
    ).scalar()
    if sequence:
        connection.exec_driver_sql(
            f"SELECT setval(%(sequence)s, (SELECT max({quote(key[0])}) FROM {quote(table)}))",
            {"sequence": sequence},
        )


# -- PostgreSQL: archives that depend on no type the migration may drop -----------------------

#: Every column of a table, in order, and whether its type or collation was created in this
#: database (an array's own OID is as new as its element type's).
_OWN_TYPES = sa.text(
    f"""
    SELECT attname, atttypid >= {FIRST_USER_OID}, attcollation >= {FIRST_USER_OID}
    FROM pg_catalog.pg_attribute
    WHERE attrelid = CAST(:table AS regclass) AND attnum > 0 AND NOT attisdropped
    ORDER BY attnum
    """
)

#: For each column of :table whose type differs from the same column of :archive, the type to
#: cast the archived value to: the column's type with domains unwrapped and without a length,
#: so that writing it still checks the domain's constraints and the column's length instead of
#: an explicit cast silently truncating.
_CASTS = sa.text(
    """
    WITH RECURSIVE target(attname, declared, typid) AS (
        SELECT attname, atttypid, atttypid FROM pg_catalog.pg_attribute
        WHERE attrelid = CAST(:table AS regclass) AND attnum > 0 AND NOT attisdropped
      UNION ALL
        SELECT target.attname, target.declared, typ.typbasetype
        FROM target JOIN pg_catalog.pg_type typ ON typ.oid = target.typid
        WHERE typ.typtype = 'd'
    )
    SELECT target.attname, pg_catalog.format_type(target.typid, NULL)
    FROM target
    JOIN pg_catalog.pg_type typ ON typ.oid = target.typid AND typ.typtype <> 'd'
    JOIN pg_catalog.pg_attribute archived
      ON archived.attrelid = CAST(:archive AS regclass) AND archived.attname = target.attname
    WHERE archived.atttypid <> target.declared
    """
)


def _copied_columns(connection: Connection, table: str, columns: Sequence[str] | None) -> str:
    """The SELECT list that copies ``columns`` (None: all) of ``table`` into an archive.

    ``CREATE TABLE ... AS`` keeps each column's type and collation, and so a dependency on
    them: an archived enum column would make the migration's own ``DROP TYPE`` fail. On
    PostgreSQL, values of a type created in the database are copied as text and a collation
    created in it is replaced by the default one; other backends have no such objects.
    """
    quote = connection.dialect.identifier_preparer.quote
    if connection.dialect.name != "postgresql":
        return "*" if columns is None else ", ".join(quote(c) for c in columns)
    found = connection.execute(_OWN_TYPES, {"table": quote(table)}).all()
    own = {name: (own_type, own_collation) for name, own_type, own_collation in found}
    selected = []
    for column in [name for name, *_ in found] if columns is None else columns:
        own_type, own_collation = own[column]
        value = f"CAST({quote(column)} AS text)" if own_type else quote(column)
        if own_collation:
            value += ' COLLATE "default"'
        selected.append(f"{value} AS {quote(column)}")
    return ", ".join(selected)


def _restore_casts(connection: Connection, record: ArchiveRecord) -> dict[str, str]:
    """PostgreSQL: ``{column: type}`` for the archived values to cast to their column's current
    type (an enum archived as text, restored once the migration re-created the type)."""
    if connection.dialect.name != "postgresql":
        return {}
    quote = connection.dialect.identifier_preparer.quote
    found = connection.execute(_CASTS, {"table": quote(record.table), "archive": quote(record.name)})
    return {name: type_name for name, type_name in found}


class _TypeNamed(sa.types.UserDefinedType[Any]):
    """A type known only by its SQL name (``format_type``'s), for ``CAST(... AS name)``."""

    cache_ok = True

    def __init__(self, name: str) -> None:
        self.name = name

    def get_col_spec(self, **kw: Any) -> str:
        return self.name
