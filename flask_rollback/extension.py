"""The Flask extension: ``Rollback(app, db)`` or ``rollback.init_app(app, db)`` in a factory."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

import click
from flask import Flask
from flask.cli import FlaskGroup

from .apps import AppSpec
from .errors import RollbackError
from .project import Project
from .settings import Settings, resolve_settings

Hook = Callable[..., Any]
HOOK_NAMES = ("before_deploy", "after_deploy", "before_rollback")

if TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy


@dataclass
class RollbackState:
    """What ``app.extensions["rollback"]`` holds for one Flask app."""

    extension: Rollback
    db: SQLAlchemy
    options: dict[str, Any] = field(default_factory=dict)

    def settings(self, app: Flask, directory: str | None = None) -> Settings:
        layers = [self.extension.options, self.options]
        settings = resolve_settings(app.config, *layers)
        if directory:
            settings = Settings(**{**settings.__dict__, "directory": directory})
        return settings

    def project(self, app: Flask, directory: str | None = None) -> Project:
        """Resolved per command, so config and blueprints added after init_app count."""
        return Project(
            app, self.db, self.settings(app, directory), list(self.extension.specs),
            self.extension.hooks,
        )


class Rollback:
    """Django-style per-app migrations with safe rollbacks, on Alembic."""

    def __init__(self, app: Flask | None = None, db: SQLAlchemy | None = None, **options: Any) -> None:
        self.db = db
        self.options = options
        self.specs: list[AppSpec] = []
        self.hooks: dict[str, list[Hook]] = {name: [] for name in HOOK_NAMES}
        if app is not None:
            self.init_app(app, db)

    def init_app(self, app: Flask, db: SQLAlchemy | None = None, **options: Any) -> None:
        db = db or self.db
        if db is None:
            raise RollbackError("Rollback needs the Flask-SQLAlchemy db: init_app(app, db)")
        if "migrate" in app.extensions:
            warnings.warn(
                "Flask-Migrate's Migrate(app, db) is also set up on this app: remove it, "
                "flask-rollback replaces it ('flask db adopt' converts its migrations folder)",
                stacklevel=2,
            )
        # Options are checked when a flask db command resolves its settings: a typo is one
        # Error line there and never stops the app itself (its web server) from starting.
        app.extensions["rollback"] = RollbackState(self, db, options)
        from .cli import db_group

        name = app.config.get(
            "ROLLBACK_COMMAND", options.get("command", self.options.get("command", Settings.command))
        )
        app.cli.add_command(db_group, name)
        report_shadowing_command(name, db_group)

    def before_deploy(self, hook: Hook) -> Hook:
        """Decorator: ``hook(plan)`` runs before a deploy applies anything; raising blocks it."""
        self.hooks["before_deploy"].append(hook)
        return hook

    def after_deploy(self, hook: Hook) -> Hook:
        """Decorator: ``hook(plan)`` runs after a deploy applied its migrations."""
        self.hooks["after_deploy"].append(hook)
        return hook

    def before_rollback(self, hook: Hook) -> Hook:
        """Decorator: ``hook(plan)`` runs before a rollback reverts anything; raising blocks it."""
        self.hooks["before_rollback"].append(hook)
        return hook

    def register_app(
        self, label: str, import_name: str | None = None, directory: str | None = None
    ) -> None:
        """Declare an app that is not a blueprint: models under ``import_name`` belong to it.

        The label is checked when a ``flask db`` command resolves the apps, so a bad label is
        one ``Error:`` line there rather than a traceback while the app factory runs.
        """
        if any(spec.label == label for spec in self.specs):
            raise RollbackError(f"app {label!r} is registered twice")
        self.specs.append(AppSpec(label, import_name, directory, source="registered"))


def report_shadowing_command(name: str, group: click.Command) -> None:
    """Say so when another distribution's ``flask.commands`` entry point owns ``flask NAME``.

    Flask adds those plugin commands (Flask-Migrate 2.x declared ``db = flask_migrate.cli:db``)
    before the app's own, so ``flask db`` would silently run the other package. Only under the
    Flask CLI: one line on stderr; when the shadowing command is the one being run (it loaded
    the app), the line is an error and the command stops before the other package runs.
    """
    ctx = click.get_current_context(silent=True)
    if ctx is None or not isinstance(ctx.find_root().command, FlaskGroup):
        return
    for entry_point in entry_points(group="flask.commands", name=name):
        if entry_point.module.partition(".")[0] == __name__.partition(".")[0]:
            continue
        running = _running_top_command(ctx)
        stop = running is not None and running.info_name == name and running.command is not group
        click.echo(
            f"{'Error' if stop else 'Warning'}: {_shadowing_message(name, entry_point)}", err=True
        )
        if stop:
            ctx.exit(2)


def _running_top_command(ctx: click.Context) -> click.Context | None:
    """The context of the command typed after ``flask`` (None for ``flask --help``)."""
    while ctx.parent is not None and ctx.parent.parent is not None:
        ctx = ctx.parent
    return ctx if ctx.parent is not None else None


def _shadowing_message(name: str, entry_point: EntryPoint) -> str:
    dist = entry_point.dist.name if entry_point.dist is not None else entry_point.module
    other_name = "rollback" if name != "rollback" else "migrations"
    return (
        f"'flask {name}' runs {dist}'s command ({entry_point.value}), not flask-rollback's: "
        f"Flask loads installed packages' commands before the app's; uninstall it "
        f"(pip uninstall {dist}) or set ROLLBACK_COMMAND = \"{other_name}\" and use "
        f"'flask {other_name} ...'"
    )
