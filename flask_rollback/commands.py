"""The Python API: one function per ``flask db`` verb. Each returns an object and raises
only RollbackError; the CLI parses arguments, calls one of these and formats the result."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command as alembic_command
from alembic.runtime.environment import EnvironmentContext
from alembic.util import CommandError
from flask import Flask, current_app
from sqlalchemy.engine import Connection

from . import signals
from .archive import ArchiveLog, ArchiveRecord, ArchiveSpec, RestoreResult
from .autodetect import AppSplitter, NewMigration, django_filename
from .backup import backup_database
from .checks import downgrade_problem
from .database import apply_timeouts, connect
from .dataloss import DataLossError, DataLossReport, assess
from .deploys import APPLIED, FAILED, ROLLED_BACK, RUNNING, DeployLog, DeployRecord
from .errors import RollbackError
from .executor import Progress, RunReport, execute, stamp as execute_stamp
from .gate import GateReport, graph_failure, run_gate
from .graph import Migration
from .lock import Announce, migration_lock, release_lock_table
from .loader import TEMPLATES, check_layout
from .plan import Plan, Planner, Step
from .project import Project
from .settings import lock_seconds

EXIT_MODELS_DIFFER = 3
EXIT_DATABASE_BEHIND = 4
EXIT_MULTIPLE_HEADS = 5


def get_project(app: Flask | None = None, directory: str | None = None) -> Project:
    """The Project of ``app`` (default: the current app)."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    state = app.extensions.get("rollback")
    if state is None:
        raise RollbackError(
            "flask-rollback is not set up for this app: call rollback.init_app(app, db)"
        )
    return state.project(app, directory)


# -- setting up -----------------------------------------------------------------------------


def init(project: Project) -> list[Path]:
    """Create the migrations root (a few-line env.py, the template) and one folder per app."""
    root = project.root
    if (root / "env.py").exists():
        raise RollbackError(f"{root} is already initialised; delete it first to start over")
    apps = list(project.registry)  # label errors surface before anything is written
    created: list[Path] = []
    try:
        root.mkdir(parents=True, exist_ok=True)
        for name in ("env.py", "script.py.mako"):
            shutil.copyfile(TEMPLATES / name, root / name)
            created.append(root / name)
        for app in apps:
            if not app.directory.exists():
                app.directory.mkdir(parents=True)
                created.append(app.directory)
    except OSError as exc:
        raise RollbackError(f"cannot create {exc.filename}: {exc.strerror}") from None
    return created


def _ensure_app_folders(project: Project) -> None:
    check_layout(project.root)
    for app in project.registry:
        app.directory.mkdir(parents=True, exist_ok=True)


# -- the database state ---------------------------------------------------------------------


@contextmanager
def _database(
    project: Project,
    *,
    lock: bool = False,
    lock_timeout: float | None = None,
    announce: Announce | None = None,
    purge: bool = False,
) -> Iterator[tuple[Connection, Planner]]:
    """A connection and a planner for the database's current state.

    With ``lock``, the migration lock is taken first and the state read after it, so a process
    that waited for another one plans against what that one left. ``purge`` ignores the
    stored heads (to stamp over revisions no file provides any more).
    """
    graph = project.graph
    settings = project.settings
    with connect(project.url) as connection:
        guard = (
            migration_lock(
                connection,
                settings.version_table,
                settings.lock_timeout
                if lock_timeout is None
                else lock_seconds(lock_timeout, "the lock timeout", "; check --lock-timeout"),
                announce,
                lock_table=settings.lock_table,
                use_table=settings.lock == "table",
            )
            if lock
            else nullcontext()
        )
        with guard:
            if lock:
                apply_timeouts(connection, settings)
            recorder = project.recorder
            heads = () if purge else recorder.stored_heads(connection)
            recent = recorder.most_recent_first(recorder.entries(connection))
            connection.rollback()
            yield connection, Planner(graph, heads, recent)


@dataclass
class MigrationStatus:
    """One migration and whether (and when) it is applied."""

    migration: Migration
    applied: bool
    applied_at: datetime | None


@dataclass
class AppStatus:
    """An app: its migrations in order, its heads and where the database stands."""

    label: str
    directory: Path
    migrations: list[MigrationStatus]
    heads: list[str]
    current: list[str]

    @property
    def pending(self) -> list[MigrationStatus]:
        return [m for m in self.migrations if not m.applied]


@dataclass
class Status:
    """Every app's status plus the global order (Django's ``showmigrations --plan``)."""

    apps: list[AppStatus]
    order: list[MigrationStatus]
    stored_heads: tuple[str, ...]


