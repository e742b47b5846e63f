"""Where data loss is decided, before a plan runs and again as each step runs.

Before: ``decide`` refuses a plan whose assessment (``dataloss.assess``) finds data it would
destroy, unless the run accepts it (``--allow-data-loss``) or keeps it (``--archive``).

As it runs: ``DataGuard.wrap`` replaces each step's migration function (inside the step's own
transaction, see ``executor``). A step that can destroy data first locks the tables it would
count (PostgreSQL: ``LOCK TABLE ... IN EXCLUSIVE MODE``; SQLite steps run in ``BEGIN
IMMEDIATE``), counts again, and archives or refuses: no row written between the assessment and
the drop can slip through. A step whose code could not be read (``op.get_bind()``, SQL the
reader does not know) runs under a savepoint with every statement it sends read and counted
before it reaches the database; afterwards the catalog is compared, and on PostgreSQL the
transaction's own delete counters, so a table, column or rows that vanished through code no
reader understood (a function, a ``DO`` block) are counted after rolling back to the savepoint,
and refused like any other loss. A step that could be read runs with each ``op.execute`` matched
to one its reading showed: rows changed by a statement the reading did not show (code that runs
only when not rendering SQL) are that statement's own, never credited to a read statement on the
same table, and the step is rolled back and refused. Each Alembic operation such a step runs is
held against the ones its reading showed (``_Shown``): a drop, narrowing or rebuild no reading
showed, which no row count could hear, is counted as the database is then and refused before
it is sent; so is a schema change sent past Alembic's operations (``op.get_bind().execute``).
A read step whose source holds code the reading cannot see (a test of ``as_sql``, a raw DB-API
cursor: ``analysis.UNSEEN``) runs so on PostgreSQL and SQLite inside a savepoint, the catalog
compared after it (``_held``): a column or table a raw cursor dropped, which no listener hears,
is counted and refused. On MariaDB/MySQL, whose DDL commits at once, a step with a raw DB-API
cursor (anywhere: SQLite's ``executescript``, which commits first) is refused before it runs.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from alembic.operations import BatchOperations
from alembic.operations.base import AbstractOperations
from alembic.operations.batch import BatchOperationsImpl
from alembic.operations.ops import ExecuteSQLOp, MigrateOperation
from sqlalchemy.engine import Connection

from .analysis import UNSEEN, Operation, classify, executed_sql, reading_dialect
from .archive import ArchiveLog, ArchiveSpec
from .dataloss import (
    UNKNOWN,
    DataLossError,
    DataLossReport,
    Loss,
    Shadow,
    StepRisk,
    assess,
    step_operations,
)
from .executor import Progress, RunReport, execute
from .plan import Plan, Step
from .project import Project
from .statements import (
    CopyRows,
    DeleteRows,
    DropColumns,
    DropTables,
    Overwrite,
    Rename,
    Target,
    Uncountable,
    UpdateRows,
    read,
    unquote,
)
from .wording import plural

#: Backends whose DDL rolls back with its transaction (a savepoint can undo a step's drops).
TRANSACTIONAL_DDL = ("sqlite", "postgresql")


class DataGuard:
    """Refuses plans and steps that would destroy existing data, or archives that data."""

    def __init__(self, project: Project, allow_data_loss: bool, archive: bool | None) -> None:
        self.project = project
        self.allow_data_loss = allow_data_loss
        self.archive = project.settings.archive if archive is None else archive
        self.log = ArchiveLog(project.settings.archive_table)
        #: Tables ``(name, None)`` and columns this run created, under their current names:
        #: what they hold, the run wrote.
        self.created: set[tuple[str, str | None]] = set()
        #: Archives written as the run went.
        self.archived: list[ArchiveSpec] = []
        #: What the step being run was counted to lose (its tables' changes are explained).
        self.counted: list[Loss] = []
        #: The run's listener for the rows each statement reports (``execute``).
        self.hearing = _Hearing()

    # -- before the run ----------------------------------------------------------------------

    @property
    def accepted(self) -> str | None:
        """The flag under which this run keeps or loses data at risk, if any."""
        return "--archive" if self.archive else "--allow-data-loss" if self.allow_data_loss else None

    def decide(
        self, connection: Connection, plan: Plan, report: DataLossReport, action: str | None = None
    ) -> list[ArchiveSpec]:
        """Given what ``plan`` would destroy (``assess``): raise unless allowed, or plan the
        archives that keep it (refusing what cannot be archived). ``action`` names the command
        in the refusal (default: the plan's kind and target)."""
        if not report.losses:
            return []
        if self.archive:
            specs = self.log.plan(connection, report, skip_unarchivable=self.allow_data_loss)
            connection.rollback()
            return specs
        if self.allow_data_loss:
            return []
        raise DataLossError(
            DataLossReport(report.losses),
            f"{action or f'{plan.kind} {plan.target}'} would destroy existing data in "
            f"{plural(len(report.losses), 'place')}; nothing was run. Re-run with --archive to keep a "
            "copy you can restore, or with --allow-data-loss",
        )

    def run(
        self, connection: Connection, plan: Plan, progress: Progress | None,
        finalize: Callable[[Connection], None] | None = None,
    ) -> tuple[RunReport, DataLossReport]:
        """Assess, decide, then execute the plan with every step counted again as it runs."""
        report = assess(self.project, connection, plan)
        self.decide(connection, plan, report)
        return self.execute(connection, plan, progress, finalize), report

    def execute(
        self, connection: Connection, plan: Plan, progress: Progress | None,
        finalize: Callable[[Connection], None] | None = None,
    ) -> RunReport:
        if self.archive:
            self.log.ensure(connection)
            connection.commit()
        with self.hearing.listening(connection):
            return execute(self.project, connection, plan, progress, finalize, wrap=self.wrap)

    # -- as each step runs -------------------------------------------------------------------

    def wrap(
        self, connection: Connection, step: Step, function: Callable[..., None]
    ) -> Callable[..., None]:
        """The step's migration function, preceded by the count (and archives) and, for code
        that could not be read, watched statement by statement."""
        if self.allow_data_loss and not self.archive:
            return function
        dialect = connection.dialect.name
        ops = step_operations(self.project, step, dialect)
        unreadable = any(op.risk == "review" and op.kind not in UNSEEN for op in ops)
        unseen = {op.kind: op for op in ops if op.kind in UNSEEN}
        unwatchable = [op for op in unseen.values() if not watchable(op, dialect)]

        def run(**kw: Any) -> None:
            if unwatchable and not self.allow_data_loss:
                _refuse_unwatchable(step, unwatchable[0], dialect)
            self.counted = []
            created = set(self.created)  # before the count adds what this step creates
            archived = len(self.archived)
            self._count_step(connection, step, ops)
            # The step's transaction began just before (executor: one per migration) and so far
            # only read, unless the count archived something: nothing it changed to measure from.
            untouched = len(self.archived) == archived
            with _Unexplained(self.project, connection, ops, self.created, self.hearing, untouched) as unexplained:
                unexplained.account(self.counted)
                if unreadable:
                    self._watched(connection, step, function, kw, unexplained)
                    return
                if unseen and dialect in TRANSACTIONAL_DDL:
                    self._held(connection, step, function, kw, ops, created, unexplained)
                    return
                with _Shown(self, connection, step, ops, created, unexplained).running():
                    function(**kw)
                self._after(step, unexplained.risks(step))

        return run

    def _count_step(self, connection: Connection, step: Step, ops: list[Operation]) -> None:
        """Count what the step's operations destroy now, with the tables locked, then archive
        or refuse; remember what the step creates."""
        if not any(op.risk == "destroys" for op in ops):
            if any(op.effects for op in ops):
                shadow = Shadow(connection, exempt=self.created, dry=True)
                for op in ops:
                    shadow.apply(op.effects, op.reason)
                self.created = shadow.created_names()
            return
        dry = Shadow(connection, exempt=self.created, dry=True)
        for op in ops:
            dry.apply(op.effects, op.reason)
        _lock(connection, dry.touched)
        shadow = Shadow(connection, exempt=self.created)
        risks = [
            StepRisk(step, op, loss) for op in ops for loss in shadow.apply(op.effects, op.reason)
        ]
        self.created = shadow.created_names()
        self.counted = [risk.loss for risk in risks if risk.loss is not None]
        self._settle(connection, step, risks)

    def _settle(self, connection: Connection, step: Step, risks: list[StepRisk]) -> None:
        """Archive (``--archive``) or refuse what ``risks`` would lose, unless accepted."""
        lost = [risk for risk in risks if risk.loses_data]
        if not lost:
            return
        if self.archive:
            kept = {(s.table, s.column) for s in self.archived if s.step == step and s.where is None}
            lost = [
                risk for risk in lost
                if risk.loss is not None and (risk.loss.table, None) not in kept
                and (risk.loss.table, risk.loss.column) not in kept
            ]  # a whole table or column archived earlier in this step holds them already
            specs = self.log.plan(connection, DataLossReport(lost), skip_unarchivable=self.allow_data_loss)
            for spec in specs:
                self.log.write(connection, spec)
            self.archived += specs
            return
        if not self.allow_data_loss:
            _refuse(lost)

    def _after(self, step: Step, risks: list[StepRisk]) -> None:
        """Rows found changed after the step ran, with nothing that counted them before: too
        late to archive (they are gone), so refused unless the run accepts data loss."""
        lost = [risk for risk in risks if risk.loses_data]
        if lost and not self.allow_data_loss:
            _refuse(lost)

    # -- steps whose code could not be read ---------------------------------------------------

    def _watched(
        self, connection: Connection, step: Step, function: Callable[..., None], kw: dict[str, Any],
        unexplained: _Unexplained,
    ) -> None:
        """Run ``function`` with every statement read and counted before it runs; then find
        what vanished or changed through code no reader understood."""
        watch = _StatementWatch(self, connection, step, unexplained)
        if connection.dialect.name not in TRANSACTIONAL_DDL:
            with watch.listening():
                function(**kw)
            self._after(step, unexplained.risks(step))
            self.created = watch.shadow.created_names()
            return
        savepoint = connection.begin_nested()
        before = _catalog(connection, self.project)
        with watch.listening():
            function(**kw)
        vanished = _vanished(before, _catalog(connection, self.project), watch.explained)
        changed = unexplained.risks(step)
        if not vanished and not changed:
            savepoint.commit()
            self.created = watch.shadow.created_names()
            return
        savepoint.rollback()
        self._settle(connection, step, changed + self._gone(connection, step, vanished))
        unexplained.silence()  # the run below repeats what was just judged
        watch = _StatementWatch(self, connection, step, unexplained)
        with watch.listening():
            function(**kw)  # nothing vanished with data, or it is archived: run it for real
        self.created = watch.shadow.created_names()

    def _gone(
        self, connection: Connection, step: Step, vanished: list[tuple[str, str | None]]
    ) -> list[StepRisk]:
        """What the tables and columns that vanished held, counted on the database as it was
        before the step (its savepoint rolled back)."""
        counter = Shadow(connection, counting="current", exempt=self.created)
        risks: list[StepRisk] = []
        for table, column in vanished:
            if counter.table(table) is None:
                continue
            gone = DropColumns((Target(table, column),)) if column else DropTables((Target(table),))
            what = f"column {table}.{column}" if column else f"table {table}"
            reason = f"{what} vanished through code that could not be read"
            risks += [StepRisk(step, _seen(reason, table, column), loss)
                      for loss in counter.apply((gone,), reason)]
        return risks

    def _held(
        self, connection: Connection, step: Step, function: Callable[..., None], kw: dict[str, Any],
        ops: list[Operation], created: set[tuple[str, str | None]], unexplained: _Unexplained,
    ) -> None:
        """A read step whose source holds code its reading cannot see (``analysis.UNSEEN``) on a
        backend whose DDL rolls back: each operation is held against the reading (``_Shown``)
        inside a savepoint, and the catalog compared after it: a table or column gone without
        an operation or statement that said so (sent through a raw DB-API cursor, which no
        listener hears) is counted, then refused or archived and the step run again."""
        savepoint = connection.begin_nested()
        before = _catalog(connection, self.project)
        shown = _Shown(self, connection, step, ops, created, unexplained)
        with shown.running():
            function(**kw)
        vanished = _vanished(before, _catalog(connection, self.project), shown.explained)
        if not vanished:
            savepoint.commit()
            self._after(step, unexplained.risks(step))
            return
        savepoint.rollback()
        self._settle(connection, step, unexplained.risks(step) + self._gone(connection, step, vanished))
        unexplained.silence()  # the run below repeats what was just judged
        with _Shown(self, connection, step, ops, created, unexplained).running():
            function(**kw)  # what vanished is archived: run it for real


def _explained(effects: tuple[Any, ...]) -> set[Any]:
    """The tables (and ``(table, column)``) ``effects`` drop, rename or delete from: gone
    from the catalog with a reason."""
    found: set[Any] = set()
    for effect in effects:
        if isinstance(effect, DropTables):
            found.update(t.table for t in effect.tables)
        elif isinstance(effect, DropColumns):
            found.update((t.table, t.column) for t in effect.columns)
        elif isinstance(effect, Rename):
            target = effect.target
            found.add(target.table if target.column is None else (target.table, target.column))
        elif isinstance(effect, DeleteRows):
            found.add(effect.table.table)
    return found


def watchable(operation: Operation, dialect: str) -> bool:
    """Can the guard watch what ``operation`` (a read row) stands for as it runs on ``dialect``?
    Not a raw DB-API cursor where DDL commits at once (no listener hears it, no savepoint takes
    it back), nor SQLite's ``executescript`` (it commits the step's transaction first)."""
    if operation.kind == "raw_script":
        return False
    return operation.kind != "raw_dbapi" or dialect in TRANSACTIONAL_DDL


def _refuse_unwatchable(step: Step, unseen: Operation, dialect: str) -> None:
    """Refuse, before it runs, a step whose unseen code cannot be watched on this backend."""
    backend = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}.get(dialect, "MariaDB/MySQL")
    why = ("SQLite commits the running transaction before it" if unseen.kind == "raw_script"
           else f"{backend} commits schema changes at once and no listener hears that cursor")
    raise DataLossError(
        DataLossReport([StepRisk(step, unseen)]),
        f"it cannot be checked for data loss on {backend}: {unseen.reason}, and {why}; "
        "nothing of it was run. Review that code, then re-run with --allow-data-loss to run it",
    )


