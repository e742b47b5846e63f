"""What a migration does, read without running it on the real database.

``operations(module, direction, dialect)`` runs ``upgrade()``/``downgrade()`` against a recording
Alembic ``Operations`` object that has no connection: every ``op.*`` call (also inside
``op.batch_alter_table`` blocks, which are never flushed, so nothing is reflected) is captured
as the Alembic ``MigrateOperation`` it builds and classified into ``Operation`` rows.

Risk rules (``worst`` ranks them destroys > may_fail > review > safe):

* **destroys** - data is gone afterwards:
  ``drop_table``; ``drop_column`` (also inside a batch); ``alter_column`` whose type narrows
  when ``existing_type`` is known (shorter String/VARCHAR, Text -> String(n), a smaller integer
  type, lower Numeric precision or scale, Float/fractional Numeric -> an integer type,
  DateTime -> Date, anything -> Boolean); raw SQL (``op.execute`` with a string, ``sa.text`` or
  a Core statement, split into statements by sqlparse) that is ``DROP TABLE/SCHEMA/DATABASE``,
  ``DELETE``, ``TRUNCATE``, ``UPDATE``, ``ALTER TABLE ... DROP [COLUMN]``, an upsert
  (``INSERT ... ON CONFLICT DO UPDATE``, ``INSERT OR REPLACE``) or a ``WITH`` that deletes or
  updates.
* **may_fail** - fine on an empty table, can fail on existing rows: ``add_column`` NOT NULL
  without a server default; ``alter_column(nullable=False)``; ``create_unique_constraint``;
  ``create_index(unique=True)``; ``create_check_constraint``; ``create_foreign_key``;
  ``create_primary_key``; an ``alter_column`` type change that widens or converts.
* **safe** - ``create_table``; ``add_column`` nullable or with a server default; non-unique
  ``create_index``; ``drop_index``; ``drop_constraint``; ``bulk_insert``; table comments;
  ``alter_column`` that drops NOT NULL or changes a default/comment; ``rename_table`` and
  ``alter_column(new_column_name=...)`` (data kept, running clients break); raw SQL that is
  ``CREATE``, ``INSERT``, ``COMMENT``, ``GRANT`` or ``DROP INDEX``.
* **review** - cannot be judged here: an ``alter_column`` type change without
  ``existing_type``; raw SQL that is anything else (``DO`` blocks, ``SELECT f()``, other
  ``ALTER``/``DROP``) or cannot be parsed; op kinds not listed above; Python the recorder
  cannot see - a function that raises or touches the connection (``op.get_bind()``,
  ``op.get_context().bind``) ends the recording with one ``kind="python"`` row.

One Alembic call can give several rows: an ``alter_column`` yields one per change (type,
nullability, rename, default/comment) and an ``op.execute`` one per SQL statement.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache, singledispatch
from types import ModuleType
from typing import Any, Literal, NoReturn

import sqlalchemy as sa
import sqlparse
from alembic.operations import BatchOperations, Operations
from alembic.operations import ops as alembic_ops
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql import sqltypes
from sqlparse import tokens as T
from sqlparse.exceptions import SQLParseError
from sqlparse.sql import Comment, Function, Identifier, IdentifierList, Statement, Token

Risk = Literal["destroys", "may_fail", "review", "safe"]
#: Most severe first; ``worst`` returns the first present.
SEVERITY: tuple[Risk, ...] = ("destroys", "may_fail", "review", "safe")


@dataclass(frozen=True)
class Operation:
    """One classified step of a migration."""

    kind: str
    table: str | None
    column: str | None
    risk: Risk
    reason: str
    sql: str | None = None
    in_batch: bool = False
    #: The Alembic operation recorded (types, schema, ...), for ``dataloss``; not compared.
    source: alembic_ops.MigrateOperation | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Target:
    """A table (``column=None``) or column that a SQL statement removes entirely."""

    table: str
    column: str | None = None
    schema: str | None = None


def worst(ops: Iterable[Operation]) -> Risk:
    """The most severe risk among ``ops``; "safe" for none."""
    present = {op.risk for op in ops}
    return next((risk for risk in SEVERITY if risk in present), "safe")


def destructive(ops: Iterable[Operation]) -> list[Operation]:
    return [op for op in ops if op.risk == "destroys"]


def operations(
    module: ModuleType, direction: Literal["upgrade", "downgrade"], dialect: str
) -> list[Operation]:
    """Record and classify what ``module.<direction>()`` would do on a ``dialect`` database.

    A function that raises or reaches for the connection is reported as what was recorded
    before that plus one "review" row, so such a migration never looks fully safe.
    """
    function = getattr(module, direction, None)
    if function is None:
        return [_python(direction, f"the module has no {direction}()")]
    sa_dialect = _dialect(dialect)
    context = _Context(sa_dialect, None, {"as_sql": True, "output_buffer": io.StringIO()})
    recorder = _Recorder(context)
    context.on_bind = recorder.stop
    why = None
    with _as_alembic_op(recorder):
        try:
            function()
        except _Unseen:
            pass
        except Exception as exc:  # the migration's own failure is the finding
            message = str(exc).strip().splitlines()
            why = f"raised {type(exc).__name__}" + (f": {message[0]}" if message else "")
    found = [
        row
        for operation, in_batch in recorder.log
        for row in _classify(operation, sa_dialect, in_batch)
    ]
    why = recorder.unseen or why
    if why:
        found.append(_python(direction, why))
    return found


@lru_cache(maxsize=None)
def _dialect(name: str) -> Dialect:
    """One dialect object per backend name: building it costs more than recording a migration."""
    return sa.engine.make_url(f"{name}://").get_dialect()()


def whole_targets(sql: str) -> list[Target]:
    """Tables/columns a SQL text removes entirely: ``DROP TABLE t``, ``TRUNCATE t``,
    ``DELETE FROM t`` without a WHERE, ``ALTER TABLE t DROP [COLUMN] c``; nothing for
    partial or unparsed statements, whose loss cannot be counted up front."""
    try:
        statements = sqlparse.parse(sql)
    except SQLParseError:
        return []
    return [target for statement in statements for target in _read(statement).whole]


def _python(direction: str, why: str) -> Operation:
    return Operation(
        kind="python", table=None, column=None, risk="review",
        reason=f"{direction}() cannot be analysed: {why}",
    )


# --- The recorder ---------------------------------------------------------------------------


class _Unseen(Exception):
    """Stops a migration at code whose effect the recorder cannot see."""


class _Context(MigrationContext):
    """A MigrationContext without a database: reading its connection ends the recording."""

    on_bind: Callable[[str], NoReturn] | None = None

    @property  # type: ignore[override]
    def connection(self) -> Any:
        if self.on_bind is not None:
            self.on_bind("reads op.get_context().bind / .connection")
        return self.__dict__.get("_connection")

    @connection.setter
    def connection(self, value: Any) -> None:
        self.__dict__["_connection"] = value

    @contextmanager
    def autocommit_block(self) -> Iterator[None]:
        """Nothing runs, so there is no transaction to step out of."""
        yield


class _Recorder(Operations):
    """``Operations`` that keeps each MigrateOperation instead of running it."""

    def __init__(self, context: MigrationContext) -> None:
        super().__init__(context)
        self.log: list[tuple[alembic_ops.MigrateOperation, bool]] = []
        self.unseen: str | None = None

    def invoke(self, operation: alembic_ops.MigrateOperation) -> Any:
        self.log.append((operation, False))
        if isinstance(operation, alembic_ops.CreateTableOp):
            # Migrations use the returned Table, e.g. for op.bulk_insert().
            return operation.to_table(self.migration_context)
        return None

    def stop(self, why: str) -> NoReturn:
        """Remember why (even if the migration swallows the exception) and stop it."""
        self.unseen = self.unseen or why
        raise _Unseen(why)

    def get_bind(self) -> NoReturn:
        self.stop("calls op.get_bind(); what it does through the connection is invisible")

    @contextmanager
    def batch_alter_table(  # type: ignore[override]
        self, table_name: str, schema: str | None = None, *_args: Any, **_options: Any
    ) -> Iterator[BatchOperations]:
        """Records the batch's operations; the table rebuild options matter only when run,
        and the real implementation would reflect the table at the end of the block."""
        yield _BatchRecorder(self, _BatchTarget(table_name, schema))


@dataclass(frozen=True)
class _BatchTarget:
    """All that ``BatchOperations`` methods read from their impl."""

    table_name: str
    schema: str | None


class _BatchRecorder(BatchOperations):
    def __init__(self, recorder: _Recorder, target: _BatchTarget) -> None:
        super().__init__(recorder.migration_context, impl=target)  # type: ignore[arg-type]
        self.recorder = recorder

    def invoke(self, operation: alembic_ops.MigrateOperation) -> Any:
        self.recorder.log.append((operation, True))

    def get_bind(self) -> NoReturn:
        self.recorder.get_bind()


@contextmanager
def _as_alembic_op(recorder: _Recorder) -> Iterator[None]:
    """Make ``alembic.op`` call ``recorder`` (what ``Operations.context`` does for the real
    class; its ``_install_proxy`` looks up proxies by ``type(self)``, so a subclass can't use
    it), restoring whatever was installed before. Not thread-safe, like Alembic's own."""
    modules = [namespace for namespace, _ in Operations._setups[Operations][1]]
    missing = object()
    saved = [namespace.get("_proxy", missing) for namespace in modules]
    for namespace in modules:
        namespace["_proxy"] = recorder
    try:
        yield
    finally:
        for namespace, value in zip(modules, saved):
            if value is missing:
                namespace.pop("_proxy", None)
            else:
                namespace["_proxy"] = value


