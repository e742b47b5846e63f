"""Options of the extension: defaults < ``Rollback(...)`` < ``init_app(...)`` < ``ROLLBACK_*`` keys.

Keys are checked: a misspelt ``ROLLBACK_`` key is an error with a suggestion, not silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import RollbackError

CONFIG_PREFIX = "ROLLBACK_"


@dataclass(frozen=True)
class Settings:
    """Resolved options for one Flask app."""

    #: Root folder holding env.py, script.py.mako and one folder per app.
    directory: str = "migrations"
    #: Label of the app that owns models outside any blueprint.
    default_app: str = "main"
    #: Per-app migration folder overrides, ``{label: path}``.
    app_directories: Mapping[str, str] = field(default_factory=dict)
    #: Name of the ``flask`` command group.
    command: str = "db"
    #: Autogenerate compares column types (Flask-Migrate's default too).
    compare_type: bool = True
    #: Autogenerate compares server defaults (off in Alembic: noisy on some backends).
    compare_server_default: bool = False
    #: Batch (table rebuild) mode for ALTERs; ``None`` means "on for SQLite only".
    render_as_batch: bool | None = None
    #: Alembic's version table.
    version_table: str = "alembic_version"
    #: The applied-log table, one row per applied or reverted migration.
    log_table: str = "rollback_log"

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
                raise RollbackError(
                    f"unknown flask-rollback option {key!r}{_suggest(key, names)}"
                )
            merged[key] = value
    config_names = [CONFIG_PREFIX + name.upper() for name in names]
    for key, value in config.items():
        if not key.startswith(CONFIG_PREFIX):
            continue
        if key not in config_names:
            raise RollbackError(
                f"unknown config key {key}{_suggest(key, config_names)}; "
                "see the README for the ROLLBACK_* keys"
            )
        merged[key[len(CONFIG_PREFIX) :].lower()] = value
    return Settings(**merged)


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]}?)" if close else ""
