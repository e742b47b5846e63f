"""What would make a pending step fail on the live data, found before anything runs.

The rehearsal runs every pending migration on a copy of the schema without rows, so it cannot
see a step that only fails because of existing rows. ``predict`` reads each step's recorded
operations (``analysis.operations``) and counts, with read-only queries on the live database,
the rows that would make one fail:

* ``add_column`` NOT NULL without a server default (nor a computed, primary key or, on
  PostgreSQL, identity column, which fill every row): the rows of the table. MariaDB/MySQL
  fill the rows with the type's implicit default (``''``, ``0``...) instead, and only refuse
  the zero date of a DATE or DATETIME column when ``sql_mode`` has ``NO_ZERO_DATE``;
* ``alter_column(nullable=False)``: the column's NULLs (on MariaDB/MySQL in strict mode only:
  otherwise they become the implicit default);
* ``create_unique_constraint``, ``create_index(unique=True)``: rows in groups of equal keys
  (a key holding a NULL is no duplicate unless ``postgresql_nulls_not_distinct``; a partial
  index only counts the rows its WHERE keeps; a MariaDB/MySQL prefix index, ``mysql_length``,
  compares the prefixes). Keys are grouped by the database itself, so under each column's
  collation, as the new key will compare them: MariaDB's default collations ignore case and
  trailing spaces. ``create_primary_key``: the same, plus rows with a NULL key on PostgreSQL
  and on MariaDB/MySQL in strict mode (SQLite accepts NULL keys);
* ``create_foreign_key``: rows whose key columns are all non-NULL and match no referent row
  (MATCH SIMPLE); on SQLite only when the connection enforces foreign keys, on MariaDB/MySQL
  unless ``foreign_key_checks`` is off;
* ``create_check_constraint``: rows for which the condition is false (NULL passes, as for
  CHECK); not on MariaDB with ``check_constraint_checks`` off;
* a narrowing ``alter_column`` type change (SQLite does not enforce lengths or ranges):
  strings longer than the new length, integers outside the new range, numbers with more
  integer digits than the new precision leaves. Fractions are rounded, not refused: that is
  data loss, not a failure. PostgreSQL cuts excess trailing spaces without complaint.
  MariaDB/MySQL, in strict mode only (otherwise they cut with a warning), accept excess
  whitespace too, except when copying VARCHAR to VARCHAR of the same collation and length
  prefix size (both at most 255 bytes, or both more), where any excess character fails; they
  round like ``ROUND`` does on the column's own type (half away from zero for exact numbers,
  to even for floating point).

Not checked: PostgreSQL ``NOT VALID`` constraints (existing rows are not validated),
``postgresql_using`` type changes (the expression decides), expression indexes. On SQLite an
ALTER of a column or constraint outside ``batch_alter_table`` cannot run at all (the rehearsal
reports it), so there only ``add_column``, ``create_index`` and batch operations are predicted.
Other backends are not predicted.

No false alarms: a prediction is made only for tables and columns that exist now and that no
earlier operation of the plan changes (rows: tables created, dropped, renamed or bulk-inserted;
values: columns added, dropped or altered; anything at all: raw SQL, Python the recorder cannot
see, unknown operations). Whatever those leave behind is the rehearsal's and the run's business.
A count the database refuses (a condition it cannot evaluate) predicts nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import sqlalchemy as sa
from alembic.operations import ops as alembic_ops
from sqlalchemy.engine import Connection
from sqlalchemy.sql import sqltypes

from .analysis import Operation, integer_limit, narrows
from .dataloss import read_only, step_operations
from .plan import Plan, Step
from .project import Project

#: Backends whose failure rules are known (dialect names).
BACKENDS = ("postgresql", "sqlite", "mysql", "mariadb")

#: The whitespace MariaDB/MySQL accept in the excess of a string cut to a shorter column
#: (``my_isspace``: space, tab, newline, vertical tab, form feed, carriage return).
MYSQL_SPACES = " \t\n\x0b\x0c\r"

#: Integer types of MariaDB/MySQL (as SQLAlchemy compiles them) and their bits.
MYSQL_INTEGER_BITS = {
    "BOOL": 8, "BOOLEAN": 8, "TINYINT": 8, "SMALLINT": 16, "MEDIUMINT": 24, "INT": 32,
    "INTEGER": 32, "BIGINT": 64,
}

#: Column types (information_schema DATA_TYPE) whose values ROUND() and comparisons read as
#: numbers.
MYSQL_NUMBERS = ("tinyint", "smallint", "mediumint", "int", "bigint", "decimal", "float", "double")
MYSQL_STRINGS = ("char", "varchar", "tinytext", "text", "mediumtext", "longtext")

#: Operations that change no row nor value, so later counts still hold after them.
_DATA_UNCHANGED = (
    alembic_ops.AddConstraintOp,
    alembic_ops.DropConstraintOp,
    alembic_ops.CreateIndexOp,
    alembic_ops.DropIndexOp,
    alembic_ops.CreateTableCommentOp,
    alembic_ops.DropTableCommentOp,
)

#: ``column -> SQL condition`` selecting the values an operation fails on.
Condition = Callable[[Any], Any]


@dataclass(frozen=True)
class Prediction:
    """A pending step that would fail on the live data: where, on how many rows, what to do."""

    step: Step
    operation: str  # the op.<name> that fails, e.g. "add_column"
    object: str  # "posts.slug", "posts (title)", "posts"
    rows: int
    message: str
    fix: str

    @property
    def label(self) -> str:
        return self.step.migration.label

    def __str__(self) -> str:
        noun = "row" if self.rows == 1 else "rows"
        return f"{self.label}: {self.message}: would fail on live data: {self.rows} {noun}; {self.fix}"


def predict(project: Project, connection: Connection, plan: Plan) -> list[Prediction]:
    """Each operation of ``plan`` that the rows now in the database would make fail."""
    dialect = connection.dialect.name
    if dialect not in BACKENDS:
        return []
    recorded = [
        (step, step_operations(project, step, dialect)) for step in plan.steps if not step.fake
    ]
    if not any(op.risk in ("may_fail", "destroys") for _, ops in recorded for op in ops):
        return []
    found: list[Prediction] = []
    with read_only(connection):
        live = _LiveData(connection)
        for step, ops in recorded:
            for op in _each_call(ops):
                found += [
                    Prediction(step, op.kind, *failure) for failure in live.failures(op)
                ]
                live.changed.record(op.source)
    return found


def _each_call(ops: Iterable[Operation]) -> Iterator[Operation]:
    """The first row of each recorded Alembic call (an ``alter_column`` gives one row per change);
    every row without a source (Python the recorder could not see)."""
    previous = None
    for op in ops:
        if op.source is None or op.source is not previous:
            yield op
        previous = op.source


class _Failure(NamedTuple):
    object: str
    rows: int
    message: str
    fix: str


class _Changed:
    """What the operations of the plan read so far change: rows of tables, values of columns,
    or possibly anything. Tables are keyed with their schema (None: the default one)."""

    def __init__(self, default_schema: str | None) -> None:
        self.default_schema = default_schema
        self.anything = False
        self.tables: set[tuple[str | None, str]] = set()
        self.columns: set[tuple[str | None, str, str]] = set()

    def _key(self, schema: str | None, table: str) -> tuple[str | None, str]:
        return (schema or self.default_schema, table)

    def record(self, source: alembic_ops.MigrateOperation | None) -> None:
        if isinstance(source, (alembic_ops.CreateTableOp, alembic_ops.DropTableOp)):
            self.tables.add(self._key(source.schema, source.table_name))
        elif isinstance(source, alembic_ops.RenameTableOp):
            self.tables.add(self._key(source.schema, source.table_name))
            self.tables.add(self._key(source.schema, source.new_table_name))
        elif isinstance(source, alembic_ops.BulkInsertOp):
            self.tables.add(self._key(getattr(source.table, "schema", None), source.table.name))
        elif isinstance(source, alembic_ops.AddColumnOp):
            self._column(source.schema, source.table_name, source.column.name)
        elif isinstance(source, alembic_ops.DropColumnOp):
            self._column(source.schema, source.table_name, source.column_name)
        elif isinstance(source, alembic_ops.AlterColumnOp):
            self._column(source.schema, source.table_name, source.column_name)
            if source.modify_name:
                self._column(source.schema, source.table_name, source.modify_name)
        elif not isinstance(source, _DATA_UNCHANGED):  # raw SQL, Python, unknown operations
            self.anything = True

    def _column(self, schema: str | None, table: str, column: str) -> None:
        self.columns.add((*self._key(schema, table), column))

    def rows(self, schema: str | None, table: str) -> bool:
        """Rows may have been added, removed, or the table replaced."""
        return self.anything or self._key(schema, table) in self.tables

    def values(self, schema: str | None, table: str, columns: Iterable[str]) -> bool:
        key = self._key(schema, table)
        return self.rows(schema, table) or any((*key, column) in self.columns for column in columns)

    def table(self, schema: str | None, table: str) -> bool:
        """Rows or any column's values (for a condition that may read every column)."""
        key = self._key(schema, table)
        return self.rows(schema, table) or any(column[:2] == key for column in self.columns)


