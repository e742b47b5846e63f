"""What one SQL statement does to data, read with sqlparse and never run.

The same reading serves twice: for the SQL a migration hands to ``op.execute`` (while
``analysis`` records the migration) and for the statements a step that could not be read sends
to the database as it runs (``guard``), so both are judged by the same rules.

``read(sql)`` gives one ``Reading`` per statement: a risk (``destroys``, ``may_fail``, ``safe``,
``review``), a reason for a person, and the ``Effect``s the data-loss simulation (``dataloss``)
applies: tables and columns dropped, emptied, renamed, created or copied, and rows deleted or
overwritten, with the clauses needed to count those rows (``WHERE``, ``USING``/``FROM``, the
``WITH`` prefix) and the positions of their bind parameters.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlparse
from sqlparse import tokens as T
from sqlparse.exceptions import SQLParseError
from sqlparse.sql import (
    Comment,
    Function,
    Identifier,
    IdentifierList,
    Parenthesis,
    Statement,
    Token,
)

Risk = Literal["destroys", "may_fail", "review", "safe"]


@dataclass(frozen=True)
class Target:
    """A table (``column=None``) or one of its columns, as a statement names it."""

    table: str
    column: str | None = None
    schema: str | None = None

    def __str__(self) -> str:
        table = f"{self.schema}.{self.table}" if self.schema else self.table
        return f"{table}.{self.column}" if self.column else table


# --- Effects: what a statement does, in the terms the data-loss simulation understands -------


@dataclass(frozen=True)
class CreateTable:
    """A new table: whatever it holds was written by the run itself."""

    table: Target
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class AddColumn:
    """A new column: empty (or its default) until the run fills it."""

    column: Target
    type_: Any = None


@dataclass(frozen=True)
class DropTables:
    """``DROP TABLE`` or ``TRUNCATE`` (``truncate``); ``cascade``: tables referencing them too."""

    tables: tuple[Target, ...]
    cascade: bool = False
    truncate: bool = False


@dataclass(frozen=True)
class DropColumns:
    columns: tuple[Target, ...]


@dataclass(frozen=True)
class Rename:
    """A table (``target.column`` None) or a column renamed to ``new_name``."""

    target: Target
    new_name: str


@dataclass(frozen=True)
class AddForeignKey:
    """A foreign key ``column`` -> ``parent``: with ``ON DELETE CASCADE``/``SET NULL``, deleting
    parent rows later changes the rows that point at them."""

    column: Target
    parent: str
    ondelete: str | None = None


@dataclass(frozen=True)
class Convert:
    """A column whose values are converted to another type (or rewritten by ``USING``): what
    does not come back unchanged is lost. ``old``/``new`` are SQLAlchemy types, or SQL text for
    ``new`` when read from SQL (``old`` None: the column's type in the database)."""

    column: Target
    old: Any
    new: Any
    using: str | None = None


@dataclass(frozen=True)
class Clause:
    """SQL text cut out of a statement, with the positions of its bind parameters (for
    positional paramstyles, to pass a count query only the parameters it keeps)."""

    text: str
    params: tuple[int, ...] = ()


@dataclass(frozen=True)
class DeleteRows:
    """``DELETE FROM table [alias] [USING ...] [WHERE ...]`` (``where`` None: every row)."""

    table: Target
    alias: str | None = None
    using: Clause | None = None
    where: Clause | None = None
    prefix: Clause | None = None  # the WITH ... part


@dataclass(frozen=True)
class UpdateRows:
    """``UPDATE table [alias] SET col = expr, ... [FROM ...] [WHERE ...]``."""

    table: Target
    assignments: tuple[tuple[str, str], ...]  # (column, expression text)
    alias: str | None = None
    from_: Clause | None = None
    where: Clause | None = None
    prefix: Clause | None = None


@dataclass(frozen=True)
class CopyRows:
    """``INSERT INTO table [(columns)] SELECT columns FROM source``: the source's values live on
    in ``table`` (only for a plain, whole copy: ``partial`` when filtered or joined)."""

    table: Target
    columns: tuple[str, ...] | None
    source: Target
    source_columns: tuple[str, ...] | None  # None: SELECT *
    partial: bool = False
    #: Of a partial copy, the source column whose every non-NULL value is still copied
    #: (``... WHERE col IS NOT NULL``: splitting a column out into a table of its own).
    complete: str | None = None


@dataclass(frozen=True)
class Overwrite:
    """An upsert: rows of ``table`` that already exist may be overwritten. With ``keys`` (the
    ``ON CONFLICT (...)`` columns) and ``rows`` (its ``VALUES`` text, the columns in
    ``columns`` order), the rows it overwrites are countable: those whose keys are among them.

    ``any_key``: a row conflicts on whichever unique key of the table it shares (MariaDB/MySQL
    ``ON DUPLICATE KEY UPDATE`` and ``REPLACE``, SQLite ``INSERT OR REPLACE``); then ``rows``
    are counted against every unique key. ``deletes``: the conflicting rows are deleted and
    the new one inserted (``REPLACE``), so foreign keys act on them as for a DELETE."""

    table: Target
    columns: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    rows: Clause | None = None
    any_key: bool = False
    deletes: bool = False


@dataclass(frozen=True)
class Uncountable:
    """Destroys data in a way no query can count before it runs; ``reason`` says why."""

    table: Target | None
    reason: str


Effect = (
    CreateTable | AddColumn | AddForeignKey | DropTables | DropColumns | Rename | Convert | DeleteRows
    | UpdateRows
    | CopyRows | Overwrite | Uncountable
)


@dataclass(frozen=True)
class Reading:
    """One statement: how risky, why (for a person), and what it does (for the simulation)."""

    risk: Risk
    reason: str
    table: str | None = None
    column: str | None = None
    effects: tuple[Effect, ...] = ()
    sql: str = ""


def read(sql: str) -> list[Reading]:
    """Every statement of ``sql``, read; text sqlparse cannot parse is one "review" reading."""
    try:
        statements = [s for s in sqlparse.parse(sql) if _words(s)]
    except SQLParseError as exc:
        return [Reading("review", f"SQL cannot be parsed ({exc}): {short(sql)}", sql=sql)]
    return [read_statement(statement) for statement in statements]


def short(sql: str, limit: int = 70) -> str:
    line = " ".join(sql.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def read_statement(statement: Statement) -> Reading:
    """Classify one parsed statement."""
    words = _words(statement)
    text = str(statement).strip().removesuffix(";").rstrip()
    sql = short(text)
    first = _keyword(words[0]) if words else None
    prefix: Clause | None = None
    if first == "WITH":
        prefix, main = _split_with(statement)
        if main is None:
            return Reading("review", f"a WITH statement not understood: {sql}", sql=text)
        if _changes_data(prefix.text):
            return Reading(
                "destroys", f"a WITH clause that changes data: {sql}",
                effects=(Uncountable(None, "its WITH clause changes data"),), sql=text,
            )
        first = main
    reading = _READERS.get(first or "", _other)(statement, words, sql, prefix)
    return Reading(reading.risk, reading.reason, reading.table, reading.column, reading.effects, text)


# --- Readers by first keyword -------------------------------------------------------------------


def _drop(statement: Statement, words: list[Token], sql: str, prefix: Clause | None) -> Reading:
    what = _keyword(words[1]) if len(words) > 1 else None
    cascade = any(_keyword(w) == "CASCADE" for w in words)
    if what == "TABLE":
        at = _skip(words, 2, "IF EXISTS")
        targets = _targets(words[at] if at < len(words) else None)
        if not targets:
            return Reading("destroys", f"drops a table: {sql}",
                           effects=(Uncountable(None, "the table is not named plainly"),))
        listed = ", ".join(map(str, targets))
        return Reading("destroys", f"drops table {listed}: {sql}", targets[0].table,
                       effects=(DropTables(targets, cascade=cascade),))
    if what == "DATABASE":
        return Reading("destroys", f"drops a whole database: {sql}",
                       effects=(Uncountable(None, "a whole database is dropped"),))
    if what == "SCHEMA":
        return Reading("destroys", f"drops a whole schema: {sql}",
                       effects=(Uncountable(None, "a whole schema is dropped"),))
    if cascade:
        return Reading("review", f"drops with CASCADE, which can take columns along: {sql}")
    return Reading("safe", f"drops {str(what or 'an object').lower()} (no rows lost): {sql}")


def _truncate(statement: Statement, words: list[Token], sql: str, prefix: Clause | None) -> Reading:
    at = _skip(words, 1, "TABLE", "ONLY")
    targets = _targets(words[at] if at < len(words) else None)
    cascade = any(_keyword(w) == "CASCADE" for w in words)
    note = " (CASCADE also empties the tables that reference it)" if cascade else ""
    if not targets:
        return Reading("destroys", f"empties a table: {sql}",
                       effects=(Uncountable(None, "the table is not named plainly"),))
    listed = ", ".join(map(str, targets))
    return Reading("destroys", f"empties {listed}{note}: {sql}", targets[0].table,
                   effects=(DropTables(targets, cascade=cascade, truncate=True),))


DELETE_CLAUSES = {"DELETE", "FROM", "USING", "WHERE", "RETURNING", "ORDER BY", "LIMIT"}
UPDATE_CLAUSES = {"UPDATE", "SET", "FROM", "WHERE", "RETURNING", "ORDER BY", "LIMIT"}


def _delete(statement: Statement, words: list[Token], sql: str, prefix: Clause | None) -> Reading:
    clauses = _clauses(statement, DELETE_CLAUSES, after=prefix)
    named = _table_and_alias(clauses.get("FROM"))
    table = named[0].table if named else None
    if clauses.get("DELETE", Clause("")).text or named is None:
        why = "a multi-table DELETE" if named else "the table is not named plainly"
        return Reading("destroys", f"deletes rows: {sql}", table,
                       effects=(Uncountable(named[0] if named else None, why),))
    if "ORDER BY" in clauses or "LIMIT" in clauses:
        return Reading("destroys", f"deletes rows of {table}: {sql}", table,
                       effects=(Uncountable(named[0], "DELETE with ORDER BY/LIMIT"),))
    target, alias = named
    where = clauses.get("WHERE")
    verb = "deletes every row of" if where is None and "USING" not in clauses else "deletes rows of"
    return Reading("destroys", f"{verb} {target}: {sql}", table,
                   effects=(DeleteRows(target, alias, clauses.get("USING"), where, prefix),))


def _update(statement: Statement, words: list[Token], sql: str, prefix: Clause | None) -> Reading:
    clauses = _clauses(statement, UPDATE_CLAUSES, after=prefix)
    head = clauses.get("UPDATE", Clause("")).text
    head = re.sub(r"^(?:OR\s+\w+\s+|ONLY\s+)", "", head, flags=re.I)
    named = _table_and_alias(Clause(head))
    table = named[0].table if named else None
    assignments = _assignments(clauses.get("SET", Clause("")).text)
    if named is None or assignments is None:
        why = "a multi-table UPDATE" if named is None and " JOIN " in head.upper() else (
            "the table or the SET list is not plain")
        return Reading("destroys", f"overwrites values: {sql}", table,
                       effects=(Uncountable(named[0] if named else None, why),))
    if "ORDER BY" in clauses or "LIMIT" in clauses:
        return Reading("destroys", f"overwrites values in {table}: {sql}", table,
                       effects=(Uncountable(named[0], "UPDATE with ORDER BY/LIMIT"),))
    target, alias = named
    listed = ", ".join(column for column, _ in assignments)
    column = assignments[0][0] if len(assignments) == 1 else None
    return Reading(
        "destroys", f"overwrites {listed} in {target}: {sql}", table, column,
        effects=(UpdateRows(target, assignments, alias, clauses.get("FROM"), clauses.get("WHERE"),
                            prefix),),
    )


def _insert(statement: Statement, words: list[Token], sql: str, prefix: Clause | None) -> Reading:
    dml = {str(t.normalized).upper() for t in statement.flatten() if t.ttype in T.DML}
    first = _keyword(words[0]) if words else None
    at = _skip(words, 1, "OR", "REPLACE", "IGNORE", "INTO")
    targets = _targets(words[at] if at < len(words) else None)
    replace = first == "REPLACE" or "REPLACE" in {_keyword(w) for w in words[:at]}
    if replace or "UPDATE" in dml:
        table = targets[0] if targets else None
        what = "replaces (deletes and re-inserts)" if replace else "overwrites"
        return Reading(
            "destroys", f"{what} existing rows of {table or '?'} (upsert): {sql}",
            table.table if table else None,
            effects=(_upsert(statement, table, replace),) if table
            else (Uncountable(None, "an upsert"),),
        )
    copy = _copy(statement, targets[0]) if targets else None
    return Reading("safe", f"runs INSERT: {sql}", targets[0].table if targets else None,
                   effects=(copy,) if copy else ())


UPSERT_RE = re.compile(
    r"^INSERT\s+INTO\s+.+?\((?P<columns>[^()]*)\)\s*VALUES\s*(?P<rows>.+?)\s*"
    r"ON\s+CONFLICT\s*\((?P<keys>[^()]*)\)\s*DO\s+UPDATE\b",
    re.I | re.S,
)


#: MariaDB/MySQL ``INSERT/REPLACE ... (cols) VALUES (...), ...`` (and SQLite's ``INSERT OR
#: REPLACE``): the column list and what follows ``VALUES``.
ROWS_RE = re.compile(
    r"^(?:INSERT|REPLACE)(?:\s+(?:LOW_PRIORITY|DELAYED|HIGH_PRIORITY|IGNORE|INTO|OR\s+REPLACE))*"
    r"\s+[^\s(]+\s*\((?P<columns>[^()]*)\)\s*VALUES?\s*(?P<rest>\(.*)$",
    re.I | re.S,
)
#: ``INSERT/REPLACE t SET a = 1, b = 2``: one row.
SET_ROW_RE = re.compile(
    r"^(?:INSERT|REPLACE)(?:\s+(?:LOW_PRIORITY|DELAYED|HIGH_PRIORITY|IGNORE|INTO))*"
    r"\s+[^\s(]+\s+SET\s+(?P<rest>.*)$",
    re.I | re.S,
)
#: What may follow the rows: a row alias (MySQL 8), then ``ON DUPLICATE KEY UPDATE ...``.
AFTER_ROWS_RE = re.compile(
    r"(?:\s+AS\s+\w+(?:\s*\([^()]*\))?)?(?:\s+ON\s+DUPLICATE\s+KEY\s+UPDATE\b.*)?\s*$", re.I | re.S
)
#: Bind parameter marks: rows holding one are not countable from the text.
PARAMETER_MARKS = ("$", "?", "%")


def _upsert(statement: Statement, table: Target, replace: bool = False) -> Overwrite:
    """``INSERT INTO t (cols) VALUES (...), ... ON CONFLICT (keys) DO UPDATE`` (PostgreSQL,
    SQLite), or MariaDB/MySQL's ``ON DUPLICATE KEY UPDATE`` and ``REPLACE`` with VALUES or
    SET: what makes the overwritten rows countable; any other upsert only names its table."""
    text = str(statement).strip().removesuffix(";").rstrip()
    match = UPSERT_RE.match(text)
    if match is not None:
        if any(mark in match["rows"] for mark in PARAMETER_MARKS):
            return Overwrite(table)
        columns = tuple(plain_column(c) or "" for c in _split_top(match["columns"]))
        keys = tuple(plain_column(k) or "" for k in _split_top(match["keys"]))
        if not all(columns) or not keys or any(k not in columns for k in keys):
            return Overwrite(table)
        return Overwrite(table, columns, keys, Clause(match["rows"].strip()))
    any_key = replace or re.search(r"\bON\s+DUPLICATE\s+KEY\s+UPDATE\b", text, re.I) is not None
    if not any_key:
        return Overwrite(table)
    found = _values_rows(text)
    if found is None:
        return Overwrite(table, any_key=True, deletes=replace)
    columns, rows = found
    return Overwrite(table, columns, (), Clause(rows), any_key=True, deletes=replace)


def _values_rows(text: str) -> tuple[tuple[str, ...], str] | None:
    """(columns, ``(v, ...), (v, ...)``) of an INSERT/REPLACE with a column list and VALUES, or
    with SET; None when the rows are not plain text (a SELECT, bind parameters, no columns)."""
    match = ROWS_RE.match(text)
    if match is not None:
        columns = tuple(plain_column(c) or "" for c in _split_top(match["columns"]))
        groups, rest = _leading_groups(match["rest"])
        rows = value_rows(", ".join(groups))
    else:
        match = SET_ROW_RE.match(text)
        if match is None:
            return None
        tail = re.search(r"(?:\s+AS\s+\w+)?\s+ON\s+DUPLICATE\s+KEY\s+UPDATE\b", match["rest"], re.I)
        pairs = _assignments(match["rest"][: tail.start()] if tail else match["rest"]) or ()
        columns = tuple(column for column, _ in pairs)
        rows, rest = [[value for _, value in pairs]], ""
    if (
        not columns or not all(columns) or not rows or AFTER_ROWS_RE.fullmatch(rest) is None
        or any(len(row) != len(columns) for row in rows)
        or any(mark in value for row in rows for value in row for mark in PARAMETER_MARKS)
    ):
        return None
    return columns, ", ".join(f"({', '.join(row)})" for row in rows)


def value_rows(text: str) -> list[list[str]]:
    """``(1, 'a'), (2, f(x))`` -> [["1", "'a'"], ["2", "f(x)"]]: the values of each row."""
    return [_split_top(group.strip()[1:-1]) for group in _split_top(text)]


def _leading_groups(text: str) -> tuple[list[str], str]:
    """``(a), (b) rest`` -> (["(a)", "(b)"], " rest"): the parenthesized groups at the start,
    separated by commas (parentheses inside quotes do not count)."""
    groups: list[str] = []
    at = 0
    while True:
        start = at + len(text[at:]) - len(text[at:].lstrip())
        if start >= len(text) or text[start] != "(":
            return groups, text[at:]
        end = next((index for index, char, depth in top_level(text, start) if char == ")" and depth == 0), None)
        if end is None:
            return groups, text[at:]
        groups.append(text[start:end + 1])
        after = end + 1 + len(text[end + 1:]) - len(text[end + 1:].lstrip())
        if after < len(text) and text[after] == ",":
            at = after + 1
            continue
        return groups, text[end + 1:]


def _create(statement: Statement, words: list[Token], sql: str, prefix: Clause | None) -> Reading:
    kinds = [_keyword(w) for w in words[1:4]]
    if "TABLE" not in kinds:
        return Reading("safe", f"runs CREATE: {sql}")
    at = _skip(words, 1 + kinds.index("TABLE") + 1, "IF NOT EXISTS")
    token = words[at] if at < len(words) else None
    following = words[at + 1] if at + 1 < len(words) else None
    if isinstance(token, Function):  # "name(col type, ...)"
        targets, columns = _targets(token.tokens[0]), _created_columns(str(token))
    elif isinstance(following, Parenthesis):  # "name (col type, ...)"
        targets, columns = _targets(token), _created_columns(str(following))
    else:
        targets, columns = _targets(token), ()
    if not targets:
        return Reading("safe", f"runs CREATE: {sql}")
    copy = _copy(statement, targets[0]) if any(_keyword(w) == "AS" for w in words[at + 1:]) else None
    if copy is not None and copy.columns is None:
        columns = copy.source_columns or ()
        copy = CopyRows(copy.table, copy.source_columns, copy.source, copy.source_columns, copy.partial)
    effects: list[Effect] = [CreateTable(targets[0], columns)]
    if copy is not None:
        effects.append(copy)
    return Reading("safe", f"creates table {targets[0]}: {sql}", targets[0].table,
                   effects=tuple(effects))


def _alter(statement: Statement, words: list[Token], sql: str, prefix: Clause | None) -> Reading:
    if _keyword(words[1] if len(words) > 1 else None) != "TABLE":
        return Reading("review", f"ALTER not understood; check it by hand: {sql}")
    at = _skip(words, 2, "IF EXISTS", "ONLY")
    targets = _targets(words[at] if at < len(words) else None)
    if not targets:
        return Reading("review", f"ALTER TABLE not understood: {sql}")
    table = targets[0]
    actions: list[list[Token]] = [[]]
    for word in words[at + 1:]:
        if word.match(T.Punctuation, ","):
            actions.append([])
        else:
            actions[-1].append(word)
    effects: list[Effect] = []
    dropped: list[Target] = []
    changed: list[Target] = []
    risks: set[str] = set()
    for action in actions:
        verb = _keyword(action[0] if action else None)
        if verb == "DROP" and _keyword(action[1] if len(action) > 1 else None) not in (
            "CONSTRAINT", "INDEX", "KEY", "PRIMARY KEY", "FOREIGN KEY", "DEFAULT"
        ):
            start = _skip(action, 1, "COLUMN", "IF EXISTS")
            names = _targets(action[start] if start < len(action) else None)
            dropped += [Target(table.table, name.table, table.schema) for name in names]
        elif verb == "RENAME":
            renamed = _rename(action, table)
            if renamed is None:
                return Reading("review", f"ALTER TABLE {table} RENAME not understood: {sql}",
                               table.table)
            effects.append(renamed)
        elif (converted := _retyped(action, table)) is not None:
            effects.append(converted)
            changed.append(converted.column)
        elif verb == "ADD" and _keyword(action[1] if len(action) > 1 else None) not in (
            "CONSTRAINT", "PRIMARY KEY", "UNIQUE", "FOREIGN KEY", "CHECK", "INDEX", "KEY"
        ):
            start = _skip(action, 1, "COLUMN", "IF NOT EXISTS")
            names = _targets(action[start] if start < len(action) else None)
            effects += [AddColumn(Target(table.table, n.table, table.schema)) for n in names]
            effects += _references(action, [Target(table.table, n.table, table.schema) for n in names])
        elif verb == "ADD":
            risks.add("may_fail")
            local = re.search(rf"FOREIGN\s+KEY\s*\(\s*(?P<column>{NAME})", _text_of(action), re.I)
            if local:
                effects += _references(action, [Target(table.table, unquote(local["column"]), table.schema)])
        else:
            risks.add("review")
    if dropped:
        effects.append(DropColumns(tuple(dropped)))
        columns = ", ".join(map(str, dropped))
        return Reading("destroys", f"drops column {columns}: {sql}", table.table,
                       dropped[0].column if len(dropped) == 1 else None, tuple(effects))
    if changed:
        columns = ", ".join(map(str, changed))
        return Reading("destroys", f"converts {columns} to another type: values that do not come "
                                   f"back unchanged are lost: {sql}", table.table,
                       changed[0].column if len(changed) == 1 else None, tuple(effects))
    if "review" in risks:
        return Reading("review", f"ALTER TABLE {table}: check it by hand: {sql}", table.table,
                       effects=tuple(effects))
    if "may_fail" in risks:
        return Reading("may_fail", f"ALTER TABLE {table} adds a constraint: fails if existing "
                                   f"rows violate it: {sql}", table.table, effects=tuple(effects))
    if any(isinstance(effect, Rename) for effect in effects):
        return Reading("safe", f"renames in {table}: data kept, but running clients that use "
                               f"the old name break: {sql}", table.table, effects=tuple(effects))
    return Reading("safe", f"ALTER TABLE {table} adds columns: {sql}", table.table,
                   effects=tuple(effects))


def _safe(statement: Statement, words: list[Token], sql: str, prefix: Clause | None) -> Reading:
    first = _keyword(words[0]) if words else "?"
    return Reading("safe", f"runs {first}: {sql}")


def _other(statement: Statement, words: list[Token], sql: str, prefix: Clause | None) -> Reading:
    first = _keyword(words[0]) if words else None
    if first == "SELECT":
        return Reading("review", f"runs a query or function whose effect is unknown: {sql}")
    return Reading("review", f"SQL not recognised; check it by hand: {sql}")


_READERS = {
    "DROP": _drop, "TRUNCATE": _truncate, "DELETE": _delete, "UPDATE": _update,
    "INSERT": _insert, "REPLACE": _insert, "CREATE": _create, "ALTER": _alter,
    "COMMENT": _safe, "GRANT": _safe, "REVOKE": _safe, "ANALYZE": _safe, "SET": _safe,
}


# --- Pieces ---------------------------------------------------------------------------------


def _words(statement: Statement) -> list[Token]:
    """Top-level tokens without whitespace, comments and the closing semicolon."""
    words = [
        t for t in statement.tokens
        if not t.is_whitespace and t.ttype not in T.Comment and not isinstance(t, Comment)
    ]
    while words and words[-1].match(T.Punctuation, ";"):
        words.pop()
    return words


def _keyword(token: Token | None) -> str | None:
    if token is not None and token.is_keyword:
        return " ".join(str(token.normalized).upper().split())
    return None


def _skip(words: list[Token], start: int, *skipped: str) -> int:
    while start < len(words) and _keyword(words[start]) in skipped:
        start += 1
    return start


def unquote(value: str) -> str:
    """A quoted identifier as written; an unquoted one folded to lower case (SQL's rule)."""
    if value[:1] in '"`[':
        return value[1:-1].replace('""', '"')
    return value.lower()


def _targets(token: Token | None) -> tuple[Target, ...]:
    """The (schema.)names an identifier token names; unquoted names fold to lower case."""
    if isinstance(token, IdentifierList):
        return tuple(name for item in token.get_identifiers() for name in _targets(item))
    if isinstance(token, Function):  # "posts (id, title)" after INSERT INTO
        return _targets(token.tokens[0])
    if isinstance(token, Identifier):
        parts: list[str] = []
        for piece in token.flatten():
            if piece.ttype in T.Name or piece.ttype in T.String.Symbol:
                parts.append(unquote(piece.value))
            elif piece.is_keyword and not parts:
                parts.append(piece.value.lower())
            elif not piece.match(T.Punctuation, "."):
                break
        if parts:
            return (Target(parts[-1], None, parts[-2] if len(parts) > 1 else None),)
        return ()
    if token is not None and (token.ttype in T.Name or token.ttype in T.Keyword):
        return (Target(unquote(token.value)),)  # a keyword used as a name: DROP TABLE user
    return ()


NAME = r'(?:"(?:[^"]|"")+"|`[^`]+`|\[[^\]]+\]|[^\s."`\[\]()]+)'
TABLE_AND_ALIAS_RE = re.compile(
    rf"^\s*(?:ONLY\s+)?(?P<name>{NAME}(?:\s*\.\s*{NAME})?)\s*\*?"
    rf"(?:\s+(?:AS\s+)?(?P<alias>{NAME}))?\s*$",
    re.I,
)


def _table_and_alias(clause: Clause | None) -> tuple[Target, str | None] | None:
    """``[ONLY] [schema.]table [[AS] alias]``; None when the clause is anything else (a join,
    a list of tables)."""
    match = TABLE_AND_ALIAS_RE.match(clause.text) if clause else None
    if match is None:
        return None
    parts = [unquote(p.strip()) for p in re.findall(rf"{NAME}", match["name"])]
    alias = unquote(match["alias"]) if match["alias"] else None
    if alias is not None and alias.upper() in {"WHERE", "SET", "USING", "FROM"}:
        return None
    return Target(parts[-1], None, parts[-2] if len(parts) > 1 else None), alias


def _split_with(statement: Statement) -> tuple[Clause, str | None]:
    """The ``WITH ...`` prefix and the main statement's keyword (the first DML at depth 0)."""
    depth, pieces = 0, list[Token]()
    for token in statement.flatten():
        if token.match(T.Punctuation, "("):
            depth += 1
        elif token.match(T.Punctuation, ")"):
            depth -= 1
        elif depth == 0 and token.ttype in T.DML:
            text = "".join(str(piece) for piece in pieces).strip()
            return Clause(text, _placeholders(pieces, 0)), str(token.normalized).upper()
        pieces.append(token)
    return Clause(""), None


def _changes_data(sql: str) -> bool:
    return bool(re.search(r"\b(INSERT|UPDATE|DELETE|MERGE)\b", sql, re.I))


def _placeholders(tokens: list[Token], first: int) -> tuple[int, ...]:
    count = sum(1 for t in tokens if t.ttype is T.Name.Placeholder)
    return tuple(range(first, first + count))


def _clauses(statement: Statement, names: set[str], after: Clause | None = None) -> dict[str, Clause]:
    """The statement cut at its top-level clause keywords: ``{"WHERE": Clause("a = 1"), ...}``
    (text after the keyword; the statement's first keyword's clause is what follows it).
    Parameters are numbered across the whole statement (the WITH prefix first)."""
    clauses: dict[str, list[Token]] = {}
    starts: dict[str, int] = {}
    current: str | None = None
    depth = 0
    index = len(after.params) if after else 0
    skipping = after is not None and bool(after.text)
    for token in statement.flatten():
        if skipping:  # the WITH prefix, read already
            if depth == 0 and token.ttype in T.DML:
                skipping = False
            else:
                if token.match(T.Punctuation, "("):
                    depth += 1
                elif token.match(T.Punctuation, ")"):
                    depth -= 1
                continue
        keyword = " ".join(str(token.normalized).upper().split()) if token.is_keyword else None
        if depth == 0 and keyword in names and keyword not in clauses:
            current = keyword
            clauses[current] = []
            starts[current] = index
            continue
        if token.match(T.Punctuation, "("):
            depth += 1
        elif token.match(T.Punctuation, ")"):
            depth -= 1
        if token.ttype is T.Name.Placeholder:
            index += 1
        if current is not None and not (depth == 0 and token.match(T.Punctuation, ";")):
            clauses[current].append(token)
    return {
        name: Clause("".join(str(t) for t in tokens).strip(), _placeholders(tokens, starts[name]))
        for name, tokens in clauses.items()
    }


def top_level(text: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """(index, character, depth) of each character from ``start`` that is outside quotes, depth
    being the parentheses open once it is read (a ``)`` gives the depth it closes back to)."""
    depth, quote = 0, ""
    for index in range(start, len(text)):
        char = text[index]
        if quote:
            if char == quote:
                quote = ""
            continue
        if char in "'\"`":
            quote = char
            continue
        depth += 1 if char == "(" else -1 if char == ")" else 0
        yield index, char, depth


def _split_top(text: str, separator: str = ",") -> list[str]:
    """Split at ``separator`` outside parentheses and quotes."""
    cuts = [index for index, char, depth in top_level(text) if char == separator and depth == 0]
    bounds = zip([-1, *cuts], [*cuts, len(text)])
    return [part for left, right in bounds if (part := text[left + 1:right].strip())]


COLUMN_RE = re.compile(rf"^(?:{NAME}\s*\.\s*)?(?P<name>{NAME})$")


def plain_column(text: str) -> str | None:
    """A plain (possibly qualified) column reference, unquoted; None for anything else."""
    match = COLUMN_RE.match(text.strip())
    return unquote(match["name"]) if match else None


def _assignments(text: str) -> tuple[tuple[str, str], ...] | None:
    """``a = 1, b = lower(c)`` -> ((a, "1"), (b, "lower(c)")); ``(a, b) = (...)`` gives each
    column with the whole right side; None if a left side is not a column."""
    found: list[tuple[str, str]] = []
    for item in _split_top(text):
        left, sep, right = item.partition("=")
        if not sep:
            return None
        left = left.strip()
        if left.startswith("(") and left.endswith(")"):
            columns = [plain_column(part) for part in _split_top(left[1:-1])]
        else:
            columns = [plain_column(left)]
        if not columns or any(c is None for c in columns):
            return None
        found += [(column, right.strip()) for column in columns if column]
    return tuple(found) or None


INSERT_CLAUSES = {"INSERT", "REPLACE", "INTO", "SELECT", "FROM", "WHERE", "JOIN", "GROUP BY",
                  "UNION", "UNION ALL", "LIMIT", "DISTINCT", "ORDER BY", "HAVING", "VALUES",
                  "INNER JOIN", "LEFT JOIN", "LEFT OUTER JOIN", "CROSS JOIN", "ON CONFLICT"}


def _copy(statement: Statement, table: Target) -> CopyRows | None:
    """``INSERT INTO t [(cols)] SELECT cols FROM s`` / ``CREATE TABLE t AS SELECT ...``."""
    clauses = _clauses(statement, INSERT_CLAUSES)
    if "SELECT" not in clauses or "FROM" not in clauses:
        return None
    source = _table_and_alias(clauses["FROM"])
    if source is None:
        return None
    extra = [name for name in clauses if name not in ("INSERT", "REPLACE", "INTO", "SELECT", "FROM")]
    partial = bool(extra)
    complete = None
    if extra == ["WHERE"]:
        only = re.fullmatch(rf"\s*(?P<column>{NAME}(?:\s*\.\s*{NAME})?)\s+IS\s+NOT\s+NULL\s*",
                            clauses["WHERE"].text, re.I)
        complete = plain_column(only["column"]) if only else None
    selected = clauses["SELECT"].text
    source_columns: tuple[str, ...] | None
    if selected.strip() == "*":
        source_columns = None
    else:
        picked = [plain_column(part) for part in _split_top(selected)]
        if any(c is None for c in picked):
            return CopyRows(table, None, source[0], None, partial=True)
        source_columns = tuple(c for c in picked if c)
    columns: tuple[str, ...] | None = None
    into = clauses.get("INTO")
    if into is not None and "(" in into.text:
        inside = into.text[into.text.index("(") + 1: into.text.rindex(")")]
        names = [plain_column(part) for part in _split_top(inside)]
        if any(c is None for c in names):
            return CopyRows(table, None, source[0], None, partial=True)
        columns = tuple(c for c in names if c)
    return CopyRows(table, columns, source[0], source_columns, partial, complete)


CONSTRAINT_WORDS = {"CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN", "EXCLUDE", "KEY",
                    "INDEX", "LIKE"}


def _created_columns(text: str) -> tuple[str, ...]:
    """Column names of ``name (col type, ..., CONSTRAINT ...)``."""
    inside = text[text.index("(") + 1: text.rindex(")")] if "(" in text else ""
    columns = []
    for item in _split_top(inside):
        first = item.split(None, 1)[0] if item.split() else ""
        if first.upper() in CONSTRAINT_WORDS:
            continue
        name = plain_column(first)
        if name:
            columns.append(name)
    return tuple(columns)


RETYPE_RE = re.compile(
    rf"^(?:ALTER\s+(?:COLUMN\s+)?(?P<column>{NAME})\s+(?:SET\s+DATA\s+)?TYPE\s+(?P<type>.+?)"
    rf"(?:\s+USING\s+(?P<using>.+))?"
    rf"|MODIFY\s+(?:COLUMN\s+)?(?P<modified>{NAME})\s+(?P<mtype>.+))$",
    re.I | re.S,
)


REFERENCES_RE = re.compile(
    rf"REFERENCES\s+(?:{NAME}\s*\.\s*)?(?P<parent>{NAME})(?:.*?ON\s+DELETE\s+(?P<action>CASCADE|SET\s+NULL|SET\s+DEFAULT|RESTRICT|NO\s+ACTION))?",
    re.I | re.S,
)


def _text_of(action: list[Token]) -> str:
    return " ".join(str(word) for word in action).strip()


def _references(action: list[Token], columns: list[Target]) -> list[Effect]:
    """``... REFERENCES parent [(col)] [ON DELETE action]`` of an added column or constraint."""
    match = REFERENCES_RE.search(_text_of(action))
    if match is None or not columns:
        return []
    ondelete = " ".join(match["action"].upper().split()) if match["action"] else None
    return [AddForeignKey(columns[0], unquote(match["parent"]), ondelete)]


def _retyped(action: list[Token], table: Target) -> Convert | None:
    """``ALTER [COLUMN] c [SET DATA] TYPE t [USING e]`` (PostgreSQL) or ``MODIFY c t`` (MySQL)."""
    match = RETYPE_RE.match(" ".join(str(word) for word in action).strip())
    if match is None:
        return None
    column = unquote(match["column"] or match["modified"])
    new = (match["type"] or match["mtype"]).strip()
    return Convert(Target(table.table, column, table.schema), None, new, match["using"])


def _rename(action: list[Token], table: Target) -> Rename | None:
    """``RENAME TO new`` (table) or ``RENAME [COLUMN] old TO new``."""
    words = [w for w in action[1:]]
    if words and _keyword(words[0]) == "TO":
        new = _targets(words[1] if len(words) > 1 else None)
        return Rename(table, new[0].table) if new else None
    start = _skip(words, 0, "COLUMN")
    rest = words[start:]
    if len(rest) >= 3 and _keyword(rest[1]) == "TO":
        old, new = _targets(rest[0]), _targets(rest[2])
        if old and new:
            return Rename(Target(table.table, old[0].table, table.schema), new[0].table)
    return None


@dataclass
class Placeholders:
    """Bind parameters of a statement as executed, to hand a derived count query the ones it
    keeps: a mapping for named paramstyles, a sequence for positional ones."""

    values: Any = field(default=None)

    def subset(self, positions: list[int]) -> Any:
        if self.values is None or isinstance(self.values, dict):
            return self.values
        return tuple(self.values[i] for i in positions)
