"""How much data a plan would destroy, counted on the live database by following the plan.

The plan is simulated operation by operation on a *shadow* of the schema: each table and column
keeps its current name (renames are followed, also inside ``batch_alter_table`` and raw
``ALTER TABLE ... RENAME``) and remembers where its data is in the database being counted.
Tables and columns created by the plan start empty; a column filled by a plain copy
(``UPDATE t SET new = old``, ``INSERT INTO t2 SELECT ... FROM t``) keeps the data of its source,
so dropping the source afterwards loses nothing. Losses are counted with read-only queries:
rows of a dropped or emptied table, non-NULL values of a dropped column, values a narrowing type
cannot hold, rows a ``DELETE ... WHERE`` removes (and the rows ``ON DELETE CASCADE`` removes with
them), non-NULL values an ``UPDATE`` overwrites.

Two clocks, one simulation: ``assess`` counts a whole plan on the database as it is before the
plan (``Shadow(counting="baseline")``); the guard counts each step again inside its own
transaction as it runs, and follows statements of steps that could not be read as they reach
the database (``Shadow(counting="current")``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Inspector
from sqlalchemy.sql import sqltypes

from .analysis import Operation, integer_limit, operations
from .errors import EXIT_REFUSED, DataLossError, RollbackError  # noqa: F401 - DataLossError: its home was here
from .plan import Plan, Step
from .project import Project
from .statements import (
    AddColumn,
    AddForeignKey,
    Clause,
    Convert,
    CopyRows,
    CreateTable,
    DeleteRows,
    DropColumns,
    DropTables,
    Effect,
    Overwrite,
    Rename,
    Target,
    Uncountable,
    UpdateRows,
    plain_column,
    value_rows,
)
from .wording import plural

#: ``rows`` when a loss cannot be counted before it happens.
UNKNOWN = -1
Counting = Literal["baseline", "current"]


@dataclass(frozen=True)
class Loss:
    """What one operation would take away from data that exists now.

    ``table``/``column`` name where the data is when it is counted (before a plan: the live
    name; as a step runs: its name at that moment); ``rows`` is rows of a table, or values of a
    column, or UNKNOWN (-1) with the reason why it cannot be counted."""

    table: str
    column: str | None  # None = whole rows of the table
    rows: int
    reason: str
    schema: str | None = None
    #: Which rows, when a statement takes only some (``DELETE/UPDATE ... WHERE``): an archive
    #: then keeps those rows, not the whole table. Set only when counting the database as it is.
    rows_where: RowsWhere | None = None


@dataclass(frozen=True)
class RowsWhere:
    """``[prefix] SELECT ... FROM <table> AS alias WHERE condition``: the rows a statement acts on."""

    prefix: str
    alias: str
    condition: str


class _Column:
    """A column as the plan sees it: whose data it holds and whether the run wrote it."""

    __slots__ = ("source", "created")

    def __init__(self, source: tuple[str | None, str, str] | object, created: bool) -> None:
        #: (schema, table, column) in the counted database, or a marker unique to this column
        #: when the run created it (nothing to count).
        self.source = source
        self.created = created

    def copy(self) -> _Column:
        return _Column(self.source, self.created)


_fresh = itertools.count()


def _created() -> _Column:
    return _Column(("created", next(_fresh)), created=True)


@dataclass
class _Table:
    """A table as the plan sees it; ``origin`` is its name in the counted database (None: the
    run created it)."""

    name: str
    schema: str | None
    origin: str | None
    columns: dict[str, _Column]


class Shadow:
    """The schema as a plan (or a running step) changes it; ``apply`` returns what each
    operation would destroy.

    ``counting="baseline"``: the database is as it was before the first operation (a plan
    being assessed): counts go to the origin of each object. ``counting="current"``: the
    database moves with the operations (statements seen as they run): counts go to the
    current names. ``exempt`` names tables ``(table, None)`` and columns ``(table, column)``
    an earlier step of this run created: what they hold, the run wrote.
    """

    def __init__(
        self,
        connection: Connection,
        counting: Counting = "baseline",
        exempt: Iterable[tuple[str, str | None]] = (),
        dry: bool = False,
    ) -> None:
        self.connection = connection
        self.counting = counting
        self.exempt = set(exempt)
        self.inspector: Inspector = sa.inspect(connection)
        self.tables: dict[tuple[str | None, str], _Table | None] = {}
        self.dialect = connection.dialect
        self.quote = connection.dialect.identifier_preparer.quote
        #: With ``dry``, nothing is counted: the tables a count would read are collected in
        #: ``touched`` (to lock them before counting for real).
        self.dry = dry
        self.touched: set[tuple[str | None, str | None]] = set()
        self.params: Any = None  # bind parameters of the statement being followed
        self._fk_cache: dict[str | None, dict[tuple[str | None, str], list[dict[str, Any]]]] = {}
        #: Foreign keys the operations followed so far add (not in the counted database yet).
        self.added_keys: list[AddForeignKey] = []
        #: Columns by table of the default schema, when read at once (``read_catalog``).
        self._catalog: dict[str, list[Any]] = {}

    # -- the shadow schema -------------------------------------------------------------------

    def table(self, name: str, schema: str | None = None) -> _Table | None:
        """The table now called ``name``, or None if it does not exist (as far as we know)."""
        key = (schema, name)
        if key not in self.tables:
            self.tables[key] = self._from_database(name, schema)
        return self.tables[key]

    def read_catalog(self, names: Iterable[str]) -> None:
        """Read the columns of the default schema's tables ``names`` at once (PostgreSQL: one
        catalog query instead of two per table), for a plan that touches many tables; a table
        it does not list (a view, another schema) is still asked for on its own."""
        self._catalog = {
            name: columns for (_schema, name), columns
            in self.inspector.get_multi_columns(filter_names=sorted(names)).items()
        }

    def _from_database(self, name: str, schema: str | None) -> _Table | None:
        listed = self._catalog.get(name) if schema is None else None
        if listed is None:
            if not self.inspector.has_table(name, schema=schema):
                return None
            listed = self.inspector.get_columns(name, schema=schema)
        whole = (name, None) in self.exempt
        columns = {
            c["name"]: _created() if whole or (name, c["name"]) in self.exempt
            else _Column((schema, name, c["name"]), created=False)
            for c in listed
        }
        return _Table(name, schema, None if whole else name, columns)

    def created_names(self) -> set[tuple[str, str | None]]:
        """What the run created, under today's names: the next step's ``exempt``."""
        names = {entry for entry in self.exempt if (None, entry[0]) not in self.tables}
        for table in self.tables.values():
            if table is None:
                continue
            if table.origin is None and all(c.created for c in table.columns.values()):
                names.add((table.name, None))
            names.update((table.name, name) for name, c in table.columns.items() if c.created)
        return names

    def _holders(self, source: object, skip: _Table | None = None, column: str | None = None) -> bool:
        """Does a column other than ``skip.column`` (or any column of ``skip`` when ``column``
        is None) still hold the data of ``source``?"""
        for table in self.tables.values():
            if table is None:
                continue
            for name, held in table.columns.items():
                if held.source != source:
                    continue
                if table is skip and (column is None or name == column):
                    continue
                return True
        return False

    # -- applying operations -----------------------------------------------------------------

    def apply(self, effects: Sequence[Effect], reason: str) -> list[Loss]:
        """What ``effects`` (one operation's) destroy, counted now; then the shadow changes."""
        losses: list[Loss] = []
        for effect in effects:
            losses += self._apply(effect, reason)
        return losses

    def _apply(self, effect: Effect, reason: str) -> list[Loss]:
        if isinstance(effect, CreateTable):
            target = effect.table
            self.tables[(target.schema, target.table)] = _Table(
                target.table, target.schema, None, {c: _created() for c in effect.columns}
            )
            return []
        if isinstance(effect, AddColumn):
            table = self.table(effect.column.table, effect.column.schema)
            if table is not None and effect.column.column:
                table.columns[effect.column.column] = _created()
            return []
        if isinstance(effect, Rename):
            return self._rename(effect)
        if isinstance(effect, AddForeignKey):
            self.added_keys.append(effect)
            return []
        if isinstance(effect, DropTables):
            return self._drop_tables(effect, reason)
        if isinstance(effect, DropColumns):
            losses = []
            for target in effect.columns:
                table = self.table(target.table, target.schema)
                if table is None or target.column not in table.columns:
                    continue
                losses += self._column_loss(table, target.column, reason)
                del table.columns[target.column]
            return losses
        if isinstance(effect, Convert):
            return self._convert(effect, reason)
        if isinstance(effect, DeleteRows):
            return self._delete(effect, reason)
        if isinstance(effect, UpdateRows):
            return self._update(effect, reason)
        if isinstance(effect, CopyRows):
            self._copy(effect)
            return []
        if isinstance(effect, Overwrite):
            return self._overwrite(effect, reason)
        if isinstance(effect, Uncountable):
            return self._uncountable(effect, reason)
        return []  # pragma: no cover - every Effect kind is handled above

    def _rename(self, effect: Rename) -> list[Loss]:
        target = effect.target
        table = self.table(target.table, target.schema)
        if table is None:
            return []
        if target.column is None:
            self.tables[(target.schema, target.table)] = None
            table.name = effect.new_name
            self.tables[(target.schema, effect.new_name)] = table
        elif target.column in table.columns:
            table.columns[effect.new_name] = table.columns.pop(target.column)
        return []

    def _drop_tables(self, effect: DropTables, reason: str) -> list[Loss]:
        losses: list[Loss] = []
        for target in effect.tables:
            table = self.table(target.table, target.schema)
            if table is None:
                continue
            losses += self._table_loss(table, reason)
            if self._cascades and self.dialect.name == "sqlite" and not effect.truncate:
                # SQLite with foreign keys on: DROP TABLE deletes every row first
                losses += self._cascaded(table, None, reason)
            if effect.truncate:
                table.columns = {name: _created() for name in table.columns}
            else:
                self.tables[(target.schema, target.table)] = None
        if effect.truncate and effect.cascade:
            losses += self._truncate_cascade(effect.tables, reason)
        return losses

    def _copy(self, effect: CopyRows) -> None:
        if effect.partial and effect.complete is None:
            return
        source = self.table(effect.source.table, effect.source.schema)
        table = self.table(effect.table.table, effect.table.schema)
        if source is None or table is None:
            return
        taken = list(effect.source_columns or source.columns)
        into = list(effect.columns or table.columns or taken)
        for name, source_name in zip(into, taken, strict=False):
            if source_name in source.columns and (not effect.partial or source_name == effect.complete):
                table.columns[name] = source.columns[source_name].copy()

    # -- losses ------------------------------------------------------------------------------

    def _where(
        self, table: _Table, column: str | None = None
    ) -> tuple[str | None, str | None, str | None]:
        """(schema, table, column) to count for an object as the shadow names it now."""
        if self.counting == "current" or column is None:
            return table.schema, table.origin if self.counting == "baseline" else table.name, column
        source = table.columns[column].source
        assert isinstance(source, tuple) and len(source) == 3
        return source[0], source[1], source[2]

    def _column_loss(self, table: _Table, name: str, reason: str) -> list[Loss]:
        held = table.columns[name]
        if held.created or self._holders(held.source, table, name):
            return []
        schema, where, column = self._where(table, name)
        assert where is not None  # it holds existing data, so it is in the counted database
        values = self._values(schema, where, column)
        return [Loss(where, column, values, f"{reason}: {values} non-NULL values", schema)]

    def _table_loss(self, table: _Table, reason: str) -> list[Loss]:
        existing = [name for name, c in table.columns.items() if not c.created]
        lost = [name for name in existing if not self._holders(table.columns[name].source, table)]
        if not lost:
            return []
        if len(lost) == len(existing) and table.origin is not None:
            schema, where, _ = self._where(table)
            assert where is not None
            rows = self._rows(schema, where)
            return [Loss(where, None, rows, f"{reason}: {rows} rows", schema)]
        return [loss for name in lost for loss in self._column_loss(table, name, reason)]

    def _convert(self, effect: Convert, reason: str) -> list[Loss]:
        """Values a type change (or a ``USING`` rewrite) does not keep: by type rules when both
        types are known and no ``USING`` is given, else by converting each value to the new type
        and back and comparing (a conversion the database refuses cannot be counted)."""
        target = effect.column
        table = self.table(target.table, target.schema)
        if table is None or target.column not in table.columns or table.columns[target.column].created:
            return []
        schema, where, column = self._where(table, target.column)
        assert where is not None and column is not None
        if effect.using is None and effect.old is not None and not isinstance(effect.new, str):
            old, new = sqltypes.to_instance(effect.old), sqltypes.to_instance(effect.new)
            condition = misfits(old, new, self.dialect.name)
            if condition is not None:
                values = self._values(schema, where, column, condition)
                return [Loss(where, column, values, f"{reason}: {_amount(values, 'value')} that do not fit", schema)]
        old_sql = self._type_sql(schema, where, column, effect.old)
        new_sql = effect.new if isinstance(effect.new, str) else self._compiled(effect.new)
        alias = self.quote(target.table)
        current = f"{alias}.{self.quote(target.column)}"
        value = f"({effect.using})" if effect.using else current
        back = f"CAST(CAST({value} AS {new_sql}) AS {old_sql})"
        count = self._count(
            f"SELECT count(*) FROM {self._source(table)} AS {alias} WHERE {current} IS NOT NULL "
            f"AND ({back} IS NULL OR {back} <> {current})", [], (schema, where),
        )
        return [Loss(where, column, count, f"{reason}: {_amount(count, 'value')} that do not "
                                           "come back unchanged", schema)]

    def _type_sql(self, schema: str | None, table: str, column: str, declared: Any) -> str:
        """The column's type as SQL: the declared old type, else the database's own."""
        if declared is not None:
            return self._compiled(declared)
        for found in self.inspector.get_columns(table, schema=schema):
            if found["name"] == column:
                return self._compiled(found["type"])
        return "TEXT"

    def _compiled(self, type_: Any) -> str:
        return str(sqltypes.to_instance(type_).compile(dialect=self.dialect))

    def _delete(self, effect: DeleteRows, reason: str) -> list[Loss]:
        """The rows matched, and what cascades reach: through the database's foreign keys
        (counted), and through keys the run adds (not countable before it runs). Rows of a
        table the run created are its own, but may still be pointed at by rows that existed."""
        table = self.table(effect.table.table, effect.table.schema)
        if table is None:
            return []
        schema, where, _ = self._where(table)
        alias = effect.alias or effect.table.table
        matched = None
        losses: list[Loss] = []
        if where is not None:
            matched = _Matched(self._source(table), alias, effect.using, effect.where, effect.prefix)
        if _holds_existing(table):
            if matched is None:  # a table the plan made from copies: nothing to count it on yet
                return [Loss(table.name, None, UNKNOWN, f"{reason}: not countable before it runs")]
            count = self._count(matched.count_sql(self.quote), matched.positions(), (schema, where))
            losses.append(Loss(where, None, count, f"{reason}: {_amount(count, 'row')}", schema,
                               self._rows_where(matched)))
            if count == 0:
                return losses
        if self._cascades:
            if matched is not None:
                losses += self._cascaded(table, matched, reason)
            losses += self._added_cascades(table, reason)
        return losses

    def _added_cascades(self, table: _Table, reason: str) -> list[Loss]:
        """Rows that existed and point at ``table`` through a key the run adds with an
        ``ON DELETE`` action: the database cannot tell yet which rows a delete reaches."""
        losses = []
        for key in self.added_keys:
            child = self.table(key.column.table, key.column.schema)
            if key.parent != table.name or child is None or not _holds_existing(child):
                continue
            if (key.ondelete or "").upper() in ("CASCADE", "SET NULL", "SET DEFAULT"):
                losses.append(Loss(
                    child.origin or child.name, None, UNKNOWN,
                    f"{reason}: rows of {child.name} that existed point at {table.name} through a "
                    f"foreign key this run adds (ON DELETE {key.ondelete}): not countable before "
                    "it runs", child.schema,
                ))
        return losses

    def _update(self, effect: UpdateRows, reason: str) -> list[Loss]:
        table = self.table(effect.table.table, effect.table.schema)
        if table is None:
            return []
        alias = effect.alias or effect.table.table
        overwritten = [
            column for column, expression in effect.assignments
            if column in table.columns and not table.columns[column].created
            and plain_column(expression) != column  # SET col = col keeps every value
            and _kept_or_filled(expression) != column  # SET col = COALESCE(col, x) fills NULLs
            and not self._holders(table.columns[column].source, table, column)
        ]
        losses: list[Loss] = []
        schema, where, _ = self._where(table)
        if overwritten and where is None:
            losses.append(Loss(table.name, None, UNKNOWN, f"{reason}: not countable before it runs"))
        elif overwritten:
            matched = _Matched(self._source(table), alias, effect.from_, effect.where, effect.prefix)
            filled = " OR ".join(
                f"{self.quote(alias)}.{self.quote(column)} IS NOT NULL" for column in overwritten
            )
            count = self._count(
                matched.count_sql(self.quote, filled), matched.positions(), (schema, where)
            )
            listed = ", ".join(overwritten)
            column = self._where(table, overwritten[0])[2] if len(overwritten) == 1 else None
            losses.append(Loss(
                where, column, count,
                f"{reason}: {_amount(count, 'row')} with non-NULL {listed} overwritten", schema,
                self._rows_where(matched),
            ))
        for column, expression in effect.assignments:
            if column not in table.columns:
                continue
            copied = plain_column(expression)
            whole = effect.from_ is None and (
                effect.where is None
                or _only_fills(effect.where.text, column, copied, table.columns[column].created)
            )
            if copied in table.columns and whole:
                table.columns[column] = table.columns[copied].copy()
            elif effect.where is None and effect.from_ is None:
                table.columns[column] = _created()  # every value is now the run's own
        return losses

    def _overwrite(self, effect: Overwrite, reason: str) -> list[Loss]:
        """An upsert: with its conflict keys and VALUES known, the rows whose keys it names
        (those it overwrites); otherwise unknown, unless the table is empty."""
        target = effect.table
        table = self.table(target.table, target.schema)
        if table is None or not _holds_existing(table):
            return []
        schema, where, _ = self._where(table)
        if where is not None and effect.rows is not None and effect.any_key:
            conflicts = self._conflicts(table, effect)
            if conflicts is not None and effect.deletes:
                return self._delete(DeleteRows(target, None, None, Clause(conflicts)), reason)
            if conflicts is not None:
                count = self._count(
                    f"SELECT count(*) FROM {self._source(table)} AS {self.quote(target.table)} "
                    f"WHERE {conflicts}", [], (schema, where),
                )
                return [Loss(where, None, count, f"{reason}: {_amount(count, 'row')} it overwrites",
                             schema)]
        elif where is not None and effect.rows is not None:
            alias, values = self.quote(target.table), self.quote("rollback_v")
            pairs = " AND ".join(
                f"{alias}.{self.quote(key)} = {values}.column{effect.columns.index(key) + 1}"
                for key in effect.keys
            )
            count = self._count(
                f"SELECT count(*) FROM {self._source(table)} AS {alias} WHERE EXISTS "
                f"(SELECT 1 FROM (VALUES {effect.rows.text}) AS {values} WHERE {pairs})",
                [], (schema, where),
            )
            return [Loss(where, None, count, f"{reason}: {_amount(count, 'row')} it overwrites", schema)]
        rows = self._rows(schema, where) if where is not None else UNKNOWN
        if rows == 0:
            return []
        return [Loss(where or table.name, None, UNKNOWN, f"{reason}: the table has {rows} rows; "
                     "which of them it overwrites is not known before it runs", schema)]

    def _conflicts(self, table: _Table, effect: Overwrite) -> str | None:
        """SQL true for the rows of ``table`` that share a unique key (primary key, unique
        constraint or index) with a row of ``effect``'s VALUES: those an ``ON DUPLICATE KEY
        UPDATE`` overwrites, a ``REPLACE`` deletes. None when that cannot be said: the plan
        renamed the table or its columns, a key is partial, on a prefix or an expression, or
        a key column the statement leaves to its default could collide."""
        schema, where, _ = self._where(table)
        if where is None or self._source(table) != self._name(schema, where) or effect.rows is None:
            return None
        rows = value_rows(effect.rows.text)
        columns = {c["name"]: c for c in self.inspector.get_columns(where, schema=schema)}
        primary = self.inspector.get_pk_constraint(where, schema=schema)["constrained_columns"] or []
        keys: list[list[str | None]] = [list(primary)] if primary else []
        keys += [list(u["column_names"]) for u in self.inspector.get_unique_constraints(where, schema=schema)]
        for index in self.inspector.get_indexes(where, schema=schema):
            if not index["unique"]:
                continue
            options = index.get("dialect_options") or {}
            if any(option.endswith(("_where", "_length")) for option in options):
                return None
            keys.append(list(index["column_names"]))
        alias = self.quote(effect.table.table)
        matches: list[str] = []
        for found in keys:
            key = [name for name in found if name is not None and name in columns]
            if len(key) != len(found):
                return None  # an expression index
            missing = [name for name in key if name not in effect.columns]
            if missing:
                if self._never_collides(missing, columns, primary):
                    continue
                return None
            for row in rows:
                values = [row[effect.columns.index(name)] for name in key]
                if any(value.upper() == "NULL" for value in values):
                    continue  # a NULL collides with nothing
                pairs = " AND ".join(
                    f"{alias}.{self.quote(name)} = {value}" for name, value in zip(key, values)
                )
                matches.append(f"({pairs})")
        return " OR ".join(matches) or "1 = 0"

    def _never_collides(
        self, missing: list[str], columns: dict[str, Any], primary: list[str]
    ) -> bool:
        """Columns an INSERT leaves out get a value no existing row has in its key: a new
        auto-increment (SQLite: rowid) key, or NULL."""
        if missing == primary and len(primary) == 1:
            column = columns[primary[0]]
            if column.get("autoincrement") is True or (
                self.dialect.name == "sqlite" and str(column["type"]).upper() == "INTEGER"
            ):
                return True
        return any(columns[name]["nullable"] and columns[name].get("default") is None for name in missing)

    def _uncountable(self, effect: Uncountable, reason: str) -> list[Loss]:
        target = effect.table
        table = self.table(target.table, target.schema) if target else None
        if target is not None and table is None:
            return []
        if table is not None:
            if not _holds_existing(table):
                return []
            schema, where, _ = self._where(table)
            if where is not None and self._rows(schema, where) == 0:
                return []
            return [Loss(where, None, UNKNOWN, f"{reason}: not countable ({effect.reason})", schema)]
        return [Loss("?", None, UNKNOWN, f"{reason}: not countable ({effect.reason})")]

    # -- cascades ----------------------------------------------------------------------------

    @cached_property
    def _cascades(self) -> bool:
        """Does deleting a parent row act on its children on this connection? Always on
        PostgreSQL and MySQL; on SQLite only with ``PRAGMA foreign_keys=ON`` (a common
        connect listener). Asked the first time a deletion is followed: a shadow that only
        follows creations (most steps) asks nothing."""
        if self.dialect.name != "sqlite":
            return True
        return bool(self.connection.exec_driver_sql("PRAGMA foreign_keys").scalar())

    def _cascaded(self, table: _Table, matched: _Matched | None, reason: str) -> list[Loss]:
        """Rows ``ON DELETE CASCADE`` removes with the deleted ones (and values ``SET NULL`` /
        ``SET DEFAULT`` overwrite), through every level of children. ``matched`` None: every
        row of ``table`` is deleted."""
        schema, parent, _ = self._where(table)
        if parent is None:
            return []
        if matched is None:
            matched = _Matched(self._name(schema, parent), "rollback_p", None, None, None)
        positions = matched.positions()
        prefix = f"{matched.prefix.text} " if matched.prefix and matched.prefix.text else ""
        # (schema, table, how its rows are read, alias, condition true for its deleted rows)
        level = [(schema, parent, matched.source, matched.alias, matched.condition())]
        seen = {(schema, parent)}
        losses: list[Loss] = []
        for depth in range(1, 9):
            following = []
            for parent_schema, parent_name, source, alias, condition in level:
                for child, fk, action in self._children(parent_schema, parent_name):
                    shadowed = self.table(child[1], child[0])
                    if shadowed is None or not _holds_existing(shadowed):
                        continue  # dropped earlier in the plan, or only the run's own rows
                    child_alias = f"rollback_c{depth}"
                    pairs = " AND ".join(
                        f"{self.quote(alias)}.{self.quote(remote)} = "
                        f"{self.quote(child_alias)}.{self.quote(local)}"
                        for local, remote in zip(fk["constrained_columns"], fk["referred_columns"])
                    )
                    deleted = (f"EXISTS (SELECT 1 FROM {source} AS {self.quote(alias)} "
                               f"WHERE ({condition}) AND {pairs})")
                    count = self._count(
                        f"{prefix}SELECT count(*) FROM {self._name(*child)} AS "
                        f"{self.quote(child_alias)} WHERE {deleted}", positions, child,
                    )
                    rows = self._rows_where(_Matched(
                        "", child_alias, None, Clause(deleted, tuple(positions)), matched.prefix
                    ))
                    if action == "CASCADE":
                        losses.append(Loss(child[1], None, count, f"{reason}: {_amount(count, 'row')}"
                                           f" of {child[1]} deleted by ON DELETE CASCADE", child[0],
                                           rows))
                        if child not in seen and count != 0:
                            seen.add(child)
                            following.append((*child, self._name(*child), child_alias, deleted))
                    else:
                        column = fk["constrained_columns"][0]
                        losses.append(Loss(child[1], column, count, f"{reason}: {_amount(count, 'value')}"
                                           f" of {child[1]}.{column} overwritten by ON DELETE {action}",
                                           child[0], rows))
            if not following:
                break
            level = following
        return losses

    def _children(
        self, schema: str | None, parent: str
    ) -> Iterator[tuple[tuple[str | None, str], dict[str, Any], str]]:
        """Foreign keys of tables that act when a row of ``parent`` is deleted."""
        for (child_schema, child), keys in self._foreign_keys(schema).items():
            for fk in keys:
                action = str((fk.get("options") or {}).get("ondelete") or "").upper()
                if (fk.get("referred_schema") or schema) == schema and fk["referred_table"] == parent \
                        and action in ("CASCADE", "SET NULL", "SET DEFAULT"):
                    yield (child_schema if child_schema is not None else schema, child), fk, action

    def referencing(self, tables: set[str], schema: str | None = None) -> set[str]:
        """Tables of ``schema`` whose foreign keys lead, directly or through others, to
        ``tables`` (their rows change when those rows are deleted or updated)."""
        reached = set(tables)
        grown = True
        while grown:
            grown = False
            for (_child_schema, child), keys in self._foreign_keys(schema).items():
                if child not in reached and any(fk["referred_table"] in reached for fk in keys):
                    reached.add(child)
                    grown = True
        return reached - set(tables)

    def _foreign_keys(self, schema: str | None) -> dict[tuple[str | None, str], list[dict[str, Any]]]:
        """Every foreign key of the schema by table, with its ``ondelete`` option."""
        if schema not in self._fk_cache:
            if self.dialect.name == "sqlite" and schema is None:
                found = self._sqlite_foreign_keys()
            else:
                found = self.inspector.get_multi_foreign_keys(schema=schema)
            self._fk_cache[schema] = {key: value for key, value in found.items() if value}
        return self._fk_cache[schema]

    def _sqlite_foreign_keys(self) -> dict[tuple[str | None, str], list[dict[str, Any]]]:
        """SQLite's own list (SQLAlchemy's reflection drops ``ON DELETE`` of inline keys)."""
        found: dict[tuple[str | None, str], list[dict[str, Any]]] = {}
        for table in self.inspector.get_table_names():
            rows = self.connection.exec_driver_sql(
                f"PRAGMA foreign_key_list({self.quote(table)})"
            ).all()
            keys: dict[int, dict[str, Any]] = {}
            for key_id, _seq, referred, local, remote, _update, on_delete, _match in rows:
                fk = keys.setdefault(key_id, {
                    "constrained_columns": [], "referred_columns": [], "referred_schema": None,
                    "referred_table": referred, "options": {"ondelete": on_delete},
                })
                fk["constrained_columns"].append(local)
                fk["referred_columns"].append(remote)
            found[(None, table)] = list(keys.values())
        return found

    def _truncate_cascade(self, targets: Sequence[Target], reason: str) -> list[Loss]:
        """PostgreSQL ``TRUNCATE ... CASCADE`` empties every table whose foreign keys lead,
        directly or through others, to the named ones."""
        reached = {(t.schema, t.table) for t in targets}
        losses: list[Loss] = []
        grown = True
        while grown:
            grown = False
            for schema in {s for s, _ in reached}:
                for (child_schema, child), keys in self._foreign_keys(schema).items():
                    key = (child_schema if child_schema is not None else schema, child)
                    if key in reached:
                        continue
                    if any((fk.get("referred_schema") or schema, fk["referred_table"]) in reached
                           for fk in keys):
                        reached.add(key)
                        grown = True
                        table = self.table(child, key[0])
                        if table is not None:
                            losses += self._table_loss(table, f"{reason} (cascaded)")
                            table.columns = {name: _created() for name in table.columns}
        return losses

    # -- counting ----------------------------------------------------------------------------

    def _rows_where(self, matched: _Matched) -> RowsWhere | None:
        """The rows a statement acts on, for an archive of just those rows: only when the
        condition reads the table itself (no renames to show) and needs no bind parameters."""
        if matched.positions() or matched.source.startswith("("):
            return None
        prefix = matched.prefix.text if matched.prefix else ""
        return RowsWhere(prefix, matched.alias, matched.condition())

    def _name(self, schema: str | None, table: str) -> str:
        return f"{self.quote(schema)}.{self.quote(table)}" if schema else self.quote(table)

    def _source(self, table: _Table) -> str:
        """What a statement on ``table`` reads, in the counted database: the table itself, or,
        when the plan renamed or added columns, a subquery that shows them under their plan
        names (added ones as NULL)."""
        schema, where, _ = self._where(table)
        if self.counting == "current":
            return self._name(schema, where)
        plain = all(
            isinstance(c.source, tuple) and len(c.source) == 3 and c.source[1:] == (where, name)
            for name, c in table.columns.items()
        ) and table.origin == table.name
        if plain:
            return self._name(schema, where)
        listed = []
        for name, held in table.columns.items():
            if held.created or not (isinstance(held.source, tuple) and held.source[1] == where):
                listed.append(f"NULL AS {self.quote(name)}")
            else:
                listed.append(f"{self.quote(held.source[2])} AS {self.quote(name)}")
        return f"(SELECT {', '.join(listed) or '1 AS one'} FROM {self._name(schema, where)})"

    def _rows(self, schema: str | None, table: str | None) -> int:
        if table is None:
            return 0
        return self._count(f"SELECT count(*) FROM {self._name(schema, table)}", [], (schema, table))

    def _values(self, schema: str | None, table: str | None, column: str | None, condition: Any = None) -> int:
        if table is None or column is None:
            return 0
        target = sa.table(table, sa.column(column), schema=schema)
        query = sa.select(sa.func.count(target.c[column])).select_from(target)
        if condition is not None:
            query = query.where(condition(target.c[column]))
        sql = str(query.compile(dialect=self.dialect, compile_kwargs={"literal_binds": True}))
        return self._count(sql, [], (schema, table))

    def _count(self, sql: str, positions: Sequence[int], table: tuple[str | None, str | None]) -> int:
        """One count, in a savepoint so a query the database rejects (UNKNOWN) leaves the
        caller's transaction usable. In a dry run, only note the table it would read."""
        if self.dry:
            self.touched.add(table)
            return 0
        params = _subset(self.params, positions)
        savepoint = self.connection.begin_nested()
        try:
            cursor = self.connection.connection.cursor()
            try:
                if params is None:
                    cursor.execute(sql)
                else:
                    cursor.execute(sql, params)
                value = cursor.fetchone()[0]
            finally:
                cursor.close()
        except Exception:  # noqa: BLE001 - the database's own refusal: cannot be counted
            savepoint.rollback()
            return UNKNOWN
        savepoint.commit()
        return int(value)


def _subset(params: Any, positions: Sequence[int]) -> Any:
    """The bind parameters a derived query keeps: all of a mapping, the given positions of a
    sequence (positional paramstyles)."""
    if params is None or isinstance(params, dict):
        return params
    return tuple(params[i] for i in positions)


def _amount(count: int, noun: str) -> str:
    return f"an unknown number of {noun}s" if count == UNKNOWN else plural(count, noun)


FILLS_NULLS_RE = re.compile(r"^\s*(?:COALESCE|IFNULL|NVL)\s*\((?P<first>[^,()]+),", re.I)


def _kept_or_filled(expression: str) -> str | None:
    """The column ``COALESCE(col, ...)`` (or IFNULL/NVL) keeps when it is not NULL."""
    match = FILLS_NULLS_RE.match(expression)
    return plain_column(match["first"]) if match else None


def _holds_existing(table: _Table) -> bool:
    """Does the table hold data that was there before the run (not only what it wrote)?"""
    return any(not column.created for column in table.columns.values())


def _only_fills(where: str, column: str, copied: str | None, column_is_new: bool) -> bool:
    """A WHERE that still makes ``SET column = copied`` a whole copy: ``copied IS NOT NULL``, or
    ``column IS NULL`` on a column the run created (every value of it is NULL)."""
    condition = " ".join(where.lower().split())
    if copied and condition == f"{copied.lower()} is not null":
        return True
    return column_is_new and condition == f"{column.lower()} is null"


@dataclass
class _Matched:
    """The rows a DELETE/UPDATE acts on, as a condition over ``source AS alias``."""

    source: str
    alias: str
    joined: Clause | None
    where: Clause | None
    prefix: Clause | None

    def condition(self) -> str:
        if self.joined is not None:
            inner = f"SELECT 1 FROM {self.joined.text}"
            if self.where is not None:
                inner += f" WHERE {self.where.text}"
            return f"EXISTS ({inner})"
        return f"({self.where.text})" if self.where is not None else "1 = 1"

    def count_sql(self, quote: Any, extra: str | None = None) -> str:
        condition = self.condition() + (f" AND ({extra})" if extra else "")
        prefix = f"{self.prefix.text} " if self.prefix and self.prefix.text else ""
        return f"{prefix}SELECT count(*) FROM {self.source} AS {quote(self.alias)} WHERE {condition}"

    def positions(self) -> list[int]:
        found: list[int] = []
        for clause in (self.prefix, self.joined, self.where):
            if clause is not None:
                found += clause.params
        return found


def misfits(old: sa.types.TypeEngine[Any], new: sa.types.TypeEngine[Any], dialect: str) -> Any:
    """``column -> condition`` true for values the new type cannot hold; None when that
    cannot be said in portable SQL (then every non-NULL value counts)."""
    mysql = dialect in ("mysql", "mariadb")
    # MariaDB/MySQL: length() counts bytes, and a bare DECIMAL is DECIMAL(10, 0).
    numeric = sa.Numeric(65, 30) if mysql else sa.Numeric()
    if isinstance(new, sa.String) and new.length is not None:
        length = new.length
        if mysql:
            return lambda c: sa.func.char_length(c) > length
        return lambda c: sa.func.length(sa.cast(c, sa.Text)) > length
    limit = integer_limit(new)
    if limit is not None:
        def outside(c: Any) -> Any:
            out = sa.or_(c < -limit, c >= limit)
            if integer_limit(old) is not None:
                return out
            exact = sa.cast(c, numeric)
            return sa.or_(out, exact != sa.func.round(exact))
        return outside
    if isinstance(new, sa.Numeric) and not isinstance(new, sa.Float):
        precision, scale = new.precision, new.scale or 0
        def unfit(c: Any) -> Any:
            exact = sa.cast(c, numeric)
            conditions = [exact != sa.func.round(exact, scale)]
            if precision is not None:
                conditions.append(sa.func.abs(exact) >= 10 ** (precision - scale))
            return sa.or_(*conditions)
        return unfit
    return None


# --- Plans and steps ------------------------------------------------------------------------


@contextmanager
def read_only(connection: Connection) -> Iterator[Connection]:
    """A transaction (or savepoint) that is always rolled back; READ ONLY on PostgreSQL."""
    nested = connection.in_transaction()
    transaction = connection.begin_nested() if nested else connection.begin()
    try:
        if not nested and connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET TRANSACTION READ ONLY")
        yield connection
    finally:
        transaction.rollback()


def count_losses(connection: Connection, ops: Iterable[Operation]) -> list[Loss]:
    """Follow ``ops`` (one migration's, in order) on the database as it is; what they lose."""
    with read_only(connection):
        shadow = Shadow(connection)
        return [loss for op in ops for loss in shadow.apply(op.effects, op.reason)]


@dataclass(frozen=True)
class StepRisk:
    """One operation of a plan's step that destroys data or cannot be judged.

    ``loss`` is the count for a destructive operation whose object holds data now; it is
    None for an operation that needs review (its effect cannot be read without running it)."""

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
        if self.loss is None:
            where = self.operation
            if where.table is None:
                return "?"
            return f"{where.table}.{where.column}" if where.column else where.table
        table = f"{self.loss.schema}.{self.loss.table}" if self.loss.schema else self.loss.table
        return f"{table}.{self.loss.column}" if self.loss.column else table

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
    """Every destructive or unreadable operation of a plan, with counts."""

    risks: list[StepRisk] = field(default_factory=list)

    @property
    def losses(self) -> list[StepRisk]:
        """What makes the plan destroy existing data: the reason to refuse it."""
        return [risk for risk in self.risks if risk.loses_data]

    @property
    def unreviewed(self) -> list[StepRisk]:
        return [risk for risk in self.risks if risk.needs_review]


def step_operations(project: Project, step: Step, dialect: str) -> list[Operation]:
    """What one step does (its migration's upgrade or downgrade, recorded), read once per run;
    a fake step does nothing."""
    if step.fake:
        return []
    cache: dict[tuple[str, str, str], list[Operation]] = project.__dict__.setdefault(
        "_step_operations", {}
    )
    key = (step.migration.revision, step.direction, dialect)
    if key not in cache:
        module = project.script.get_revision(step.migration.revision).module
        cache[key] = operations(module, "upgrade" if step.direction == "up" else "downgrade", dialect)
    return cache[key]


#: From this many destructive operations on, ``assess`` reads the catalog in one query instead
#: of table by table (a long downgrade drops many tables).
CATALOG_AT_ONCE = 10


def assess(project: Project, connection: Connection, plan: Plan) -> DataLossReport:
    """Follow ``plan`` step by step on a shadow of the schema and count, on the live
    database and read-only, what each operation would destroy of the data that exists now."""
    dialect = connection.dialect.name
    found = [(step, op) for step in plan.steps for op in step_operations(project, step, dialect)]
    report = DataLossReport()
    if not any(op.risk == "destroys" for _, op in found):
        report.risks = [StepRisk(step, op) for step, op in found if op.risk == "review"]
        return report
    with read_only(connection):
        shadow = Shadow(connection)
        if sum(op.risk == "destroys" for _, op in found) >= CATALOG_AT_ONCE:
            shadow.read_catalog({op.table for _, op in found if op.table})
        for step, op in found:
            if op.risk == "review":
                report.risks.append(StepRisk(step, op))
            for loss in shadow.apply(op.effects, op.reason):
                report.risks.append(StepRisk(step, op, loss))
    return report
