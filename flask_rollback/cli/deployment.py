"""Safe-deploy commands: predeploy, deploy, deploys, rollback."""

from __future__ import annotations

import sys
import uuid
from typing import TYPE_CHECKING, Any

import click

from .. import commands
from ..errors import EXIT_COULD_NOT_RUN, RollbackError
from ..project import Project
from ..wording import plural

if TYPE_CHECKING:  # the deploy machinery loads when a deploy command runs
    from ..deploys import DeployRecord
    from ..gate import GateReport
    from ..plan import Plan
from .group import (
    allow_data_loss_option,
    announce,
    archive_option,
    bind_option,
    bind_views,
    by_bind,
    current_project,
    db_group,
    bind_flag,
    each_bind,
    echo_lines,
    emit_json,
    json_option,
    lock_timeout_option,
    quiet_option,
)
from .output import (
    RED,
    format_time,
    paint,
    print_archived,
    print_plan,
    print_report,
    print_risks,
    progress,
    table,
    warn_unreviewed,
)

no_rehearsal_option = click.option(
    "--no-rehearsal", "no_rehearsal", is_flag=True,
    help="Skip the rehearsal on a scratch copy (a warning; e.g. a role without CREATEDB).",
)


@db_group.command("predeploy")
@json_option
@click.option("--strict", is_flag=True, help="Warnings block too.")
@no_rehearsal_option
@bind_option
def predeploy_command(as_json: bool, strict: bool, no_rehearsal: bool) -> None:
    """Prove pending migrations can be deployed and rolled back; apply nothing.

    Exit 0 ready, 1 blocked, 2 could not run (with several binds: the worst of them).
    """
    views = bind_views(current_project())

    def one(view: Project) -> GateReport:
        try:
            report = commands.predeploy(view, strict=strict, rehearse=not no_rehearsal)
        except RollbackError as exc:
            raise RollbackError(exc.message, exit_code=EXIT_COULD_NOT_RUN) from exc
        if not as_json:
            print_report(report)
        return report

    reports = each_bind(views, one, heading=not as_json)
    if as_json:
        emit_json(by_bind(views, [report.as_dict() for report in reports]))
    failed = [(view, r) for view, r in zip(views, reports) if r.could_not_run]
    if failed:
        view, report = failed[0]
        where = f"bind {view.bind_label!r}: " if len(views) > 1 else ""
        raise RollbackError(f"{where}the gate could not run: {report.could_not_run}", report.exit_code)
    code = max(report.exit_code for report in reports)
    if code:
        raise click.exceptions.Exit(code)


@db_group.command("deploy")
@json_option
@click.option("--strict", is_flag=True, help="Gate warnings block too.")
@click.option("--label", default=None, help="A name for this deploy (e.g. a release tag).")
@click.option("--git-sha", default=None, help="The commit being deployed.")
@lock_timeout_option
@allow_data_loss_option
@archive_option
@no_rehearsal_option
@quiet_option
@bind_option
def deploy_command(
    as_json: bool, strict: bool, label: str | None, git_sha: str | None, lock_timeout: float | None,
    allow_data_loss: bool, archive: bool | None, no_rehearsal: bool, quiet: bool,
) -> None:
    """Lock, run the gate, apply every pending migration and record the deploy.

    With several binds: first the gate of every bind (nothing is applied anywhere if one
    blocks), then each bind in turn under its own lock, recorded in its own database."""
    project = current_project()
    views = bind_views(project)
    several = len(views) > 1
    from ..commands.deployment import check_deploy_names

    check_deploy_names(label, git_sha)
    if several:
        _gate_every_bind(views, strict, not no_rehearsal, as_json)
    bind_round = uuid.uuid4().hex if several else None
    documents: list[dict[str, Any]] = []

    def one(view: Project) -> commands.DeployResult:
        result = commands.deploy(
            view, strict=strict, label=label, git_sha=git_sha, lock_timeout=lock_timeout,
            announce=announce, progress=progress(quiet or as_json), allow_data_loss=allow_data_loss, archive=archive,
            rehearse=not no_rehearsal, bind_round=bind_round,
            gated=None if as_json else lambda report: print_report(report, quiet),
        )
        documents.append({
            "report": result.report.as_dict(),
            "deploy": result.record.as_dict() if result.record else None,
            "archived": [spec.name for spec in result.archived],
        })
        if not as_json:
            print_archived(result.archived, bind_flag(view))
            if result.record:
                where = bind_flag(view)
                click.echo(
                    f"Deploy {result.record.id} applied {plural(len(result.record.migrations), 'migration')}; "
                    f"undo it with 'flask db rollback{where} {result.record.id}'."
                )
        if result.report.could_not_run:
            raise RollbackError(
                f"the gate could not run: {result.report.could_not_run}; nothing was applied",
                result.report.exit_code,
            )
        if result.report.blocked:
            raise RollbackError("the gate blocked the deploy; nothing was applied", 1)
        return result

    try:
        results = each_bind(views, one, heading=not as_json)
    except RollbackError as exc:
        if as_json and documents:  # the reports so far, the failing bind's last, then the error
            emit_json(by_bind(views[: len(documents)], documents))
        if as_json or exc.message != "the gate blocked the deploy; nothing was applied":
            raise
        click.echo(f"{paint('Error:', RED, err=True)} {exc.message}.", err=True)
        raise click.exceptions.Exit(1) from exc
    if several and not as_json and any(result.record for result in results):
        click.echo("Undo this deploy on every bind with 'flask db rollback'.")
    if as_json:
        emit_json(by_bind(views, documents))


