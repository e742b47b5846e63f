"""Looking without changing: status per app, check, history per app, Alembic's informational verbs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from ..deploys import DeployLog, DeployRecord
from ..errors import (
    EXIT_DATABASE_BEHIND,
    EXIT_MODELS_DIFFER,
    EXIT_MULTIPLE_HEADS,
    EXIT_SNAPSHOT_STALE,
    RollbackError,
)
from ..drawing import Drawing
from ..graph import Migration, gc_paused
from ..lock import lock_table_holder, named_holder
from ..partial import RUNNING, PartialLog, PartialStep
from ..plan import RELATIVE_RE
from ..project import Comparison, Project
from ..recorder import LogEntry, as_utc
from ..snapshot import stale_files
from ..wording import format_time, shown_path
from .context import open_database, read_state

if TYPE_CHECKING:
    from alembic.script import Script


@dataclass(slots=True)
class MigrationStatus:
    """One migration and whether (and when) it is applied."""

    migration: Migration
    applied: bool
    applied_at: datetime | None
    #: Recorded as applied without running (stamp, --fake-initial).
    fake: bool = False


@dataclass
class AppStatus:
    """An app: its migrations in order, its heads and where the database stands."""

    label: str
    directory: Path
    migrations: list[MigrationStatus]
    heads: list[str]
    current: list[str]
    #: Migrations of this app left partly applied (partial.py): the app needs attention.
    partial: list[PartialStep] = field(default_factory=list)

    @property
    def pending(self) -> list[MigrationStatus]:
        return [m for m in self.migrations if not m.applied]


@dataclass
class Status:
    """Every app's status plus the global order (Django's ``showmigrations --plan``)."""

    apps: list[AppStatus]
    order: list[MigrationStatus]
    stored_heads: tuple[str, ...]


def status(project: Project, apps: Sequence[str] = (), applied_at: bool = True) -> Status:
    """Every app's migrations, applied or not; ``applied_at=False`` leaves the applied log
    unread (``current`` shows no times), so each ``applied_at`` is None."""
    for label in apps:
        project.registry.get(label)
    project.graph  # noqa: B018 - the folders are checked before a database file is created
    with project.connect() as connection, gc_paused():
        planner, times = read_state(project, connection, log=applied_at)
        faked = project.recorder.faked(connection) if applied_at else set()
        connection.rollback()
        partial = PartialLog(project.settings.log_table).unresolved(connection)
        if any(step.state == RUNNING for step in partial) and _migrating(project, connection):
            # the marker of the step a run is in right now (partial.py), not a step to resolve
            partial = [step for step in partial if step.state != RUNNING]
        partial = [step.undo_checked(connection) for step in partial]  # offer --undo only when it runs
    applied = planner.applied
    graph = project.graph  # read after the database: without a squash it stands inside of
    with gc_paused():
        order = [
            MigrationStatus(m, m.revision in applied, _applied_time(m, times) if m.revision in applied else None,
                            m.revision in faked)
            for m in graph.migrations.values()
        ]
    by_app: dict[str, list[MigrationStatus]] = {}
    for item in order:
        by_app.setdefault(item.migration.app, []).append(item)
    result = []
    for label in apps or project.registry.labels:
        app = project.registry.get(label)
        result.append(
            AppStatus(
                label,
                app.directory,
                by_app.get(label, []),
                graph.app_heads(label),
                graph.position(label, applied),
                [step for step in partial if step.app == label],
            )
        )
    return Status(result, order, planner.stored_heads)

def _applied_time(migration: Migration, times: dict[str, datetime]) -> datetime | None:
    """When an applied migration was last applied; a squash never run itself: when its last
    original was."""
    found = times.get(migration.revision)
    if found is None and migration.replaces:
        found = max((times[rev] for rev in migration.replaces if rev in times), default=None)
    return found


def _migrating(project: Project, connection: Connection) -> bool:
    """Does a run hold the migration lock now (MariaDB/MySQL named lock, or the lock table)?"""
    if project.settings.lock == "table":
        return lock_table_holder(connection, project.settings.lock_table) is not None
    return named_holder(connection, project.settings.version_table) is not None


# -- the applied log -------------------------------------------------------------------------


@dataclass
class LogLine:
    """A row of the applied log, its times in UTC, with the deploy that applied or rolled it
    back (None: a plain upgrade or downgrade, or a stamp)."""

    entry: LogEntry
    deploy: int | None

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.entry.__dict__, deploy=self.deploy)
        for key in ("started_at", "finished_at"):
            data[key] = data[key].isoformat()
        return data


def applied_log(project: Project, app: str | None = None, limit: int | None = None) -> list[LogLine]:
    """The applied log, newest first: every migration applied or reverted (``app``'s only, at
    most ``limit``); empty when nothing was ever applied."""
    if app is not None:
        project.registry.get(app)
    with project.connect() as connection:
        entries = project.recorder.newest(connection, app, limit)
        deploys = DeployLog(project.settings.deploy_table).all(connection) if entries else []
        connection.rollback()
    entries = [
        replace(entry, started_at=as_utc(entry.started_at), finished_at=as_utc(entry.finished_at))
        for entry in entries
    ]
    return [LogLine(entry, _deploy_of(entry, deploys)) for entry in entries]


def _deploy_of(entry: LogEntry, deploys: list[DeployRecord]) -> int | None:
    """The deploy a log row belongs to: one that lists the migration and, going up, ran while
    the row was written; going down, rolled back at or after it (and after it finished)."""
    for record in deploys:
        if entry.revision not in record.migrations:
            continue
        started, finished = as_utc(record.started_at), record.finished_at and as_utc(record.finished_at)
        if entry.direction == "up":
            if started <= entry.started_at and (finished is None or entry.finished_at <= finished):
                return record.id
        elif record.rolled_back_at is not None and finished is not None:
            if finished <= entry.started_at and entry.finished_at <= as_utc(record.rolled_back_at):
                return record.id
    return None


# -- checking -------------------------------------------------------------------------------


@dataclass
class CheckReport:
    """Problems found by ``check``; the exit code names the first kind found. ``notes`` say
    what may be done but need not (squashed originals that can be deleted)."""

    problems: list[tuple[int, str]]
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return self.problems[0][0] if self.problems else 0


def check(project: Project, database: Comparison = "scratch") -> CheckReport:
    """Are heads single, the schema snapshots current, the database current and the models
    matched by migrations?

    The models are compared with the schema the migrations build on a scratch database, so a
    database that is behind still gets that comparison; ``database="live"`` compares with the
    live database instead, only when it is current."""
    problems: list[tuple[int, str]] = []
    graph = project.graph
    for label in project.registry.labels:
        heads = graph.app_heads(label)
        if len(heads) > 1:
            problems.append(
                (EXIT_MULTIPLE_HEADS, f"app {label!r} has {len(heads)} heads: {', '.join(heads)}")
            )
    problems += [(EXIT_SNAPSHOT_STALE, line) for line in stale_files(project)]
    with open_database(project) as (connection, planner):
        graph = project.graph  # without the squashes the database stands inside of
        pending = [m.label for m in graph.migrations.values() if m.revision not in planner.applied]
        notes = [leftover.advice() for leftover in squash_leftovers(project, connection, planner.applied)]
    if pending:
        problems.append(
            (EXIT_DATABASE_BEHIND, f"the database is behind: {len(pending)} pending: {', '.join(pending)}")
        )
    if not problems or (
        database == "scratch"
        and all(code in (EXIT_DATABASE_BEHIND, EXIT_SNAPSHOT_STALE) for code, _ in problems)
    ):
        from .author import makemigrations  # autogenerate: only when models are compared

        new = makemigrations(project, check=True, database=database)
        for migration in new:
            shipped = " shipped with its installed package (upgrade the package)" if migration.read_only else ""
            problems.append(
                (EXIT_MODELS_DIFFER,
                 f"models of app {migration.app!r} differ from its migrations{shipped}: "
                 + "; ".join(migration.operations))
            )
    return CheckReport(problems, notes)


@dataclass
class SquashLeftover:
    """A squash whose original files are still there, and whether they can go."""

    #: The squash; None when the database stands inside its range (it is set aside).
    squash: Migration | None
    path: Path
    originals: list[Path]
    #: Why they must stay; None when every database known here has applied them all.
    keep_because: str | None

    def advice(self) -> str:
        """The line ``check`` prints: the command that deletes them, or why they stay."""
        if self.keep_because is not None:
            return f"keep the original migrations of squash {_shown(self.path)}: {self.keep_because}"
        assert self.squash is not None
        first, last = self.originals[0].stem, self.originals[-1].stem
        return (
            f"the original migrations of squash {self.squash.label} can be deleted (every "
            f"database known here applied all of them): 'flask db squashmigrations "
            f"{self.squash.app} {first} {last} --delete-originals' (or delete "
            f"{', '.join(_shown(path) for path in self.originals)})"
        )


def squash_leftovers(project: Project, connection: Connection, applied: set[str]) -> list[SquashLeftover]:
    """Squashes with original files beside them (squash.py). The originals can be deleted once
    the database applied the whole range and no deploy record stands inside it (a backup of
    that moment would need them); a database inside a range reads the originals instead."""
    from ..deploys import DeployLog

    graph = project.graph
    found: list[SquashLeftover] = []
    for squash in sorted(project.unsquashed):
        found.append(SquashLeftover(
            None, project.hidden_migrations[squash].path, [],
            "the database applied only part of them ('flask db upgrade' finishes them)",
        ))
    records = DeployLog(project.settings.deploy_table).all(connection)
    connection.rollback()
    recorded = {rev for r in records for rev in [*r.stored_heads_before, *r.stored_heads_after]}
    for migration in graph.migrations.values():
        files = [project.hidden_migrations[rev].path for rev in migration.replaces
                 if rev in project.hidden_migrations]
        if not files:
            continue
        inner = recorded.intersection(migration.replaces[:-1])
        if migration.revision not in applied:
            why = "the database has not applied them all yet ('flask db upgrade' applies the squash)"
        elif inner:
            why = (f"deploy records stand inside its range ({', '.join(sorted(inner))}): a "
                   "database restored to that point (a backup taken then) needs them to upgrade")
        else:
            why = None
        found.append(SquashLeftover(migration, migration.path, files, why))
    return found


def _shown(path: Path) -> str:
    """Relative to the working directory when inside it (what a user types), else absolute."""
    resolved, here = path.resolve(), Path.cwd().resolve()
    return str(resolved.relative_to(here)) if resolved.is_relative_to(here) else str(resolved)


# -- graph ----------------------------------------------------------------------------------


def graph(project: Project, apps: Sequence[str] = (), applied: bool = False) -> Drawing:
    """The migration graph of every app (or of ``apps``, with the other apps' migrations they
    depend on), from the revision index; ``applied`` reads each database's version table to
    mark what is applied. Nothing is imported from the migration files."""
    for label in apps:
        project.registry.get(label)
    whole = project.graph
    labels = list(dict.fromkeys(apps)) or project.registry.labels
    drawn = [m for m in whole.migrations.values() if m.app in labels]
    needed = {rev for m in drawn for rev in m.dependencies} - {m.revision for m in drawn}
    shown = {m.revision for m in drawn} | needed
    by_app: dict[str, list[Migration]] = {}
    for migration in whole.migrations.values():  # the global order
        if migration.revision in shown:
            by_app.setdefault(migration.app, []).append(migration)
    ordered = {label: by_app.get(label, []) for label in labels}
    ordered.update({label: found for label, found in by_app.items() if label not in ordered})
    drawing = Drawing(
        ordered,
        parents=[(parent, m.revision) for m in drawn for parent in m.parents],
        dependencies=[(rev, m.revision) for m in drawn for rev in m.dependencies],
    )
    if applied:
        drawing.applied = set()
        apps_shown = set(ordered)
        for view in project.views():
            if not apps_shown & set(view.registry.labels):
                continue
            with view.connect() as connection:
                planner, _times = read_state(view, connection, log=False)
                connection.rollback()
            drawing.applied |= planner.applied
    return drawing


# -- history --------------------------------------------------------------------------------

#: Open ends of a history range, and the words that mean "where the database stands".
RANGE_BASE, RANGE_HEAD, RANGE_CURRENT = ("", "base"), ("", "head", "heads"), "current"


@dataclass
class HistoryEntry:
    """One migration as ``history`` shows it."""

    migration: Migration
    parents: list[Migration]
    dependencies: list[Migration]
    head: bool
    #: Where the app stands (only known when the database was read: ``indicate_current``).
    current: bool
    applied_at: datetime | None
    created: str | None


@dataclass
class AppHistory:
    """One app's migrations in a history range, newest first."""

    label: str
    entries: list[HistoryEntry]


