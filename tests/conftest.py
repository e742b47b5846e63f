"""Shared pytest fixtures."""

from __future__ import annotations

import atexit
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mariadbserver import MariaDBServer, find_mariadb
from tests.pgbouncer import PgBouncer, find_pgbouncer
from tests.pgserver import FALLBACK_BINDIR, PostgresServer, find_postgres_bin

# --- Database backends: one throwaway PostgreSQL server per session, a fresh
# --- database per test; `db_url` runs a test on both SQLite and PostgreSQL.

DB_URL_FIXTURES = {"sqlite": "sqlite_url", "postgresql": "pg_url"}
#: MariaDB joins the `db_url` backends only when asked (ROLLBACK_TEST_MARIADB=1) until every
#: backend-parametrised test passes on it (issue 12).
if os.environ.get("ROLLBACK_TEST_MARIADB", "") not in ("", "0"):
    DB_URL_FIXTURES["mariadb"] = "mariadb_url"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A running PostgreSQL 15 server for the session; skip if absent (fail if CI=true)."""
    bindir = find_postgres_bin()
    if bindir is None:
        reason = (
            "PostgreSQL 15 is not installed: no initdb/pg_ctl/postgres found via "
            f"`pg_config --bindir` or in {FALLBACK_BINDIR}"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    server = PostgresServer(bindir)
    atexit.register(server.stop)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        atexit.unregister(server.stop)


@pytest.fixture(scope="session")
def pgbouncer(pg_server: PostgresServer) -> Iterator[PgBouncer]:
    """PgBouncer in transaction pooling mode in front of ``pg_server``; skip if absent (fail if CI)."""
    program = find_pgbouncer()
    if program is None:
        reason = "PgBouncer is not installed (apt-get install pgbouncer)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    bouncer = PgBouncer(program, pg_server)
    atexit.register(bouncer.stop)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()
        atexit.unregister(bouncer.stop)


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, uniquely named PostgreSQL database, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    pg_server.create_database(name)
    try:
        yield pg_server.url(name)
    finally:
        pg_server.drop_database(name)


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    """A running MariaDB server for the session (one per xdist worker); skip if absent (fail if CI=true)."""
    programs = find_mariadb()
    if programs is None:
        reason = "MariaDB is not installed: no mariadb-install-db/mariadbd (apt-get install mariadb-server)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    server = MariaDBServer(*programs)
    atexit.register(server.stop)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        atexit.unregister(server.stop)


@pytest.fixture
def mariadb_url(mariadb_server: MariaDBServer) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, uniquely named MariaDB database, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    mariadb_server.create_database(name)
    try:
        yield mariadb_server.url(name)
    finally:
        mariadb_server.drop_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    """SQLAlchemy URL of a SQLite database file under tmp_path."""
    yield f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(params=list(DB_URL_FIXTURES), ids=list(DB_URL_FIXTURES))
def db_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a fresh database, once per backend: SQLite, PostgreSQL (and MariaDB when enabled)."""
    yield request.getfixturevalue(DB_URL_FIXTURES[request.param])


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
