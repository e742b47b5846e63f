"""What a migration does, read without running it on the real database.

``operations(module, direction, dialect)`` runs ``upgrade()``/``downgrade()`` against a recording
Alembic ``Operations`` object that has no connection: every ``op.*`` call (also inside
``op.batch_alter_table`` blocks, which are never flushed, so nothing is reflected) is captured
as the Alembic ``MigrateOperation`` it builds and classified into ``Operation`` rows, each with
the ``Effect``s (see ``statements``) the data-loss simulation follows. SQL given to
``op.execute`` is read statement by statement by ``statements.read``.

Risk rules (``worst`` ranks them destroys > may_fail > review > safe):

* **destroys** - data may be gone afterwards: ``drop_table``; ``drop_column`` (also inside a
  batch); ``alter_column`` whose type narrows when ``existing_type`` is known (shorter
  String/VARCHAR, Text -> String(n), a smaller integer type, lower Numeric precision or scale,
  Float/fractional Numeric -> an integer type, DateTime -> Date, anything -> Boolean); SQL that
  drops, empties, deletes, overwrites (``UPDATE``, upserts) or changes data in a ``WITH``.
* **may_fail** - fine on an empty table, can fail on existing rows: ``add_column`` NOT NULL
  without a server default; ``alter_column(nullable=False)``; ``create_unique_constraint``;
  ``create_index(unique=True)``; ``create_check_constraint``; ``create_foreign_key``;
  ``create_primary_key``; an ``alter_column`` type change that widens or converts; SQL that adds
  a constraint.
* **safe** - ``create_table``; ``add_column`` nullable or with a server default; non-unique
  ``create_index``; ``drop_index``; ``drop_constraint``; ``bulk_insert``; table comments;
  ``alter_column`` that drops NOT NULL or changes a default/comment; ``rename_table`` and
  ``alter_column(new_column_name=...)`` (data kept, running clients break); SQL that creates,
  inserts, renames, comments, grants, or drops an index, view or other object without data.
* **review** - cannot be judged here (the guard then reads its statements as they run): an
  ``alter_column`` type change without ``existing_type``; SQL the reader does not know (``DO``
  blocks, ``SELECT f()``, other ``ALTER``, ``DROP ... CASCADE`` of non-tables) or cannot parse;
  op kinds not listed above; Python the recorder cannot see - a function that raises or touches
  the connection (``op.get_bind()``, ``op.get_context().bind``) ends the recording with one
  ``kind="python"`` row; code in the migration's source (read, not run) that the recording
  skips or that no statement listener hears gives one row more: a test of ``as_sql`` (a
  branch that runs only for real: ``kind="unrendered"``), a raw DB-API connection
  (``.cursor()``, ``driver_connection``, ``raw_connection``, ``.connection.connection``,
  ``op.get_bind().connection``: ``kind="raw_dbapi"``) or SQLite's ``executescript``, which
  commits the running transaction first (``kind="raw_script"``).

Reading a migration calls its functions: Python in them that does not go through ``op`` (a
print, a call to another service) runs while it is read; code that must only run for real can
test ``op.get_context().as_sql``, which is True while it is read.

One Alembic call can give several rows: an ``alter_column`` yields one per change (type,
nullability, rename, default/comment) and an ``op.execute`` one per SQL statement.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache, singledispatch
from types import ModuleType
from typing import Any, Literal, NoReturn

import sqlalchemy as sa
from alembic.operations import BatchOperations, Operations
from alembic.operations import ops as alembic_ops
from alembic.runtime.migration import MigrationContext
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql import sqltypes

from . import statements
from .statements import (
    AddColumn,
    AddForeignKey,
    Convert,
    CreateTable,
    DropColumns,
    DropTables,
    Effect,
    Rename,
    Risk,
    Target,
)
from .wording import plural

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
    #: The Alembic operation recorded (types, schema, ...); not compared.
    source: alembic_ops.MigrateOperation | None = field(default=None, repr=False, compare=False)
    #: What it does to tables, columns and rows, for the data-loss simulation (``dataloss``).
    effects: tuple[Effect, ...] = field(default=(), repr=False, compare=False)


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
    sa_dialect = reading_dialect(dialect)
    context = _context(dialect)
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
        finally:
            context.on_bind = None
    found = [
        row
        for operation, in_batch in recorder.log
        for row in _classify(operation, sa_dialect, in_batch)
    ]
    why = recorder.unseen or why
    if why:
        found.append(_python(direction, why))
    return found + _unseen_code(module, direction)


def classify(
    operation: alembic_ops.MigrateOperation, dialect: Dialect, in_batch: bool = False
) -> list[Operation]:
    """The rows one Alembic operation gives, as a reading records them: the guard holds each
    operation a step runs against the ones its reading showed."""
    return _classify(operation, dialect, in_batch)


@lru_cache(maxsize=None)
def reading_dialect(name: str) -> Dialect:
    """One dialect object per backend name: building it costs more than recording a migration."""
    return sa.engine.make_url(f"{name}://").get_dialect()()


@lru_cache(maxsize=None)
def _context(name: str) -> _Context:
    """One recording context per backend name, shared by every migration read: nothing runs
    through it (the recorder keeps each operation), so it holds nothing between two readings,
    and building one costs more than recording a small migration."""
    return _Context(reading_dialect(name), None, {"as_sql": True, "output_buffer": io.StringIO()})


def _python(direction: str, why: str) -> Operation:
    return Operation(
        kind="python", table=None, column=None, risk="review",
        reason=f"{direction}() cannot be analysed: {why}",
    )


# --- Code the recording cannot see ---------------------------------------------------------

#: Words in a migration file without which ``_unseen_code`` finds nothing (no parse needed).
_UNSEEN_WORDS = ("as_sql", "cursor", "connection", "executescript")

#: Attributes of a SQLAlchemy connection that hand out the DB-API one (or its driver's).
_RAW_ATTRIBUTES = ("driver_connection", "dbapi_connection", "raw_connection")


def _unseen_code(module: ModuleType, direction: str) -> list[Operation]:
    """Rows for code of ``module`` (read from its file, without the other direction's
    function) that the recording cannot see: the guard watches such a step as it runs, and
    refuses it where that cannot be done."""
    path = getattr(module, "__file__", None)
    if not path or not path.endswith(".py"):
        return []
    try:
        with open(path, encoding="utf-8") as file:
            source = file.read()
    except (OSError, UnicodeDecodeError):
        return [_python(direction, f"its source file {path} cannot be read")]
    if not any(word in source for word in _UNSEEN_WORDS):
        return []
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # it was imported, so this file is not what ran
    other = "downgrade" if direction == "upgrade" else "upgrade"
    found: dict[str, str] = {}
    for statement in tree.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)) and statement.name == other:
            continue
        for node in ast.walk(statement):
            kind = _unseen_kind(node)
            if kind is not None:
                found.setdefault(kind, UNSEEN[kind])
    return [
        Operation(kind=kind, table=None, column=None, risk="review",
                  reason=f"{direction}() holds {what}, which its reading cannot see")
        for kind, what in found.items()
    ]


#: What each kind of unseen code is, as a person reads it.
UNSEEN = {
    "unrendered": "code that runs only when not rendering SQL (it tests as_sql)",
    "raw_dbapi": "a raw DB-API cursor or connection",
    "raw_script": "an executescript() call (SQLite commits the running transaction first)",
}


def _unseen_kind(node: ast.AST) -> str | None:
    """The ``UNSEEN`` kind of one syntax node, or None."""
    if isinstance(node, ast.Name) and node.id == "as_sql":
        return "unrendered"
    if isinstance(node, ast.Constant) and node.value == "as_sql":
        return "unrendered"  # context.opts["as_sql"], getattr(context, "as_sql")
    if not isinstance(node, ast.Attribute):
        return None
    if node.attr == "as_sql":
        return "unrendered"
    if node.attr == "executescript":
        return "raw_script"
    if node.attr in _RAW_ATTRIBUTES or node.attr == "cursor":
        return "raw_dbapi"
    if node.attr == "connection":
        inner = node.value
        if isinstance(inner, ast.Attribute) and inner.attr == "connection":
            return "raw_dbapi"  # op.get_context().connection.connection
        if isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute) and inner.func.attr == "get_bind":
            return "raw_dbapi"  # op.get_bind().connection: the pool's DB-API connection
    return None


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
        self.stop("calls op.get_bind(); what it sends through the connection is read as it runs")

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
    with op_proxy_restored() as modules:
        for namespace in modules:
            namespace["_proxy"] = recorder
        yield


@contextmanager
def op_proxy_restored() -> Iterator[list[dict[str, Any]]]:
    """The namespaces behind ``alembic.op``; whatever proxy they held is put back on leaving.
    ``Operations.context`` removes its proxy only when the migrations return, so a run that
    raised would leave ``alembic.op`` pointing at its finished context."""
    modules = [namespace for namespace, _ in Operations._setups[Operations][1]]
    missing = object()
    saved = [namespace.get("_proxy", missing) for namespace in modules]
    try:
        yield modules
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
    effects: tuple[Effect, ...] = (),
) -> Operation:
    return Operation(
        kind=_kind(operation), table=table, column=column, risk=risk, reason=reason,
        sql=sql, in_batch=in_batch, source=operation, effects=effects,
    )


@singledispatch
def _classify(operation: Any, dialect: Dialect, in_batch: bool) -> list[Operation]:
    """Operations this module has no rule for (third-party or custom ones)."""
    table = getattr(operation, "table_name", None)
    return [_row(operation, "review", f"unknown operation {_kind(operation)}", in_batch, table)]


@_classify.register
def _(operation: alembic_ops.CreateTableOp, dialect: Dialect, in_batch: bool) -> list[Operation]:
    where = _name(operation.table_name, operation.schema)
    columns = tuple(c.name for c in operation.columns if isinstance(c, sa.Column))
    created = CreateTable(Target(operation.table_name, None, operation.schema), columns)
    return [_row(operation, "safe", f"creates table {where}", in_batch, operation.table_name,
                 effects=(created,))]


@_classify.register
def _(operation: alembic_ops.DropTableOp, dialect: Dialect, in_batch: bool) -> list[Operation]:
    where = _name(operation.table_name, operation.schema)
    reason = f"drops table {where} and every row in it"
    dropped = DropTables((Target(operation.table_name, None, operation.schema),))
    return [_row(operation, "destroys", reason, in_batch, operation.table_name, effects=(dropped,))]


@_classify.register
def _(operation: alembic_ops.RenameTableOp, dialect: Dialect, in_batch: bool) -> list[Operation]:
    where = _name(operation.table_name, operation.schema)
    reason = (
        f"renames table {where} to {operation.new_table_name}: data kept, but running "
        "clients that use the old name break"
    )
    renamed = Rename(Target(operation.table_name, None, operation.schema), operation.new_table_name)
    return [_row(operation, "safe", reason, in_batch, operation.table_name, effects=(renamed,))]


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
    target = Target(table, name, operation.schema)
    added: tuple[Effect, ...] = (AddColumn(target, column.type),) + tuple(
        AddForeignKey(target, fk.target_fullname.split(".")[-2], fk.ondelete)
        for fk in column.foreign_keys
    )
    if not column.nullable and column.server_default is None:
        reason = f"adds NOT NULL column {where} without a server default: fails if the table has rows"
        return [_row(operation, "may_fail", reason, in_batch, table, name, effects=added)]
    return [_row(operation, "safe", f"adds column {where}", in_batch, table, name, effects=added)]


@_classify.register
def _(operation: alembic_ops.DropColumnOp, dialect: Dialect, in_batch: bool) -> list[Operation]:
    where = f"{_name(operation.table_name, operation.schema)}.{operation.column_name}"
    dropped = DropColumns((Target(operation.table_name, operation.column_name, operation.schema),))
    return [_row(operation, "destroys", f"drops column {where} and its values", in_batch,
                 operation.table_name, operation.column_name, effects=(dropped,))]


@_classify.register
def _(operation: alembic_ops.AlterColumnOp, dialect: Dialect, in_batch: bool) -> list[Operation]:
    table, name = operation.table_name, operation.column_name
    where = f"{_name(table, operation.schema)}.{name}"
    column = Target(table, name, operation.schema)
    found: list[tuple[Risk, str, tuple[Effect, ...]]] = []
    using = operation.kw.get(f"{dialect.name}_using")
    if operation.modify_type is not None or using:
        new = operation.modify_type if operation.modify_type is not None else operation.existing_type
        risk, reason = _type_change(where, operation.existing_type, new, dialect, using)
        converted = (Convert(column, operation.existing_type, new, using),)
        found.append((risk, reason, converted if risk == "destroys" else ()))
    if operation.modify_nullable is False:
        found.append(("may_fail", f"sets NOT NULL on {where}: fails if any row is NULL", ()))
    elif operation.modify_nullable:
        found.append(("safe", f"drops NOT NULL on {where}", ()))
    if operation.modify_name:
        found.append(("safe", f"renames column {where} to {operation.modify_name}: data kept, "
                              "but running clients that use the old name break",
                      (Rename(column, operation.modify_name),)))
    if operation.modify_server_default is not False or operation.modify_comment is not False:
        found.append(("safe", f"changes the default or comment of {where}", ()))
    if not found:
        found.append(("safe", f"alters {where} without changing it", ()))
    return [
        _row(operation, risk, reason, in_batch, table, name, effects=effects)
        for risk, reason, effects in found
    ]


def _type_change(
    where: str, old: Any, new: Any, dialect: Dialect, using: str | None = None
) -> tuple[Risk, str]:
    """A type change (or a ``USING`` rewrite): destroys when values may not survive it.

    PostgreSQL refuses a cast that fails, so a converting change there can only fail; SQLite's
    batch copy converts silently (``CAST('abc' AS INTEGER)`` is 0), so there every change that
    is not a widening is counted; a ``USING`` expression rewrites values on any backend."""
    new = sqltypes.to_instance(new) if new is not None else None
    if using:
        return "destroys", (
            f"rewrites {where} with USING {using}: values that do not come back unchanged are lost"
        )
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
    if dialect.name == "sqlite" and not widens(old, new):
        return "destroys", (
            f"converts {where} from {change}: SQLite's table copy converts silently, values "
            "that do not come back unchanged are lost"
        )
    return "may_fail", f"changes the type of {where} from {change}: fails if a value cannot be cast"


def widens(old: sa.types.TypeEngine[Any], new: sa.types.TypeEngine[Any]) -> bool:
    """Every value of ``old`` is a value of ``new``: a longer string, a bigger integer, a
    number with more digits, text from a string."""
    if isinstance(old, sa.String) and isinstance(new, sa.String) and not isinstance(new, sa.Enum):
        return new.length is None or (old.length is not None and new.length >= old.length)
    old_limit, new_limit = integer_limit(old), integer_limit(new)
    if old_limit is not None and new_limit is not None:
        return new_limit >= old_limit
    if old_limit is not None and isinstance(new, sa.Numeric):
        return True
    return narrows(old, new) is None and type(old) is type(new)


def _compiled(type_: sa.types.TypeEngine[Any], dialect: Dialect) -> str:
    try:
        return type_.compile(dialect=dialect)
    except SQLAlchemyError:
        return repr(type_)


#: Values a column of each integer type holds (signed); smallest type first.
INTEGER_RANGES: tuple[tuple[type[sa.Integer], int], ...] = (
    (mysql.TINYINT, 2**7),
    (sa.SmallInteger, 2**15),
    (mysql.MEDIUMINT, 2**23),
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
            return f"shorter: {plural(new.length, 'character')}"
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
    [row] = _constraint(operation, f"foreign key {operation.constraint_name}",
                        operation.source_table, operation.local_cols,
                        f"fails if a row points at a missing {operation.referent_table} row",
                        in_batch)
    column = Target(operation.source_table, operation.local_cols[0], operation.kw.get("source_schema"))
    key = AddForeignKey(column, operation.referent_table, operation.kw.get("ondelete"))
    return [dataclasses.replace(row, effects=(key,))]


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
    return [_row(operation, "safe", f"inserts {plural(len(operation.rows), 'row')} into {table}",
                 in_batch, table)]


@_classify.register
def _(operation: alembic_ops.ExecuteSQLOp, dialect: Dialect, in_batch: bool) -> list[Operation]:
    try:
        text = executed_sql(operation.sqltext, dialect)
    except (SQLAlchemyError, AttributeError, NotImplementedError) as exc:
        reason = f"executes {type(operation.sqltext).__name__} that cannot be compiled: {exc}"
        return [_row(operation, "review", reason, in_batch)]
    readings = statements.read(text)
    if not readings:
        return [_row(operation, "safe", "executes no SQL statement", in_batch, sql=text)]
    return [
        _row(operation, reading.risk, reading.reason, in_batch, reading.table, reading.column,
             reading.sql, reading.effects)
        for reading in readings
    ]


def executed_sql(sqltext: Any, dialect: Dialect) -> str:
    """What an ``op.execute`` argument is read as: a string as given, a Core statement or
    ``text()`` compiled (``_compiled_sql``). The guard compares the statements a step runs
    with the ones its reading showed by this text."""
    return sqltext if isinstance(sqltext, str) else _compiled_sql(sqltext, dialect)


def _compiled_sql(statement: Any, dialect: Dialect) -> str:
    """A Core statement or ``text()`` as SQL with its bound values inlined (so it can be read
    and counted); as plain SQL with placeholders when a value has no literal form."""
    plain = statement.compile(dialect=dialect)
    if any(value is None for value in plain.params.values()):
        return str(plain)  # a parameter bound at run time: NULL would change its meaning
    try:
        sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    except (SQLAlchemyError, NotImplementedError, TypeError):
        return str(plain)
    # Percent signs are doubled for drivers that format parameters; none are left to format.
    return sql.replace("%%", "%") if dialect.paramstyle in ("format", "pyformat") else sql