@dataclass
class History:
    """``history``: per app, newest first, with Django names."""

    apps: list[AppHistory]

    @property
    def migrations(self) -> list[Migration]:
        """In the order shown."""
        return [entry.migration for app in self.apps for entry in app.entries]

    def lines(self, verbose: bool = False) -> list[str]:
        """The text ``flask db history`` prints; ``verbose`` adds ids, parents, dependencies,
        dates and paths."""
        lines = []
        for app in self.apps:
            lines.append(app.label)
            if not app.entries:
                lines.append("  (no migrations)")
            for entry in app.entries:
                marks = [word for word, on in (("head", entry.head), ("current", entry.current)) if on]
                lines.append(f"  {entry.migration.name}" + (f" ({', '.join(marks)})" if marks else ""))
                if verbose:
                    lines.extend(f"      {line}" for line in _details(entry))
        return lines


def _details(entry: HistoryEntry) -> list[str]:
    """``-v``: everything that identifies a migration and where it stands in the graph."""
    migration = entry.migration
    details = [f"revision: {migration.revision}"]
    details.append(f"parent: {_labelled(entry.parents) or '(base)'}")
    if entry.dependencies:
        details.append(f"depends on: {_labelled(entry.dependencies)}")
    if entry.created:
        details.append(f"created: {entry.created}")
    if entry.applied_at:
        details.append(f"applied: {format_time(entry.applied_at)}")
    details.append(f"path: {shown_path(migration.path)}")
    return details


