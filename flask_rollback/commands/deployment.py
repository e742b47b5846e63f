"""Safe deploys: the predeploy gate, deploy, deploy records and rollback."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import signals
from ..archive import ArchiveSpec
from ..backup import backup_database
from ..dataloss import DataLossError, DataLossReport, assess
from ..deploys import APPLIED, FAILED, ROLLED_BACK, RUNNING, DeployLog, DeployRecord
from ..database import mask
from ..errors import EXIT_COULD_NOT_RUN, RollbackError
from ..executor import Progress, RunReport
from ..gate import CheckResult, GateReport, graph_failure, run_gate
from ..guard import DataGuard
from ..interrupts import Interrupted
from ..lock import Announce
from ..plan import Plan, Planner
from ..project import Project
from .context import open_database, positions, run_hooks
from .migrate import irreversible_steps

#: Key of the deploy record's report holding the round id of a deploy over several binds.
BIND_ROUND = "bind_round"

# -- safe deploys -----------------------------------------------------------------------------


def predeploy(project: Project, *, strict: bool = False, rehearse: bool = True) -> GateReport:
    """Run every gate check against the configured database; apply nothing to it.
    ``rehearse`` False skips the rehearsal (reported as a warning) and the replay that checks
    the schema snapshots."""
    try:
        project.graph  # noqa: B018 - broken files are a gate error, not a crash
        with open_database(project) as (connection, planner):
            report = run_gate(project, connection, planner, strict, rehearse_steps=rehearse)
        checked = snapshot_check(project, rehearse)
        if checked is not None:
            report.checks.append(checked)
        return report
    except Interrupted as exc:
        exc.outcome.append("nothing was applied")
        raise
    except RollbackError as exc:
        if exc.exit_code == EXIT_COULD_NOT_RUN:
            raise
        return graph_failure(exc.message)


def snapshot_check(project: Project, replay: bool) -> CheckResult | None:
    """A stale snapshot is a warning (upgrade ignores it); with ``replay``, a current one that
    differs from the dump of a scratch database every migration ran on is an error (upgrade
    would build a wrong schema from it). None: no snapshot (or snapshots off), no line."""
    from ..snapshot import snapshot_files, stale_files, verify

    name = "schema snapshot"
    if not project.settings.snapshots or not snapshot_files(project):
        return None
    stale = stale_files(project)
    if stale:
        return CheckResult(
            name, "warning", "not current: upgrade ignores it and replays the migrations", stale
        )
    if not replay:
        return CheckResult(name, "ok", "current (not compared with a replay: --no-rehearsal)")
    try:
        wrong = verify(project)
    except RollbackError as exc:
        return CheckResult(name, "warning", f"could not be compared with a replay: {exc.message}")
    if wrong:
        return CheckResult(name, "error", "current by its digests but not what the migrations build", wrong)
    return CheckResult(name, "ok", "equal to the schema the migrations build")


@dataclass
class DeployResult:
    """The gate's report, and the record and run of the deploy when it happened."""

    report: GateReport
    record: DeployRecord | None = None
    run: RunReport | None = None
    archived: list[ArchiveSpec] = field(default_factory=list)