# --- Classification of Alembic operations ---------------------------------------------------


def _name(table: str | None, schema: str | None) -> str:
    return f"{schema}.{table}" if schema else str(table)


def _kind(operation: alembic_ops.MigrateOperation) -> str:
    """The ``op.<name>`` an operation class is registered under (DropColumnOp -> drop_column)."""
    if isinstance(operation, alembic_ops.ExecuteSQLOp):
        return "execute"
    name = type(operation).__name__.removesuffix("Op")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _row(
    operation: Any, risk: Risk, reason: str, in_batch: bool,
    table: str | None = None, column: str | None = None, sql: str | None = None,
) -> Operation:
    return Operation(
        kind=_kind(operation), table=table, column=column, risk=risk, reason=reason,
        sql=sql, in_batch=in_batch, source=operation,
    )


@singledispatch
def _classify(operation: Any, dialect: Dialect, in_batch: bool) -> list[Operation]:
    """Operations this module has no rule for (third-party or custom ones)."""
    table = getattr(operation, "table_name", None)
    return [_row(operation, "review", f"unknown operation {_kind(operation)}", in_batch, table)]


@_classify.register
def _(operation: alembic_ops.CreateTableOp, dialect: Dialect, in_batch: bool) -> list[Operation]:
    where = _name(operation.table_name, operation.schema)
    return [_row(operation, "safe", f"creates table {where}", in_batch, operation.table_name)]


