"""The ready-made checks of ``pytest --flask-rollback``: one function per check, each taking the
project of an app made for the test (its databases fresh and empty) and returning one line per
problem, each naming the migration. They call what ``flask db`` itself uses: the graph's heads,
makemigrations' comparison, the rehearsal's round trip, the data-loss simulation and the
downgrade declarations of checks.py.

A check that cannot run because a migration file cannot be read (that is the
``migration-files`` check's finding) raises ``CannotCheck`` instead of reporting it again.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..analysis import Operation
from ..checks import downgrade_problem
from ..dataloss import Shadow, step_operations
from ..errors import RollbackError
from ..executor import execute
from ..graph import Migration
from ..index import migration_files as files_in
from ..plan import Plan, Step
from ..project import Project
from ..rehearsal import excluded_tables, revert_differences
from ..statements import DeleteRows

FILES_CHECK = "migration-files"


class CannotCheck(Exception):
    """The check could not run; the message says why and which check reports the cause."""


@dataclass(frozen=True)
class Check:
    name: str
    #: What passing means, for the test report.
    title: str
    run: Callable[[Project], list[str]]


def one_head_per_app(project: Project) -> list[str]:
    """An app with several heads cannot be migrated to "its head"."""
    graph = _readable(project).graph
    problems = []
    for label in project.all_apps.labels:
        heads = graph.app_heads(label)
        if len(heads) > 1:
            names = ", ".join(graph.migrations[rev].label for rev in heads)
            problems.append(
                f"app {label!r} has {len(heads)} heads: {names}; join them with 'flask db merge {label}'"
            )
    return problems


def models_match_migrations(project: Project) -> list[str]:
    """What ``flask db makemigrations --check`` finds: models the migrations do not build."""
    from ..commands import makemigrations

    problems = []
    for view in _readable(project).views():
        try:
            missing = makemigrations(view, check=True)
        except RollbackError as exc:
            several = [label for label in view.registry.labels if len(view.graph.app_heads(label)) > 1]
            if several:
                raise CannotCheck(
                    f"cannot compare the models: app {several[0]!r} has several heads "
                    "(see the one-head-per-app check)"
                ) from None
            raise CannotCheck(f"cannot compare the models: {exc.message}") from None
        problems += [
            f"models of app {new.app!r} differ from its migrations: {'; '.join(new.operations)}; "
            f"run 'flask db makemigrations {new.app}'"
            for new in missing
        ]
    return problems


def up_down_up(project: Project) -> list[str]:
    """Each migration applied, reverted (the schema must be exactly as before) and applied
    again, in order from an empty database. Migrations declared irreversible are only applied;
    an undeclared empty downgrade is the migration-files check's finding."""
    problems = []
    for view in _readable(project).views():
        with view.connect() as connection:
            exclude = excluded_tables(view, connection)
            for migration, reversible in _walk(view, connection):
                step = Step(migration, "up")
                try:
                    if reversible:
                        found = revert_differences(view, connection, step, exclude)
                        if found:
                            problems.append(
                                f"{migration.label}: its downgrade does not restore the schema: "
                                + "; ".join(found)
                            )
                            break  # what follows would stand on a wrong schema
                    _run(view, connection, step)
                except RollbackError as exc:
                    problems.append(f"{migration.label}: {exc.message}")
                    break
    return problems


def no_silent_data_loss(project: Project) -> list[str]:
    """No downgrade destroys data that was there before its upgrade ran: reverting a
    migration must give back the data it started from (a rename reverted by drop and re-add
    does not). Read from the migration's operations on the schema before it, as the data-loss
    guard reads them; a downgrade the reader cannot follow is left to the guard at run time."""
    problems = []
    for view in _readable(project).views():
        with view.connect() as connection:
            dialect = connection.dialect.name
            for migration, reversible in _walk(view, connection):
                up, down = Step(migration, "up"), Step(migration, "down")
                reverting = step_operations(view, down, dialect)
                if reversible and not any(op.risk == "review" for op in reverting):
                    shadow = Shadow(connection, dry=True)
                    applying = step_operations(view, up, dialect)
                    for operation in applying:
                        shadow.apply(operation.effects, operation.reason)
                    seeded = _seeded_tables(applying)
                    for operation in reverting:
                        if _removes_seeded_rows(operation, seeded):
                            continue  # a seed's downgrade: the guard counts the rows at run time
                        for loss in shadow.apply(operation.effects, operation.reason):
                            where = f"{loss.table}.{loss.column}" if loss.column else loss.table
                            problems.append(
                                f"{migration.label}: its downgrade {operation.reason}, destroying "
                                f"data of {where} that was there before it was applied; make "
                                "downgrade() put that data back, or declare "
                                'irreversible = "why"'
                            )
                    connection.rollback()
                try:
                    _run(view, connection, up)
                except RollbackError as exc:
                    raise CannotCheck(
                        f"{migration.label} does not apply ({exc.message}; see the up-down-up check)"
                    ) from None
    return problems


def _seeded_tables(operations: list[Operation]) -> set[str]:
    """Tables an upgrade inserts rows into (``op.bulk_insert``, ``INSERT``): seed data."""
    return {
        op.table for op in operations
        if op.table and (op.kind == "bulk_insert" or (op.sql or "").lstrip().upper().startswith("INSERT"))
    }


