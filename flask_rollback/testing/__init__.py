"""Testing migrations with pytest: the ``migrator`` and the ready-made checks.

``plugin`` is the pytest plugin (installed through the ``pytest11`` entry point); ``migrator``,
``checks`` and ``factory`` are plain library code the plugin calls, usable without pytest.
Names are imported on first use, so loading the plugin costs nothing until a test uses it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import lazy_names

__all__ = ["CHECKS", "CannotCheck", "Migrator", "make_app"]
_HOME = {"Migrator": "migrator", "make_app": "factory", "CHECKS": "checks", "CannotCheck": "checks"}


__getattr__ = lazy_names(__name__, _HOME)


if TYPE_CHECKING:
    from .checks import CHECKS, CannotCheck
    from .factory import make_app
    from .migrator import Migrator
