"""Commands that write migrations: init, adopt, makemigrations, migrate, revision, merge,
squashmigrations, edit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .. import commands, compat
from ..errors import EXIT_MODELS_DIFFER
from ..project import Comparison, Project
from .group import (
    announce,
    bind_option,
    bind_views,
    current_project,
    database_option,
    db_group,
    directory_option,
    each_bind,
    x_arg_option,
)
from .output import print_adoption, print_new, shown_path

if TYPE_CHECKING:
    from ..questioner import Questioner

Command = TypeVar("Command", bound=Callable[..., Any])


@db_group.command("init")
@directory_option
@click.option("--multidb", is_flag=True, help="Refused: only the default bind is migrated.")
@click.option("-t", "--template", default=None, help="Refused unless 'flask': there is one layout.")
@click.option("--package", is_flag=True, help="Write __init__.py in the root and each app folder.")
def init_command(multidb: bool, template: str | None, package: bool) -> None:
    """Create the migrations folder: a few-line env.py, the template, one folder per app."""
    for path in compat.create_layout(current_project(), multidb, template, package):
        click.echo(f"Created {shown_path(path)}")


@db_group.command("adopt")
@click.option("--app", default=None, help="App that receives the history (default: ROLLBACK_DEFAULT_APP, 'main').")
@click.option("--dry-run", is_flag=True, help="Print what would be done; write nothing.")
@click.option(
    "--from", "source", default=None, type=click.Path(path_type=Path),
    help="The Flask-Migrate folder, or alembic.ini, to convert (default: the migrations root).",
)
def adopt_command(app: str | None, dry_run: bool, source: Path | None) -> None:
    """Convert a Flask-Migrate (or Alembic) migrations folder, keeping every revision id."""
    print_adoption(commands.adopt(current_project(), app, source=source, dry_run=dry_run))


@db_group.command("list-templates")
def list_templates_command() -> None:
    """List migration folder templates (Flask-Migrate compatibility)."""
    for name, synopsis in compat.TEMPLATES.items():
        click.echo(f"{name} - {synopsis}")

@db_group.command("makemigrations")
@click.argument("apps", nargs=-1)
@click.option("-m", "--message", "-n", "--name", "message", default=None, help="Name of the new migrations (one per changed app).")
@click.option("--empty", is_flag=True, help="Create an empty migration for each APP.")
@click.option("--dry-run", is_flag=True, help="Show what would be written; write nothing.")
@click.option(
    "--check", "check_only", is_flag=True,
    help=f"Write nothing; exit {EXIT_MODELS_DIFFER} if a migration is missing.",
)
@database_option
@click.option("-v", "--verbose", count=True, help="Also print each file exactly as it is (or would be) written.")
@click.option(
    "--no-input", "--noinput", "no_input", is_flag=True,
    help="Ask nothing (also without a terminal): no rename; a NOT NULL column without default is an error.",
)
@bind_option
def makemigrations_command(
    apps: tuple[str, ...], message: str | None, empty: bool, dry_run: bool, check_only: bool,
    database: Comparison, verbose: int, no_input: bool,
) -> None:
    """Autogenerate one migration per changed app (all apps, or APPS); on a terminal, asks
    about renames and values for existing rows, as Django does."""
    project = current_project()

    def one(view: Project) -> bool:
        shown: list[commands.NewMigration] = []

        def show(written: list[commands.NewMigration]) -> None:  # before the snapshot's line
            print_new(written, False, verbose)
            shown.extend(written)

        new = commands.makemigrations(
            view, [a for a in apps if a in view.registry] or apps, message=message, empty=empty,
            dry_run=dry_run, check=check_only, database=database,
            questioner=_questioner(no_input), announce=announce, on_written=show,
        )
        if not shown:
            print_new(new, dry_run or check_only, verbose)
        return bool(new)

    written = each_bind(bind_views(project, apps), one)
    if check_only and any(written):
        raise click.exceptions.Exit(EXIT_MODELS_DIFFER)


@db_group.command("snapshot")
@click.option(
    "--incremental", is_flag=True,
    help="Start from the previous snapshot when it is current for its heads; run only newer migrations.",
)
@bind_option
def snapshot_command(incremental: bool) -> None:
    """Make the schema snapshot an empty database is built from: every migration replayed on a
    scratch database, dumped into migrations/schema-snapshots/ (commit it with the migrations)."""
    def one(view: Project) -> None:
        made = commands.snapshot(view, incremental=incremental)
        if made.changed:
            click.echo(f"Wrote the schema snapshot {shown_path(made.path)} ({made.how}).")
        else:
            click.echo(f"The schema snapshot {shown_path(made.path)} is up to date ({made.how}).")

    each_bind(bind_views(current_project()), one)


def new_migration_options(command: Command) -> Command:
    """Flask-Migrate's revision/migrate options; Alembic's branch options are refused in
    compat.new_migrations with what to use instead."""
    for option in reversed([
        directory_option,
        click.option("-m", "--message", default=None, help="Migration message."),
        click.option("--sql", is_flag=True, help="Refused: creating a migration runs no SQL."),
        click.option("--head", default="head", help="APP@head: the app to add the migration to."),
        click.option("--splice", is_flag=True, help="Refused: one branch per app."),
        click.option("--branch-label", default=None, help="Refused: every app is its own branch."),
        click.option("--version-path", default=None, help="Refused: each app has its folder."),
        click.option("--rev-id", default=None, help="Revision id to use instead of a generated one."),
    ]):
        command = option(command)
    return command


@db_group.command("migrate")
@new_migration_options
@click.option("--app", "apps", multiple=True, help="Only these apps.")
@x_arg_option
@bind_option
def migrate_command(apps: tuple[str, ...], **options: Any) -> None:
    """Flask-Migrate's name for makemigrations."""
    project = current_project()
    each_bind(bind_views(project, apps), lambda view: print_new(compat.new_migrations(
        view, apps=[a for a in apps if a in view.registry] or apps, autogenerate=True, **options
    ), False))


