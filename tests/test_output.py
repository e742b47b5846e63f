"""Output a person can scan: help on every option, ``--version``, colour on a terminal only,
plurals that agree, fake rows marked, "no branches", relative paths."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import click
from click.testing import Result

import flask_rollback
from flask_rollback.cli import db_group
from tests.projects import Project, new_project


def db(project: Project, *args: str, code: int = 0) -> Result:
    result = project.db(*args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == code, result.output
    return result


def sqlite_project(tmp_path: Path) -> Project:
    project = new_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    db(project, "init")
    return project


def test_every_command_and_option_has_help() -> None:
    missing = [] if db_group.help else ["flask db"]
    for param in db_group.params:
        if isinstance(param, click.Option) and not param.help:
            missing.append(f"flask db {param.opts[0]}")
    for name, command in db_group.commands.items():
        if not command.help:
            missing.append(f"flask db {name}")
        missing += [
            f"flask db {name} {param.opts[0]}"
            for param in command.params
            if isinstance(param, click.Option) and not param.help
        ]
    assert not missing, f"no help text: {', '.join(missing)}"


def test_version_names_what_it_runs_on(tmp_path: Path) -> None:
    project = sqlite_project(tmp_path)
    result = project.run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"flask-rollback {flask_rollback.__version__}",
        f"Alembic {version('alembic')}",
        f"SQLAlchemy {version('sqlalchemy')}",
        f"Flask {version('flask')}",
    ]


def on_a_terminal(project: Project, *args: str, env: dict[str, str] | None = None) -> str:
    """``flask db ARGS`` with stdout and stderr on a pseudo-terminal: all it printed."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "db", *args], cwd=project.root,
        env={**project.env(), **(env or {})}, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=120) in (0, 1)
    return b"".join(chunks).decode()


def test_colour_on_a_terminal_only_and_never_with_no_color(tmp_path: Path) -> None:
    project = sqlite_project(tmp_path)
    db(project, "makemigrations")
    green, red = "\033[32m", "\033[31m"
    shown = on_a_terminal(project, "upgrade", "accounts")
    assert f"Applying accounts.0001_initial... {green}OK" in shown
    shown = on_a_terminal(project, "log", "nope")
    assert f"{red}Error:" in shown
    shown = on_a_terminal(project, "upgrade", env={"NO_COLOR": "1"})
    assert "Applying blog.0001_initial... OK" in shown and "\033[" not in shown
    piped = project.run("log", "nope")
    assert piped.stderr.startswith("Error: unknown app") and "\033[" not in piped.stderr


def test_plurals_agree(tmp_path: Path) -> None:
    project = sqlite_project(tmp_path)
    db(project, "makemigrations")
    predeploy = db(project, "predeploy", "--no-rehearsal").output
    assert "Ready: 2 pending migrations can be deployed and rolled back." in predeploy
    assert "Applied 1 migration (accounts 1) in " in db(project, "upgrade", "accounts").output
    assert "Ready: 1 pending migration can be deployed and rolled back." in db(project, "predeploy", "--no-rehearsal").output
    assert "Deploy 1 applied 1 migration; " in db(project, "deploy", "--no-rehearsal").output
    assert "Reverted 2 migrations (blog 1, accounts 1) in " in db(project, "downgrade", "accounts", "zero", "--cascade").output


def test_showmigrations_marks_fake_rows_and_branches_says_none(tmp_path: Path) -> None:
    project = sqlite_project(tmp_path)
    db(project, "makemigrations")
    assert db(project, "branches").output == "No branches: no migration has more than one child.\n"
    db(project, "stamp", "accounts")  # recorded, not run
    db(project, "upgrade")
    lines = db(project, "showmigrations").output.splitlines()
    assert re.fullmatch(r" \[X\] 0001_initial \(fake\)  \(applied \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\S*\)", lines[1])
    assert re.fullmatch(r" \[X\] 0001_initial  \(applied .*\)", lines[3])  # blog's: it ran
    plan = db(project, "showmigrations", "--plan").output.splitlines()
    assert plan[1].startswith("[X]  accounts.0001_initial (fake)  ") and plan[2].startswith("[X]  blog.0001_initial  ")
    apps = json.loads(db(project, "showmigrations", "--json").output)["apps"]
    applied = {app["app"]: app["migrations"][0]["fake"] for app in apps}
    assert applied == {"accounts": True, "blog": False}
    project.query_write("CREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR(120))")  # what it stamped
    db(project, "downgrade", "accounts", "zero", "--cascade")
    db(project, "upgrade")  # run for real this time: no longer fake
    assert "(fake)" not in db(project, "showmigrations").output


def test_paths_are_relative_to_the_working_directory(tmp_path: Path) -> None:
    project = new_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    created = project.run("init")
    assert created.returncode == 0, created.stderr
    assert "Created migrations/env.py" in created.stdout.splitlines()
    made = project.run("makemigrations")
    assert made.stdout.startswith("Created migration migrations/accounts/0001_initial.py (revision ")
    verbose = project.run("heads", "-v").stdout
    assert " migrations/accounts/0001_initial.py" in verbose and str(tmp_path) not in verbose
    (tmp_path / "elsewhere").mkdir()
    elsewhere = subprocess.run(  # run from outside the folder: the path stays absolute
        [sys.executable, "-m", "flask", "db", "-d", str(tmp_path / "nowhere"), "showmigrations"],
        cwd=tmp_path / "elsewhere", env=project.env(), capture_output=True, text=True, timeout=120, check=False,
    )
    assert elsewhere.stderr.startswith(f"Error: no migrations folder at {tmp_path / 'nowhere'} ")
    missing = subprocess.run(
        [sys.executable, "-m", "flask", "db", "-d", "nowhere", "showmigrations"],
        cwd=project.root, env=project.env(), capture_output=True, text=True, timeout=120, check=False,
    )
    assert missing.stderr.startswith("Error: no migrations folder at nowhere ")
