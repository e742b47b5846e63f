"""Running migrations: upgrade, downgrade, stamp, the SQL they would run, the lock."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import offline
from ..archive import ArchiveSpec
from ..checks import downgrade_problem
from ..dataloss import DataLossReport, assess
from ..errors import EXIT_COULD_NOT_RUN, RollbackError
from ..executor import Progress, RunReport, mark_fake_initial
from ..executor import stamp as execute_stamp
from ..guard import DataGuard
from ..lock import (
    Announce,
    NAMED_LOCK_BACKENDS,
    advisory_holder,
    named_holder,
    lock_table_holder,
    release_lock_table,
    sqlite_lock_holder,
)
from ..partial import PartialLog, PartialStep
from ..plan import Plan, Planner, Step
from ..recorder import utcnow
from ..snapshot import Fresh, fresh_database
from ..predict import Prediction, predict
from ..project import Project
from ..undo import CannotUndo, UndoFailed, plan_undo, undo
from ..wording import plural
from .context import open_database

# -- running --------------------------------------------------------------------------------


@dataclass
class RunResult:
    """A plan, what ran, and (with --plan) the problems found without running: irreversible
    steps, data at risk, steps the live data would make fail."""

    report: RunReport
    problems: dict[str, str] = field(default_factory=dict)
    sql: str | None = None
    risks: DataLossReport | None = None
    archived: list[ArchiveSpec] = field(default_factory=list)
    #: The run accepted data loss: nothing was counted as it ran.
    allow_data_loss: bool = False
    predictions: list[Prediction] = field(default_factory=list)
    #: An empty database built from the schema snapshot (``snapshot.used``), or the snapshot
    #: ignored and the migrations replayed (``snapshot.line`` says why); None: not concerned.
    snapshot: Fresh | None = None

    @property
    def plan(self) -> Plan:
        return self.report.plan


def upgrade(
    project: Project,
    target: Sequence[str] = (),
    *,
    plan_only: bool = False,
    sql: bool = False,
    progress: Progress | None = None,
    lock_timeout: float | None = None,
    announce: Announce | None = None,
    allow_data_loss: bool = False,
    archive: bool | None = None,
    fake_initial: bool = False,
    start: Sequence[str] | None = None,
    replay: bool = False,
) -> RunResult:
    """Apply migrations up to ``target`` (default: every app's head).

    An empty database going to every head is built from the bind's schema snapshot when it is
    current (snapshot.py): its schema and seed rows loaded in one step, every migration recorded
    as applied; ``replay`` runs the migrations instead.

    A plan that would destroy existing data is refused unless ``allow_data_loss`` or
    ``archive`` (default: the ``archive`` setting) is given. With ``fake_initial``, an app's
    initial migration whose tables already exist is recorded as applied without running.
    With ``sql``, ``start`` (the FROM of ``--sql FROM:TO``) renders from those migrations
    applied instead of from where the database stands, which is then not read.
    """
    if start is not None:
        if fake_initial:
            raise RollbackError("--fake-initial reads the database; it cannot go with a FROM:TO range")
        plan = _offline_planner(project, start, sql).upgrade(target)
        return RunResult(RunReport(plan, planned_only=True), sql=render_sql(project, plan))
    changes = not (plan_only or sql)
    with open_database(project, lock=changes, lock_timeout=lock_timeout, announce=announce) as (
        connection,
        planner,
    ):
        fresh = None
        if changes and not (replay or fake_initial) and tuple(target) in ((), ("heads",), ("head",)):
            fresh = fresh_database(project, connection, planner.applied)
            if fresh is not None and fresh.used:
                done = Plan("upgrade", "heads", [], (), project.graph.heads_of_everything)
                return RunResult(RunReport(done), snapshot=fresh)
        plan = planner.upgrade(target)
        if fake_initial:
            plan = mark_fake_initial(project, connection, plan)
        guard = DataGuard(project, allow_data_loss, archive)
        result = _run(project, connection, plan, {}, plan_only, sql, progress, guard)
        result.snapshot = fresh
        return result


def downgrade(
    project: Project,
    target: Sequence[str] = (),
    *,
    cascade: bool = False,
    plan_only: bool = False,
    sql: bool = False,
    progress: Progress | None = None,
    lock_timeout: float | None = None,
    announce: Announce | None = None,
    allow_data_loss: bool = False,
    archive: bool | None = None,
    start: Sequence[str] | None = None,
) -> RunResult:
    """Revert migrations down to ``target`` (default: the most recently applied one).

    Refused before anything runs if a step is irreversible, or would destroy existing data
    (unless ``allow_data_loss``, or ``archive`` keeps a restorable copy first). ``start`` as
    for ``upgrade``."""
    if start is not None:
        plan = _offline_planner(project, start, sql).downgrade(target, cascade=cascade)
        _refuse_irreversible(project, plan)
        return RunResult(RunReport(plan, planned_only=True), sql=render_sql(project, plan))
    changes = not (plan_only or sql)
    with open_database(project, lock=changes, lock_timeout=lock_timeout, announce=announce) as (
        connection,
        planner,
    ):
        plan = planner.downgrade(target, cascade=cascade)
        problems = irreversible_steps(project, plan)
        if not plan_only:
            _refuse_irreversible(project, plan)
        guard = DataGuard(project, allow_data_loss, archive)
        return _run(project, connection, plan, problems, plan_only, sql, progress, guard)


def _offline_planner(project: Project, start: Sequence[str], sql: bool) -> Planner:
    """A planner for a database standing at ``start`` (migrations in any form, ``base``,
    ``heads``), without reading one: the FROM of ``--sql FROM:TO``."""
    if not sql:
        raise RollbackError(
            "a FROM:TO range only renders SQL (--sql); to run migrations give only the target"
        )
    graph = project.graph
    return Planner(graph, graph.stored_heads(graph.applied_at(start)))


def _refuse_irreversible(project: Project, plan: Plan) -> None:
    """Stop a downgrade whose steps cannot really run, before anything runs."""
    problems = irreversible_steps(project, plan)
    if problems:
        listed = "; ".join(
            f"{project.graph.migrations[rev].label} {why}" for rev, why in problems.items()
        )
        raise RollbackError(f"cannot downgrade {plan.target}: {listed}; nothing was run")


def irreversible_steps(project: Project, plan: Plan) -> dict[str, str]:
    """Downgrade steps that cannot really run, by revision."""
    problems = {}
    for step in plan.steps:
        if step.direction == "down":
            module = project.script.get_revision(step.migration.revision).module
            why = downgrade_problem(module)
            if why:
                problems[step.migration.revision] = why
    return problems


def _run(
    project: Project,
    connection: Connection,
    plan: Plan,
    problems: dict[str, str],
    plan_only: bool,
    sql: bool,
    progress: Progress | None,
    guard: DataGuard,
) -> RunResult:
    if sql:
        return RunResult(RunReport(plan, planned_only=True), problems, render_sql(project, plan))
    if plan_only:
        risks = assess(project, connection, plan)
        predictions = predict(project, connection, plan)
        return RunResult(
            RunReport(plan, planned_only=True), problems, risks=risks, predictions=predictions
        )
    run, risks = guard.run(connection, plan, progress)
    return RunResult(run, risks=risks, archived=guard.archived, allow_data_loss=guard.allow_data_loss)


def stamp(
    project: Project,
    target: Sequence[str],
    *,
    purge: bool = False,
    lock_timeout: float | None = None,
    announce: Announce | None = None,
) -> RunResult:
    """Record a position without running migrations (Flask-Migrate's stamp, Django's --fake)."""
    with open_database(
        project, lock=True, lock_timeout=lock_timeout, announce=announce, purge=purge
    ) as (connection, planner):
        plan = planner.stamp(target)
        return RunResult(execute_stamp(project, connection, plan))


def resolve(
    project: Project,
    app: str,
    revision: str,
    how: str,
    *,
    lock_timeout: float | None = None,
    announce: Announce | None = None,
) -> str:
    """Close a partly applied migration of ``app`` (partial.py) once the person made the schema
    match one side: ``how="applied"`` records the migration as applied (after an upgrade that
    failed) or still applied (after a downgrade), ``"reverted"`` the opposite; ``"undo"`` runs
    the inverses of its committed statements (undo.py: only when none can lose data), back to
    what the version table records. Returns what was done."""
    if how not in ("applied", "reverted", "undo"):
        raise RollbackError("resolve needs --undo, --applied or --reverted")
    project.registry.get(app)
    log = PartialLog(project.settings.log_table)
    with open_database(
        project, lock=True, lock_timeout=lock_timeout, announce=announce, allow_partial=True
    ) as (connection, planner):
        mine = [step for step in log.unresolved(connection) if step.app == app]
        if not mine:
            raise RollbackError(f"app {app!r} is not partly applied: nothing to resolve")
        migration = project.graph.find(revision, app)
        found = [step for step in mine if step.revision == migration.revision]
        if not found:
            names = ", ".join(f"{step.label} ({step.revision})" for step in mine)
            raise RollbackError(
                f"{migration.label} is not the partly applied migration of app {app!r}: {names}"
            )
        step = found[0]
        if how == "undo":
            return _undo_partial(project, connection, log, step)
        applied = set(planner.applied)
        wanted = applied | {migration.revision} if how == "applied" else applied - {migration.revision}
        with connection.begin():
            if wanted != applied:
                direction = "up" if how == "applied" else "down"
                project.recorder.ensure_log(connection)
                project.recorder.set_heads(connection, project.graph.stored_heads(wanted))
                project.recorder.write(connection, migration, direction, utcnow(), fake=True)
            log.mark_resolved(connection, step, how)
    state = "applied" if how == "applied" else "not applied"
    changed = "the version table now says so" if wanted != applied else "the version table already said so"
    return f"Resolved {migration.label}: recorded as {state} ({changed}); migrations can run again."


def _undo_partial(project: Project, connection: Connection, log: PartialLog, step: PartialStep) -> str:
    """``resolve --undo``: reverse the statements of ``step`` that are still in place, or say
    which one stops it (nothing is changed then)."""
    try:
        inverses = undo(connection, plan_undo(connection, step.statements))
    except CannotUndo as exc:
        raise RollbackError(
            f"cannot undo {step.label}: {exc}; nothing was changed; make the schema match one side "
            f"by hand, then run 'flask db resolve {step.app} {step.revision} --applied' or '--reverted'"
        ) from None
    except UndoFailed as exc:
        raise RollbackError(
            f"undoing {step.label} failed: {exc.reason}; {len(exc.undone)} of "
            f"{plural(len(exc.undone) + len(exc.left), 'statement')} went back; it stays partly applied"
        ) from None
    with connection.begin():
        log.mark_resolved(connection, step, "undone")
    done = f"ran {'; '.join(inverses)}" if inverses else "nothing of it was in place any more"
    return (
        f"Undid {step.label} ({step.direction}): {done}; the schema is back where the version "
        "table says; migrations can run again."
    )


def unlock(project: Project, confirm: Callable[[str], bool] | None = None) -> str:
    """Clear the migration lock of any kind, after saying who holds it; returns what was done.

    - lock table: deletes the row a crashed run left.
    - PostgreSQL advisory lock: ends the server session holding it on this database (e.g. one
      a transaction-mode pooler kept after its client died); ``confirm(holder)`` must agree.
    - SQLite file lock: held only by a live process (the kernel drops it with the process), so
      it names that process and refuses: stop the process instead.
    """
    backend = project.url.get_backend_name()
    if project.settings.lock == "table" or backend not in NAMED_LOCK_BACKENDS:
        with project.connect() as connection:
            holder = lock_table_holder(connection, project.settings.lock_table)
            if holder is None:
                return "The migration lock was not held."
            if confirm is not None and not confirm(holder):
                raise RollbackError("the migration lock was left in place")
            release_lock_table(connection, project.settings.lock_table)
        return f"Cleared the migration lock held by {holder}."
    if backend == "sqlite":
        holder = sqlite_lock_holder(project.url.database or "")
        if holder is None:
            return "The migration lock was not held."
        raise RollbackError(
            f"the migration lock is held by {holder}, a running process (the lock ends with it): "
            "stop that process if it is stuck; nothing was changed",
            exit_code=EXIT_COULD_NOT_RUN,
        )
    if backend in ("mysql", "mariadb"):
        with project.connect() as connection:
            found = named_holder(connection, project.settings.version_table)
            if found is None:
                return "The migration lock was not held."
            session, holder = found
            if confirm is not None and not confirm(holder):
                raise RollbackError("the migration lock was left in place")
            try:
                connection.exec_driver_sql(f"KILL {int(session)}")
            except sa.exc.DBAPIError as exc:
                raise RollbackError(
                    f"could not end server connection {session} holding the migration lock "
                    f"({str(exc.orig).strip()}); ask an administrator to run KILL {session}",
                    exit_code=EXIT_COULD_NOT_RUN,
                ) from None
        return f"Cleared the migration lock held by {holder} (ended server connection {session})."
    with project.connect() as connection:
        found = advisory_holder(connection, project.settings.version_table)
        if found is None:
            return "The migration lock was not held."
        pid, holder = found
        if confirm is not None and not confirm(holder):
            raise RollbackError("the migration lock was left in place")
        ended = connection.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        connection.commit()
        if not ended:
            raise RollbackError(
                f"could not end server session {pid} holding the migration lock; ask a superuser "
                f"to run SELECT pg_terminate_backend({pid})",
                exit_code=EXIT_COULD_NOT_RUN,
            )
    return f"Cleared the migration lock held by {holder} (ended server session {pid})."


def render_sql(project: Project, plan: Plan) -> str:
    """The SQL a plan would run (Alembic offline mode), without touching the database."""
    return offline.render_sql(project, plan)


def sqlmigrate(
    project: Project, app: str, revision: str | None = None, backwards: bool = False
) -> str:
    """The SQL of one migration (Django's sqlmigrate): ``app`` and ``revision`` as
    ``sqlmigrate blog 0002`` takes them, or ``app`` alone naming it (``blog.0002_tags``, an
    id). It starts where everything the migration stands on is applied (and, backwards,
    the migration itself); the database is not read."""
    graph = project.graph
    migration = graph.named([app] if revision is None else [app, revision])
    below = graph.closure([*migration.parents, *migration.dependencies])
    with_it = below | {migration.revision}
    plan = Plan(
        "downgrade" if backwards else "upgrade",
        migration.label,
        [Step(migration, "down" if backwards else "up")],
        graph.stored_heads(with_it if backwards else below),
        graph.stored_heads(below if backwards else with_it),
    )
    return render_sql(project, plan)