class _StatementWatch:
    """Reads each statement a step sends before the database runs it; counts what it would
    destroy on the database as it is at that moment, and archives or refuses."""

    def __init__(
        self, guard: DataGuard, connection: Connection, step: Step, unexplained: _Unexplained
    ) -> None:
        self.guard = guard
        self.connection = connection
        self.step = step
        self.unexplained = unexplained
        self.shadow = Shadow(connection, counting="current", exempt=guard.created)
        #: Tables (and ``(table, column)``) whose drops, renames or deletes were read.
        self.explained: set[Any] = set()

    @contextmanager
    def listening(self) -> Iterator[None]:
        sa.event.listen(self.connection, "before_cursor_execute", self._before)
        try:
            yield
        finally:
            sa.event.remove(self.connection, "before_cursor_execute", self._before)

    def _before(self, conn: Connection, cursor: Any, statement: str, parameters: Any,
                context: Any, executemany: bool) -> None:
        if self.guard.project.recorder.is_own_table(_first_table(statement)):
            return
        # executemany: one count per parameter set (an UPDATE or DELETE run for many rows)
        parameter_sets = list(parameters) if executemany else [parameters]
        for reading in read(statement):
            if not reading.effects:
                continue
            self.explained |= _explained(reading.effects)
            self.unexplained.declare(reading.effects)
            operation = _seen(reading.reason, reading.table, reading.column, reading.sql)
            for parameter_set in parameter_sets:
                self.shadow.params = parameter_set
                losses = self.shadow.apply(reading.effects, reading.reason)
                self.shadow.params = None
                self.explained.update(loss.table for loss in losses)
                self.unexplained.account(losses)
                self.guard._settle(conn, self.step, [StepRisk(self.step, operation, loss) for loss in losses])


