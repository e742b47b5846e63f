"""The migration lock: one process changes the schema at a time.

- PostgreSQL: a session-level advisory lock, held across the per-migration transactions and
  released by the server if the process dies.
  Every transaction under it first checks that this session still holds it: behind a
  transaction-mode pooler the session that took it is not the one that runs the next
  statement, and the run stops (the fix: ``ROLLBACK_DATABASE_URL``).
- SQLite files: an exclusive ``flock`` on ``<real path of the database>.rollback-lock``,
  released by the kernel if the process dies; one lock for every symlinked path to the file.
  Opened with ``O_NOFOLLOW``, created 0600, only ever a regular file of one link: a planted
  symlink is refused, never truncated through. (SQLite's own write lock cannot be held across
  the commits of several migrations.)
- MariaDB/MySQL: a named lock (``GET_LOCK``) on the connection, released by the server when the
  connection ends; the name carries the database's, since named locks are server-wide. Every
  transaction under it checks ``IS_USED_LOCK(name) = CONNECTION_ID()`` (a proxy that multiplexes
  connections is caught the same way as a PostgreSQL pooler).
- Any other backend: a row in the ``rollback_lock`` table; a crash leaves it behind, so the
  timeout message says how to clear it (``flask db unlock``).

Whoever waits announces who holds the lock and since when, and gives up after a timeout.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .database import BEGIN_CHECK
from .errors import EXIT_COULD_NOT_RUN, RollbackError
from .recorder import who
from .wording import shown_path

Announce = Callable[[str], None]
#: Backends with a lock the server (or kernel) drops when its holder dies.
NAMED_LOCK_BACKENDS = ("postgresql", "sqlite", "mysql", "mariadb")
POLL_SECONDS = 0.1


def holder_text() -> str:
    host, _user = who()
    return f"{host}/{os.getpid()} since {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"


@contextmanager
def migration_lock(
    connection: Connection,
    name: str,
    timeout: float,
    announce: Announce | None = None,
    lock_table: str = "rollback_lock",
    use_table: bool = False,
) -> Iterator[None]:
    """Hold the lock named ``name`` for the duration of the block."""
    backend = connection.dialect.name
    database = connection.engine.url.database or ""
    if use_table or backend not in NAMED_LOCK_BACKENDS:
        lock = _table(connection, lock_table, timeout, announce)
    elif backend in ("mysql", "mariadb"):
        lock = _named(connection, name, timeout, announce)
    elif backend == "postgresql":
        lock = _advisory(connection, name, timeout, announce)
    elif (path := lock_file(database)) is None:
        lock = _nothing()  # a private in-memory database has a single user
    else:
        lock = _flock(path, timeout, announce)
    with lock:
        yield


def _sqlite_file(database: str) -> Path | None:
    """The file behind a SQLite database name (plain path or ``file:`` URI); None in memory."""
    if database.startswith("file:"):
        path, _, query = database[len("file:"):].partition("?")
        if "mode=memory" in query.split("&"):
            return None
        database = path
    if database in ("", ":memory:"):
        return None
    return Path(database)


def lock_file(database: str) -> Path | None:
    """The SQLite lock file of a database name: beside the database's real path, so every
    symlinked path to one file shares one lock. None for an in-memory database."""
    path = _sqlite_file(database)
    if path is None:
        return None
    real = Path(os.path.realpath(path))
    return real.with_name(real.name + ".rollback-lock")


def open_lock_file(path: Path) -> int:
    """Open (create 0600) the lock file without following a symlink; refuse anything but a
    regular file with one link (a planted symlink or hard link is never written through)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RollbackError(
                f"the lock file {shown_path(path)} is a symbolic link; flask-rollback never follows one: "
                "remove it and retry",
                exit_code=EXIT_COULD_NOT_RUN,
            ) from None
        raise RollbackError(
            f"cannot open the lock file {shown_path(path)}: {exc.strerror}", exit_code=EXIT_COULD_NOT_RUN
        ) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        what = "not a regular file" if not stat.S_ISREG(info.st_mode) else "a hard link"
        raise RollbackError(
            f"the lock file {shown_path(path)} is {what}; flask-rollback only uses a plain file of its own: "
            "remove it and retry",
            exit_code=EXIT_COULD_NOT_RUN,
        )
    return fd