def _removes_seeded_rows(operation: Operation, seeded: set[str]) -> bool:
    """A downgrade's ``DELETE ... WHERE`` on a table its upgrade seeded takes back those rows,
    not data that was there before (a ``DELETE`` without ``WHERE`` still counts)."""
    return bool(operation.effects) and all(
        isinstance(effect, DeleteRows) and effect.where is not None and effect.table.table in seeded
        for effect in operation.effects
    )


def dependencies_declared(project: Project) -> list[str]:
    """No migration uses a table (alters it, points a foreign key at it, writes to it) that
    another migration creates unless it stands on that migration (down_revision or
    depends_on): applied alone, in dependency order, it would find no such table."""
    problems = []
    for view in _readable(project).views():
        graph, dialect = view.graph, view.url.get_backend_name()
        creator: dict[str, Migration] = {}
        for migration in graph.migrations.values():
            for operation in step_operations(view, Step(migration, "up"), dialect):
                if operation.kind == "create_table" and operation.table:
                    creator.setdefault(operation.table, migration)
        for migration in graph.migrations.values():
            below = graph.closure([migration.revision])
            reported: set[str] = set()
            for operation in step_operations(view, Step(migration, "up"), dialect):
                for table in _tables_used(operation):
                    owner = creator.get(table)
                    if owner is None or owner.revision in below or table in reported:
                        continue
                    reported.add(table)
                    problems.append(
                        f"{migration.label} uses table {table}, which {owner.label} creates, "
                        f"without depending on it: add depends_on = {owner.revision!r} "
                        "(or make it come later in its app)"
                    )
    return problems


def migration_files(project: Project) -> list[str]:
    """Every migration file parses and imports, and its downgrade is real or declared
    (``irreversible = "why"``, ``noop_downgrade = "why"``)."""
    problems = []
    for app in project.all_apps:
        for path in files_in(app.directory) if app.directory.is_dir() else []:
            try:
                ast.parse(path.read_bytes(), filename=str(path))
            except (SyntaxError, ValueError) as exc:
                lineno = getattr(exc, "lineno", None)
                line = f" at line {lineno}" if lineno else ""
                reason = getattr(exc, "msg", None) or str(exc)
                problems.append(f"{_shown(path)}: syntax error{line}: {reason}")
    if problems:
        return problems
    try:
        graph = project.graph
    except RollbackError as exc:
        return [exc.message]
    for migration in graph.migrations.values():
        try:
            module = project.script.get_revision(migration.revision).module
        except RollbackError as exc:
            problems.append(f"{migration.label}: {exc.message}")
            continue
        why = downgrade_problem(module)
        if why and not why.startswith("declared irreversible"):
            problems.append(f"{migration.label} ({_shown(migration.path)}): {why}")
    return problems


CHECKS: dict[str, Check] = {
    check.name: check
    for check in (
        Check("one-head-per-app", "every app has one head", one_head_per_app),
        Check("models-match-migrations", "the models match the migrations", models_match_migrations),
        Check("up-down-up", "every migration goes up, down and up again with an identical schema", up_down_up),
        Check("no-silent-data-loss", "no downgrade destroys data that was there before its upgrade", no_silent_data_loss),
        Check("dependencies-declared", "no migration uses a table before the migration creating it", dependencies_declared),
        Check(FILES_CHECK, "every migration file parses and has a real or declared downgrade", migration_files),
    )
}


# -- shared -----------------------------------------------------------------------------------


def _readable(project: Project) -> Project:
    """The project, once every migration file is known to load; else CannotCheck."""
    try:
        for migration in project.graph.migrations.values():
            project.script.get_revision(migration.revision).module  # noqa: B018 - imports it
    except RollbackError as exc:
        raise CannotCheck(f"the migrations cannot be read (see the {FILES_CHECK} check): {exc.message}") from None
    return project


def _walk(project: Project, connection: Connection) -> Iterator[tuple[Migration, bool]]:
    """Every migration in order, with whether its downgrade is meant to run; the caller
    applies it before the next one is given."""
    for migration in project.graph.migrations.values():
        module = project.script.get_revision(migration.revision).module
        yield migration, not migration.irreversible and downgrade_problem(module) is None


def _run(project: Project, connection: Connection, step: Step) -> None:
    heads = project.recorder.stored_heads(connection)
    connection.rollback()
    plan = Plan("upgrade" if step.direction == "up" else "downgrade", step.migration.label, [step], heads, ())
    execute(project, connection, plan)


def _tables_used(operation: Operation) -> set[str]:
    """Tables an operation needs to exist: the one it changes (not one it creates) and those
    its foreign keys point at."""
    used = set()
    if operation.table and operation.kind != "create_table":
        used.add(operation.table)
    source: Any = operation.source
    keys: list[sa.ForeignKey] = []
    for item in getattr(source, "columns", None) or []:  # create_table: columns and constraints
        if isinstance(item, sa.Column):
            keys += list(item.foreign_keys)
        elif isinstance(item, sa.ForeignKeyConstraint):
            keys += list(item.elements)
    column = getattr(source, "column", None)  # add_column
    if isinstance(column, sa.Column):
        keys += list(column.foreign_keys)
    for key in keys:
        parts = key.target_fullname.split(".")
        if len(parts) >= 2:
            used.add(parts[-2])
    referent = getattr(source, "referent_table", None)  # create_foreign_key
    if isinstance(referent, str):
        used.add(referent)
    return used


def _shown(path: Path) -> str:
    """A path relative to the current directory when inside it."""
    try:
        return os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd()) else str(path)
    except ValueError:
        return str(path)
