"""Where the statements a partly applied step committed are checked against the live schema,
and undone when each has a known inverse (MariaDB/MySQL, whose DDL commits at once).

A statement is read into an :class:`Effect` (create table, add column, create index, add
constraint, rename; drops and the rest are read only to be checked, or not at all). Its inverse is
run only when it cannot lose data: a table is dropped only while it holds no row, a column only
while every value is its default or NULL, both checked with the table write-locked so no row can
arrive between the check and the drop. Indexes and constraints hold no data. A rename goes back
only to a free name. Anything else has no known inverse and stops the undo before it starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .wording import plural

#: An identifier as MariaDB/MySQL write it: `quoted` (doubled backquotes inside) or bare.
_IDENT = r"(?:`(?:[^`]|``)+`|[\w$]+)"
_NAME = rf"(?:{_IDENT}\.)?({_IDENT})"
#: Words that start an ALTER TABLE ... ADD/DROP clause about something other than a column.
_NOT_COLUMN = {"CONSTRAINT", "INDEX", "KEY", "UNIQUE", "PRIMARY", "FOREIGN", "FULLTEXT", "SPATIAL",
               "CHECK", "PERIOD", "SYSTEM", "IF", "PARTITION"}

CREATE_TABLE = "create table"
ADD_COLUMN = "add column"
CREATE_INDEX = "create index"
ADD_FOREIGN_KEY = "add foreign key"
ADD_CHECK = "add check"
RENAME_TABLE = "rename table"
RENAME_COLUMN = "rename column"
DROP_TABLE = "drop table"
DROP_COLUMN = "drop column"
DROP_INDEX = "drop index"
DROP_CONSTRAINT = "drop constraint"
#: What can be put back without losing anything (the drops can be checked, not undone).
UNDOABLE = {CREATE_TABLE, ADD_COLUMN, CREATE_INDEX, ADD_FOREIGN_KEY, ADD_CHECK, RENAME_TABLE, RENAME_COLUMN}


@dataclass(frozen=True)
class Effect:
    """What one DDL statement does to the schema: ``kind`` on ``table`` (``name``: the column,
    index or constraint; for renames ``table``/``name`` are the new names, ``old`` the old one)."""

    statement: str
    kind: str
    table: str
    name: str | None = None
    old: str | None = None

    def inverse(self) -> str:
        """The statement that undoes this one (only for kinds in UNDOABLE)."""
        t = quote(self.table)
        if self.kind == CREATE_TABLE:
            return f"DROP TABLE {t}"
        if self.kind == ADD_COLUMN:
            return f"ALTER TABLE {t} DROP COLUMN {quote(self.name)}"
        if self.kind == CREATE_INDEX:
            return f"DROP INDEX {quote(self.name)} ON {t}"
        if self.kind == ADD_FOREIGN_KEY:
            return f"ALTER TABLE {t} DROP FOREIGN KEY {quote(self.name)}"
        if self.kind == ADD_CHECK:
            return f"ALTER TABLE {t} DROP CONSTRAINT {quote(self.name)}"
        if self.kind == RENAME_TABLE:
            return f"RENAME TABLE {t} TO {quote(self.old)}"
        if self.kind == RENAME_COLUMN:
            return f"ALTER TABLE {t} RENAME COLUMN {quote(self.name)} TO {quote(self.old)}"
        raise ValueError(f"no inverse for {self.kind}")


def quote(name: str | None) -> str:
    return "`" + (name or "").replace("`", "``") + "`"


def _unquote(text: str) -> str:
    return text[1:-1].replace("``", "`") if text.startswith("`") else text


def _single_clause(text: str) -> bool:
    """No top-level comma (``ADD COLUMN a INT, ADD COLUMN b INT`` is two clauses)."""
    from .statements import top_level  # sqlparse: not loaded by the commands that only look

    return not any(char == "," and depth == 0 for _index, char, depth in top_level(text))


def read(statement: str) -> Effect | None:
    """The schema effect of one statement, or None when it is not one read here."""
    text = " ".join(statement.split()).rstrip(";")
    flags = re.IGNORECASE
    if found := re.match(rf"CREATE TABLE (?:IF NOT EXISTS )?{_NAME}\s*\(", text, flags):
        return Effect(text, CREATE_TABLE, _unquote(found.group(1)))
    if found := re.fullmatch(rf"DROP TABLE (?:IF EXISTS )?{_NAME}", text, flags):
        return Effect(text, DROP_TABLE, _unquote(found.group(1)))
    if found := re.match(rf"CREATE (?:UNIQUE |FULLTEXT |SPATIAL )?INDEX ({_IDENT}) ON {_NAME}\s*\(", text, flags):
        return Effect(text, CREATE_INDEX, _unquote(found.group(2)), _unquote(found.group(1)))
    if found := re.fullmatch(rf"DROP INDEX ({_IDENT}) ON {_NAME}", text, flags):
        return Effect(text, DROP_INDEX, _unquote(found.group(2)), _unquote(found.group(1)))
    if found := re.fullmatch(rf"RENAME TABLE {_NAME} TO {_NAME}", text, flags):
        return Effect(text, RENAME_TABLE, _unquote(found.group(2)), old=_unquote(found.group(1)))
    found = re.match(rf"ALTER TABLE {_NAME} (.*)$", text, flags)
    if found is None or not _single_clause(found.group(2)):
        return None
    table, clause = _unquote(found.group(1)), found.group(2)
    return _alter(text, table, clause)


def _alter(text: str, table: str, clause: str) -> Effect | None:
    flags = re.IGNORECASE
    if found := re.match(rf"ADD CONSTRAINT ({_IDENT}) (FOREIGN KEY|UNIQUE|CHECK)\b", clause, flags):
        kind = {"FOREIGN KEY": ADD_FOREIGN_KEY, "UNIQUE": CREATE_INDEX, "CHECK": ADD_CHECK}
        return Effect(text, kind[found.group(2).upper()], table, _unquote(found.group(1)))
    if found := re.match(rf"ADD (?:UNIQUE )?(?:INDEX|KEY) ({_IDENT})\s*\(", clause, flags):
        return Effect(text, CREATE_INDEX, table, _unquote(found.group(1)))
    if (found := re.match(rf"ADD (?:COLUMN )?({_IDENT}) ", clause, flags)) and found.group(1).upper() not in _NOT_COLUMN:
        return Effect(text, ADD_COLUMN, table, _unquote(found.group(1)))
    if found := re.fullmatch(rf"DROP (?:FOREIGN KEY|CONSTRAINT|CHECK) ({_IDENT})", clause, flags):
        return Effect(text, DROP_CONSTRAINT, table, _unquote(found.group(1)))
    if found := re.fullmatch(rf"DROP (?:INDEX|KEY) ({_IDENT})", clause, flags):
        return Effect(text, DROP_INDEX, table, _unquote(found.group(1)))
    if (found := re.fullmatch(rf"DROP (?:COLUMN )?({_IDENT})", clause, flags)) and found.group(1).upper() not in _NOT_COLUMN:
        return Effect(text, DROP_COLUMN, table, _unquote(found.group(1)))
    if found := re.fullmatch(rf"RENAME (?:TO |AS )?{_NAME}", clause, flags):
        return Effect(text, RENAME_TABLE, _unquote(found.group(1)), old=table)
    if found := re.fullmatch(rf"RENAME COLUMN ({_IDENT}) TO ({_IDENT})", clause, flags):
        return Effect(text, RENAME_COLUMN, table, _unquote(found.group(2)), _unquote(found.group(1)))
    return None


# -- the live schema ------------------------------------------------------------------------------


def _count(connection: Connection, sql: str, **params: str | None) -> int:
    return int(connection.execute(sa.text(sql), params).scalar() or 0)


def _has_table(connection: Connection, table: str) -> bool:
    return bool(_count(
        connection, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME = :t", t=table,
    ))


def _has_column(connection: Connection, table: str, column: str | None) -> bool:
    return bool(_count(
        connection, "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME = :t AND COLUMN_NAME = :c", t=table, c=column,
    ))


def _has_index(connection: Connection, table: str, name: str | None) -> bool:
    return bool(_count(
        connection, "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME = :t AND INDEX_NAME = :n", t=table, n=name,
    ))


def _has_constraint(connection: Connection, table: str, name: str | None, kind: str | None = None) -> bool:
    typed = " AND CONSTRAINT_TYPE = :k" if kind else ""
    return bool(_count(
        connection, "SELECT COUNT(*) FROM information_schema.TABLE_CONSTRAINTS WHERE "
        f"CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = :t AND CONSTRAINT_NAME = :n{typed}",
        t=table, n=name, k=kind,
    ))


def in_place(connection: Connection, effect: Effect) -> bool:
    """Is the statement's effect in the live schema now (a created table exists, a dropped
    column is gone...)?"""
    kind, table, name = effect.kind, effect.table, effect.name
    try:
        if kind == CREATE_TABLE:
            return _has_table(connection, table)
        if kind == DROP_TABLE:
            return not _has_table(connection, table)
        if kind == ADD_COLUMN:
            return _has_column(connection, table, name)
        if kind == DROP_COLUMN:
            return not _has_column(connection, table, name)
        if kind == CREATE_INDEX:
            return _has_index(connection, table, name)
        if kind == DROP_INDEX:
            return not _has_index(connection, table, name)
        if kind == ADD_FOREIGN_KEY:
            return _has_constraint(connection, table, name, "FOREIGN KEY")
        if kind == ADD_CHECK:
            return _has_constraint(connection, table, name, "CHECK")
        if kind == DROP_CONSTRAINT:
            return not _has_constraint(connection, table, name)
        if kind == RENAME_TABLE:
            return _has_table(connection, table) and not _has_table(connection, effect.old or "")
        if kind == RENAME_COLUMN:
            return _has_column(connection, table, name) and not _has_column(connection, table, effect.old)
        raise ValueError(kind)
    finally:
        connection.rollback()


# -- undoing --------------------------------------------------------------------------------------


class CannotUndo(Exception):
    """One of the statements has no inverse that is safe now; nothing was undone."""


class UndoFailed(Exception):
    """An inverse failed part-way: ``undone`` went back, the rest did not."""

    def __init__(self, reason: str, undone: list[Effect], left: list[Effect]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.undone = undone
        self.left = left


def plan_undo(connection: Connection, statements: list[str]) -> list[Effect]:
    """The effects to undo, last first: every statement must be read and have an inverse;
    one whose effect is no longer in place needs none. Raises CannotUndo naming the first that
    stops it (data it would lose, an unknown statement, a taken name)."""
    effects: list[Effect] = []
    for text in statements:
        effect = read(text)
        if effect is None or effect.kind not in UNDOABLE:
            raise CannotUndo(f"{_short(text)} has no known inverse")
        effects.append(effect)
    wanted = []
    tables: dict[str, str] = {}  # a table's name in an earlier statement -> its name now
    columns: dict[tuple[str, str], str] = {}  # (table now, column then) -> column now
    for effect in reversed(effects):
        live = _as_now(effect, tables, columns)
        if effect.kind == RENAME_TABLE and effect.old:
            tables[effect.old] = live.table
        elif effect.kind == RENAME_COLUMN and effect.old and effect.name:
            columns[(live.table, effect.old)] = columns.get((live.table, effect.name), effect.name)
        if not in_place(connection, live):
            continue  # undone by hand already: nothing to do for it
        blocker = _blocker(connection, live)
        connection.rollback()
        if blocker:
            raise CannotUndo(blocker)
        wanted.append(effect)
    return wanted


def _as_now(effect: Effect, tables: dict[str, str], columns: dict[tuple[str, str], str]) -> Effect:
    """``effect`` under the names later statements gave its table and column (checks run on
    the schema as it is; the inverses run in reverse order, after the later renames went back)."""
    table = tables.get(effect.table, effect.table)
    name = effect.name
    if effect.kind in (ADD_COLUMN, RENAME_COLUMN) and name:
        name = columns.get((table, name), name)
    return replace(effect, table=table, name=name)


def _blocker(connection: Connection, effect: Effect) -> str | None:
    """Why undoing ``effect`` now would lose data or clash, or None."""
    if effect.kind == CREATE_TABLE:
        rows = _count(connection, f"SELECT COUNT(*) FROM {quote(effect.table)}")
        if rows:
            return f"table {effect.table} holds {plural(rows, 'row')}"
        children = connection.execute(sa.text(
            "SELECT DISTINCT TABLE_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE "
            "CONSTRAINT_SCHEMA = DATABASE() AND REFERENCED_TABLE_NAME = :t AND TABLE_NAME <> :t"
        ), {"t": effect.table}).scalars().all()
        if children:
            return f"table {effect.table} is referenced by {', '.join(sorted(children))}"
    elif effect.kind == ADD_COLUMN:
        kept = _kept_values(connection, effect.table, effect.name)
        if kept:
            return f"column {effect.table}.{effect.name} holds {plural(kept, 'value')} other than its default"
    elif effect.kind == RENAME_TABLE and _has_table(connection, effect.old or ""):
        return f"table {effect.old} exists again"
    elif effect.kind == RENAME_COLUMN and _has_column(connection, effect.table, effect.old):
        return f"column {effect.table}.{effect.old} exists again"
    return None


def _kept_values(connection: Connection, table: str, column: str | None) -> int:
    """Values of the column that are neither NULL nor its default (without a default: any
    non-NULL value counts, so only an empty or all-NULL column goes)."""
    t, c = quote(table), quote(column)
    default = connection.execute(sa.text(
        "SELECT COLUMN_DEFAULT FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME = :t AND COLUMN_NAME = :c"
    ), {"t": table, "c": column}).scalar()
    if default is None:  # no default (DEFAULT(c) would fail)
        return _count(connection, f"SELECT COUNT(*) FROM {t} WHERE {c} IS NOT NULL")
    return _count(connection, f"SELECT COUNT(*) FROM {t} WHERE NOT ({c} <=> DEFAULT({c}))")


def _parents(connection: Connection, table: str) -> list[str]:
    """Tables ``table`` has foreign keys to (LOCK TABLES needs them too)."""
    return sorted(connection.execute(sa.text(
        "SELECT DISTINCT REFERENCED_TABLE_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS "
        "WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = :t AND REFERENCED_TABLE_NAME <> :t"
    ), {"t": table}).scalars().all())


def undo(connection: Connection, effects: list[Effect]) -> list[str]:
    """Run the inverses of ``effects`` (from plan_undo) in order; returns the statements run.
    A drop that could lose data runs with the table write-locked after checking again; each
    effect is checked gone afterwards. Raises UndoFailed if one does not go back."""
    ran: list[str] = []
    for number, effect in enumerate(effects):
        inverse = effect.inverse()
        try:
            if effect.kind in (CREATE_TABLE, ADD_COLUMN):
                _locked_drop(connection, effect, inverse)
            else:
                connection.exec_driver_sql(inverse)
                connection.commit()
            if in_place(connection, effect):
                raise UndoFailed(f"{_short(inverse)} left {effect.kind} in place", effects[:number], effects[number:])
        except (sa.exc.DBAPIError, CannotUndo) as exc:
            if connection.in_transaction():
                connection.rollback()
            why = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise UndoFailed(f"{_short(inverse)} failed: {why}", effects[:number], effects[number:]) from None
        ran.append(inverse)
    return ran


def _locked_drop(connection: Connection, effect: Effect, inverse: str) -> None:
    """Check and drop with the table write-locked: no row can arrive in between."""
    parents = _parents(connection, effect.table)
    tables = ", ".join([f"{quote(effect.table)} WRITE", *(f"{quote(p)} READ" for p in parents)])
    connection.rollback()
    connection.exec_driver_sql(f"LOCK TABLES {tables}")
    try:
        blocker = _blocker(connection, effect)
        if blocker:
            raise CannotUndo(blocker)
        connection.exec_driver_sql(inverse)
    finally:
        connection.exec_driver_sql("UNLOCK TABLES")
        connection.commit()


def _short(text: str, width: int = 120) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