class _LiveData:
    """The failure rules, counted on one connection inside a read-only transaction."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.dialect = connection.dialect.name
        self.mysql = self.dialect in ("mysql", "mariadb")
        self.inspector = sa.inspect(connection)
        self.changed = _Changed(self.inspector.default_schema_name)
        # PRAGMA foreign_keys is off unless a connect hook turns it on (it is a no-op inside
        # the transaction each migration runs in, so a migration cannot).
        self.foreign_keys_enforced = self.dialect != "sqlite" or bool(
            connection.exec_driver_sql("PRAGMA foreign_keys").scalar()
        )
        self.strict = True  # values that do not fit are refused, not converted
        self.no_zero_date = False
        self.checks_enforced = True
        if self.mysql:
            # The session's settings are those the migrations run with: same engine, and a
            # migration that changes them is raw SQL, after which nothing is predicted.
            mode, foreign_keys = connection.exec_driver_sql(
                "SELECT @@SESSION.sql_mode, @@SESSION.foreign_key_checks"
            ).one()
            modes = set(str(mode or "").upper().split(","))
            self.strict = bool(modes & {"STRICT_TRANS_TABLES", "STRICT_ALL_TABLES"})
            self.no_zero_date = "NO_ZERO_DATE" in modes
            self.foreign_keys_enforced = bool(foreign_keys)
            checks = connection.exec_driver_sql(
                "SHOW SESSION VARIABLES LIKE 'check_constraint_checks'"
            ).first()  # MariaDB only; MySQL always checks
            self.checks_enforced = checks is None or str(checks[1]).upper() in ("ON", "1")

    def failures(self, op: Operation) -> list[_Failure]:
        source = op.source
        if isinstance(source, alembic_ops.AddColumnOp):
            return self._not_null_added(source)
        if isinstance(source, alembic_ops.CreateIndexOp):
            return self._unique_index(source)
        if self.dialect == "sqlite" and not op.in_batch:
            return []  # SQLite cannot ALTER columns or constraints outside a batch at all
        if isinstance(source, alembic_ops.AlterColumnOp):
            return self._not_null_set(source) + self._narrowed(source)
        if isinstance(source, alembic_ops.CreateUniqueConstraintOp):
            return self._unique(
                source.schema, source.table_name, source.columns,
                _named("unique constraint", source.constraint_name), source.kw,
            )
        if isinstance(source, alembic_ops.CreatePrimaryKeyOp):
            return self._primary_key(source)
        if isinstance(source, alembic_ops.CreateForeignKeyOp):
            return self._orphans(source)
        if isinstance(source, alembic_ops.CreateCheckConstraintOp):
            return self._violations(source)
        return []

    # -- what exists and what the database answers -------------------------------------------

    def _live_columns(self, schema: str | None, table: str) -> set[str]:
        """The table's columns now; empty if there is no such table."""
        if not self.inspector.has_table(table, schema=schema):
            return set()
        return {column["name"] for column in self.inspector.get_columns(table, schema=schema)}

    def _countable(self, schema: str | None, table: str, columns: Iterable[str]) -> bool:
        """The columns exist now and no earlier operation of the plan changed their values."""
        columns = list(columns)
        return (
            set(columns) <= self._live_columns(schema, table)
            and not self.changed.values(schema, table, columns)
        )

    def _count(self, query: sa.Select[Any]) -> int | None:
        """The number ``query`` selects, or None if the database refuses it (in a savepoint,
        so a refusal does not end the transaction on PostgreSQL)."""
        try:
            with self.connection.begin_nested():
                return int(self.connection.execute(query).scalar_one() or 0)
        except sa.exc.SQLAlchemyError:
            return None

    def _rows(
        self, schema: str | None, table: str,
        where: Callable[[sa.TableClause], Any] | None = None, *columns: str,
    ) -> int | None:
        """Rows of the table, or those ``where(table)`` selects (``columns`` are the ones it
        reads)."""
        target = sa.table(table, *(sa.column(c) for c in columns), schema=schema)
        query = sa.select(sa.func.count()).select_from(target)
        if where is not None:
            query = query.where(where(target))
        return self._count(query)

    def _found(self, object_: str, rows: int | None, message: str, fix: str) -> list[_Failure]:
        """A failure when some rows are in the way; an empty table never fails."""
        return [_Failure(object_, rows, message, fix)] if rows else []

    # -- the rules --------------------------------------------------------------------------

    def _not_null_added(self, source: alembic_ops.AddColumnOp) -> list[_Failure]:
        column, schema, table = source.column, source.schema, source.table_name
        fills_rows = (
            column.server_default is not None
            or column.computed is not None
            or column.primary_key
            or (column.identity is not None and self.dialect == "postgresql")
        )
        if column.nullable or fills_rows:
            return []
        if self.mysql and not (self.no_zero_date and _zero_date_default(column.type)):
            return []  # every row gets the type's implicit default
        live = self._live_columns(schema, table)
        if not live or column.name in live or self.changed.values(schema, table, [column.name]):
            return []
        where = _where(schema, table, column.name)
        return self._found(
            where, self._rows(schema, table),
            f"adds NOT NULL column {where} without a server default",
            "add a server_default or backfill in an earlier migration",
        )

    def _not_null_set(self, source: alembic_ops.AlterColumnOp) -> list[_Failure]:
        schema, table, name = source.schema, source.table_name, source.column_name
        if source.modify_nullable is not False or not self._countable(schema, table, [name]):
            return []
        if not self.strict:
            return []  # the NULLs become the type's implicit default
        where = _where(schema, table, name)
        nulls = self._rows(schema, table, lambda t: t.c[name].is_(None), name)
        return self._found(
            where, nulls, f"sets NOT NULL on {where}, which holds NULLs",
            "backfill the NULLs in an earlier migration",
        )

    def _narrowed(self, source: alembic_ops.AlterColumnOp) -> list[_Failure]:
        schema, table, name = source.schema, source.table_name, source.column_name
        enforced = self.dialect == "postgresql" or (self.mysql and self.strict)
        if (
            not enforced or source.modify_type is None
            or not self._countable(schema, table, [name])
        ):
            return []
        new = sqltypes.to_instance(source.modify_type)
        dialect = self.connection.dialect
        if self.dialect == "postgresql":
            if source.existing_type is None or "postgresql_using" in source.kw:
                return []
            old = sqltypes.to_instance(source.existing_type)
            refused = _refused_by_postgresql(old, new)
            old_sql = old.compile(dialect=dialect)
            fix = "correct those values in an earlier migration, or convert them with postgresql_using"
        else:
            live = self._mysql_column(schema, table, name)
            if live is None:
                return []
            try:
                refused = _refused_by_mysql(live, new.compile(dialect=dialect))
            except sa.exc.SQLAlchemyError:
                return []  # a type this dialect cannot render: no rule applies
            old_sql = (
                sqltypes.to_instance(source.existing_type).compile(dialect=dialect)
                if source.existing_type is not None else live.column_type.upper()
            )
            fix = "correct those values in an earlier migration"
        if refused is None:
            return []
        where = _where(schema, table, name)
        return self._found(
            where, self._rows(schema, table, lambda t: refused(t.c[name]), name),
            f"narrows {where} from {old_sql} to {new.compile(dialect=dialect)} over values that "
            "do not fit", fix,
        )

    def _mysql_column(self, schema: str | None, table: str, column: str) -> _MySQLColumn | None:
        """The live column as MariaDB/MySQL copies it in an ALTER."""
        row = self.connection.execute(
            sa.text(
                "SELECT c.DATA_TYPE, c.COLUMN_TYPE, c.CHARACTER_MAXIMUM_LENGTH, c.COLLATION_NAME, "
                "t.TABLE_COLLATION, s.MAXLEN FROM information_schema.COLUMNS c "
                "JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA "
                "AND t.TABLE_NAME = c.TABLE_NAME "
                "LEFT JOIN information_schema.CHARACTER_SETS s "
                "ON s.CHARACTER_SET_NAME = c.CHARACTER_SET_NAME "
                "WHERE c.TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND c.TABLE_NAME = :table "
                "AND c.COLUMN_NAME = :column"
            ),
            {"schema": schema, "table": table, "column": column},
        ).first()
        if row is None:
            return None
        return _MySQLColumn(
            str(row[0]).lower(), str(row[1]), None if row[2] is None else int(row[2]),
            row[3], row[4], None if row[5] is None else int(row[5]),
        )

    def _unique_index(self, source: alembic_ops.CreateIndexOp) -> list[_Failure]:
        schema, table = source.schema, source.table_name
        if not source.unique:
            return []
        if source.index_name in {index["name"] for index in self._indexes(schema, table)}:
            return []  # created already: the statement fails (or does nothing) whatever the rows
        partial = source.kw.get(f"{self.dialect}_where")
        return self._unique(
            schema, table, source.columns, _named("unique index", source.index_name),
            source.kw, sa.text(partial) if isinstance(partial, str) else partial,
        )

    def _indexes(self, schema: str | None, table: str) -> list[Any]:
        if not self.inspector.has_table(table, schema=schema):
            return []
        return list(self.inspector.get_indexes(table, schema=schema))

    def _unique(
        self, schema: str | None, table: str, keys: Sequence[Any], what: str,
        options: dict[str, Any], partial: Any = None,
    ) -> list[_Failure]:
        columns = [key for key in keys if isinstance(key, str)]
        if len(columns) != len(keys):
            return []  # an expression index: which values collide is not known here
        if not self._countable(schema, table, columns):
            return []
        nulls_distinct = not (
            self.dialect == "postgresql" and options.get("postgresql_nulls_not_distinct")
        )
        where = f"{_where(schema, table)} ({', '.join(columns)})"
        prefixes = options.get("mysql_length", options.get("mariadb_length")) if self.mysql else None
        return self._found(
            where, self._duplicates(schema, table, columns, nulls_distinct, partial, prefixes),
            f"adds {what} on {where} over duplicate values",
            "remove the duplicates in an earlier migration",
        )

    def _duplicates(
        self, schema: str | None, table: str, columns: list[str], nulls_distinct: bool,
        partial: Any = None, prefixes: int | dict[str, int] | None = None,
    ) -> int | None:
        """Rows whose key another row shares (a key with a NULL shares nothing when
        ``nulls_distinct``); ``prefixes``: the MariaDB/MySQL prefix length of every column, or
        by column name."""
        target = sa.table(table, *(sa.column(c) for c in columns), schema=schema)
        keys: list[Any] = [target.c[c] for c in columns]
        if prefixes is not None:
            lengths = prefixes if isinstance(prefixes, dict) else dict.fromkeys(columns, prefixes)
            keys = [
                sa.func.left(key, lengths[c]) if c in lengths else key
                for c, key in zip(columns, keys)
            ]
        groups = (
            sa.select(sa.func.count().label("members"))
            .select_from(target)
            .group_by(*keys)
            .having(sa.func.count() > 1)
        )
        if nulls_distinct:
            groups = groups.where(*(key.is_not(None) for key in keys))
        if partial is not None:
            groups = groups.where(partial)
        shared = groups.subquery()
        return self._count(sa.select(sa.func.coalesce(sa.func.sum(shared.c.members), 0)))

    def _primary_key(self, source: alembic_ops.CreatePrimaryKeyOp) -> list[_Failure]:
        schema, table, columns = source.schema, source.table_name, list(source.columns)
        if not self._countable(schema, table, columns):
            return []
        where = f"{_where(schema, table)} ({', '.join(columns)})"
        what = _named("primary key", source.constraint_name)
        duplicates = self._duplicates(schema, table, columns, nulls_distinct=True)
        # PostgreSQL and MariaDB/MySQL make key columns NOT NULL (the latter converting NULLs to
        # the implicit default, then maybe duplicates, when not strict).
        if not (self.dialect == "postgresql" or (self.mysql and self.strict)):
            return self._found(
                where, duplicates, f"adds {what} on {where} over duplicate keys",
                "remove the duplicates in an earlier migration",
            )
        nulls = self._rows(
            schema, table, lambda t: sa.or_(*(t.c[c].is_(None) for c in columns)), *columns
        )
        rows = None if duplicates is None or nulls is None else duplicates + nulls
        return self._found(
            where, rows, f"adds {what} on {where} over NULL or duplicate keys",
            "fill the NULLs and remove the duplicates in an earlier migration",
        )

    def _orphans(self, source: alembic_ops.CreateForeignKeyOp) -> list[_Failure]:
        schema, referent_schema = source.kw.get("source_schema"), source.kw.get("referent_schema")
        local, remote = list(source.local_cols), list(source.remote_cols)
        unchecked = (
            not self.foreign_keys_enforced
            or source.kw.get("postgresql_not_valid")
            or (source.kw.get("match") or "SIMPLE").upper() != "SIMPLE"
            or len(local) != len(remote)
        )
        if (
            unchecked
            or not self._countable(schema, source.source_table, local)
            or not self._countable(referent_schema, source.referent_table, remote)
        ):
            return []
        child = sa.table(source.source_table, *(sa.column(c) for c in local), schema=schema)
        parent = sa.table(
            source.referent_table, *(sa.column(c) for c in remote), schema=referent_schema
        ).alias("referent")
        matched = sa.exists().where(
            *(parent.c[r] == child.c[c] for c, r in zip(local, remote))
        )
        query = (
            sa.select(sa.func.count())
            .select_from(child)
            .where(*(child.c[c].is_not(None) for c in local), ~matched)
        )
        where = f"{_where(schema, source.source_table)} ({', '.join(local)})"
        referent = _where(referent_schema, source.referent_table)
        return self._found(
            where, self._count(query),
            f"adds {_named('foreign key', source.constraint_name)} on {where} -> "
            f"{referent} ({', '.join(remote)}) over rows that match no {referent} row",
            f"delete or correct those rows (or set their {', '.join(local)} to NULL) "
            "in an earlier migration",
        )

    def _violations(self, source: alembic_ops.CreateCheckConstraintOp) -> list[_Failure]:
        schema, table = source.schema, source.table_name
        if (
            source.kw.get("postgresql_not_valid")
            or not self.checks_enforced
            or not self.inspector.has_table(table, schema=schema)
            or self.changed.table(schema, table)
        ):
            return []
        condition = source.condition
        # A NULL condition passes a CHECK, and NOT NULL is NULL: such rows are not counted.
        violated = (
            sa.text(f"NOT ({condition})") if isinstance(condition, str) else sa.not_(condition)
        )
        where = _where(schema, table)
        return self._found(
            where, self._rows(schema, table, lambda _table: violated),
            f"adds {_named('check constraint', source.constraint_name)} on {where} "
            "over rows that violate it",
            "correct those rows in an earlier migration",
        )


