"""Commands that look: showmigrations, current, heads, check, history, log, show, branches, graph."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click

from .. import commands, compat
from ..partial import RUNNING
from ..project import Comparison, Project
from .group import (
    bind_option,
    bind_views,
    by_bind,
    current_project,
    database_option,
    db_group,
    directory_option,
    each_bind,
    echo_lines,
    emit_json,
    json_option,
)
from .output import format_time, shown_path, table


def _status_json(status: commands.Status) -> dict[str, Any]:
    return {
        "apps": [
            {
                "app": app.label,
                "directory": shown_path(app.directory),
                "heads": app.heads,
                "current": app.current,
                "migrations": [
                    {
                        "name": s.migration.name,
                        "revision": s.migration.revision,
                        "applied": s.applied,
                        "applied_at": s.applied_at.isoformat() if s.applied_at else None,
                        "fake": s.fake,
                    }
                    for s in app.migrations
                ],
                "partly_applied": [
                    {"revision": p.revision, "name": p.name, "direction": p.direction,
                     "failed_at": p.failed_at.isoformat(), "error": p.error, "state": p.state,
                     "statements": p.statements}
                    for p in app.partial
                ],
            }
            for app in status.apps
        ]
    }


@db_group.command("showmigrations")
@click.argument("apps", nargs=-1)
@click.option("--plan", "as_plan", is_flag=True, help="One list in the order migrations apply.")
@json_option
@bind_option
def showmigrations_command(apps: tuple[str, ...], as_plan: bool, as_json: bool) -> None:
    """[X] applied / [ ] pending, per app, with applied times."""
    project = current_project()
    views = bind_views(project, apps)
    if as_json:
        emit_json(by_bind(views, [_status_json(status) for status in each_bind(
            views, lambda view: commands.status(view, [a for a in apps if a in view.registry] or list(apps)),
            heading=False,
        )]))
        return
    each_bind(views, lambda view: _show_status(
        commands.status(view, [a for a in apps if a in view.registry] or list(apps)), apps, as_plan
    ))


def _show_status(status: commands.Status, apps: tuple[str, ...], as_plan: bool) -> None:
    if as_plan:
        echo_lines(table(
            ("", "migration", "applied"),
            (
                (_mark(item), item.migration.label + (" (fake)" if item.fake else ""),
                 format_time(item.applied_at) if item.applied_at else "")
                for item in status.order if not apps or item.migration.app in apps
            ),
        ))
        return
    for app in status.apps:
        echo_lines(_app_status_lines(app))


def _mark(item: commands.MigrationStatus) -> str:
    return "[X]" if item.applied else "[ ]"


def _app_status_lines(app: commands.AppStatus) -> Iterator[str]:
    yield app.label + ("  NEEDS ATTENTION: a migration is partly applied" if app.partial else "")
    if not app.migrations:
        yield " (no migrations)"
    partial = {step.revision: step for step in app.partial}
    for item in app.migrations:
        when = f"  (applied {format_time(item.applied_at)})" if item.applied_at else ""
        step = partial.get(item.migration.revision)
        if step is None:
            yield f" {_mark(item)} {item.migration.name}{' (fake)' if item.fake else ''}{when}"
            continue
        if step.state == RUNNING:  # its run died; the next locked command checks it
            yield (
                f" [!] {item.migration.name}  INTERRUPTED ({step.direction}, started "
                f"{format_time(step.failed_at)}): its process ended mid-step"
            )
            for number, text in enumerate(step.statements, 1):
                ran = "may have run" if number == len(step.statements) else "committed"
                yield f"       {ran}: {text}"
            yield f"       {step.advice()}"
            continue
        yield (
            f" [!] {item.migration.name}  PARTLY APPLIED ({step.direction}, failed "
            f"{format_time(step.failed_at)}: {step.error})"
        )
        for text in step.statements:
            yield f"       committed: {text}"
        yield f"       {step.advice()}"


@db_group.command("graph")
@click.argument("apps", nargs=-1)
@click.option(
    "--format", "form", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True,
    help="Mermaid (renders in GitHub/GitLab Markdown) or Graphviz DOT ('dot -Tsvg').",
)
@click.option("--applied", is_flag=True, help="Read the database: applied migrations filled, pending dashed.")
@directory_option
def graph_command(apps: tuple[str, ...], form: str, applied: bool) -> None:
    """The migration graph per app: down_revision arrows, dashed cross-app depends_on, merge
    points as hexagons."""
    drawing = commands.graph(current_project(), apps, applied)
    click.echo(drawing.mermaid() if form == "mermaid" else drawing.dot(), nl=False)


@db_group.command("current")
@directory_option
@json_option
@click.option("-v", "--verbose", is_flag=True, help="Show file paths.")
@bind_option
def current_command(as_json: bool, verbose: bool) -> None:
    """Where the database stands, per app."""
    views = bind_views(current_project())
    if as_json:
        emit_json(by_bind(views, [
            {"apps": {a.label: a.current for a in status.apps}, "stored_heads": list(status.stored_heads)}
            for status in each_bind(views, current_status, heading=False)
        ]))
        return
    each_bind(views, lambda view: _show_current(current_status(view), verbose))


def current_status(view: Project) -> commands.Status:
    """Where each app stands; no applied times are shown, so the applied log is not read."""
    return commands.status(view, applied_at=False)


def _show_current(status: commands.Status, verbose: bool) -> None:
    graph_names = {s.migration.revision: s.migration for s in status.order}
    for app in status.apps:
        if not app.current:
            click.echo(f"{app.label}: (none)")
        for rev in app.current:
            migration = graph_names[rev]
            flag = " (head)" if rev in app.heads else ""
            path = f"  {shown_path(migration.path)}" if verbose else ""
            click.echo(f"{app.label}: {rev} {migration.name}{flag}{path}")


@db_group.command("heads")
@directory_option
@json_option
@click.option("-v", "--verbose", is_flag=True, help="Also each head's file, as Alembic's -v shows it.")
@click.option(
    "--resolve-dependencies", is_flag=True,
    help="Only heads no other app's migration depends on (depends_on counts as a parent).",
)
def heads_command(as_json: bool, verbose: bool, resolve_dependencies: bool) -> None:
    """The head migrations of each app (one each, unless an app has several heads)."""
    project = current_project()
    graph = project.graph
    shown = set(compat.head_revisions(graph, resolve_dependencies))
    heads = {
        label: [rev for rev in graph.app_heads(label) if rev in shown]
        for label in project.registry.labels
    }
    if resolve_dependencies:  # an app whose head others depend on has none to show
        heads = {label: revs for label, revs in heads.items() if revs}
    if as_json:
        emit_json({"apps": heads})
        return
    for label, revs in heads.items():
        for rev in revs or ["(none)"]:
            migration = graph.migrations.get(rev)
            name = f" {migration.name}" if migration else ""
            path = f"  {shown_path(migration.path)}" if verbose and migration else ""
            click.echo(f"{label}: {rev}{name}{path}")


@db_group.command("check")
@directory_option
@json_option
@database_option
@bind_option
def check_command(as_json: bool, database: Comparison) -> None:
    """Exit 0 when all is current; 3 models differ, 4 database behind, 5 several heads in an app
    (with several binds: the first problem's code, binds in order)."""
    views = bind_views(current_project())

    def one(view: Project) -> commands.CheckReport:
        report = commands.check(view, database)
        if not as_json:
            if not report.problems:
                click.echo("No problems: single heads, database current, models match the migrations.")
            for _code, message in report.problems:
                click.echo(message)
            for note in report.notes:
                click.echo(f"Note: {note}")
        return report

    reports = each_bind(views, one, heading=not as_json)
    if as_json:
        emit_json(by_bind(views, [
            {"ok": not report.problems, "exit_code": report.exit_code,
             "problems": [{"code": c, "message": m} for c, m in report.problems],
             "notes": report.notes}
            for report in reports
        ]))
    code = next((report.exit_code for report in reports if report.exit_code), 0)
    if code:
        raise click.exceptions.Exit(code)


@db_group.command("history")
@directory_option
@click.argument("apps", nargs=-1)
@click.option("-r", "--rev-range", default=None, help="START:END within one app, e.g. blog.0002: or :blog@head.")
@click.option("-v", "--verbose", is_flag=True, help="Also ids, parents, dependencies, dates and paths.")
@click.option("-i", "--indicate-current", is_flag=True, help="Mark where the database stands.")
@bind_option
def history_command(apps: tuple[str, ...], rev_range: str | None, verbose: bool, indicate_current: bool) -> None:
    """Migrations per app (all, or APPS), newest first."""

    def one(view: Project) -> None:
        mine = tuple(a for a in apps if a in view.registry) or apps
        echo_lines(commands.history(view, mine, rev_range, indicate_current).lines(verbose))

    project = current_project()
    each_bind(bind_views(project, apps), one)


@db_group.command("log")
@click.argument("app", required=False)
@json_option
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N", help="Only the N newest rows.")
@bind_option
def log_command(app: str | None, as_json: bool, limit: int | None) -> None:
    """The applied log, newest first: each migration applied or reverted (all, or APP's), when,
    how long it took, by whom and where, real or fake, its file's checksum and its deploy."""
    views = bind_views(current_project(), [app] if app else [])
    if as_json:
        emit_json(by_bind(views, [
            [line.as_dict() for line in lines]
            for lines in each_bind(views, lambda view: commands.applied_log(view, app, limit), heading=False)
        ]))
        return
    each_bind(views, lambda view: echo_lines(_log_lines(commands.applied_log(view, app, limit), app)))


def _log_lines(lines: list[commands.LogLine], app: str | None) -> list[str]:
    if not lines:
        return [f"No migrations of app {app!r} applied yet." if app else "No migrations applied yet."]
    return table(
        ("when", "app", "migration", "action", "run", "took", "by", "deploy", "sha256"),
        (
            (
                format_time(line.entry.finished_at), line.entry.app, line.entry.name,
                "applied" if line.entry.direction == "up" else "reverted",
                "fake" if line.entry.fake else "real",
                f"{line.entry.duration_ms / 1000:.2f} s", f"{line.entry.user}@{line.entry.host}",
                str(line.deploy) if line.deploy is not None else "-", line.entry.sha256[:12],
            )
            for line in lines
        ),
    )


@db_group.command("show")
@directory_option
@click.argument("revision", nargs=-1)
def show_command(revision: tuple[str, ...]) -> None:
    """Show a migration: blog.0002, blog 0002, a revision id, APP (its head), heads or current."""
    project = current_project()
    for migration in compat.migrations_named(project, " ".join(revision) or "heads"):
        commands.alembic_verb(project, "show", migration.revision)


@db_group.command("branches")
@directory_option
@click.option("-v", "--verbose", is_flag=True, help="Also each branch point's details, as Alembic's -v shows them.")
def branches_command(verbose: bool) -> None:
    """Show branch points."""
    commands.alembic_verb(current_project(), "branches", verbose=verbose)

