"""The SQL a plan would run, without touching the database (Alembic's offline mode), for every
plan flask-rollback makes.

Alembic's offline mode needs two things it cannot find alone:

- **Where the plan starts.** With one branch per app the database stands at several heads.
  ``starting_rev`` is given as the tuple of stored heads: Alembic reads a comma-joined string as
  one revision id (``Can't locate revision identified by 'a,b'``). Its head bookkeeping then
  writes the same version-table statements as an online run.
- **The tables a SQLite batch migration rebuilds.** ``batch_alter_table`` (autogenerate's
  default on SQLite) reflects the table from the live database to copy it; offline, Alembic
  asks for ``copy_from=Table(...)`` instead. The definition comes from the schema the
  migrations themselves build: on an in-memory SQLite database every migration the plan stands
  on runs, then each step of the plan, and every ``batch_alter_table`` reflects its table there
  at the moment it runs. The offline run's ``batch_alter_table`` then receives that table as
  ``copy_from``. Migration files are not changed. This happens only when Alembic refuses to
  render a batch without it, so a plan without table rebuilds never runs anything.

Anything that still cannot be rendered is one ``RollbackError`` naming the migration and why.
"""

from __future__ import annotations

import functools
import inspect
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationStep
from alembic.util import CommandError
from sqlalchemy.engine import URL
from sqlalchemy.sql.elements import conv

from .database import connect, mask
from .errors import RollbackError
from .plan import Plan, Step
from .project import Project

#: ``Operations.batch_alter_table``'s parameters, to read a call however its arguments came.
BATCH_PARAMETERS = inspect.signature(Operations.batch_alter_table)
IN_MEMORY_SQLITE = URL.create("sqlite")

#: Per step of the plan (by position), the table each ``batch_alter_table`` call of that step
#: reflected on the scratch schema, in call order; None for a call that needs none.
BatchTables = dict[int, list[sa.Table | None]]


class _TablesNeeded(Exception):
    """Alembic refused to render a batch without ``copy_from``: build the tables, then retry."""

    def __init__(self, step: Step | None) -> None:
        super().__init__()
        self.step = step


def render_sql(project: Project, plan: Plan) -> str:
    """The SQL ``plan`` would run, from the heads it starts at; a SQL comment when it is empty."""
    if not plan.steps:
        return f"-- Nothing to {plan.kind}: already at {plan.target}.\n"
    try:
        return _render(project, plan, None)
    except _TablesNeeded as needed:
        return _render(project, plan, _batch_tables(project, plan, needed.step))


class _Tracker:
    """Which migration is running (for error messages) and which of its batch_alter_table
    calls this is (to hand the scratch run's tables to the same calls offline)."""

    def __init__(self) -> None:
        self.running: Step | None = None
        self.position: int | None = None
        self.calls = 0

    def follow(self, planned: Step, step: MigrationStep, position: int | None) -> None:
        """Track ``step``; ``position`` is its place in the plan (None: not a plan step)."""
        run = step.migration_fn

        @functools.wraps(run)  # Alembic names the step after it: "-- Running upgrade a -> b"
        def tracked(**kw: Any) -> None:
            self.running, self.position, self.calls = planned, position, 0
            run(**kw)

        step.migration_fn = tracked

    def next_call(self) -> tuple[int | None, int]:
        """(position of the running plan step, index of this batch call within it)."""
        self.calls += 1
        return self.position, self.calls - 1

    def describe(self, plan: Plan) -> str:
        """The running migration as errors name it, or the plan before any step started."""
        step = self.running
        return f"{step.migration.label} ({step.direction})" if step else f"{plan.kind} {plan.target}"


@contextmanager
def _one_line(project: Project, prefix: Callable[[], str]) -> Iterator[None]:
    """Any failure becomes one RollbackError line: ``prefix()``, the exception type and the
    first line of its message (password masked)."""
    try:
        yield
    except (RollbackError, _TablesNeeded):
        raise
    except Exception as exc:
        text = str(exc).strip()
        reason = mask(text.splitlines()[0] if text else "", project.url)
        raise RollbackError(f"{prefix()}: {type(exc).__name__}: {reason}") from exc


def _render(project: Project, plan: Plan, tables: BatchTables | None) -> str:
    """One offline run; ``tables`` (None on the first try) fill in SQLite batches' copy_from."""
    buffer = io.StringIO()
    steps = plan.alembic_steps(project.graph)
    tracker = _Tracker()
    for position, (planned, step) in enumerate(zip(plan.steps, steps)):
        tracker.follow(planned, step, position)
    backend = project.url.get_backend_name()
    environment = EnvironmentContext(
        project.config,
        project.script,
        fn=lambda heads, ctx: steps,
        as_sql=True,
        starting_rev=plan.heads_before or None,  # a tuple: one row per stored head
    )
    with _one_line(project, lambda: f"cannot render the SQL of {tracker.describe(plan)}"), environment as env:
        env.configure(
            url=project.url,
            output_buffer=buffer,
            literal_binds=True,
            transaction_per_migration=True,
            **project.context_options(backend),
        )
        context = env.get_context()
        with Operations.context(context) as operations:
            if backend == "sqlite":
                operations.batch_alter_table = _offline_batch(operations, tracker, tables)  # type: ignore[method-assign]
            context.run_migrations()
    return buffer.getvalue()


def _needs_definition(arguments: dict[str, Any]) -> bool:
    """May this batch rebuild its table without having been given its definition?"""
    return arguments["copy_from"] is None and arguments["recreate"] != "never"


