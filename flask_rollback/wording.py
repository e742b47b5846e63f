"""Words for people, shared by the library's messages and the CLI (cli/output.py): counted
nouns that agree ("1 migration", "2 migrations"), times in local time with the zone, and paths
as a user would type them."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``count`` and the noun that agrees with it; ``nouns`` when the plural is not noun + s."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def shown_path(path: Path | str | None) -> str:
    """Relative to the working directory when inside it (what a user types), else absolute;
    ``(none)`` for a path that is not known. The last part is not resolved: a message about a
    symlink names the symlink, not what it points to."""
    if path is None:
        return "(none)"
    absolute = Path(os.path.abspath(path))
    resolved = absolute.parent.resolve() / absolute.name
    here = Path.cwd().resolve()
    return os.path.relpath(resolved, here) if resolved.is_relative_to(here) else str(resolved)


def format_time(moment: datetime) -> str:
    """A time for people: local, to the second, with the zone (``2026-11-30 08:12:03
    UTC+01:00``); a time without a zone is the UTC the database stored. JSON keeps UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    offset, zone = _local_zone(moment.toordinal(), moment.hour * 4 + moment.minute // 15)
    return f"{(moment + offset).isoformat(' ', 'seconds')[:19]} {zone}"


@lru_cache(maxsize=4096)
def _local_zone(day: int, quarter: int) -> tuple[timedelta, str]:
    """The local offset during a quarter hour of a UTC day, and its name (``UTC``,
    ``UTC+05:30``): zones change offset on quarter hours, so it is asked once per quarter hour,
    not once per line of a listing of 10,000 migrations."""
    start = datetime.fromordinal(day).replace(tzinfo=timezone.utc) + timedelta(minutes=15 * quarter)
    offset = start.astimezone().utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return offset, f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}" if minutes else "UTC"