def _gate_every_bind(views: list[Project], strict: bool, rehearse: bool, as_json: bool) -> None:
    """Before a deploy over several binds touches one: the gate of each (as predeploy runs it),
    so a bind that would block stops the deploy while nothing is applied anywhere."""
    for view in views:
        try:
            report = commands.predeploy(view, strict=strict, rehearse=rehearse)
        except RollbackError as exc:
            raise RollbackError(
                f"bind {view.bind_label!r}: {exc.message}; nothing was applied on any bind",
                exit_code=EXIT_COULD_NOT_RUN,
            ) from exc
        if report.could_not_run or report.blocked:
            if not as_json:
                click.echo(f"Bind {view.bind_label!r}:")
                print_report(report)
            why = f"the gate could not run: {report.could_not_run}" if report.could_not_run else "the gate blocked the deploy"
            raise RollbackError(
                f"bind {view.bind_label!r}: {why}; nothing was applied on any bind",
                report.exit_code or 1,
            )


@db_group.command("deploys")
@json_option
@click.option("--repair", is_flag=True, help="Close records left 'running' by a crashed deploy.")
@bind_option
def deploys_command(as_json: bool, repair: bool) -> None:
    """Deploy records, newest first (per bind, with several)."""
    views = bind_views(current_project())
    if as_json:
        emit_json(by_bind(views, [
            [record.as_dict() for record in records]
            for records in each_bind(views, lambda view: commands.deploys(view, repair=repair), heading=False)
        ]))
        return
    each_bind(views, lambda view: _show_deploys(commands.deploys(view, repair=repair)))


def _show_deploys(records: list[DeployRecord]) -> None:
    if not records:
        click.echo("No deploys recorded.")
        return
    echo_lines(table(
        ("id", "status", "started", "migrations", "label", "git sha", "by", "error"),
        (
            (record.id, record.status, format_time(record.started_at), len(record.migrations),
             record.label or "-", record.git_sha[:12] if record.git_sha else "-",
             f"{record.user}@{record.host}", record.error or "")
            for record in records
        ),
    ))


@db_group.command("rollback")
@click.argument("deploy_id", type=int, required=False)
@click.option("--plan", "plan_only", is_flag=True, help="Print the plan; revert nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (for scripts).")
@lock_timeout_option
@allow_data_loss_option
@archive_option
@quiet_option
@bind_option
def rollback_command(
    deploy_id: int | None, plan_only: bool, yes: bool, lock_timeout: float | None,
    allow_data_loss: bool, archive: bool | None, quiet: bool,
) -> None:
    """Undo a deploy (default: the latest): exactly the migrations it applied, and those applied
    later by a plain upgrade that depend on them (marked; confirming or --yes accepts them).

    Asks before taking the migration lock; refuses if the plan changed meanwhile. With several
    binds: the latest deploy round, bind by bind in reverse order (a DEPLOY_ID needs --bind)."""

    def confirm(plan: Plan) -> bool:
        print_plan(plan)
        if not sys.stdin.isatty():
            raise RollbackError("rollback needs confirmation: re-run with --yes")
        return click.confirm("Roll back?", default=False)

    def undo(view: Project, deploy_id: int | None) -> None:
        result = commands.rollback(
            view, deploy_id, plan_only=plan_only, confirm=None if yes else confirm,
            lock_timeout=lock_timeout, announce=announce, progress=progress(quiet),
            allow_data_loss=allow_data_loss, archive=archive,
        )
        if plan_only:
            print_plan(result.plan, result.problems)
            print_risks(result.risks)
            return
        warn_unreviewed(result.risks, not allow_data_loss)
        print_archived(result.archived, bind_flag(view))
        reverted = len(result.run.done) if result.run else 0
        click.echo(f"Rolled back deploy {result.record.id}: reverted {plural(reverted, 'migration')}.")
        later = [step.migration.label for step in result.plan.steps if step.migration.revision in result.plan.notes]
        if later:
            click.echo(
                f"Also reverted, applied after deploy {result.record.id} by a plain upgrade: "
                f"{', '.join(later)}."
            )

    project = current_project()
    views = bind_views(project)
    if len(views) == 1:
        each_bind(views, lambda view: undo(view, deploy_id))
        return
    if deploy_id is not None:
        raise RollbackError(
            f"deploy ids are per bind: say which bind deploy {deploy_id} is on with --bind KEY "
            "(see 'flask db deploys'); nothing was changed",
            exit_code=EXIT_COULD_NOT_RUN,
        )
    chosen = dict((view.bind, record_id) for view, record_id in commands.round_to_undo(views))
    each_bind(
        [view for view in reversed(views) if view.bind in chosen],
        lambda view: undo(view, chosen[view.bind]),
    )
