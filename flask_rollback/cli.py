"""The ``flask db`` commands: parse, call one function of ``commands``, format the result."""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import click
import sqlalchemy as sa
from flask import current_app, has_app_context
from flask.cli import AppGroup

from . import commands
from .archive import ArchiveSpec
from .database import mask
from .dataloss import DataLossError, DataLossReport
from .errors import RollbackError
from .executor import Progress
from .gate import GateReport
from .plan import RELATIVE_RE, Plan, Step
from .project import Project


class RollbackGroup(AppGroup):
    """Turns RollbackError (and database errors) into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RollbackError as exc:
            if isinstance(exc, DataLossError):
                _print_risks(exc.report, err=True)
            _fail(ctx, exc.message, exc.exit_code, exc)
        except sa.exc.SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            _fail(ctx, f"database error: {_mask(ctx, reason)}", 1, exc)


def _fail(ctx: click.Context, message: str, code: int, exc: BaseException) -> None:
    if ctx.meta.get("rollback.verbose"):
        traceback.print_exception(exc)
    click.echo(f"Error: {message}", err=True)
    ctx.exit(code)


def _mask(ctx: click.Context, text: str) -> str:
    """Hide the password; the project is remembered because the app context may be gone."""
    project: Project | None = ctx.meta.get("rollback.project")
    if project is not None:
        try:
            return mask(text, project.url)
        except RollbackError:  # no database configured: no password to hide
            return text
    if has_app_context():
        uri = current_app.config.get("SQLALCHEMY_DATABASE_URI")
        if uri:
            return mask(text, sa.engine.make_url(uri))
    return text


@click.group(cls=RollbackGroup)
@click.option("-d", "--directory", default=None, help="Migrations root (default: ROLLBACK_DIRECTORY or 'migrations').")
@click.option("-x", "--x-arg", multiple=True, help="Extra argument for migrations (context.get_x_argument()).")
@click.option("--verbose", is_flag=True, help="Show tracebacks on errors.")
@click.pass_context
def db_group(ctx: click.Context, directory: str | None, x_arg: tuple[str, ...], verbose: bool) -> None:
    """Per-app database migrations with safe rollbacks (flask-rollback)."""
    ctx.meta["rollback.verbose"] = verbose
    ctx.meta["rollback.directory"] = directory
    ctx.meta["rollback.x"] = list(x_arg)


def _project() -> Project:
    ctx = click.get_current_context()
    project = commands.get_project(directory=ctx.meta.get("rollback.directory"))
    project.x_args = ctx.meta.get("rollback.x") or []
    ctx.meta["rollback.project"] = project
    return project


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


# -- setting up and writing migrations ------------------------------------------------------


@db_group.command("init")
def init_command() -> None:
    """Create the migrations folder: a few-line env.py, the template, one folder per app."""
    for path in commands.init(_project()):
        click.echo(f"Created {path}")


@db_group.command("list-templates")
def list_templates_command() -> None:
    """List migration folder templates (Flask-Migrate compatibility)."""
    click.echo("flask-rollback - one folder per app, env.py calls into the package")


def _print_new(new: Sequence[commands.NewMigration], dry_run: bool, verbose: int = 0) -> None:
    if not new:
        click.echo("No changes detected.")
        return
    for item in new:
        where = item.path or f"{item.app}/(new) {item.message}"
        verb = "Would create" if dry_run else "Created"
        click.echo(f"{verb} migration {where}")
        for operation in item.operations:
            click.echo(f"  - {operation}")
        if item.depends_on:
            click.echo(f"  depends on {', '.join(item.depends_on)}")
        if verbose and item.code:
            click.echo(item.code)


@db_group.command("makemigrations")
@click.argument("apps", nargs=-1)
@click.option("-m", "--message", "-n", "--name", "message", default=None, help="Name of the migration(s).")
@click.option("--empty", is_flag=True, help="Create an empty migration for each APP.")
@click.option("--dry-run", is_flag=True, help="Show what would be written; write nothing.")
@click.option("--check", "check_only", is_flag=True, help="Write nothing; exit 1 if a migration is missing.")
@click.option("-v", "--verbose", count=True, help="With --dry-run, show the generated code.")
def makemigrations_command(
    apps: tuple[str, ...], message: str | None, empty: bool, dry_run: bool, check_only: bool, verbose: int
) -> None:
    """Autogenerate one migration per changed app (all apps, or APPS)."""
    new = commands.makemigrations(
        _project(), apps, message=message, empty=empty, dry_run=dry_run, check=check_only
    )
    _print_new(new, dry_run or check_only, verbose)
    if check_only and new:
        raise click.exceptions.Exit(1)


@db_group.command("migrate")
@click.option("-m", "--message", default=None, help="Migration message.")
@click.option("--app", "apps", multiple=True, help="Only these apps.")
def migrate_command(message: str | None, apps: tuple[str, ...]) -> None:
    """Flask-Migrate's name for makemigrations."""
    _print_new(commands.makemigrations(_project(), apps, message=message), False)