def deploy(
    project: Project,
    *,
    strict: bool = False,
    label: str | None = None,
    git_sha: str | None = None,
    lock_timeout: float | None = None,
    announce: Announce | None = None,
    progress: Progress | None = None,
    allow_data_loss: bool = False,
    archive: bool | None = None,
    rehearse: bool = True,
    bind_round: str | None = None,
    gated: Callable[[GateReport], None] | None = None,
) -> DeployResult:
    """Lock, gate, before_deploy hooks, apply all pending migrations, record, after_deploy hooks.

    Like ``upgrade``, refuses to destroy existing data unless ``allow_data_loss`` or ``archive``
    (which then do not make the gate's "data at risk" block a ``strict`` deploy).
    ``bind_round``: the id shared by the records one ``flask db deploy`` writes on several
    binds, so ``rollback`` undoes them together (``round_to_undo``). ``gated`` is told the gate's
    report as soon as it is known, before anything is applied (so it is shown before the steps).
    """
    check_deploy_names(label, git_sha)
    deploy_log = DeployLog(project.settings.deploy_table)
    with open_database(project, lock=True, lock_timeout=lock_timeout, announce=announce) as (
        connection,
        planner,
    ):
        try:
            guard = DataGuard(project, allow_data_loss, archive)
            report = run_gate(
                project, connection, planner, strict, rehearse_steps=rehearse,
                accepted=guard.accepted,
            )
            if gated is not None:
                gated(report)
            plan = planner.upgrade()
            if report.blocked or not plan.steps:
                return DeployResult(report)
            guard.decide(connection, plan, report.data_loss, "deploy")
            backup = None
            if project.settings.backup_dir:
                backup = str(backup_database(connection, project.url, project.settings.backup_dir))
            run_hooks(project, "before_deploy", signals.before_deploy, plan=plan)
            # The backup and the hooks took time: count again on the data as it is now (each
            # step counts once more, under its lock, as it runs).
            guard.decide(connection, plan, assess(project, connection, plan), "deploy")
        except Interrupted as exc:
            exc.outcome.append("nothing was applied")
            raise
        deploy_id = deploy_log.start(
            connection,
            stored_heads_before=list(planner.stored_heads),
            heads_before=positions(project, planner.applied),
            migrations=[],
            report={**report.as_dict(), **({BIND_ROUND: bind_round} if bind_round else {})},
            label=label,
            git_sha=git_sha,
            backup=backup,
        )
        try:
            run = guard.execute(connection, plan, progress)
        except RollbackError as exc:
            _record_failure(project, connection, deploy_log, deploy_id, plan, exc.message)
            message = f"deploy {deploy_id} failed: {exc.message}"
            if isinstance(exc, DataLossError):
                raise DataLossError(exc.report, message) from exc
            raise RollbackError(message, exit_code=exc.exit_code) from exc
        except sa.exc.SQLAlchemyError as exc:  # e.g. the connection dropped between steps
            reason = mask(_first_line(exc), project.url)
            _record_failure(project, connection, deploy_log, deploy_id, plan, reason)
            raise RollbackError(f"deploy {deploy_id} failed: {reason}") from exc
        except Interrupted as exc:
            _record_failure(
                project, connection, deploy_log, deploy_id, plan, f"terminated by {exc.signal_name}",
                interrupted=exc,
            )
            exc.outcome.append(f"deploy {deploy_id} was recorded as failed")
            raise
        applied = planner.applied | {step.migration.revision for step in plan.steps}
        try:
            deploy_log.finish(
                connection, deploy_id, APPLIED,
                stored_heads_after=list(plan.heads_after),
                heads_after=positions(project, applied),
                migrations=[step.migration.revision for step in plan.steps],
            )
        except sa.exc.SQLAlchemyError as exc:
            raise _unrecorded(deploy_id, "its migrations were applied", exc, project) from exc
        record = deploy_log.get(connection, deploy_id)
        connection.rollback()
    run_hooks(project, "after_deploy", signals.after_deploy, plan=plan, deploy=record)
    return DeployResult(report, record, run, guard.archived)


def _record_failure(
    project: Project, connection: Connection, deploy_log: DeployLog, deploy_id: int, plan: Plan,
    error: str, interrupted: Interrupted | None = None,
) -> None:
    """Close the deploy record as failed, with what it got done before it stopped. When the
    database cannot be reached to do so (the server went away mid-deploy), one error that
    names the deploy and the repair command."""
    try:
        deploy_log.finish(
            connection, deploy_id, FAILED, migrations=_applied_so_far(project, connection, plan),
            error=error, stored_heads_after=list(project.recorder.stored_heads(connection)),
        )
    except sa.exc.SQLAlchemyError as exc:
        failure = _unrecorded(deploy_id, f"it stopped ({error})", exc, project)
        if interrupted is None:
            raise failure from exc
        interrupted.outcome.append(failure.message)
        raise interrupted from exc


def _unrecorded(deploy_id: int, what: str, exc: Exception, project: Project) -> RollbackError:
    return RollbackError(
        f"deploy {deploy_id}: {what}, and the database could not be reached to record it "
        f"({mask(_first_line(exc), project.url)}); its record stays 'running': once the database "
        "is back, run 'flask db deploys --repair' to close it with what was applied",
        exit_code=EXIT_COULD_NOT_RUN,
    )


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


#: What ``--label`` and ``--git-sha`` may be: they are stored in columns of these sizes and
#: printed on one line.
LABEL_MAX = 255
GIT_SHA_RE = re.compile(r"[0-9a-fA-F]{1,64}")