@_classify.register
def _(operation: alembic_ops.DropTableOp, dialect: Dialect, in_batch: bool) -> list[Operation]:
    where = _name(operation.table_name, operation.schema)
    reason = f"drops table {where} and every row in it"
    return [_row(operation, "destroys", reason, in_batch, operation.table_name)]


@_classify.register
def _(operation: alembic_ops.RenameTableOp, dialect: Dialect, in_batch: bool) -> list[Operation]:
    where = _name(operation.table_name, operation.schema)
    reason = (
        f"renames table {where} to {operation.new_table_name}: data kept, but running "
        "clients that use the old name break"
    )
    return [_row(operation, "safe", reason, in_batch, operation.table_name)]


@_classify.register(alembic_ops.CreateTableCommentOp)
@_classify.register(alembic_ops.DropTableCommentOp)
def _(operation: Any, dialect: Dialect, in_batch: bool) -> list[Operation]:
    where = _name(operation.table_name, operation.schema)
    return [_row(operation, "safe", f"changes the comment of table {where}", in_batch,
                 operation.table_name)]


@_classify.register
def _(operation: alembic_ops.AddColumnOp, dialect: Dialect, in_batch: bool) -> list[Operation]:
    column = operation.column
    where = f"{_name(operation.table_name, operation.schema)}.{column.name}"
    table, name = operation.table_name, column.name
    if not column.nullable and column.server_default is None:
        reason = f"adds NOT NULL column {where} without a server default: fails if the table has rows"
        return [_row(operation, "may_fail", reason, in_batch, table, name)]
    return [_row(operation, "safe", f"adds column {where}", in_batch, table, name)]


