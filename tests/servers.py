"""What the throwaway test servers (PostgreSQL, MariaDB, PgBouncer) share."""

from __future__ import annotations

import atexit
import socket
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar


def free_port() -> int:
    """Ask the kernel for a currently unused TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Startable(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


S = TypeVar("S", bound=Startable)


@contextmanager
def running(server: S) -> Iterator[S]:
    """``server`` started, and stopped afterwards, also when the process exits early."""
    atexit.register(server.stop)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        atexit.unregister(server.stop)


class DatabaseServer(ABC):
    """A server in a temp dir that the tests create databases on: ``fresh_database`` from the
    subclass's ``create_database``, ``drop_database`` and ``url``."""

    tmpdir: Path | None = None

    @property
    def data_dir(self) -> Path:
        assert self.tmpdir is not None, "server was not started"
        return self.tmpdir / "data"

    @abstractmethod
    def create_database(self, name: str) -> None: ...

    @abstractmethod
    def drop_database(self, name: str) -> None: ...

    @abstractmethod
    def url(self, dbname: str) -> str: ...

    @contextmanager
    def fresh_database(self, prefix: str = "test") -> Iterator[str]:
        """The URL of a new, uniquely named database, dropped afterwards."""
        name = f"{prefix}_{uuid.uuid4().hex[:16]}"
        self.create_database(name)
        try:
            yield self.url(name)
        finally:
            self.drop_database(name)
