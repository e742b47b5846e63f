"""How much data the destructive steps of a migration would lose, counted on the live database.

Only read-only ``SELECT count(...)`` queries run, inside a transaction (or savepoint) that is
always rolled back; on PostgreSQL a transaction of our own is also declared READ ONLY. Counts
describe the database as it is now, step by step, not after earlier steps of the migration.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import sqlparse
from alembic.operations import ops as alembic_ops
from sqlalchemy.engine import Inspector
from sqlalchemy.sql import sqltypes

from .analysis import Operation, Target, integer_limit, operations, whole_targets
from .errors import RollbackError
from .plan import Plan, Step
from .project import Project

#: ``rows`` when a statement's loss cannot be counted up front.
UNKNOWN = -1


@dataclass(frozen=True)
class Loss:
    """What one destructive step would take away."""

    table: str
    column: str | None  # None = the whole table
    rows: int  # rows of a table, or rows whose value is lost; UNKNOWN (-1) if not countable
    reason: str
    schema: str | None = None  # as the migration names it (None: the default schema)


def count_losses(connection: sa.Connection, ops: Iterable[Operation]) -> list[Loss]:
    """Count, for each "destroys" operation whose table/column exists, the rows it would lose.

    Dropped tables give their row count (0 for an empty table: harmless, but the caller
    decides); dropped columns their non-NULL values; narrowing type changes the values that
    do not fit the new type; raw SQL the row count only for whole-table/column forms, else -1.
    """
    with _read_only(connection) as counter:
        return [loss for op in ops if op.risk == "destroys" for loss in counter.losses(op)]


@contextmanager
def _read_only(connection: sa.Connection) -> Iterator[_Counter]:
    """A counter inside a transaction (or savepoint) that is always rolled back; one per plan,
    so its Inspector's cache serves every step."""
    nested = connection.in_transaction()
    transaction = connection.begin_nested() if nested else connection.begin()
    try:
        if not nested and connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET TRANSACTION READ ONLY")
        yield _Counter(connection)
    finally:
        transaction.rollback()


class _Counter:
    """Existence checks and counts on one connection."""

    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection
        self.inspector: Inspector = sa.inspect(connection)

    def losses(self, op: Operation) -> list[Loss]:
        source = op.source
        if isinstance(source, alembic_ops.DropTableOp):
            return self._table(source.table_name, source.schema, op.reason)
        if isinstance(source, alembic_ops.DropColumnOp):
            return self._column(source.table_name, source.column_name, source.schema, op.reason)
        if isinstance(source, alembic_ops.AlterColumnOp):
            return self._narrowed(source, op.reason)
        return self._sql(op)

    def _exists(self, table: str, schema: str | None, column: str | None = None) -> bool:
        if not self.inspector.has_table(table, schema=schema):
            return False
        if column is None:
            return True
        return column in {c["name"] for c in self.inspector.get_columns(table, schema=schema)}

    def _rows(self, table: str, schema: str | None) -> int:
        query = sa.select(sa.func.count()).select_from(sa.table(table, schema=schema))
        return int(self.connection.execute(query).scalar_one())

    def _values(self, table: str, column: str, schema: str | None, condition: Any = None) -> int:
        """Non-NULL values of a column, or only those meeting ``condition(column)``."""
        target = sa.table(table, sa.column(column), schema=schema)
        query = sa.select(sa.func.count(target.c[column])).select_from(target)
        if condition is not None:
            query = query.where(condition(target.c[column]))
        return int(self.connection.execute(query).scalar_one())

    def _table(self, table: str, schema: str | None, reason: str) -> list[Loss]:
        if not self._exists(table, schema):
            return []
        rows = self._rows(table, schema)
        return [Loss(table, None, rows, f"{reason}: {rows} rows", schema)]

    def _column(self, table: str, column: str, schema: str | None, reason: str) -> list[Loss]:
        if not self._exists(table, schema, column):
            return []
        rows = self._values(table, column, schema)
        return [Loss(table, column, rows, f"{reason}: {rows} non-NULL values", schema)]

    def _narrowed(self, source: alembic_ops.AlterColumnOp, reason: str) -> list[Loss]:
        table, column, schema = source.table_name, source.column_name, source.schema
        if not self._exists(table, schema, column):
            return []
        old = sqltypes.to_instance(source.existing_type)
        new = sqltypes.to_instance(source.modify_type)
        condition = _misfits(old, new)
        rows = self._values(table, column, schema, condition)
        what = "values that do not fit" if condition is not None else "non-NULL values converted"
        return [Loss(table, column, rows, f"{reason}: {rows} {what}", schema)]

    def _sql(self, op: Operation) -> list[Loss]:
        """Raw SQL: whole tables/columns are counted, anything partial is UNKNOWN."""
        targets = whole_targets(op.sql or "")
        if not targets:
            return [Loss(op.table or "?", op.column, UNKNOWN, f"{op.reason}: not countable")]
        found = []
        for target in targets:
            if target.column is None:
                found += self._table(target.table, target.schema, op.reason)
            else:
                found += self._column(target.table, target.column, target.schema, op.reason)
        if _truncate_cascade(op.sql or ""):
            for table, schema in self._referencing(targets):
                found += self._table(table, schema, f"{op.reason} (cascaded)")
        return found

    def _referencing(self, targets: list[Target]) -> list[tuple[str, str | None]]:
        """Tables whose foreign keys lead, directly or through others, to ``targets``: what
        PostgreSQL's ``TRUNCATE ... CASCADE`` empties too."""
        reached = {(t.table, t.schema) for t in targets}
        found: list[tuple[str, str | None]] = []
        for schema in {t.schema for t in targets}:
            tables = self.inspector.get_table_names(schema=schema)
            keys = {t: self.inspector.get_foreign_keys(t, schema=schema) for t in tables}
            grown = True
            while grown:
                grown = False
                for table, fks in keys.items():
                    if (table, schema) not in reached and any(
                        (fk["referred_table"], fk.get("referred_schema") or schema) in reached
                        for fk in fks
                    ):
                        reached.add((table, schema))
                        found.append((table, schema))
                        grown = True
        return found


