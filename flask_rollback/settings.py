"""Options of the extension: defaults < ``Rollback(...)`` < ``init_app(...)`` < ``ROLLBACK_*`` keys.

Keys are checked: a misspelt ``ROLLBACK_`` key is an error with a suggestion, not silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from .errors import RollbackError

CONFIG_PREFIX = "ROLLBACK_"
#: Alembic ``configure()`` keywords people pass to Flask-Migrate's ``Migrate(...)`` or env.py,
#: and what replaces them here.
ALEMBIC_KEYWORD_HINTS = {
    "include_object": "autogenerate compares every table of db.metadata (flask-rollback's own tables excepted)",
    "include_name": "autogenerate compares every table of db.metadata (flask-rollback's own tables excepted)",
    "include_schemas": "not supported yet: autogenerate compares the database's default schema",
    "process_revision_directives": "flask-rollback's own hook splits autogenerate output by app",
    "render_item": "autogenerate renders types itself; edit the generated migration where needed",
    "user_module_prefix": "autogenerate renders types itself; edit the generated migration where needed",
}


@dataclass(frozen=True)
class Settings:
    """Resolved options for one Flask app."""

    #: Root folder holding env.py, script.py.mako and one folder per app.
    directory: str = "migrations"
    #: Label of the app that owns models outside any blueprint.
    default_app: str = "main"
    #: Per-app migration folder overrides, ``{label: path}``.
    app_directories: Mapping[str, str] = field(default_factory=dict)
    #: The bind (SQLALCHEMY_BINDS key) of apps without models, or to state an app's bind,
    #: ``{label: bind key}``; ``None`` names the default bind.
    app_binds: Mapping[str, str | None] = field(default_factory=dict)
    #: Name of the ``flask`` command group.
    command: str = "db"
    #: Autogenerate compares column types (Flask-Migrate's default too).
    compare_type: bool = True
    #: Autogenerate compares server defaults (off in Alembic: noisy on some backends).
    compare_server_default: bool = False
    #: Autogenerate writes ALTERs in batch mode (``op.batch_alter_table``), which SQLite needs
    #: (a table rebuild) and other backends run as plain ALTERs: on for every backend, as in
    #: Flask-Migrate 4, so a migration written on PostgreSQL also runs on a SQLite dev database.
    #: ``None``: only when autogenerating on SQLite.
    render_as_batch: bool | None = True
    #: Alembic's version table.
    version_table: str = "alembic_version"
    #: The applied-log table, one row per applied or reverted migration.
    log_table: str = "rollback_log"
    #: Seconds to wait for the migration lock before giving up (``--lock-timeout``).
    lock_timeout: float = 300.0
    #: ``auto`` (PostgreSQL advisory lock, SQLite file lock, else the lock table) or ``table``.
    lock: str = "auto"
    #: The fallback lock table.
    lock_table: str = "rollback_lock"
    #: The deploy-records table.
    deploy_table: str = "rollback_deploys"
    #: Archive what destructive steps would remove before they run (``--archive`` by default).
    archive: bool = False
    #: The archive registry; archive tables are named ``<archive_table>_<revision>_<object>``.
    archive_table: str = "rollback_archives"
    #: Folder for the backup hook (SQLite copy / pg_dump) run before each deploy; None: off.
    backup_dir: str | None = None
    #: PostgreSQL ``lock_timeout`` for migration statements, e.g. ``"5s"`` (None: server default).
    pg_lock_timeout: str | None = None
    #: PostgreSQL ``statement_timeout`` for migration statements, e.g. ``"10min"``.
    pg_statement_timeout: str | None = None
    #: A direct URL to the app's database, used only by ``flask db`` (Prisma's ``directUrl``):
    #: for apps whose SQLALCHEMY_DATABASE_URI goes through PgBouncer or another pooler.
    database_url: Any = None
    #: Schema snapshots (snapshot.py): ``makemigrations`` writes one per backend, ``upgrade`` of
    #: an empty database loads it instead of replaying every migration. False: neither.
    snapshots: bool = True

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


def resolve_settings(
    config: Mapping[str, Any], *layers: Mapping[str, Any]
) -> Settings:
    """Merge keyword layers and the app's ``ROLLBACK_*`` config into Settings."""
    names = Settings.option_names()
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key not in names:
                raise RollbackError(f"unknown flask-rollback option {key!r}{_option_hint(key, names)}")
            merged[key] = value
    config_names = [CONFIG_PREFIX + name.upper() for name in names]
    for key, value in config.items():
        if not key.startswith(CONFIG_PREFIX):
            continue
        if key not in config_names:
            raise RollbackError(
                f"unknown config key {key}{_suggest(key, config_names, CONFIG_PREFIX)}; "
                "see the README for the ROLLBACK_* keys"
            )
        merged[key[len(CONFIG_PREFIX) :].lower()] = value
    settings = Settings(**merged)
    return _validate(settings)


