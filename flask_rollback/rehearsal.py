"""Rehearsal: pending migrations run up, down and up again on a scratch copy of the schema; and
the schema the migration files build, on a scratch database, for makemigrations to compare with.

The scratch database (scratch.py) gets the target's schema (never its rows, so the time does not
grow with the data) and version table. PostgreSQL: a temporary database; SQLite: a temporary
file. It is removed in a ``finally``, so a failure, Ctrl-C or SIGTERM never leaves it behind, and
swept by the next rehearsal when a killed process did.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from .autodetect import cycles_expected
from .database import connect, display_url
from .errors import EXIT_COULD_NOT_RUN, RollbackError
from .executor import execute
from .interrupts import Interrupted
from .plan import Plan, Planner, Step
from .project import Project
from .scratch import SCRATCH_BACKENDS, copy_schema, scratch_database

Snapshot = dict[str, dict[str, Any]]


@dataclass
class Rehearsal:
    """Outcome: which step failed and how, and what the models still differ in."""

    steps: list[str] = field(default_factory=list)
    failed: str | None = None
    problem: str | None = None
    differences: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    scratch: str = ""
    #: Why the tables were copied by reflection instead of pg_dump (None: the database's own
    #: definition was copied).
    reflected: str | None = None


def snapshot(connection: Connection, exclude: set[str]) -> Snapshot:
    """Everything a rollback must restore: tables, columns (type, nullability, default),
    primary keys, foreign keys, indexes, unique and check constraints.

    Read with the ``get_multi_*`` inspector calls: one catalog query per kind on PostgreSQL
    instead of one per table, and never a row of data."""
    inspector = sa.inspect(connection)
    names = sorted(set(inspector.get_table_names()) - exclude)
    if not names:
        return {}
    columns = inspector.get_multi_columns(filter_names=names)
    primary_keys = inspector.get_multi_pk_constraint(filter_names=names)
    foreign_keys = inspector.get_multi_foreign_keys(filter_names=names)
    indexes = inspector.get_multi_indexes(filter_names=names)
    uniques = inspector.get_multi_unique_constraints(filter_names=names)
    try:
        checks = inspector.get_multi_check_constraints(filter_names=names)
    except NotImplementedError:
        checks = {}
    result: Snapshot = {}
    for table in names:
        key = (None, table)
        result[table] = {
            "columns": {
                c["name"]: (
                    str(c["type"].compile(dialect=connection.dialect)),
                    c["nullable"],
                    str(c.get("default")),
                )
                for c in columns.get(key, [])
            },
            "primary key": tuple((primary_keys.get(key) or {}).get("constrained_columns") or ()),
            "foreign keys": sorted(
                (tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]))
                for fk in foreign_keys.get(key, [])
            ),
            "indexes": sorted(
                (ix["name"] or "", tuple(ix["column_names"]), bool(ix["unique"]))
                for ix in indexes.get(key, [])
            ),
            "unique constraints": sorted(tuple(u["column_names"]) for u in uniques.get(key, [])),
            "check constraints": sorted(
                " ".join(str(c["sqltext"]).split()) for c in checks.get(key, [])
            ),
        }
    return result


def differences(before: Snapshot, after: Snapshot) -> list[str]:
    """Human lines for every way two snapshots differ."""
    lines = []
    for table in sorted(set(before) | set(after)):
        if table not in after:
            lines.append(f"table {table} is missing")
            continue
        if table not in before:
            lines.append(f"table {table} was left behind")
            continue
        old, new = before[table], after[table]
        for column in sorted(set(old["columns"]) | set(new["columns"])):
            if column not in new["columns"]:
                lines.append(f"column {table}.{column} is missing")
            elif column not in old["columns"]:
                lines.append(f"column {table}.{column} was left behind")
            elif old["columns"][column] != new["columns"][column]:
                lines.append(
                    f"column {table}.{column} changed: {old['columns'][column]} -> {new['columns'][column]}"
                )
        for key in ("primary key", "foreign keys", "indexes", "unique constraints", "check constraints"):
            if old[key] != new[key]:
                lines.append(f"{key} of {table} changed: {old[key]} -> {new[key]}")
    return lines


def rehearse(project: Project, source: Connection, pending: Plan) -> Rehearsal:
    """Apply, revert and re-apply each pending migration on a scratch copy; then compare the
    result with the models.

    Raises RollbackError when there is no scratch copy (the rehearsal could not run)."""
    result = Rehearsal()
    settings = project.settings
    try:
        with scratch_database(project.url) as scratch_url:
            result.scratch = display_url(scratch_url)
            result.reflected = copy_schema(
                source, project.url, scratch_url, settings.version_table, settings.archive_table
            )
            with connect(scratch_url) as scratch:
                _rehearse_steps(project, scratch, pending, result)
    except Interrupted as exc:
        exc.outcome[:] = ["the rehearsal stopped and its scratch database was removed"]
        raise
    return result


@contextmanager
def migrations_schema(project: Project) -> Iterator[Connection]:
    """A scratch database of the project's backend holding the schema the migration files
    build: every migration run up to the heads by the executor. Comparing the models with it
    needs no live database, which may then be behind, ahead, empty or unreachable."""
    live = "compare with the live database at its heads instead (--database live)"
    backend = project.url.get_backend_name()
    if backend not in SCRATCH_BACKENDS:
        raise RollbackError(
            "the models are compared with the migrations' schema on a scratch database, which "
            f"flask-rollback makes for {' and '.join(SCRATCH_BACKENDS)} only, not {backend}; {live}",
            EXIT_COULD_NOT_RUN,
        )
    try:
        with (
            scratch_database(project.url, f"grant CREATEDB to the role, or {live}") as scratch_url,
            connect(scratch_url) as scratch,
        ):
            plan = Planner(project.graph, ()).upgrade()
            try:
                execute(project, scratch, plan)
            except RollbackError as exc:
                raise RollbackError(
                    f"building the migrations' schema on a scratch database failed: {exc.message}",
                    exc.exit_code,
                ) from None
            yield scratch
    except Interrupted as exc:
        exc.outcome[:] = ["the scratch database was removed and nothing was written"]
        raise


def _rehearse_steps(project: Project, scratch: Connection, pending: Plan, result: Rehearsal) -> None:
    exclude = excluded_tables(project, scratch)
    for step in pending.steps:
        result.steps.append(step.migration.label)
        try:
            if step.migration.irreversible:  # a barrier: nothing to rehearse back
                execute(project, scratch, _single(project, scratch, step, "up"))
                continue
            result.differences = revert_differences(project, scratch, step, exclude)
            if result.differences:
                result.failed = step.migration.label
                result.problem = "its downgrade does not restore the schema"
                return
            execute(project, scratch, _single(project, scratch, step, "up"))
        except RollbackError as exc:
            result.failed, result.problem = step.migration.label, exc.message
            return
    result.drift = _drift(project, scratch)


def revert_differences(project: Project, connection: Connection, step: Step, exclude: set[str]) -> list[str]:
    """Apply ``step``'s migration and revert it: how the schema (tables in ``exclude`` aside)
    then differs from before, empty when the downgrade restored it. A step that fails raises
    RollbackError. Shared by the rehearsal and the pytest plugin's round-trip check."""
    before = snapshot(connection, exclude)
    implicit: set[tuple[str, str, tuple[str, ...]]] = set()
    for direction in ("up", "down"):
        execute(project, connection, _single(project, connection, step, direction))
        if direction == "up" and connection.dialect.name in ("mysql", "mariadb"):
            implicit = _foreign_key_indexes(connection, exclude)
    return differences(before, _without_implicit_indexes(before, snapshot(connection, exclude), implicit))


