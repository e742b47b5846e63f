"""Archive commands: archives (list, --drop) and restore."""

from __future__ import annotations

import click

from .. import commands
from .group import (
    announce,
    current_project,
    db_group,
    emit_json,
    json_option,
    lock_timeout_option,
)


@db_group.command("archives")
@json_option
@click.option("--drop", "drop", default=None, metavar="ARCHIVE", help="Discard this archive.")
@lock_timeout_option
def archives_command(as_json: bool, drop: str | None, lock_timeout: float | None) -> None:
    """Archives kept by --archive runs, newest first (or discard one with --drop)."""
    if drop is not None:
        record = commands.drop_archive(current_project(), drop, lock_timeout=lock_timeout, announce=announce)
        click.echo(f"Dropped archive {record.name} ({record.rows} row(s) of {record.object}).")
        return
    records = commands.archives(current_project())
    if as_json:
        emit_json([record.as_dict() for record in records])
        return
    if not records:
        click.echo("No archives.")
    for record in records:
        click.echo(
            f"{record.name}  {record.object}  {record.rows} row(s)  from {record.migration} "
            f"({record.direction})  {record.created_at:%Y-%m-%d %H:%M:%S}"
        )


@db_group.command("restore")
@click.argument("archives", nargs=-1, required=True)
@lock_timeout_option
def restore_command(archives: tuple[str, ...], lock_timeout: float | None) -> None:
    """Write archives' values back (matched by primary key), in the order given, then drop each."""
    for name in archives:
        result = commands.restore(current_project(), name, lock_timeout=lock_timeout, announce=announce)
        record = result.archive
        click.echo(
            f"Restored {record.object} from {record.name}: {result.updated} row(s) updated, "
            f"{result.inserted} inserted."
        )
        if result.dropped:
            click.echo(f"Dropped archive {record.name}.")
        else:
            click.echo(
                f"Warning: {result.unmatched} archived row(s) found no row with the same key; "
                f"the archive is kept ('flask db archives --drop {record.name}' discards it).",
                err=True,
            )
