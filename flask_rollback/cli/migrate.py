"""Commands that run migrations: upgrade, downgrade, stamp, unlock, sqlmigrate."""

from __future__ import annotations

import sys

import click

from .. import commands, compat
from ..errors import EXIT_COULD_NOT_RUN, RollbackError
from ..plan import RELATIVE_RE
from ..project import Project
from .group import (
    TARGET_SETTINGS,
    allow_data_loss_option,
    announce,
    archive_option,
    bind_option,
    bind_views,
    current_project,
    bind_flag,
    each_bind,
    db_group,
    directory_option,
    lock_timeout_option,
    quiet_option,
    tag_option,
    target_argument,
    x_arg_option,
)
from .output import finish, progress


@db_group.command("upgrade", context_settings=TARGET_SETTINGS)
@target_argument
@click.option("--plan", "plan_only", is_flag=True, help="Print the plan; apply nothing.")
@click.option("--sql", is_flag=True, help="Print the SQL instead of running it.")
@tag_option
@directory_option
@x_arg_option
@click.option(
    "--fake-initial", is_flag=True,
    help="Record an app's initial migration as applied, without running it, when its tables exist.",
)
@click.option(
    "--replay", is_flag=True,
    help="Run every migration on an empty database instead of loading the schema snapshot.",
)
@lock_timeout_option
@allow_data_loss_option
@archive_option
@quiet_option
@bind_option
def upgrade_command(
    target: tuple[str, ...], plan_only: bool, sql: bool, fake_initial: bool, replay: bool,
    lock_timeout: float | None, allow_data_loss: bool, archive: bool | None, quiet: bool,
) -> None:
    """Apply migrations: every app to its head, or TARGET (APP, blog.0002, APP@+N, REV, heads);
    with --sql also FROM:TO (the SQL from FROM, reading no database)."""
    project = current_project()
    words, start = compat.sql_range(project, " ".join(target), sql)
    each_bind(bind_views(project, words[:1]), lambda view: finish(
        commands.upgrade(
            view, words, plan_only=plan_only,
            sql=sql, progress=progress(quiet), lock_timeout=lock_timeout, announce=announce,
            allow_data_loss=allow_data_loss, archive=archive, fake_initial=fake_initial, start=start,
            replay=replay,
        ),
        bind_flag(view),
    ), sql=sql)


@db_group.command("downgrade", context_settings=TARGET_SETTINGS)
@target_argument
@click.option("--plan", "plan_only", is_flag=True, help="Print the plan; revert nothing.")
@click.option("--cascade", is_flag=True, help="Also revert other apps' migrations that depend on TARGET.")
@click.option("--sql", is_flag=True, help="Print the SQL instead of running it.")
@tag_option
@directory_option
@x_arg_option
@lock_timeout_option
@allow_data_loss_option
@archive_option
@quiet_option
@bind_option
def downgrade_command(
    target: tuple[str, ...], plan_only: bool, cascade: bool, sql: bool, lock_timeout: float | None,
    allow_data_loss: bool, archive: bool | None, quiet: bool,
) -> None:
    """Revert migrations: the most recent one, or down to TARGET (APP zero, blog.0002, APP@-N, REV);
    with --sql also FROM:TO (the SQL from FROM, reading no database)."""
    project = current_project()
    words, start = compat.sql_range(project, " ".join(target), sql)
    views = bind_views(project, words[:1])
    if len(views) > 1 and (not words or RELATIVE_RE.match(words[0])):
        raise RollbackError(
            f"downgrade {' '.join(words) or '-1'} is ambiguous with several binds (each has its "
            "own most recent migration): name an app (APP@-1) or pick one with --bind KEY; "
            "nothing was changed",
            exit_code=EXIT_COULD_NOT_RUN,
        )
    each_bind(views, lambda view: finish(
        commands.downgrade(
            view, words, cascade=cascade,
            plan_only=plan_only, sql=sql, progress=progress(quiet), lock_timeout=lock_timeout, announce=announce,
            allow_data_loss=allow_data_loss, archive=archive, start=start,
        ),
        bind_flag(view),
    ), sql=sql)


@db_group.command("stamp", context_settings=TARGET_SETTINGS)
@target_argument
@click.option("--purge", is_flag=True, help="Ignore the version table's current content.")
@click.option("--sql", is_flag=True, help="Refused: a stamp also writes the applied log.")
@tag_option
@directory_option
@lock_timeout_option
@bind_option
def stamp_command(target: tuple[str, ...], purge: bool, sql: bool, lock_timeout: float | None) -> None:
    """Record TARGET as applied without running migrations."""
    compat.refuse_stamp_sql(sql)
    project = current_project()
    words = compat.alembic_target(project, " ".join(target))
    each_bind(bind_views(project, words[:1]), lambda view: finish(
        commands.stamp(view, words, purge=purge, lock_timeout=lock_timeout, announce=announce)
    ))


@db_group.command("resolve")
@click.argument("app")
@click.argument("revision")
@click.option("--applied", "how", flag_value="applied", help="The migration's changes are all in place.")
@click.option("--reverted", "how", flag_value="reverted", help="None of the migration's changes are.")
@click.option("--undo", "how", flag_value="undo", help="Reverse its committed statements (each needs a safe inverse).")
@lock_timeout_option
def resolve_command(app: str, revision: str, how: str | None, lock_timeout: float | None) -> None:
    """Close APP's partly applied migration REVISION: undo it, or record the side you fixed it to."""
    if how is None:
        raise click.UsageError("say what to do: --undo, or which side the schema now matches: --applied or --reverted")
    view = bind_views(current_project(), [app])[0]
    click.echo(commands.resolve(view, app, revision, how, lock_timeout=lock_timeout, announce=announce))


@db_group.command("unlock")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (for scripts).")
@bind_option
def unlock_command(yes: bool) -> None:
    """Clear the migration lock a dead or stuck run left, after showing who holds it."""

    def confirm(holder: str) -> bool:
        click.echo(f"The migration lock is held by {holder}.")
        if not sys.stdin.isatty():
            raise RollbackError("unlock needs confirmation: re-run with --yes")
        return click.confirm("Clear it (a run still going would be stopped)?", default=False)

    project = current_project()
    each_bind(
        bind_views(project),
        lambda view: click.echo(commands.unlock(view, confirm=None if yes else confirm)),
    )


@db_group.command("sqlmigrate")
@click.argument("app")
@click.argument("revision", required=False)
@click.option("--backwards", is_flag=True, help="The SQL of the downgrade.")
def sqlmigrate_command(app: str, revision: str | None, backwards: bool) -> None:
    """Print the SQL of one migration: APP NAME (blog 0002), blog.0002_tags, blog@0002, or an id."""
    project = current_project()
    view: Project = bind_views(project, [app])[0]
    click.echo(commands.sqlmigrate(view, app, revision, backwards), nl=False)