@db_group.command("revision")
@click.option("-m", "--message", default=None)
@click.option("--autogenerate", is_flag=True, help="Same as makemigrations.")
@click.option("--app", default=None, help="App to add the empty migration to.")
def revision_command(message: str | None, autogenerate: bool, app: str | None) -> None:
    """Create a migration (empty unless --autogenerate)."""
    project = _project()
    if autogenerate:
        _print_new(commands.makemigrations(project, (app,) if app else (), message=message), False)
        return
    if app is None:
        labels = project.registry.labels
        if len(labels) != 1:
            raise RollbackError(f"several apps ({', '.join(labels)}): choose one with --app")
        app = labels[0]
    _print_new(commands.makemigrations(project, (app,), message=message, empty=True), False)


@db_group.command("merge")
@click.argument("app")
@click.option("-m", "--message", default=None)
def merge_command(app: str, message: str | None) -> None:
    """Merge the heads of APP into one migration."""
    new = commands.merge(_project(), app, message)
    click.echo(f"Created merge migration {new.path}")


@db_group.command("edit")
@click.argument("revision", default="heads")
def edit_command(revision: str) -> None:
    """Open a migration in $EDITOR."""
    project = _project()
    rev = project.graph.find(revision).revision if revision != "heads" else revision
    commands.alembic_verb(project, "edit", rev)


# -- running --------------------------------------------------------------------------------


def _progress() -> Progress | None:
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int, step: Step) -> None:
        if total < 3:
            return
        arrow = "+" if step.direction == "up" else "-"
        click.echo(f"\r[{done}/{total}] {arrow} {step.migration.label}\033[K", nl=done == total, err=True)

    return show


def _print_plan(plan: Plan, problems: dict[str, str] | None = None) -> None:
    if not plan.steps:
        click.echo(f"Nothing to {plan.kind}: already at {plan.target}.")
        return
    counts = ", ".join(f"{app} {len(steps)}" for app, steps in plan.by_app().items())
    click.echo(f"Plan: {plan.kind} {plan.target}: {len(plan)} migration(s) ({counts})")
    for number, step in enumerate(plan.steps, 1):
        arrow = "+" if step.direction == "up" else "-"
        note = (problems or {}).get(step.migration.revision)
        extra = f"  IRREVERSIBLE: {note}" if note else ""
        click.echo(f"  {number:>3}. {arrow} {step.migration.label}  ({step.migration.revision}){extra}")
    if plan.cascaded:
        click.echo(f"  (cascade into other apps: {', '.join(plan.cascaded)})")


