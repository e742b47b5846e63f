"""Where migrations are executed: a plan runs through Alembic, one transaction per migration.

Each migration's applied-log row is written by Alembic's ``on_version_apply`` hook, inside the
same transaction as the migration and its version-table update. On SQLite every step's
transaction is ``BEGIN IMMEDIATE`` (no other writer between a count and a drop), and a step that
rebuilds tables (``batch_alter_table``) runs with foreign keys off, as SQLite's table-rebuild
procedure says, so the rebuild's ``DROP TABLE`` never cascades into child rows; the keys are
checked (``PRAGMA foreign_key_check``) before the step commits and the setting is restored after.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa
from alembic.operations import ops as alembic_ops
from alembic.runtime.environment import EnvironmentContext
from sqlalchemy.engine import Connection

from .analysis import Operation, op_proxy_restored
from .database import BEGIN_STATEMENT, mask
from .dataloss import DataLossError, read_only, step_operations
from .errors import RollbackError
from .interrupts import Interrupted
from .partial import PartialLog
from .plan import Plan, Step
from .project import Project
from .recorder import VersionWrites, utcnow
from .undo import CannotUndo, UndoFailed, plan_undo, undo
from .wording import plural


class Progress(Protocol):
    """Told as each step starts (before its code runs, so a step that hangs shows which it is)
    and as it ends (``milliseconds`` it took); ``index`` counts from 1 up to ``total``."""

    def started(self, index: int, total: int, step: Step) -> None: ...

    def finished(self, index: int, total: int, step: Step, milliseconds: float) -> None: ...


#: ``wrap(connection, step, migration_fn)``: what runs in place of the migration (the data-loss
#: backstop); it runs inside the step's transaction.
StepWrapper = Callable[[Connection, Step, Callable[..., None]], Callable[..., None]]


@dataclass
class RunReport:
    """What a run did: the plan and the steps that completed, with their durations."""

    plan: Plan
    done: list[tuple[Step, float]] = field(default_factory=list)
    planned_only: bool = False

    @property
    def seconds(self) -> float:
        return sum(ms for _, ms in self.done) / 1000


def execute(
    project: Project,
    connection: Connection,
    plan: Plan,
    progress: Progress | None = None,
    finalize: Callable[[Connection], None] | None = None,
    wrap: StepWrapper | None = None,
) -> RunReport:
    """Run an upgrade or downgrade plan on ``connection`` (which holds no open transaction).

    ``finalize`` runs inside the last migration's transaction (e.g. to mark a deploy rolled
    back), so it happens exactly when the last step commits. ``wrap`` replaces each step's
    migration function inside its transaction (e.g. to count again and archive what it drops).
    """
    report = RunReport(plan)
    if not plan.steps:
        return report
    recorder = project.recorder
    recorder.ensure_log(connection)
    connection.commit()
    settle_version_table(project, connection)
    ran = _StatementsRun(project, connection, plan)
    graph = project.graph
    steps = plan.alembic_steps(graph)
    sqlite = _SQLiteSteps(project, connection, plan) if connection.dialect.name == "sqlite" else None
    for planned, step in zip(plan.steps, steps):
        if planned.fake:
            continue  # nothing runs: nothing to count or check
        function = step.migration_fn
        if sqlite is not None:
            function = sqlite.wrap(planned, function)
        if wrap is not None:
            function = wrap(connection, planned, function)
        step.migration_fn = function
    if progress is not None:
        for number, (planned, step) in enumerate(zip(plan.steps, steps), 1):
            step.migration_fn = _announced(progress, number, planned, len(steps), step.migration_fn)
    declared = project.declared
    clock: list[datetime] = [utcnow()]

    def record(ctx, step, heads, run_args) -> None:  # type: ignore[no-untyped-def]
        ran.next_step(ctx.connection)
        planned = plan.steps[len(report.done)]
        known = declared.get(planned.migration.revision)
        finished = recorder.write(
            ctx.connection, planned.migration, planned.direction, clock[0], fake=planned.fake,
            sha256=known.sha256 if known is not None else None,
        )
        milliseconds = (finished - clock[0]).total_seconds() * 1000
        report.done.append((planned, milliseconds))
        clock[0] = finished
        if finalize and len(report.done) == len(plan.steps):
            finalize(ctx.connection)
        if sqlite is not None and len(report.done) < len(plan.steps):
            sqlite.prepare(plan.steps[len(report.done)])
        if progress:
            progress.finished(len(report.done), len(plan.steps), planned, milliseconds)

    try:
        if sqlite is not None:
            sqlite.prepare(plan.steps[0])
        versions = VersionWrites(project.settings.version_table)
        with ran, versions.listening(connection), op_proxy_restored(), EnvironmentContext(
            project.config, graph.script, fn=lambda heads, ctx: steps
        ) as env:
            env.configure(
                connection=connection,
                transaction_per_migration=True,
                on_version_apply=record,
                **project.context_options(connection.dialect.name),
            )
            try:
                env.run_migrations()
            except Interrupted as exc:
                exc.outcome.append(_interrupted_at(project, connection, plan, report, ran, exc.signal_name))
                raise
            except DataLossError as exc:
                failed = plan.steps[len(report.done)]
                committed = ran.committed()
                if committed:  # MariaDB/MySQL: found after statements that committed at once
                    outcome = _committed_part(project, connection, ran, failed, committed,
                                              exc.message, len(report.done))
                else:
                    ran.forget()
                    outcome = f"it was rolled back, {_stay_done(len(report.done))}"
                raise DataLossError(
                    exc.report,
                    f"migration {failed.migration.label} ({failed.direction}) was stopped: "
                    f"{exc.message}; {outcome}",
                ) from exc
            except Exception as exc:
                failed = plan.steps[len(report.done)]
                text = str(exc).strip()
                reason = mask(text.splitlines()[0] if text else "", project.url)
                committed = ran.committed()
                if ran.row is not None and isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
                    raise RollbackError(
                        f"migration {failed.migration.label} ({failed.direction}) failed: "
                        f"{type(exc).__name__}: {reason}; the connection was lost while a statement "
                        "that commits at once may have been running, so what the step left is not "
                        f"known here; its marker in {ran.log.name} stays: the next command that "
                        "changes the schema checks it against the live schema and, if any of it "
                        f"ran, refuses until 'flask db resolve {failed.migration.app} "
                        f"{failed.migration.revision} --undo', '--applied' or '--reverted'; "
                        f"{_stay_done(len(report.done))}"
                    ) from exc
                if committed:
                    raise RollbackError(
                        f"migration {failed.migration.label} ({failed.direction}) failed: "
                        f"{type(exc).__name__}: {reason}; "
                        + _committed_part(project, connection, ran, failed, committed,
                                          f"{type(exc).__name__}: {reason}", len(report.done))
                    ) from exc
                ran.forget()
                raise RollbackError(
                    f"migration {failed.migration.label} ({failed.direction}) failed: "
                    f"{type(exc).__name__}: {reason}; it was rolled back, "
                    f"{_stay_done(len(report.done))}"
                ) from exc
    finally:
        if sqlite is not None:
            sqlite.restore()
    return report


def _announced(
    progress: Progress, index: int, step: Step, total: int, function: Callable[..., None]
) -> Callable[..., None]:
    """``function`` (a step's migration function), telling ``progress`` first."""

    def run(**kw: object) -> None:
        progress.started(index, total, step)
        function(**kw)

    return run


def settle_version_table(project: Project, connection: Connection) -> None:
    """A version row naming the last revision a squash replaces becomes the squash's id, with a
    fake log row for the squash (squash.py): Alembic updates only the rows it expects, so it
    must find the squash there before it runs what follows it (or downgrades it)."""
    graph = project.graph
    stored = project.recorder.stored_heads(connection)
    connection.rollback()
    if not any(rev in graph.replaced for rev in stored):
        return
    heads = graph.stored_heads(graph.closure(stored))
    with connection.begin():
        project.recorder.set_heads(connection, heads)
        for squash in dict.fromkeys(graph.replaced[rev] for rev in stored if rev in graph.replaced):
            project.recorder.write(connection, graph.migrations[squash], "up", utcnow(), fake=True)


#: Statements after which MariaDB/MySQL commits at once (an implicit commit: DDL), which also
#: commits whatever the transaction had done before.
IMPLICIT_COMMIT = ("CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE")
#: Statements that change nothing: not worth listing as "ran".
READS = ("SELECT", "SHOW", "SAVEPOINT", "RELEASE", "ROLLBACK", "COMMIT", "BEGIN", "START", "SET", "DESCRIBE", "EXPLAIN")


class _StatementsRun:
    """On backends without transactional DDL (MariaDB/MySQL): the statements the current step
    sent, so a failure can say which of them the database had already committed, and the
    step's marker in the partial log (partial.py), written on a connection of its own before
    each statement that commits at once, so a kill or a lost server leaves it behind."""

    def __init__(self, project: Project, connection: Connection, plan: Plan) -> None:
        self.project = project
        self.connection = connection
        self.plan = plan
        self.active = connection.dialect.name in ("mysql", "mariadb")
        self.log = PartialLog(project.settings.log_table)
        self.statements: list[str] = []
        #: How many of ``statements`` an implicit commit made permanent.
        self.upto = 0
        self.index = 0  # the plan step running
        self.started_at = utcnow()
        self.row: int | None = None  # the running step's marker
        self.side: Connection | None = None
        #: Set while the step's statements are undone: those are not the step's.
        self.quiet = False

    def __enter__(self) -> _StatementsRun:
        if self.active:
            sa.event.listen(self.connection, "before_cursor_execute", self._starting, retval=True)
            sa.event.listen(self.connection, "after_cursor_execute", self._heard)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active:
            sa.event.remove(self.connection, "before_cursor_execute", self._starting)
            sa.event.remove(self.connection, "after_cursor_execute", self._heard)
        if self.side is not None:
            try:
                self.side.close()
            except sa.exc.DBAPIError:
                pass
            self.side = None
            self._drop_if_empty()

    def _drop_if_empty(self) -> None:
        """The marker table exists only while it holds something (a step to resolve, or the
        history of resolved ones): the schema looks the same as on the other backends."""
        try:
            if self.connection.in_transaction():
                self.connection.rollback()
            if self.log.is_empty(self.connection):
                self.connection.exec_driver_sql(f"DROP TABLE IF EXISTS `{self.log.name}`")
            self.connection.commit()
        except sa.exc.SQLAlchemyError:
            pass  # a lost connection: the table stays, empty or marked, and is read as such

    def _own(self, statement: str) -> bool:
        """A statement on our own tables (version table, logs): bookkeeping, not the step's."""
        found = _TARGET.match(statement)
        return found is not None and self.project.recorder.is_own_table(found.group(1))

    def _starting(self, conn: Connection, cursor: object, statement: str, parameters: object,
                  context: object, executemany: bool) -> tuple[str, object]:
        """Before a statement that commits at once: what ran so far is committed by it, and the
        marker must say so (and name this statement) before the server sees it."""
        words = statement.split(None, 1)
        if words and words[0].upper() in IMPLICIT_COMMIT and not self.quiet:
            self.upto = len(self.statements)
            if not self._own(statement):
                self._mark([*self.statements, " ".join(statement.split())])
        return statement, parameters

    def _heard(self, conn: Connection, cursor: object, statement: str, parameters: object,
               context: object, executemany: bool) -> None:
        words = statement.split(None, 1)
        if not words or words[0].upper() in READS or self.quiet:
            return
        commits = words[0].upper() in IMPLICIT_COMMIT
        if not self._own(statement):
            self.statements.append(" ".join(statement.split()))
        if commits:
            self.upto = len(self.statements)

    def _mark(self, statements: list[str]) -> None:
        """Write the marker on the side connection (autocommit); without it the statement must
        not run (a kill would leave no trace)."""
        step = self.plan.steps[self.index]
        masked = [mask(text, self.project.url) for text in statements]
        try:
            if self.side is None:
                self.side = self.connection.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                self.log.table.create(self.side, checkfirst=True)
            if self.row is None:
                self.row = self.log.begin(self.side, step.migration, step.direction, self.started_at, masked)
            else:
                self.log.progress(self.side, self.row, masked)
        except sa.exc.SQLAlchemyError as exc:
            why = mask(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0], self.project.url)
            raise RollbackError(
                f"the step's marker in {self.log.name} could not be written ({why}); the "
                "statement that commits at once was not run"
            ) from None

    def next_step(self, connection: Connection) -> None:
        """The step completed: its marker goes in the same transaction as its version row."""
        if self.row is not None:
            self.log.clear(connection, self.row)
        self.row = None
        self.statements = []
        self.upto = 0
        self.index += 1
        self.started_at = utcnow()

    def committed(self) -> list[str]:
        """The failed step's statements up to its last implicit commit (the rest was rolled back)."""
        return self.statements[: self.upto]

    def forget(self) -> None:
        """Nothing of the failed step stayed: its marker goes."""
        if self.row is not None and self.side is not None:
            try:
                self.log.clear(self.side, self.row)
            except sa.exc.SQLAlchemyError:
                pass  # a stale marker is checked against the live schema by the next run
        self.row = None

    def failed(self, statements: list[str], error: str) -> str | None:
        """Turn the marker into a partly applied step (or write one); None when done, else why
        it could not be recorded."""
        step = self.plan.steps[self.index]
        try:
            if self.row is not None and self.side is not None:
                self.log.fail(self.side, self.row, statements, error)
            else:
                if self.connection.in_transaction():
                    self.connection.rollback()
                self.log.record(self.connection, step.migration, step.direction, self.started_at, statements, error)
        except sa.exc.SQLAlchemyError as exc:
            return mask(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0], self.project.url)
        return None


