"""Looking without changing: status per app, check, Alembic's informational verbs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from alembic import command as alembic_command
from alembic.util import CommandError

from ..errors import (
    EXIT_DATABASE_BEHIND,
    EXIT_MODELS_DIFFER,
    EXIT_MULTIPLE_HEADS,
    RollbackError,
)
from ..graph import Migration
from ..project import Comparison, Project
from .author import makemigrations
from .context import open_database


@dataclass
class MigrationStatus:
    """One migration and whether (and when) it is applied."""

    migration: Migration
    applied: bool
    applied_at: datetime | None


@dataclass
class AppStatus:
    """An app: its migrations in order, its heads and where the database stands."""

    label: str
    directory: Path
    migrations: list[MigrationStatus]
    heads: list[str]
    current: list[str]

    @property
    def pending(self) -> list[MigrationStatus]:
        return [m for m in self.migrations if not m.applied]


@dataclass
class Status:
    """Every app's status plus the global order (Django's ``showmigrations --plan``)."""

    apps: list[AppStatus]
    order: list[MigrationStatus]
    stored_heads: tuple[str, ...]


def status(project: Project, apps: Sequence[str] = ()) -> Status:
    for label in apps:
        project.registry.get(label)
    with open_database(project) as (connection, planner):
        times = project.recorder.applied_times(project.recorder.entries(connection))
    graph = project.graph
    order = [
        MigrationStatus(m, m.revision in planner.applied, times.get(m.revision))
        for m in graph.migrations.values()
    ]
    result = []
    for label in apps or project.registry.labels:
        app = project.registry.get(label)
        result.append(
            AppStatus(
                label,
                app.directory,
                [s for s in order if s.migration.app == label],
                graph.app_heads(label),
                graph.position(label, planner.applied),
            )
        )
    return Status(result, order, planner.stored_heads)

# -- checking -------------------------------------------------------------------------------


@dataclass
class CheckReport:
    """Problems found by ``check``; the exit code names the first kind found."""

    problems: list[tuple[int, str]]

    @property
    def exit_code(self) -> int:
        return self.problems[0][0] if self.problems else 0


def check(project: Project, database: Comparison = "scratch") -> CheckReport:
    """Are heads single, the database current and the models matched by migrations?

    The models are compared with the schema the migrations build on a scratch database, so a
    database that is behind still gets that comparison; ``database="live"`` compares with the
    live database instead, only when it is current."""
    problems: list[tuple[int, str]] = []
    graph = project.graph
    for label in project.registry.labels:
        heads = graph.app_heads(label)
        if len(heads) > 1:
            problems.append(
                (EXIT_MULTIPLE_HEADS, f"app {label!r} has {len(heads)} heads: {', '.join(heads)}")
            )
    with open_database(project) as (_connection, planner):
        pending = [m.label for m in graph.migrations.values() if m.revision not in planner.applied]
    if pending:
        problems.append(
            (EXIT_DATABASE_BEHIND, f"the database is behind: {len(pending)} pending: {', '.join(pending)}")
        )
    if not problems or (database == "scratch" and all(code == EXIT_DATABASE_BEHIND for code, _ in problems)):
        new = makemigrations(project, check=True, database=database)
        for migration in new:
            shipped = " shipped with its installed package (upgrade the package)" if migration.read_only else ""
            problems.append(
                (EXIT_MODELS_DIFFER,
                 f"models of app {migration.app!r} differ from its migrations{shipped}: "
                 + "; ".join(migration.operations))
            )
    return CheckReport(problems)


# -- Flask-Migrate's informational verbs, delegated to Alembic -------------------------------


def alembic_verb(project: Project, verb: str, *args: object, **kwargs: object) -> None:
    """history, show, branches, edit: Alembic prints these itself."""
    try:
        getattr(alembic_command, verb)(project.config, *args, **kwargs)
    except CommandError as exc:
        raise RollbackError(str(exc)) from None

