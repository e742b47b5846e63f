"""Safe deploys end to end, on real SQLite and PostgreSQL databases: the predeploy gate,
``deploy`` and its records, ``rollback`` of exactly one deploy, hooks, the backup hook, the
scratch database of the rehearsal, and a deploy killed mid-run.

Every test asserts what a user or operator can observe: exit codes, report lines and JSON, the
schema (a full snapshot: tables, columns, keys, indexes, constraints), the version table and the
deploy-record rows.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result

from flask_rollback.errors import EXIT_REFUSED as REFUSED
from flask_rollback.rehearsal import snapshot
from flask_rollback.scratch import SCRATCH_PREFIX
from tests.projects import (
    ACCOUNTS_MODELS, Project, new_project, revision_of, write_chain, write_migration,
)

OWN_TABLES = {"alembic_version", "rollback_log", "rollback_deploys", "rollback_lock"}
#: MariaDB/MySQL only: the markers of running and partly applied steps (partial.py).
PARTIAL_TABLE = "rollback_log_partial"
SECRET = "hunter2-secret"
PG_BINDIR = "/usr/lib/postgresql/15/bin"

#: accounts.User with one more column (a second change, deployed as deploy 2).
ACCOUNTS_WITH_NICKNAME = ACCOUNTS_MODELS + "    nickname: Mapped[str | None] = mapped_column(db.String(40))\n"
ACCOUNTS_WITH_AGE = ACCOUNTS_WITH_NICKNAME + "    age: Mapped[int | None] = mapped_column()\n"


# -- running and observing ----------------------------------------------------------------------


def db(project: Project, *args: str, code: int = 0) -> Result:
    """``flask db ARGS`` in-process; it must exit with ``code`` and never escape an exception."""
    result = project.db(*args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"flask db {' '.join(args)} raised:\n{result.output}") from result.exception
    assert result.exit_code == code, f"flask db {' '.join(args)} -> {result.exit_code}:\n{result.output}"
    assert "Traceback" not in result.output
    return result


def one_error(result: Result) -> str:
    """The error is exactly one ``Error:`` line on stderr (stdout may show what ran before it:
    the gate's report, a line per migration); return it."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output, result.output
    return lines[0]


def schema(project: Project) -> dict[str, Any]:
    """The full schema snapshot of every table, the library's own tables included."""
    engine = project.engine()
    try:
        with engine.connect() as connection:
            return snapshot(connection, set())
    finally:
        engine.dispose()


def app_tables(project: Project) -> set[str]:
    return project.tables() - OWN_TABLES - {PARTIAL_TABLE}


def versions(project: Project) -> list[str]:
    if "alembic_version" not in project.tables():
        return []
    return sorted(row[0] for row in project.query("SELECT version_num FROM alembic_version"))


def records(project: Project) -> list[dict[str, Any]]:
    """Deploy-record rows, oldest first, JSON columns decoded."""
    if "rollback_deploys" not in project.tables():
        return []
    engine = project.engine()
    try:
        with engine.connect() as connection:
            rows = connection.exec_driver_sql("SELECT * FROM rollback_deploys ORDER BY id").mappings()
            result = []
            for row in rows:
                data = dict(row)
                for key in ("stored_heads_before", "stored_heads_after", "heads_before",
                            "heads_after", "migrations", "report"):
                    data[key] = json.loads(data[key])
                result.append(data)
            return result
    finally:
        engine.dispose()


def log_count(project: Project) -> int:
    if "rollback_log" not in project.tables():
        return 0
    return project.query("SELECT count(*) FROM rollback_log")[0][0]


def state(project: Project) -> tuple[Any, ...]:
    """Everything a blocked deploy must leave alone."""
    return schema(project), versions(project), records(project), log_count(project)



def deployed_project(tmp_path: Path, url: str) -> Project:
    """accounts + blog, their initial migrations deployed as deploy 1 (label v1)."""
    project = new_project(tmp_path, url)
    db(project, "init")
    db(project, "makemigrations")
    db(project, "deploy", "--label", "v1")
    assert app_tables(project) == {"users", "posts"}
    assert [r["status"] for r in records(project)] == ["applied"]
    return project


def append_to_factory(project: Project, code: str) -> None:
    """Add module-level code (hook registrations) after the factory in the package __init__."""
    init = project.package_dir / "__init__.py"
    init.write_text(init.read_text() + "\n" + textwrap.dedent(code).lstrip())


def scratch_leftovers(url: str, pg_server: Any | None) -> list[str]:
    """Rehearsal databases still present: PostgreSQL or MariaDB databases, or SQLite files in
    the temp dir."""
    if url.startswith("sqlite"):
        return sorted(p.name for p in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*"))
    if url.startswith("mysql"):
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as connection:
                names = connection.exec_driver_sql("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA").scalars()
                return sorted(name for name in names if name.startswith(SCRATCH_PREFIX))
        finally:
            engine.dispose()
    with pg_server.connect() as connection:
        rows = connection.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (SCRATCH_PREFIX + "%",)
        ).fetchall()
    return sorted(row[0] for row in rows)


# -- 1. the happy path ---------------------------------------------------------------------------


def test_gate_deploy_and_rollback_one_deploy_at_a_time(tmp_path: Path, db_url: str) -> None:
    project = new_project(tmp_path, db_url)
    db(project, "init")
    db(project, "makemigrations")
    accounts_1, blog_1 = revision_of(project, "accounts", "0001"), revision_of(project, "blog", "0001")
    untouched = state(project)
    assert app_tables(project) == set()

    # The gate: every check ok, nothing applied to the target.
    report = json.loads(db(project, "predeploy", "--json").output)
    assert report["ready"] is True and report["strict"] is False
    assert report["pending"] == ["accounts.0001_initial", "blog.0001_initial"]
    assert [c["name"] for c in report["checks"]] == [
        "graph integrity", "applied history", "reversibility", "rehearsal", "drift", "live data",
        "data at risk",
    ]
    assert all(c["level"] == "ok" for c in report["checks"]), report["checks"]
    text = db(project, "predeploy").output
    assert "Ready: 2 pending migrations can be deployed and rolled back." in text
    assert state(project) == untouched, "the gate wrote to the target database"

    # Deploy 1.
    out = db(project, "deploy", "--label", "v1", "--git-sha", "abc").output
    assert "Deploy 1 applied 2 migrations; undo it with 'flask db rollback 1'." in out
    assert app_tables(project) == {"users", "posts"}
    assert versions(project) == [blog_1]
    (first,) = records(project)
    assert first["status"] == "applied"
    assert first["label"] == "v1" and first["git_sha"] == "abc"
    assert first["host"] == socket.gethostname() and first["user"] == getpass.getuser()
    assert first["pid"] > 0 and first["started_at"] is not None and first["finished_at"] is not None
    assert first["stored_heads_before"] == [] and first["stored_heads_after"] == [blog_1]
    assert first["heads_before"] == {"accounts": [], "blog": []}
    assert first["heads_after"] == {"accounts": [accounts_1], "blog": [blog_1]}
    assert first["migrations"] == [accounts_1, blog_1]
    assert first["report"]["ready"] is True
    assert first["backup"] is None and first["error"] is None and first["rolled_back_at"] is None
    project.query_write("INSERT INTO users (id, email) VALUES (1, 'ada@example.org')")
    before_2 = schema(project)
    versions_before_2 = versions(project)

    # Deploy 2: one more column.
    project.write("accounts/models.py", ACCOUNTS_WITH_NICKNAME)
    db(project, "makemigrations")
    accounts_2 = revision_of(project, "accounts", "0002")
    report = json.loads(db(project, "predeploy", "--json").output)
    second_name = "accounts." + project.files("accounts")[1][:-3]
    assert report["ready"] is True and report["pending"] == [second_name]
    assert report["checks"][1]["message"] == "2 applied migrations unchanged"
    assert all(c["level"] == "ok" for c in report["checks"]), report["checks"]
    out = db(project, "deploy", "--json", "--label", "v2").output
    deployed = json.loads(out)
    assert deployed["report"]["ready"] is True and deployed["deploy"]["id"] == 2
    assert "nickname" in schema(project)["users"]["columns"]
    assert versions(project) == sorted([accounts_2, blog_1])
    first_row, second = records(project)
    assert first_row == first
    assert second["status"] == "applied" and second["label"] == "v2" and second["git_sha"] is None
    assert second["migrations"] == [accounts_2]
    assert second["stored_heads_before"] == [blog_1]
    assert sorted(second["stored_heads_after"]) == sorted([accounts_2, blog_1])
    assert second["heads_before"] == {"accounts": [accounts_1], "blog": [blog_1]}
    assert second["heads_after"] == {"accounts": [accounts_2], "blog": [blog_1]}

    # deploys / deploys --json: newest first.
    listing = json.loads(db(project, "deploys", "--json").output)
    assert [(r["id"], r["status"], r["label"]) for r in listing] == [
        (2, "applied", "v2"), (1, "applied", "v1"),
    ]
    lines = db(project, "deploys").output.splitlines()
    assert len(lines) == 3
    assert lines[0].split() == ["id", "status", "started", "migrations", "label", "git", "sha", "by", "error"]
    assert lines[1].split()[:2] == ["2", "applied"] and "v2" in lines[1].split()
    assert lines[2].split()[:2] == ["1", "applied"] and lines[2].split()[6:8] == ["v1", "abc"]
    assert f"{getpass.getuser()}@{socket.gethostname()}" in lines[2]
    assert lines[0].index("label") == lines[1].index("v2") == lines[2].index("v1")

    # rollback --plan: prints the plan, changes nothing.
    unchanged = state(project)
    out = db(project, "rollback", "--plan").output
    lines = [line for line in out.splitlines() if "commits every DDL statement at once" not in line]
    assert lines[:3] == [
        "Plan: downgrade before deploy 2: 1 migration (accounts 1)",
        f"    1. - {second_name}  ({accounts_2})",
        "Data at risk:",
    ]
    assert state(project) == unchanged

    # rollback --yes (no id): exactly deploy 2 is undone.
    out = db(project, "rollback", "--yes", "-q").output
    assert out.strip() == "Rolled back deploy 2: reverted 1 migration."
    assert schema(project) == before_2
    assert versions(project) == versions_before_2
    assert project.query("SELECT id, email FROM users") == [(1, "ada@example.org")]
    first_row, second = records(project)
    assert first_row == first
    assert second["status"] == "rolled back" and second["rolled_back_at"] is not None
    assert [(r["id"], r["status"]) for r in json.loads(db(project, "deploys", "--json").output)] == [
        (2, "rolled back"), (1, "applied"),
    ]

    # Then deploy 1: users holds a row, so it is refused until the loss is accepted; then back
    # to an empty schema (only the library's own tables remain).
    refused = db(project, "rollback", "1", "--yes", code=REFUSED).output
    assert re.search(r"- accounts\.0001_initial\s+accounts\s+users\s+1 row\s+drops table users", refused)
    assert "posts" not in refused  # empty: dropping it loses nothing
    assert db(project, "rollback", "1", "--yes", "--allow-data-loss", "-q").output.strip() == (
        "Rolled back deploy 1: reverted 2 migrations."
    )
    assert app_tables(project) == set()
    assert versions(project) == []
    assert set(schema(project)) == {"alembic_version", "rollback_log", "rollback_deploys"}
    assert [r["status"] for r in records(project)] == ["rolled back", "rolled back"]
    # The gate now sees nothing applied and every migration pending again.
    report = json.loads(db(project, "predeploy", "--json").output)
    assert sorted(report["pending"]) == sorted(["accounts.0001_initial", "blog.0001_initial", second_name])
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["applied history"] == {
        "name": "applied history", "level": "ok", "message": "0 applied migrations unchanged", "details": [],
    }


# -- 2. each check blocks a migration built to fail it ---------------------------------------------

AUDIT_TABLE = 'op.create_table("audit", sa.Column("id", sa.Integer, primary_key=True))'
ACCOUNTS_WITH_PROFILE = (
    ACCOUNTS_MODELS
    + "    nick: Mapped[str | None] = mapped_column(db.String(40))\n"
    + "    bio: Mapped[str | None] = mapped_column(db.String(200))\n"
)


def _missing_downgrade(project: Project, accounts_1: str) -> tuple[str, list[str]]:
    write_migration(project, "accounts", "0002_audit.py", "bad0002", accounts_1, AUDIT_TABLE, "pass")
    return "reversibility", ["accounts.0002_audit: downgrade() is empty but upgrade() is not"]


def _not_implemented(project: Project, accounts_1: str) -> tuple[str, list[str]]:
    write_migration(
        project, "accounts", "0002_audit.py", "bad0002", accounts_1, AUDIT_TABLE,
        'raise NotImplementedError("no way back")',
    )
    return "reversibility", ["accounts.0002_audit: downgrade() raises NotImplementedError"]


def _column_left_behind(project: Project, accounts_1: str) -> tuple[str, list[str]]:
    project.write("accounts/models.py", ACCOUNTS_WITH_PROFILE)  # the models agree: no drift
    write_migration(
        project, "accounts", "0002_profile.py", "bad0002", accounts_1,
        """
        op.add_column("users", sa.Column("nick", sa.String(40), nullable=True))
        op.add_column("users", sa.Column("bio", sa.String(200), nullable=True))
        """,
        """
        with op.batch_alter_table("users") as batch:
            batch.drop_column("bio")
        """,
    )
    return "rehearsal", [
        "accounts.0002_profile: its downgrade does not restore the schema",
        "column users.nick was left behind",
    ]


def _edited_applied(project: Project, accounts_1: str) -> tuple[str, list[str]]:
    project.write("accounts/models.py", ACCOUNTS_WITH_NICKNAME)
    db(project, "makemigrations")  # a legitimate pending migration the deploy must not apply
    (path,) = (project.migrations / "accounts").glob("0001_*.py")
    text = path.read_text()
    assert "# ### end Alembic commands ###" in text
    path.write_text(text.replace("# ### end Alembic commands ###", "# ### tweaked after deploy ###", 1))
    return "applied history", [
        "applied migrations were edited after they ran",
        f"accounts.0001_initial ({path})",
    ]


def _drift(project: Project, accounts_1: str) -> tuple[str, list[str]]:
    project.write("accounts/models.py", ACCOUNTS_WITH_NICKNAME)
    db(project, "makemigrations")  # pending, and fine on its own
    project.write("accounts/models.py", ACCOUNTS_WITH_AGE)  # a model column with no migration
    return "drift", ["the models differ from the migrations", "add_column users age"]


def _two_heads(project: Project, accounts_1: str) -> tuple[str, list[str]]:
    for suffix, table in (("a", "audit_a"), ("b", "audit_b")):
        write_migration(
            project, "accounts", f"0002_{table}.py", f"bad0002{suffix}", accounts_1,
            f'op.create_table("{table}", sa.Column("id", sa.Integer, primary_key=True))',
            f'op.drop_table("{table}")',
        )
    return "graph integrity", ["more than one head", "accounts: bad0002a, bad0002b"]


BLOCKING_CASES = {
    "missing-downgrade": _missing_downgrade,
    "downgrade-not-implemented": _not_implemented,
    "column-left-behind": _column_left_behind,
    "edited-applied-migration": _edited_applied,
    "drift": _drift,
    "two-heads": _two_heads,
}


@pytest.mark.parametrize("case", list(BLOCKING_CASES))
def test_each_check_blocks_the_migration_built_to_fail_it(tmp_path: Path, db_url: str, case: str) -> None:
    project = deployed_project(tmp_path, db_url)
    accounts_1 = revision_of(project, "accounts", "0001")
    check, fragments = BLOCKING_CASES[case](project, accounts_1)
    before = state(project)

    report = json.loads(db(project, "predeploy", "--json", code=1).output)
    assert report["ready"] is False
    failed = {c["name"]: c for c in report["checks"] if c["level"] == "error"}
    assert check in failed, report["checks"]
    named = " | ".join([failed[check]["message"], *failed[check]["details"]])
    for fragment in fragments:
        assert fragment in named, (fragment, failed[check])

    assert state(project) == before

    out = db(project, "deploy", "--label", "bad", code=1)
    assert f"error    {check}: " in out.stdout
    assert out.stdout.splitlines()[-1].startswith("Blocked: ")
    for fragment in fragments:
        assert fragment in out.stdout, (fragment, out.stdout)
    assert out.stderr.strip() == "Error: the gate blocked the deploy; nothing was applied."
    assert state(project) == before, "a blocked deploy changed the database"
    assert [r["status"] for r in records(project)] == ["applied"]


def test_irreversible_migration_is_a_warning_and_blocks_with_strict(tmp_path: Path, db_url: str) -> None:
    project = deployed_project(tmp_path, db_url)
    project.query_write("INSERT INTO users (id, email) VALUES (1, 'Ada@Example.ORG')")
    accounts_1 = revision_of(project, "accounts", "0001")
    write_migration(
        project, "accounts", "0002_lowercase.py", "low0002", accounts_1,
        'op.execute("UPDATE users SET email = lower(email)")', "pass",
        header='irreversible = "emails are lowercased in place"\n',
    )
    barrier = "accounts.0002_lowercase: declared irreversible: emails are lowercased in place"
    before = state(project)

    report = json.loads(db(project, "predeploy", "--json").output)
    assert report["ready"] is True
    levels = {c["name"]: c["level"] for c in report["checks"]}
    assert levels == {"graph integrity": "ok", "applied history": "ok", "reversibility": "warning",
                      "rehearsal": "ok", "drift": "ok", "live data": "ok", "data at risk": "warning"}
    (reversibility,) = [c for c in report["checks"] if c["name"] == "reversibility"]
    assert reversibility["details"] == [barrier]
    out = db(project, "predeploy").output
    assert "warning  reversibility: " in out and barrier in out

    strict = db(project, "predeploy", "--strict", code=1).output
    assert barrier in strict
    assert strict.splitlines()[-1] == "Blocked: 0 errors, 2 warnings (--strict: warnings count)."
    blocked = db(project, "deploy", "--strict", code=1)
    assert barrier in blocked.stdout
    assert blocked.stderr.strip() == "Error: the gate blocked the deploy; nothing was applied."
    assert state(project) == before

    # Without --strict the gate lets it through, but its UPDATE overwrites the one non-NULL
    # email: the deploy needs --allow-data-loss. The barrier then refuses its rollback.
    refused = db(project, "deploy", "--label", "v2", code=REFUSED).output
    assert re.search(r"\+ accounts\.0002_lowercase\s+accounts\s+users\.email\s+1 value\s+overwrites", refused)
    assert "would destroy existing data" in refused and "--allow-data-loss" in refused
    assert state(project) == before
    db(project, "deploy", "--label", "v2", "--allow-data-loss")
    assert project.query("SELECT email FROM users") == [("ada@example.org",)]
    assert versions(project) == sorted(["low0002", revision_of(project, "blog", "0001")])
    applied = state(project)
    plan = db(project, "rollback", "--plan").output
    assert "- accounts.0002_lowercase  (low0002)  IRREVERSIBLE: declared irreversible" in plan
    refused = one_error(db(project, "rollback", "--yes", code=1))
    assert refused.startswith(
        "Error: cannot roll back deploy 2: accounts.0002_lowercase declared irreversible"
    )
    assert state(project) == applied


def test_a_deploy_failing_on_real_data_is_recorded_and_rolled_back(tmp_path: Path, db_url: str) -> None:
    """The rehearsal copies the schema, not the rows: a migration that only fails on the real
    data passes the gate, fails the deploy, and the record says how far it got."""
    project = deployed_project(tmp_path, db_url)
    project.query_write("INSERT INTO users (id, email) VALUES (1, 'ada@example.org')")
    before = schema(project)
    versions_before = versions(project)
    project.write("accounts/models.py", ACCOUNTS_WITH_NICKNAME)
    db(project, "makemigrations")
    accounts_2 = revision_of(project, "accounts", "0002")
    write_migration(
        project, "accounts", "0003_copy_first_user.py", "copy0003", accounts_2,
        'op.execute("INSERT INTO users (id, email) SELECT 100, email FROM users WHERE id = 1")',
        'op.execute("DELETE FROM users WHERE id = 100")',
    )
    assert json.loads(db(project, "predeploy", "--json").output)["ready"] is True

    result = db(project, "deploy", "--label", "v2", code=1)
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert line.startswith(
        "Error: deploy 2 failed: migration accounts.0003_copy_first_user (up) failed: IntegrityError"
    ), line
    assert line.endswith("it was rolled back, 1 earlier step of this run stays done")
    first, failed = records(project)
    assert first["status"] == "applied"
    assert failed["status"] == "failed" and "IntegrityError" in failed["error"]
    assert failed["migrations"] == [accounts_2]
    assert sorted(failed["stored_heads_after"]) == sorted([accounts_2, revision_of(project, "blog", "0001")])
    assert "nickname" in schema(project)["users"]["columns"]
    assert project.query("SELECT id FROM users") == [(1,)]

    assert db(project, "rollback", "--yes", "-q").output.strip() == "Rolled back deploy 2: reverted 1 migration."
    assert schema(project) == before and versions(project) == versions_before
    assert [r["status"] for r in records(project)] == ["applied", "rolled back"]


# -- 3. the scratch database never survives ---------------------------------------------------------

BOOM_UPGRADE = """
import pathlib
bind = op.get_bind()
from tests.projects import server_database, sleep_on_server
if bind.dialect.name == "sqlite":
    where = bind.exec_driver_sql("PRAGMA database_list").fetchall()[0][2]
else:
    where = server_database(bind)
pathlib.Path({marker!r}).write_text(where)
raise RuntimeError("boom on the scratch copy")
"""


def test_the_scratch_database_never_survives(
    tmp_path: Path, db_url: str, private_tmp: Path, request: pytest.FixtureRequest
) -> None:
    pg_server = request.getfixturevalue("pg_server") if db_url.startswith("postgresql") else None
    project = deployed_project(tmp_path, db_url)  # a gate that passed (inside deploy)
    assert scratch_leftovers(db_url, pg_server) == []
    accounts_1 = revision_of(project, "accounts", "0001")

    project.write("accounts/models.py", ACCOUNTS_WITH_NICKNAME)
    db(project, "makemigrations")
    db(project, "predeploy")  # passes
    assert scratch_leftovers(db_url, pg_server) == []
    for path in (project.migrations / "accounts").glob("0002_*.py"):
        path.unlink()
    project.write("accounts/models.py", ACCOUNTS_MODELS)

    write_migration(project, "accounts", "0002_audit.py", "bad0002", accounts_1, AUDIT_TABLE, "pass")
    db(project, "predeploy", code=1)  # blocked after a rehearsal that found a difference
    db(project, "deploy", code=1)
    assert scratch_leftovers(db_url, pg_server) == []

    # A rehearsal that fails halfway: the second pending migration raises on the scratch copy.
    (project.migrations / "accounts" / "0002_audit.py").write_text(
        (project.migrations / "accounts" / "0002_audit.py").read_text().replace(
            "def downgrade():\n    pass", 'def downgrade():\n    op.drop_table("audit")'
        )
    )
    marker = tmp_path / "scratch-name.txt"
    write_migration(
        project, "accounts", "0003_boom.py", "boom0003", "bad0002",
        BOOM_UPGRADE.format(marker=str(marker)), 'op.execute("SELECT 1")',
    )
    before = state(project)
    report = json.loads(db(project, "predeploy", "--json", code=1).output)
    (rehearsal,) = [c for c in report["checks"] if c["name"] == "rehearsal"]
    assert rehearsal["level"] == "error"
    assert rehearsal["message"].startswith(
        "accounts.0003_boom: migration accounts.0003_boom (up) failed: RuntimeError: boom on the scratch copy"
    )
    scratch = marker.read_text()
    if db_url.startswith("sqlite"):
        assert Path(scratch).parent == private_tmp and Path(scratch).name.startswith(SCRATCH_PREFIX)
        assert not Path(scratch).exists()
    else:
        assert scratch.startswith(SCRATCH_PREFIX)
    marker.unlink()
    out = db(project, "deploy", code=1)
    assert "boom on the scratch copy" in out.stdout
    assert Path(marker.read_text()).name.startswith(SCRATCH_PREFIX)  # the gate of deploy rehearsed too
    assert state(project) == before
    assert "audit" not in project.tables()
    assert scratch_leftovers(db_url, pg_server) == []
    assert sorted(p.name for p in private_tmp.iterdir()) == []


# -- 4. bad input and hooks ---------------------------------------------------------------------------


def test_rollback_refuses_what_it_cannot_undo(tmp_path: Path, db_url: str) -> None:
    project = new_project(tmp_path, db_url)
    db(project, "init")
    db(project, "makemigrations")
    db(project, "upgrade")  # applied, but not by a deploy: there is no record to undo
    before = state(project)
    assert db(project, "deploys").output.strip() == "No deploys recorded."
    assert json.loads(db(project, "deploys", "--json").output) == []
    line = one_error(db(project, "rollback", "--yes", code=1))
    assert line == "Error: there is no deploy to roll back; see 'flask db deploys'"
    one_error(db(project, "rollback", "--plan", code=1))
    assert state(project) == before

    project.write("accounts/models.py", ACCOUNTS_WITH_NICKNAME)
    db(project, "makemigrations")
    db(project, "deploy")
    before = state(project)
    line = one_error(db(project, "rollback", "7", "--yes", code=1))
    assert line == "Error: no deploy with id 7; see 'flask db deploys'"
    one_error(db(project, "rollback", "7", "--plan", code=1))
    assert state(project) == before

    project.write("accounts/models.py", ACCOUNTS_WITH_AGE)
    db(project, "makemigrations")
    db(project, "deploy")
    before = state(project)
    line = one_error(db(project, "rollback", "1", "--yes", code=1))
    assert line == "Error: deploy 1 is not the latest; roll back deploy 2 first"
    assert state(project) == before

    unconfirmed = db(project, "rollback", code=1)  # no --yes and no terminal to ask on
    assert unconfirmed.stderr.strip() == "Error: rollback needs confirmation: re-run with --yes"
    assert state(project) == before

    db(project, "rollback", "--yes")
    before = state(project)
    line = one_error(db(project, "rollback", "2", "--yes", code=1))
    assert line == "Error: deploy 2 was already rolled back"
    assert state(project) == before
    assert [r["status"] for r in records(project)] == ["applied", "rolled back"]


def test_no_pending_migrations_is_ready_and_deploys_nothing(tmp_path: Path, db_url: str) -> None:
    project = deployed_project(tmp_path, db_url)
    before = state(project)
    out = db(project, "predeploy").output
    assert out.splitlines()[-1] == "Ready: no pending migrations."
    report = json.loads(db(project, "predeploy", "--json").output)
    assert report["ready"] is True and report["pending"] == []
    assert all(c["level"] == "ok" for c in report["checks"]), report["checks"]
    out = db(project, "deploy", "--label", "noop").output
    assert out.splitlines()[-1] == "Ready: no pending migrations."
    assert "Deploy " not in out
    assert json.loads(db(project, "deploy", "--json").output)["deploy"] is None
    assert state(project) == before
    assert [r["label"] for r in records(project)] == ["v1"]


def test_a_before_deploy_hook_that_raises_blocks_the_deploy(tmp_path: Path, db_url: str) -> None:
    project = new_project(tmp_path, db_url)
    db(project, "init")
    db(project, "makemigrations")
    append_to_factory(
        project,
        """
        @rollback.before_deploy
        def change_freeze(plan):
            raise RuntimeError(f"change freeze: {len(plan.steps)} migration(s) must wait until Monday")
        """,
    )
    before = state(project)
    result = db(project, "deploy", "--label", "frozen", code=1)
    assert result.stderr.strip() == (
        "Error: before_deploy hook failed: change freeze: 2 migration(s) must wait until Monday; "
        "nothing was changed"
    )
    assert state(project) == before
    assert app_tables(project) == set() and records(project) == []


HOOK_RECORDER = """
import json as _json
from sqlalchemy import inspect as _inspect

HOOK_LOG = {log!r}


def _write(name, plan, deploy, engine):
    with open(HOOK_LOG, "a") as handle:
        handle.write(_json.dumps({{
            "hook": name, "kind": plan.kind, "target": plan.target,
            "steps": [[step.migration.label, step.direction] for step in plan.steps],
            "deploy": deploy.id, "status": deploy.status, "migrations": deploy.migrations,
            "columns": sorted(c["name"] for c in _inspect(engine).get_columns("users")),
        }}) + "\\n")


@rollback.after_deploy
def record_deploy(plan, deploy):
    _write("after_deploy", plan, deploy, db.engine)


@rollback.before_rollback
def record_rollback(plan, deploy):
    if os.path.exists(HOOK_LOG + ".freeze"):
        raise RuntimeError("rollbacks are frozen")
    _write("before_rollback", plan, deploy, db.engine)
"""


def test_after_deploy_and_before_rollback_hooks_receive_the_plan(tmp_path: Path, db_url: str) -> None:
    project = deployed_project(tmp_path, db_url)
    log = tmp_path / "hooks.jsonl"
    append_to_factory(project, HOOK_RECORDER.format(log=str(log)))
    project.write("accounts/models.py", ACCOUNTS_WITH_NICKNAME)
    db(project, "makemigrations")
    accounts_2 = revision_of(project, "accounts", "0002")
    name_2 = "accounts." + project.files("accounts")[1][:-3]

    db(project, "deploy", "--label", "v2")
    (after,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert after == {
        "hook": "after_deploy", "kind": "upgrade", "target": "heads",
        "steps": [[name_2, "up"]], "deploy": 2, "status": "applied", "migrations": [accounts_2],
        "columns": ["email", "id", "nickname"],  # called after the migrations ran
    }

    Path(str(log) + ".freeze").write_text("")
    before = state(project)
    line = one_error(db(project, "rollback", "--yes", code=1))
    assert line == "Error: before_rollback hook failed: rollbacks are frozen; nothing was changed"
    assert state(project) == before

    Path(str(log) + ".freeze").unlink()
    db(project, "rollback", "--yes")
    _, before_rollback = [json.loads(line) for line in log.read_text().splitlines()]
    assert before_rollback == {
        "hook": "before_rollback", "kind": "downgrade", "target": "before deploy 2",
        "steps": [[name_2, "down"]], "deploy": 2, "status": "applied", "migrations": [accounts_2],
        "columns": ["email", "id", "nickname"],  # called before anything was reverted
    }
    assert "nickname" not in schema(project)["users"]["columns"]


SIGNAL_RECEIVERS = """
from flask_rollback import signals


def _veto(sender, plan, **extra):
    if os.path.exists({flag!r}):
        raise RuntimeError("vetoed by a signal receiver")


def _deployed(sender, plan, deploy, **extra):
    with open({log!r}, "w") as handle:
        handle.write(f"{{sender.name}} {{deploy.id}} {{deploy.status}} {{len(plan.steps)}}")


signals.before_deploy.connect(_veto)
signals.after_deploy.connect(_deployed)
"""


def test_blinker_signals_can_veto_and_observe_a_deploy(tmp_path: Path, sqlite_url: str) -> None:
    """As real subprocesses: signal receivers are process-wide, so they stay out of pytest."""
    project = new_project(tmp_path, sqlite_url)
    flag, log = tmp_path / "veto", tmp_path / "signal.txt"
    append_to_factory(project, SIGNAL_RECEIVERS.format(flag=str(flag), log=str(log)))
    assert project.run("init").returncode == 0
    assert project.run("makemigrations").returncode == 0
    flag.write_text("")
    vetoed = project.run("deploy")
    assert vetoed.returncode == 1
    assert vetoed.stderr.strip() == (
        "Error: before_deploy hook failed: vetoed by a signal receiver; nothing was changed"
    )
    assert app_tables(project) == set() and records(project) == [] and not log.exists()
    flag.unlink()
    done = project.run("deploy")
    assert done.returncode == 0, done.stderr
    assert log.read_text() == f"{project.package} 1 applied 2"


def test_an_unreachable_database_is_one_line_without_the_password(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket closes
    url = f"postgresql+psycopg://deployer:{SECRET}@127.0.0.1:{port}/app"
    project = new_project(tmp_path, url)
    assert project.run("init").returncode == 0
    for args, code in ((("predeploy",), 2), (("predeploy", "--json"), 2), (("deploy",), 2)):
        result = project.run(*args)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        if "--json" in args:  # a script reading stdout still gets an answer, without the password
            answer = json.loads(result.stdout)
            assert answer["ok"] is False and answer["exit_code"] == 2
            assert answer["error"].startswith("cannot connect") and SECRET not in result.stdout
        else:
            assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("Error: cannot connect to the database postgresql+psycopg://deployer:***@")
        assert SECRET not in result.stderr

    missing = new_project(tmp_path / "sqlite", f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'app.db'}")
    db(missing, "init")
    line = one_error(db(missing, "predeploy", code=2))
    assert line.startswith("Error: cannot connect to the database sqlite:///")
    assert not (tmp_path / "no").exists()


# -- 5. the backup hook -------------------------------------------------------------------------------


def with_pg_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    """pg_dump 15 first on PATH (the backup hook looks it up there)."""
    monkeypatch.setenv("PATH", PG_BINDIR + os.pathsep + os.environ.get("PATH", ""))


def test_backup_hook_saves_the_database_as_it_was_before_the_deploy(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    backups = tmp_path / "backups"
    project = new_project(tmp_path, db_url)
    project.set_factory(["accounts", "blog"], config={"ROLLBACK_BACKUP_DIR": str(backups)})
    postgres = db_url.startswith("postgresql")
    if postgres:
        with_pg_dump(monkeypatch)
    db(project, "init")
    db(project, "makemigrations")
    blog_1 = revision_of(project, "blog", "0001")
    db(project, "deploy", "--label", "v1")
    (first,) = records(project)
    assert first["backup"] and Path(first["backup"]).parent == backups
    assert Path(first["backup"]).is_file()

    project.query_write(
        "INSERT INTO users (id, email) VALUES (1, 'ada@example.org'), (2, 'bob@example.org')",
        "INSERT INTO posts (id, title, author_id) VALUES (1, 'hello', 1)",
    )
    project.write("accounts/models.py", ACCOUNTS_WITH_NICKNAME)
    db(project, "makemigrations")
    db(project, "deploy", "--label", "v2")
    second = records(project)[1]
    assert second["status"] == "applied"
    backup = Path(second["backup"])
    assert backup.parent == backups and backup.is_file() and backup != Path(first["backup"])
    assert sorted(backups.iterdir()) == sorted([backup, Path(first["backup"])])

    if db_url.startswith("mysql"):
        assert backup.suffix == ".sql" and "CREATE TABLE `users`" in backup.read_text()
        server = request.getfixturevalue("mariadb_server")
        restored = f"restored_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
        server.create_database(restored)
        try:
            with backup.open("rb") as dump:
                done = subprocess.run(
                    ["mariadb", "--no-defaults", "--host=127.0.0.1", f"--port={server.port}",
                     f"--user={server.user}", restored],
                    env={**os.environ, "MYSQL_PWD": server.password}, stdin=dump,
                    capture_output=True, text=True, timeout=60,
                )
            assert done.returncode == 0, done.stderr
            copy_project = Project(tmp_path, project.package, server.url(restored))
            tables = copy_project.tables()
            users = copy_project.query("SELECT id, email FROM users ORDER BY id")
            posts = copy_project.query("SELECT id, title, author_id FROM posts")
            columns = [c["name"] for c in sa.inspect(copy_project.engine()).get_columns("users")]
            stored = copy_project.query("SELECT version_num FROM alembic_version")
            deploy_ids = copy_project.query("SELECT id, status FROM rollback_deploys")
        finally:
            server.drop_database(restored)
    elif not postgres:
        with sqlite3.connect(backup) as copy:
            tables = {r[0] for r in copy.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            users = copy.execute("SELECT id, email FROM users ORDER BY id").fetchall()
            posts = copy.execute("SELECT id, title, author_id FROM posts").fetchall()
            columns = [r[1] for r in copy.execute("PRAGMA table_info(users)")]
            stored = copy.execute("SELECT version_num FROM alembic_version").fetchall()
            deploy_ids = copy.execute("SELECT id, status FROM rollback_deploys").fetchall()
        copy.close()
    else:
        assert backup.stat().st_size > 0 and backup.read_bytes()[:5] == b"PGDMP"  # custom format
        pg_server = request.getfixturevalue("pg_server")
        restored = f"restored_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
        pg_server.create_database(restored)
        try:
            done = subprocess.run(
                [f"{PG_BINDIR}/pg_restore", "--no-owner", "--host=127.0.0.1", f"--port={pg_server.port}",
                 f"--username={pg_server.user}", f"--dbname={restored}", str(backup)],
                env={**os.environ, "PGPASSWORD": pg_server.password}, capture_output=True, text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            copy_project = Project(tmp_path, project.package, pg_server.url(restored))
            tables = copy_project.tables()
            users = copy_project.query("SELECT id, email FROM users ORDER BY id")
            posts = copy_project.query("SELECT id, title, author_id FROM posts")
            columns = list(schema(copy_project)["users"]["columns"])
            stored = copy_project.query("SELECT version_num FROM alembic_version")
            deploy_ids = copy_project.query("SELECT id, status FROM rollback_deploys")
        finally:
            pg_server.drop_database(restored)
    assert {"users", "posts", "alembic_version", "rollback_deploys"} <= tables
    assert users == [(1, "ada@example.org"), (2, "bob@example.org")]
    assert posts == [(1, "hello", 1)]
    assert sorted(columns) == ["email", "id"]  # before deploy 2 added nickname
    assert stored == [(blog_1,)]
    assert deploy_ids == [(1, "applied")]


def assert_backup_blocks_deploy(project: Project, *fragments: str) -> None:
    """The deploy fails with one ``Error:`` line naming the problem and applies nothing."""
    db(project, "init")
    db(project, "makemigrations")
    before = state(project)
    result = db(project, "deploy", code=1)
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    assert state(project) == before
    assert app_tables(project) == set() and records(project) == []


def test_an_unusable_backup_folder_blocks_the_deploy(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the backup folder should be\n")
    backups = blocker / "backups"
    project = new_project(tmp_path, db_url)
    project.set_factory(["accounts", "blog"], config={"ROLLBACK_BACKUP_DIR": str(backups)})
    if db_url.startswith("postgresql"):
        with_pg_dump(monkeypatch)
    assert_backup_blocks_deploy(project, "backup", str(backups))


def test_a_missing_pg_dump_blocks_the_deploy(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = new_project(tmp_path, pg_url)
    project.set_factory(["accounts", "blog"], config={"ROLLBACK_BACKUP_DIR": str(tmp_path / "backups")})
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))  # no pg_dump anywhere on PATH
    assert_backup_blocks_deploy(project, "the backup hook needs pg_dump on PATH")
    assert not (tmp_path / "backups").exists() or not any((tmp_path / "backups").iterdir())


# -- 6. a deploy killed mid-run -------------------------------------------------------------------------


def popen_db(project: Project, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "db", *args],
        cwd=project.root, env=project.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def chain_logged(project: Project) -> int:
    if "rollback_log" not in project.tables():
        return 0
    return project.query("SELECT count(*) FROM rollback_log WHERE app = 'chain'")[0][0]


CHAIN_MODELS = """
import sqlalchemy as sa
from . import db

for number in range(1, {count} + 1):
    sa.Table(
        f"t{{number:04d}}", db.metadata,
        sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", sa.String(20)),
        info={{"app": "chain"}},
    )
"""


def test_a_deploy_killed_mid_run_is_repaired_then_rolled_back(tmp_path: Path, db_url: str) -> None:
    project = new_project(tmp_path, db_url, with_blog=False)
    db(project, "init")
    db(project, "makemigrations")
    db(project, "deploy", "--label", "v1")
    project.query_write("INSERT INTO users (id, email) VALUES (1, 'ada@example.org')")
    (first,) = records(project)
    before, versions_before = schema(project), versions(project)

    count = 12
    chain = write_chain(project, "chain", count, rows=20, sleep=0.05)
    project.write("chain_models.py", CHAIN_MODELS.format(count=count))  # so the gate sees no drift
    project.set_factory(["accounts"], extra_modules=["chain_models"])
    process = popen_db(project, "deploy", "--label", "v2")
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if any(r["status"] == "running" for r in records(project)) and chain_logged(project) >= 3:
                break
            assert process.poll() is None, process.communicate()
            time.sleep(0.02)
        else:
            raise AssertionError("the deploy never got going")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    undo_a_step_cut_in_half(project)

    done = sum(f"t{n:04d}" in project.tables() for n in range(1, count + 1))
    assert 3 <= done < count, f"the kill did not land mid-run ({done}/{count} applied)"
    assert app_tables(project) == {"users"} | {f"t{n:04d}" for n in range(1, done + 1)}
    assert versions(project) == sorted([*versions_before, chain[done - 1]])
    assert project.query(f"SELECT count(*) FROM t{done:04d}") == [(20,)]

    listing = json.loads(db(project, "deploys", "--json").output)
    assert [(r["id"], r["status"]) for r in listing] == [(2, "running"), (1, "applied")]
    assert db(project, "deploys").output.splitlines()[1].split()[:2] == ["2", "running"]
    crashed = state(project)
    line = one_error(db(project, "rollback", "2", "--yes", code=1))
    assert "deploy 2 is marked running" in line and "flask db deploys --repair" in line
    assert state(project) == crashed

    out = db(project, "deploys", "--repair").output.splitlines()
    assert out[1].split()[:2] == ["2", "failed"]
    assert out[1].endswith("interrupted: the process ended mid-deploy")
    assert out[2].split()[:2] == ["1", "applied"]
    repaired = records(project)[1]
    assert repaired["status"] == "failed" and repaired["finished_at"] is not None
    assert repaired["error"].startswith("interrupted")
    assert repaired["stored_heads_before"] == versions_before
    assert repaired["migrations"] == chain[:done]  # what the crashed deploy got done
    assert sorted(repaired["stored_heads_after"]) == crashed[1] != versions_before
    assert schema(project) == crashed[0] and versions(project) == crashed[1]  # repair only closes the record

    out = db(project, "rollback", "--yes", "--allow-data-loss").output
    assert [re.sub(r" \(\d+\.\d\d s\)$", "", line) for line in out.splitlines()[:-1]] == [
        f"Unapplying chain.000{number}_step... OK" for number in range(done, 0, -1)  # newest first
    ]
    assert out.splitlines()[-1] == f"Rolled back deploy 2: reverted {done} migrations."
    after = schema(project)
    after.pop(PARTIAL_TABLE, None)  # MariaDB: the history of an undone half step, if any
    assert after == before
    assert versions(project) == versions_before
    assert project.query("SELECT id, email FROM users") == [(1, "ada@example.org")]
    assert records(project)[0] == first
    assert records(project)[1]["status"] == "rolled back"


def undo_a_step_cut_in_half(project: Project) -> None:
    """MariaDB commits each DDL statement at once: a step the kill cut in half (its table
    created, its version row not) is marked in the partial table; undo it the documented way."""
    if PARTIAL_TABLE not in project.tables():
        return
    rows = project.query(f"SELECT app, revision, statements FROM {PARTIAL_TABLE} WHERE resolved_at IS NULL")
    for app, revision, statements in rows:
        created = re.search(r"CREATE TABLE (\w+)", statements)
        if created and created.group(1) in project.tables():
            out = db(project, "resolve", app, revision, "--undo").output
            assert out.startswith(f"Undid {app}."), out


SELF_KILL_UPGRADE = """
import os
import signal
bind = op.get_bind()
from tests.projects import server_database, sleep_on_server
if bind.dialect.name == "sqlite":
    where = os.path.basename(bind.exec_driver_sql("PRAGMA database_list").fetchall()[0][2])
else:
    where = server_database(bind)
op.execute("UPDATE users SET email = lower(email)")
if not where.startswith("rollback_rehearsal_"):  # the rehearsal passes; the real run dies
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_rollback_refuses_to_skip_a_deploy_left_running(tmp_path: Path, db_url: str) -> None:
    """A crashed deploy's record says 'running' until repaired: no rollback may act as if the
    deploy were not there (it would undo an older deploy under it, or skip it)."""
    project = deployed_project(tmp_path, db_url)
    write_migration(
        project, "accounts", "0002_killer.py", "kill0002", revision_of(project, "accounts", "0001"),
        SELF_KILL_UPGRADE, 'op.execute("SELECT 1")',
    )
    killed = project.run("deploy", "--label", "v2")
    assert killed.returncode == -signal.SIGKILL, (killed.stdout, killed.stderr)
    assert [r["status"] for r in records(project)] == ["applied", "running"]
    crashed = state(project)
    assert app_tables(project) == {"users", "posts"}

    for args in (("rollback", "--yes"), ("rollback", "1", "--yes")):
        line = one_error(db(project, *args, code=1))
        assert "deploy 2" in line and "--repair" in line, (args, line)
        assert state(project) == crashed, f"flask db {' '.join(args)} changed the database"
