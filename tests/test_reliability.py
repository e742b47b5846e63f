"""Concurrent deploys, SIGKILL at random points and a server that goes away mid-run.

Every scenario ends with the same proof: the schema, the version table and the applied log
agree, rows that existed before are intact, and the next run completes.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from flask_rollback.database import migration_engine
from flask_rollback.errors import EXIT_COULD_NOT_RUN

from tests.mariadbserver import MariaDBServer
from tests.pgserver import PostgresServer
from tests.projects import Project, new_project, write_chain

KILL_TRIALS = int(os.environ.get("ROLLBACK_KILL_TRIALS", "20"))
ROWS = 20


def chain_project(tmp_path: Path, url: str, count: int, sleep: float = 0) -> tuple[Project, list[str]]:
    project = new_project(tmp_path, url, with_blog=False)
    assert project.db("init").exit_code == 0
    return project, write_chain(project, "chain", count, rows=ROWS, sleep=sleep)


def popen_db(project: Project, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "db", *args],
        cwd=project.root, env=project.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )


def seed(project: Project) -> str:
    """A table outside the migrations with rows that must survive everything."""
    project.query_write(
        "CREATE TABLE seeded (id INTEGER PRIMARY KEY, payload VARCHAR(40) NOT NULL)",
        "INSERT INTO seeded (id, payload) VALUES "
        + ", ".join(f"({i}, 'row-{i * 7919 % 1000}')" for i in range(500)),
    )
    return seed_checksum(project)


def seed_checksum(project: Project) -> str:
    rows = project.query("SELECT id, payload FROM seeded ORDER BY id")
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def applied_count(project: Project, revisions: list[str]) -> int:
    """Check schema, version table and applied log agree (read in one snapshot, as another
    process may be migrating); return how many migrations are applied."""
    engine = migration_engine(sa.make_url(project.url))
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                return _applied_count(connection, revisions)
    finally:
        engine.dispose()


def _applied_count(connection: sa.Connection, revisions: list[str]) -> int:
    def rows(sql: str) -> list[tuple]:  # type: ignore[type-arg]
        return [tuple(row) for row in connection.exec_driver_sql(sql)]

    # The first statement fixes the snapshot; table names come from the catalog in it.
    if connection.dialect.name == "postgresql":
        tables = {r[0] for r in rows("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    elif connection.dialect.name == "mysql":
        tables = {r[0] for r in rows("SHOW TABLES")}
    else:
        tables = {r[0] for r in rows("SELECT name FROM sqlite_master WHERE type = 'table'")}
    stored = rows("SELECT version_num FROM alembic_version") if "alembic_version" in tables else []
    assert len(stored) <= 1, stored
    count = revisions.index(stored[0][0]) + 1 if stored else 0
    # MariaDB commits DDL at once: the one step a run is in (or a killed run was in) may show;
    # only when its marker (rollback_log_partial) says so.
    loose = {f"t{number:04d}" for number in marked_steps(rows, tables, revisions, count)}
    for number, revision in enumerate(revisions, 1):
        present = f"t{number:04d}" in tables
        assert present == (number <= count) or f"t{number:04d}" in loose, (revision, present, count)
    if count and f"t{count:04d}" not in loose:
        assert rows(f"SELECT count(*) FROM t{count:04d}") == [(ROWS,)]
    net = dict(
        rows(
            "SELECT revision, SUM(CASE WHEN direction = 'up' THEN 1 ELSE -1 END) "
            "FROM rollback_log GROUP BY revision"
        )
    ) if "rollback_log" in tables else {}
    for number, revision in enumerate(revisions, 1):
        assert net.get(revision, 0) == (1 if number <= count else 0), (revision, net.get(revision))
    return count


def marked_steps(rows: Callable[[str], list[tuple]], tables: set[str], revisions: list[str], count: int) -> list[int]:  # type: ignore[type-arg]
    """The numbers of the steps unresolved markers name: only the step after the version (an
    upgrade in it) or the version's own (a downgrade in it)."""
    if "rollback_log_partial" not in tables:
        return []
    found = []
    for revision, direction in rows(
        "SELECT revision, direction FROM rollback_log_partial WHERE resolved_at IS NULL"
    ):
        number = revisions.index(revision) + 1
        assert number == (count + 1 if direction == "up" else count), (revision, direction, count)
        found.append(number)
    return found


