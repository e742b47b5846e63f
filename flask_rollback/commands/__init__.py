"""The Python API: one function per ``flask db`` verb, grouped by family in this package.

Each function takes a ``Project`` (``get_project(app)``), returns an object and raises only
``RollbackError``; the CLI parses arguments, calls one of them and formats the result.
Families are imported on first use, so a read-only command never loads the deploy machinery.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

#: Public name -> the family module that defines it.
_FAMILIES: dict[str, tuple[str, ...]] = {
    "context": ("get_project",),
    "author": (
        "init", "makemigrations", "merge", "NewMigration", "snapshot", "Generated", "squashmigrations",
        "Squash",
    ),
    "adoption": ("adopt", "Adoption"),
    "migrate": (
        "RunResult", "upgrade", "downgrade", "irreversible_steps", "stamp", "resolve", "unlock",
        "render_sql", "sqlmigrate",
    ),
    "inspect": (
        "EXIT_MODELS_DIFFER", "EXIT_DATABASE_BEHIND", "EXIT_MULTIPLE_HEADS", "MigrationStatus",
        "AppStatus", "Status", "status", "CheckReport", "check", "History", "AppHistory",
        "HistoryEntry", "history", "alembic_verb", "LogLine", "applied_log", "graph",
    ),
    "deployment": (
        "predeploy", "DeployResult", "deploy", "deploys", "RollbackResult", "rollback", "round_to_undo",
    ),
    "archive": ("archives", "restore", "drop_archive"),
    "ownership": ("AppOverview", "apps", "RenameResult", "rename_app"),
}
_HOME = {name: family for family, names in _FAMILIES.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    family = _HOME.get(name)
    if family is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{family}"), name)


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # the names above, for type checkers and editors
    from .adoption import Adoption, adopt  # noqa: F401
    from .archive import archives, drop_archive, restore  # noqa: F401
    from .author import (  # noqa: F401
        Generated,
        NewMigration,
        Squash,
        init,
        makemigrations,
        merge,
        snapshot,
        squashmigrations,
    )
    from .context import get_project  # noqa: F401
    from .deployment import (  # noqa: F401
        DeployResult,
        RollbackResult,
        deploy,
        deploys,
        predeploy,
        rollback,
        round_to_undo,
    )
    from .inspect import (  # noqa: F401
        EXIT_DATABASE_BEHIND,
        EXIT_MODELS_DIFFER,
        EXIT_MULTIPLE_HEADS,
        AppHistory,
        AppStatus,
        CheckReport,
        History,
        HistoryEntry,
        LogLine,
        MigrationStatus,
        Status,
        alembic_verb,
        applied_log,
        check,
        graph,
        history,
        status,
    )
    from .migrate import (  # noqa: F401
        RunResult,
        downgrade,
        irreversible_steps,
        render_sql,
        sqlmigrate,
        stamp,
        unlock,
        upgrade,
    )
    from .ownership import AppOverview, RenameResult, apps, rename_app  # noqa: F401
