"""Reads migration files into Alembic's ScriptDirectory, one version location per app.

Files are checked with ``ast`` before Alembic imports them, so a syntax error, a missing
``revision`` or a revision id used twice is reported by file name instead of as a traceback.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import sys
import traceback
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.script import Script, ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError

from .apps import AppRegistry
from .errors import RollbackError

TEMPLATES = Path(__file__).parent / "templates"
REVISION_RE = re.compile(r"^[0-9A-Za-z_]{1,64}$")
#: The files Alembic loads from a version location (its own rule), so every one is checked.
MIGRATION_FILE_RE = re.compile(r"^(?!\.#|__init__).*\.py$")


def validate_revision_id(revision: str) -> str:
    """Revision ids end up in SQL and file names: restrict them before they are used."""
    if not REVISION_RE.match(revision):
        raise RollbackError(
            f"invalid revision {revision!r}: revision ids are letters, digits and underscores"
        )
    return revision


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
            f"no migrations folder at {root} (env.py and script.py.mako missing); "
            "run 'flask db init' first"
        )


def migration_files(folder: Path) -> list[Path]:
    """The files Alembic would load from ``folder``, in name order."""
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.iterdir()) if MIGRATION_FILE_RE.match(p.name) and p.is_file()]


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
        found.append(f"versions/ with {len(old)} migration file(s)")
    if (root / "env.py").is_file() and not runs_our_env(root / "env.py"):
        found.append("an env.py that does not call flask_rollback.env.run_env")
    return found


def refuse_foreign_layout(root: Path) -> None:
    """A Flask-Migrate folder is not read as apps (its versions/ would become an app and its
    env.py would run): one line pointing at ``flask db adopt`` instead."""
    found = foreign_layout(root)
    if found:
        raise RollbackError(
            f"{root} is a Flask-Migrate or Alembic migrations folder ({', '.join(found)}); "
            "run 'flask db adopt' to convert it, keeping its history"
        )


@dataclass
class Declared:
    """What a migration file declares at module level, read without importing it.

    ``down_revision``, ``depends_on`` and ``branch_labels`` are None when the file computes them
    (not plain string constants): Alembic then checks them when it loads the file."""

    path: Path
    revision: str
    down_revision: tuple[str, ...] | None = ()
    depends_on: tuple[str, ...] | None = ()
    branch_labels: tuple[str, ...] | None = ()


def scan_files(registry: AppRegistry) -> dict[str, Path]:
    """Check every migration file statically; return revision id → file."""
    declared = _scan(registry)
    _check_references(declared)
    return {revision: item.path for revision, item in declared.items()}


def _scan(registry: AppRegistry) -> dict[str, Declared]:
    seen: dict[str, Declared] = {}
    for app in registry:
        for path in migration_files(app.directory):
            declared = _declared(path)
            revision = declared.revision
            if revision in seen:
                raise RollbackError(
                    f"revision id {revision!r} is used by two files: {seen[revision].path} and "
                    f"{path}; give one of them a new id"
                )
            seen[revision] = declared
    return seen


def _check_references(declared: dict[str, Declared]) -> None:
    """Every down_revision names a migration file, every depends_on a revision or a branch
    label: a dangling one is reported with the file that declares it."""
    labels = {
        label for item in declared.values() for label in item.branch_labels or ()
    }
    dynamic_labels = any(item.branch_labels is None for item in declared.values())
    for item in declared.values():
        for parent in item.down_revision or ():
            if parent not in declared:
                raise RollbackError(
                    f"migration file {item.path} has down_revision {parent!r}, which no "
                    "migration file declares; restore that migration or fix down_revision"
                )
        for dependency in item.depends_on or ():
            if dependency not in declared and dependency not in labels and not dynamic_labels:
                raise RollbackError(
                    f"migration file {item.path} depends on {dependency!r}, which is neither "
                    "the revision id nor the branch label of any migration file; fix depends_on"
                )


def _declared(path: Path) -> Declared:
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes, before Python 3.11.4
        line = f" at line {exc.lineno}" if getattr(exc, "lineno", None) else ""
        reason = getattr(exc, "msg", None) or str(exc)
        raise RollbackError(
            f"migration file {path} has a syntax error{line}: {reason}; fix or remove it"
        ) from None
    except OSError as exc:
        raise RollbackError(f"cannot read migration file {path}: {exc.strerror}") from None
    values = {name: node.value for name, node in module_assignments(tree).items()}
    value = values.get("revision")
    if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
        raise RollbackError(
            f"migration file {path} declares no revision = '...'; fix or remove it"
        )
    try:
        revision = validate_revision_id(value.value)
    except RollbackError as exc:
        raise RollbackError(f"migration file {path}: {exc.message}; fix or remove it") from None
    return Declared(
        path=path,
        revision=revision,
        down_revision=constant_names(values.get("down_revision")),
        depends_on=constant_names(values.get("depends_on")),
        branch_labels=constant_names(values.get("branch_labels")),
    )


def module_assignments(tree: ast.Module) -> dict[str, ast.Assign | ast.AnnAssign]:
    """Module-level ``name = ...`` (or ``name: type = ...``) statements by name; the last wins."""
    found: dict[str, ast.Assign | ast.AnnAssign] = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        for target in targets:
            if isinstance(target, ast.Name):
                found[target.id] = node  # type: ignore[assignment]
    return found


def constant_names(node: ast.expr | None) -> tuple[str, ...] | None:
    """A constant None, string, or tuple/list of strings as a tuple; None if computed."""
    if node is None or (isinstance(node, ast.Constant) and node.value is None):
        return ()
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return (node.value,)
    if isinstance(node, (ast.Tuple, ast.List)) and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts
    ):
        return tuple(e.value for e in node.elts)  # type: ignore[attr-defined]
    return None


def load_scripts(config: Config, registry: AppRegistry) -> ScriptDirectory:
    """Build the ScriptDirectory and load its revision map, turning failures into one line."""
    files = scan_files(registry)
    script = ScriptDirectory.from_config(config)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            script.revision_map.heads  # noqa: B018 - forces loading every file
        except (CommandError, RevisionError, Warning) as exc:
            raise RollbackError(f"cannot read the migrations: {exc}") from None
        except Exception as exc:  # a migration module failed at import time
            where = failing_file(exc, files.values())
            if where is None:  # not raised by a migration file: Alembic's own graph checks
                raise RollbackError(
                    f"cannot read the migrations: {type(exc).__name__}: {exc}"
                ) from None
            raise RollbackError(
                f"{where} failed to import: {type(exc).__name__}: {exc}; fix or remove it"
            ) from None
    return script


def failing_file(exc: BaseException, files: Iterable[Path]) -> str | None:
    """Name the migration file (and line) an import-time exception came from, or None when
    no migration file is on the traceback."""
    known = {os.path.realpath(path): path for path in files}
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = known.get(os.path.realpath(frame.filename))
        if path is not None:
            return f"migration file {path} (line {frame.lineno})"
    return None


def migration_name(script: Script) -> str:
    """Django-style name: the file name without ``.py`` (``0002_add_tags``)."""
    return Path(script.path).stem
