"""Tests for the throwaway PostgreSQL server and the database fixtures."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa

from tests.pgserver import PostgresServer

SEEN_DATABASES: list[str] = []


def test_accepts_connections_with_password(pg_server: PostgresServer) -> None:
    with pg_server.connect() as conn:
        row = conn.execute("SELECT current_user, current_setting('server_version_num')").fetchone()
    assert row is not None
    assert row[0] == "rollback"
    assert row[1].startswith("15")


def test_wrong_password_is_refused(pg_server: PostgresServer) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        pg_server.connect(password="wrong-password")


@pytest.mark.parametrize("run", [1, 2])
def test_each_pg_url_is_a_fresh_distinct_database(
    pg_server: PostgresServer, pg_url: str, run: int
) -> None:
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            name = conn.execute(sa.text("SELECT current_database()")).scalar_one()
            assert sa.inspect(conn).get_table_names() == []
            conn.execute(sa.text("CREATE TABLE marker (run integer)"))
    finally:
        engine.dispose()
    assert name not in SEEN_DATABASES
    with pg_server.connect() as conn:
        existing = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert name in existing
    assert existing.isdisjoint(SEEN_DATABASES), "an earlier test database was not dropped"
    SEEN_DATABASES.append(name)


def test_stop_and_start_keeps_data(pg_server: PostgresServer, pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE kept (value text)"))
            conn.execute(sa.text("INSERT INTO kept VALUES ('survives')"))
        engine.dispose()
        port = pg_server.port
        pg_server.stop_server_only()
        with pytest.raises(psycopg.OperationalError):
            pg_server.connect()
        pg_server.start_server_only()
        assert pg_server.port == port
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT value FROM kept")).scalar_one() == "survives"
    finally:
        engine.dispose()


def test_db_url_runs_on_every_backend(db_url: str, request: pytest.FixtureRequest) -> None:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
            if request.node.callspec.id == "mariadb":
                assert "MariaDB" in conn.execute(sa.text("SELECT VERSION()")).scalar_one()
        # mysql+pymysql:// talks to MariaDB through SQLAlchemy's "mysql" dialect.
        expected = {"sqlite": "sqlite", "postgresql": "postgresql", "mariadb": "mysql"}
        assert engine.dialect.name == expected[request.node.callspec.id]
    finally:
        engine.dispose()
