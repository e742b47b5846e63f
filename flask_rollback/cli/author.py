"""Commands that write migrations: init, adopt, makemigrations, migrate, revision, merge, edit."""

from __future__ import annotations

from pathlib import Path

import click

from .. import commands
from ..errors import RollbackError
from .group import current_project, db_group
from .output import print_adoption, print_new


@db_group.command("init")
def init_command() -> None:
    """Create the migrations folder: a few-line env.py, the template, one folder per app."""
    for path in commands.init(current_project()):
        click.echo(f"Created {path}")


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
    click.echo("flask-rollback - one folder per app, env.py calls into the package")

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
        current_project(), apps, message=message, empty=empty, dry_run=dry_run, check=check_only
    )
    print_new(new, dry_run or check_only, verbose)
    if check_only and new:
        raise click.exceptions.Exit(1)


@db_group.command("migrate")
@click.option("-m", "--message", default=None, help="Migration message.")
@click.option("--app", "apps", multiple=True, help="Only these apps.")
def migrate_command(message: str | None, apps: tuple[str, ...]) -> None:
    """Flask-Migrate's name for makemigrations."""
    print_new(commands.makemigrations(current_project(), apps, message=message), False)


@db_group.command("revision")
@click.option("-m", "--message", default=None)
@click.option("--autogenerate", is_flag=True, help="Same as makemigrations.")
@click.option("--app", default=None, help="App to add the empty migration to.")
def revision_command(message: str | None, autogenerate: bool, app: str | None) -> None:
    """Create a migration (empty unless --autogenerate)."""
    project = current_project()
    if autogenerate:
        print_new(commands.makemigrations(project, (app,) if app else (), message=message), False)
        return
    if app is None:
        labels = project.registry.labels
        if len(labels) != 1:
            raise RollbackError(f"several apps ({', '.join(labels)}): choose one with --app")
        app = labels[0]
    print_new(commands.makemigrations(project, (app,), message=message, empty=True), False)


@db_group.command("merge")
@click.argument("app")
@click.option("-m", "--message", default=None)
def merge_command(app: str, message: str | None) -> None:
    """Merge the heads of APP into one migration."""
    new = commands.merge(current_project(), app, message)
    click.echo(f"Created merge migration {new.path}")


@db_group.command("edit")
@click.argument("revision", default="heads")
def edit_command(revision: str) -> None:
    """Open a migration in $EDITOR."""
    project = current_project()
    rev = project.graph.find(revision).revision if revision != "heads" else revision
    commands.alembic_verb(project, "edit", rev)

