"""SIGTERM and Ctrl-C as an exception while a ``flask db`` command runs.

CI cancellation and Kubernetes stop a process with SIGTERM, whose default action ends it on the
spot: no ``finally`` runs, so a scratch database or a half-open deploy record stays behind. Raised
as an exception instead, every context manager unwinds: the running migration's transaction rolls
back, the scratch database is removed, locks are released. Code on the way adds what it undid to
:attr:`Interrupted.outcome`, which the CLI prints as one line.

A Python signal handler only runs between bytecodes: while SQLite runs one long statement in C,
it would wait for the statement to end. So the signal also wakes a thread (``set_wakeup_fd``)
that calls ``interrupt()`` on every open SQLite connection of ours: the statement stops with
"interrupted", and the handler runs as soon as control is back in Python.

On MariaDB/MySQL the handler runs at once (PyMySQL waits in Python), but raising there would
leave the connection mid-reply, unusable, with the server still running the statement (and
holding the migration lock) until it ends. So when one of our statements is in progress the
handler sends ``KILL QUERY <its connection id>`` from a second connection and returns: the server
stops the statement ("Query execution was interrupted"), the reply arrives whole, and the
interruption is raised from SQLAlchemy's error hook with the connection still usable, so the
step can be rolled back, undone or recorded on it (executor.py).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import sqlalchemy as sa

from .errors import EXIT_INTERRUPTED, EXIT_TERMINATED

HANDLED = (signal.SIGTERM, signal.SIGINT)


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived. A KeyboardInterrupt: no ``except Exception`` swallows it, and
    psycopg cancels the statement running on the server when one interrupts it (so the open
    transaction rolls back now, not when the statement would have ended)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signal_name = signal.Signals(signum).name
        self.exit_code = EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED
        #: What was undone or left in place, in the order the code unwound (e.g. "migration
        #: blog.0002 (up) was rolled back").
        self.outcome: list[str] = []

    def summary(self) -> str:
        done = "; ".join(self.outcome) or "any open transaction was rolled back"
        return f"terminated by {self.signal_name}; {done}"


#: Set once the Python-level handler ran for the current block.
_HANDLER_RAN = threading.Event()


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    _HANDLER_RAN.set()
    # Later signals are ignored: the cleanup this one starts must be allowed to finish
    # (SIGKILL still ends the process; the next rehearsal sweeps what that leaves).
    for handled in HANDLED:
        signal.signal(handled, signal.SIG_IGN)
    if _MYSQL_RUNNING and _kill_query(*_MYSQL_RUNNING[-1]):
        _PENDING.append(Interrupted(signum))  # raised when the statement comes back (below)
        return
    raise Interrupted(signum)


#: MariaDB/MySQL statements of ours in progress on the main thread: (engine, server connection id).
_MYSQL_RUNNING: list[tuple[sa.Engine, int]] = []
#: The interruption of a statement the server was asked to stop: raised when it returns.
_PENDING: list[Interrupted] = []


class _Stop(Exception):
    """Carries a pending interruption into SQLAlchemy's error hook (an ordinary exception, so the
    connection is not thrown away as it would be for a KeyboardInterrupt)."""


def _kill_query(engine: sa.Engine, connection_id: int) -> bool:
    """Ask the server, from a second connection, to stop the statement ``connection_id`` runs."""
    try:
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(f"KILL QUERY {int(connection_id)}")
            cursor.close()
        finally:
            raw.close()
    except Exception:  # noqa: BLE001 - server unreachable: interrupt the client instead
        return False
    return True


def mysql_interruptible(engine: sa.Engine) -> None:
    """Let SIGTERM/SIGINT stop the statement a MariaDB/MySQL connection of ``engine`` runs."""

    def started(conn: sa.Connection, cursor: Any, statement: str, parameters: Any, context: Any,
                executemany: bool) -> None:
        if conn._execution_options.get("skip_user_error_events"):
            # SQLAlchemy's MySQL reflection sets this on the Connection itself (SHOW CREATE
            # TABLE), which would turn the error hook below off for good on this connection.
            conn._execution_options = sa.util.immutabledict(
                {k: v for k, v in conn._execution_options.items() if k != "skip_user_error_events"}
            )
        if _PENDING:
            raise _Stop()
        if threading.current_thread() is threading.main_thread():
            _MYSQL_RUNNING.append((engine, _server_id(conn)))

    def ended(conn: sa.Connection, *args: Any) -> None:
        _forget_statement(engine, conn)
        if _PENDING:
            raise _Stop()

    def failed(context: sa.engine.ExceptionContext) -> BaseException | None:
        if context.connection is not None:
            _forget_statement(engine, context.connection)
        return _PENDING.pop() if _PENDING else None

    sa.event.listen(engine, "before_cursor_execute", started)
    sa.event.listen(engine, "after_cursor_execute", ended)
    sa.event.listen(engine, "handle_error", failed)


def _server_id(conn: sa.Connection) -> int:
    """The server's id of this connection (``CONNECTION_ID()``), as PyMySQL was told it."""
    return int(conn.connection.driver_connection.thread_id())  # type: ignore[union-attr]


