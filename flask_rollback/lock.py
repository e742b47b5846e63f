"""The migration lock: one process changes the schema at a time.

- PostgreSQL: a session-level advisory lock, held across the per-migration transactions and
  released by the server if the process dies.
- SQLite files: an exclusive ``flock`` on ``<database>.rollback-lock`` beside the file,
  released by the kernel if the process dies. (SQLite's own write lock cannot be held across
  the commits of several migrations.)
- Any other backend: a row in the ``rollback_lock`` table; a crash leaves it behind, so the
  timeout message says how to clear it (``flask db unlock``).

Whoever waits announces who holds the lock and since when, and gives up after a timeout.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .errors import EXIT_COULD_NOT_RUN, RollbackError
from .recorder import who

Announce = Callable[[str], None]
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
    if use_table or backend not in ("postgresql", "sqlite"):
        lock = _table(connection, lock_table, timeout, announce)
    elif backend == "postgresql":
        lock = _advisory(connection, name, timeout, announce)
    elif (path := _sqlite_file(database)) is None:
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


@contextmanager
def _advisory(connection: Connection, name: str, timeout: float, announce: Announce | None) -> Iterator[None]:
    keys = {"c": ADVISORY_CLASS, "k": _advisory_key(name)}

    def try_once() -> bool:
        got = connection.execute(sa.text("SELECT pg_try_advisory_lock(:c, :k)"), keys).scalar()
        connection.commit()
        return bool(got)

    def holder() -> str:
        row = connection.execute(
            sa.text(
                "SELECT a.application_name, a.pid, a.client_addr FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
                "AND l.granted AND l.classid = :c AND l.objid = :k AND l.objsubid = 2"
            ),
            keys,
        ).first()
        connection.commit()
        if row is None:
            return "another process"
        app_name, pid, addr = row
        if app_name and app_name.startswith("flask-rollback "):
            return app_name.removeprefix("flask-rollback ")
        return f"server pid {pid}" + (f" from {addr}" if addr else "")

    _wait(try_once, timeout, holder, announce)
    label = f"flask-rollback {holder_text()}"[:63]
    connection.execute(sa.text("SELECT set_config('application_name', :n, false)"), {"n": label})
    connection.commit()
    try:
        yield
    finally:
        _release(connection, sa.text("SELECT pg_advisory_unlock(:c, :k)"), keys)


@contextmanager
def _flock(database: Path, timeout: float, announce: Announce | None) -> Iterator[None]:
    path = database.with_name(database.name + ".rollback-lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise RollbackError(f"cannot create the lock file {path}: {exc.strerror}") from None

    def try_once() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def holder() -> str:
        return Path(path).read_text(encoding="utf-8", errors="replace").strip() or "another process"

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


def release_lock_table(connection: Connection, table_name: str) -> bool:
    """Delete a lock-table row left behind; True if there was one."""
    if not sa.inspect(connection).has_table(table_name):
        return False
    with connection.begin():
        deleted = connection.execute(lock_table(table_name).delete()).rowcount
    return bool(deleted)