def resolve_marked(project: Project, revisions: list[str], checked: list[bool]) -> None:
    """MariaDB after a kill: a step left half-done must be marked, refused, then resolved; a
    marker whose statement never ran is cleared by the next run that takes the lock."""
    unresolved = project.query(
        "SELECT revision, direction FROM rollback_log_partial WHERE resolved_at IS NULL"
    ) if "rollback_log_partial" in project.tables() else []
    if not unresolved:
        return
    ((revision, direction),) = unresolved
    number = revisions.index(revision) + 1
    stored = project.query("SELECT version_num FROM alembic_version") if "alembic_version" in project.tables() else []
    count = revisions.index(stored[0][0]) + 1 if stored else 0
    present = f"t{number:04d}" in project.tables()
    if present == (number <= count):
        return  # its statement did not run: nothing to resolve
    if not checked:  # once: every command that changes the schema refuses, naming the fix
        refused = project.run("upgrade")
        assert refused.returncode == 1 and "needs attention" in refused.stderr, refused.stderr
        assert "interrupted: the process running it ended" in refused.stderr, refused.stderr
        assert f"flask db resolve chain {revision} --undo" in refused.stderr, refused.stderr
        checked.append(True)
    how = "--undo" if direction == "up" else "--reverted"  # a created table goes; a drop ran
    resolved = project.run("resolve", "chain", revision, how)
    assert resolved.returncode == 0, resolved.stderr


def log_rows(project: Project) -> int:
    try:
        return project.query("SELECT count(*) FROM rollback_log")[0][0]
    except sa.exc.DBAPIError:  # no run has created the log yet
        return 0


def test_sixteen_concurrent_upgrades_apply_each_migration_once(tmp_path: Path, db_url: str) -> None:
    project, revisions = chain_project(tmp_path, db_url, 30, sleep=0.01)
    processes = [popen_db(project, "upgrade", "-q") for _ in range(16)]  # -q: the summary only
    results = [(p.wait(timeout=240), *p.communicate()) for p in processes]
    for code, out, err in results:
        assert code == 0, err
        assert "Traceback" not in out + err
    assert applied_count(project, revisions) == 30
    ups = project.query(
        "SELECT revision, count(*) FROM rollback_log WHERE direction = 'up' GROUP BY revision"
    )
    assert sorted(ups) == sorted((rev, 1) for rev in revisions)
    applied_lines = [out for _, out, _ in results if out.startswith("Applied 30 migrations")]
    nothing_lines = [out for _, out, _ in results if out.startswith("Nothing to upgrade")]
    assert len(applied_lines) == 1 and len(nothing_lines) == 15
    waited = [err for _, _, err in results if "waiting for the migration lock held by" in err]
    assert waited, "nobody announced waiting although 16 processes raced"


def test_lock_timeout_gives_a_clear_error(tmp_path: Path, db_url: str) -> None:
    project, revisions = chain_project(tmp_path, db_url, 3, sleep=4)
    holder = popen_db(project, "upgrade")
    deadline = time.monotonic() + 30
    while applied_count(project, revisions) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)  # the holder is inside its first migration's sleep by now, or past it
    waiter = project.run("upgrade", "--lock-timeout", "0.5")
    holder.wait(timeout=60)
    assert waiter.returncode == EXIT_COULD_NOT_RUN  # busy: try again later
    assert "waiting for the migration lock held by" in waiter.stderr
    assert "could not take the migration lock within 0.5s" in waiter.stderr
    assert "Traceback" not in waiter.stderr
    assert holder.returncode == 0
    assert applied_count(project, revisions) == 3


