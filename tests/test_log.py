"""``flask db log``: the applied log (rollback_log) as people and scripts read it, newest first,
with the deploy each row belongs to."""

from __future__ import annotations

import getpass
import hashlib
import json
import re
import socket
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

from click.testing import Result

from tests.projects import ACCOUNTS_MODELS, Project, new_project

HEADER = ["when", "app", "migration", "action", "run", "took", "by", "deploy", "sha256"]
#: A row of the table: time (local, with zone), app, name, action, run, "0.01 s", user@host,
#: deploy id or "-", the first 12 characters of the checksum.
ROW = re.compile(
    r"(?P<when>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC(?:[+-]\d\d:\d\d)?)\s+(?P<app>\S+)\s+(?P<name>\S+)\s+"
    r"(?P<action>applied|reverted)\s+(?P<run>real|fake)\s+\d+\.\d\d s\s+(?P<by>\S+)\s+(?P<deploy>\d+|-)\s+"
    r"(?P<sha>[0-9a-f]{12})"
)


def db(project: Project, *args: str, code: int = 0) -> Result:
    result = project.db(*args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == code, result.output
    return result


def table_rows(output: str) -> list[dict[str, str]]:
    lines = output.splitlines()
    assert lines[0].split() == HEADER
    rows = [ROW.fullmatch(line) for line in lines[1:]]
    assert all(rows), output
    return [row.groupdict() for row in rows if row]


def sha(project: Project, app: str, name: str) -> str:
    return hashlib.sha256((project.migrations / app / f"{name}.py").read_bytes()).hexdigest()


def test_log_shows_every_run_newest_first_with_its_deploy(tmp_path: Path, db_url: str) -> None:
    project = new_project(tmp_path, db_url)
    db(project, "init")
    assert db(project, "log").output == "No migrations applied yet.\n"
    assert json.loads(db(project, "log", "--json").output) == []
    assert "rollback_log" not in project.tables()  # looking created nothing

    db(project, "makemigrations")
    db(project, "upgrade")  # accounts.0001, blog.0001: a plain upgrade
    project.write("accounts/models.py", ACCOUNTS_MODELS + "    bio: Mapped[str | None] = mapped_column(db.String(200))\n")
    db(project, "makemigrations")
    db(project, "deploy", "--no-rehearsal")  # deploy 1: accounts.0002
    db(project, "rollback", "--yes")  # reverts it
    db(project, "stamp", "accounts.0002")  # recorded, not run: fake
    (bio,) = [p.stem for p in (project.migrations / "accounts").glob("0002_*.py")]

    rows = table_rows(db(project, "log").output)
    me = f"{getpass.getuser()}@{socket.gethostname()}"
    assert [(r["app"], r["name"], r["action"], r["run"], r["deploy"]) for r in rows] == [
        ("accounts", bio, "applied", "fake", "-"),
        ("accounts", bio, "reverted", "real", "1"),
        ("accounts", bio, "applied", "real", "1"),
        ("blog", "0001_initial", "applied", "real", "-"),
        ("accounts", "0001_initial", "applied", "real", "-"),
    ]
    assert {r["by"] for r in rows} == {me}
    assert rows[0]["sha"] == sha(project, "accounts", bio)[:12]
    assert rows[-1]["sha"] == sha(project, "accounts", "0001_initial")[:12]
    assert [r["when"] for r in rows] == sorted((r["when"] for r in rows), reverse=True)

    # APP, --limit: the newest rows of that app
    rows = table_rows(db(project, "log", "blog").output)
    assert [(r["app"], r["name"]) for r in rows] == [("blog", "0001_initial")]
    rows = table_rows(db(project, "log", "accounts", "--limit", "2").output)
    assert [(r["action"], r["run"]) for r in rows] == [("applied", "fake"), ("reverted", "real")]

    # --json: every column, times in ISO 8601 UTC
    entries = json.loads(db(project, "log", "--json", "--limit", "3").output)
    assert [(e["name"], e["direction"], e["fake"], e["deploy"]) for e in entries] == [
        (bio, "up", True, None), (bio, "down", False, 1), (bio, "up", False, 1),
    ]
    for entry in entries:
        assert entry["sha256"] == sha(project, "accounts", bio)
        assert (entry["user"], entry["host"]) == (getpass.getuser(), socket.gethostname())
        started, finished = (datetime.fromisoformat(entry[k]) for k in ("started_at", "finished_at"))
        assert started.utcoffset() == finished.utcoffset() == timedelta(0)
        assert finished >= started and entry["duration_ms"] >= 0
    assert entries[0]["id"] > entries[1]["id"] > entries[2]["id"]


def test_log_times_are_local_with_the_zone(tmp_path: Path, db_url: str) -> None:
    project = new_project(tmp_path, db_url)
    db(project, "init")
    db(project, "makemigrations")
    db(project, "upgrade")
    result = subprocess.run(
        [sys.executable, "-m", "flask", "db", "log", "--limit", "1"], cwd=project.root,
        env={**project.env(), "TZ": "Asia/Kolkata"},  # UTC+05:30 all year
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    (row,) = table_rows(result.stdout)
    utc = datetime.fromisoformat(json.loads(project.run("log", "--json", "--limit", "1").stdout)[0]["finished_at"])
    assert row["when"] == f"{(utc + timedelta(hours=5, minutes=30)):%Y-%m-%d %H:%M:%S} UTC+05:30"


def test_log_of_an_unknown_app_is_one_line(tmp_path: Path, db_url: str) -> None:
    project = new_project(tmp_path, db_url)
    db(project, "init")
    db(project, "makemigrations")
    db(project, "upgrade")
    before = project.query("SELECT COUNT(*) FROM rollback_log")
    result = db(project, "log", "blgo", code=1)
    assert result.output.splitlines() == [result.output.strip()]
    assert result.output.startswith("Error: unknown app 'blgo'") and "blog" in result.output
    result = db(project, "log", "--limit", "0", code=2)
    assert "--limit" in result.output and "Traceback" not in result.output
    assert project.query("SELECT COUNT(*) FROM rollback_log") == before