DURATION_RE = re.compile(r"^\d+\s*(ms|s|min|h|d)?$")
#: App labels and table names: identifiers (PostgreSQL keeps 63 characters of a name).
IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _validate(settings: Settings) -> Settings:
    """Refuse values that would otherwise fail later with a traceback (or silently do the
    wrong thing); return the settings with the lock timeout as a float."""
    if settings.lock not in ("auto", "table"):
        raise RollbackError(f"ROLLBACK_LOCK must be 'auto' or 'table', not {settings.lock!r}")
    seconds = lock_seconds(settings.lock_timeout, "ROLLBACK_LOCK_TIMEOUT")
    for key in ("pg_lock_timeout", "pg_statement_timeout"):
        value = getattr(settings, key)
        if value is not None and not DURATION_RE.match(str(value)):
            raise RollbackError(
                f"ROLLBACK_{key.upper()} must look like '500ms', '5s' or '10min', not {value!r}"
            )
    if not _is_path(settings.directory):
        raise RollbackError(
            f"ROLLBACK_DIRECTORY must be a folder path, not {settings.directory!r}"
        )
    folders = settings.app_directories
    if not isinstance(folders, Mapping):
        raise RollbackError(
            "ROLLBACK_APP_DIRECTORIES must be a dict {app label: folder}, "
            f"not {type(folders).__name__} {folders!r}"
        )
    for label, folder in folders.items():
        if not isinstance(label, str) or not IDENTIFIER_RE.match(label):
            raise RollbackError(
                f"ROLLBACK_APP_DIRECTORIES: invalid app label {label!r}: use a Python identifier "
                "(letters, digits, underscore; no '/', '.' or '-')"
            )
        if not _is_path(folder):
            raise RollbackError(
                f"ROLLBACK_APP_DIRECTORIES[{label!r}] must be a folder path, not {folder!r}"
            )
    binds = settings.app_binds
    if not isinstance(binds, Mapping):
        raise RollbackError(
            "ROLLBACK_APP_BINDS must be a dict {app label: bind key}, "
            f"not {type(binds).__name__} {binds!r}"
        )
    for label, key in binds.items():
        if not isinstance(label, str) or not IDENTIFIER_RE.match(label):
            raise RollbackError(
                f"ROLLBACK_APP_BINDS: invalid app label {label!r}: use a Python identifier "
                "(letters, digits, underscore; no '/', '.' or '-')"
            )
        if key is not None and not (isinstance(key, str) and key):
            raise RollbackError(
                f"ROLLBACK_APP_BINDS[{label!r}] must be a key of SQLALCHEMY_BINDS (or None for "
                f"the default bind), not {key!r}"
            )
    for name in Settings.option_names():
        value = getattr(settings, name)
        if name.endswith("_table") and not (isinstance(value, str) and IDENTIFIER_RE.match(value)):
            raise RollbackError(
                f"ROLLBACK_{name.upper()} must be a table name (letters, digits, underscore, "
                f"at most 63 characters), not {value!r}"
            )
    if not isinstance(settings.snapshots, bool):
        raise RollbackError(f"ROLLBACK_SNAPSHOTS must be True or False, not {settings.snapshots!r}")
    if settings.database_url is not None:
        try:
            url = make_url(settings.database_url)
        except (TypeError, ValueError, sa_exc.ArgumentError):
            raise RollbackError(
                "ROLLBACK_DATABASE_URL must be a database URL like "
                "'postgresql+psycopg://user@host:5432/name', not a value of that form"
            ) from None
        settings = dataclasses.replace(settings, database_url=url)
    if type(settings.lock_timeout) is not float:  # "30" or 30 from the config: one type downstream
        settings = dataclasses.replace(settings, lock_timeout=seconds)
    return settings


def lock_seconds(value: Any, name: str, hint: str = "") -> float:
    """A lock timeout as seconds (zero or more), from the config or ``--lock-timeout``."""
    try:
        if isinstance(value, bool):
            raise ValueError
        seconds = float(value)
        if math.isnan(seconds) or seconds < 0:
            raise ValueError
    except (TypeError, ValueError):
        raise RollbackError(
            f"{name} must be a number of seconds, zero or more, not {value!r}{hint}"
        ) from None
    return seconds


def _is_path(value: Any) -> bool:
    """A non-empty folder path (str or os.PathLike)."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return isinstance(value, str) and value.strip() != "" and "\0" not in value


def _option_hint(key: str, names: list[str]) -> str:
    """A typo gets the closest option; an Alembic keyword Flask-Migrate passed through gets
    what replaces it, so moving ``Migrate(app, db, **options)`` over says what to drop."""
    if key in ALEMBIC_KEYWORD_HINTS:
        return f" (an Alembic option Flask-Migrate passed on: {ALEMBIC_KEYWORD_HINTS[key]}; remove it)"
    return _suggest(key, names)


def _suggest(word: str, choices: list[str], prefix: str = "") -> str:
    """The closest choice, compared without the shared prefix (every key starts ROLLBACK_)."""
    stems = {choice[len(prefix) :]: choice for choice in choices}
    close = difflib.get_close_matches(word[len(prefix) :], list(stems), n=1)
    return f" (did you mean {stems[close[0]]}?)" if close else ""
