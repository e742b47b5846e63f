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
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

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
    raise Interrupted(signum)


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
    for handled in HANDLED:
        signal.signal(handled, _raise_interrupted)
    try:
        with _wakeup_thread():
            yield
    finally:
        for handled, handler in previous.items():
            # None: a handler set outside Python, which cannot be put back; the default is closest.
            signal.signal(handled, signal.SIG_DFL if handler is None else handler)