def _named(what: str, name: Any) -> str:
    return f"{what} {name}" if name else what


def _where(schema: str | None, table: str, column: str | None = None) -> str:
    name = f"{schema}.{table}" if schema else table
    return f"{name}.{column}" if column else name


def _refused_by_postgresql(
    old: sa.types.TypeEngine[Any], new: sa.types.TypeEngine[Any]
) -> Condition | None:
    """``column -> condition`` true for the values PostgreSQL refuses when ALTER COLUMN TYPE
    narrows ``old`` to ``new``; None when it refuses none (it rounds fractions, cuts the time
    of day) or the change does not narrow."""
    if narrows(old, new) is None:
        return None
    if isinstance(new, sa.String) and new.length is not None:  # a shorter string
        length = new.length
        # Excess characters that are all spaces are cut silently; anything else is an error.
        return lambda c: sa.func.length(sa.func.rtrim(sa.cast(c, sa.Text))) > length
    limit = integer_limit(new)
    if limit is not None:
        def out_of_range(c: Any) -> Any:
            rounded = sa.func.round(sa.cast(c, sa.Numeric))
            return sa.or_(rounded < -limit, rounded >= limit)
        return out_of_range
    if isinstance(new, sa.Numeric) and not isinstance(new, sa.Float) and new.precision is not None:
        scale = new.scale or 0
        bound = 10 ** (new.precision - scale)
        return lambda c: sa.func.abs(sa.func.round(sa.cast(c, sa.Numeric), scale)) >= bound
    return None