def status(project: Project, apps: Sequence[str] = ()) -> Status:
    for label in apps:
        project.registry.get(label)
    with _database(project) as (connection, planner):
        times = project.recorder.applied_times(project.recorder.entries(connection))
    graph = project.graph
    order = [
        MigrationStatus(m, m.revision in planner.applied, times.get(m.revision))
        for m in graph.migrations.values()
    ]
    result = []
    for label in apps or project.registry.labels:
        app = project.registry.get(label)
        result.append(
            AppStatus(
                label,
                app.directory,
                [s for s in order if s.migration.app == label],
                graph.app_heads(label),
                graph.position(label, planner.applied),
            )
        )
    return Status(result, order, planner.stored_heads)


# -- running --------------------------------------------------------------------------------


@dataclass
class RunResult:
    """A plan, what ran, and (with --plan) the problems found without running."""

    report: RunReport
    problems: dict[str, str] = field(default_factory=dict)
    sql: str | None = None
    risks: DataLossReport | None = None
    archived: list[ArchiveSpec] = field(default_factory=list)

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
) -> RunResult:
    """Apply migrations up to ``target`` (default: every app's head).

    A plan that would destroy existing data is refused unless ``allow_data_loss`` or
    ``archive`` (default: the ``archive`` setting) is given.
    """
    changes = not (plan_only or sql)
    with _database(project, lock=changes, lock_timeout=lock_timeout, announce=announce) as (
        connection,
        planner,
    ):
        plan = planner.upgrade(target)
        guard = _DataGuard(project, allow_data_loss, archive)
        return _run(project, connection, plan, {}, plan_only, sql, progress, guard)


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
) -> RunResult:
    """Revert migrations down to ``target`` (default: the most recently applied one).

    Refused before anything runs if a step is irreversible, or would destroy existing data
    (unless ``allow_data_loss``, or ``archive`` keeps a restorable copy first)."""
    changes = not (plan_only or sql)
    with _database(project, lock=changes, lock_timeout=lock_timeout, announce=announce) as (
        connection,
        planner,
    ):
        plan = planner.downgrade(target, cascade=cascade)
        problems = irreversible_steps(project, plan)
        if problems and not plan_only:
            listed = "; ".join(
                f"{project.graph.migrations[rev].label} {why}" for rev, why in problems.items()
            )
            raise RollbackError(f"cannot downgrade {plan.target}: {listed}; nothing was run")
        guard = _DataGuard(project, allow_data_loss, archive)
        return _run(project, connection, plan, problems, plan_only, sql, progress, guard)


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


class _DataGuard:
    """Refuses plans that would destroy existing data, or archives that data as they run."""

    def __init__(self, project: Project, allow_data_loss: bool, archive: bool | None) -> None:
        self.project = project
        self.allow_data_loss = allow_data_loss
        self.archive = project.settings.archive if archive is None else archive
        self.log = ArchiveLog(project.settings.archive_table)

    def decide(self, connection: Connection, plan: Plan, report: DataLossReport) -> list[ArchiveSpec]:
        """Given what ``plan`` would destroy (``assess``): raise unless allowed, or plan the
        archives that keep it."""
        if not report.losses:
            return []
        if self.archive:
            return self.log.plan(connection, report, skip_unarchivable=self.allow_data_loss)
        if self.allow_data_loss:
            return []
        raise DataLossError(
            DataLossReport(report.losses),
            f"{plan.kind} {plan.target} would destroy existing data in "
            f"{len(report.losses)} place(s); nothing was run. Re-run with --archive to keep a "
            "copy you can restore, or with --allow-data-loss",
        )

    def run(self, connection: Connection, plan: Plan, progress: Progress | None) -> RunResult:
        """Check, then execute the plan, writing each step's archives in its transaction."""
        report = assess(self.project, connection, plan)
        specs = self.decide(connection, plan, report)
        run = execute(
            self.project, connection, plan, progress, before_step=self.archiver(connection, specs)
        )
        return RunResult(run, risks=report, archived=specs)

    def archiver(
        self, connection: Connection, specs: list[ArchiveSpec]
    ) -> Callable[[Connection, Step], None] | None:
        """The ``before_step`` hook that writes each step's archives (None: nothing to keep)."""
        if not specs:
            return None
        self.log.ensure(connection)
        connection.commit()

        def write_archives(conn: Connection, step: Step) -> None:
            for spec in specs:
                if spec.step == step:
                    self.log.write(conn, spec)

        return write_archives


