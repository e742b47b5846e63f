"""The ``migrator``: moves a test database between migration states and reads it at each one,
the way django-test-migrations' Migrator does for Django.

Every move goes through flask-rollback's own planner, executor and data-loss guard (the
library's ``upgrade``/``downgrade``), so a test sees what ``flask db`` would do. Table handles
are reflected from the database as it stands, never taken from the models: at an old state
they have the columns of that state.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence, Set as AbstractSet
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from flask import Flask
from sqlalchemy.engine import Connection, Engine

from ..commands import downgrade, get_project, upgrade
from ..commands.context import read_state
from ..database import migration_engine
from ..errors import DataLossError, RollbackError
from ..graph import Migration
from ..project import Project

#: One target: ``"blog.0002"``, ``"blog 0002"``, ``"blog zero"``, ``"blog"`` (its head), a
#: revision id, or ``("blog", "0002")``.
Target = str | Sequence[str]


class Migrator:
    """One app's test database, moved between migration states.

    With Flask-SQLAlchemy binds, each app's migrations run on its own bind's database; ``table``
    finds a table on whichever bind holds it."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.project: Project = get_project(app)
        self._engines: dict[str | None, Engine] = {}

    # -- moving -----------------------------------------------------------------------------

    def apply(self, *target: Any, allow_data_loss: bool = False, archive: bool = False) -> None:
        """Go to ``target`` (``apply("blog", "0002")``, ``apply("blog.0002")``,
        ``apply("blog", "zero")``, a revision id), or to each of a list of targets in turn
        (``apply([("accounts", "0001"), "blog.0002"])``), up or down as needed (Django's
        ``migrate APP NAME``):
        everything the migration needs is applied, everything of its app after it (and what
        other apps built on that) reverted. ``allow_data_loss``/``archive`` as for ``flask db
        downgrade``: without them, a move that would destroy data is refused."""
        for words in _targets(target):
            view, app, migration = self._resolve(words)
            applied = _applied(view)
            graph = view.graph
            if migration is None:
                down = bool(graph.position(app, applied))
                where = [app, "zero"]
            else:
                down = migration.revision in applied and any(
                    m.revision in applied and m.revision != migration.revision
                    and migration.revision in graph.closure([m.revision])
                    for m in graph.of_app(app)
                )
                where = [app, migration.revision]
            if migration is None and not down:
                continue
            self._run(
                " ".join(words), downgrade if down else upgrade, view, where,
                allow_data_loss=allow_data_loss, archive=archive,
            )

    def upgrade(self, *, allow_data_loss: bool = False, archive: bool = False) -> None:
        """Every app to its head, on every bind."""
        for view in self.project.views():
            self._run("heads", upgrade, view, [], allow_data_loss=allow_data_loss, archive=archive)

    def reset(self) -> None:
        """Revert every applied migration (through their downgrades, data loss accepted): back
        to an empty database."""
        for view in self.project.views():
            if _applied(view):
                self._run("base", downgrade, view, ["base"], allow_data_loss=True)

    @property
    def applied(self) -> list[str]:
        """Applied migrations as output names them (``blog.0001_initial``), in the graph's order."""
        labels: list[str] = []
        for view in self.project.views():
            applied = _applied(view)
            labels += [m.label for rev, m in view.graph.migrations.items() if rev in applied]
        return labels

    # -- reading and writing rows -----------------------------------------------------------

    def table(self, name: str) -> sa.Table:
        """The table as it stands now, reflected from the database (not the models)."""
        engine = self._engine_with(name)
        return sa.Table(name, sa.MetaData(), autoload_with=engine)

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]] | None = None, **row: Any) -> Any:
        """Insert ``row`` (keyword arguments) or ``rows``; for one row, returns its primary key
        (a single value for a one-column key)."""
        handle = self.table(table)
        with self._engine_with(table).begin() as connection:
            if rows is not None:
                connection.execute(handle.insert(), [dict(r) for r in rows])
                return None
            key = connection.execute(handle.insert().values(**row)).inserted_primary_key
        return key[0] if key is not None and len(key) == 1 else key

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of the table as it stands now, as dicts, in primary-key order."""
        handle = self.table(table)
        order = list(handle.primary_key.columns) or list(handle.columns)
        with self._engine_with(table).connect() as connection:
            return [dict(r._mapping) for r in connection.execute(sa.select(handle).order_by(*order))]

    @contextmanager
    def connection(self, table: str | None = None) -> Iterator[Connection]:
        """A connection in a transaction (committed at the end of the block) to the database
        holding ``table`` (default: the default bind's), for queries with ``table()`` handles."""
        engine = self._engine_with(table) if table else self._engine(None)
        with engine.begin() as connection:
            yield connection

    def close(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()

    # -- inside -----------------------------------------------------------------------------

    def _resolve(self, words: list[str]) -> tuple[Project, str, Migration | None]:
        """The bind's project, the app and the migration (None: ``zero``) ``words`` name."""
        project = self.project
        graph, registry = project.graph, project.all_apps
        if len(words) == 2:
            app, rest = words
        else:
            named_app, rest_text = graph.split_reference(words[0])
            if named_app is not None:
                app, rest = named_app, rest_text
            elif words[0] in registry:
                app, rest = words[0], "head"
            else:
                found = graph.find(words[0])
                app, rest = found.app, found.revision
        view = project.of_bind(registry.get(app).bind)
        if rest in ("zero", "base"):
            return view, app, None
        if rest == "head":
            return view, app, view.graph.named([app])
        return view, app, view.graph.find(rest, app)

    def _run(self, target: str, function: Any, view: Project, where: list[str], **options: Any) -> None:
        try:
            if function is downgrade:
                function(view, where, cascade=True, **options)
            else:
                function(view, where, **options)
        except DataLossError as exc:
            lost = "; ".join(
                f"{risk.step.migration.label} {risk.operation.reason} ({risk.amount})"
                for risk in exc.report.losses
            )
            raise RollbackError(
                f"migrator: going to {target} would destroy existing data: {lost}; nothing was "
                "run; pass allow_data_loss=True (or archive=True) to accept it",
                exc.exit_code,
            ) from None

    def _engine(self, bind: str | None) -> Engine:
        if bind not in self._engines:
            view = self.project.of_bind(bind)
            # connected as migrations are: the app's connect options (a search_path...), no pool
            self._engines[bind] = migration_engine(view.url, view.engine_options)
        return self._engines[bind]

    def _engine_with(self, table: str) -> Engine:
        """The engine of the bind whose database holds ``table`` now."""
        binds = self.project.binds if self.project.several_binds else [None]
        holding = []
        for bind in binds:
            engine = self._engine(bind)
            with engine.connect() as connection:
                if sa.inspect(connection).has_table(table):
                    holding.append(engine)
        if len(holding) == 1:
            return holding[0]
        applied = ", ".join(self.applied) or "nothing"
        where = "no database holds" if not holding else "several binds' databases hold"
        raise RollbackError(f"migrator: {where} a table {table!r} at this state (applied: {applied})")


def _applied(view: Project) -> AbstractSet[str]:
    """The revisions the bind's database has applied now."""
    with view.connect() as connection:
        return read_state(view, connection, log=False)[0].applied


def _targets(target: tuple[Target, ...]) -> list[list[str]]:
    """``apply``'s arguments as command words per target: ``("blog", "0002")``,
    ``("blog.0002",)`` and ``("blog 0002",)`` are one target; ``([...],)`` a list of them."""
    if len(target) == 1 and not isinstance(target[0], str):
        targets: list[Target] = list(target[0])
    else:
        targets = [target]  # type: ignore[list-item]
    found: list[list[str]] = []
    for one in targets:
        parts = [one] if isinstance(one, str) else list(one)
        words = [word for part in parts for word in str(part).split()]
        if not 1 <= len(words) <= 2:
            raise RollbackError(
                "migrator: expected a target such as 'blog.0002', ('blog', '0002') or "
                f"'blog zero', not {one!r}"
            )
        found.append(words)
    if not found:
        raise RollbackError("migrator.apply needs a target, e.g. migrator.apply('blog', '0002')")
    return found
