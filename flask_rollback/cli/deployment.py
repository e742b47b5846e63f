"""Safe-deploy commands: predeploy, deploy, deploys, rollback."""

from __future__ import annotations

import sys

import click

from .. import commands
from ..errors import EXIT_COULD_NOT_RUN, RollbackError
from ..plan import Plan
from .group import (
    allow_data_loss_option,
    announce,
    archive_option,
    current_project,
    db_group,
    emit_json,
    json_option,
    lock_timeout_option,
)
from .output import (
    print_archived,
    print_plan,
    print_report,
    print_risks,
    progress,
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
def predeploy_command(as_json: bool, strict: bool, no_rehearsal: bool) -> None:
    """Prove pending migrations can be deployed and rolled back; apply nothing.

    Exit 0 ready, 1 blocked, 2 could not run.
    """
    try:
        report = commands.predeploy(current_project(), strict=strict, rehearse=not no_rehearsal)
    except RollbackError as exc:
        raise RollbackError(exc.message, exit_code=EXIT_COULD_NOT_RUN) from exc
    if as_json:
        emit_json(report.as_dict())
    else:
        print_report(report)
    if report.could_not_run:
        raise RollbackError(f"the gate could not run: {report.could_not_run}", report.exit_code)
    if report.exit_code:
        raise click.exceptions.Exit(report.exit_code)


@db_group.command("deploy")
@json_option
@click.option("--strict", is_flag=True, help="Gate warnings block too.")
@click.option("--label", default=None, help="A name for this deploy (e.g. a release tag).")
@click.option("--git-sha", default=None, help="The commit being deployed.")
@lock_timeout_option
@allow_data_loss_option
@archive_option
@no_rehearsal_option
def deploy_command(
    as_json: bool, strict: bool, label: str | None, git_sha: str | None, lock_timeout: float | None,
    allow_data_loss: bool, archive: bool | None, no_rehearsal: bool,
) -> None:
    """Lock, run the gate, apply every pending migration and record the deploy."""
    result = commands.deploy(
        current_project(), strict=strict, label=label, git_sha=git_sha, lock_timeout=lock_timeout,
        announce=announce, progress=progress(), allow_data_loss=allow_data_loss, archive=archive,
        rehearse=not no_rehearsal,
    )
    if as_json:
        emit_json({"report": result.report.as_dict(),
                    "deploy": result.record.as_dict() if result.record else None,
                    "archived": [spec.name for spec in result.archived]})
    else:
        print_report(result.report)
        print_archived(result.archived)
        if result.record:
            click.echo(
                f"Deploy {result.record.id} applied {len(result.record.migrations)} migration(s); "
                f"undo it with 'flask db rollback {result.record.id}'."
            )
    if result.report.could_not_run:
        raise RollbackError(
            f"the gate could not run: {result.report.could_not_run}; nothing was applied",
            result.report.exit_code,
        )
    if result.report.blocked:
        if not as_json:
            click.echo("Error: the gate blocked the deploy; nothing was applied.", err=True)
        raise click.exceptions.Exit(1)


@db_group.command("deploys")
@json_option
@click.option("--repair", is_flag=True, help="Close records left 'running' by a crashed deploy.")
def deploys_command(as_json: bool, repair: bool) -> None:
    """Deploy records, newest first."""
    records = commands.deploys(current_project(), repair=repair)
    if as_json:
        emit_json([record.as_dict() for record in records])
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
@lock_timeout_option
@allow_data_loss_option
@archive_option
def rollback_command(
    deploy_id: int | None, plan_only: bool, yes: bool, lock_timeout: float | None,
    allow_data_loss: bool, archive: bool | None,
) -> None:
    """Undo a deploy (default: the latest): exactly the migrations it applied, and those applied
    later by a plain upgrade that depend on them (marked; confirming or --yes accepts them).

    Asks before taking the migration lock; refuses if the plan changed meanwhile."""

    def confirm(plan: Plan) -> bool:
        print_plan(plan)
        if not sys.stdin.isatty():
            raise RollbackError("rollback needs confirmation: re-run with --yes")
        return click.confirm("Roll back?", default=False)

    result = commands.rollback(
        current_project(), deploy_id, plan_only=plan_only, confirm=None if yes else confirm,
        lock_timeout=lock_timeout, announce=announce, progress=progress(),
        allow_data_loss=allow_data_loss, archive=archive,
    )
    if plan_only:
        print_plan(result.plan, result.problems)
        print_risks(result.risks)
        return
    warn_unreviewed(result.risks, not allow_data_loss)
    print_archived(result.archived)
    reverted = len(result.run.done) if result.run else 0
    click.echo(f"Rolled back deploy {result.record.id}: reverted {reverted} migration(s).")
    later = [step.migration.label for step in result.plan.steps if step.migration.revision in result.plan.notes]
    if later:
        click.echo(
            f"Also reverted, applied after deploy {result.record.id} by a plain upgrade: "
            f"{', '.join(later)}."
        )