def _run(
    project: Project,
    connection: Connection,
    plan: Plan,
    problems: dict[str, str],
    plan_only: bool,
    sql: bool,
    progress: Progress | None,
    guard: _DataGuard,
) -> RunResult:
    if sql:
        return RunResult(RunReport(plan, planned_only=True), problems, render_sql(project, plan))
    if plan_only:
        risks = assess(project, connection, plan)
        return RunResult(RunReport(plan, planned_only=True), problems, risks=risks)
    return guard.run(connection, plan, progress)


def stamp(
    project: Project,
    target: Sequence[str],
    *,
    purge: bool = False,
    lock_timeout: float | None = None,
    announce: Announce | None = None,
) -> RunResult:
    """Record a position without running migrations (Flask-Migrate's stamp, Django's --fake)."""
    with _database(
        project, lock=True, lock_timeout=lock_timeout, announce=announce, purge=purge
    ) as (connection, planner):
        plan = planner.stamp(target)
        return RunResult(execute_stamp(project, connection, plan))


def unlock(project: Project) -> bool:
    """Delete the fallback lock row a crashed run left behind; True if there was one.

    PostgreSQL advisory locks and SQLite file locks die with their process and need no unlock.
    """
    if project.settings.lock != "table" and project.url.get_backend_name() in ("postgresql", "sqlite"):
        raise RollbackError(
            f"the {project.url.get_backend_name()} migration lock is released by the server when "
            "its process ends; there is nothing to unlock"
        )
    with connect(project.url) as connection:
        return release_lock_table(connection, project.settings.lock_table)


def render_sql(project: Project, plan: Plan) -> str:
    """The SQL a plan would run (Alembic offline mode), without touching the database."""
    buffer = io.StringIO()
    steps = plan.alembic_steps(project.graph)
    with EnvironmentContext(
        project.config,
        project.script,
        fn=lambda heads, ctx: steps,
        as_sql=True,
        starting_rev=",".join(plan.heads_before) or None,
    ) as env:
        env.configure(
            url=project.url,
            output_buffer=buffer,
            literal_binds=True,
            transaction_per_migration=True,
            **project.context_options(project.url.get_backend_name()),
        )
        env.run_migrations()
    return buffer.getvalue()


def sqlmigrate(project: Project, app: str, revision: str, backwards: bool = False) -> str:
    """The SQL of one migration (Django's sqlmigrate)."""
    project.registry.get(app)
    migration = project.graph.find(revision, app)
    parents = migration.parents if not backwards else (migration.revision,)
    after = (migration.revision,) if not backwards else migration.parents
    plan = Plan(
        "upgrade" if not backwards else "downgrade",
        migration.label,
        [Step(migration, "down" if backwards else "up")],
        parents,
        after,
    )
    return render_sql(project, plan)


# -- writing migrations ---------------------------------------------------------------------


def makemigrations(
    project: Project,
    apps: Sequence[str] = (),
    *,
    message: str | None = None,
    empty: bool = False,
    dry_run: bool = False,
    check: bool = False,
) -> list[NewMigration]:
    """Autogenerate one migration per changed app; returns what was (or would be) written."""
    registry = project.registry
    for label in apps:
        registry.get(label)
    graph = project.graph
    for label in apps or registry.labels:
        heads = graph.app_heads(label)
        if len(heads) > 1:
            raise RollbackError(
                f"app {label!r} has {len(heads)} heads ({', '.join(heads)}); "
                f"run 'flask db merge {label}' first"
            )
    write = not (dry_run or check)
    if empty:
        if not apps:
            raise RollbackError("--empty needs the app(s) to create a migration for")
        return [_empty_revision(project, label, message, write) for label in apps]
    with _database(project) as (_connection, planner):
        pending = set(graph.migrations) - planner.applied
    if pending:
        raise RollbackError(
            f"the database is behind: {len(pending)} migration(s) are not applied; "
            "run 'flask db upgrade' first"
        )
    if write:
        _ensure_app_folders(project)
    splitter = AppSplitter(graph, apps, message, write)
    try:
        scripts = alembic_command.revision(
            project.quiet_config, message=message, autogenerate=True,
            process_revision_directives=splitter,
        )
    except CommandError as exc:
        raise RollbackError(f"autogenerate failed: {exc}") from None
    if write:
        written = {s.revision: Path(s.path) for s in _as_list(scripts)}
        for new in splitter.planned:
            new.path = _rename(written[new.revision], new.message)
        project.reload()
    return splitter.planned


