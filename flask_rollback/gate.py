"""The predeploy gate: every check a deploy must pass, as one report.

Checks: graph integrity, applied-history integrity (checksums), reversibility of pending
migrations, rehearsal on a scratch copy (with drift: models vs migrations), live data (steps the
existing rows would make fail, which the row-less rehearsal cannot see), data at risk.
Nothing here writes to the target database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.engine import Connection

from .analysis import destructive
from .checks import downgrade_problem
from .dataloss import DataLossReport, assess, step_operations
from .errors import EXIT_COULD_NOT_RUN, EXIT_ERROR, EXIT_OK, RollbackError
from .guard import TRANSACTIONAL_DDL, watchable
from .plan import Plan, Planner
from .predict import Prediction, predict
from .project import Project
from .recorder import file_sha256
from .rehearsal import rehearse
from .wording import plural, shown_path

Level = Literal["ok", "warning", "error"]


@dataclass
class CheckResult:
    """One line of the report, with the migrations or objects concerned."""

    name: str
    level: Level
    message: str
    details: list[str] = field(default_factory=list)


@dataclass
class GateReport:
    """The gate's verdict: blocked on any error (and, with ``strict``, any warning); could not
    run when a check needing infrastructure (the scratch copy) could not be done, which says
    nothing about the migrations, so CI can tell "retry or fix the setup" from "fix the code"."""

    checks: list[CheckResult]
    pending: list[str]
    strict: bool = False
    #: What the pending upgrades would destroy, for ``deploy`` to refuse or archive.
    data_loss: DataLossReport = field(default_factory=lambda: DataLossReport([]))
    #: Why a check could not run (e.g. the schema could not be copied into the scratch database).
    could_not_run: str | None = None

    @property
    def blocked(self) -> bool:
        bad = {"error", "warning"} if self.strict else {"error"}
        return self.could_not_run is not None or any(check.level in bad for check in self.checks)

    @property
    def exit_code(self) -> int:
        """1 when a check that ran found a reason to block (retrying cannot help), else 2 when
        a check could not run, else 0."""
        bad = {"error", "warning"} if self.strict else {"error"}
        found = [
            check for check in self.checks
            if check.level in bad and not (self.could_not_run and check.name == "rehearsal")
        ]
        if found:
            return EXIT_ERROR
        return EXIT_COULD_NOT_RUN if self.could_not_run is not None else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "ready": not self.blocked,
            "strict": self.strict,
            "could_not_run": self.could_not_run,
            "pending": self.pending,
            "checks": [check.__dict__ for check in self.checks],
        }


def graph_failure(message: str) -> GateReport:
    """The migrations cannot even be read: the only check that could run failed."""
    return GateReport([CheckResult("graph integrity", "error", message)], [])


def run_gate(
    project: Project, connection: Connection, planner: Planner, strict: bool, *,
    rehearse_steps: bool = True, accepted: str | None = None,
) -> GateReport:
    """Every check. ``rehearse_steps`` False skips the rehearsal (a warning: a role without
    CREATEDB); ``accepted`` names the flag under which a deploy keeps or loses the data at risk
    (``--archive``, ``--allow-data-loss``), which then does not block it."""
    plan = planner.upgrade()
    pending = [step.migration.label for step in plan.steps]
    checks = [
        _graph(project),
        _history(project, connection, planner),
        _reversibility(project, plan),
    ]
    if rehearse_steps:
        rehearsal_checks, could_not_run = _rehearsal(project, connection, plan)
    else:
        rehearsal_checks, could_not_run = [CheckResult(
            "rehearsal", "warning",
            "skipped (--no-rehearsal): the pending migrations were not tried on a scratch copy, "
            "and the models were not compared with them",
        )], None
    checks += rehearsal_checks
    data_loss = assess(project, connection, plan)
    predictions = predict(project, connection, plan)
    connection.rollback()
    checks.append(_live_data(predictions))
    checks.append(_data_at_risk(project, connection, plan, data_loss, accepted))
    return GateReport(checks, pending, strict, data_loss, could_not_run)


def _graph(project: Project) -> CheckResult:
    graph = project.graph
    split = {label: graph.app_heads(label) for label in project.registry.labels}
    several = [f"{label}: {', '.join(heads)}" for label, heads in split.items() if len(heads) > 1]
    if several:
        return CheckResult(
            "graph integrity", "error",
            "an app has more than one head; run 'flask db merge APP'", several,
        )
    return CheckResult(
        "graph integrity", "ok",
        f"{plural(len(graph.migrations), 'migration')} in {plural(len(split), 'app')}, one head each",
    )


def _history(project: Project, connection: Connection, planner: Planner) -> CheckResult:
    entries = project.recorder.entries(connection)
    connection.rollback()
    recorded: dict[str, str] = {}
    for entry in entries:
        # Every row written knowing the file's checksum: a run, a load of the schema snapshot
        # (made from these files), a stamp or --fake (the file as it was when recorded).
        if entry.direction == "up" and entry.sha256:
            recorded[entry.revision] = entry.sha256
    edited, unrecorded = [], 0
    for revision in planner.applied:
        migration = project.graph.migrations[revision]
        if revision not in recorded:
            unrecorded += 1
        elif recorded[revision] != file_sha256(migration.path):
            edited.append(f"{migration.label} ({shown_path(migration.path)})")
    if edited:
        return CheckResult(
            "applied history", "error",
            "applied migrations were edited after they ran; restore them and put changes in a new migration",
            edited,
        )
    note = f"; {unrecorded} applied without a recorded checksum" if unrecorded else ""
    checked = len(planner.applied) - unrecorded  # applied now, not every revision ever logged
    return CheckResult("applied history", "ok", f"{plural(checked, 'applied migration')} unchanged{note}")


def _reversibility(project: Project, plan: Plan) -> CheckResult:
    barriers, broken = [], []
    for step in plan.steps:
        module = project.script.get_revision(step.migration.revision).module
        problem = downgrade_problem(module)
        if problem and problem.startswith("declared irreversible"):
            barriers.append(f"{step.migration.label}: {problem}")
        elif problem:
            broken.append(f"{step.migration.label}: {problem}")
    if broken:
        return CheckResult(
            "reversibility", "error", "pending migrations cannot be rolled back", broken + barriers
        )
    if barriers:
        return CheckResult(
            "reversibility", "warning",
            "pending migrations are rollback barriers: this deploy cannot be rolled back past them",
            barriers,
        )
    count = len(plan.steps)
    return CheckResult(
        "reversibility", "ok",
        f"{plural(count, 'pending migration')} {'has' if count == 1 else 'have'} a real downgrade",
    )


def _live_data(predictions: list[Prediction]) -> CheckResult:
    """Pending steps the rows now in the database would make fail: an error, since the deploy
    would stop there with the steps before it applied."""
    if predictions:
        steps = {prediction.label for prediction in predictions}
        return CheckResult(
            "live data", "error", f"{plural(len(steps), 'pending step')} would fail on live data",
            [str(prediction) for prediction in predictions],
        )
    return CheckResult("live data", "ok", "no pending step would fail on the live data")


def _data_at_risk(
    project: Project, connection: Connection, plan: Plan, report: DataLossReport,
    accepted: str | None = None,
) -> CheckResult:
    """Pending upgrades that destroy existing data (counted on the live database, following the
    plan); operations that cannot be read (counted statement by statement as they run); and,
    for information, what rolling this deploy back would drop (data written after it)."""
    dialect = connection.dialect.name
    on_rollback = [
        f"rolling back {step.migration.label} {operation.reason}"
        for step in plan.steps
        for operation in destructive(step_operations(project, step.reversed(), dialect))
    ]
    if report.losses:
        steps = len({risk.step.migration.label for risk in report.losses})
        return CheckResult(
            "data at risk", "ok" if accepted else "warning",
            f"{plural(steps, 'pending step')} {'destroys' if steps == 1 else 'destroy'} existing data; "
            + (f"accepted with {accepted}" if accepted else "deploy needs --archive or --allow-data-loss"),
            [f"{risk.step.migration.label}: {risk.operation.reason} ({risk.amount})"
             for risk in report.losses] + on_rollback,
        )
    hint = (
        "; roll back with --archive to keep data written after the deploy" if on_rollback else ""
    )
    unread = [
        f"{risk.step.migration.label}: {risk.operation.reason} "
        + ("(checked as it runs)" if watchable(risk.operation, dialect)
           else "(cannot be checked on this database: refused unless --allow-data-loss)")
        for risk in report.unreviewed
    ]
    if unread and dialect not in TRANSACTIONAL_DDL:
        return CheckResult(
            "data at risk", "warning",
            f"{plural(len(unread), 'pending operation')} cannot be read; "
            f"{'its' if len(unread) == 1 else 'their'} statements are checked as they run, but a "
            "partial step cannot be rolled back on this database",
            unread + on_rollback,
        )
    return CheckResult(
        "data at risk", "ok", f"no pending step destroys existing data{hint}", unread + on_rollback
    )


def _rehearsal(
    project: Project, connection: Connection, plan: Plan
) -> tuple[list[CheckResult], str | None]:
    """The rehearsal and drift checks, and why the rehearsal could not run (no scratch copy)."""
    try:
        result = rehearse(project, connection, plan)
    except RollbackError as exc:
        return [CheckResult("rehearsal", "error", f"could not run: {exc.message}")], exc.message
    if result.failed:
        return [
            CheckResult("rehearsal", "error", f"{result.failed}: {result.problem}", result.differences)
        ], None
    copied = (
        f"; the schema was copied by reflection ({result.reflected}): tables, indexes and "
        "constraints only, no extensions, functions, views or triggers"
        if result.reflected
        else ""
    )
    checks = [
        CheckResult(
            "rehearsal", "ok",
            f"{plural(len(result.steps), 'pending migration')} applied, reverted (schema identical) and "
            f"re-applied on a scratch copy{copied}",
        )
    ]
    if result.drift:
        checks.append(
            CheckResult(
                "drift", "error",
                "the models differ from the migrations; run 'flask db makemigrations'",
                result.drift,
            )
        )
    else:
        checks.append(CheckResult("drift", "ok", "the models match the migrations"))
    return checks, None
