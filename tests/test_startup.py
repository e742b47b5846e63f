"""Start-up cost: ``flask db --help`` and the commands that only look load neither Alembic
(its autogenerate, runtime and command modules) nor sqlparse nor flask-rollback's deploy,
rehearsal, data-loss or archive machinery; those load when a command that needs them runs.

Each command runs as a real process through a tiny launcher that, at exit, writes the names
of every module the process imported; an upgrade run the same way shows the probe sees them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.projects import Project, new_project, write_chain

LAUNCHER = '''
import atexit, json, os, sys
atexit.register(lambda: open(os.environ["MODULES_OUT"], "w").write(json.dumps(sorted(sys.modules))))
from flask.cli import main
sys.argv = ["flask", *sys.argv[1:]]
main()
'''

#: Modules a command that only reads the migrations and the version table must not load.
HEAVY = (
    "alembic", "sqlparse", "mako",
    "flask_rollback.analysis", "flask_rollback.archive", "flask_rollback.autodetect",
    "flask_rollback.backup", "flask_rollback.dataloss", "flask_rollback.executor",
    "flask_rollback.gate", "flask_rollback.guard", "flask_rollback.predict",
    "flask_rollback.questioner", "flask_rollback.rehearsal", "flask_rollback.scratch",
    "flask_rollback.scripts", "flask_rollback.statements",
)


def loaded(project: Project, tmp_path: Path, *args: str) -> set[str]:
    out = tmp_path / "modules.json"
    out.unlink(missing_ok=True)
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    result = subprocess.run(
        [sys.executable, str(launcher), *args], cwd=project.root,
        env={**project.env(), "MODULES_OUT": str(out)}, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return set(json.loads(out.read_text()))


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == name or m.startswith(f"{name}.") for name in HEAVY))


@pytest.fixture
def project(tmp_path: Path, sqlite_url: str) -> Project:
    project = new_project(tmp_path / "project", sqlite_url)
    assert project.run("init").returncode == 0
    write_chain(project, "accounts", 3)
    return project


@pytest.mark.parametrize("args", [
    ("db", "--help"),
    ("db", "heads"),
    ("db", "current"),
    ("db", "showmigrations"),
    ("db", "history", "-v"),
    ("db", "graph"),
    ("db", "graph", "--format", "dot", "--applied"),
    ("db", "upgrade", "--help"),
], ids=lambda args: " ".join(args[1:]))
def test_looking_loads_no_machinery(project: Project, tmp_path: Path, args: tuple[str, ...]) -> None:
    modules = loaded(project, tmp_path, *args)
    assert "flask_rollback.cli" in modules  # the commands were there
    assert heavy(modules) == []


def test_the_probe_sees_what_an_upgrade_loads(project: Project, tmp_path: Path) -> None:
    modules = loaded(project, tmp_path, "db", "upgrade")
    assert {"alembic.runtime.migration", "flask_rollback.executor", "flask_rollback.dataloss"} <= modules
    assert project.tables() >= {"t0001", "t0002", "t0003"}
    # and a read-only command after it still loads none of it
    assert heavy(loaded(project, tmp_path, "db", "showmigrations")) == []