def _truncate_cascade(sql: str) -> bool:
    """``TRUNCATE ... CASCADE``: the tables referencing the named ones are emptied too."""
    statements = sqlparse.parse(sql) if sql.strip() else []
    words = [t.normalized.upper() for s in statements[:1] for t in s.flatten() if t.is_keyword]
    return bool(words) and words[0] == "TRUNCATE" and "CASCADE" in words


def _misfits(old: sa.types.TypeEngine[Any], new: sa.types.TypeEngine[Any]) -> Any:
    """``column -> condition`` true for values the new type cannot hold; None when that
    cannot be said in portable SQL (then every non-NULL value counts)."""
    if isinstance(new, sa.String) and new.length is not None:
        length = new.length
        return lambda c: sa.func.length(sa.cast(c, sa.Text)) > length
    limit = integer_limit(new)
    if limit is not None:
        def outside(c: Any) -> Any:
            out = sa.or_(c < -limit, c >= limit)
            if integer_limit(old) is not None:
                return out
            exact = sa.cast(c, sa.Numeric)
            return sa.or_(out, exact != sa.func.round(exact))
        return outside
    if isinstance(new, sa.Numeric) and not isinstance(new, sa.Float):
        precision, scale = new.precision, new.scale or 0
        def unfit(c: Any) -> Any:
            exact = sa.cast(c, sa.Numeric)
            conditions = [exact != sa.func.round(exact, scale)]
            if precision is not None:
                conditions.append(sa.func.abs(exact) >= 10 ** (precision - scale))
            return sa.or_(*conditions)
        return unfit
    return None


# --- A whole plan ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StepRisk:
    """One operation of a plan's step that destroys data or cannot be judged.

    ``loss`` is the live count for a destructive operation whose object exists; it is None
    for an operation that needs review (its effect cannot be read without running it).
    """

    step: Step
    operation: Operation
    loss: Loss | None = None

    @property
    def loses_data(self) -> bool:
        """Existing rows or values would be gone (or cannot be counted, so may be)."""
        return self.loss is not None and self.loss.rows != 0

    @property
    def needs_review(self) -> bool:
        return self.operation.risk == "review"

    @property
    def object(self) -> str:
        where = self.loss or self.operation
        if where.table is None:
            return "?"
        table = f"{self.loss.schema}.{where.table}" if self.loss and self.loss.schema else where.table
        return f"{table}.{where.column}" if where.column else str(table)

    @property
    def amount(self) -> str:
        """What would be lost, for a person: "120 rows", "3 values", "unknown", "review"."""
        if self.loss is None:
            return "needs review"
        if self.loss.rows == UNKNOWN:
            return "unknown"
        noun = "value" if self.loss.column else "row"
        return f"{self.loss.rows} {noun}{'' if self.loss.rows == 1 else 's'}"


@dataclass
class DataLossReport:
    """Every destructive or unreadable operation of a plan, with live counts."""

    risks: list[StepRisk]

    @property
    def losses(self) -> list[StepRisk]:
        """What makes the plan destroy existing data: the reason to refuse it."""
        return [risk for risk in self.risks if risk.loses_data]

    @property
    def unreviewed(self) -> list[StepRisk]:
        return [risk for risk in self.risks if risk.needs_review]


class DataLossError(RollbackError):
    """A plan refused because it would destroy existing data; ``report`` says where."""

    def __init__(self, report: DataLossReport, message: str) -> None:
        super().__init__(message)
        self.report = report


def assess(project: Project, connection: sa.Connection, plan: Plan) -> DataLossReport:
    """Analyse each step of ``plan`` and count, on the live database, what it would destroy.

    Destructive operations on objects that do not exist or hold nothing are kept with a count
    of 0 (dropping an empty table loses nothing and is not a reason to refuse).
    """
    dialect = connection.dialect.name
    found = [
        (step, operation)
        for step in plan.steps
        for operation in operations(
            project.script.get_revision(step.migration.revision).module,
            "upgrade" if step.direction == "up" else "downgrade",
            dialect,
        )
    ]
    risks: list[StepRisk] = []
    counting = any(operation.risk == "destroys" for _, operation in found)
    with _read_only(connection) if counting else nullcontext() as counter:
        for step, operation in found:
            if operation.risk == "destroys":
                risks += [StepRisk(step, operation, loss) for loss in counter.losses(operation)]
            elif operation.risk == "review":
                risks.append(StepRisk(step, operation))
    return DataLossReport(risks)