def _empty_revision(project: Project, label: str, message: str | None, write: bool) -> NewMigration:
    existing = project.graph.of_app(label)
    message = message or ("initial" if not existing else "custom")
    new = NewMigration(app=label, revision="", message=message)
    if not write:
        return new
    _ensure_app_folders(project)
    script = alembic_command.revision(
        project.quiet_config,
        message=message,
        head=f"{label}@head" if existing else "base",
        branch_label=None if existing else label,
        version_path=str(project.registry.get(label).directory),
    )
    (script,) = _as_list(script)
    new.revision = script.revision
    new.path = _rename(Path(script.path), message)
    project.reload()
    return new


def merge(project: Project, app: str, message: str | None = None) -> NewMigration:
    """Join an app's heads into one (two developers each added a migration)."""
    project.registry.get(app)
    heads = project.graph.app_heads(app)
    if len(heads) < 2:
        raise RollbackError(f"app {app!r} has a single head; nothing to merge")
    message = message or "merge"
    script = alembic_command.merge(project.quiet_config, revisions=heads, message=message)
    (script,) = _as_list(script)
    path = _rename(Path(script.path), message)
    project.reload()
    return NewMigration(app=app, revision=script.revision, message=message, path=path)


def _as_list(scripts):  # type: ignore[no-untyped-def]
    if scripts is None:
        return []
    return scripts if isinstance(scripts, list) else [scripts]


def _rename(path: Path, message: str) -> Path:
    target = django_filename(path, message)
    path.rename(target)
    return target


# -- checking -------------------------------------------------------------------------------


@dataclass
class CheckReport:
    """Problems found by ``check``; the exit code names the first kind found."""

    problems: list[tuple[int, str]]

    @property
    def exit_code(self) -> int:
        return self.problems[0][0] if self.problems else 0


def check(project: Project) -> CheckReport:
    """Are heads single, the database current and the models matched by migrations?"""
    problems: list[tuple[int, str]] = []
    graph = project.graph
    for label in project.registry.labels:
        heads = graph.app_heads(label)
        if len(heads) > 1:
            problems.append(
                (EXIT_MULTIPLE_HEADS, f"app {label!r} has {len(heads)} heads: {', '.join(heads)}")
            )
    with _database(project) as (connection, planner):
        pending = [m.label for m in graph.migrations.values() if m.revision not in planner.applied]
        if pending:
            problems.append(
                (EXIT_DATABASE_BEHIND, f"the database is behind: {len(pending)} pending: {', '.join(pending)}")
            )
    if not problems:
        new = makemigrations(project, check=True)
        for migration in new:
            problems.append(
                (EXIT_MODELS_DIFFER,
                 f"models of app {migration.app!r} differ from its migrations: "
                 + "; ".join(migration.operations))
            )
    return CheckReport(problems)


# -- Flask-Migrate's informational verbs, delegated to Alembic -------------------------------


def alembic_verb(project: Project, verb: str, *args: object, **kwargs: object) -> None:
    """history, show, branches, edit: Alembic prints these itself."""
    try:
        getattr(alembic_command, verb)(project.config, *args, **kwargs)
    except CommandError as exc:
        raise RollbackError(str(exc)) from None


# -- safe deploys -----------------------------------------------------------------------------


def predeploy(project: Project, *, strict: bool = False) -> GateReport:
    """Run every gate check against the configured database; apply nothing to it."""
    try:
        project.graph  # noqa: B018 - broken files are a gate error, not a crash
        with _database(project) as (connection, planner):
            return run_gate(project, connection, planner, strict)
    except RollbackError as exc:
        if exc.message.startswith("cannot connect"):
            raise RollbackError(exc.message, exit_code=2) from None
        return graph_failure(exc.message)


@dataclass
class DeployResult:
    """The gate's report, and the record and run of the deploy when it happened."""

    report: GateReport
    record: DeployRecord | None = None
    run: RunReport | None = None
    archived: list[ArchiveSpec] = field(default_factory=list)