def _forget_statement(engine: sa.Engine, conn: sa.Connection) -> None:
    try:
        entry = (engine, _server_id(conn))
    except Exception:  # noqa: BLE001 - the connection is gone: drop this engine's entries
        _MYSQL_RUNNING[:] = [e for e in _MYSQL_RUNNING if e[0] is not engine]
        return
    if entry in _MYSQL_RUNNING:
        _MYSQL_RUNNING.remove(entry)


#: SQLite DBAPI connections that a signal interrupts, by id (sqlite3 connections take no weak
#: reference): added on connect, removed on close (see database.migration_engine).
_SQLITE_CONNECTIONS: dict[int, Any] = {}


def interruptible(dbapi_connection: Any) -> None:
    """Let SIGTERM/SIGINT stop a statement this SQLite connection is running."""
    _SQLITE_CONNECTIONS[id(dbapi_connection)] = dbapi_connection


def forget(dbapi_connection: Any) -> None:
    _SQLITE_CONNECTIONS.pop(id(dbapi_connection), None)


def _interrupt_on_wakeup(read_fd: int) -> None:
    """Runs in a thread: each handled signal interrupts the SQLite statements in progress."""
    while True:
        try:
            data = os.read(read_fd, 64)
        except OSError:
            return
        if not data:  # the write end was closed: the block ended
            return
        # The Python handler runs at once unless the main thread is inside a statement: only
        # then interrupt (an interrupt landing later would stop the cleanup's own statements).
        if any(byte in {int(h) for h in HANDLED} for byte in data) and not _HANDLER_RAN.wait(0.2):
            for connection in list(_SQLITE_CONNECTIONS.values()):
                try:
                    connection.interrupt()
                except Exception:  # noqa: BLE001 - closed meanwhile: nothing to stop
                    pass


@contextmanager
def _wakeup_thread() -> Iterator[None]:
    _HANDLER_RAN.clear()
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    try:
        previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except ValueError:  # not the main thread of the main interpreter
        os.close(read_fd)
        os.close(write_fd)
        yield
        return
    watcher = threading.Thread(target=_interrupt_on_wakeup, args=(read_fd,), daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        os.close(write_fd)
        watcher.join(timeout=5)
        os.close(read_fd)


@contextmanager
def signals_raise() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise :class:`Interrupted`; the previous handlers
    are restored afterwards. Outside the main thread (where Python cannot install handlers)
    nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {handled: signal.getsignal(handled) for handled in HANDLED}
    _PENDING.clear()
    _MYSQL_RUNNING.clear()
    for handled in HANDLED:
        signal.signal(handled, _raise_interrupted)
    try:
        with _wakeup_thread():
            yield
        if _PENDING:  # a stopped statement whose reply never came back through SQLAlchemy
            raise _PENDING.pop()
    finally:
        for handled, handler in previous.items():
            # None: a handler set outside Python, which cannot be put back; the default is closest.
            signal.signal(handled, signal.SIG_DFL if handler is None else handler)
