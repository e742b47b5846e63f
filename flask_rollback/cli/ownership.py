"""App ownership commands: apps (who owns what, and why) and rename-app."""

from __future__ import annotations

from typing import Any

import click

from .. import commands
from ..apps import bind_name
from ..wording import plural, shown_path
from .group import (
    announce,
    bind_views,
    current_project,
    db_group,
    emit_json,
    json_option,
    lock_timeout_option,
)

HEADER = ("app", "source", "folder", "read-only", "table", "rule", "why")
#: With several binds a column says where each app lives.
BIND_HEADER = ("app", "bind", "source", "folder", "read-only", "table", "rule", "why")


def _apps_json(overviews: list[commands.AppOverview]) -> dict[str, Any]:
    return {
        "apps": [
            {
                "app": app.label,
                "bind": app.bind,
                "source": app.source,
                "claims": app.claims,
                "folder": shown_path(app.directory),
                "directory": str(app.directory.resolve()),
                "folder_origin": app.folder_origin,
                "read_only": app.read_only,
                "tables": [
                    {"table": t.table, "rule": t.rule, "reason": t.reason} for t in app.tables
                ],
            }
            for app in overviews
        ]
    }


@db_group.command("apps")
@json_option
def apps_command(as_json: bool) -> None:
    """Each app: where it comes from, its bind (with several), its folder, its tables and the
    rule behind each."""
    project = current_project()
    overviews = commands.apps(project)
    if as_json:
        emit_json(_apps_json(overviews))
        return
    several = project.several_binds
    header = BIND_HEADER if several else HEADER
    rows: list[tuple[str, ...]] = [header]
    for app in overviews:
        first: tuple[str, ...] = (
            app.label, app.source, shown_path(app.directory), "yes" if app.read_only else "no"
        )
        if several:
            first = (app.label, bind_name(app.bind), *first[1:])
        for number, ownership in enumerate(app.tables or (None,)):
            cells = first if number == 0 else ("",) * len(first)
            if ownership is None:
                rows.append((*cells, "-", "", ""))
            else:
                rows.append((*cells, ownership.table, ownership.rule, ownership.reason))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    for row in rows:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1]
        click.echo(line.rstrip())


@db_group.command("rename-app")
@click.argument("old")
@click.argument("new")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@lock_timeout_option
def rename_app_command(old: str, new: str, dry_run: bool, lock_timeout: float | None) -> None:
    """Rename app OLD to NEW: folder, branch label, depends_on, database records."""
    view = bind_views(current_project(), [old])[0]
    result = commands.rename_app(
        view, old, new, dry_run=dry_run, lock_timeout=lock_timeout, announce=announce
    )
    would = "Would " if dry_run else ""
    if result.moved_to is not None:
        verb = "move" if dry_run else "Moved"
        click.echo(f"{would}{verb} {shown_path(result.folder)} to {shown_path(result.moved_to)}")
    for path, fields in result.rewritten:
        verb = "rewrite" if dry_run else "Rewrote"
        click.echo(f"{would}{verb} {' and '.join(fields)} in {shown_path(path)}")
    records = result.records
    verb = "relabel" if dry_run else "Relabelled"
    click.echo(
        f"{would}{verb} {plural(records.log_rows, 'applied-log row')}, "
        f"{plural(records.archives, 'archive')}, {plural(records.deploys, 'deploy record')}"
    )
    if not dry_run:
        click.echo(f"Renamed app {old!r} to {new!r}; revision ids are unchanged.")