def _print_risks(report: DataLossReport | None, err: bool = False) -> None:
    """The data-loss table: migration, app, object, rows/values lost, why."""
    if report is None or not report.risks:
        return
    rows = [("migration", "app", "object", "lost", "operation")] + [
        (
            f"{'-' if risk.step.direction == 'down' else '+'} {risk.step.migration.label}",
            risk.step.app,
            risk.object,
            risk.amount,
            risk.operation.reason,
        )
        for risk in report.risks
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    click.echo("Data at risk:", err=err)
    for row in rows:
        click.echo("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4], err=err)


def _print_archived(specs: list[ArchiveSpec]) -> None:
    for spec in specs:
        what = f"{spec.table}.{spec.column}" if spec.column else spec.table
        click.echo(
            f"Archived {what} into {spec.name} before {spec.step.migration.label}; "
            f"'flask db restore {spec.name}' writes it back."
        )


def _warn_unreviewed(report: DataLossReport | None) -> None:
    for risk in report.unreviewed if report else []:
        click.echo(
            f"Warning: {risk.step.migration.label}: {risk.operation.reason}; "
            "it was not checked for data loss",
            err=True,
        )


def _finish(result: commands.RunResult) -> None:
    if result.sql is not None:
        click.echo(result.sql, nl=False)
        return
    report = result.report
    if report.planned_only:
        _print_plan(report.plan, result.problems)
        _print_risks(result.risks)
        return
    _warn_unreviewed(result.risks)
    _print_archived(result.archived)
    if not report.done:
        click.echo(f"Nothing to {report.plan.kind}: already at {report.plan.target}.")
        return
    verb = {"upgrade": "Applied", "downgrade": "Reverted", "stamp": "Stamped"}[report.plan.kind]
    counts = ", ".join(f"{app} {len(steps)}" for app, steps in report.plan.by_app().items())
    click.echo(f"{verb} {len(report.done)} migration(s) ({counts}) in {report.seconds:.2f}s.")


def _check_target(ctx: click.Context, _param: click.Parameter, words: tuple[str, ...]) -> tuple[str, ...]:
    """``-N`` is a target (``flask db downgrade -2``), not an option; other dashes still are."""
    for word in words:
        if word.startswith("-") and not RELATIVE_RE.match(word):
            raise click.NoSuchOption(word, ctx=ctx)
    return words


#: Targets may be ``-N``: these commands let unknown "options" through to _check_target.
_TARGET_SETTINGS = {"ignore_unknown_options": True}
_target = click.argument("target", nargs=-1, callback=_check_target)
_lock_timeout = click.option(
    "--lock-timeout", type=float, default=None,
    help="Seconds to wait for the migration lock (default ROLLBACK_LOCK_TIMEOUT, 300).",
)
_allow_data_loss = click.option(
    "--allow-data-loss", is_flag=True,
    help="Run steps that destroy existing data (refused by default).",
)
_archive = click.option(
    "--archive/--no-archive", default=None,
    help="Copy what destructive steps remove into archive tables first (default ROLLBACK_ARCHIVE).",
)


def _announce(message: str) -> None:
    click.echo(message, err=True)


@db_group.command("upgrade", context_settings=_TARGET_SETTINGS)
@_target
@click.option("--plan", "plan_only", is_flag=True, help="Print the plan; apply nothing.")
@click.option("--sql", is_flag=True, help="Print the SQL instead of running it.")
@_lock_timeout
@_allow_data_loss
@_archive
def upgrade_command(
    target: tuple[str, ...], plan_only: bool, sql: bool, lock_timeout: float | None,
    allow_data_loss: bool, archive: bool | None,
) -> None:
    """Apply migrations: every app to its head, or TARGET (APP, APP@REV, APP@+N, REV, heads)."""
    _finish(
        commands.upgrade(
            _project(), target, plan_only=plan_only, sql=sql, progress=_progress(),
            lock_timeout=lock_timeout, announce=_announce,
            allow_data_loss=allow_data_loss, archive=archive,
        )
    )


@db_group.command("downgrade", context_settings=_TARGET_SETTINGS)
@_target
@click.option("--plan", "plan_only", is_flag=True, help="Print the plan; revert nothing.")
@click.option("--cascade", is_flag=True, help="Also revert other apps' migrations that depend on TARGET.")
@click.option("--sql", is_flag=True, help="Print the SQL instead of running it.")
@_lock_timeout
@_allow_data_loss
@_archive
def downgrade_command(
    target: tuple[str, ...], plan_only: bool, cascade: bool, sql: bool, lock_timeout: float | None,
    allow_data_loss: bool, archive: bool | None,
) -> None:
    """Revert migrations: the most recent one, or down to TARGET (APP zero, APP@REV, APP@-N, REV)."""
    _finish(
        commands.downgrade(
            _project(), target, cascade=cascade, plan_only=plan_only, sql=sql,
            progress=_progress(), lock_timeout=lock_timeout, announce=_announce,
            allow_data_loss=allow_data_loss, archive=archive,
        )
    )


@db_group.command("stamp", context_settings=_TARGET_SETTINGS)
@_target
@click.option("--purge", is_flag=True, help="Ignore the version table's current content.")
@_lock_timeout
def stamp_command(target: tuple[str, ...], purge: bool, lock_timeout: float | None) -> None:
    """Record TARGET as applied without running migrations."""
    _finish(
        commands.stamp(
            _project(), target, purge=purge, lock_timeout=lock_timeout, announce=_announce
        )
    )


@db_group.command("unlock")
def unlock_command() -> None:
    """Clear a lock-table row left by a crashed run (only with ROLLBACK_LOCK = "table")."""
    cleared = commands.unlock(_project())
    click.echo("Cleared the migration lock." if cleared else "The migration lock was not held.")


@db_group.command("sqlmigrate")
@click.argument("app")
@click.argument("revision")
@click.option("--backwards", is_flag=True, help="The SQL of the downgrade.")
def sqlmigrate_command(app: str, revision: str, backwards: bool) -> None:
    """Print the SQL of one migration."""
    click.echo(commands.sqlmigrate(_project(), app, revision, backwards), nl=False)


# -- looking ----------------------------------------------------------------------------------


def _status_json(status: commands.Status) -> dict[str, Any]:
    return {
        "apps": [
            {
                "app": app.label,
                "directory": str(app.directory),
                "heads": app.heads,
                "current": app.current,
                "migrations": [
                    {
                        "name": s.migration.name,
                        "revision": s.migration.revision,
                        "applied": s.applied,
                        "applied_at": s.applied_at.isoformat() if s.applied_at else None,
                    }
                    for s in app.migrations
                ],
            }
            for app in status.apps
        ]
    }


@db_group.command("showmigrations")
@click.argument("apps", nargs=-1)
@click.option("--plan", "as_plan", is_flag=True, help="One list in the order migrations apply.")
@click.option("--json", "as_json", is_flag=True)
def showmigrations_command(apps: tuple[str, ...], as_plan: bool, as_json: bool) -> None:
    """[X] applied / [ ] pending, per app, with applied times."""
    status = commands.status(_project(), apps)
    if as_json:
        _emit_json(_status_json(status))
        return
    if as_plan:
        for item in status.order:
            if not apps or item.migration.app in apps:
                click.echo(f"[{'X' if item.applied else ' '}]  {item.migration.label}")
        return
    for app in status.apps:
        click.echo(app.label)
        if not app.migrations:
            click.echo(" (no migrations)")
        for item in app.migrations:
            when = f"  (applied {item.applied_at:%Y-%m-%d %H:%M:%S})" if item.applied_at else ""
            click.echo(f" [{'X' if item.applied else ' '}] {item.migration.name}{when}")


@db_group.command("current")
@click.option("--json", "as_json", is_flag=True)
@click.option("-v", "--verbose", is_flag=True, help="Show file paths.")
def current_command(as_json: bool, verbose: bool) -> None:
    """Where the database stands, per app."""
    status = commands.status(_project())
    if as_json:
        _emit_json({"apps": {a.label: a.current for a in status.apps}, "stored_heads": list(status.stored_heads)})
        return
    graph_names = {s.migration.revision: s.migration for s in status.order}
    for app in status.apps:
        if not app.current:
            click.echo(f"{app.label}: (none)")
        for rev in app.current:
            migration = graph_names[rev]
            flag = " (head)" if rev in app.heads else ""
            path = f"  {migration.path}" if verbose else ""
            click.echo(f"{app.label}: {rev} {migration.name}{flag}{path}")


@db_group.command("heads")
@click.option("--json", "as_json", is_flag=True)
@click.option("-v", "--verbose", is_flag=True)
def heads_command(as_json: bool, verbose: bool) -> None:
    """The head migration(s) of each app."""
    project = _project()
    graph = project.graph
    heads = {label: graph.app_heads(label) for label in project.registry.labels}
    if as_json:
        _emit_json({"apps": heads})
        return
    for label, revs in heads.items():
        for rev in revs or ["(none)"]:
            migration = graph.migrations.get(rev)
            name = f" {migration.name}" if migration else ""
            path = f"  {migration.path}" if verbose and migration else ""
            click.echo(f"{label}: {rev}{name}{path}")


@db_group.command("check")
@click.option("--json", "as_json", is_flag=True)
def check_command(as_json: bool) -> None:
    """Exit 0 when all is current; 3 models differ, 4 database behind, 5 several heads in an app."""
    report = commands.check(_project())
    if as_json:
        _emit_json({"ok": not report.problems, "exit_code": report.exit_code,
                    "problems": [{"code": c, "message": m} for c, m in report.problems]})
    elif not report.problems:
        click.echo("No problems: single heads, database current, models match the migrations.")
    for _code, message in report.problems if not as_json else []:
        click.echo(message)
    if report.exit_code:
        raise click.exceptions.Exit(report.exit_code)


@db_group.command("history")
@click.option("-r", "--rev-range", default=None)
@click.option("-v", "--verbose", is_flag=True)
@click.option("-i", "--indicate-current", is_flag=True)
def history_command(rev_range: str | None, verbose: bool, indicate_current: bool) -> None:
    """List migrations in chronological order (Alembic's history)."""
    commands.alembic_verb(
        _project(), "history", rev_range=rev_range, verbose=verbose, indicate_current=indicate_current
    )


@db_group.command("show")
@click.argument("revision", default="heads")
def show_command(revision: str) -> None:
    """Show a migration."""
    project = _project()
    rev = project.graph.find(revision).revision if revision != "heads" else revision
    commands.alembic_verb(project, "show", rev)


@db_group.command("branches")
@click.option("-v", "--verbose", is_flag=True)
def branches_command(verbose: bool) -> None:
    """Show branch points."""
    commands.alembic_verb(_project(), "branches", verbose=verbose)


# -- safe deploys -----------------------------------------------------------------------------


def _print_report(report: GateReport) -> None:
    for check in report.checks:
        click.echo(f"{check.level:<8} {check.name}: {check.message}")
        for detail in check.details:
            click.echo(f"           - {detail}")
    errors = sum(c.level == "error" for c in report.checks)
    warnings = sum(c.level == "warning" for c in report.checks)
    if report.blocked:
        strict = " (--strict: warnings count)" if report.strict and warnings else ""
        click.echo(f"Blocked: {errors} error(s), {warnings} warning(s){strict}.")
    elif report.pending:
        click.echo(f"Ready: {len(report.pending)} pending migration(s) can be deployed and rolled back.")
    else:
        click.echo("Ready: no pending migrations.")


@db_group.command("predeploy")
@click.option("--json", "as_json", is_flag=True)
@click.option("--strict", is_flag=True, help="Warnings block too.")
def predeploy_command(as_json: bool, strict: bool) -> None:
    """Prove pending migrations can be deployed and rolled back; apply nothing.

    Exit 0 ready, 1 blocked, 2 could not run.
    """
    try:
        report = commands.predeploy(_project(), strict=strict)
    except RollbackError as exc:
        raise RollbackError(exc.message, exit_code=2) from exc
    if as_json:
        _emit_json(report.as_dict())
    else:
        _print_report(report)
    if report.exit_code:
        raise click.exceptions.Exit(report.exit_code)


@db_group.command("deploy")
@click.option("--json", "as_json", is_flag=True)
@click.option("--strict", is_flag=True, help="Gate warnings block too.")
@click.option("--label", default=None, help="A name for this deploy (e.g. a release tag).")
@click.option("--git-sha", default=None, help="The commit being deployed.")
@_lock_timeout
@_allow_data_loss
@_archive
def deploy_command(
    as_json: bool, strict: bool, label: str | None, git_sha: str | None, lock_timeout: float | None,
    allow_data_loss: bool, archive: bool | None,
) -> None:
    """Lock, run the gate, apply every pending migration and record the deploy."""
    result = commands.deploy(
        _project(), strict=strict, label=label, git_sha=git_sha, lock_timeout=lock_timeout,
        announce=_announce, progress=_progress(), allow_data_loss=allow_data_loss, archive=archive,
    )
    if as_json:
        _emit_json({"report": result.report.as_dict(),
                    "deploy": result.record.as_dict() if result.record else None,
                    "archived": [spec.name for spec in result.archived]})
    else:
        _print_report(result.report)
        _print_archived(result.archived)
        if result.record:
            click.echo(
                f"Deploy {result.record.id} applied {len(result.record.migrations)} migration(s); "
                f"undo it with 'flask db rollback {result.record.id}'."
            )
    if result.report.blocked:
        if not as_json:
            click.echo("Error: the gate blocked the deploy; nothing was applied.", err=True)
        raise click.exceptions.Exit(1)


@db_group.command("deploys")
@click.option("--json", "as_json", is_flag=True)
@click.option("--repair", is_flag=True, help="Close records left 'running' by a crashed deploy.")
def deploys_command(as_json: bool, repair: bool) -> None:
    """Deploy records, newest first."""
    records = commands.deploys(_project(), repair=repair)
    if as_json:
        _emit_json([record.as_dict() for record in records])
        return
    if not records:
        click.echo("No deploys recorded.")
    for record in records:
        name = f" {record.label}" if record.label else ""
        sha = f" {record.git_sha[:12]}" if record.git_sha else ""
        click.echo(
            f"{record.id:>4}  {record.status:<12} {record.started_at:%Y-%m-%d %H:%M:%S}  "
            f"{len(record.migrations)} migration(s){name}{sha}  {record.user}@{record.host}"
            + (f"  error: {record.error}" if record.error else "")
        )


@db_group.command("rollback")
@click.argument("deploy_id", type=int, required=False)
@click.option("--plan", "plan_only", is_flag=True, help="Print the plan; revert nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (for scripts).")
@_lock_timeout
@_allow_data_loss
@_archive
def rollback_command(
    deploy_id: int | None, plan_only: bool, yes: bool, lock_timeout: float | None,
    allow_data_loss: bool, archive: bool | None,
) -> None:
    """Undo a deploy (default: the latest): every app back to the heads recorded before it."""

    def confirm(plan: Plan) -> bool:
        _print_plan(plan)
        if not sys.stdin.isatty():
            raise RollbackError("rollback needs confirmation: re-run with --yes")
        return click.confirm("Roll back?", default=False)

    result = commands.rollback(
        _project(), deploy_id, plan_only=plan_only, confirm=None if yes else confirm,
        lock_timeout=lock_timeout, announce=_announce, progress=_progress(),
        allow_data_loss=allow_data_loss, archive=archive,
    )
    if plan_only:
        _print_plan(result.plan, result.problems)
        _print_risks(result.risks)
        return
    _warn_unreviewed(result.risks)
    _print_archived(result.archived)
    reverted = len(result.run.done) if result.run else 0
    click.echo(f"Rolled back deploy {result.record.id}: reverted {reverted} migration(s).")


@db_group.command("archives")
@click.option("--json", "as_json", is_flag=True)
@click.option("--drop", "drop", default=None, metavar="ARCHIVE", help="Discard this archive.")
@_lock_timeout
def archives_command(as_json: bool, drop: str | None, lock_timeout: float | None) -> None:
    """Archives kept by --archive runs, newest first (or discard one with --drop)."""
    if drop is not None:
        record = commands.drop_archive(_project(), drop, lock_timeout=lock_timeout, announce=_announce)
        click.echo(f"Dropped archive {record.name} ({record.rows} row(s) of {record.object}).")
        return
    records = commands.archives(_project())
    if as_json:
        _emit_json([record.as_dict() for record in records])
        return
    if not records:
        click.echo("No archives.")
    for record in records:
        click.echo(
            f"{record.name}  {record.object}  {record.rows} row(s)  from {record.migration} "
            f"({record.direction})  {record.created_at:%Y-%m-%d %H:%M:%S}"
        )


@db_group.command("restore")
@click.argument("archive")
@_lock_timeout
def restore_command(archive: str, lock_timeout: float | None) -> None:
    """Write an archive's values back (matched by primary key), then drop the archive."""
    result = commands.restore(_project(), archive, lock_timeout=lock_timeout, announce=_announce)
    record = result.archive
    click.echo(
        f"Restored {record.object} from {record.name}: {result.updated} row(s) updated, "
        f"{result.inserted} inserted."
    )
    if result.dropped:
        click.echo(f"Dropped archive {record.name}.")
    else:
        click.echo(
            f"Warning: {result.unmatched} archived row(s) found no row with the same key; "
            f"the archive is kept ('flask db archives --drop {record.name}' discards it).",
            err=True,
        )