def check_deploy_names(label: str | None, git_sha: str | None) -> None:
    """Refuse a label or commit id the deploy record cannot hold, before anything runs."""
    if label is not None:
        if not label.strip() or len(label) > LABEL_MAX:
            raise RollbackError(
                f"--label must be 1 to {LABEL_MAX} characters (got {len(label)}); nothing was run",
                exit_code=EXIT_COULD_NOT_RUN,
            )
        if not label.isprintable():
            raise RollbackError(
                "--label must be one line of printable characters (no control characters or "
                "newlines); nothing was run",
                exit_code=EXIT_COULD_NOT_RUN,
            )
    if git_sha is not None and not GIT_SHA_RE.fullmatch(git_sha):
        shown = git_sha if len(git_sha) <= 80 and git_sha.isprintable() else f"{len(git_sha)} characters"
        raise RollbackError(
            f"--git-sha must be a commit id, up to 64 hex digits (got {shown!r}); nothing was run",
            exit_code=EXIT_COULD_NOT_RUN,
        )


def _applied_so_far(project: Project, connection: Connection, plan: Plan) -> list[str]:
    """The plan's migrations that committed before a failure."""
    applied = project.graph.closure(project.recorder.stored_heads(connection))
    connection.rollback()
    return [step.migration.revision for step in plan.steps if step.migration.revision in applied]


def deploys(project: Project, *, repair: bool = False, lock_timeout: float | None = None) -> list[DeployRecord]:
    """Deploy records, newest first; ``repair`` closes records left running by a crash."""
    deploy_log = DeployLog(project.settings.deploy_table)
    with open_database(project, lock=repair, lock_timeout=lock_timeout) as (connection, _planner):
        if repair:
            heads = list(project.recorder.stored_heads(connection))
            applied = project.graph.closure(heads)
            connection.rollback()

            def outcome(record: DeployRecord) -> dict[str, Any]:
                before = project.graph.closure(record.stored_heads_before)
                return {
                    "migrations": [r for r in project.graph.migrations if r in applied - before],
                    "stored_heads_after": heads,
                    "heads_after": positions(project, applied),
                }

            deploy_log.repair(connection, outcome)
        records = deploy_log.all(connection)
        connection.rollback()
    return records


@dataclass
class RollbackResult:
    """The deploy being undone, the plan, and the run (None with --plan)."""

    record: DeployRecord
    plan: Plan
    problems: dict[str, str] = field(default_factory=dict)
    run: RunReport | None = None
    risks: DataLossReport | None = None
    archived: list[ArchiveSpec] = field(default_factory=list)


def rollback(
    project: Project,
    deploy_id: int | None = None,
    *,
    plan_only: bool = False,
    confirm: Callable[[Plan], bool] | None = None,
    lock_timeout: float | None = None,
    announce: Announce | None = None,
    progress: Progress | None = None,
    allow_data_loss: bool = False,
    archive: bool | None = None,
) -> RollbackResult:
    """Revert exactly the migrations a deploy applied (default: the latest deploy).

    Migrations applied after it by a plain ``upgrade`` that stand on them are reverted too,
    marked in ``plan.notes`` (``confirm`` sees them); others are left alone. Refused before
    anything runs if a step is irreversible or would destroy data written since the deploy
    (unless ``allow_data_loss``, or ``archive`` keeps a restorable copy).

    With ``confirm`` (a person answering), the question is asked before the migration lock is
    taken, so no one waits behind an unanswered prompt; under the lock the plan is made again
    and the rollback refused if it changed meanwhile."""
    deploy_log = DeployLog(project.settings.deploy_table)
    guard = DataGuard(project, allow_data_loss, archive)
    asked: list[tuple[str, str]] | None = None
    if confirm is not None and not plan_only:
        with open_database(project) as (connection, planner):
            result = _plan_rollback(project, deploy_log, connection, planner, deploy_id, guard)
        if not confirm(result.plan):
            raise RollbackError("rollback cancelled; nothing was changed")
        asked = _steps_of(result)
    with open_database(project, lock=not plan_only, lock_timeout=lock_timeout, announce=announce) as (
        connection,
        planner,
    ):
        result = _plan_rollback(
            project, deploy_log, connection, planner, deploy_id, guard, plan_only=plan_only
        )
        if plan_only:
            return result
        if asked is not None and _steps_of(result) != asked:
            raise RollbackError(
                f"the rollback plan changed while waiting for confirmation (another process "
                f"migrated the database); nothing was run: run 'flask db rollback"
                f"{'' if deploy_id is None else f' {deploy_id}'}' again to review the new plan",
                exit_code=EXIT_COULD_NOT_RUN,
            )
        record, plan = result.record, result.plan
        run_hooks(project, "before_rollback", signals.before_rollback, plan=plan, deploy=record)
        if not plan.steps:
            with connection.begin():
                deploy_log.mark_rolled_back(connection, record.id)
            return result
        finalize = lambda conn: deploy_log.mark_rolled_back(conn, record.id)  # noqa: E731
        try:
            result.run = guard.execute(connection, plan, progress, finalize)
        except Interrupted as exc:
            exc.outcome.append(f"deploy {record.id} stays recorded as {record.status}")
            raise
        result.archived = guard.archived
        return result


