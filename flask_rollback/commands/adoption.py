"""Adopting a Flask-Migrate or plain Alembic folder (``flask db adopt``): the library's adopt.py,
as the Python API gives it. A family of its own, so that makemigrations and check do not load it."""

from __future__ import annotations

from ..adopt import Adoption, adopt

__all__ = ["Adoption", "adopt"]
