"""flask-rollback: Django-style per-app migrations for Flask on Alembic, with safe rollbacks."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING, Any

__all__ = [
    "NAMING_CONVENTION",
    "Rollback",
    "RollbackError",
    # Flask-Migrate's functions: ``from flask_rollback import upgrade`` replaces the same import
    # from flask_migrate (see compat.py).
    "branches", "check", "current", "downgrade", "edit", "heads", "history", "init",
    "list_templates", "merge", "migrate", "revision", "show", "stamp", "upgrade",
]
#: Public name -> the module defining it, imported on first use: importing the package (as the
#: pytest plugin's entry point does in every pytest run) loads neither Flask nor SQLAlchemy.
_HOME = {
    name: {"Rollback": "extension", "RollbackError": "errors"}.get(name, "compat")
    for name in __all__[1:]
}


def lazy_names(package: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """A package's ``__getattr__`` importing each public name from its module on first use."""

    def attribute(name: str) -> Any:
        module = homes.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{module}"), name)

    return attribute


__getattr__ = lazy_names(__name__, _HOME)


if TYPE_CHECKING:
    from .compat import (
        branches,
        check,
        current,
        downgrade,
        edit,
        heads,
        history,
        init,
        list_templates,
        merge,
        migrate,
        revision,
        show,
        stamp,
        upgrade,
    )
    from .errors import RollbackError
    from .extension import Rollback

#: Constraint names SQLite batch migrations (and clean downgrades) need; use it as
#: ``MetaData(naming_convention=NAMING_CONVENTION)`` for your models' metadata.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

__version__ = "0.1.0"


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