def deploy(
    project: Project,
    *,
    strict: bool = False,
    label: str | None = None,
    git_sha: str | None = None,
    lock_timeout: float | None = None,
    announce: Announce | None = None,
    progress: Progress | None = None,
    allow_data_loss: bool = False,
    archive: bool | None = None,
) -> DeployResult:
    """Lock, gate, before_deploy hooks, apply all pending migrations, record, after_deploy hooks.

    Like ``upgrade``, refuses to destroy existing data unless ``allow_data_loss`` or ``archive``.
    """
    deploy_log = DeployLog(project.settings.deploy_table)
    with _database(project, lock=True, lock_timeout=lock_timeout, announce=announce) as (
        connection,
        planner,
    ):
        report = run_gate(project, connection, planner, strict)
        plan = planner.upgrade()
        if report.blocked or not plan.steps:
            return DeployResult(report)
        guard = _DataGuard(project, allow_data_loss, archive)
        specs = guard.decide(connection, plan, report.data_loss)
        backup = None
        if project.settings.backup_dir:
            backup = str(backup_database(project.url, project.settings.backup_dir))
        _run_hooks(project, "before_deploy", signals.before_deploy, plan=plan)
        deploy_id = deploy_log.start(
            connection,
            stored_heads_before=list(planner.stored_heads),
            heads_before=_positions(project, planner.applied),
            migrations=[],
            report=report.as_dict(),
            label=label,
            git_sha=git_sha,
            backup=backup,
        )
        try:
            run = execute(
                project, connection, plan, progress, before_step=guard.archiver(connection, specs)
            )
        except RollbackError as exc:
            done = _applied_so_far(project, connection, plan)
            deploy_log.finish(
                connection, deploy_id, FAILED, migrations=done, error=exc.message,
                stored_heads_after=list(project.recorder.stored_heads(connection)),
            )
            raise RollbackError(f"deploy {deploy_id} failed: {exc.message}") from exc
        applied = planner.applied | {step.migration.revision for step in plan.steps}
        deploy_log.finish(
            connection, deploy_id, APPLIED,
            stored_heads_after=list(plan.heads_after),
            heads_after=_positions(project, applied),
            migrations=[step.migration.revision for step in plan.steps],
        )
        record = deploy_log.get(connection, deploy_id)
        connection.rollback()
    _run_hooks(project, "after_deploy", signals.after_deploy, plan=plan, deploy=record)
    return DeployResult(report, record, run, specs)


def _positions(project: Project, applied: set[str]) -> dict[str, list[str]]:
    return {label: project.graph.position(label, applied) for label in project.registry.labels}


def _applied_so_far(project: Project, connection: Connection, plan: Plan) -> list[str]:
    """The plan's migrations that committed before a failure."""
    applied = project.graph.closure(project.recorder.stored_heads(connection))
    connection.rollback()
    return [step.migration.revision for step in plan.steps if step.migration.revision in applied]


def _run_hooks(project: Project, name: str, signal: Any, **kwargs: Any) -> None:
    """Hooks and signal receivers; one that raises stops the operation with its message."""
    receivers = [*project.hooks.get(name, [])]
    try:
        for hook in receivers:
            hook(**kwargs)
        signal.send(project.flask_app, **kwargs)
    except RollbackError:
        raise
    except Exception as exc:
        raise RollbackError(f"{name} hook failed: {exc}; nothing was changed") from exc


def deploys(project: Project, *, repair: bool = False, lock_timeout: float | None = None) -> list[DeployRecord]:
    """Deploy records, newest first; ``repair`` closes records left running by a crash."""
    deploy_log = DeployLog(project.settings.deploy_table)
    with _database(project, lock=repair, lock_timeout=lock_timeout) as (connection, _planner):
        if repair:
            heads = list(project.recorder.stored_heads(connection))
            applied = project.graph.closure(heads)
            connection.rollback()

            def outcome(record: DeployRecord) -> dict[str, Any]:
                before = project.graph.closure(record.stored_heads_before)
                return {
                    "migrations": [r for r in project.graph.migrations if r in applied - before],
                    "stored_heads_after": heads,
                    "heads_after": _positions(project, applied),
                }

            deploy_log.repair(connection, outcome)
        records = deploy_log.all(connection)
        connection.rollback()
    return records


@dataclass
class RollbackResult:
    """The deploy being undone, the plan, and the run (None with --plan)."""

    record: DeployRecord
    plan: Plan
    problems: dict[str, str] = field(default_factory=dict)
    run: RunReport | None = None
    risks: DataLossReport | None = None
    archived: list[ArchiveSpec] = field(default_factory=list)