def _offline_batch(
    operations: Operations, tracker: _Tracker, tables: BatchTables | None
) -> Callable[..., Any]:
    """``batch_alter_table`` for the offline run: with ``tables``, a call that brings no
    ``copy_from`` gets the table the scratch run reflected at the same call; without, a
    refusal to rebuild without it asks for them (``_TablesNeeded``)."""

    @contextmanager
    def batch_alter_table(*args: Any, **kwargs: Any) -> Iterator[Any]:
        call = BATCH_PARAMETERS.bind(operations, *args, **kwargs)
        call.apply_defaults()
        position, index = tracker.next_call()
        unfilled = _needs_definition(call.arguments)
        if unfilled and tables is not None:
            call.arguments["copy_from"] = _recorded_table(tables, position, index, call.arguments, tracker)
        body_done = False
        try:
            with Operations.batch_alter_table(*call.args, **call.kwargs) as batch:
                yield batch
                body_done = True  # what fails from here on is the rebuild (flush)
        except CommandError:
            if body_done and unfilled and tables is None:
                raise _TablesNeeded(tracker.running) from None
            raise

    return batch_alter_table


def _recorded_table(
    tables: BatchTables, position: int | None, index: int, arguments: dict[str, Any], tracker: _Tracker
) -> sa.Table:
    made = tables.get(position, []) if position is not None else []
    table = made[index] if index < len(made) else None
    if table is None or (table.name, table.schema) != (arguments["table_name"], arguments["schema"]):
        step = tracker.running
        label = step.migration.label if step else "a migration"
        raise RollbackError(
            f"cannot render the SQL of {label}: its batch_alter_table({arguments['table_name']!r}) "
            "calls are not the same offline as when it runs (does it test "
            "context.is_offline_mode()?); pass copy_from=Table(...) to batch_alter_table"
        )
    return _as_alembic_reflects(table, arguments["naming_convention"])


def _as_alembic_reflects(table: sa.Table, naming_convention: dict[str, str] | None) -> sa.Table:
    """What Alembic does to a table it reflects itself (online), done to the one it gets as
    ``copy_from``, so the SQL shown is the SQL that runs: an unnamed CHECK constraint is left out
    (Alembic cannot tell which column it belongs to), and with ``naming_convention`` the names
    the database holds stay as they are while the convention names the unnamed constraints."""
    for constraint in list(table.constraints):
        if isinstance(constraint, sa.CheckConstraint) and not constraint.name:
            table.constraints.discard(constraint)
    if not naming_convention:
        return table
    named: list[sa.Constraint | sa.Index] = [*table.constraints, *table.indexes]
    for item in named:
        if isinstance(item.name, str) and not isinstance(item.name, conv):
            item.name = conv(item.name)
    return table.to_metadata(sa.MetaData(naming_convention=naming_convention))


def _batch_tables(project: Project, plan: Plan, needed_by: Step | None) -> BatchTables:
    """Run what the plan stands on, then the plan, on an in-memory SQLite database, recording
    the table every ``batch_alter_table`` of a plan step rebuilds, as it stands right then."""
    graph = project.graph
    below = graph.closure(plan.heads_before)
    start = [Step(migration, "up") for rev, migration in graph.migrations.items() if rev in below]
    # A fake step (--fake-initial) records only, but its tables exist: here it runs for real.
    planned = [Step(step.migration, step.direction) for step in plan.steps]
    scratch_plan = Plan(plan.kind, plan.target, start + planned, (), ())
    steps = scratch_plan.alembic_steps(graph)
    tracker = _Tracker()
    for index, (step, alembic_step) in enumerate(zip(scratch_plan.steps, steps)):
        tracker.follow(step, alembic_step, index - len(start) if index >= len(start) else None)
    tables: BatchTables = {}
    needing = f"{needed_by.migration.label} ({needed_by.direction})" if needed_by else plan.target

    def prefix() -> str:
        return (
            f"cannot render the SQL of {needing}: its batch_alter_table needs the table as the "
            "migrations build it, and running them on an in-memory SQLite database failed at "
            f"{tracker.describe(plan)}"
        )

    environment = EnvironmentContext(project.config, project.script, fn=lambda heads, ctx: steps)
    with _one_line(project, prefix), connect(IN_MEMORY_SQLITE) as scratch, environment as env:
        env.configure(
            connection=scratch, transaction_per_migration=True, **project.context_options("sqlite")
        )
        context = env.get_context()
        with Operations.context(context) as operations:
            operations.batch_alter_table = _reflecting_batch(operations, scratch, tracker, tables)  # type: ignore[method-assign]
            context.run_migrations()
    return tables


def _reflecting_batch(
    operations: Operations, connection: sa.Connection, tracker: _Tracker, tables: BatchTables
) -> Callable[..., Any]:
    """``batch_alter_table`` for the scratch run: reflect the table first (as Alembic will,
    with the call's ``reflect_args``), record it for the offline run, then run the batch."""

    @contextmanager
    def batch_alter_table(*args: Any, **kwargs: Any) -> Iterator[Any]:
        call = BATCH_PARAMETERS.bind(operations, *args, **kwargs)
        call.apply_defaults()
        position, _index = tracker.next_call()
        arguments = call.arguments
        if position is not None:
            tables.setdefault(position, []).append(
                sa.Table(
                    arguments["table_name"],
                    sa.MetaData(),
                    *arguments["reflect_args"],
                    schema=arguments["schema"],
                    autoload_with=connection,
                    **arguments["reflect_kwargs"],
                )
                if _needs_definition(arguments)
                else None
            )
        with Operations.batch_alter_table(*call.args, **call.kwargs) as batch:
            yield batch

    return batch_alter_table