def excluded_tables(project: Project, connection: Connection) -> set[str]:
    """flask-rollback's own tables (version table, logs, archives): never part of the schema a
    migration is compared on."""
    found = {t for t in sa.inspect(connection).get_table_names() if project.recorder.is_own_table(t)}
    connection.rollback()
    return project.recorder.own_tables | found


def _foreign_key_indexes(connection: Connection, exclude: set[str]) -> set[tuple[str, str, tuple[str, ...]]]:
    """MariaDB/MySQL: (table, name, columns) of each foreign key, whose index the server made."""
    inspector = sa.inspect(connection)
    names = sorted(set(inspector.get_table_names()) - exclude)
    found = inspector.get_multi_foreign_keys(filter_names=names) if names else {}
    connection.rollback()
    return {
        (table, fk["name"], tuple(fk["constrained_columns"]))
        for (_schema, table), keys in found.items() for fk in keys if fk.get("name")
    }


def _without_implicit_indexes(
    before: Snapshot, after: Snapshot, implicit: set[tuple[str, str, tuple[str, ...]]]
) -> Snapshot:
    """MariaDB/MySQL create an index for a foreign key that has none and keep it when the key is
    dropped: a downgrade dropping the key leaves that index behind. Such an index (named and
    keyed like a foreign key the upgrade made, not there before) is no difference; any other is."""
    if not implicit:
        return after
    cleaned: Snapshot = {}
    for table, shape in after.items():
        old = set(before.get(table, {}).get("indexes", []))
        kept = [
            index for index in shape["indexes"]
            if index in old or index[2] or (table, index[0], index[1]) not in implicit
        ]
        cleaned[table] = {**shape, "indexes": kept}
    return cleaned


def _single(project: Project, connection: Connection, step: Step, direction: str) -> Plan:
    heads = project.recorder.stored_heads(connection)
    connection.rollback()
    return Plan(
        "upgrade" if direction == "up" else "downgrade",
        step.migration.label,
        [Step(step.migration, direction)],  # type: ignore[arg-type]
        heads,
        (),
    )


def _drift(project: Project, connection: Connection) -> list[str]:
    """What autogenerate would still write after every migration: models ≠ migrations."""
    context = MigrationContext.configure(
        connection,
        opts={
            key: value
            for key, value in project.context_options(connection.dialect.name).items()
            if key in ("target_metadata", "compare_type", "compare_server_default", "include_name")
        },
    )
    with cycles_expected():
        diffs = compare_metadata(context, project.metadata)
    connection.rollback()
    return [_describe_diff(diff) for diff in diffs]


def _describe_diff(diff: Any) -> str:
    """('add_column', None, 'users', Column('age')) -> 'add_column users age'."""
    if isinstance(diff, list):
        return "; ".join(_describe_diff(d) for d in diff)
    parts = [diff[0]]
    for item in diff[1:]:
        if isinstance(item, str):
            parts.append(item)
        elif isinstance(getattr(item, "name", None), str):
            parts.append(item.name)
    return " ".join(parts)
