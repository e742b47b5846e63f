"""SIGTERM and Ctrl-C as an exception while a ``flask db`` command runs.

CI cancellation and Kubernetes stop a process with SIGTERM, whose default action ends it on the
spot: no ``finally`` runs, so a scratch database or a half-open deploy record stays behind. Raised
as an exception instead, every context manager unwinds: the running migration's transaction rolls
back, the scratch database is removed, locks are released. Code on the way adds what it undid to
:attr:`Interrupted.outcome`, which the CLI prints as one line.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

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


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    # Later signals are ignored: the cleanup this one starts must be allowed to finish
    # (SIGKILL still ends the process; the next rehearsal sweeps what that leaves).
    for handled in HANDLED:
        signal.signal(handled, signal.SIG_IGN)
    raise Interrupted(signum)


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
        yield
    finally:
        for handled, handler in previous.items():
            # None: a handler set outside Python, which cannot be put back; the default is closest.
            signal.signal(handled, signal.SIG_DFL if handler is None else handler)
