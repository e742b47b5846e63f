"""Connections for running migrations: a dedicated engine, transactional DDL on SQLite, masked URLs."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, quote_plus

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Dialect, Engine
from sqlalchemy.pool import NullPool

from .errors import EXIT_COULD_NOT_RUN, RollbackError
from .interrupts import forget, interruptible, mysql_interruptible
from .settings import Settings


def display_url(url: URL) -> str:
    """The URL as it may be printed: never with the password."""
    return url.render_as_string(hide_password=True)


#: A password shorter than this is masked only where it appears as a password (in a URL, after
#: ``password=``): masking every "e" would turn "connection failed" into "conn***ction fail***d".
MIN_FREE_SECRET_LENGTH = 8


def mask(text: str, url: URL) -> str:
    """Remove the password from any text, including driver error messages: in URLs
    (``user:PASSWORD@``) and ``password=`` pairs always, elsewhere when it is long enough
    (MIN_FREE_SECRET_LENGTH) to be told apart from ordinary words."""
    if not url.password:
        return text
    password = str(url.password)
    spellings = sorted({password, quote(password, safe=""), quote_plus(password)}, key=len, reverse=True)
    for spelling in spellings:
        secret = re.escape(spelling)
        text = re.sub(rf"(://[^\s/@]*?:){secret}(?=@)", lambda found: f"{found.group(1)}***", text)
        text = re.sub(
            rf"(password\s*[=:]\s*['\"]?){secret}(?=['\"]|\s|$|[,;&)])",
            lambda found: f"{found.group(1)}***", text, flags=re.IGNORECASE,
        )
    if len(password) >= MIN_FREE_SECRET_LENGTH:
        for spelling in spellings:
            text = text.replace(spelling, "***")
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


#: Engine options that configure a pool or a transaction mode: a migration engine has no pool
#: (NullPool) and needs real transactions, so these are dropped from the app's options.
POOL_OPTIONS = frozenset({
    "pool", "poolclass", "pool_size", "max_overflow", "pool_recycle", "pool_pre_ping",
    "pool_timeout", "pool_use_lifo", "pool_reset_on_return", "pool_logging_name",
    "isolation_level", "execution_options", "url",
})

#: ``connection.info`` key: ``{setting: value}`` set with ``SET LOCAL`` at the start of every
#: transaction on PostgreSQL (lock_timeout, statement_timeout), so nothing outlives the transaction.
LOCAL_SETTINGS = "flask_rollback.local_settings"
#: ``connection.info`` key: a callable run at the start of every transaction (after the settings),
#: e.g. the check that this session still holds the migration lock.
BEGIN_CHECK = "flask_rollback.begin_check"


def migration_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The app's engine options (``SQLALCHEMY_ENGINE_OPTIONS``: connect_args, creator, json
    serializers...) minus what configures a pool or a transaction mode."""
    return {key: value for key, value in (options or {}).items() if key not in POOL_OPTIONS}


#: The extra that installs the driver of each backend (setup.cfg ``extras_require``).
DRIVER_EXTRAS = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}


def create_engine(url: URL, **options: Any) -> Engine:
    """``sa.create_engine``, or one line naming the extra when the URL's driver is missing."""
    try:
        return sa.create_engine(url, **options)
    except ImportError as exc:
        backend = url.get_backend_name()
        extra = DRIVER_EXTRAS.get(backend)
        advice = f"pip install 'flask-rollback[{extra}]'" if extra else "install it"
        if backend in ("mysql", "mariadb") and url.get_driver_name() != "pymysql":
            advice += f", and write the URL as {backend}+pymysql://..."
        module = getattr(exc, "name", None) or url.get_driver_name()
        raise RollbackError(
            f"the database driver for {display_url(url)} is not installed (no module {module!r}): "
            f"{advice}",
            exit_code=EXIT_COULD_NOT_RUN,
        ) from None