def test_sigkill_at_random_points_leaves_a_consistent_database(tmp_path: Path, db_url: str) -> None:
    project, revisions = chain_project(tmp_path, db_url, 100, sleep=0.004)
    checksum = seed(project)
    rng = random.Random(20261125)
    killed_mid_run = 0
    checked: list[bool] = []
    for trial in range(KILL_TRIALS):
        direction = ("upgrade",) if trial % 2 == 0 else ("downgrade", "chain", "zero", "--allow-data-loss")
        before = applied_count(project, revisions)
        logged = log_rows(project)
        process = popen_db(project, *direction)
        deadline = time.monotonic() + 30
        while log_rows(project) == logged and time.monotonic() < deadline:
            time.sleep(0.02)  # until the run has visibly started, then a random moment later
        time.sleep(rng.uniform(0, 0.4))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        after = applied_count(project, revisions)
        if project.url.startswith("mysql"):
            resolve_marked(project, revisions, checked)
            after = applied_count(project, revisions)
        killed_mid_run += before != after and after not in (0, 100)
        assert seed_checksum(project) == checksum
    # Not vacuous: a good share of the kills must land mid-run (under heavy load fewer do).
    assert killed_mid_run >= KILL_TRIALS // 4, "kills rarely landed mid-run; timings are off"
    if project.url.startswith("mysql"):  # some kills landed between a step's DDL and its commit
        assert checked, "no kill left a step half-done: the marker path was not exercised"
    finished = project.run("upgrade")
    assert finished.returncode == 0, finished.stderr
    assert applied_count(project, revisions) == 100
    assert seed_checksum(project) == checksum


def test_server_stopped_mid_run_then_restarted(
    tmp_path: Path, pg_server: PostgresServer, pg_url: str
) -> None:
    project, revisions = chain_project(tmp_path, pg_url, 60, sleep=0.03)
    checksum = seed(project)
    process = popen_db(project, "upgrade")
    deadline = time.monotonic() + 30
    while log_rows(project) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    pg_server.stop_server_only()
    try:
        code = process.wait(timeout=60)
        out, err = process.communicate()
    finally:
        pg_server.start_server_only()
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert pg_server.password not in err
    done = applied_count(project, revisions)
    assert 0 < done < 60
    assert seed_checksum(project) == checksum
    finished = project.run("upgrade")
    assert finished.returncode == 0, finished.stderr
    assert applied_count(project, revisions) == 60


def test_mariadb_stopped_mid_run_then_restarted(
    tmp_path: Path, mariadb_server: MariaDBServer, mariadb_url: str
) -> None:
    """The bad input "MariaDB down mid-run": one line, exit 1; once the server is back the
    database is consistent, or the step the stop cut in half is marked, refused and resolved."""
    project, revisions = chain_project(tmp_path, mariadb_url, 60, sleep=0.03)
    checksum = seed(project)
    process = popen_db(project, "upgrade")
    deadline = time.monotonic() + 30
    while log_rows(project) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    mariadb_server.stop_server_only()
    try:
        code = process.wait(timeout=60)
        out, err = process.communicate()
    finally:
        mariadb_server.start_server_only()
    assert code == 1, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert mariadb_server.password not in err
    assert seed_checksum(project) == checksum
    resolve_marked(project, revisions, [])
    done = applied_count(project, revisions)
    assert 0 < done < 60
    finished = project.run("upgrade")
    assert finished.returncode == 0, finished.stderr
    assert applied_count(project, revisions) == 60
    assert seed_checksum(project) == checksum


@pytest.mark.parametrize("where", ["first", "middle"])
def test_migration_raising_halfway_leaves_no_trace(tmp_path: Path, db_url: str, where: str) -> None:
    project, revisions = chain_project(tmp_path, db_url, 5)
    broken = 1 if where == "first" else 3
    path = next((project.migrations / "chain").glob(f"{broken:04d}_*.py"))
    path.write_text(path.read_text().replace(
        "    time.sleep(0)", "    raise RuntimeError('disk quota exceeded')"
    ))
    result = project.run("upgrade")
    assert result.returncode == 1
    assert f"chain.{broken:04d}_step" in result.stderr and "disk quota exceeded" in result.stderr
    assert "Traceback" not in result.stderr
    assert applied_count(project, revisions) == broken - 1
    path.write_text(path.read_text().replace("    raise RuntimeError('disk quota exceeded')", "    pass"))
    assert project.run("upgrade").returncode == 0
    assert applied_count(project, revisions) == 5