#: The table a statement writes to or alters (enough to tell our own bookkeeping apart).
_TARGET = re.compile(
    r"\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM|CREATE\s+TABLE|ALTER\s+TABLE)\s+`?([\w$]+)`?", re.IGNORECASE
)


def _committed_part(
    project: Project, connection: Connection, ran: _StatementsRun, failed: Step,
    committed: list[str], reason: str, done: int,
) -> str:
    """What became of the statements MariaDB/MySQL had committed when the step stopped: undone
    when each has a safe inverse (undo.py), else recorded as partly applied (partial.py), after
    which every command that changes the schema refuses until ``flask db resolve``."""
    masked = [mask(text, project.url) for text in committed]
    listed = _listed(masked, project)
    earlier = _stay_done(done)
    ran.quiet = True
    undoable = True  # worth offering 'resolve --undo' (it stopped on an error, not on a rule)
    try:
        if connection.in_transaction():
            connection.rollback()
        inverses = undo(connection, plan_undo(connection, committed))
    except CannotUndo as exc:
        why_not = f"it cannot be undone automatically ({mask(str(exc), project.url)})"
        undoable = False
    except UndoFailed as exc:
        why_not = (
            f"undoing it failed ({mask(exc.reason, project.url)}) after {len(exc.undone)} of "
            f"{plural(len(exc.undone) + len(exc.left), 'statement')} went back"
        )
        gone = {effect.statement for effect in exc.undone}
        masked = [mask(text, project.url) for text in committed if " ".join(text.split()).rstrip(";") not in gone]
    except sa.exc.SQLAlchemyError as exc:
        why_not = "it cannot be undone automatically (" + mask(
            str(getattr(exc, "orig", None) or exc).strip().splitlines()[0], project.url) + ")"
    else:
        ran.forget()
        return (
            f"the database had committed {len(committed)} of its statements as they ran "
            f"({listed}); {'it was' if len(committed) == 1 else 'they were'} undone "
            f"({_listed(inverses, project)}), so it left no trace; "
            f"{earlier}"
        )
    problem = ran.failed(masked, reason)
    resolve = f"flask db resolve {failed.migration.app} {failed.migration.revision}"
    if problem is None and undoable:
        recorded = (
            f"recorded in {ran.log.name}: migrations stay refused until '{resolve} --undo', "
            "'--applied' or '--reverted'"
        )
    elif problem is None:
        recorded = (
            f"recorded in {ran.log.name}: migrations stay refused until the schema is made to "
            f"match one side by hand and '{resolve} --applied' or '--reverted' says which"
        )
    elif ran.row is not None:
        recorded = (
            f"it could not be recorded as failed ({problem}), but its marker in {ran.log.name} "
            "stays: the next command that changes the schema checks it against the live schema "
            f"and refuses until '{resolve} --undo', '--applied' or '--reverted'"
        )
    else:
        recorded = (
            f"it could NOT be recorded ({problem}): make the schema match one side by hand before "
            "running migrations again"
        )
    return (
        f"it is PARTLY APPLIED: the database committed {len(committed)} of its statements as they "
        f"ran ({listed}); the rest did not run; {why_not}; the version table still names the last "
        f"complete migration; {earlier}; {recorded}"
    )


