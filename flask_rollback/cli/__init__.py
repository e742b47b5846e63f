"""The ``flask db`` commands, one module per family (author, migrate, inspect, deployment, archive,
ownership): each command parses its arguments, calls one function of ``flask_rollback.commands`` and
formats the result."""

from . import archive, author, deployment, inspect, migrate, ownership  # noqa: F401 - each registers its commands
from .group import db_group

__all__ = ["db_group"]
