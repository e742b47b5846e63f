"""What every command family shares: the project of the current app, a connection and
planner under the migration lock, hooks, positions."""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager, nullcontext
from datetime import datetime
from typing import Any

from flask import Flask, current_app
from sqlalchemy.engine import Connection

from ..database import apply_timeouts, behind_pooler
from ..errors import EXIT_COULD_NOT_RUN, RollbackError
from ..lock import Announce, migration_lock
from ..partial import PartialLog, refuse_if_partial, settle_stale
from ..plan import Plan, Planner
from ..project import Project
from ..settings import lock_seconds


def get_project(
    app: Flask | None = None, directory: str | None = None, bind: str | None = None
) -> Project:
    """The Project of ``app`` (default: the current app); with ``bind`` (a SQLALCHEMY_BINDS
    key, or 'default'), the view of that bind, which every database function works on."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    state = app.extensions.get("rollback")
    if state is None:
        raise RollbackError(
            "flask-rollback is not set up for this app: call rollback.init_app(app, db)"
        )
    project: Project = state.project(app, directory)
    return project if bind is None else project.for_bind(project.bind_key(bind))

# -- the database state ---------------------------------------------------------------------


@contextmanager
def open_database(
    project: Project,
    *,
    lock: bool = False,
    lock_timeout: float | None = None,
    announce: Announce | None = None,
    purge: bool = False,
    allow_partial: bool = False,
) -> Iterator[tuple[Connection, Planner]]:
    """A connection and a planner for the database's current state.

    Under the lock, the markers of runs that died mid-step are checked against the live schema
    first; then a partly applied migration (partial.py) stops the command unless
    ``allow_partial`` (``resolve``, which clears it).

    With ``lock``, the migration lock is taken first and the state read after it, so a process
    that waited for another one plans against what that one left. ``purge`` ignores the
    stored heads (to stamp over revisions no file provides any more).
    """
    project.graph  # noqa: B018 - the files are read, and a bad one reported, before connecting
    settings = project.settings
    with project.connect() as connection:
        if lock:
            refuse_pooler(project, connection)
        guard = (
            migration_lock(
                connection,
                settings.version_table,
                settings.lock_timeout
                if lock_timeout is None
                else lock_seconds(lock_timeout, "the lock timeout", "; check --lock-timeout"),
                announce,
                lock_table=settings.lock_table,
                use_table=settings.lock == "table",
            )
            if lock
            else nullcontext()
        )
        with guard:
            if lock:
                apply_timeouts(connection, settings)
                partial = PartialLog(settings.log_table)
                settle_stale(partial, connection)  # markers of runs that died (we hold the lock)
                if not allow_partial:
                    refuse_if_partial(partial, connection)
            planner, _times = read_state(project, connection, purge=purge)
            connection.rollback()
            yield connection, planner


def read_state(
    project: Project, connection: Connection, *, purge: bool = False, log: bool = True
) -> tuple[Planner, dict[str, datetime]]:
    """A planner for the database's state, and when each applied migration was last applied
    (the applied log, read once; ``log=False`` leaves it unread, for what needs neither the
    times nor the order of rollback). ``purge`` ignores the stored heads."""
    recorder = project.recorder
    heads = () if purge else recorder.stored_heads(connection)
    inside = project.graph.squashes_inside(heads)
    if inside:  # applied only partly: the originals finish the range (squash.py)
        project.unsquash(inside)
    graph = project.graph
    times = recorder.applied_times(connection, graph.migrations) if log else {}
    unknown = graph.unknown(heads)
    names = recorder.logged_names(connection, unknown) if unknown else None  # to name them
    return Planner(graph, heads, times.keys(), names), times

def refuse_pooler(project: Project, connection: Connection) -> None:
    """A command that changes the schema needs a server session of its own: the lock, the
    per-migration settings and each migration's transaction must all run in it. Behind a
    pooler (PgBouncer in transaction mode: 7 of 8 concurrent upgrades entered the same
    migration) it refuses before anything runs and names the fix."""
    if not behind_pooler(connection):
        return
    if project.bind is not None:
        raise RollbackError(
            f"the URL of bind {project.bind_label!r} goes through a connection pooler (PgBouncer "
            "or similar), where the migration lock cannot be trusted: point its SQLALCHEMY_BINDS "
            "entry at the database server directly; nothing was changed",
            exit_code=EXIT_COULD_NOT_RUN,
        )
    if project.settings.database_url is not None:
        raise RollbackError(
            "ROLLBACK_DATABASE_URL goes through a connection pooler (PgBouncer or similar): it "
            "must be a direct connection to the database server; nothing was changed",
            exit_code=EXIT_COULD_NOT_RUN,
        )
    raise RollbackError(
        "the database URL goes through a connection pooler (PgBouncer or similar), where the "
        "migration lock cannot be trusted: set ROLLBACK_DATABASE_URL to a direct connection to "
        "the same database, used only by flask db; nothing was changed",
        exit_code=EXIT_COULD_NOT_RUN,
    )


def positions(project: Project, applied: AbstractSet[str]) -> dict[str, list[str]]:
    return {label: project.graph.position(label, applied) for label in project.registry.labels}


def _applied_so_far(project: Project, connection: Connection, plan: Plan) -> list[str]:
    """The plan's migrations that committed before a failure."""
    applied = project.graph.closure(project.recorder.stored_heads(connection))
    connection.rollback()
    return [step.migration.revision for step in plan.steps if step.migration.revision in applied]


def run_hooks(project: Project, name: str, signal: Any, **kwargs: Any) -> None:
    """Hooks and signal receivers; one that raises stops the operation with its message."""
    receivers = [*project.hooks.get(name, [])]
    try:
        for hook in receivers:
            hook(**kwargs)
        signal.send(project.flask_app, **kwargs)
    except RollbackError:
        raise
    except Exception as exc:
        raise RollbackError(f"{name} hook failed: {exc}; nothing was changed") from exc