def _stay_done(done: int) -> str:
    """The steps of this run that committed before the one that stopped, which stay applied."""
    return f"{plural(done, 'earlier step')} of this run {'stays' if done == 1 else 'stay'} done"


def _listed(statements: list[str], project: Project, most: int = 5, width: int = 120) -> str:
    shown = [mask(text if len(text) <= width else text[: width - 3] + "...", project.url) for text in statements[:most]]
    more = f"; and {len(statements) - most} more" if len(statements) > most else ""
    return "; ".join(shown) + more


def _interrupted_at(
    project: Project, connection: Connection, plan: Plan, report: RunReport, ran: _StatementsRun,
    signal_name: str,
) -> str:
    """What a signal left: the step in progress rolled back (its transaction), the earlier ones
    committed; on MariaDB/MySQL what the step had committed undone or recorded."""
    done = len(report.done)
    if done == len(plan.steps):
        return "the one step of this run was applied" if done == 1 else (
            f"all {done} steps of this run were applied"
        )
    step = plan.steps[done]
    committed = ran.committed()
    if committed:
        return f"migration {step.migration.label} ({step.direction}) was stopped: " + _committed_part(
            project, connection, ran, step, committed, f"terminated by {signal_name}", done,
        )
    ran.forget()
    return (
        f"migration {step.migration.label} ({step.direction}) was rolled back, "
        f"{_stay_done(done)}"
    )