@_classify.register
def _(operation: alembic_ops.DropColumnOp, dialect: Dialect, in_batch: bool) -> list[Operation]:
    where = f"{_name(operation.table_name, operation.schema)}.{operation.column_name}"
    return [_row(operation, "destroys", f"drops column {where} and its values", in_batch,
                 operation.table_name, operation.column_name)]


@_classify.register
def _(operation: alembic_ops.AlterColumnOp, dialect: Dialect, in_batch: bool) -> list[Operation]:
    table, name = operation.table_name, operation.column_name
    where = f"{_name(table, operation.schema)}.{name}"
    found: list[tuple[Risk, str]] = []
    if operation.modify_type is not None:
        found.append(_type_change(where, operation.existing_type, operation.modify_type, dialect))
    if operation.modify_nullable is False:
        found.append(("may_fail", f"sets NOT NULL on {where}: fails if any row is NULL"))
    elif operation.modify_nullable:
        found.append(("safe", f"drops NOT NULL on {where}"))
    if operation.modify_name:
        found.append(("safe", f"renames column {where} to {operation.modify_name}: data kept, "
                              "but running clients that use the old name break"))
    if operation.modify_server_default is not False or operation.modify_comment is not False:
        found.append(("safe", f"changes the default or comment of {where}"))
    if not found:
        found.append(("safe", f"alters {where} without changing it"))
    return [_row(operation, risk, reason, in_batch, table, name) for risk, reason in found]


def _type_change(where: str, old: Any, new: Any, dialect: Dialect) -> tuple[Risk, str]:
    new = sqltypes.to_instance(new)
    if old is None:
        return "review", (
            f"changes the type of {where} to {_compiled(new, dialect)} without existing_type: "
            "cannot tell whether it narrows"
        )
    old = sqltypes.to_instance(old)
    change = f"{_compiled(old, dialect)} to {_compiled(new, dialect)}"
    if _compiled(old, dialect) == _compiled(new, dialect):
        return "safe", f"keeps the type of {where} ({_compiled(new, dialect)})"
    narrowing = narrows(old, new)
    if narrowing:
        return "destroys", (
            f"narrows {where} from {change} ({narrowing}): values that do not fit are "
            "cut or the change fails"
        )
    return "may_fail", f"changes the type of {where} from {change}: fails if a value cannot be cast"


def _compiled(type_: sa.types.TypeEngine[Any], dialect: Dialect) -> str:
    try:
        return type_.compile(dialect=dialect)
    except SQLAlchemyError:
        return repr(type_)


#: Values a column of each integer type holds; smallest type first.
INTEGER_RANGES: tuple[tuple[type[sa.Integer], int], ...] = (
    (sa.SmallInteger, 2**15),
    (sa.BigInteger, 2**63),
    (sa.Integer, 2**31),
)


def integer_limit(type_: sa.types.TypeEngine[Any]) -> int | None:
    """``n`` such that the integer type holds ``-n <= v < n``; None for non-integers."""
    return next((limit for kind, limit in INTEGER_RANGES if isinstance(type_, kind)), None)


def _numeric(type_: Any) -> tuple[int | None, int | None]:
    """(precision, scale) with a missing scale meaning 0 when a precision is given (SQL rule)."""
    scale = type_.scale if type_.scale is not None or type_.precision is None else 0
    return type_.precision, scale