@db_group.command("revision")
@new_migration_options
@click.option("--autogenerate", is_flag=True, help="Same as makemigrations.")
@click.option("--app", default=None, help="App to add the empty migration to.")
def revision_command(app: str | None, autogenerate: bool, **options: Any) -> None:
    """Create a migration (empty unless --autogenerate)."""
    project = current_project()
    apps = [app] if app else []
    each_bind(bind_views(project, apps), lambda view: print_new(compat.new_migrations(
        view, apps=[a for a in apps if a in view.registry] or apps, autogenerate=autogenerate,
        **options
    ), False))


@db_group.command("merge")
@directory_option
@click.argument("revisions", nargs=-1)
@click.option("-m", "--message", default=None, help="Name of the merge migration.")
@click.option("--branch-label", default=None, help="Refused: every app is its own branch.")
@click.option("--rev-id", default=None, help="Revision id to use instead of a generated one.")
def merge_command(
    revisions: tuple[str, ...], message: str | None, branch_label: str | None, rev_id: str | None
) -> None:
    """Merge the heads of an app into one migration: APP, or nothing/heads (the one app with
    several heads), or exactly the app's head revisions."""
    new = compat.merge_heads(current_project(), revisions, message, branch_label, rev_id)
    click.echo(f"Created merge migration {shown_path(new.path)}")


@db_group.command("squashmigrations")
@directory_option
@click.argument("app")
@click.argument("start", metavar="FROM")
@click.argument("end", metavar="TO")
@click.option(
    "--delete-originals", is_flag=True,
    help="Delete the original files of the squash of FROM..TO, once the database applied them all.",
)
@bind_option
def squashmigrations_command(app: str, start: str, end: str, delete_originals: bool) -> None:
    """Write one migration in APP's folder replacing FROM..TO (a linear run of APP's own
    migrations), with replaces = [...]; databases that applied the originals count it applied."""
    view = bind_views(current_project(), [app])[0]

    def written(squash: commands.Squash) -> None:
        click.echo(
            f"Created migration {shown_path(squash.path)} (revision {squash.revision}) replacing "
            f"{', '.join(squash.replaces)}"
        )
        click.echo(
            "Keep the originals until every database has applied them: 'flask db check' says "
            "when they can be deleted."
        )

    squash = commands.squashmigrations(
        view, app, start, end, delete_originals=delete_originals, announce=announce, on_written=written,
    )
    if delete_originals:
        click.echo(f"Deleted the originals of squash {shown_path(squash.path)}:")
        for path in squash.deleted:
            click.echo(f"  {shown_path(path)}")


@db_group.command("edit")
@directory_option
@click.argument("revision", nargs=-1)
def edit_command(revision: tuple[str, ...]) -> None:
    """Open a migration in $EDITOR: blog.0002, blog 0002, a revision id, APP (its head), heads or current."""
    project = current_project()
    for migration in compat.migrations_named(project, " ".join(revision) or "heads"):
        commands.alembic_verb(project, "edit", migration.revision)


def _questioner(no_input: bool) -> Questioner:
    """The questioner loads autogenerate's renderers: only when migrations are written."""
    from ..questioner import questioner_for

    return questioner_for(no_input)
