"""Archive commands: archives (list, --drop) and restore."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .. import commands
from ..errors import EXIT_COULD_NOT_RUN, RollbackError
from ..project import Project
from ..wording import plural
if TYPE_CHECKING:  # the archive machinery loads when an archive command runs
    from ..archive import ArchiveRecord
from .group import (
    announce,
    bind_option,
    bind_views,
    by_bind,
    current_project,
    db_group,
    each_bind,
    echo_lines,
    emit_json,
    json_option,
    lock_timeout_option,
)
from .output import YELLOW, format_time, paint, table


@db_group.command("archives")
@json_option
@click.option("--drop", "drop", default=None, metavar="ARCHIVE", help="Discard this archive.")
@lock_timeout_option
@bind_option
def archives_command(as_json: bool, drop: str | None, lock_timeout: float | None) -> None:
    """Archives kept by --archive runs, newest first (or discard one with --drop)."""
    views = bind_views(current_project())
    if drop is not None:
        record = commands.drop_archive(_one_bind(views, "--drop"), drop, lock_timeout=lock_timeout, announce=announce)
        click.echo(f"Dropped archive {record.name} ({plural(record.rows, 'row')} of {record.object}).")
        return
    if as_json:
        emit_json(by_bind(views, [
            [record.as_dict() for record in records]
            for records in each_bind(views, commands.archives, heading=False)
        ]))
        return
    each_bind(views, lambda view: _show_archives(commands.archives(view)))


def _one_bind(views: list[Project], what: str) -> Project:
    """An archive lives in one bind's database: with several, ``--bind`` says which."""
    if len(views) > 1:
        raise RollbackError(
            f"{what} works on one database: name its bind with --bind KEY (see 'flask db "
            "archives'); nothing was changed",
            exit_code=EXIT_COULD_NOT_RUN,
        )
    return views[0]


def _show_archives(records: list[ArchiveRecord]) -> None:
    if not records:
        click.echo("No archives.")
        return
    echo_lines(table(
        ("archive", "object", "rows", "from migration", "direction", "created"),
        (
            (record.name, record.object, record.rows, record.migration, record.direction,
             format_time(record.created_at))
            for record in records
        ),
    ))


@db_group.command("restore")
@click.argument("archives", nargs=-1, required=True)
@lock_timeout_option
@bind_option
def restore_command(archives: tuple[str, ...], lock_timeout: float | None) -> None:
    """Write archives' values back (matched by primary key), in the order given, then drop each."""
    view = _one_bind(bind_views(current_project()), "restore")
    for name in archives:
        result = commands.restore(view, name, lock_timeout=lock_timeout, announce=announce)
        record = result.archive
        click.echo(
            f"Restored {record.object} from {record.name}: {plural(result.updated, 'row')} updated, "
            f"{result.inserted} inserted."
        )
        if result.dropped:
            click.echo(f"Dropped archive {record.name}.")
        else:
            click.echo(
                f"{paint('Warning:', YELLOW, err=True)} {plural(result.unmatched, 'archived row')} found no row with the same key; "
                f"the archive is kept ('flask db archives --drop {record.name}' discards it).",
                err=True,
            )