def _fractional(type_: Any) -> bool:
    """Can hold a fraction: Float, or Numeric with an unknown or positive scale."""
    if isinstance(type_, sa.Float):
        return True
    if isinstance(type_, sa.Numeric):
        scale = _numeric(type_)[1]
        return scale is None or scale > 0
    return False


def narrows(old: sa.types.TypeEngine[Any], new: sa.types.TypeEngine[Any]) -> str | None:
    """How changing ``old`` to ``new`` can lose values, or None if it cannot (by type rules)."""
    if isinstance(new, sa.Boolean) and not isinstance(old, sa.Boolean):
        return "to Boolean"
    if isinstance(old, sa.DateTime) and isinstance(new, sa.Date):
        return "drops the time of day"
    if isinstance(new, sa.String) and not isinstance(new, sa.Enum) and new.length is not None:
        if isinstance(old, sa.String) and (old.length is None or new.length < old.length):
            return f"shorter: {new.length} characters"
    new_limit, old_limit = integer_limit(new), integer_limit(old)
    if new_limit is not None:
        if old_limit is not None and new_limit < old_limit:
            return "smaller integer range"
        if old_limit is None and _fractional(old):
            return "drops fractions"
    if all(isinstance(t, sa.Numeric) and not isinstance(t, sa.Float) for t in (old, new)):
        (old_p, old_s), (new_p, new_s) = _numeric(old), _numeric(new)
        if new_p is not None and (old_p is None or new_p < old_p):
            return "lower precision"
        if new_s is not None and (old_s is None or new_s < old_s):
            return "lower scale"
    return None


def _constraint(
    operation: Any, what: str, table: str, columns: Any, risk: str, in_batch: bool
) -> list[Operation]:
    names = [c if isinstance(c, str) else str(c) for c in columns or ()]
    where = _name(table, getattr(operation, "schema", None))
    listed = f" ({', '.join(names)})" if names else ""
    column = names[0] if len(names) == 1 else None
    reason = f"adds {what} on {where}{listed}: {risk}"
    return [_row(operation, "may_fail", reason, in_batch, table, column)]


@_classify.register
def _(operation: alembic_ops.CreateUniqueConstraintOp, dialect: Dialect, in_batch: bool) -> list[Operation]:
    return _constraint(operation, f"unique constraint {operation.constraint_name}",
                       operation.table_name, operation.columns,
                       "fails if existing rows have duplicates", in_batch)


@_classify.register
def _(operation: alembic_ops.CreatePrimaryKeyOp, dialect: Dialect, in_batch: bool) -> list[Operation]:
    return _constraint(operation, f"primary key {operation.constraint_name}",
                       operation.table_name, operation.columns,
                       "fails on NULLs or duplicates", in_batch)


@_classify.register
def _(operation: alembic_ops.CreateCheckConstraintOp, dialect: Dialect, in_batch: bool) -> list[Operation]:
    return _constraint(operation, f"check constraint {operation.constraint_name}",
                       operation.table_name, (),
                       "fails if an existing row violates it", in_batch)


@_classify.register
def _(operation: alembic_ops.CreateForeignKeyOp, dialect: Dialect, in_batch: bool) -> list[Operation]:
    return _constraint(operation, f"foreign key {operation.constraint_name}",
                       operation.source_table, operation.local_cols,
                       f"fails if a row points at a missing {operation.referent_table} row",
                       in_batch)


@_classify.register
def _(operation: alembic_ops.CreateIndexOp, dialect: Dialect, in_batch: bool) -> list[Operation]:
    if operation.unique:
        return _constraint(operation, f"unique index {operation.index_name}",
                           operation.table_name, operation.columns,
                           "fails if existing rows have duplicates", in_batch)
    where = _name(operation.table_name, operation.schema)
    return [_row(operation, "safe", f"creates index {operation.index_name} on {where}",
                 in_batch, operation.table_name)]


@_classify.register
def _(operation: alembic_ops.DropIndexOp, dialect: Dialect, in_batch: bool) -> list[Operation]:
    return [_row(operation, "safe", f"drops index {operation.index_name}", in_batch,
                 operation.table_name)]


