"""Everything one command needs about one Flask app, resolved lazily and once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory
from flask import Flask
from sqlalchemy.engine import URL, Connection

from .apps import AppRegistry, AppSpec, blueprint_specs, project_home, resolve_apps
from .database import connect, display_url, identity, sqlite_identity
from .errors import EXIT_COULD_NOT_RUN, RollbackError
from .graph import MigrationGraph
from .loader import alembic_config, check_layout, load_scripts, refuse_foreign_layout
from .recorder import Recorder
from .settings import Settings

if TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy

#: Key under which the Project travels to ``migrations/env.py`` through Alembic's Config.
PROJECT_ATTRIBUTE = "flask_rollback.project"
#: Key under which makemigrations hands env.py the connection autogenerate compares the models
#: with: a scratch database the migrations built, or the live database (``--database live``).
COMPARISON_ATTRIBUTE = "flask_rollback.comparison"
#: What makemigrations compares the models with: the schema the migration files build, on a
#: scratch database (the default), or the live database, which must then be at its heads.
Comparison = Literal["scratch", "live"]
COMPARISONS: tuple[Comparison, ...] = ("scratch", "live")


class Project:
    """The apps, migration files, graph and database of one Flask app."""

    def __init__(
        self,
        flask_app: Flask,
        db: SQLAlchemy,
        settings: Settings,
        specs: list[AppSpec],
        hooks: dict[str, list[Callable[..., Any]]] | None = None,
    ) -> None:
        self.flask_app = flask_app
        #: Deploy hooks by name (before_deploy, after_deploy, before_rollback).
        self.hooks = hooks or {}
        self.db = db
        self.settings = settings
        self._specs = specs
        self.root = Path(settings.directory)
        self.recorder = Recorder(settings)
        #: ``-x`` arguments for migrations (``context.get_x_argument()``).
        self.x_args: list[str] = []
        #: ``--tag`` for migrations (``context.get_tag_argument()``), as Alembic passes it.
        self.tag: str | None = None

    @property
    def metadata(self) -> sa.MetaData:
        return self.db.metadata

    @cached_property
    def app_url(self) -> URL:
        """The URL the app itself connects with (SQLALCHEMY_DATABASE_URI, as Flask-SQLAlchemy
        resolved it)."""
        with self.flask_app.app_context():
            try:
                return self.db.engine.url
            except (KeyError, RuntimeError) as exc:
                raise RollbackError(
                    f"no database configured ({exc}); set SQLALCHEMY_DATABASE_URI"
                ) from None

    @cached_property
    def url(self) -> URL:
        """The URL ``flask db`` connects with: ROLLBACK_DATABASE_URL when set (a direct
        connection past a pooler), else the app's own."""
        direct: URL | None = self.settings.database_url
        return direct if direct is not None else self.app_url

    @cached_property
    def engine_options(self) -> dict[str, Any]:
        """The app's engine options (Flask-SQLAlchemy's ``engine_options`` updated by
        SQLALCHEMY_ENGINE_OPTIONS), so migrations connect as the app does: connect_args such as
        ``options=-c search_path=tenant``, a ``creator``. Pool options are dropped later; a
        ``creator`` too when ROLLBACK_DATABASE_URL says where to connect."""
        options = dict(getattr(self.db, "_engine_options", {}) or {})
        options.update(self.flask_app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
        if self.settings.database_url is not None:
            options.pop("creator", None)
        return options

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A migration connection to the database (checked once to be the app's database when
        ROLLBACK_DATABASE_URL is set)."""
        self.check_direct_url()
        with connect(self.url, self.engine_options) as connection:
            yield connection

    def check_direct_url(self) -> None:
        """ROLLBACK_DATABASE_URL must reach the very database the app uses: compared by
        identity (PostgreSQL: name, oid and server; SQLite: the file), read through both URLs."""
        if self.settings.database_url is None or self.__dict__.get("_direct_checked"):
            return
        app_options = dict(getattr(self.db, "_engine_options", {}) or {})
        app_options.update(self.flask_app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
        app_url, direct = self.app_url, self.url
        if app_url.get_backend_name() != direct.get_backend_name():
            raise RollbackError(
                f"ROLLBACK_DATABASE_URL is a {direct.get_backend_name()} database but the app "
                f"uses {app_url.get_backend_name()}: it must be a direct URL to the app's own "
                "database; nothing was changed",
                exit_code=EXIT_COULD_NOT_RUN,
            )
        if app_url.get_backend_name() == "sqlite":
            same = sqlite_identity(app_url.database or "") == sqlite_identity(direct.database or "")
        else:
            with connect(app_url, app_options) as app_side:
                app_identity = identity(app_side)
            with connect(direct, self.engine_options) as direct_side:
                same = identity(direct_side) == app_identity
        if not same:
            raise RollbackError(
                f"ROLLBACK_DATABASE_URL ({display_url(direct)}) reaches another database than "
                f"the app's SQLALCHEMY_DATABASE_URI ({display_url(app_url)}): it must be a "
                "direct connection to the same database; nothing was changed",
                exit_code=EXIT_COULD_NOT_RUN,
            )
        self.__dict__["_direct_checked"] = True

    @cached_property
    def registry(self) -> AppRegistry:
        refuse_foreign_layout(self.root)  # before its versions/ folder is taken for an app
        return self.resolve_registry()

    def resolve_registry(self) -> AppRegistry:
        """The apps, whatever the migrations root holds (``adopt`` reads a Flask-Migrate root)."""
        mapped = [m.class_ for m in self.db.Model.registry.mappers]
        specs = blueprint_specs(self.flask_app) + self._specs
        return resolve_apps(
            self.metadata, mapped, specs, self.settings, [project_home(self.flask_app)]
        )

    @cached_property
    def config(self) -> Config:
        return alembic_config(self.root, self.registry, {PROJECT_ATTRIBUTE: self}, self.x_args)

    @cached_property
    def quiet_config(self) -> Config:
        """For commands that write files: Alembic's "Generating ..." lines are ours to print."""
        return alembic_config(
            self.root, self.registry, {PROJECT_ATTRIBUTE: self}, self.x_args, quiet=True
        )

    def authoring_config(self, staging: dict[str, Path], comparison: Connection | None) -> Config:
        """For makemigrations: Alembic writes new files into ``staging`` (a folder per app label,
        extra version locations) and autogenerate compares the models with ``comparison``."""
        return alembic_config(
            self.root,
            self.registry,
            {PROJECT_ATTRIBUTE: self, COMPARISON_ATTRIBUTE: comparison},
            self.x_args,
            quiet=True,
            staging=staging.values(),
        )

    @cached_property
    def script(self) -> ScriptDirectory:
        check_layout(self.root)
        return load_scripts(self.config, self.registry)

    @cached_property
    def graph(self) -> MigrationGraph:
        return MigrationGraph(self.script, self.registry)

    def reload(self) -> None:
        """Forget loaded files after new migrations were written."""
        for name in ("config", "quiet_config", "script", "graph"):
            self.__dict__.pop(name, None)

    def include_name(self, name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
        """Autogenerate ignores flask-rollback's own tables."""
        return not (type_ == "table" and name is not None and self.recorder.is_own_table(name))

    def context_options(self, dialect_name: str) -> dict[str, Any]:
        """Options for ``EnvironmentContext.configure``, shared by every run and by env.py."""
        sqlite = dialect_name == "sqlite"
        batch = self.settings.render_as_batch
        return {
            "target_metadata": self.metadata,
            "version_table": self.settings.version_table,
            "compare_type": self.settings.compare_type,
            "compare_server_default": self.settings.compare_server_default,
            "render_as_batch": sqlite if batch is None else batch,
            "include_name": self.include_name,
            "tag": self.tag,
            # Our SQLite engine really BEGINs, so DDL is transactional there too.
            "transactional_ddl": True if sqlite else None,
        }
