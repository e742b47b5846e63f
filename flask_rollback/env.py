"""What a project's ``migrations/env.py`` calls: the whole Alembic environment lives here.

Keeping it in the package (not copied into projects) means a fix here reaches every project.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from .errors import RollbackError
from .project import COMPARISON_ATTRIBUTE, PROJECT_ATTRIBUTE, Project


def run_env() -> None:
    """Configure Alembic's context for the current command and run it."""
    project: Project | None = context.config.attributes.get(PROJECT_ATTRIBUTE)
    if project is None:
        raise RollbackError(
            "this migrations folder is run by flask-rollback: use 'flask db ...', "
            "not the alembic command"
        )
    if context.is_offline_mode():
        context.configure(
            url=project.url,
            literal_binds=True,
            **project.context_options(project.url.get_backend_name()),
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    comparison: Connection | None = context.config.attributes.get(COMPARISON_ATTRIBUTE)
    if comparison is not None:  # makemigrations: the database it chose to compare with
        _run_online(project, comparison)
        return
    with project.connect() as connection:
        _run_online(project, connection)


def _run_online(project: Project, connection: Connection) -> None:
    context.configure(connection=connection, **project.context_options(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()