def migration_engine(url: URL, options: Mapping[str, Any] | None = None) -> Engine:
    """An engine of our own: the app's connection options, no pooling between commands, real
    transactions on SQLite.

    pysqlite does not BEGIN before DDL, so without this one migration could be half applied;
    the SQLAlchemy-documented fix hands transaction control to SQLAlchemy.
    """
    engine = create_engine(url, **migration_options(options), poolclass=NullPool)
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

    elif url.get_backend_name() == "postgresql":

        @sa.event.listens_for(engine, "begin")
        def _begin_pg(connection: Connection) -> None:
            for name, value in connection.info.get(LOCAL_SETTINGS, {}).items():
                connection.execute(sa.text("SELECT set_config(:n, :v, true)"), {"n": name, "v": value})
            check = connection.info.get(BEGIN_CHECK)
            if check is not None:
                check(connection)

    elif url.get_backend_name() in ("mysql", "mariadb"):
        mysql_interruptible(engine)  # SIGTERM stops the running statement on the server

        @sa.event.listens_for(engine, "begin")
        def _begin_mysql(connection: Connection) -> None:
            check = connection.info.get(BEGIN_CHECK)
            if check is not None:
                check(connection)

    return engine


@contextmanager
def connect(url: URL, options: Mapping[str, Any] | None = None) -> Iterator[Connection]:
    """A connection, or one clear line saying why there is none (password masked)."""
    engine = migration_engine(url, options)
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
                "check SQLALCHEMY_DATABASE_URI (or ROLLBACK_DATABASE_URL) and that the server "
                "is running",
                exit_code=EXIT_COULD_NOT_RUN,
            ) from None
        with connection:
            yield connection
    finally:
        engine.dispose()


def apply_timeouts(connection: Connection, settings: Settings) -> None:
    """PostgreSQL lock/statement timeouts for every later transaction of the migration
    connection (strong_migrations' advice: a migration waiting on a busy table must fail rather
    than block every query behind it). Set with ``SET LOCAL`` as each transaction begins, never
    for the session: behind a pooler a session setting would outlive us on a shared connection."""
    if connection.dialect.name != "postgresql":
        return
    local = {
        name: str(value)
        for name, value in (
            ("lock_timeout", settings.pg_lock_timeout),
            ("statement_timeout", settings.pg_statement_timeout),
        )
        if value is not None
    }
    connection.info[LOCAL_SETTINGS] = local


def backend_pids(connection: Connection) -> tuple[int | None, int]:
    """(the server process id the driver was told at connection time, the one that answers now).

    They differ behind a connection pooler (PgBouncer hands out its own key data); the first is
    None with drivers that do not expose it."""
    raw: Any = connection.connection.dbapi_connection
    told: int | None = None
    info = getattr(raw, "info", None)  # psycopg 3
    if info is not None and isinstance(getattr(info, "backend_pid", None), int):
        told = info.backend_pid
    elif callable(getattr(raw, "get_backend_pid", None)):  # psycopg2
        told = raw.get_backend_pid()
    answers = int(connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
    connection.rollback()
    return told, answers


def behind_pooler(connection: Connection) -> bool:
    """Does this PostgreSQL connection go through a connection pooler rather than to the server?
    Seen from the driver: the server process it was told about is not the one answering, or the
    one answering changes from one transaction to the next (transaction pooling)."""
    if connection.dialect.name != "postgresql":
        return False
    told, first = backend_pids(connection)
    if told is not None and told != first:
        return True
    _told, second = backend_pids(connection)
    return second != first


def identity(connection: Connection) -> tuple[Any, ...]:
    """What names one database wherever it is reached from: on PostgreSQL the database's name
    and oid and the server's start time (distinct for another server, a replica included); on
    SQLite the file's real path, device and inode."""
    backend = connection.dialect.name
    if backend == "postgresql":
        row = connection.execute(
            sa.text(
                "SELECT current_database(), (SELECT oid FROM pg_database "
                "WHERE datname = current_database()), pg_postmaster_start_time()"
            )
        ).one()
        connection.rollback()
        return (backend, *row)
    if backend == "sqlite":
        return (backend, *sqlite_identity(connection.engine.url.database or ""))
    return (backend, connection.engine.url.host, connection.engine.url.port, connection.engine.url.database)


def sqlite_identity(database: str) -> tuple[Any, ...]:
    """A SQLite file's real path and, when it exists, its device and inode."""
    if database in ("", ":memory:") or database.startswith("file:"):
        return (database,)
    real = os.path.realpath(database)
    try:
        stat = os.stat(real)
    except OSError:
        return (real,)
    return (stat.st_dev, stat.st_ino)