def _labelled(migrations: list[Migration]) -> str:
    return ", ".join(f"{m.label} ({m.revision})" for m in migrations)


def history(
    project: Project,
    apps: Sequence[str] = (),
    rev_range: str | None = None,
    indicate_current: bool = False,
) -> History:
    """Every app's migrations (or ``apps``'), newest first; ``rev_range`` is ``START:END``
    within one app, each end a migration as every command takes it (``blog.0002``), ``base``,
    ``heads``, ``APP@base``, ``APP@head`` or ``current``. The database is read only for
    ``indicate_current`` or a ``current`` end."""
    graph = project.graph
    for label in apps:
        project.registry.get(label)
    if rev_range is not None and ":" not in rev_range:
        raise RollbackError(
            f"history range {rev_range!r} needs a colon: START:END (either may be empty), "
            "e.g. 'blog.0002:' or ':blog@head'"
        )
    low, high = rev_range.split(":", 1) if rev_range is not None else ("", "")
    scope_app = apps[0] if len(apps) == 1 else None
    low_end, high_end = _range_end(project, low, scope_app), _range_end(project, high, scope_app)
    named = {end.app for end in (low_end, high_end) if end.app is not None}
    if len(named) > 1:
        raise RollbackError(
            f"history range {rev_range!r} spans apps {', '.join(sorted(named))}; a range stays "
            "within one app (show several apps with 'flask db history APP APP')"
        )
    if named and apps and not named <= set(apps):
        raise RollbackError(
            f"history range {rev_range!r} is in app {next(iter(named))!r}, not in {', '.join(apps)}"
        )
    labels = sorted(named) or list(apps) or project.registry.labels
    reads_database = indicate_current or RANGE_CURRENT in (low_end.word, high_end.word)
    status_by_app = {app.label: app for app in status(project, labels).apps} if reads_database else {}
    result = []
    for label in labels:
        app_status = status_by_app.get(label)
        current = set(app_status.current) if app_status else set()
        applied_at = {s.migration.revision: s.applied_at for s in app_status.migrations} if app_status else {}
        heads = set(graph.app_heads(label))
        lows, highs = low_end.revisions(current), high_end.revisions(current)
        above = graph.dependents(lows) if lows else None  # empty: an app at base, all above
        below = graph.closure(highs) if highs is not None else None
        chosen = [
            m for m in graph.of_app(label)
            if (above is None or m.revision in above) and (below is None or m.revision in below)
        ]
        result.append(AppHistory(label, [
            HistoryEntry(
                m, [graph.migrations[rev] for rev in m.parents],
                [graph.migrations[rev] for rev in m.dependencies],
                m.revision in heads, indicate_current and m.revision in current,
                applied_at.get(m.revision), m.created,
            )
            for m in reversed(chosen)
        ]))
    return History(result)


