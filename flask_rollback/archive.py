"""Archives: what a destructive step would remove, kept in the same database so it can come back.

Just before a step that drops a table or column holding data runs, the rows (whole table) or
the primary key plus the column's non-NULL values are copied with ``CREATE TABLE ... AS SELECT``
into ``<archive_table>_<revision>_<table>[__<column>]``, inside the step's own transaction, and
registered in the archive table. ``restore`` writes the values back by primary key once the
object exists again, then drops the archive.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .dataloss import UNKNOWN, DataLossReport
from .errors import RollbackError
from .plan import Step
from .recorder import archive_prefix, utcnow

#: PostgreSQL truncates identifiers longer than this; archive names stay within it.
MAX_NAME = 63


@dataclass(frozen=True)
class ArchiveSpec:
    """One archive a step will write: which object, keyed by which columns, under what name."""

    name: str
    step: Step
    table: str
    column: str | None  # None: the whole table
    key: tuple[str, ...]


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
            sa.Column("name", sa.String(MAX_NAME), primary_key=True),
            sa.Column("app", sa.String(64), nullable=False),
            sa.Column("migration", sa.String(255), nullable=False),
            sa.Column("revision", sa.String(64), nullable=False),
            sa.Column("direction", sa.String(8), nullable=False),
            sa.Column("source_table", sa.String(255), nullable=False),
            sa.Column("source_column", sa.String(255)),
            sa.Column("key_columns", sa.String(1000), nullable=False),
            sa.Column("rows", sa.Integer, nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
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
        taken = set(inspector.get_table_names())
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
                    "runs; check it and re-run with --allow-data-loss"
                )
            if loss.schema not in (None, inspector.default_schema_name):
                if skip_unarchivable:
                    continue
                raise RollbackError(
                    f"cannot archive {risk.object} for {migration.label}: archives keep tables "
                    "of the default schema only; re-run with --allow-data-loss to lose it"
                )
            key = tuple(inspector.get_pk_constraint(loss.table).get("constrained_columns") or ())
            if not key:
                if skip_unarchivable:
                    continue
                raise RollbackError(
                    f"cannot archive {risk.object} for {migration.label}: table {loss.table} has "
                    "no primary key to restore by; re-run with --allow-data-loss to lose it"
                )
            if any(
                s.step == risk.step and s.table == loss.table and s.column in (None, loss.column)
                for s in specs
            ):
                continue  # already kept by this step's whole-table or same-column archive
            name = self._name(migration.revision, loss.table, loss.column, taken)
            taken.add(name)
            specs.append(ArchiveSpec(name, risk.step, loss.table, loss.column, key))
        connection.rollback()
        return specs

    def _name(self, revision: str, table: str, column: str | None, taken: set[str]) -> str:
        base = f"{self.prefix}{revision}_{table}" + (f"__{column}" if column else "")
        name, number = base, 1
        while name in taken or len(name) > MAX_NAME:
            number += 1
            suffix = "" if number == 1 else f"_{number}"
            if len(base) + len(suffix) > MAX_NAME:
                digest = hashlib.sha256(base.encode()).hexdigest()[:8]
                name = f"{base[: MAX_NAME - len(suffix) - 9]}_{digest}{suffix}"
            else:
                name = base + suffix
        return name

    # -- writing ------------------------------------------------------------------------

    def ensure(self, connection: Connection) -> None:
        with connection.begin_nested() if connection.in_transaction() else connection.begin():
            self.table.create(connection, checkfirst=True)

    def write(self, connection: Connection, spec: ArchiveSpec) -> int:
        """Copy the object into its archive and register it; runs in the step's transaction."""
        quote = connection.dialect.identifier_preparer.quote
        if spec.column is None:
            selected, where = "*", ""
        else:
            selected = ", ".join(quote(c) for c in (*spec.key, spec.column))
            where = f" WHERE {quote(spec.column)} IS NOT NULL"
        connection.exec_driver_sql(
            f"CREATE TABLE {quote(spec.name)} AS SELECT {selected} FROM {quote(spec.table)}{where}"
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

    def restore(self, connection: Connection, record: ArchiveRecord) -> RestoreResult:
        """Write the archived values back by key: update rows that exist, insert the others
        (whole-table archives only), then drop the archive if every row found its place."""
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
                f"cannot restore {record.name}: table {record.table} has no column(s) "
                f"{', '.join(missing)} any more; its columns no longer match the archive"
            )
        values = [c for c in archived if c not in record.key]
        target = sa.table(record.table, *(sa.column(c) for c in archived))
        archive = sa.table(record.name, *(sa.column(c) for c in archived))
        match = sa.and_(*(archive.c[k] == target.c[k] for k in record.key))
        # Counted up front: drivers do not all report rowcount for UPDATE/INSERT ... SELECT.
        matched = connection.execute(
            sa.select(sa.func.count()).select_from(archive).where(sa.exists().where(match))
        ).scalar_one()
        if values:
            connection.execute(
                sa.update(target)
                .where(sa.exists().where(match))
                .values({c: sa.select(archive.c[c]).where(match).scalar_subquery() for c in values})
            )
        inserted = 0
        if record.column is None:
            inserted = record.rows - matched
            connection.execute(
                sa.insert(target).from_select(
                    archived, sa.select(*(archive.c[c] for c in archived)).where(~sa.exists().where(match))
                )
            )
            _advance_sequence(connection, record.table, record.key)
        updated = matched if values else 0
        unmatched = record.rows - matched - inserted
        result = RestoreResult(record, updated, inserted, max(unmatched, 0))
        if result.dropped:
            self.drop(connection, record)
        return result


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
