"""The rehearsal's scratch copy, end to end on real SQLite files and a real PostgreSQL server:
a copy of what the schema really uses (pg_dump | psql: extensions, enum types, views, triggers),
a copy that fails as "could not run" (exit 2, a JSON report, one line), the reflection fallback,
SIGTERM and Ctrl-C that unwind (scratch removed, the running migration rolled back, one line), and
scratch databases of killed processes swept by the next rehearsal, never a live one.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from psycopg import sql

from flask_rollback.errors import EXIT_COULD_NOT_RUN, EXIT_INTERRUPTED, EXIT_TERMINATED
from flask_rollback.scratch import SCRATCH_PREFIX, scratch_name
from tests.pgserver import PostgresServer
from tests.projects import (
    ACCOUNTS_MODELS,
    Project,
    new_project,
    revision_of,
    write_migration,
)
from tests.test_deploy import (
    PG_BINDIR,
    app_tables,
    db,
    deployed_project,
    log_count,
    records,
    schema,
    scratch_leftovers,
    state,
    versions,
)

SECRET = "copy-pw-7d1e"
GATE_CHECKS = ["graph integrity", "applied history", "reversibility", "rehearsal", "live data", "data at risk"]


# -- helpers -----------------------------------------------------------------------------------


def tools_on_path(monkeypatch: pytest.MonkeyPatch, folder: Path, *tools: str) -> None:
    """PATH is one folder holding only ``tools`` (links to PostgreSQL 15's client programs)."""
    folder.mkdir()
    for tool in tools:
        (folder / tool).symlink_to(Path(PG_BINDIR) / tool)
    monkeypatch.setenv("PATH", str(folder))


def pg_tools_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", PG_BINDIR + os.pathsep + os.environ.get("PATH", ""))


def stderr_lines(result: Result | subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def check(report: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in report["checks"] if c["name"] == name]
    return found


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[str], what: str) -> None:
    """Poll until ``condition``; the process must still be running meanwhile."""
    deadline = time.monotonic() + 30
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the process ended before {what}: {process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def start_db(project: Project, *args: str, **env: str) -> subprocess.Popen[str]:
    """``flask db ARGS`` as a running subprocess, with extra environment variables."""
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "db", *args],
        cwd=project.root, env={**project.env(), **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = process.communicate(timeout=30)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def pg_server_of(url: str, request: pytest.FixtureRequest) -> PostgresServer | None:
    return request.getfixturevalue("pg_server") if url.startswith("postgresql") else None


# -- 1. a copy of what the schema really uses ----------------------------------------------------

CITEXT_MODELS = '''
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import CITEXT
from sqlalchemy.orm import Mapped, mapped_column
from .. import db

MOOD = sa.Enum("happy", "sad", name="mood", create_type=False)


class Contact(db.Model):
    __tablename__ = "contacts"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(CITEXT)
    mood: Mapped[str] = mapped_column(MOOD)
'''
CITEXT_MODELS_2 = CITEXT_MODELS + '''    nickname: Mapped[str | None] = mapped_column(CITEXT)
    previous_mood: Mapped[str | None] = mapped_column(MOOD)
'''

#: An extension, an enum type, a view and a trigger function: what reflection cannot copy.
CONTACTS_UPGRADE = '''
op.execute("CREATE EXTENSION IF NOT EXISTS citext")
op.execute("CREATE TYPE mood AS ENUM ('happy', 'sad')")
op.execute("CREATE TABLE contacts (id serial PRIMARY KEY, email citext NOT NULL, mood mood NOT NULL)")
op.execute("CREATE VIEW contact_emails AS SELECT id, email FROM contacts")
op.execute(
    "CREATE FUNCTION lower_email() RETURNS trigger LANGUAGE plpgsql AS "
    "$$BEGIN NEW.email := lower(NEW.email); RETURN NEW; END$$"
)
op.execute("CREATE TRIGGER contacts_lower_email BEFORE INSERT ON contacts FOR EACH ROW EXECUTE FUNCTION lower_email()")
'''
CONTACTS_DOWNGRADE = '''
op.execute("DROP VIEW contact_emails")
op.execute("DROP TABLE contacts")
op.execute("DROP FUNCTION lower_email()")
op.execute("DROP TYPE mood")
op.execute("DROP EXTENSION citext")
'''
#: The pending migration builds on each of them: it fails on a copy that lacks one.
NICKNAME_UPGRADE = '''
from sqlalchemy.dialects import postgresql
op.add_column("contacts", sa.Column("nickname", postgresql.CITEXT()))
op.add_column("contacts", sa.Column("previous_mood", postgresql.ENUM(name="mood", create_type=False)))
op.execute(
    "CREATE VIEW contact_nicknames AS SELECT e.id, e.email, c.nickname "
    "FROM contact_emails e JOIN contacts c USING (id)"
)
op.execute("CREATE TRIGGER contacts_lower_email_again BEFORE UPDATE ON contacts FOR EACH ROW EXECUTE FUNCTION lower_email()")
'''
NICKNAME_DOWNGRADE = '''
op.execute("DROP TRIGGER contacts_lower_email_again ON contacts")
op.execute("DROP VIEW contact_nicknames")
op.drop_column("contacts", "previous_mood")
op.drop_column("contacts", "nickname")
'''


def contacts_project(tmp_path: Path, url: str) -> Project:
    """A project whose schema uses citext, an enum type, a view and a trigger (deployed), and a
    pending migration that builds on each of them."""
    project = Project(tmp_path, f"proj_{uuid.uuid4().hex[:10]}", url)
    project.add_blueprint("contacts", CITEXT_MODELS)
    project.set_factory(["contacts"])
    db(project, "init")
    (project.migrations / "contacts").mkdir(exist_ok=True)
    write_migration(project, "contacts", "0001_initial.py", "contacts0001", None,
                    CONTACTS_UPGRADE, CONTACTS_DOWNGRADE)
    db(project, "deploy")
    project.write("contacts/models.py", CITEXT_MODELS_2)
    write_migration(project, "contacts", "0002_nickname.py", "contacts0002", "contacts0001",
                    NICKNAME_UPGRADE, NICKNAME_DOWNGRADE)
    return project


def socket_url(pg_server: PostgresServer, database: str) -> str:
    """The same server through its Unix socket: host and port as query parameters, with libpq
    options that must reach pg_dump and psql too."""
    return (
        f"postgresql+psycopg://{pg_server.user}:{pg_server.password}@/{database}"
        f"?host={pg_server.tmpdir}&port={pg_server.port}&sslmode=disable&application_name=gate"
    )


@pytest.mark.parametrize("connection", ["tcp", "unix socket"])
def test_the_rehearsal_copies_extensions_enum_types_views_and_triggers(
    tmp_path: Path, pg_url: str, pg_server: PostgresServer, connection: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pg_tools_first(monkeypatch)
    url = pg_url if connection == "tcp" else socket_url(pg_server, pg_url.rsplit("/", 1)[1])
    project = contacts_project(tmp_path, url)
    before = state(project)

    report = json.loads(db(project, "predeploy", "--strict", "--json").output)
    assert report["ready"] is True and report["could_not_run"] is None
    assert report["pending"] == ["contacts.0002_nickname"]
    assert all(c["level"] == "ok" for c in report["checks"]), report["checks"]
    assert check(report, "rehearsal")["message"] == (
        "1 pending migration applied, reverted (schema identical) and re-applied on a scratch copy"
    )
    assert state(project) == before
    assert scratch_leftovers(url, pg_server) == []

    db(project, "deploy")
    assert {"nickname", "previous_mood"} <= set(schema(project)["contacts"]["columns"])
    assert project.query("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1") == [
        ("contacts_lower_email",), ("contacts_lower_email_again",),
    ]
    project.query_write("INSERT INTO contacts (email, mood, nickname) VALUES ('Ada@Example.ORG', 'happy', 'Ada')")
    assert project.query("SELECT email, nickname FROM contact_nicknames WHERE nickname = 'ADA'") == [
        ("ada@example.org", "Ada"),
    ]


def test_without_pg_dump_the_rehearsal_reflects_the_tables_and_says_so(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = new_project(tmp_path, pg_url)
    db(project, "init")
    db(project, "makemigrations")
    for folder, present, missing in ((tmp_path / "no-tools", (), "pg_dump"),
                                     (tmp_path / "no-psql", ("pg_dump",), "psql")):
        tools_on_path(monkeypatch, folder, *present)
        report = json.loads(db(project, "predeploy", "--strict", "--json").output)
        assert report["ready"] is True, report
        assert check(report, "rehearsal") == {
            "name": "rehearsal", "level": "ok", "details": [],
            "message": "2 pending migrations applied, reverted (schema identical) and re-applied "
            f"on a scratch copy; the schema was copied by reflection ({missing} is not on PATH): "
            "tables, indexes and constraints only, no extensions, functions, views or triggers",
        }

    # The schema under the fallback: "could not run", saying why, not a blocked gate.
    (tmp_path / "contacts").mkdir()
    contacts = contacts_project(tmp_path / "contacts", pg_url)
    before = state(contacts)
    result = db(contacts, "predeploy", code=EXIT_COULD_NOT_RUN)
    (line,) = stderr_lines(result)
    assert line.startswith("Error: the gate could not run: copying the schema into the scratch database failed: ")
    assert 'type "citext" does not exist' in line
    assert line.endswith("(tables copied by reflection: psql is not on PATH)")
    assert state(contacts) == before


# -- 2. a copy that fails is "could not run" ----------------------------------------------------


@pytest.fixture
def app_owner_url(pg_server: PostgresServer) -> Iterator[str]:
    """A database owned by a role with CREATEDB but not superuser, holding an extension only a
    superuser may create (pg_buffercache): the scratch copy cannot be made, for a real reason."""
    role, database = f"owner_{uuid.uuid4().hex[:8]}", f"test_{uuid.uuid4().hex[:16]}"
    with pg_server.connect() as connection:
        connection.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(SECRET)
            )
        )
        connection.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(role))
        )
    with pg_server.connect(database) as connection:
        connection.execute("CREATE EXTENSION pg_buffercache")
    try:
        yield f"postgresql+psycopg://{role}:{SECRET}@127.0.0.1:{pg_server.port}/{database}"
    finally:
        pg_server.drop_database(database)
        with pg_server.connect() as connection:
            connection.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_schema_copy_that_fails_is_could_not_run_with_a_full_report(
    tmp_path: Path, app_owner_url: str, pg_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_tools_first(monkeypatch)
    project = new_project(tmp_path, app_owner_url)
    db(project, "init")
    db(project, "makemigrations")
    before = state(project)
    reason = (
        "copying the schema into the scratch database failed: psql: ERROR: permission denied to "
        'create extension "pg_buffercache"'
    )

    for args in (("predeploy", "--json"), ("predeploy", "--strict", "--json"), ("deploy", "--json")):
        result = db(project, *args, code=EXIT_COULD_NOT_RUN)
        data = json.loads(result.stdout)
        report = data["report"] if args[0] == "deploy" else data
        assert report["ready"] is False
        assert report["could_not_run"] == reason
        assert report["pending"] == ["accounts.0001_initial", "blog.0001_initial"]
        assert [c["name"] for c in report["checks"]] == GATE_CHECKS
        assert check(report, "rehearsal")["level"] == "error"
        assert check(report, "rehearsal")["message"] == f"could not run: {reason}"
        assert check(report, "reversibility")["level"] == "ok"
        nothing = "; nothing was applied" if args[0] == "deploy" else ""
        assert stderr_lines(result) == [f"Error: the gate could not run: {reason}{nothing}"]
        if args[0] == "deploy":
            assert data["deploy"] is None
        assert SECRET not in result.output
        assert state(project) == before and app_tables(project) == set()
        assert scratch_leftovers(app_owner_url, pg_server) == []

    text = db(project, "predeploy", code=EXIT_COULD_NOT_RUN)
    assert f"error    rehearsal: could not run: {reason}" in text.stdout.splitlines()
    assert not [line for line in text.stdout.splitlines() if line.startswith(("Blocked", "Ready"))]
    assert stderr_lines(text) == [f"Error: the gate could not run: {reason}"]


# -- 3. SIGTERM and Ctrl-C unwind --------------------------------------------------------------

#: Writes where it runs to TEST_MARKER, then sleeps where TEST_SLEEP_ON says (scratch or target):
#: PostgreSQL and MariaDB in the server (pg_sleep / SLEEP(), cancelled on interrupt), SQLite in Python.
SLEEPING_UPGRADE = '''
import os, pathlib, time
bind = op.get_bind()
from tests.projects import server_database, sleep_on_server
op.create_table("audit", sa.Column("id", sa.Integer, primary_key=True))
if bind.dialect.name == "sqlite":
    where = os.path.basename(bind.exec_driver_sql("PRAGMA database_list").fetchall()[0][2])
else:
    where = server_database(bind)
on = "scratch" if where.startswith("rollback_rehearsal_") else "target"
if os.environ.get("TEST_SLEEP_ON") == on:
    pathlib.Path(os.environ["TEST_MARKER"]).write_text(where)
    if bind.dialect.name == "sqlite":
        time.sleep(30)
    else:
        sleep_on_server(bind, 30)
'''


AUDIT_MODEL = '''

class Audit(db.Model):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(primary_key=True)
'''


def with_sleeping_migration(tmp_path: Path, url: str) -> Project:
    """accounts + blog deployed; pending: accounts.0002_sleep, which creates table audit."""
    project = deployed_project(tmp_path, url)
    project.write("accounts/models.py", ACCOUNTS_MODELS + AUDIT_MODEL)
    write_migration(
        project, "accounts", "0002_sleep.py", "sleep0002", revision_of(project, "accounts", "0001"),
        SLEEPING_UPGRADE, 'op.drop_table("audit")',
    )
    return project


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_the_rehearsal_removes_the_scratch_database(
    tmp_path: Path, db_url: str, private_tmp: Path, signum: int, request: pytest.FixtureRequest
) -> None:
    pg_server = pg_server_of(db_url, request)
    project = with_sleeping_migration(tmp_path, db_url)
    before = state(project)
    marker = tmp_path / "marker"
    process = start_db(project, "predeploy", TEST_SLEEP_ON="scratch", TEST_MARKER=str(marker))
    wait_for(written(marker), process, "the rehearsal to reach the sleeping migration")
    assert marker.read_text() in scratch_leftovers(db_url, pg_server)
    started = time.monotonic()
    process.send_signal(signum)
    result = finish(process)

    assert time.monotonic() - started < 10, "the signal did not interrupt the sleeping migration"
    expected = EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED
    assert result.returncode == expected, (result.stdout, result.stderr)
    assert stderr_lines(result) == [
        (
            f"Error: terminated by {signal.Signals(signum).name}; the rehearsal stopped and its "
            "scratch database was removed; nothing was applied"
        )
    ]
    assert "Traceback" not in result.stdout + result.stderr
    assert scratch_leftovers(db_url, pg_server) == []
    assert state(project) == before


@pytest.mark.parametrize("command", ["upgrade", "deploy"])
def test_sigterm_mid_migration_rolls_that_migration_back(
    tmp_path: Path, db_url: str, private_tmp: Path, command: str, request: pytest.FixtureRequest
) -> None:
    pg_server = pg_server_of(db_url, request)
    project = with_sleeping_migration(tmp_path, db_url)
    schema_before, versions_before, logged_before = schema(project), versions(project), log_count(project)
    marker = tmp_path / "marker"
    process = start_db(project, command, TEST_SLEEP_ON="target", TEST_MARKER=str(marker))
    wait_for(marker.exists, process, "the sleeping migration on the target database")
    process.send_signal(signal.SIGTERM)
    result = finish(process)

    assert result.returncode == EXIT_TERMINATED, (result.stdout, result.stderr)
    recorded = "; deploy 2 was recorded as failed" if command == "deploy" else ""
    if db_url.startswith("mysql"):  # CREATE TABLE committed at once: undone, being empty
        outcome = (
            "was stopped: the database had committed 1 of its statements as they ran (CREATE "
            "TABLE audit ( id INTEGER NOT NULL AUTO_INCREMENT, CONSTRAINT pk_audit PRIMARY KEY "
            "(id) )); it was undone (DROP TABLE `audit`), so it left no trace;"
        )
    else:
        outcome = "was rolled back,"
    assert stderr_lines(result) == [
        (
            f"Error: terminated by SIGTERM; migration accounts.0002_sleep (up) {outcome} "
            f"0 earlier steps of this run stay done{recorded}"
        )
    ]
    assert "Traceback" not in result.stdout + result.stderr
    assert schema(project) == schema_before and "audit" not in project.tables()
    assert versions(project) == versions_before and log_count(project) == logged_before
    assert scratch_leftovers(db_url, pg_server) == []
    if command == "deploy":
        first, second = records(project)
        assert first["status"] == "applied"
        assert second["status"] == "failed" and second["error"] == "terminated by SIGTERM"
        assert second["migrations"] == [] and second["finished_at"] is not None

    # Nothing stays locked: on PostgreSQL the sleeping statement was cancelled, not left running
    # (holding the migration lock for 30 s) in a server process whose client is gone.
    db(project, command, "--lock-timeout", "5")
    assert "audit" in project.tables()


# -- 4. scratch databases of killed processes are swept, never live ones ------------------------

#: Writes where it runs to TEST_MARKER and waits while TEST_HOLD exists (on the scratch copy).
HOLDING_UPGRADE = '''
import os, pathlib, time
bind = op.get_bind()
from tests.projects import server_database, sleep_on_server
if bind.dialect.name == "sqlite":
    where = os.path.basename(bind.exec_driver_sql("PRAGMA database_list").fetchall()[0][2])
else:
    where = server_database(bind)
if "TEST_MARKER" in os.environ:
    pathlib.Path(os.environ["TEST_MARKER"]).write_text(where)
    while pathlib.Path(os.environ["TEST_HOLD"]).exists():
        time.sleep(0.05)
'''


def written(marker: Path) -> Callable[[], bool]:
    """The migration writes the marker (create, then write): wait for its text, not the file."""
    return lambda: marker.exists() and bool(marker.read_text())


def scratch_of(project: Project, tmp_path: Path, name: str) -> tuple[subprocess.Popen[str], str, Path]:
    """A predeploy held inside its rehearsal: the process, its scratch database, its hold file."""
    marker, hold = tmp_path / f"{name}.marker", tmp_path / f"{name}.hold"
    hold.write_text("")
    process = start_db(project, "predeploy", TEST_MARKER=str(marker), TEST_HOLD=str(hold))
    wait_for(written(marker), process, f"rehearsal {name} to start")
    return process, marker.read_text(), hold


def test_the_next_rehearsal_sweeps_scratch_databases_of_killed_processes(
    tmp_path: Path, db_url: str, private_tmp: Path, request: pytest.FixtureRequest
) -> None:
    pg_server = pg_server_of(db_url, request)
    project = deployed_project(tmp_path, db_url)
    write_migration(
        project, "accounts", "0002_hold.py", "hold0002", revision_of(project, "accounts", "0001"),
        HOLDING_UPGRADE, 'op.execute("SELECT 1")',
    )
    live, running, hold = scratch_of(project, tmp_path, "live")
    killed, stale, _ = scratch_of(project, tmp_path, "killed")
    killed.send_signal(signal.SIGKILL)
    assert finish(killed).returncode == -signal.SIGKILL
    assert stale.startswith(SCRATCH_PREFIX) and f"_{killed.pid}_" in stale
    leftovers = scratch_leftovers(db_url, pg_server)
    assert stale in leftovers and running in leftovers

    db(project, "predeploy")  # sweeps the killed one's, leaves the live one's

    leftovers = scratch_leftovers(db_url, pg_server)
    assert stale not in leftovers and not [n for n in leftovers if n.startswith(stale)]
    assert running in leftovers
    hold.unlink()
    result = finish(live)
    assert result.returncode == 0, result.stderr
    assert "Ready: 1 pending migration can be deployed and rolled back." in result.stdout
    assert scratch_leftovers(db_url, pg_server) == []


def test_scratch_names_carry_host_and_pid_and_fit_an_identifier(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "CI-Runner.build-42.very-long-domain.example.internal")
    name = scratch_name("abc123")
    assert len(name.encode()) <= 63
    assert re.fullmatch(rf"{SCRATCH_PREFIX}ci_runner_build_42_v_{os.getpid()}_abc123_[0-9a-f]{{8}}", name), name
    assert scratch_name("abc123") != name