@_classify.register
def _(operation: alembic_ops.DropConstraintOp, dialect: Dialect, in_batch: bool) -> list[Operation]:
    where = _name(operation.table_name, operation.schema)
    return [_row(operation, "safe", f"drops constraint {operation.constraint_name} on {where}",
                 in_batch, operation.table_name)]


@_classify.register
def _(operation: alembic_ops.BulkInsertOp, dialect: Dialect, in_batch: bool) -> list[Operation]:
    table = operation.table.name
    return [_row(operation, "safe", f"inserts {len(operation.rows)} rows into {table}",
                 in_batch, table)]


@_classify.register
def _(operation: alembic_ops.ExecuteSQLOp, dialect: Dialect, in_batch: bool) -> list[Operation]:
    text = operation.sqltext
    if not isinstance(text, str):
        try:
            text = str(text.compile(dialect=dialect))  # type: ignore[attr-defined]
        except (SQLAlchemyError, AttributeError) as exc:
            reason = f"executes {type(text).__name__} that cannot be compiled: {exc}"
            return [_row(operation, "review", reason, in_batch)]
    try:
        statements = [s for s in sqlparse.parse(text) if _words(s)]
    except SQLParseError as exc:
        return [_row(operation, "review", f"SQL cannot be parsed ({exc}): {_short(text)}",
                     in_batch, sql=text)]
    if not statements:
        return [_row(operation, "safe", "executes no SQL statement", in_batch, sql=text)]
    rows = []
    for statement in statements:
        reading = _read(statement)
        rows.append(_row(operation, reading.risk, reading.reason, in_batch,
                         reading.table, reading.column, _text(statement)))
    return rows


# --- Raw SQL --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reading:
    risk: Risk
    reason: str
    table: str | None = None
    column: str | None = None
    whole: tuple[Target, ...] = ()