@dataclass
class _RangeEnd:
    """One end of a history range: open (``base``/``heads``), ``current``, or a migration;
    ``app`` when the end names one."""

    word: str
    app: str | None = None
    migration: Migration | None = None

    def revisions(self, current: set[str]) -> set[str] | None:
        """The revisions the range is bounded by in an app standing at ``current``; None: open."""
        if self.migration is not None:
            return {self.migration.revision}
        if self.word == RANGE_CURRENT:
            return current
        return None


def _range_end(project: Project, text: str, scope_app: str | None) -> _RangeEnd:
    word = text.strip()
    if word in RANGE_BASE or word in RANGE_HEAD or word == RANGE_CURRENT:
        return _RangeEnd(word)
    if word in project.registry:
        return _RangeEnd(word, word)
    app, at, rest = word.partition("@")
    if at and (rest in RANGE_BASE or rest in RANGE_HEAD):
        project.registry.get(app)
        return _RangeEnd(rest, app)
    if RELATIVE_RE.match(rest if at else word):
        raise RollbackError(
            f"history range end {word!r} is relative; give a migration (e.g. 'blog.0002'), "
            "base, heads or current"
        )
    words = word.split()  # 'blog 0002', as upgrade takes it
    migration = project.graph.named(words) if len(words) == 2 else project.graph.find(word, scope_app)
    return _RangeEnd(word, migration.app, migration)



