"""Reads migration files into Alembic's ScriptDirectory, one version location per app.

The graph comes from the revision index (index.py: each file's header read with ``ast``, cached
beside the files), so a syntax error, a missing ``revision`` or a revision id used twice is
reported by file name, and no migration module is imported until a step that uses it runs
(scripts.py). Nothing here imports Alembic until a Config is made.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .apps import AppRegistry
from .errors import RollbackError
from .index import (  # noqa: F401 - re-exported: adopt and ownership read files the same way
    MIGRATION_FILE_RE,
    REVISION_RE,
    Declared,
    constant_names,
    failing_file,
    migration_files,
    module_assignments,
    read_folder,
    validate_revision_id,
)
from .wording import plural, shown_path

if TYPE_CHECKING:
    from alembic.config import Config

TEMPLATES = Path(__file__).parent / "templates"


def alembic_config(
    root: Path,
    registry: AppRegistry,
    attributes: dict[str, Any],
    x_args: list[str],
    quiet: bool = False,
    staging: Iterable[Path] = (),
) -> Config:
    """An in-memory Alembic Config: no alembic.ini to keep in sync. ``staging`` folders are
    extra version locations, where makemigrations has Alembic write new files first."""
    from alembic.config import Config

    config = Config(
        cmd_opts=argparse.Namespace(x=x_args or None, quiet=quiet),
        stdout=sys.stdout,  # read now, so output goes where click (or a test runner) points it
    )
    config.set_main_option("script_location", _escape(str(root)))
    config.set_main_option("path_separator", "os")
    config.set_main_option(
        "version_locations",
        _escape(os.pathsep.join(str(d) for d in [*registry.directories().values(), *staging])),
    )
    config.attributes.update(attributes)
    return config


def _escape(value: str) -> str:
    return value.replace("%", "%%")


def check_layout(root: Path) -> None:
    if not (root / "env.py").is_file() or not (root / "script.py.mako").is_file():
        raise RollbackError(
            f"no migrations folder at {shown_path(root)} (env.py and script.py.mako missing); "
            "run 'flask db init' first"
        )




def runs_our_env(env: Path) -> bool:
    """Does this env.py call ``flask_rollback.env.run_env`` (what ``flask db init`` writes)?"""
    try:
        tree = ast.parse(env.read_bytes(), filename=str(env))
    except (SyntaxError, ValueError, OSError):
        return False
    local_names = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "flask_rollback.env"
        for alias in node.names
        if alias.name == "run_env"
    }
    return any(
        isinstance(node, ast.Call)
        and (dotted_name(node.func) == "flask_rollback.env.run_env" or dotted_name(node.func) in local_names)
        for node in ast.walk(tree)
    )


def dotted_name(node: ast.expr) -> str:
    """``a.b.c`` for a name or attribute chain; "" for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ""
    return ".".join([node.id, *reversed(parts)])


def foreign_layout(root: Path) -> list[str]:
    """What makes ``root`` a Flask-Migrate or plain Alembic folder rather than ours (empty: none)."""
    found = []
    if (root / "alembic.ini").is_file():
        found.append("alembic.ini")
    old = migration_files(root / "versions")
    if old:
        found.append(f"versions/ with {plural(len(old), 'migration file')}")
    if (root / "env.py").is_file() and not runs_our_env(root / "env.py"):
        found.append("an env.py that does not call flask_rollback.env.run_env")
    return found


def refuse_foreign_layout(root: Path) -> None:
    """A Flask-Migrate folder is not read as apps (its versions/ would become an app and its
    env.py would run): one line pointing at ``flask db adopt`` instead."""
    found = foreign_layout(root)
    if found:
        raise RollbackError(
            f"{shown_path(root)} is a Flask-Migrate or Alembic migrations folder ({', '.join(found)}); "
            "run 'flask db adopt' to convert it, keeping its history"
        )


def scan(registry: AppRegistry) -> dict[str, Declared]:
    """Every migration file's header (from the revision index, nothing imported), checked as
    Alembic would check the graph: revision id → header."""
    return scan_squashed(registry)[0]


def scan_squashed(
    registry: AppRegistry, unsquashed: Iterable[str] = ()
) -> tuple[dict[str, Declared], dict[str, Declared]]:
    """``scan``, and the original files hidden behind their squash (squash.py); the squashes in
    ``unsquashed`` are set aside for their originals instead.

    While no file changed, the index gives each folder's very same header list again, and the
    maps made from those lists last time are returned again (shared: never changed by a caller)."""
    from .squash import apply_squashes

    folders = tuple(app.directory for app in registry)
    found = [read_folder(folder) for folder in folders]
    key = (folders, frozenset(unsquashed))
    last = _scanned.get(key)
    if last is not None and all(now is before for now, before in zip(found, last[0])):
        return last[1]
    declared, hidden = apply_squashes(_collect(found), unsquashed)
    _check_references(declared)
    _scanned[key] = (found, (declared, hidden))
    return declared, hidden


#: The last map ``scan`` made for each tuple of app folders in this process, with the folders'
#: header lists it was made from.
_scanned: dict[
    tuple[tuple[Path, ...], frozenset[str]],
    tuple[list[list[Declared]], tuple[dict[str, Declared], dict[str, Declared]]],
] = {}


def scan_files(registry: AppRegistry) -> dict[str, Path]:
    """Check every migration file statically; return revision id → file."""
    return {revision: item.path for revision, item in scan(registry).items()}


def _collect(found: list[list[Declared]]) -> dict[str, Declared]:
    seen: dict[str, Declared] = {}
    for headers in found:
        for declared in headers:
            revision = declared.revision
            if revision in seen:
                raise RollbackError(
                    f"revision id {revision!r} is used by two files: {shown_path(seen[revision].path)} and "
                    f"{shown_path(declared.path)}; give one of them a new id"
                )
            seen[revision] = declared
    return seen


def _check_references(declared: dict[str, Declared]) -> None:
    """Every down_revision names a migration file, every depends_on a revision or a branch
    label, and a branch label is used once: a bad one is reported with the file declaring it."""
    labels: dict[str, Declared] = {}
    for item in declared.values():
        for label in item.branch_labels:
            other = labels.get(label) or declared.get(label)
            if other is not None:
                raise RollbackError(
                    f"branch label {label!r} of migration file {shown_path(item.path)} is already used by "
                    f"{shown_path(other.path)}; rename one of them"
                )
            labels[label] = item
    for item in declared.values():
        for parent in item.down_revision:
            if parent not in declared:
                raise RollbackError(
                    f"migration file {shown_path(item.path)} has down_revision {parent!r}, which no "
                    "migration file declares; restore that migration or fix down_revision"
                )
        for dependency in item.depends_on:
            if dependency not in declared and dependency not in labels:
                raise RollbackError(
                    f"migration file {shown_path(item.path)} depends on {dependency!r}, which is neither "
                    "the revision id nor the branch label of any migration file; fix depends_on"
                )


def resolved_dependencies(declared: dict[str, Declared]) -> dict[str, tuple[str, ...]]:
    """depends_on in revision ids (a branch label means the revision declaring it), as Alembic
    resolves them."""
    by_label = {label: item.revision for item in declared.values() for label in item.branch_labels}
    return {
        revision: tuple(dep if dep in declared else by_label[dep] for dep in item.depends_on)
        if item.depends_on else ()
        for revision, item in declared.items()
    }