def _zero_date_default(type_: Any) -> bool:
    """MariaDB/MySQL fill a new NOT NULL column of this type with a zero date: DATE and
    DATETIME (a TIMESTAMP gets a real value)."""
    type_ = sqltypes.to_instance(type_)
    return isinstance(type_, sa.Date) or (
        isinstance(type_, sa.DateTime) and not isinstance(type_, sa.TIMESTAMP)
    )


class _MySQLColumn(NamedTuple):
    """A live MariaDB/MySQL column: what decides how an ALTER copies its values."""

    data_type: str  # information_schema DATA_TYPE, lower case: varchar, int, decimal...
    column_type: str  # as declared: varchar(200), int(10) unsigned...
    length: int | None  # characters, for strings
    collation: str | None
    table_collation: str | None
    bytes_per_character: int | None


def _refused_by_mysql(old: _MySQLColumn, new: str) -> Condition | None:
    """``column -> condition`` true for the values MariaDB/MySQL in strict mode refuse when an
    ALTER converts ``old`` to ``new`` (the type as compiled for the dialect); None when it
    refuses none or the conversion is not one whose rule is known."""
    string = re.fullmatch(r"(VARCHAR|CHAR)\((\d+)\)(.*)", new)
    if string is not None and old.data_type in MYSQL_STRINGS:
        kind, length, extra = string[1], int(string[2]), string[3]

        def too_long(c: Any) -> Any:
            return sa.func.char_length(c) > length

        # VARCHAR to VARCHAR in the same collation (the column takes the table's unless the
        # type names one) with a length prefix of the same size is copied byte for byte and
        # any cut character is an error.
        per_character = old.bytes_per_character or 0
        if (
            kind == "VARCHAR" and old.data_type == "varchar" and not extra
            and old.collation is not None and old.collation == old.table_collation
            and old.length is not None and per_character > 0
            and (old.length * per_character > 255) == (length * per_character > 255)
        ):
            return too_long
        # Any other copy stores the value as a new one: excess whitespace is cut silently.

        def important_excess(c: Any) -> Any:
            excess = sa.func.substring(c, length + 1)
            for space in MYSQL_SPACES:
                excess = sa.func.replace(excess, space, "")
            return sa.and_(too_long(c), sa.func.char_length(excess) > 0)
        return important_excess
    if old.data_type not in MYSQL_NUMBERS:
        return None
    integer = re.fullmatch(r"([A-Z]+)(?:\(\d+\))?( UNSIGNED)?( ZEROFILL)?", new)
    if integer is not None and integer[1] in MYSQL_INTEGER_BITS:
        bits = MYSQL_INTEGER_BITS[integer[1]]
        if integer[2]:  # UNSIGNED refuses every negative value, even one that rounds to 0
            return lambda c: sa.or_(c < 0, sa.func.round(c) > 2**bits - 1)
        limit = 2 ** (bits - 1)
        return lambda c: sa.or_(sa.func.round(c) < -limit, sa.func.round(c) >= limit)
    decimal = re.fullmatch(r"(?:NUMERIC|DECIMAL)(?:\((\d+)(?:, ?(\d+))?\))?( UNSIGNED)?( ZEROFILL)?", new)
    if decimal is not None:
        precision = int(decimal[1]) if decimal[1] else 10  # MariaDB/MySQL: DECIMAL = (10, 0)
        scale = int(decimal[2]) if decimal[2] else 0
        bound = 10 ** (precision - scale)

        def out_of_range(c: Any) -> Any:
            too_big = sa.func.abs(sa.func.round(c, scale)) >= bound
            return sa.or_(too_big, c < 0) if decimal[3] else too_big
        return out_of_range
    return None
