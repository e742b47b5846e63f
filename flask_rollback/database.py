"""Connections for running migrations: a dedicated engine, transactional DDL on SQLite, masked URLs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import NullPool

from .errors import RollbackError
from .settings import Settings


def display_url(url: URL) -> str:
    """The URL as it may be printed: never with the password."""
    return url.render_as_string(hide_password=True)


def mask(text: str, url: URL) -> str:
    """Remove the password from any text, including driver error messages."""
    if url.password:
        text = text.replace(str(url.password), "***")
    return text


#: ``connection.info`` key: the statements that begin a transaction on SQLite (the executor sets
#: ``PRAGMA foreign_keys`` and ``BEGIN IMMEDIATE`` per step; plain ``BEGIN`` otherwise).
BEGIN_STATEMENT = "flask_rollback.begin"


def migration_engine(url: URL) -> Engine:
    """An engine of our own: no pooling between commands, real transactions on SQLite.

    pysqlite does not BEGIN before DDL, so without this one migration could be half applied;
    the SQLAlchemy-documented fix hands transaction control to SQLAlchemy.
    """
    engine = sa.create_engine(url, poolclass=NullPool)
    if url.get_backend_name() == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _no_implicit_transactions(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_connection.isolation_level = None

        @sa.event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            for statement in connection.info.get(BEGIN_STATEMENT, ("BEGIN",)):
                connection.exec_driver_sql(statement)

    return engine


@contextmanager
def connect(url: URL) -> Iterator[Connection]:
    """A connection, or one clear line saying why there is none (password masked)."""
    engine = migration_engine(url)
    try:
        try:
            connection = engine.connect()
            if url.get_backend_name() == "sqlite":
                connection.exec_driver_sql("SELECT count(*) FROM sqlite_master").all()
                connection.rollback()
        except sa.exc.DBAPIError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            raise RollbackError(
                f"cannot connect to the database {display_url(url)}: {mask(reason, url)}; "
                "check SQLALCHEMY_DATABASE_URI and that the server is running"
            ) from None
        with connection:
            yield connection
    finally:
        engine.dispose()


def apply_timeouts(connection: Connection, settings: Settings) -> None:
    """PostgreSQL lock/statement timeouts for the migration session (strong_migrations' advice:
    a migration waiting on a busy table must fail rather than block every query behind it)."""
    if connection.dialect.name != "postgresql":
        return
    for name, value in (
        ("lock_timeout", settings.pg_lock_timeout),
        ("statement_timeout", settings.pg_statement_timeout),
    ):
        if value is not None:
            connection.execute(sa.text("SELECT set_config(:n, :v, false)"), {"n": name, "v": str(value)})
    connection.commit()
