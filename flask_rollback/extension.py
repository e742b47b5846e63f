"""The Flask extension: ``Rollback(app, db)`` or ``rollback.init_app(app, db)`` in a factory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask

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
        resolve_settings({}, options)
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
        settings = resolve_settings({}, self.options, options)
        app.extensions["rollback"] = RollbackState(self, db, options)
        from .cli import db_group

        name = app.config.get("ROLLBACK_COMMAND", settings.command)
        app.cli.add_command(db_group, name)

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