def _wait(try_once: Callable[[], bool], timeout: float, holder: Callable[[], str], announce: Announce | None) -> None:
    deadline = time.monotonic() + timeout
    announced = False
    while not try_once():
        if not announced and announce:
            announce(f"waiting for the migration lock held by {holder()}")
            announced = True
        if time.monotonic() >= deadline:
            raise RollbackError(
                f"could not take the migration lock within {timeout:g}s: it is held by "
                f"{holder()}; wait for that run to finish or raise --lock-timeout",
                exit_code=EXIT_COULD_NOT_RUN,
            )
        time.sleep(POLL_SECONDS)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


#: First half of our advisory lock keys ("RLK"); the second half is derived from the name.
ADVISORY_CLASS = 0x524C4B


def _advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"flask-rollback:{name}".encode()).digest()[:4], "big") & 0x7FFFFFFF


#: The advisory lock's row in pg_locks, on this database only: advisory locks are per database,
#: and a migrator of another database on the same server is not the one to wait for.
ADVISORY_HOLDER = (
    "SELECT a.pid, a.application_name, a.client_addr, a.state, a.backend_start FROM pg_locks l "
    "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
    "AND l.granted AND l.classid = :c AND l.objid = :k AND l.objsubid = 2 "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def advisory_keys(name: str) -> dict[str, int]:
    return {"c": ADVISORY_CLASS, "k": _advisory_key(name)}


def advisory_holder(connection: Connection, name: str) -> tuple[int, str] | None:
    """(server pid, who) of the session holding the advisory lock on this database, or None."""
    row = connection.execute(sa.text(ADVISORY_HOLDER), advisory_keys(name)).first()
    connection.commit()
    if row is None:
        return None
    pid, app_name, addr, _state, _started = row
    if app_name and app_name.startswith("flask-rollback "):
        return pid, f"{app_name.removeprefix('flask-rollback ')} (server pid {pid})"
    return pid, f"server pid {pid}" + (f" from {addr}" if addr else "")


class UntrustedLock(RollbackError):
    """The session running our statements is not the one that holds the migration lock."""

    def __init__(self) -> None:
        super().__init__(
            "the migration lock is not held by the server session running this command's "
            "statements: the connection goes through a transaction-mode pooler (PgBouncer or "
            "similar); set ROLLBACK_DATABASE_URL to a direct connection to the database; the "
            "step in progress was not run",
            exit_code=EXIT_COULD_NOT_RUN,
        )


@contextmanager
def _advisory(connection: Connection, name: str, timeout: float, announce: Announce | None) -> Iterator[None]:
    keys = advisory_keys(name)
    mine = sa.text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND classid = :c AND objid = :k AND objsubid = 2 AND pid = pg_backend_pid()"
    )

    def try_once() -> bool:
        got = connection.execute(sa.text("SELECT pg_try_advisory_lock(:c, :k)"), keys).scalar()
        connection.commit()
        return bool(got)

    def holder() -> str:
        found = advisory_holder(connection, name)
        return "another process" if found is None else found[1]

    def still_mine(conn: Connection) -> None:
        """Run as every later transaction begins: the lock must belong to this very session."""
        if not conn.execute(mine, keys).scalar():
            raise UntrustedLock()

    _wait(try_once, timeout, holder, announce)
    label = f"flask-rollback {holder_text()}"[:63]
    connection.execute(sa.text("SELECT set_config('application_name', :n, false)"), {"n": label})
    connection.commit()
    connection.info[BEGIN_CHECK] = still_mine
    try:
        connection.begin()  # checked at once: a pooler that moved us is caught before any step
        connection.commit()
        yield
    finally:
        try:
            connection.info.pop(BEGIN_CHECK, None)
        except sa.exc.DBAPIError:  # a dead connection reconnects to reach .info: nothing to unhook
            pass
        _release(connection, sa.text("SELECT pg_advisory_unlock(:c, :k)"), keys)


def named_lock_name(connection: Connection, name: str) -> str:
    """The MariaDB lock name for ``name`` in this connection's database (at most 64 characters)."""
    database = connection.exec_driver_sql("SELECT DATABASE()").scalar() or ""
    digest = hashlib.sha256(f"{database}\0{name}".encode()).hexdigest()[:32]
    return f"flask-rollback:{digest}"