def _short(sql: str, limit: int = 70) -> str:
    line = " ".join(sql.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _text(statement: Statement) -> str:
    return str(statement).strip().removesuffix(";").rstrip()


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
        return str(token.normalized).upper()
    return None


def _names(token: Token | None) -> list[tuple[str | None, str]]:
    """(schema, name) pairs an identifier token names; unquoted names fold to lower case."""
    if isinstance(token, IdentifierList):
        return [name for item in token.get_identifiers() for name in _names(item)]
    if isinstance(token, Function):  # "posts (id, title)" after INSERT INTO
        return _names(token.tokens[0])
    if isinstance(token, Identifier):
        parts: list[str] = []
        for piece in token.flatten():
            if piece.ttype in T.Name or piece.ttype in T.String.Symbol:
                parts.append(_unquote(piece.value))
            elif not piece.match(T.Punctuation, "."):
                break
        if parts:
            return [(parts[-2] if len(parts) > 1 else None, parts[-1])]
        return []
    if token is not None and (token.ttype in T.Name or token.ttype is T.Keyword):
        return [(None, token.value.lower())]  # a keyword used as a name: DROP TABLE user
    return []


def _unquote(value: str) -> str:
    if value[:1] in '"`[':
        return value[1:-1].replace('""', '"')
    return value.lower()


def _skip(words: list[Token], start: int, *skipped: str) -> int:
    while start < len(words) and _keyword(words[start]) in skipped:
        start += 1
    return start


def _read(statement: Statement) -> _Reading:
    """Classify one SQL statement (see the module docstring for the rules)."""
    words = _words(statement)
    sql = _short(_text(statement))
    first = _keyword(words[0]) if words else None
    dml = {str(t.normalized).upper() for t in statement.flatten() if t.ttype in T.DML}
    if first == "WITH":
        if dml & {"DELETE", "UPDATE"}:
            return _Reading("destroys", f"runs a WITH that deletes or updates rows: {sql}")
        first = statement.get_type()
    if first == "DROP":
        return _read_drop(words, sql)
    if first == "TRUNCATE":
        at = _skip(words, 1, "TABLE", "ONLY")
        names = _names(words[at] if at < len(words) else None)
        cascade = " (CASCADE also empties the tables that reference it)" if any(
            _keyword(w) == "CASCADE" for w in words) else ""
        return _emptied("empties", names, sql, cascade)
    if first == "DELETE":
        at = _skip(words, 1, "FROM", "ONLY")
        names = _names(words[at] if at < len(words) else None)
        if at == len(words) - 1:
            return _emptied("deletes every row of", names, sql)
        table = names[0][1] if names else None
        return _Reading("destroys", f"deletes rows of {table or '?'}: {sql}", table)
    if first == "UPDATE":
        at = _skip(words, 1, "ONLY")
        names = _names(words[at] if at < len(words) else None)
        table = names[0][1] if names else None
        return _Reading("destroys", f"overwrites values in {table or '?'}: {sql}", table)
    if first == "ALTER" and _keyword(words[1] if len(words) > 1 else None) == "TABLE":
        return _read_alter_table(words, sql)
    if first in {"INSERT", "REPLACE"} and dml & {"UPDATE", "REPLACE"}:
        at = _skip(words, 1, "OR", "REPLACE", "INTO")
        names = _names(words[at] if at < len(words) else None)
        table = names[0][1] if names else None
        return _Reading("destroys", f"overwrites existing rows of {table or '?'} (upsert): {sql}",
                        table)
    if first in {"CREATE", "INSERT", "COMMENT", "GRANT"}:
        return _Reading("safe", f"runs {first}: {sql}")
    if first == "SELECT":
        return _Reading("review", f"runs a query or function whose effect is unknown: {sql}")
    return _Reading("review", f"SQL not recognised; check it by hand: {sql}")


def _emptied(
    verb: str, names: list[tuple[str | None, str]], sql: str, note: str = ""
) -> _Reading:
    if not names:
        return _Reading("destroys", f"{verb} a table: {sql}")
    targets = tuple(Target(name, None, schema) for schema, name in names)
    listed = ", ".join(_name(t.table, t.schema) for t in targets)
    return _Reading("destroys", f"{verb} {listed}{note}: {sql}", targets[0].table, whole=targets)


def _read_drop(words: list[Token], sql: str) -> _Reading:
    what = _keyword(words[1]) if len(words) > 1 else None
    if what == "TABLE":
        at = _skip(words, 2, "IF EXISTS")
        return _emptied("drops table", _names(words[at] if at < len(words) else None), sql)
    if what in {"SCHEMA", "DATABASE"}:
        return _Reading("destroys", f"drops a whole {what.lower()}: {sql}")
    if what == "INDEX":
        return _Reading("safe", f"drops an index (no data lost): {sql}")
    return _Reading("review", f"drops something other than a table: {sql}")


def _read_alter_table(words: list[Token], sql: str) -> _Reading:
    at = _skip(words, 2, "IF EXISTS", "ONLY")
    names = _names(words[at] if at < len(words) else None)
    if not names:
        return _Reading("review", f"ALTER TABLE not understood: {sql}")
    schema, table = names[0]
    actions: list[list[Token]] = [[]]
    for word in words[at + 1:]:
        if word.match(T.Punctuation, ","):
            actions.append([])
        else:
            actions[-1].append(word)
    dropped: list[str] = []
    for action in actions:
        if _keyword(action[0] if action else None) != "DROP":
            continue
        start = _skip(action, 1, "COLUMN", "IF EXISTS")
        if _keyword(action[1] if len(action) > 1 else None) == "CONSTRAINT":
            continue
        dropped += [name for _, name in _names(action[start] if start < len(action) else None)]
    if not dropped:
        return _Reading("review", f"ALTER TABLE {table}: check it by hand: {sql}", table)
    targets = tuple(Target(table, column, schema) for column in dropped)
    columns = ", ".join(f"{_name(table, schema)}.{c}" for c in dropped)
    return _Reading(
        "destroys", f"drops column {columns}: {sql}", table,
        dropped[0] if len(dropped) == 1 else None, targets,
    )