# -- Flask-Migrate's informational verbs, as Alembic prints them -----------------------------


def alembic_verb(project: Project, verb: str, *args: Any, **kwargs: Any) -> None:
    """show, heads, branches, current, edit and history, printed as Alembic prints them.

    Alembic's own commands read every migration file into a ScriptDirectory of their own,
    importing each module; the first five run the same few lines over ``project.script``
    instead (Alembic's Script objects made from the revision index, formatted by Alembic,
    each docstring read from its file), so no migration module is imported."""
    from alembic import command as alembic_command
    from alembic.util import CommandError

    indexed = _INDEXED_VERBS.get(verb)
    try:
        if indexed is None:
            getattr(alembic_command, verb)(project.config, *args, **kwargs)
        else:
            indexed(project, *args, **kwargs)
    except CommandError as exc:
        raise RollbackError(str(exc)) from None


def _scripts(project: Project, rev: str) -> list[Script]:
    """The scripts Alembic's symbol names; ``current``: the stored heads (Alembic reads them the
    same way, through env.py)."""
    if rev == "current":
        return list(project.script.get_revisions(status(project, applied_at=False).stored_heads))
    return [script for script in project.script.get_revisions(rev) if script is not None]


def _show(project: Project, rev: str) -> None:
    for script in _scripts(project, rev):
        project.config.print_stdout(script.log_entry)


def _edit(project: Project, rev: str) -> None:
    from alembic.util import CommandError, open_in_editor

    scripts = _scripts(project, rev)
    if not scripts:
        raise CommandError(
            "No current revisions" if rev == "current"
            else f"No revision files indicated by symbol '{rev}'"
        )
    for script in scripts:
        open_in_editor(script.path)


def _heads(project: Project, verbose: bool = False, resolve_dependencies: bool = False) -> None:
    script = project.script
    heads = script.get_revisions("heads" if resolve_dependencies else script.get_heads())
    for head in heads:
        project.config.print_stdout(
            head.cmd_format(verbose, include_branches=True, tree_indicators=False)
        )


def _branches(project: Project, verbose: bool = False) -> None:
    script = project.script
    points = [point for point in script.walk_revisions() if point.is_branch_point]
    if not points:
        project.config.print_stdout("No branches: no migration has more than one child.")
    for point in points:
        project.config.print_stdout(
            "%s\n%s\n",
            point.cmd_format(verbose, include_branches=True),
            "\n".join(
                f"{' ' * len(str(point.revision))} -> "
                + child.cmd_format(False, include_branches=True, include_doc=verbose)
                for child in (script.get_revision(rev) for rev in point.nextrev)
            ),
        )


def _current(project: Project, verbose: bool = False) -> None:
    stored = status(project, applied_at=False).stored_heads
    if verbose:
        project.config.print_stdout(
            "Current revisions for %s:", project.url.render_as_string(hide_password=True)
        )
    for script in project.script.get_all_current(stored):
        project.config.print_stdout(script.cmd_format(verbose))


_INDEXED_VERBS: dict[str, Callable[..., None]] = {
    "show": _show, "edit": _edit, "heads": _heads, "branches": _branches, "current": _current,
}