def named_holder(connection: Connection, name: str) -> tuple[int, str] | None:
    """(connection id, who) of the session holding the MariaDB named lock, or None."""
    row = connection.execute(
        sa.text(
            "SELECT p.ID, p.USER, p.HOST, p.TIME FROM information_schema.PROCESSLIST p "
            "WHERE p.ID = IS_USED_LOCK(:n)"
        ),
        {"n": named_lock_name(connection, name)},
    ).first()
    connection.commit()
    if row is None:
        return None
    session, user, host, seconds = row
    return int(session), f"server connection {session} ({user}@{host}, {seconds}s in its current state)"


@contextmanager
def _named(connection: Connection, name: str, timeout: float, announce: Announce | None) -> Iterator[None]:
    lock_name = named_lock_name(connection, name)
    connection.commit()
    params = {"n": lock_name}
    mine = sa.text("SELECT IS_USED_LOCK(:n) = CONNECTION_ID()")

    def try_once() -> bool:
        got = connection.execute(sa.text("SELECT GET_LOCK(:n, 0)"), params).scalar()
        connection.commit()
        return bool(got)

    def holder() -> str:
        found = named_holder(connection, name)
        return "another process" if found is None else found[1]

    def still_mine(conn: Connection) -> None:
        if not conn.execute(mine, params).scalar():
            raise UntrustedLock()

    _wait(try_once, timeout, holder, announce)
    connection.info[BEGIN_CHECK] = still_mine
    try:
        connection.begin()
        connection.commit()
        yield
    finally:
        try:
            connection.info.pop(BEGIN_CHECK, None)
        except sa.exc.DBAPIError:
            pass
        _release(connection, sa.text("SELECT RELEASE_LOCK(:n)"), params)


@contextmanager
def _flock(path: Path, timeout: float, announce: Announce | None) -> Iterator[None]:
    fd = open_lock_file(path)

    def try_once() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def holder() -> str:
        return file_holder(fd)

    try:
        _wait(try_once, timeout, holder, announce)
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder_text().encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def file_holder(fd: int) -> str:
    """Who wrote the lock file (read through our own descriptor, never by path again)."""
    text = os.pread(fd, 255, 0).decode("utf-8", errors="replace").strip()
    return text or "another process"


def sqlite_lock_holder(database: str) -> str | None:
    """Who holds the SQLite file lock now, or None when nobody does (``flask db unlock``)."""
    path = lock_file(database)
    if path is None or not os.path.lexists(path):
        return None
    fd = open_lock_file(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return file_holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextmanager
def _table(connection: Connection, table_name: str, timeout: float, announce: Announce | None) -> Iterator[None]:
    """Fallback: a unique row; a crash leaves it, cleared by ``flask db unlock``."""
    table = lock_table(table_name)
    table.create(connection, checkfirst=True)
    connection.commit()
    me = holder_text()

    def try_once() -> bool:
        try:
            connection.execute(table.insert().values(id=1, holder=me))
            connection.commit()
            return True
        except sa.exc.IntegrityError:
            connection.rollback()
            return False

    def holder() -> str:
        text = connection.execute(sa.select(table.c.holder)).scalar()
        connection.commit()
        return f"{text or 'another process'} (if that process is gone: flask db unlock)"

    _wait(try_once, timeout, holder, announce)
    try:
        yield
    finally:
        _release(connection, table.delete(), {})


def _release(connection: Connection, statement: sa.Executable, params: dict[str, int]) -> None:
    """Release on the way out; if the connection died, the server already dropped a session
    lock, and the run's own error is the one worth reporting."""
    try:
        if connection.in_transaction():
            connection.rollback()
        connection.execute(statement, params)
        connection.commit()
    except sa.exc.DBAPIError:
        pass


def lock_table(name: str) -> sa.Table:
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("holder", sa.String(255), nullable=False),
    )


def lock_table_holder(connection: Connection, table_name: str) -> str | None:
    """Who the lock-table row names, or None when there is no row."""
    if not sa.inspect(connection).has_table(table_name):
        connection.rollback()
        return None
    text = connection.execute(sa.select(lock_table(table_name).c.holder)).scalar()
    connection.rollback()
    return text


def release_lock_table(connection: Connection, table_name: str) -> bool:
    """Delete a lock-table row left behind; True if there was one."""
    exists = sa.inspect(connection).has_table(table_name)
    connection.rollback()
    if not exists:
        return False
    with connection.begin():
        deleted = connection.execute(lock_table(table_name).delete()).rowcount
    return bool(deleted)
