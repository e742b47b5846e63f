"""Testing migrations with pytest: the ``migrator`` and the ready-made checks.

``plugin`` is the pytest plugin (installed through the ``pytest11`` entry point); ``migrator``,
``checks`` and ``factory`` are plain library code the plugin calls, usable without pytest.
Names are imported on first use, so loading the plugin costs nothing until a test uses it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__all__ = ["CHECKS", "CannotCheck", "Migrator", "make_app"]
_HOME = {"Migrator": "migrator", "make_app": "factory", "CHECKS": "checks", "CannotCheck": "checks"}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)


if TYPE_CHECKING:
    from .checks import CHECKS, CannotCheck
    from .factory import make_app
    from .migrator import Migrator
