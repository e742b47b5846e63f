"""Where migrations are executed: a plan runs through Alembic, one transaction per migration.

Each migration's applied-log row is written by Alembic's ``on_version_apply`` hook, inside the
same transaction as the migration and its version-table update.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from alembic.runtime.environment import EnvironmentContext
from sqlalchemy.engine import Connection

from .database import mask
from .errors import RollbackError
from .interrupts import Interrupted
from .plan import Plan, Step
from .project import Project
from .recorder import utcnow

Progress = Callable[[int, int, Step], None]


@dataclass
class RunReport:
    """What a run did: the plan and the steps that completed, with their durations."""

    plan: Plan
    done: list[tuple[Step, float]] = field(default_factory=list)
    planned_only: bool = False

    @property
    def seconds(self) -> float:
        return sum(ms for _, ms in self.done) / 1000


def execute(
    project: Project,
    connection: Connection,
    plan: Plan,
    progress: Progress | None = None,
    finalize: Callable[[Connection], None] | None = None,
    before_step: Callable[[Connection, Step], None] | None = None,
) -> RunReport:
    """Run an upgrade or downgrade plan on ``connection`` (which holds no open transaction).

    ``finalize`` runs inside the last migration's transaction (e.g. to mark a deploy rolled
    back), so it happens exactly when the last step commits. ``before_step`` runs inside each
    step's transaction just before the migration (e.g. to archive what it will drop).
    """
    report = RunReport(plan)
    if not plan.steps:
        return report
    recorder = project.recorder
    recorder.ensure_log(connection)
    connection.commit()
    graph = project.graph
    steps = plan.alembic_steps(graph)
    if before_step is not None:
        for planned, step in zip(plan.steps, steps):
            step.migration_fn = _preceded(step.migration_fn, before_step, connection, planned)
    clock: list[datetime] = [utcnow()]

    def record(ctx, step, heads, run_args) -> None:  # type: ignore[no-untyped-def]
        planned = plan.steps[len(report.done)]
        recorder.write(ctx.connection, planned.migration, planned.direction, clock[0])
        finished = utcnow()
        report.done.append((planned, (finished - clock[0]).total_seconds() * 1000))
        clock[0] = finished
        if finalize and len(report.done) == len(plan.steps):
            finalize(ctx.connection)
        if progress:
            progress(len(report.done), len(plan.steps), planned)

    with EnvironmentContext(project.config, graph.script, fn=lambda heads, ctx: steps) as env:
        env.configure(
            connection=connection,
            transaction_per_migration=True,
            on_version_apply=record,
            **project.context_options(connection.dialect.name),
        )
        try:
            env.run_migrations()
        except Interrupted as exc:
            exc.outcome.append(_interrupted_at(plan, report))
            raise
        except Exception as exc:
            failed = plan.steps[len(report.done)]
            reason = mask(str(exc).strip().splitlines()[0] if str(exc).strip() else "", project.url)
            raise RollbackError(
                f"migration {failed.migration.label} ({failed.direction}) failed: "
                f"{type(exc).__name__}: {reason}; it was rolled back, "
                f"{len(report.done)} earlier step(s) of this run stay done"
            ) from exc
    return report


def _interrupted_at(plan: Plan, report: RunReport) -> str:
    """What a signal left: the step in progress rolled back (its transaction), the earlier ones
    committed."""
    done = len(report.done)
    if done == len(plan.steps):
        return f"all {done} step(s) of this run were applied"
    step = plan.steps[done]
    return (
        f"migration {step.migration.label} ({step.direction}) was rolled back, "
        f"{done} earlier step(s) of this run stay done"
    )


def _preceded(
    migration_fn: Callable[..., None],
    before_step: Callable[[Connection, Step], None],
    connection: Connection,
    step: Step,
) -> Callable[..., None]:
    def run(**kw: object) -> None:
        before_step(connection, step)
        migration_fn(**kw)

    return run


def stamp(project: Project, connection: Connection, plan: Plan) -> RunReport:
    """Record a new position without running migrations; log rows are marked fake."""
    recorder = project.recorder
    recorder.ensure_log(connection)
    connection.commit()
    report = RunReport(plan)
    with connection.begin():
        recorder.set_heads(connection, plan.heads_after)
        for step in plan.steps:
            recorder.write(connection, step.migration, step.direction, utcnow(), fake=True)
            report.done.append((step, 0.0))
    return report