def _refuse(lost: list[StepRisk]) -> None:
    first = lost[0]
    amount = "an unknown number of rows" if first.amount == "unknown" else first.amount
    more = f" (and {len(lost) - 1} more)" if len(lost) > 1 else ""
    raise DataLossError(
        DataLossReport(lost),
        f"counted again as it ran, it would destroy {amount} of {first.object}{more} "
        f"({first.operation.reason}), which this run did not accept; re-run with --archive "
        "to keep a copy, or with --allow-data-loss",
    )


def _seen(reason: str, table: str | None, column: str | None, sql: str | None = None) -> Operation:
    """An Operation for something read as it ran (for the report's rows)."""
    return Operation(kind="execute", table=table, column=column, risk="destroys", reason=reason, sql=sql)


def _first_table(statement: str) -> str:
    """Our own bookkeeping statements (version table, log, archives) are not watched."""
    words = statement.replace('"', " ").replace("`", " ").split()
    for index, word in enumerate(words[:-1]):
        if word.upper() in ("INTO", "UPDATE", "TABLE", "FROM"):
            return words[index + 1]
    return ""


def _catalog(connection: Connection, project: Project) -> set[Any]:
    """Every table and ``(table, column)`` of the default schema, without our own tables."""
    inspector = sa.inspect(connection)
    found: set[Any] = set()
    for (_schema, table), columns in inspector.get_multi_columns().items():
        if project.recorder.is_own_table(table):
            continue
        found.add(table)
        found.update((table, column["name"]) for column in columns)
    return found


