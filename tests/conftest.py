"""Shared pytest fixtures."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mariadbserver import MariaDBServer, find_mariadb
from tests.pgbouncer import PgBouncer, find_pgbouncer
from tests.pgserver import (
    FALLBACK_BINDIR,
    PostgresServer,
    find_postgres_bin,
    unavailable,
)
from tests.servers import running

# --- Database backends: one throwaway PostgreSQL server per session, a fresh
# --- database per test; `db_url` runs a test on SQLite, PostgreSQL and MariaDB.

DB_URL_FIXTURES = {"sqlite": "sqlite_url", "postgresql": "pg_url", "mariadb": "mariadb_url"}


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A running PostgreSQL 15 server for the session; skip if absent (fail if CI=true)."""
    bindir = find_postgres_bin()
    if bindir is None:
        unavailable(
            "PostgreSQL 15 is not installed: no initdb/pg_ctl/postgres found via "
            f"`pg_config --bindir` or in {FALLBACK_BINDIR}"
        )
    with running(PostgresServer(bindir)) as server:
        yield server


@pytest.fixture(scope="session")
def pgbouncer(pg_server: PostgresServer) -> Iterator[PgBouncer]:
    """PgBouncer in transaction pooling mode in front of ``pg_server``; skip if absent (fail if CI)."""
    program = find_pgbouncer()
    if program is None:
        unavailable("PgBouncer is not installed (apt-get install pgbouncer)")
    with running(PgBouncer(program, pg_server)) as bouncer:
        yield bouncer


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, uniquely named PostgreSQL database, dropped afterwards."""
    with pg_server.fresh_database() as url:
        yield url


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    """A running MariaDB server for the session (one per xdist worker); skip if absent (fail if CI=true)."""
    programs = find_mariadb()
    if programs is None:
        unavailable("MariaDB is not installed: no mariadb-install-db/mariadbd (apt-get install mariadb-server)")
    with running(MariaDBServer(*programs)) as server:
        yield server


@pytest.fixture
def mariadb_url(mariadb_server: MariaDBServer) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, uniquely named MariaDB database, dropped afterwards."""
    with mariadb_server.fresh_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    """SQLAlchemy URL of a SQLite database file under tmp_path."""
    yield f"sqlite:///{tmp_path / 'test.db'}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``@pytest.mark.backends("postgresql")`` (on a test or one of its parameters): the test
    exists on those backends only; its other ``db_url`` variants are deselected, not skipped."""
    kept, dropped = [], []
    for item in items:
        marker = item.get_closest_marker("backends")
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("db_url") if callspec is not None else None
        (dropped if marker and backend and backend not in marker.args else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(params=list(DB_URL_FIXTURES), ids=list(DB_URL_FIXTURES))
def db_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a fresh database, once per backend: SQLite, PostgreSQL (and MariaDB when enabled)."""
    yield request.getfixturevalue(DB_URL_FIXTURES[request.param])


@pytest.fixture
def second_db_url(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> Iterator[str]:
    """Another fresh database on the backend of ``db_url`` (a second Flask-SQLAlchemy bind)."""
    backend = request.node.callspec.params["db_url"]
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'second.db'}"
        return
    server = request.getfixturevalue("pg_server" if backend == "postgresql" else "mariadb_server")
    with server.fresh_database() as url:
        yield url


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp dir of this test's own (TMPDIR, as Python resolves it), so SQLite scratch files
    from other processes on the machine cannot be mistaken for ours. Request it after the
    database fixture: a PostgreSQL server started inside it would be unreadable to postgres."""
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", None)  # recomputed from TMPDIR on next use
    assert tempfile.gettempdir() == str(folder)
    return folder