class _SQLiteSteps:
    """Per-step transaction settings on SQLite: ``BEGIN IMMEDIATE``, and foreign keys off for
    steps that rebuild tables (only when the connection enforces them)."""

    def __init__(self, project: Project, connection: Connection, plan: Plan) -> None:
        self.project = project
        self.connection = connection
        self.enforced = bool(connection.exec_driver_sql("PRAGMA foreign_keys").scalar())
        connection.rollback()
        self.current = self.enforced

    def rebuilds(self, step: Step) -> bool:
        """May the step rebuild a table (Alembic batch mode, or code that could not be read
        and so may hold a batch)? Only asked when keys are on."""
        return any(
            op.in_batch or op.risk == "review" for op in step_operations(self.project, step, "sqlite")
        )

    def prepare(self, step: Step) -> None:
        """Before the step's BEGIN (``PRAGMA foreign_keys`` is a no-op inside a transaction)."""
        wanted = self.enforced and not self.rebuilds(step)
        pragmas = [] if wanted == self.current else [f"PRAGMA foreign_keys={'ON' if wanted else 'OFF'}"]
        self.current = wanted
        self.connection.info[BEGIN_STATEMENT] = [*pragmas, "BEGIN IMMEDIATE"]

    def wrap(self, step: Step, function: Callable[..., None]) -> Callable[..., None]:
        """Check the foreign keys a rebuild with keys off may have broken, before commit."""

        def run(**kw: object) -> None:
            function(**kw)
            if self.enforced and not self.current:
                broken = self.connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    tables = sorted({row[0] for row in broken})
                    raise RollbackError(
                        f"it leaves {plural(len(broken), 'row')} whose foreign keys point nowhere "
                        f"(in {', '.join(tables)})"
                    )

        return run

    def restore(self) -> None:
        self.connection.info.pop(BEGIN_STATEMENT, None)
        if self.connection.in_transaction():
            self.connection.rollback()
        if self.current != self.enforced:
            self.connection.exec_driver_sql(f"PRAGMA foreign_keys={'ON' if self.enforced else 'OFF'}")
            self.current = self.enforced