def _plan_rollback(
    project: Project,
    deploy_log: DeployLog,
    connection: Connection,
    planner: Planner,
    deploy_id: int | None,
    guard: DataGuard,
    *,
    plan_only: bool = False,
) -> RollbackResult:
    """The deploy to undo, the plan that undoes it, what is irreversible and what would be
    lost; raises (unless ``plan_only``) when the plan cannot run as it is."""
    records = deploy_log.all(connection)
    connection.rollback()
    record = _deploy_to_undo(records, deploy_id)
    plan = planner.revert(record.migrations, f"before deploy {record.id}")
    for step in plan.steps:
        revision = step.migration.revision
        if revision not in record.migrations:
            plan.notes[revision] = f"applied after deploy {record.id} by a plain upgrade"
    problems = irreversible_steps(project, plan)
    result = RollbackResult(record, plan, problems)
    if problems and not plan_only:
        listed = "; ".join(
            f"{project.graph.migrations[rev].label} {why}" for rev, why in problems.items()
        )
        raise RollbackError(f"cannot roll back deploy {record.id}: {listed}; nothing was run")
    if problems:
        return result
    result.risks = assess(project, connection, plan)
    if not plan_only:
        guard.decide(connection, plan, result.risks)  # refuse before asking to confirm
    return result


def round_to_undo(views: list[Project]) -> list[tuple[Project, int]]:
    """What ``rollback`` undoes over several binds: the latest deploy round, as ``(bind, deploy
    id)`` in reverse bind order. A round is the records one ``deploy`` wrote, one per bind that
    had pending migrations; the latest is that of the newest live record of any bind (a record
    written without a round, e.g. ``deploy --bind``, is a round of its own). A bind whose
    latest live record is from another round is left alone."""
    latest: list[tuple[Project, DeployRecord]] = []
    for view in views:
        with open_database(view) as (connection, _planner):
            records = DeployLog(view.settings.deploy_table).all(connection)
            connection.rollback()
        live = [r for r in records if r.status == APPLIED or (r.status == FAILED and r.migrations)]
        if live:
            latest.append((view, live[0]))
    if not latest:
        raise RollbackError("there is no deploy to roll back on any bind; see 'flask db deploys'")
    newest_view, newest = max(latest, key=lambda pair: pair[1].started_at)
    token = newest.report.get(BIND_ROUND)
    chosen = [
        (view, record.id) for view, record in latest
        if (view is newest_view) or (token is not None and record.report.get(BIND_ROUND) == token)
    ]
    return chosen[::-1]


def _steps_of(result: RollbackResult) -> list[tuple[str, str]]:
    return [(str(result.record.id), "deploy")] + [
        (step.migration.revision, step.direction) for step in result.plan.steps
    ]


def _deploy_to_undo(records: list[DeployRecord], deploy_id: int | None) -> DeployRecord:
    """The deploy to undo; refuses anything but the latest live one, and refuses while a newer
    deploy is marked running (undoing under it would act as if it had never happened)."""
    # A failed deploy that applied nothing has nothing to undo and blocks no older one.
    live = [r for r in records if r.status == APPLIED or (r.status == FAILED and r.migrations)]
    if deploy_id is None:
        if not live:
            raise RollbackError("there is no deploy to roll back; see 'flask db deploys'")
        record = live[0]
    else:
        found = next((r for r in records if r.id == deploy_id), None)
        if found is None:
            raise RollbackError(f"no deploy with id {deploy_id}; see 'flask db deploys'")
        if found.status == ROLLED_BACK:
            raise RollbackError(f"deploy {deploy_id} was already rolled back")
        record = found
    running = [r.id for r in records if r.status == RUNNING and r.id >= record.id]
    if running:
        raise RollbackError(
            f"deploy {running[0]} is marked running: if its process is gone, run "
            "'flask db deploys --repair' first"
        )
    later = [r.id for r in live if r.id > record.id]
    if later:
        raise RollbackError(
            f"deploy {deploy_id} is not the latest; roll back {'deploy' if len(later) == 1 else 'deploys'} "
            f"{', '.join(map(str, later))} first"
        )
    return record

