"""Everything one command needs about one Flask app, resolved lazily and once."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from flask import Flask
from sqlalchemy.engine import URL, Connection

from .apps import (
    DEFAULT_BIND, AppRegistry, AppSpec, bind_name, bind_order, blueprint_specs, project_home,
    resolve_apps,
)
from .database import connect, display_url, identity, sqlite_identity
from .errors import EXIT_COULD_NOT_RUN, RollbackError
from .graph import MigrationGraph, gc_paused
from .index import Declared
from .loader import alembic_config, check_layout, refuse_foreign_layout, scan_squashed
from .recorder import Recorder
from .settings import Settings

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
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
    """The apps, migration files, graph and database of one Flask app.

    With Flask-SQLAlchemy binds, each bind is a database of its own: ``for_bind(key)`` gives
    the view of one bind (its apps, models, migrations and database), which every command
    that reads or changes a database works on. The whole project of several binds refuses to
    connect (which database would it be?)."""

    def __init__(
        self,
        flask_app: Flask,
        db: SQLAlchemy,
        settings: Settings,
        specs: list[AppSpec],
        hooks: dict[str, list[Callable[..., Any]]] | None = None,
    ) -> None:
        #: The bind this project is the view of; meaningful when ``is_view``.
        self.bind: str | None = None
        #: A view of one bind (``for_bind``), not the whole project.
        self.is_view = False
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
        #: Squashes set aside for their originals: the database applied only part of their
        #: range (squash.py).
        self.unsquashed: frozenset[str] = frozenset()

    # -- binds ------------------------------------------------------------------------------

    @property
    def bind_keys(self) -> list[str | None]:
        """The binds the app configures: None (SQLALCHEMY_DATABASE_URI) and SQLALCHEMY_BINDS."""
        keys = list((self.flask_app.config.get("SQLALCHEMY_BINDS") or {}).keys())
        return bind_order([None, *keys])

    @property
    def binds(self) -> list[str | None]:
        """The binds this project works on, in visiting order: those holding apps (and the
        default bind); a view: its own."""
        return [self.bind] if self.is_view else self.all_apps.binds

    @property
    def several_binds(self) -> bool:
        """Apps on more than one bind. Without SQLALCHEMY_BINDS that is known without resolving
        the apps, which a Flask-Migrate folder (before ``adopt``) refuses."""
        return len(self.bind_keys) > 1 and len(self.all_apps.binds) > 1

    @property
    def bind_label(self) -> str:
        """``default`` or the bind key, as output and ``--bind`` name it."""
        return bind_name(self.bind)

    def bind_key(self, name: str | None) -> str | None:
        """The bind key ``--bind NAME`` means (``default``: the default bind); an unknown one is
        an error listing the configured binds."""
        if name is None or name == DEFAULT_BIND:
            return None
        if name in self.bind_keys:
            return name
        known = ", ".join(bind_name(key) for key in self.bind_keys)
        raise RollbackError(
            f"unknown bind {name!r}: binds are {known} (SQLALCHEMY_BINDS keys; 'default' is "
            "SQLALCHEMY_DATABASE_URI); nothing was changed",
            exit_code=EXIT_COULD_NOT_RUN,
        )

    def for_bind(self, key: str | None) -> Project:
        """The view of one bind: the same settings and hooks, that bind's apps, models,
        migrations and database (its own version table, log, lock and deploy records)."""
        if self.is_view and key == self.bind:
            return self
        if key is not None and key not in self.bind_keys:
            self.bind_key(key)  # raises, naming the binds
        view = Project(self.flask_app, self.db, self.settings, self._specs, self.hooks)
        view.bind, view.is_view = key, True
        view.x_args, view.tag = self.x_args, self.tag
        view.__dict__["all_apps"] = self.all_apps
        view.__dict__["_whole"] = self
        return view

    def of_bind(self, key: str | None) -> Project:
        """The project that works on bind ``key``: this one itself when it has a single bind."""
        return self.for_bind(key) if self.several_binds else self

    def views(self, names: Sequence[str] | None = None) -> list[Project]:
        """The projects a command visits: each bind named by ``names`` (``--bind``), else every
        bind holding apps. A project of one bind visits itself (nothing changes for it)."""
        if names:
            keys = bind_order(self.bind_key(name) for name in names)
            return [self.for_bind(key) for key in keys]
        if self.is_view or not self.several_binds:
            return [self]
        return [self.for_bind(key) for key in self.binds]

    def _one_database(self, what: str) -> None:
        """The whole project of several binds has no one database: say how to pick one."""
        if not self.is_view and self.several_binds:
            names = ", ".join(bind_name(key) for key in self.binds)
            raise RollbackError(
                f"{what}: this project has several binds ({names}); pick one: --bind KEY on "
                "the command line, get_project(app, bind=KEY) or project.for_bind(KEY) with the "
                "functions of flask_rollback.commands",
                exit_code=EXIT_COULD_NOT_RUN,
            )

    # -- the database -----------------------------------------------------------------------

    @property
    def metadata(self) -> sa.MetaData:
        """The models of this bind (Flask-SQLAlchemy keeps one MetaData per bind)."""
        if not self.is_view or self.bind is None:
            return self.db.metadata
        found = self.db.metadatas.get(self.bind)
        return found if found is not None else sa.MetaData(info={"bind_key": self.bind})

    @cached_property
    def app_url(self) -> URL:
        """The URL the app itself connects with (SQLALCHEMY_DATABASE_URI, or the bind's entry in
        SQLALCHEMY_BINDS, as Flask-SQLAlchemy resolved it)."""
        self._one_database("cannot choose a database")
        with self.flask_app.app_context():
            try:
                return self.db.engines[self.bind].url
            except (KeyError, RuntimeError) as exc:
                setting = (
                    "SQLALCHEMY_DATABASE_URI" if self.bind is None
                    else f"SQLALCHEMY_BINDS[{self.bind!r}]"
                )
                raise RollbackError(f"no database configured ({exc}); set {setting}") from None

    @cached_property
    def url(self) -> URL:
        """The URL ``flask db`` connects with: ROLLBACK_DATABASE_URL when set (a direct
        connection past a pooler, for the default bind), else the app's own."""
        direct: URL | None = self.settings.database_url if self.bind is None else None
        return direct if direct is not None else self.app_url

    @cached_property
    def engine_options(self) -> dict[str, Any]:
        """The app's engine options (Flask-SQLAlchemy's ``engine_options`` updated by
        SQLALCHEMY_ENGINE_OPTIONS), so migrations connect as the app does: connect_args such as
        ``options=-c search_path=tenant``, a ``creator``. Pool options are dropped later; a
        ``creator`` too when ROLLBACK_DATABASE_URL says where to connect."""
        options = dict(getattr(self.db, "_engine_options", {}) or {})
        if self.bind is not None:  # as Flask-SQLAlchemy builds a bind's engine
            entry = (self.flask_app.config.get("SQLALCHEMY_BINDS") or {}).get(self.bind)
            if isinstance(entry, dict):
                options.update({k: v for k, v in entry.items() if k != "url"})
            return options
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
        self._one_database("cannot choose a database")
        if (
            self.bind is not None or self.settings.database_url is None
            or self.__dict__.get("_direct_checked")
        ):
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
    def all_apps(self) -> AppRegistry:
        """Every app of every bind."""
        refuse_foreign_layout(self.root)  # before its versions/ folder is taken for an app
        return self.resolve_registry()

    @cached_property
    def registry(self) -> AppRegistry:
        """The apps this project works on: every app, or a view's bind's apps."""
        return self.all_apps.for_bind(self.bind) if self.is_view else self.all_apps

    def resolve_registry(self) -> AppRegistry:
        """The apps, whatever the migrations root holds (``adopt`` reads a Flask-Migrate root)."""
        mapped = [m.class_ for m in self.db.Model.registry.mappers]
        specs = blueprint_specs(self.flask_app) + self._specs
        metadatas = [self.db.metadatas[key] for key in bind_order(self.db.metadatas)]
        return resolve_apps(
            metadatas, mapped, specs, self.settings, [project_home(self.flask_app)],
            self.bind_keys,
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
    def _scanned(self) -> tuple[dict[str, Declared], dict[str, Declared]]:
        check_layout(self.root)
        try:
            return scan_squashed(self.registry, self.unsquashed)
        except RollbackError:
            whole = self.__dict__.get("_whole")
            if whole is not None:
                whole.graph  # noqa: B018 - a dependency on another bind: say that instead
            raise

    @property
    def declared(self) -> dict[str, Declared]:
        """Every migration file's header, from the revision index (nothing imported); the
        originals a squash replaces are left out (squash.py)."""
        return self._scanned[0]

    @property
    def hidden_migrations(self) -> dict[str, Declared]:
        """Files the graph leaves out: originals still beside the squash that replaces them, and
        a squash set aside for its originals (squash.py)."""
        return self._scanned[1]

    def unsquash(self, squashes: set[str]) -> None:
        """Read the migrations without these squashes, from their originals: the database
        applied only part of their range (squash.py)."""
        self.unsquashed = self.unsquashed | squashes
        self.reload()

    @cached_property
    def script(self) -> ScriptDirectory:
        """Alembic's view of the migrations, for running steps; a module is imported when a step
        that uses it is made."""
        from .scripts import load_scripts

        return load_scripts(self.config, self.declared)

    @cached_property
    def graph(self) -> MigrationGraph:
        with gc_paused():
            graph = MigrationGraph(self.declared, self.registry, lambda: self.script)
        if not self.is_view and self.several_binds:
            _refuse_cross_bind_dependencies(graph)
        return graph

    def reload(self) -> None:
        """Forget loaded files after new migrations were written."""
        for name in ("config", "quiet_config", "_scanned", "script", "graph"):
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


def _refuse_cross_bind_dependencies(graph: MigrationGraph) -> None:
    """A migration standing on another bind's migration could never be ordered: each bind's
    database has its own version table."""
    for migration in graph.migrations.values():
        bind = graph.registry.get(migration.app).bind
        for revision in [*migration.parents, *migration.dependencies]:
            other = graph.migrations.get(revision)
            if other is not None and graph.registry.get(other.app).bind != bind:
                raise RollbackError(
                    f"migration {migration.label} (bind {bind_name(bind)!r}) depends on "
                    f"{other.label} of bind {bind_name(graph.registry.get(other.app).bind)!r}: "
                    "binds are separate databases, migrated separately; remove that dependency "
                    "(depends_on / down_revision)"
                )
