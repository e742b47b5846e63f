"""Real deployments: the app's engine options, ROLLBACK_DATABASE_URL past a transaction-mode
PgBouncer, per-migration timeouts, lock holders on a shared server, ``flask db unlock`` for every
lock kind, and SQLite lock files reached through symlinks."""

from __future__ import annotations

import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from flask_rollback.database import apply_timeouts, connect
from flask_rollback.errors import EXIT_COULD_NOT_RUN, EXIT_DATABASE_BEHIND
from flask_rollback.lock import (
    ADVISORY_CLASS,
    UntrustedLock,
    _advisory_key,
    migration_lock,
)
from flask_rollback.settings import Settings
from tests.pgbouncer import PgBouncer
from tests.pgserver import PostgresServer
from tests.projects import (
    Project,
    fingerprint,
    new_project,
    write_chain,
    write_migration,
)
from tests.test_reliability import applied_count, popen_db


def one_line(result: subprocess.CompletedProcess[str], waited: bool = False) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if waited:  # the announcement while waiting, then the error
        assert lines and lines[0].startswith("waiting for the migration lock held by"), result.stderr
        lines = lines[1:]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


@pytest.fixture
def other_pg_url(pg_server: PostgresServer) -> Iterator[str]:
    with pg_server.fresh_database() as url:
        yield url


def pooled(bouncer: PgBouncer, url: str) -> str:
    return bouncer.url(sa.make_url(url).database or "")


def chain(tmp_path: Path, url: str, count: int, config: dict[str, object] | None = None,
          sleep: float = 0.0) -> tuple[Project, list[str]]:
    project = new_project(tmp_path, url, with_blog=False)
    project.set_factory(["accounts"], config=config)
    assert project.db("init").exit_code == 0
    return project, write_chain(project, "chain", count, sleep=sleep)


# -- 1. the app's engine options ---------------------------------------------------------------


