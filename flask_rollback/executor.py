"""Where migrations are executed: a plan runs through Alembic, one transaction per migration.

Each migration's applied-log row is written by Alembic's ``on_version_apply`` hook, inside the
same transaction as the migration and its version-table update. On SQLite every step's
transaction is ``BEGIN IMMEDIATE`` (no other writer between a count and a drop), and a step that
rebuilds tables (``batch_alter_table``) runs with foreign keys off, as SQLite's table-rebuild
procedure says, so the rebuild's ``DROP TABLE`` never cascades into child rows; the keys are
checked (``PRAGMA foreign_key_check``) before the step commits and the setting is restored after.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

import sqlalchemy as sa
from alembic.operations import ops as alembic_ops
from alembic.runtime.environment import EnvironmentContext
from sqlalchemy.engine import Connection

from .analysis import Operation
from .database import BEGIN_STATEMENT, mask
from .dataloss import DataLossError, read_only, step_operations
from .errors import RollbackError
from .interrupts import Interrupted
from .partial import PartialLog
from .plan import Plan, Step
from .project import Project
from .recorder import utcnow

Progress = Callable[[int, int, Step], None]
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
    clock: list[datetime] = [utcnow()]
    ran = _StatementsRun(connection)

    def record(ctx, step, heads, run_args) -> None:  # type: ignore[no-untyped-def]
        ran.next_step()
        planned = plan.steps[len(report.done)]
        recorder.write(
            ctx.connection, planned.migration, planned.direction, clock[0], fake=planned.fake
        )
        finished = utcnow()
        report.done.append((planned, (finished - clock[0]).total_seconds() * 1000))
        clock[0] = finished
        if finalize and len(report.done) == len(plan.steps):
            finalize(ctx.connection)
        if sqlite is not None and len(report.done) < len(plan.steps):
            sqlite.prepare(plan.steps[len(report.done)])
        if progress:
            progress(len(report.done), len(plan.steps), planned)

    try:
        if sqlite is not None:
            sqlite.prepare(plan.steps[0])
        with ran, EnvironmentContext(project.config, graph.script, fn=lambda heads, ctx: steps) as env:
            env.configure(
                connection=connection,
                transaction_per_migration=True,
                on_version_apply=record,
                **project.context_options(connection.dialect.name),
            )
            try:
                env.run_migrations()
            except Interrupted as exc:
                exc.outcome.append(_interrupted_at(plan, report))
                raise
            except DataLossError as exc:
                failed = plan.steps[len(report.done)]
                raise DataLossError(
                    exc.report,
                    f"migration {failed.migration.label} ({failed.direction}) was stopped: "
                    f"{exc.message}; it was rolled back, {len(report.done)} earlier step(s) of "
                    "this run stay done",
                ) from exc
            except Exception as exc:
                failed = plan.steps[len(report.done)]
                text = str(exc).strip()
                reason = mask(text.splitlines()[0] if text else "", project.url)
                committed = ran.committed()
                if committed:
                    raise _partly_applied(
                        project, connection, failed, clock[0], committed,
                        f"{type(exc).__name__}: {reason}", len(report.done),
                    ) from exc
                raise RollbackError(
                    f"migration {failed.migration.label} ({failed.direction}) failed: "
                    f"{type(exc).__name__}: {reason}; it was rolled back, "
                    f"{len(report.done)} earlier step(s) of this run stay done"
                ) from exc
    finally:
        if sqlite is not None:
            sqlite.restore()
    return report


#: Statements after which MariaDB/MySQL commits at once (an implicit commit: DDL), which also
#: commits whatever the transaction had done before.
IMPLICIT_COMMIT = ("CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE")
#: Statements that change nothing: not worth listing as "ran".
READS = ("SELECT", "SHOW", "SAVEPOINT", "RELEASE", "ROLLBACK", "COMMIT", "BEGIN", "START", "SET", "DESCRIBE", "EXPLAIN")


class _StatementsRun:
    """On backends without transactional DDL (MariaDB/MySQL): the statements the current step
    sent, so a failure can say which of them the database had already committed."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.active = connection.dialect.name in ("mysql", "mariadb")
        self.statements: list[str] = []

    def __enter__(self) -> _StatementsRun:
        if self.active:
            sa.event.listen(self.connection, "after_cursor_execute", self._heard)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active:
            sa.event.remove(self.connection, "after_cursor_execute", self._heard)

    def _heard(self, conn: Connection, cursor: object, statement: str, parameters: object,
               context: object, executemany: bool) -> None:
        words = statement.split(None, 1)
        if words and words[0].upper() not in READS:
            self.statements.append(" ".join(statement.split()))

    def next_step(self) -> None:
        self.statements = []

    def committed(self) -> list[str]:
        """The failed step's statements up to its last implicit commit (the rest was rolled back)."""
        last = max(
            (i for i, text in enumerate(self.statements) if text.split(None, 1)[0].upper() in IMPLICIT_COMMIT),
            default=-1,
        )
        return self.statements[: last + 1]


def _partly_applied(
    project: Project, connection: Connection, failed: Step, started: datetime,
    committed: list[str], reason: str, done: int,
) -> RollbackError:
    """The error for a step the database committed part of, after recording it (partial.py):
    every later command that changes the schema refuses until ``flask db resolve``."""
    log = PartialLog(project.settings.log_table)
    step = f"{failed.migration.label} ({failed.direction})"
    try:
        log.record(connection, failed.migration, failed.direction, started,
                   [mask(text, project.url) for text in committed], reason)
        recorded = (
            f"recorded in {log.name}: migrations stay refused until you make the schema match "
            f"one side by hand and run 'flask db resolve {failed.migration.app} "
            f"{failed.migration.revision} --applied' or '--reverted'"
        )
    except sa.exc.SQLAlchemyError as exc:
        why = mask(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0], project.url)
        recorded = (
            f"it could NOT be recorded ({why}): make the schema match one side by hand before "
            "running migrations again"
        )
    return RollbackError(
        f"migration {step} failed: {reason}; it is PARTLY APPLIED: the database committed "
        f"{len(committed)} of its statement(s) as they ran ({_listed(committed, project)}); the "
        "rest did not run; the version table still names the last complete migration; "
        f"{done} earlier step(s) of this run stay done; {recorded}"
    )


def _listed(statements: list[str], project: Project, most: int = 5, width: int = 120) -> str:
    shown = [mask(text if len(text) <= width else text[: width - 3] + "...", project.url) for text in statements[:most]]
    more = f"; and {len(statements) - most} more" if len(statements) > most else ""
    return "; ".join(shown) + more


def _interrupted_at(plan: Plan, report: RunReport) -> str:
    """What a signal left: the step in progress rolled back (its transaction), the earlier ones
    committed."""
    done = len(report.done)
    if done == len(plan.steps):
        return f"all {done} step(s) of this run were applied"
    step = plan.steps[done]
    return (
        f"migration {step.migration.label} ({step.direction}) was rolled back, "
        f"{done} earlier step(s) of this run stay done"
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
                        f"it leaves {len(broken)} row(s) whose foreign keys point nowhere "
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