def mark_fake_initial(project: Project, connection: Connection, plan: Plan) -> Plan:
    """Django's ``--fake-initial``: an app's initial migration whose tables (and the columns it
    adds) all exist already is recorded as applied instead of run. One whose tables exist only
    partly is refused before anything runs: neither running nor recording it would be right."""
    dialect = connection.dialect.name
    fake: set[str] = set()
    partial: list[str] = []
    with read_only(connection):
        inspector = sa.inspect(connection)
        for step in plan.steps:
            if step.direction != "up" or step.migration.parents:
                continue
            wanted = _created_by(step_operations(project, step, dialect))
            if not wanted:
                continue
            missing, present = _compare_catalog(inspector, wanted)
            if not missing:
                fake.add(step.migration.revision)
            elif present:
                partial.append(f"{step.migration.label} (missing {', '.join(missing)})")
    if partial:
        raise RollbackError(
            f"--fake-initial: the tables of {'; '.join(partial)} exist only partly; nothing was "
            "recorded. Make the database match the initial migration (or drop what exists), then "
            "retry"
        )
    steps = [replace(step, fake=step.migration.revision in fake) for step in plan.steps]
    return replace(plan, steps=steps)


def _created_by(ops: list[Operation]) -> dict[tuple[str | None, str], set[str]]:
    """Tables an initial migration creates, with the columns it gives them (create_table, and
    add_column on one of its own tables)."""
    wanted: dict[tuple[str | None, str], set[str]] = {}
    for op in ops:
        source = op.source
        if isinstance(source, alembic_ops.CreateTableOp):
            wanted[(source.schema, source.table_name)] = {
                column.name for column in source.columns if isinstance(column, sa.Column)
            }
        elif isinstance(source, alembic_ops.AddColumnOp) and (source.schema, source.table_name) in wanted:
            wanted[(source.schema, source.table_name)].add(source.column.name)
    return wanted


def _compare_catalog(
    inspector: sa.Inspector, wanted: dict[tuple[str | None, str], set[str]]
) -> tuple[list[str], bool]:
    """What of ``wanted`` the database lacks ("table t", "column t.c"), and whether any of its
    tables exists."""
    missing: list[str] = []
    present = False
    for (schema, table), columns in wanted.items():
        name = f"{schema}.{table}" if schema else table
        if not inspector.has_table(table, schema=schema):
            missing.append(f"table {name}")
            continue
        present = True
        live = {column["name"] for column in inspector.get_columns(table, schema=schema)}
        missing += [f"column {name}.{column}" for column in sorted(columns - live)]
    return missing, present


def stamp(project: Project, connection: Connection, plan: Plan) -> RunReport:
    """Record a new position without running migrations; log rows are marked fake."""
    recorder = project.recorder
    recorder.ensure_log(connection)
    connection.commit()
    report = RunReport(plan)
    with connection.begin():
        recorder.set_heads(connection, plan.heads_after)
        for step in plan.steps:
            recorder.write(connection, step.migration, step.direction, utcnow(), fake=True)
            report.done.append((step, 0.0))
    return report
