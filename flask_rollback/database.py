"""Connections for running migrations: a dedicated engine, transactional DDL on SQLite, masked URLs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Dialect, Engine
from sqlalchemy.pool import NullPool

from .errors import EXIT_COULD_NOT_RUN, RollbackError
from .interrupts import forget, interruptible
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


#: libpq connection parameters and the environment variables that set them (libpq manual,
#: "Environment Variables"). The rest go into a conninfo; none of them is a secret.
LIBPQ_ENVIRONMENT = {
    "host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT", "dbname": "PGDATABASE",
    "user": "PGUSER", "password": "PGPASSWORD", "passfile": "PGPASSFILE",
    "channel_binding": "PGCHANNELBINDING", "service": "PGSERVICE", "options": "PGOPTIONS",
    "application_name": "PGAPPNAME", "sslmode": "PGSSLMODE", "requiressl": "PGREQUIRESSL",
    "sslcompression": "PGSSLCOMPRESSION", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
    "sslcertmode": "PGSSLCERTMODE", "sslrootcert": "PGSSLROOTCERT", "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR", "sslsni": "PGSSLSNI", "requirepeer": "PGREQUIREPEER",
    "require_auth": "PGREQUIREAUTH", "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION", "gssencmode": "PGGSSENCMODE",
    "krbsrvname": "PGKRBSRVNAME", "gsslib": "PGGSSLIB", "gssdelegation": "PGGSSDELEGATION",
    "connect_timeout": "PGCONNECT_TIMEOUT", "client_encoding": "PGCLIENTENCODING",
    "target_session_attrs": "PGTARGETSESSIONATTRS", "load_balance_hosts": "PGLOADBALANCEHOSTS",
}
#: Secrets without an environment variable: they would have to go on a command line.
NO_ENVIRONMENT_SECRETS = ("sslpassword",)


def libpq_environment(dialect: Dialect, url: URL) -> tuple[dict[str, str], str]:
    """What makes a libpq tool (pg_dump, psql) connect exactly where the driver does: the
    driver's own connection arguments for ``url`` (host, port, user, database, every query
    parameter such as ``?host=/socket/dir`` or ``sslmode``) as PG* environment variables, plus a
    conninfo for parameters that have no variable. The password goes only into PGPASSWORD.

    Raises ValueError naming a secret that only a command line could carry."""
    _args, arguments = dialect.create_connect_args(url)
    environment: dict[str, str] = {}
    conninfo: list[str] = []
    for key, value in arguments.items():
        if not isinstance(value, (str, int)):
            continue  # driver objects (psycopg's adapters map), not connection parameters
        if key in NO_ENVIRONMENT_SECRETS:
            raise ValueError(f"the URL's {key} cannot be passed to a libpq tool without a command line")
        if key in LIBPQ_ENVIRONMENT:
            environment[LIBPQ_ENVIRONMENT[key]] = str(value)
        else:
            quoted = str(value).replace("\\", "\\\\").replace("'", "\\'")
            conninfo.append(f"{key}='{quoted}'")
    return environment, " ".join(conninfo)


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
            interruptible(dbapi_connection)  # SIGTERM stops a long statement (interrupts.py)

        @sa.event.listens_for(engine, "close")
        def _closed(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            forget(dbapi_connection)

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
                "check SQLALCHEMY_DATABASE_URI and that the server is running",
                exit_code=EXIT_COULD_NOT_RUN,
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