def _vanished(before: set[Any], after: set[Any], explained: set[Any]) -> list[tuple[str, str | None]]:
    """Tables and columns gone without a statement that said so (a column of a vanished table
    is not listed on its own)."""
    gone_tables = {t for t in before - after if isinstance(t, str) and t not in explained}
    found: list[tuple[str, str | None]] = [(t, None) for t in sorted(gone_tables)]
    for item in sorted(i for i in before - after if isinstance(i, tuple)):
        table, column = item
        if table in gone_tables or item in explained or table in explained:
            continue
        found.append((table, column))
    return found


#: Backends whose statements' reported rows the guard hears (all it supports).
HEARD_DIALECTS = ("postgresql", "sqlite", "mysql", "mariadb")


class _Hearing:
    """The rows each statement reports, passed to the running step's ``_Unexplained``, and each
    statement before it is sent, passed to the running step's ``_Shown``: listeners for the
    whole run, as adding and removing them per step costs more than a small step's own DDL."""

    def __init__(self) -> None:
        self.connection: Connection | None = None  # while listening
        self.step: _Unexplained | None = None
        self.shown: _Shown | None = None

    @contextmanager
    def listening(self, connection: Connection) -> Iterator[None]:
        if connection.dialect.name not in HEARD_DIALECTS:
            yield
            return
        sa.event.listen(connection, "before_cursor_execute", self._sending)
        sa.event.listen(connection, "after_cursor_execute", self._heard)
        self.connection = connection
        try:
            yield
        finally:
            self.connection = None
            sa.event.remove(connection, "after_cursor_execute", self._heard)
            sa.event.remove(connection, "before_cursor_execute", self._sending)

    def _sending(self, _conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        if self.shown is not None and not self.shown.depth and _may_change_schema(statement):
            self.shown.sent(statement)

    def _heard(self, *args: Any) -> None:
        if self.step is not None:
            self.step._counted(*args)


#: Leading comments of a statement, before its first keyword.
LEADING_COMMENTS_RE = re.compile(r"\s*(?:--[^\n]*(?:\n|$)\s*|/\*.*?\*/\s*)*", re.DOTALL)


def _may_change_schema(statement: str) -> bool:
    """A statement that can drop, empty, narrow or move data by a schema change, or text of
    several statements: only these are read as they are sent past Alembic's operations (every
    other statement only adds, or changes rows the step is heard changing)."""
    head = statement.lstrip()
    if head.startswith(("--", "/*")):
        head = statement[LEADING_COMMENTS_RE.match(statement).end():]  # type: ignore[union-attr]
    return head[:8].upper().startswith(("DROP", "ALTER", "TRUNCATE", "RENAME")) or ";" in head.rstrip().rstrip(";")


class _Unexplained:
    """Rows a step deleted or updated that none of the statements read for it explains: a
    trigger, a function, a raw DB-API cursor. PostgreSQL: the transaction's own counters
    (``pg_stat_xact_user_tables``, which see inside functions and triggers); SQLite: the
    authorizer, which hears of every DELETE and UPDATE the database prepares, trigger programs
    included; MariaDB: the session's ``Handler_delete``/``Handler_update`` counters (triggers and
    procedures included) against the rows the step's own DELETE and UPDATE statements reported,
    which cannot say which table: more than reported is refused as "an unknown table".
    Explained: the tables the step's operations name, the tables whose foreign keys lead to them
    (cascades), what the run created, and our own tables. A statement that runs but was never
    read (code that only runs when not rendering SQL, on every backend) explains nothing: the
    rows it reports deleting or updating are refused as the rows they are, also in a table
    whose other, read statements were counted (``_Shown``)."""

    def __init__(
        self, project: Project, connection: Connection, ops: list[Operation],
        exempt: set[tuple[str, str | None]], hearing: _Hearing, untouched: bool = False,
    ) -> None:
        self.project = project
        self.connection = connection
        self.hearing = hearing
        self.exempt = set(exempt)
        #: The transaction has deleted and updated nothing yet (PostgreSQL's per-transaction
        #: counters are then all zero: nothing to read before the step).
        self.untouched = untouched
        #: Tables whose rows the step's statements say they delete, or update.
        self.deletes: set[str] = set()
        self.updates: set[str] = set()
        for op in ops:
            self.declare(op.effects)
            if op.in_batch and op.table:  # a rebuild copies, drops and renames the table
                self.deletes.add(op.table)
                self.updates.add(op.table)
        self.heard: dict[str, set[str]] = {}  # SQLite: table -> {"deleted", "updated"}
        #: SQLite: rows the statements said they changed, and the connection's change counter
        #: before; more changes than that came from triggers, cascades or a raw cursor.
        self.statement_rows = 0
        self.changes_before = 0
        #: MariaDB: rows the statements said they deleted / updated, and the handler counters before.
        self.statement_changes = {"deleted": 0, "updated": 0}
        self.handler_before = {"deleted": 0, "updated": 0}
        #: (table, "deleted"/"updated", rows, sent by code the reading did not show) reported
        #: by statements nothing read for the step explains.
        self.unread: list[tuple[str, str, int, bool]] = []
        #: Inside an ``op.execute`` the step's reading showed (``_Shown``); None: every
        #: statement is read as it runs (a watched step), or none is compared.
        self.in_read_statement: bool | None = None
        self.before: dict[str, tuple[int, int]] = {}
        self.silenced = False

    def declare(self, effects: tuple[Any, ...]) -> None:
        for effect in effects:
            deletes, updates = _rows_changed_by(effect)
            self.deletes.update(deletes)
            self.updates.update(updates)

    def account(self, losses: list[Loss]) -> None:
        """Tables whose losses were counted and judged (refused, archived or accepted):
        cascades included. A count of 0 explains nothing: rows that go anyway were not seen."""
        for loss in losses:
            if loss.rows != 0:
                self.deletes.add(loss.table)
                self.updates.add(loss.table)

    def silence(self) -> None:
        self.silenced = True

    def __enter__(self) -> _Unexplained:
        if self.connection.dialect.name == "postgresql":
            self.before = {} if self.untouched else _changes(self.connection)
        elif self.connection.dialect.name == "sqlite":
            driver = self.connection.connection.driver_connection
            driver.set_authorizer(self._heard)
            self.changes_before = driver.total_changes
        elif self.connection.dialect.name in ("mysql", "mariadb"):
            self.handler_before = _handler_changes(self.connection)
        if self.connection.dialect.name in HEARD_DIALECTS:
            if self.hearing.connection is not self.connection:
                raise RuntimeError("a step's statements are heard only inside DataGuard.execute")
            self.hearing.step = self
        return self

    def __exit__(self, *exc: object) -> None:
        self.hearing.step = None
        if self.connection.dialect.name == "sqlite":
            self.connection.connection.driver_connection.set_authorizer(None)

    def _counted(self, conn: Connection, cursor: Any, statement: str, parameters: Any,
                 context: Any, executemany: bool) -> None:
        verb = statement.lstrip()[:7].upper()
        if cursor.rowcount <= 0 or not verb.startswith(("INSERT", "UPDATE", "DELETE", "REPLACE", "WITH")):
            return
        changed = _changed_tables(statement)
        if self.in_read_statement is False and not any(
            self.project.recorder.is_own_table(table) for table, _how in changed
        ):  # sent by code the step's reading did not show: nothing it changed is explained
            how = "deleted" if verb.startswith(("DELETE", "REPLACE")) else "updated"
            if changed or verb.startswith(("DELETE", "UPDATE", "REPLACE")):
                self.unread += [(table, how, cursor.rowcount, True) for table, how in changed] or [
                    (UNKNOWN_TABLE, how, cursor.rowcount, True)
                ]
                return
        if not changed and not verb.startswith("INSERT"):
            return  # a change whose table cannot be read: credited to none, the counters see it
        unread = [(table, how) for table, how in changed if not self._explains(table, how)]
        if unread:  # its rows are what they are: refused by name, never credited
            self.unread += [(table, how, cursor.rowcount, False) for table, how in unread]
            return
        self.statement_rows += cursor.rowcount
        if verb.startswith(("DELETE", "REPLACE")):
            self.statement_changes["deleted"] += cursor.rowcount
        if verb.startswith(("UPDATE", "INSERT")):  # INSERT ... ON DUPLICATE KEY UPDATE
            self.statement_changes["updated"] += cursor.rowcount

    def _explains(self, table: str, how: str) -> bool:
        """Rows of ``table`` deleted or updated for a reason the step's reading gave (before
        cascades, which ``risks`` adds from the catalog)."""
        declared = self.deletes if how == "deleted" else self.updates | self.deletes
        return (
            table in declared or table.startswith("sqlite_") or (table, None) in self.exempt
            or self.project.recorder.is_own_table(table)
        )

    def _heard(self, action: int, table: str | None, _column: str | None, _db: str | None,
               _source: str | None) -> int:
        if action in (sqlite3.SQLITE_DELETE, sqlite3.SQLITE_UPDATE) and table:
            self.heard.setdefault(table, set()).add(
                "deleted" if action == sqlite3.SQLITE_DELETE else "updated"
            )
        return sqlite3.SQLITE_OK

    def risks(self, step: Step) -> list[StepRisk]:
        """What changed without a statement that said so, as losses (counts on PostgreSQL,
        "unknown" on SQLite); rows of statements the step's reading did not show, counted."""
        if self.silenced:
            return []
        # (table, "deleted"/"updated", rows or UNKNOWN, sent by code the reading did not show)
        found: list[tuple[str, str, int, bool]] = list(self.unread)
        said = {how: sum(rows for _t, unread_how, rows, _u in self.unread if unread_how == how)
                for how in ("deleted", "updated")}
        if self.connection.dialect.name == "postgresql":
            for table, (deleted, updated) in _changes(self.connection).items():
                was = self.before.get(table, (0, 0))
                found += [(table, "deleted", deleted - was[0], False)] if deleted > was[0] else []
                found += [(table, "updated", updated - was[1], False)] if updated > was[1] else []
        elif self.connection.dialect.name in ("mysql", "mariadb"):
            now = _handler_changes(self.connection)
            for how in ("deleted", "updated"):
                extra = now[how] - self.handler_before[how] - self.statement_changes[how] - said[how]
                if extra > 0:
                    found.append((UNKNOWN_TABLE, how, extra, False))
        else:
            driver = self.connection.connection.driver_connection
            changed = driver.total_changes - self.changes_before
            if changed > self.statement_rows + said["deleted"] + said["updated"]:
                found += [
                    (table, how, UNKNOWN, False) for table, hows in self.heard.items() for how in hows
                ]
        if not found:
            return []  # nothing changed unexplained: no cascade to look up in the catalog
        # Rows a cascade deletes were counted with their parents (``account``); children of
        # updated rows may be updated by ON UPDATE CASCADE. Nothing explains an unread statement.
        explained = {
            "deleted": self.deletes,
            "updated": self.updates | self.deletes | _referencing(self.connection, self.updates),
        }
        risks = []
        reported: set[str] = set()
        for table, how, count, unshown in sorted(found, key=lambda item: (item[0], item[1] != "deleted", not item[3])):
            if ((table in explained[how] and not unshown) or table in reported or table.startswith("sqlite_")
                    or (table, None) in self.exempt or self.project.recorder.is_own_table(table)):
                continue
            reported.add(table)
            amount = "rows" if count == UNKNOWN else f"{count} row{'' if count == 1 else 's'}"
            source = ("a statement this step's reading did not show (code that runs only when not "
                      "rendering SQL)" if unshown
                      else "something no statement of this step says: a trigger, a function or a raw cursor")
            reason = f"{amount} of {table} {how} by {source}"
            risks.append(StepRisk(step, _seen(reason, table, None), Loss(table, None, count, reason)))
        return risks


class _Shown:
    """Each Alembic operation a step runs (``op.*``, also in a batch), held against the ones its
    reading showed, classified the same way (``analysis.classify``). A dropped column or table
    leaves no row count to hear, so what destroys data and was not shown (code that runs only
    when not rendering SQL) is counted on the database as it is then and refused before it is
    sent (MariaDB commits DDL at once); rows deleted or updated by an unshown statement are
    heard as it runs (``_Unexplained``). Once the step ran anything not shown, every operation
    after it is counted again before it runs: an unshown rename can put data under the name a
    shown drop was counted empty at. A shown ``op.execute`` marks its statements as read. A
    schema change sent outside every operation (``op.get_bind().execute``, which no reading can
    show) is read and held the same way before the database runs it (``sent``); what Alembic
    sends inside an operation, or rebuilding a batch's table after it, was judged with it."""

    def __init__(
        self, guard: DataGuard, connection: Connection, step: Step, ops: list[Operation],
        exempt: set[tuple[str, str | None]], unexplained: _Unexplained,
    ) -> None:
        self.guard = guard
        self.connection = connection
        self.step = step
        self.exempt = exempt
        self.unexplained = unexplained
        self.dialect = reading_dialect(connection.dialect.name)
        #: Shown operations left to run: rows (equal by kind, table, column, reason, SQL) and,
        #: for ``op.execute``, its SQL text (with the rows read from it).
        self.shown = Counter(op for op in ops if not isinstance(op.source, ExecuteSQLOp))
        self.shown_sql: Counter[str] = Counter()
        self.rows_of_sql: dict[str, list[Operation]] = {}
        sources = {id(op.source): op.source for op in ops if isinstance(op.source, ExecuteSQLOp)}
        for source in sources.values():
            text = executed_sql(source.sqltext, self.dialect)
            self.shown_sql[text] += 1
            self.rows_of_sql[text] = [op for op in ops if op.source is source]
        #: The database as the step has changed it, from its first unshown operation on.
        self.shadow: Shadow | None = None
        #: Alembic operations (and batch rebuilds) running now: what they send was judged.
        self.depth = 0
        #: Tables and columns the judged operations drop or rename (``_explained``).
        self.explained: set[Any] = set()

    @contextmanager
    def running(self) -> Iterator[None]:
        """Judge each operation the step invokes, for this step only (Alembic's own ``op``
        proxy and every batch go through ``invoke``; the reader's recorders override it)."""
        invoke = AbstractOperations.invoke
        flush = BatchOperationsImpl.flush
        shown = self

        def judged(operations: AbstractOperations, operation: MigrateOperation) -> Any:
            read_statement = shown.judge(operation, isinstance(operations, BatchOperations))
            shown.unexplained.in_read_statement = read_statement
            shown.depth += 1
            try:
                return invoke(operations, operation)
            finally:
                shown.depth -= 1
                shown.unexplained.in_read_statement = False

        def rebuilt(impl: BatchOperationsImpl) -> None:
            """A batch's operations, run (or its table rebuilt) as the ``with`` block ends,
            outside any ``invoke``: each was judged as the block recorded it."""
            shown.depth += 1
            try:
                flush(impl)
            finally:
                shown.depth -= 1

        self.unexplained.in_read_statement = False
        AbstractOperations.invoke = judged  # type: ignore[method-assign,assignment]
        BatchOperationsImpl.flush = rebuilt  # type: ignore[method-assign,assignment]
        self.guard.hearing.shown = self
        try:
            yield
        finally:
            self.guard.hearing.shown = None
            BatchOperationsImpl.flush = flush  # type: ignore[method-assign]
            AbstractOperations.invoke = invoke  # type: ignore[method-assign]
            self.unexplained.in_read_statement = None

    def judge(self, operation: MigrateOperation, in_batch: bool) -> bool:
        """Refuse ``operation`` if it would destroy data no reading showed; True for a shown
        ``op.execute``."""
        if isinstance(operation, ExecuteSQLOp):
            try:
                key: str | None = executed_sql(operation.sqltext, self.dialect)
            except Exception:  # noqa: BLE001 - cannot be read: it was not shown either
                key = None
            if key is not None and self.shown_sql[key] > 0:
                self.shown_sql[key] -= 1
                self._explain(self.rows_of_sql[key])
                if self.shadow is not None:
                    self._count(self.rows_of_sql[key], shown=True)
                return True
            rows = classify(operation, self.dialect, in_batch)
            self._explain(rows)
        else:
            rows = classify(operation, self.dialect, in_batch)
            self._explain(rows)
            if all(self.shown[row] > 0 for row in rows):
                self.shown.subtract(rows)
                if self.shadow is not None:
                    self._count(rows, shown=True)
                return False
        if self.shadow is None:
            self.shadow = Shadow(self.connection, counting="current", exempt=self.exempt)
        self._count(rows, shown=False)
        return False

    def sent(self, statement: str) -> None:
        """A schema change sent outside every Alembic operation: read as ``op.execute`` would
        be, counted on the database as it is now and refused before it is sent if it destroys
        data. A statement not understood (an unknown ``ALTER``) is refused as uncountable when
        the table it names holds rows; our own tables pass."""
        own = self.guard.project.recorder.is_own_table
        rows: list[Operation] = []
        for row in classify(ExecuteSQLOp(statement), self.dialect):
            if row.risk == "review" and not row.table:
                row = dataclasses.replace(row, table=_first_table(statement) or None)
                if row.table is None:
                    continue  # names no table (ALTER TYPE, ALTER SEQUENCE): no rows to lose
            if not (row.table and own(row.table) and all(own(name) for name in _dropped(row))):
                rows.append(row)
        if not rows:
            return
        self._explain(rows)
        if self.shadow is None:
            self.shadow = Shadow(self.connection, counting="current", exempt=self.exempt)
        self._count(rows, shown=False)

    def _explain(self, rows: list[Operation]) -> None:
        for row in rows:
            self.explained |= _explained(row.effects)

    def _count(self, rows: list[Operation], shown: bool) -> None:
        """Follow ``rows`` on the database as it is now; refuse what they would destroy that
        the count before the step did not (only shown operations were counted then)."""
        assert self.shadow is not None
        lost: list[StepRisk] = []
        for row in rows:
            effects = row.effects
            if not shown and row.risk == "review":
                effects = (Uncountable(Target(row.table) if row.table else None, "its code cannot be read"),)
            elif not shown and all(_rows_only(effect) for effect in effects):
                continue  # rows it changes are heard as it runs, and roll back on every backend
            for loss in self.shadow.apply(effects, row.reason):
                if loss.rows != 0 and not (shown and self._counted_before(loss)):
                    lost.append(StepRisk(self.step, row, loss))
        if lost:
            _refuse_unshown(lost, shown)

    def _counted_before(self, loss: Loss) -> bool:
        return any(
            (counted.schema, counted.table, counted.column) == (loss.schema, loss.table, loss.column)
            and (counted.rows == UNKNOWN or 0 <= loss.rows <= counted.rows)
            for counted in self.guard.counted
        )


def _dropped(row: Operation) -> list[str]:
    """Every table a row's ``DROP TABLE`` or ``TRUNCATE`` names (its ``table`` is the first)."""
    return [t.table for effect in row.effects if isinstance(effect, DropTables) for t in effect.tables]


def _rows_only(effect: Any) -> bool:
    """An effect on rows, not on the schema (a DML statement's)."""
    return isinstance(effect, (DeleteRows, UpdateRows, Overwrite, CopyRows))


def _refuse_unshown(lost: list[StepRisk], shown: bool) -> None:
    first = lost[0]
    amount = "an unknown number of rows" if first.amount == "unknown" else first.amount
    more = f" (and {len(lost) - 1} more)" if len(lost) > 1 else ""
    where = ("after code this step's reading did not show had run" if shown
             else "in code this step's reading did not show")
    raise DataLossError(
        DataLossReport(lost),
        f"counted again as it ran, it would destroy {amount} of {first.object}{more} "
        f"({first.operation.reason}) {where} (it runs only when not rendering SQL, so no plan "
        "or report counted it); refused before it was sent. Make that code run when the "
        "migration is read too, or re-run with --allow-data-loss",
    )


#: ``DELETE FROM t ...`` / ``UPDATE t ...`` on one table (schema-qualified or quoted): read
#: without sqlparse, as a data migration may run thousands of them; anything else is parsed.
SIMPLE_CHANGE_RE = re.compile(
    r'\s*(?P<verb>DELETE\s+FROM|UPDATE)\s+(?:(?:"[^"]+"|`[^`]+`|\w+)\.)?'
    r'(?P<name>"[^"]+"|`[^`]+`|\w+)\s+(?!,)(?:AS\s+\w+\s+)?(?:WHERE|SET|USING|\w+\s+SET|$)',
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=256)
def _changed_tables(statement: str) -> tuple[tuple[str, str], ...]:
    """(table, "deleted"/"updated") for each table a data statement changes, as read from its
    text; a statement read as changing no table (an INSERT) gives none. Cached: the same
    statement (the version table's UPDATE) runs at every step."""
    simple = SIMPLE_CHANGE_RE.match(statement)
    if simple and simple["name"].upper() not in ("ONLY", "OR", "LOW_PRIORITY", "IGNORE"):
        how = "deleted" if simple["verb"].upper().startswith("DELETE") else "updated"
        return ((unquote(simple["name"]), how),)
    changed: list[tuple[str, str]] = []
    for reading in read(statement):
        for effect in reading.effects:
            deletes, updates = _rows_changed_by(effect)
            changed += [(table, "deleted") for table in deletes]
            changed += [(table, "updated") for table in updates if table not in deletes]
    return tuple(changed)


def _rows_changed_by(effect: Any) -> tuple[list[str], list[str]]:
    """Tables whose rows an effect says it deletes, and updates. Schema changes delete or
    update no row (a SQLite table rebuild is declared by the batch operation itself)."""
    if isinstance(effect, DeleteRows):
        return [effect.table.table], []
    if isinstance(effect, UpdateRows):
        return [], [effect.table.table]
    if isinstance(effect, DropTables):
        tables = [t.table for t in effect.tables]
        return tables, tables
    if isinstance(effect, Overwrite):
        return [effect.table.table], [effect.table.table]
    return [], []


def _referencing(connection: Connection, tables: set[str]) -> set[str]:
    """Tables whose foreign keys lead to ``tables`` (their rows change by cascade)."""
    if not tables:
        return set()
    return Shadow(connection, dry=True).referencing(tables)


#: MariaDB: the handler counters say how many rows changed, not in which table.
UNKNOWN_TABLE = "an unknown table"


def _handler_changes(connection: Connection) -> dict[str, int]:
    """MariaDB: rows this session has deleted and updated so far, by any statement, trigger or
    procedure (its handler counters). An UPDATE that leaves a row as it was does not count."""
    rows = dict(
        connection.exec_driver_sql(
            "SHOW SESSION STATUS WHERE Variable_name IN ('Handler_delete', 'Handler_update')"
        ).all()
    )
    return {"deleted": int(rows.get("Handler_delete", 0)), "updated": int(rows.get("Handler_update", 0))}


def _changes(connection: Connection) -> dict[str, tuple[int, int]]:
    """PostgreSQL: rows deleted and updated per table by the current transaction so far (its
    own statistics, which see inside functions, triggers and DO blocks too)."""
    rows = connection.exec_driver_sql(
        "SELECT relname, n_tup_del, n_tup_upd FROM pg_stat_xact_user_tables "
        "WHERE n_tup_del > 0 OR n_tup_upd > 0"
    ).all()
    return {name: (int(deleted), int(updated)) for name, deleted, updated in rows}


def _lock(connection: Connection, tables: set[tuple[str | None, str]]) -> None:
    """Hold the tables a step counts against writers until the step commits (PostgreSQL;
    SQLite steps already run in BEGIN IMMEDIATE)."""
    if connection.dialect.name != "postgresql" or not tables:
        return
    quote = connection.dialect.identifier_preparer.quote
    existing = [
        (schema, name) for schema, name in sorted(tables, key=lambda t: (t[0] or "", t[1]))
        if sa.inspect(connection).has_table(name, schema=schema)
    ]
    if existing:
        listed = ", ".join(f"{quote(s)}.{quote(n)}" if s else quote(n) for s, n in existing)
        connection.exec_driver_sql(f"LOCK TABLE {listed} IN EXCLUSIVE MODE")