def test_migrations_use_the_apps_engine_options(tmp_path: Path, pg_url: str) -> None:
    project = new_project(tmp_path, pg_url)
    project.query_write("CREATE SCHEMA tenant")
    project.set_factory(
        ["accounts", "blog"],
        config={"SQLALCHEMY_ENGINE_OPTIONS": {
            "connect_args": {"options": "-c search_path=tenant"}, "pool_size": 3, "pool_pre_ping": True,
        }},
    )
    assert project.db("init").exit_code == 0
    made = project.db("makemigrations")
    assert made.exit_code == 0, made.output
    upgraded = project.run("upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    in_schema = lambda schema: {  # noqa: E731
        row[0] for row in project.query(f"SELECT tablename FROM pg_tables WHERE schemaname = '{schema}'")
    }
    assert {"users", "posts", "alembic_version", "rollback_log"} <= in_schema("tenant")
    assert in_schema("public") == set()
    checked = project.run("check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # check reads the version table where the migrations wrote it.
    project.query_write("DELETE FROM tenant.alembic_version")
    behind = project.run("check")
    assert behind.returncode == EXIT_DATABASE_BEHIND, behind.stdout + behind.stderr


# -- 2. ROLLBACK_DATABASE_URL and the pooler ---------------------------------------------------


def test_pooler_url_without_database_url_is_refused(
    tmp_path: Path, pgbouncer: PgBouncer, pg_url: str
) -> None:
    project, revisions = chain(tmp_path, pooled(pgbouncer, pg_url), 3)
    direct = Project(project.root, project.package, pg_url)
    before = fingerprint(direct)
    result = project.run("upgrade")
    assert result.returncode == EXIT_COULD_NOT_RUN
    line = one_line(result)
    assert "connection pooler" in line and "ROLLBACK_DATABASE_URL" in line
    assert fingerprint(direct) == before
    assert direct.tables() == set()
    # Reading through the pooler stays allowed: no lock, no session state.
    assert project.run("showmigrations").returncode == 0


def test_upgrade_through_pooler_with_database_url(
    tmp_path: Path, pgbouncer: PgBouncer, pg_url: str
) -> None:
    project, revisions = chain(
        tmp_path, pooled(pgbouncer, pg_url), 12,
        config={"ROLLBACK_DATABASE_URL": pg_url, "ROLLBACK_PG_STATEMENT_TIMEOUT": "1234ms"},
        sleep=0.02,
    )
    processes = [popen_db(project, "upgrade", "-q") for _ in range(8)]  # -q: the summary only
    results = [(p.wait(timeout=240), *p.communicate()) for p in processes]
    for code, out, err in results:
        assert code == 0, err
        assert "Traceback" not in out + err
    direct = Project(project.root, project.package, pg_url)
    assert applied_count(direct, revisions) == 12
    ups = direct.query("SELECT revision, count(*) FROM rollback_log WHERE direction = 'up' GROUP BY revision")
    assert sorted(ups) == sorted((rev, 1) for rev in revisions)
    assert sum(out.startswith("Applied 12 migrations") for _, out, _ in results) == 1
    # Nothing flask db set outlived it on a pooled server connection.
    settings = {row[0] for row in Project(project.root, project.package, pooled(pgbouncer, pg_url)).query(
        "SELECT current_setting('statement_timeout')"
    )}
    assert settings == {"0"}


def test_database_url_at_another_database_is_refused(
    tmp_path: Path, pg_url: str, other_pg_url: str
) -> None:
    project, _ = chain(tmp_path, pg_url, 2, config={"ROLLBACK_DATABASE_URL": other_pg_url})
    other = Project(project.root, project.package, other_pg_url)
    before = fingerprint(project), fingerprint(other)
    result = project.run("upgrade")
    assert result.returncode == EXIT_COULD_NOT_RUN
    line = one_line(result)
    assert "ROLLBACK_DATABASE_URL" in line and "another database" in line
    assert "s3cret" not in result.stderr
    assert (fingerprint(project), fingerprint(other)) == before


def test_database_url_through_the_pooler_too_is_refused(
    tmp_path: Path, pgbouncer: PgBouncer, pg_url: str
) -> None:
    url = pooled(pgbouncer, pg_url)
    project, _ = chain(tmp_path, url, 2, config={"ROLLBACK_DATABASE_URL": url})
    result = project.run("upgrade")
    assert result.returncode == EXIT_COULD_NOT_RUN
    assert "ROLLBACK_DATABASE_URL goes through a connection pooler" in one_line(result)
    assert Project(project.root, project.package, pg_url).tables() == set()


def test_sqlite_database_url_compares_real_files(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (tmp_path / "current").symlink_to(shared)
    app_url = f"sqlite:///{shared / 'db.sqlite'}"
    project, revisions = chain(
        tmp_path, app_url, 2, config={"ROLLBACK_DATABASE_URL": f"sqlite:///{tmp_path / 'current' / 'db.sqlite'}"}
    )
    assert project.run("upgrade").returncode == 0
    assert applied_count(project, revisions) == 2
    project.set_factory(["accounts"], config={"ROLLBACK_DATABASE_URL": f"sqlite:///{tmp_path / 'other.sqlite'}"})
    before = fingerprint(project)
    result = project.run("downgrade", "chain", "zero", "--allow-data-loss")
    assert result.returncode == EXIT_COULD_NOT_RUN
    assert "ROLLBACK_DATABASE_URL" in one_line(result)
    assert fingerprint(project) == before
    assert not (tmp_path / "other.sqlite").exists()


def test_timeouts_are_local_to_each_migration(tmp_path: Path, pg_url: str) -> None:
    project, _ = chain(tmp_path, pg_url, 0, config={
        "ROLLBACK_PG_STATEMENT_TIMEOUT": "1234ms", "ROLLBACK_PG_LOCK_TIMEOUT": "2s",
    })
    write_migration(
        project, "chain", "0001_seen.py", "seen0001", None,
        """
        op.execute("CREATE TABLE seen AS SELECT current_setting('statement_timeout') AS st, "
                   "current_setting('lock_timeout') AS lt")
        """,
    )
    path = project.migrations / "chain" / "0001_seen.py"
    path.write_text(path.read_text().replace("branch_labels = None", "branch_labels = ('chain',)"))
    assert project.run("upgrade").returncode == 0
    assert project.query("SELECT st, lt FROM seen") == [("1234ms", "2s")]
    # In our own connection: set as each transaction begins, never for the session.
    settings = Settings(pg_statement_timeout="1234ms")
    with connect(sa.make_url(pg_url)) as connection:
        apply_timeouts(connection, settings)
        with connection.begin():
            assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "1234ms"
        raw = connection.connection.dbapi_connection
        assert raw is not None
        cursor = raw.cursor()
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "0"
        raw.rollback()


def test_a_lock_moved_by_a_transaction_pooler_stops_the_run(
    tmp_path: Path, pgbouncer: PgBouncer, pg_url: str
) -> None:
    """The session that took the lock is not the one running the next transaction: stop."""
    url = sa.make_url(pooled(pgbouncer, pg_url))
    with connect(url) as connection:
        with pytest.raises(UntrustedLock) as raised:
            with migration_lock(connection, "alembic_version", 5):
                # Another client takes the server connection the lock was taken on (PgBouncer
                # hands out the most recently used one) and keeps it in a transaction.
                with psycopg.connect(url.render_as_string(hide_password=False).replace("+psycopg", "")) as other:
                    other.execute("SELECT 1")
                    with connection.begin():
                        pytest.fail("a transaction began without the lock")
        assert raised.value.exit_code == EXIT_COULD_NOT_RUN
        assert "ROLLBACK_DATABASE_URL" in raised.value.message


# -- 5. the holder on this database -------------------------------------------------------------


def hold_advisory(url: str, label: str) -> psycopg.Connection:
    """Another session holding the migration lock of ``url``'s database."""
    parts = sa.make_url(url)
    held = psycopg.connect(
        host=parts.host, port=parts.port, user=parts.username, password=parts.password,
        dbname=parts.database, autocommit=True, application_name=f"flask-rollback {label}",
    )
    held.execute("SELECT pg_advisory_lock(%s, %s)", (ADVISORY_CLASS, _advisory_key("alembic_version")))
    return held


def test_waiting_names_the_holder_on_this_database(
    tmp_path: Path, pg_url: str, other_pg_url: str
) -> None:
    project, _ = chain(tmp_path, pg_url, 1)
    with hold_advisory(other_pg_url, "otherdb/111"), hold_advisory(pg_url, "thisdb/222"):
        result = project.run("upgrade", "--lock-timeout", "0.3")
    assert result.returncode == EXIT_COULD_NOT_RUN
    assert "held by thisdb/222" in one_line(result, waited=True)
    assert "otherdb" not in result.stderr
    # The other database's migrator does not block this one.
    with hold_advisory(other_pg_url, "otherdb/111"):
        assert project.run("upgrade", "--lock-timeout", "0.3").returncode == 0


# -- flask db unlock, every lock kind ----------------------------------------------------------


def test_unlock_postgresql_ends_the_session_holding_the_lock(tmp_path: Path, pg_url: str) -> None:
    project, revisions = chain(tmp_path, pg_url, 2)
    assert project.run("unlock").stdout.strip() == "The migration lock was not held."
    held = hold_advisory(pg_url, "deadhost/333")
    try:
        refused = project.run("unlock")  # no terminal: needs --yes
        assert refused.returncode == 1
        assert "The migration lock is held by deadhost/333" in refused.stdout
        assert "re-run with --yes" in one_line(refused)
        cleared = project.run("unlock", "--yes")
        assert cleared.returncode == 0, cleared.stderr
        assert "Cleared the migration lock held by deadhost/333" in cleared.stdout
        assert held.closed or _dead(held)
    finally:
        held.close()
    assert project.run("upgrade", "--lock-timeout", "1").returncode == 0
    assert applied_count(project, revisions) == 2


def _dead(connection: psycopg.Connection) -> bool:
    try:
        connection.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    return False


def test_unlock_sqlite_names_the_live_holder(tmp_path: Path) -> None:
    project, _ = chain(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", 1, sleep=3)
    assert project.run("unlock").stdout.strip() == "The migration lock was not held."
    running = popen_db(project, "upgrade")
    try:
        lock = tmp_path / "db.sqlite.rollback-lock"
        deadline = time.monotonic() + 30
        while not (lock.exists() and lock.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        result = project.run("unlock", "--yes")
        assert result.returncode == EXIT_COULD_NOT_RUN
        line = one_line(result)
        assert f"/{running.pid} since" in line and "stop that process" in line
    finally:
        assert running.wait(timeout=60) == 0


def test_unlock_lock_table_shows_the_holder(tmp_path: Path, sqlite_url: str) -> None:
    project, _ = chain(tmp_path, sqlite_url, 1, config={"ROLLBACK_LOCK": "table"})
    assert project.run("upgrade").returncode == 0
    project.query_write("INSERT INTO rollback_lock (id, holder) VALUES (1, 'crashed/444 since then')")
    result = project.run("unlock", "--yes")
    assert result.returncode == 0, result.stderr
    assert "Cleared the migration lock held by crashed/444 since then." in result.stdout
    assert project.query("SELECT count(*) FROM rollback_lock") == [(0,)]


# -- 4. SQLite lock files ----------------------------------------------------------------------


def test_planted_symlink_lock_file_is_refused(tmp_path: Path) -> None:
    project, _ = chain(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", 2)
    secret = tmp_path / "secret"
    secret.write_text("do not truncate me\n")
    secret.chmod(0o600)
    (tmp_path / "db.sqlite.rollback-lock").symlink_to(secret)
    result = project.run("upgrade")
    assert result.returncode == EXIT_COULD_NOT_RUN
    line = one_line(result)
    assert "db.sqlite.rollback-lock is a symbolic link" in line
    assert secret.read_text() == "do not truncate me\n"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert "chain" not in str(project.tables())
    (tmp_path / "db.sqlite.rollback-lock").unlink()
    assert project.run("upgrade").returncode == 0
    assert stat.S_IMODE((tmp_path / "db.sqlite.rollback-lock").stat().st_mode) == 0o600


def test_symlinked_sqlite_paths_share_one_lock(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    release = tmp_path / "releases" / "A"
    shared.mkdir()
    release.mkdir(parents=True)
    (release / "db.sqlite").symlink_to(shared / "db.sqlite")
    project, revisions = chain(tmp_path, f"sqlite:///{shared / 'db.sqlite'}", 10, sleep=0.3)
    via_release = Project(project.root, project.package, f"sqlite:///{release / 'db.sqlite'}")
    first = popen_db(project, "upgrade", "-q")  # -q: the summary only
    second = popen_db(via_release, "upgrade", "-q")
    results = [(p.wait(timeout=120), *p.communicate()) for p in (first, second)]
    for code, out, err in results:
        assert code == 0, err
        assert "database is locked" not in err
    assert sum(out.startswith("Applied 10 migrations") for _, out, _ in results) == 1
    assert any("waiting for the migration lock held by" in err for _, _, err in results)
    assert applied_count(project, revisions) == 10
    assert not (release / "db.sqlite.rollback-lock").exists()
    assert (shared / "db.sqlite.rollback-lock").exists()