def rollback(
    project: Project,
    deploy_id: int | None = None,
    *,
    plan_only: bool = False,
    confirm: Callable[[Plan], bool] | None = None,
    lock_timeout: float | None = None,
    announce: Announce | None = None,
    progress: Progress | None = None,
    allow_data_loss: bool = False,
    archive: bool | None = None,
) -> RollbackResult:
    """Return every app to the heads recorded before a deploy (default: the latest one).

    Refused before anything runs if a step is irreversible or would destroy data written
    since the deploy (unless ``allow_data_loss``, or ``archive`` keeps a restorable copy)."""
    deploy_log = DeployLog(project.settings.deploy_table)
    with _database(project, lock=not plan_only, lock_timeout=lock_timeout, announce=announce) as (
        connection,
        planner,
    ):
        records = deploy_log.all(connection)
        connection.rollback()
        record = _deploy_to_undo(records, deploy_id)
        plan = planner.revert_to(record.stored_heads_before, f"before deploy {record.id}")
        problems = irreversible_steps(project, plan)
        result = RollbackResult(record, plan, problems)
        if problems:
            listed = "; ".join(
                f"{project.graph.migrations[rev].label} {why}" for rev, why in problems.items()
            )
            if plan_only:
                return result
            raise RollbackError(f"cannot roll back deploy {record.id}: {listed}; nothing was run")
        guard = _DataGuard(project, allow_data_loss, archive)
        if plan_only:
            result.risks = assess(project, connection, plan)
            return result
        result.risks = assess(project, connection, plan)
        specs = guard.decide(connection, plan, result.risks)  # refuse before asking to confirm
        if confirm is not None and not confirm(plan):
            raise RollbackError("rollback cancelled; nothing was changed")
        _run_hooks(project, "before_rollback", signals.before_rollback, plan=plan, deploy=record)
        if not plan.steps:
            with connection.begin():
                deploy_log.mark_rolled_back(connection, record.id)
            return result
        finalize = lambda conn: deploy_log.mark_rolled_back(conn, record.id)  # noqa: E731
        result.run = execute(
            project, connection, plan, progress,
            finalize=finalize, before_step=guard.archiver(connection, specs),
        )
        result.archived = specs
        return result


def _deploy_to_undo(records: list[DeployRecord], deploy_id: int | None) -> DeployRecord:
    """The deploy to undo; refuses anything but the latest live one, and refuses while a newer
    deploy is marked running (undoing under it would act as if it had never happened)."""
    live = [r for r in records if r.status in (APPLIED, FAILED)]
    if deploy_id is None:
        if not live:
            raise RollbackError("there is no deploy to roll back; see 'flask db deploys'")
        record = live[0]
    else:
        found = next((r for r in records if r.id == deploy_id), None)
        if found is None:
            raise RollbackError(f"no deploy with id {deploy_id}; see 'flask db deploys'")
        if found.status == ROLLED_BACK:
            raise RollbackError(f"deploy {deploy_id} was already rolled back")
        record = found
    running = [r.id for r in records if r.status == RUNNING and r.id >= record.id]
    if running:
        raise RollbackError(
            f"deploy {running[0]} is marked running: if its process is gone, run "
            "'flask db deploys --repair' first"
        )
    later = [r.id for r in live if r.id > record.id]
    if later:
        raise RollbackError(
            f"deploy {deploy_id} is not the latest; roll back deploy(s) "
            f"{', '.join(map(str, later))} first"
        )
    return record


# -- archives ---------------------------------------------------------------------------------


def archives(project: Project) -> list[ArchiveRecord]:
    """The archives kept by ``--archive`` runs, newest first."""
    with connect(project.url) as connection:
        return ArchiveLog(project.settings.archive_table).all(connection)


def restore(
    project: Project,
    name: str,
    *,
    lock_timeout: float | None = None,
    announce: Announce | None = None,
) -> RestoreResult:
    """Write an archive's values back by primary key (in one transaction), then drop it."""
    log = ArchiveLog(project.settings.archive_table)
    with _archive_transaction(project, lock_timeout, announce) as connection:
        return log.restore(connection, log.get(connection, name))


def drop_archive(
    project: Project,
    name: str,
    *,
    lock_timeout: float | None = None,
    announce: Announce | None = None,
) -> ArchiveRecord:
    """Discard an archive: its table and its registry row."""
    log = ArchiveLog(project.settings.archive_table)
    with _archive_transaction(project, lock_timeout, announce) as connection:
        record = log.get(connection, name)
        log.drop(connection, record)
        return record


@contextmanager
def _archive_transaction(
    project: Project, lock_timeout: float | None, announce: Announce | None
) -> Iterator[Connection]:
    """One transaction under the migration lock: archives change the database too."""
    with _database(project, lock=True, lock_timeout=lock_timeout, announce=announce) as (
        connection,
        _planner,
    ):
        with connection.begin():
            yield connection
