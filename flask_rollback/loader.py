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
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.script import Script, ScriptDirectory
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
) -> Config:
    """An in-memory Alembic Config: no alembic.ini to keep in sync."""
    config = Config(
        cmd_opts=argparse.Namespace(x=x_args or None, quiet=quiet),
        stdout=sys.stdout,  # read now, so output goes where click (or a test runner) points it
    )
    config.set_main_option("script_location", _escape(str(root)))
    config.set_main_option("path_separator", "os")
    config.set_main_option(
        "version_locations",
        _escape(os.pathsep.join(str(d) for d in registry.directories().values())),
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


def scan_files(registry: AppRegistry) -> dict[str, Path]:
    """Check every migration file statically; return revision id → file."""
    seen: dict[str, Path] = {}
    for app in registry:
        if not app.directory.is_dir():
            continue
        for path in sorted(app.directory.iterdir()):
            if not MIGRATION_FILE_RE.match(path.name) or not path.is_file():
                continue
            revision = _declared_revision(path)
            if revision in seen:
                raise RollbackError(
                    f"revision id {revision!r} is used by two files: {seen[revision]} and {path}; "
                    "give one of them a new id"
                )
            seen[revision] = path
    return seen


def _declared_revision(path: Path) -> str:
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as exc:
        raise RollbackError(
            f"migration file {path} has a syntax error at line {exc.lineno}: {exc.msg}; "
            "fix or remove it"
        ) from None
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        for target in targets:
            if isinstance(target, ast.Name) and target.id == "revision":
                value = getattr(node, "value", None)
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    return validate_revision_id(value.value)
    raise RollbackError(
        f"migration file {path} declares no revision = '...'; fix or remove it"
    )


def load_scripts(config: Config, registry: AppRegistry) -> ScriptDirectory:
    """Build the ScriptDirectory and load its revision map, turning failures into one line."""
    files = scan_files(registry)
    script = ScriptDirectory.from_config(config)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            script.revision_map.heads  # noqa: B018 - forces loading every file
        except (CommandError, Warning) as exc:
            raise RollbackError(f"cannot read the migrations: {exc}") from None
        except Exception as exc:  # a migration module failed at import time
            raise RollbackError(
                f"{_failing_file(exc, files.values())} failed to import: "
                f"{type(exc).__name__}: {exc}; fix or remove it"
            ) from None
    return script


def _failing_file(exc: BaseException, files: Iterable[Path]) -> str:
    """Name the migration file (and line) an import-time exception came from."""
    known = {os.path.realpath(path): path for path in files}
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = known.get(os.path.realpath(frame.filename))
        if path is not None:
            return f"migration file {path} (line {frame.lineno})"
    return "a migration file"


def migration_name(script: Script) -> str:
    """Django-style name: the file name without ``.py`` (``0002_add_tags``)."""
    return Path(script.path).stem
