"""The revision index: commands that only read the graph never import a migration module.

Every migration file here records its own import (it appends its revision to a log file when
Python runs it), so each test sees exactly which modules a real ``flask db`` process imported.
The index itself is a cache: whatever state it is in (corrupt, stale, of another format, lying
about a file, impossible to write), the commands must show what the files say.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import flask_rollback
from flask_rollback.index import CACHE_DIR, FORMAT, INDEX_NAME, RACY_NS, read_folder
from tests.pgserver import unavailable
from tests.projects import Project, new_project

MIGRATION = '''"""{name}

Revision ID: {revision}
Revises: {down}
Create Date: 2026-01-0{day} 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

with open({log!r}, "a") as _log:
    _log.write({revision!r} + "\\n")

{header}


def upgrade():
    op.create_table("t_{revision}", sa.Column("id", sa.Integer, primary_key=True))


def downgrade():
    op.drop_table("t_{revision}")
'''

READ_ONLY_COMMANDS = [
    ("heads",),
    ("heads", "--resolve-dependencies"),
    ("current",),
    ("showmigrations",),
    ("showmigrations", "--plan"),
    ("history",),
    ("history", "-v", "-i"),
    ("check", "--database", "live"),
    ("show", "accounts.0002"),
    ("show", "heads"),
    ("show", "current"),
    ("branches", "-v"),
    ("graph",),
    ("graph", "--format", "dot", "--applied"),
]


def write(project: Project, log: Path, app: str, number: int, revision: str,
          down: str | None, header: str | None = None) -> Path:
    """``migrations/APP/000N_<revision>.py``, logging its import to ``log``."""
    if header is None:
        labels = (app,) if down is None else None
        header = f"revision = {revision!r}\ndown_revision = {down!r}\nbranch_labels = {labels!r}\ndepends_on = None"
    folder = project.migrations / app
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{number:04d}_{revision}.py"
    path.write_text(MIGRATION.format(
        name=path.stem, revision=revision, down=down, day=number, log=str(log), header=header,
    ))
    return path


def imported(log: Path) -> list[str]:
    """Revisions whose module ran since the log was last cleared (and clear it)."""
    if not log.exists():
        return []
    found = log.read_text().split()
    log.unlink()
    return found


def run_ok(project: Project, *args: str) -> str:
    result = project.run(*args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def index_file(project: Project, app: str) -> Path:
    return project.migrations / app / CACHE_DIR / INDEX_NAME


def read_index(path: Path) -> dict[str, Any]:
    """The index as one dict: its head (format, written) and its columns (files, stat, sha256,
    revision, down_revision, ...: an item per file); the head's sha256 of the body must match."""
    first, _, body = path.read_bytes().partition(b"\n")
    head = json.loads(first)
    assert head.pop("body_sha256") == hashlib.sha256(body).hexdigest()
    return {**head, **json.loads(body)}


def write_index(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` (as read_index gives it) back, its body's sha256 in the head: an index
    that looks intact."""
    body = json.dumps({key: value for key, value in data.items() if key not in ("format", "written")}).encode()
    head = {"format": data["format"], "written": data["written"],
            "body_sha256": hashlib.sha256(body).hexdigest()}
    path.write_bytes(json.dumps(head).encode() + b"\n" + body)


def indexed_revision(data: dict[str, Any], name: str) -> str:
    """The revision id the index holds for a file."""
    return data["revision"][data["files"].index(name)]


@pytest.fixture
def project(tmp_path: Path, sqlite_url: str) -> Project:
    """accounts: a0001 <- a0002 <- a0003; blog: b0001 (depends on a0001) <- b0002; models match
    nothing in particular (check --database live reports that without importing anything)."""
    project = new_project(tmp_path, sqlite_url)
    run_ok(project, "init")
    log = tmp_path / "imported.log"
    write(project, log, "accounts", 1, "a0001", None)
    write(project, log, "accounts", 2, "a0002", "a0001")
    write(project, log, "accounts", 3, "a0003", "a0002")
    write(project, log, "blog", 1, "b0001", None,
          "revision = 'b0001'\ndown_revision = None\nbranch_labels = ('blog',)\ndepends_on = 'a0001'")
    write(project, log, "blog", 2, "b0002", "b0001")
    return project


def test_read_only_commands_import_no_migration(project: Project, tmp_path: Path) -> None:
    log = tmp_path / "imported.log"
    run_ok(project, "upgrade", "accounts", "0002")
    assert sorted(imported(log)) == ["a0001", "a0002"]  # only the steps that ran
    for args in READ_ONLY_COMMANDS:
        result = project.run(*args)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        assert result.returncode in (0, 3, 4), (args, result.stdout, result.stderr)
        assert imported(log) == [], args
    heads = run_ok(project, "heads")
    assert "accounts: a0003 0003_a0003" in heads and "blog: b0002 0002_b0002" in heads
    current = run_ok(project, "current")
    assert "accounts: a0002 0002_a0002" in current and "blog: (none)" in current
    shown = run_ok(project, "showmigrations")
    assert " [X] 0002_a0002" in shown and " [ ] 0003_a0003" in shown and " [ ] 0001_b0001" in shown
    history = run_ok(project, "history", "-v")
    assert "created: 2026-01-03 10:00:00.000000" in history  # the docstring, read statically
    shown = run_ok(project, "show", "accounts.0002")
    assert shown.startswith("Rev: a0002\nParent: a0001\n") and "\n    0002_a0002\n" in shown
    assert "depends on: accounts.0001_a0001 (a0001)" in history
    assert imported(log) == []
    # An upgrade imports exactly the migrations it runs.
    run_ok(project, "upgrade", "blog")
    assert sorted(imported(log)) == ["b0001", "b0002"]
    run_ok(project, "upgrade")
    assert imported(log) == ["a0003"]


def test_flask_migrate_functions_import_no_migration(
    project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """heads, current, show, branches and history print as Flask-Migrate's did (Alembic's
    formatting, docstrings included) from the index."""
    log = tmp_path / "imported.log"
    run_ok(project, "upgrade", "accounts", "0002")
    imported(log)
    app = project.app()
    with app.app_context():
        assert [m.revision for m in flask_rollback.heads(verbose=True)] == ["a0003", "b0002"]
        status = flask_rollback.current(verbose=True)
        assert {app.label: app.current for app in status.apps} == {"accounts": ["a0002"], "blog": []}
        assert [m.revision for m in flask_rollback.show(revision="accounts@head")] == ["a0003"]
        assert flask_rollback.branches(verbose=True) == []
        assert [m.revision for m in flask_rollback.history(verbose=True)][:2] == ["a0003", "a0002"]
    printed = capsys.readouterr().out
    assert "Rev: a0003 (head)\nParent: a0002\n" in printed and "\n    0003_a0003\n" in printed
    assert "Current revisions for sqlite:///" in printed and "Rev: a0002\n" in printed
    assert imported(log) == []


def test_index_is_beside_the_migrations_and_private(project: Project) -> None:
    run_ok(project, "heads")
    for app in ("accounts", "blog"):
        path = index_file(project, app)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        data = read_index(path)
        assert data["format"] == FORMAT
        assert data["files"] == sorted(p.name for p in (project.migrations / app).glob("*.py"))
    # Nothing else is written next to the migration files, and no temporary file is left.
    assert sorted(p.name for p in (project.migrations / "accounts" / CACHE_DIR).iterdir()) == [INDEX_NAME]


def test_edit_within_the_same_second_is_read_again(project: Project, tmp_path: Path) -> None:
    """Same size, same mtime (restored), other content: the edit is seen, right after the index
    was written (within the timestamp resolution) and again later."""
    run_ok(project, "heads")
    path = project.migrations / "accounts" / "0003_a0003.py"
    before = path.stat()
    text = path.read_text().replace("a0003", "z0003")
    assert len(text) == len(path.read_text())
    path.write_text(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    heads = run_ok(project, "heads")
    assert "accounts: z0003 0003_a0003" in heads and " a0003" not in heads
    assert indexed_revision(read_index(index_file(project, "accounts")), "0003_a0003.py") == "z0003"


def test_an_entry_whose_hash_disagrees_is_not_trusted(project: Project) -> None:
    """An index written just now (so its entries are racily clean) whose recorded size and times
    match the file but whose hash and header do not: the file's bytes win."""
    run_ok(project, "heads")
    path = index_file(project, "accounts")
    data = read_index(path)
    number = data["files"].index("0003_a0003.py")
    data["sha256"] = data["sha256"][:64 * number] + "0" * 64 + data["sha256"][64 * (number + 1):]
    data["revision"][number] = "forged"
    _size, mtime, ctime = data["stat"][3 * number:3 * number + 3]
    data["written"] = max(mtime, ctime)  # as if written in the same tick as the file
    write_index(path, data)
    heads = run_ok(project, "heads")
    assert "accounts: a0003 0003_a0003" in heads and "forged" not in heads
    assert indexed_revision(read_index(path), "0003_a0003.py") == "a0003"


def _damaged(good: bytes) -> bytes:
    """An intact index with one header changed and its head left as it was."""
    return good.replace(b'"a0002"', b'"../evil"', 1)


def _columns_disagree(good: bytes) -> bytes:
    """An index whose head matches its body, but with fewer revisions than files."""
    first, _, body = good.partition(b"\n")
    columns = json.loads(body)
    columns["revision"].pop()
    body = json.dumps(columns).encode()
    head = {**json.loads(first), "body_sha256": hashlib.sha256(body).hexdigest()}
    return json.dumps(head).encode() + b"\n" + body


@pytest.mark.parametrize("damage", [
    lambda good: b'{"format":',
    lambda good: good[:len(good) // 2],
    lambda good: b"\x00\xff garbage",
    lambda good: b"[]\n[]",
    lambda good: good.replace(f'"format":{FORMAT}'.encode(), b'"format":999', 1),
    lambda good: good.replace(b'"written":', b'"written":"soon","was":', 1),
    _damaged,
    _columns_disagree,
], ids=["truncated-head", "truncated-body", "binary", "lists", "other-format", "bad-written",
        "body-changed", "columns-disagree"])
def test_a_corrupt_or_foreign_index_is_rebuilt(project: Project, damage: Any) -> None:
    run_ok(project, "heads")
    path = index_file(project, "accounts")
    good = read_index(path)
    path.write_bytes(damage(path.read_bytes()))
    heads = run_ok(project, "heads")
    assert "accounts: a0003 0003_a0003" in heads and "blog: b0002 0002_b0002" in heads
    assert "evil" not in run_ok(project, "history", "-v")
    rebuilt = read_index(path)
    assert rebuilt["format"] == FORMAT
    assert {key: value for key, value in rebuilt.items() if key not in ("written", "stat")} == {
        key: value for key, value in good.items() if key not in ("written", "stat")
    }


def test_a_stale_entry_is_read_again(project: Project, tmp_path: Path) -> None:
    """A file replaced by another of a different size, and a file added or removed, after the
    index was written."""
    log = tmp_path / "imported.log"
    run_ok(project, "heads")
    write(project, log, "accounts", 3, "a0003", "a0002",
          "revision = 'a0003'\ndown_revision = 'a0002'\nbranch_labels = None\ndepends_on = 'b0001'")
    write(project, log, "accounts", 4, "a0004", "a0003")
    (project.migrations / "blog" / "0002_b0002.py").unlink()
    heads = run_ok(project, "heads")
    assert "accounts: a0004 0004_a0004" in heads and "blog: b0001 0001_b0001" in heads
    assert "depends on: blog.0001_b0001 (b0001)" in run_ok(project, "history", "-v", "accounts")
    assert imported(log) == []
    assert read_index(index_file(project, "blog"))["files"] == ["0001_b0001.py"]


def test_a_computed_header_is_read_by_importing_that_file(project: Project, tmp_path: Path) -> None:
    log = tmp_path / "imported.log"
    write(project, log, "accounts", 4, "a0004", "a0003",
          "revision = 'a' + '0004'\ndown_revision = 'a0003'\nbranch_labels = None\ndepends_on = None")
    write(project, log, "accounts", 5, "a0005", "a0004",  # reassigned in a block: not the plain value
          "revision = 'a0005'\nif True:\n    revision = 'a0005x'\n"
          "down_revision = 'a0004'\nbranch_labels = None\ndepends_on = None")
    for _ in range(2):  # computed headers are never cached: imported on every read
        heads = run_ok(project, "heads")
        assert "accounts: a0005x 0005_a0005" in heads
        assert sorted(imported(log)) == ["a0004", "a0005"]  # the files, by name


def test_a_header_set_through_globals_is_read_by_importing(project: Project, tmp_path: Path) -> None:
    log = tmp_path / "imported.log"
    write(project, log, "accounts", 4, "a0004", "a0003",
          "revision = 'a0004'\ndown_revision = 'a0003'\nbranch_labels = None\ndepends_on = None\n"
          "globals()['revision'] = 'a0004x'")
    assert "accounts: a0004x 0004_a0004" in run_ok(project, "heads")
    assert imported(log) == ["a0004"]


def test_a_header_that_changes_when_the_file_runs_stops_the_upgrade(project: Project, tmp_path: Path) -> None:
    """A header rewritten in a way no static reading sees (through a frame object): the
    upgrade that imports it to run it stops before running anything, naming the file."""
    log = tmp_path / "imported.log"
    path = write(project, log, "accounts", 4, "a0004", "a0003",
                 "revision = 'a0004'\ndown_revision = 'a0003'\nbranch_labels = None\ndepends_on = None\n"
                 "import inspect\ninspect.currentframe().f_globals['down_revision'] = 'a0001'")
    result = project.run("upgrade")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert f"migration file {os.path.relpath(path, project.root)} sets revision, down_revision" in result.stderr
    assert "Traceback" not in result.stderr
    assert project.tables() == set()  # nothing ran: not even the other apps' migrations


def test_read_only_migrations_folder(project: Project, tmp_path: Path) -> None:
    """No index can be written: the commands work, reading the files each time. Root ignores
    permissions, so the command runs without CAP_DAC_OVERRIDE there."""
    log = tmp_path / "imported.log"
    folders = [project.migrations / "accounts", project.migrations / "blog"]
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            unavailable("running as root without setpriv (util-linux): root writes any folder")
        drop = "-dac_override,-dac_read_search"
        prefix = [setpriv, f"--bounding-set={drop}", f"--inh-caps={drop}"]
    for folder in folders:
        folder.chmod(0o555)
    try:
        for args in (("heads",), ("showmigrations",), ("heads",)):
            result = subprocess.run(
                [*prefix, sys.executable, "-m", "flask", "db", *args],
                cwd=project.root, env=project.env(), capture_output=True, text=True, timeout=120,
            )
            assert result.returncode == 0, (result.stdout, result.stderr)
            assert "Traceback" not in result.stderr
            assert "accounts: a0003" in result.stdout or "[ ] 0003_a0003" in result.stdout
    finally:
        for folder in folders:
            folder.chmod(0o755)
    assert not (project.migrations / "accounts" / CACHE_DIR).exists()
    assert imported(log) == []


def test_the_index_is_never_written_through_a_symlink(project: Project, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (project.migrations / "accounts" / CACHE_DIR).symlink_to(elsewhere, target_is_directory=True)
    blog_cache = project.migrations / "blog" / CACHE_DIR
    blog_cache.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (blog_cache / INDEX_NAME).symlink_to(victim)
    for _ in range(2):
        heads = run_ok(project, "heads")
        assert "accounts: a0003 0003_a0003" in heads and "blog: b0002 0002_b0002" in heads
    assert list(elsewhere.iterdir()) == []
    assert victim.read_text() == "keep me"
    # The symlinked index name is replaced by a real file (rename does not follow it).
    assert not (blog_cache / INDEX_NAME).is_symlink()
    assert read_index(blog_cache / INDEX_NAME)["format"] == FORMAT


def test_one_file_changed_among_ten_thousand_is_read_again(tmp_path: Path) -> None:
    """A folder of 10,000 migrations, indexed; then one file rewritten with the same size and
    mtime. Its ctime gives it away; and when the index holds that very stat (the file changed
    in the same clock tick as it was indexed, as on a file system with coarse timestamps), the
    racy check re-hashes it: the whole-folder shortcut never hides it."""
    folder = tmp_path / "big"
    folder.mkdir()
    for number in range(10_000):
        down = f"'r{number - 1:05d}'" if number else "None"
        (folder / f"{number:05d}_r{number:05d}.py").write_text(
            f"revision = 'r{number:05d}'\ndown_revision = {down}\n"
        )
    time.sleep(RACY_NS / 1e9 + 0.1)  # so that only the file changed below is ever racy
    assert [d.down_revision for d in read_folder(folder)][-2:] == [("r09997",), ("r09998",)]
    path = folder / "05000_r05000.py"

    def rewrite(new: str) -> None:
        before = path.stat()
        path.write_text(f"revision = '{new}'\ndown_revision = 'r04999'\n")
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns

    rewrite("x05000")
    assert read_folder(folder)[5000].revision == "x05000"
    assert indexed_revision(read_index(folder / CACHE_DIR / INDEX_NAME), path.name) == "x05000"

    rewrite("y05000")
    index = folder / CACHE_DIR / INDEX_NAME
    data = read_index(index)
    number = data["files"].index(path.name)
    now = path.stat()
    data["stat"][3 * number:3 * number + 3] = [now.st_size, now.st_mtime_ns, now.st_ctime_ns]
    data["written"] = max(now.st_mtime_ns, now.st_ctime_ns)  # indexed in the same tick
    write_index(index, data)  # so it holds the file's stat with the old header
    assert [d.revision for d in read_folder(folder)][4999:5002] == ["r04999", "y05000", "r05001"]
