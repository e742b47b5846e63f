"""How results are shown: plans, data-at-risk tables, archives, run summaries, gate reports."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import click

from .. import commands
from ..wording import format_time, plural, shown_path  # noqa: F401 - the commands' words, from here

if TYPE_CHECKING:  # loaded only by the commands that produce them
    from ..archive import ArchiveSpec
    from ..dataloss import DataLossReport
    from ..executor import Progress
    from ..gate import GateReport
    from ..plan import Plan, Step
    from ..predict import Prediction


#: Colours by meaning: done, failed, look again.
GREEN, RED, YELLOW = "green", "red", "yellow"


def paint(text: str, colour: str, err: bool = False) -> str:
    """``text`` in ``colour`` on a terminal, unless ``NO_COLOR`` is set (https://no-color.org);
    never in a pipe or a file."""
    stream = click.get_text_stream("stderr" if err else "stdout")
    if os.environ.get("NO_COLOR") or not stream.isatty():
        return text
    return click.style(text, fg=colour)


def table(header: Sequence[str], rows: Iterable[Sequence[object]], indent: str = "") -> list[str]:
    """Aligned columns under a header, two spaces apart; a column of numbers (``int`` or
    ``float`` cells) right-aligned; trailing spaces dropped."""
    data = [list(row) for row in rows]
    right = [
        bool(data) and all(isinstance(row[i], (int, float)) and not isinstance(row[i], bool) for row in data)
        for i in range(len(header))
    ]
    cells = [list(header)] + [[str(cell) for cell in row] for row in data]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return [
        (indent + "  ".join(
            cell.rjust(width) if align else cell.ljust(width)
            for cell, width, align in zip(row, widths, right)
        )).rstrip()
        for row in cells
    ]


def print_new(new: Sequence[commands.NewMigration], dry_run: bool, verbose: int = 0) -> None:
    """Each new migration: its file and revision id, operations and dependencies; with
    ``verbose``, the whole file exactly as it is (or, in a dry run, would be) written."""
    if not new:
        click.echo("No changes detected.")
        return
    for item in new:
        if item.read_only:
            click.echo(
                f"Not written: app {item.app!r} is read-only (its migrations ship with an installed "
                f"package) and its models differ from them ({'; '.join(item.operations)}); "
                "upgrade the package"
            )
            continue
        verb = "Would create" if dry_run else "Created"
        click.echo(f"{verb} migration {shown_path(item.path)} (revision {item.revision})")
        for operation in item.operations:
            click.echo(f"  - {operation}")
        if item.depends_on:
            named = (f"{name} ({revision})" if name != revision else revision
                     for name, revision in zip(item.depends_on_names or item.depends_on, item.depends_on))
            click.echo(f"  depends on {', '.join(named)}")
        if verbose:
            click.echo(item.code, nl=False)


def print_adoption(result: commands.Adoption) -> None:
    """What adopt did (or would do): each file's new name, the env.py notes, the backup."""
    if result.nothing_to_do:
        click.echo(f"Nothing to do: {result.nothing_to_do}.")
        return
    if result.backup is None and result.files:
        moved = "Would move" if result.dry_run else "Moved"
        click.echo(
            f"{moved} {plural(len(result.files), 'migration file')} left in {shown_path(result.source)} into the "
            "history they continue (revision ids kept):"
        )
        for item in result.files:
            click.echo(f"  {shown_path(item.source)} -> {shown_path(item.target)}")
        return
    would = "Would adopt" if result.dry_run else "Adopted"
    at = (
        f"; the database is at {', '.join(result.database_revisions)}, which it provides"
        if result.database_revisions else "; the database has no version rows yet"
    )
    click.echo(
        f"{would} the {result.kind} history of {shown_path(result.source)} into app {result.app!r}: "
        f"{plural(len(result.files), 'migration')}, revision ids kept{at}."
    )
    for item in result.files:
        label = f"  (branch label {result.app!r} added)" if item.labelled else ""
        click.echo(f"  {shown_path(item.source)} -> {shown_path(item.target)}{label}")
    click.echo(f"  env.py, script.py.mako: flask-rollback's, in {shown_path(result.root)}")
    if result.notes:
        click.echo(
            f"The old env.py did what flask-rollback does not do automatically (a copy is kept "
            f"as {shown_path(result.env_copy)}):"
        )
        for note in result.notes:
            click.echo(f"  - line {note.line}: {note.what}: {note.instead}")
    click.echo(f"Backup of the old folder: {shown_path(result.backup)}")
    if result.moved_ini:
        click.echo(f"alembic.ini moved into the backup: {shown_path(result.moved_ini)}")
    for folder in result.left_in_place:
        click.echo(f"Left in place (no longer read): {shown_path(folder)}")
    if result.empty_downgrades:
        click.echo(
            f"{plural(len(result.empty_downgrades), 'adopted migration')} {'has' if len(result.empty_downgrades) == 1 else 'have'} an empty downgrade(): going "
            "back past them is refused until each says why, with noop_downgrade = \"...\" (nothing "
            "to undo, e.g. a data migration) or irreversible = \"...\":"
        )
        for item in result.empty_downgrades:
            click.echo(f"  - {shown_path(item.target)}")
    if result.dry_run:
        click.echo("Dry run: nothing was written.")
    elif result.version_table:
        click.echo(
            f"Before anything else, set ROLLBACK_VERSION_TABLE = {result.version_table!r}: the "
            "database's version rows are there; then 'flask db showmigrations' shows the history "
            "applied, with no stamping."
        )
    else:
        click.echo("No stamping needed: 'flask db showmigrations' shows the history applied.")


#: ``ctx.meta`` key: a progress line was begun and not ended (an error ends it first).
OPEN_LINE = "rollback.open_line"


class MigrationLines:
    """Django's progress: ``Applying blog.0002_tags...`` as a step starts (flushed, so a step
    that hangs shows which it is), `` OK (0.02 s)`` or `` FAKED`` when it is done; on stdout,
    whatever it is connected to."""

    def started(self, index: int, total: int, step: Step) -> None:
        verb = "Applying" if step.direction == "up" else "Unapplying"
        click.echo(f"{verb} {step.migration.label}...", nl=False)
        _set_open_line(True)

    def finished(self, index: int, total: int, step: Step, milliseconds: float) -> None:
        click.echo(" " + (paint("FAKED", YELLOW) if step.fake else f"{paint('OK', GREEN)} ({milliseconds / 1000:.2f} s)"))
        _set_open_line(False)


def _set_open_line(value: bool) -> None:
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[OPEN_LINE] = value


def end_open_line(ctx: click.Context) -> None:
    """A command failed while a progress line was open: end it with FAILED, then the error."""
    if ctx.meta.pop(OPEN_LINE, False):
        click.echo(" " + paint("FAILED", RED))


def progress(quiet: bool = False) -> Progress | None:
    """One line per migration as it runs; none with ``--quiet`` (the summary only)."""
    return None if quiet else MigrationLines()


#: Backends whose DDL statements commit at once (no transaction around a migration).
AUTOCOMMIT_DDL = {"mysql": "MariaDB/MySQL", "mariadb": "MariaDB"}


def _ddl_note() -> str | None:
    """On MariaDB/MySQL, what a plan cannot promise: each DDL statement commits as it runs."""
    ctx = click.get_current_context(silent=True)
    project = ctx.meta.get("rollback.project") if ctx is not None else None
    try:
        backend = project.url.get_backend_name() if project is not None else None
    except Exception:  # no database configured: nothing to say
        return None
    if backend not in AUTOCOMMIT_DDL:
        return None
    return (
        f"  Note: {AUTOCOMMIT_DDL[backend]} commits every DDL statement at once: a migration is "
        "not one transaction, and a migration that fails part-way leaves the statements that "
        "ran in place (the error lists them)."
    )


def print_plan(plan: Plan, problems: dict[str, str] | None = None) -> None:
    if not plan.steps:
        click.echo(f"Nothing to {plan.kind}: already at {plan.target}.")
        return
    counts = ", ".join(f"{app} {len(steps)}" for app, steps in plan.by_app().items())
    click.echo(f"Plan: {plan.kind} {plan.target}: {plural(len(plan), 'migration')} ({counts})")
    for number, step in enumerate(plan.steps, 1):
        arrow = "+" if step.direction == "up" else "-"
        note = (problems or {}).get(step.migration.revision)
        extra = f"  IRREVERSIBLE: {note}" if note else ""
        if step.fake:
            extra += "  FAKE: its tables exist; recorded as applied, not run"
        if step.migration.revision in plan.notes:
            extra += f"  NOT IN THE DEPLOY: {plan.notes[step.migration.revision]}"
        click.echo(f"  {number:>3}. {arrow} {step.migration.label}  ({step.migration.revision}){extra}")
    if plan.cascaded:
        click.echo(f"  (cascade into other apps: {', '.join(plan.cascaded)})")
    note = _ddl_note()
    if note:
        click.echo(note)
    if plan.notes:
        one = len(plan.notes) == 1
        click.echo(
            f"  ({plural(len(plan.notes), 'migration')} marked NOT IN THE DEPLOY "
            f"{'depends on it and is' if one else 'depend on it and are'} reverted too; "
            f"confirming, or --yes, accepts {'it' if one else 'them'})"
        )


def print_risks(report: DataLossReport | None, err: bool = False) -> None:
    """The data-loss table: migration, app, object, rows/values lost, why."""
    if report is None or not report.risks:
        return
    rows = [("migration", "app", "object", "lost", "operation")] + [
        (
            f"{'-' if risk.step.direction == 'down' else '+'} {risk.step.migration.label}",
            risk.step.app,
            risk.object,
            risk.amount,
            risk.operation.reason,
        )
        for risk in report.risks
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    click.echo(paint("Data at risk:", YELLOW, err=err), err=err)
    for row in rows:
        click.echo("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4], err=err)


def print_predictions(predictions: list[Prediction]) -> None:
    """Steps the rows now in the database would make fail, with the fix for each."""
    if not predictions:
        return
    click.echo("Would fail on live data:")
    for prediction in predictions:
        click.echo(f"  - {prediction}")


def print_archived(specs: list[ArchiveSpec], bind_flag: str = "") -> None:
    """One line per archive, then the one restore command, in the order that puts parents
    back before the children that point at them (the reverse of the order they were taken);
    ``bind_flag`` (`` --bind KEY``) when the project has several binds."""
    for spec in specs:
        what = f"{spec.table}.{spec.column}" if spec.column else spec.table
        click.echo(f"Archived {what} into {spec.name} before {spec.step.migration.label}.")
    if specs:
        names = " ".join(spec.name for spec in reversed(specs))
        click.echo(f"Once the objects exist again, 'flask db restore{bind_flag} {names}' writes it all back.")


def warn_unreviewed(report: DataLossReport | None, checked: bool) -> None:
    """Code that could not be read ahead: say whether its statements were checked as it ran."""
    how = "its statements are read and counted as they run" if checked else (
        "not checked: --allow-data-loss")
    for risk in report.unreviewed if report else []:
        click.echo(f"{paint('Note:', YELLOW, err=True)} {risk.step.migration.label}: {risk.operation.reason}; {how}", err=True)


def finish(result: commands.RunResult, bind_flag: str = "") -> None:
    if result.sql is not None:
        click.echo(result.sql, nl=False)
        return
    report = result.report
    if report.planned_only:
        print_plan(report.plan, result.problems)
        print_risks(result.risks)
        print_predictions(result.predictions)
        return
    if result.snapshot is not None:
        click.echo(result.snapshot.line, err=not result.snapshot.used)
        if result.snapshot.used:
            return
    warn_unreviewed(result.risks, not result.allow_data_loss)
    print_archived(result.archived, bind_flag)
    if not report.done:
        click.echo(f"Nothing to {report.plan.kind}: already at {report.plan.target}.")
        return
    verb = {"upgrade": "Applied", "downgrade": "Reverted", "stamp": "Stamped"}[report.plan.kind]
    counts = ", ".join(f"{app} {len(steps)}" for app, steps in report.plan.by_app().items())
    faked = [step.migration.label for step, _ in report.done if step.fake]
    fakes = f"; recorded without running (tables exist): {', '.join(faked)}" if faked else ""
    click.echo(f"{verb} {plural(len(report.done), 'migration')} ({counts}) in {report.seconds:.2f}s{fakes}.")

def print_report(report: GateReport, quiet: bool = False) -> None:
    """The gate's checks and verdict; ``quiet``: only the checks that found something, and
    the verdict."""
    for check in report.checks:
        if quiet and check.level == "ok":
            continue
        level = paint(f"{check.level:<8}", {"ok": GREEN, "warning": YELLOW}.get(check.level, RED))
        click.echo(f"{level} {check.name}: {check.message}")
        for detail in check.details:
            click.echo(f"           - {detail}")
    if report.could_not_run:
        return  # the command's Error: line says so
    errors = sum(c.level == "error" for c in report.checks)
    warnings = sum(c.level == "warning" for c in report.checks)
    if report.blocked:
        strict = " (--strict: warnings count)" if report.strict and warnings else ""
        click.echo(f"{paint('Blocked:', RED)} {plural(errors, 'error')}, {plural(warnings, 'warning')}{strict}.")
    elif report.pending:
        click.echo(f"{paint('Ready:', GREEN)} {plural(len(report.pending), 'pending migration')} can be deployed and rolled back.")
    else:
        click.echo(f"{paint('Ready:', GREEN)} no pending migrations.")

