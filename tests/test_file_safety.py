"""Issue 11, items 3, 11 and 12: backups of the right database (or none), files written by
commands that always parse, and password masking that does not garble messages.

Real servers only: SQLite files, PostgreSQL 15 from tests/pgserver.py (a second cluster where a
test needs "another server"), real pg_dump / pg_restore, real ``flask db`` runs.
"""

from __future__ import annotations

import ast
import os
import shutil
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result

from flask_rollback.files import WRITE_LOCK_NAME
from tests.pgserver import (
    FALLBACK_BINDIR,
    PostgresServer,
    find_postgres_bin,
    unavailable,
)
from tests.projects import (
    ACCOUNTS_MODELS,
    Project,
    folder_state,
    new_project,
    revision_of,
    write_migration,
)
from tests.test_deploy import app_tables, db, one_error, records, state

PG_BINDIR = FALLBACK_BINDIR

ODD_MESSAGES = [
    'a """ b',
    'ends with a quote"',
    "back\\slash \\n not a newline \\",
    "café ✓ naïve 日本",
    "two\nlines",
    "tab\there, carriage\rreturn, bell\x07",
    "''' single triple '''",
]


def docstring_of(path: Path) -> str:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))  # raises if it does not parse
    doc = ast.get_docstring(tree, clean=False)
    assert doc is not None, path
    return doc


def all_files(project: Project) -> list[Path]:
    return sorted(project.migrations.glob("*/*.py"))


# -- 11. files written by commands are always valid -------------------------------------------------


def test_any_message_writes_files_that_parse_and_read_back(tmp_path: Path) -> None:
    project = new_project(tmp_path, f"sqlite:///{tmp_path / 'app.db'}")
    db(project, "init")
    db(project, "makemigrations", "-m", 'a """ b')
    for message in ODD_MESSAGES[1:]:
        db(project, "makemigrations", "accounts", "--empty", "-m", message)
    files = all_files(project)
    assert len(files) == 2 + len(ODD_MESSAGES) - 1
    docs = [docstring_of(path).split("\n\nRevision ID:")[0] for path in files]
    assert sorted(docs) == sorted([ODD_MESSAGES[0], *ODD_MESSAGES])  # both initial files: 'a """ b'
    assert not list(project.migrations.rglob(".*.tmp")) and not (project.migrations / WRITE_LOCK_NAME).exists()

    # Two heads in accounts (a hand-written branch), merged with an odd message: parses too.
    write_migration(project, "accounts", "0099_branch.py", "branch99", revision_of(project, "accounts", "0001"), "pass")
    db(project, "merge", "accounts", "-m", 'merge """ "quoted" \\ ✓\nsecond line"')
    (merged,) = project.migrations.glob("accounts/*_merge_quoted*.py")
    assert docstring_of(merged).startswith('merge """ "quoted" \\ ✓\nsecond line"\n')
    # Every later command reads the files: upgrade, status, check.
    db(project, "upgrade")
    db(project, "check")
    assert app_tables(project) == {"users", "posts"}


def test_a_template_that_breaks_the_syntax_writes_nothing(tmp_path: Path) -> None:
    """A custom script.py.mako that puts the message in a comment: a two-line message would
    make a file every later command trips on; the file is compiled first and nothing lands."""
    project = new_project(tmp_path, f"sqlite:///{tmp_path / 'app.db'}")
    db(project, "init")
    template = project.migrations / "script.py.mako"
    template.write_text(template.read_text().replace("from alembic import op\n", "from alembic import op\n# ${message}\n"))
    before = folder_state(project)
    for args in (("makemigrations",), ("makemigrations", "--dry-run"), ("makemigrations", "accounts", "--empty")):
        line = one_error(db(project, *args, "-m", "two\nlines", code=1))
        assert "is not valid Python" in line and "script.py.mako" in line, line
    assert folder_state(project) == before
    db(project, "makemigrations", "-m", "one line")  # the same template with a fitting message
    assert len(all_files(project)) == 2


def test_two_makemigrations_at_once_cannot_make_two_heads(tmp_path: Path) -> None:
    """Two runs with different names (so different revision ids) start together: the second
    waits for the first's lock, then finds the models already migrated."""
    project = new_project(tmp_path, f"sqlite:///{tmp_path / 'app.db'}")
    db(project, "init")
    for attempt in range(2):
        runs = [
            subprocess.Popen(
                [sys.executable, "-m", "flask", "db", "makemigrations", "-m", f"run {name} {attempt}"],
                cwd=project.root, env=project.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for name in ("one", "two")
        ]
        outputs = [run.communicate(timeout=120) for run in runs]
        assert [run.returncode for run in runs] == [0, 0], outputs
        assert sum("No changes detected." in out for out, _err in outputs) == 1, outputs
        project.write("accounts/models.py", ACCOUNTS_MODELS + f"    extra{attempt}: Mapped[int | None] = mapped_column()\n")
    assert len(project.files("blog")) == 1 and len(project.files("accounts")) == 2
    for app in ("accounts", "blog"):
        revisions, parents = set(), set()
        for path in (project.migrations / app).glob("*.py"):
            module = ast.parse(path.read_text())
            values = {
                node.target.id if isinstance(node, ast.AnnAssign) else node.targets[0].id: node.value
                for node in module.body if isinstance(node, (ast.Assign, ast.AnnAssign))
            }
            revisions.add(ast.literal_eval(values["revision"]))
            parents.add(ast.literal_eval(values["down_revision"]))
        assert len(revisions - parents) == 1, (app, revisions, parents)  # one head
    assert not (project.migrations / WRITE_LOCK_NAME).exists()


def test_a_planted_symlink_as_the_lock_file_is_refused(tmp_path: Path) -> None:
    project = new_project(tmp_path, f"sqlite:///{tmp_path / 'app.db'}")
    db(project, "init")
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o600)
    (project.migrations / WRITE_LOCK_NAME).symlink_to(victim)
    before = folder_state(project)
    line = one_error(db(project, "makemigrations", code=2))
    assert "lock file" in line and "symlink" in line
    assert victim.read_text() == "precious\n" and folder_state(project) == before
    (project.migrations / WRITE_LOCK_NAME).unlink()
    db(project, "makemigrations")
    assert len(all_files(project)) == 2


# -- 12. password masking that does not garble messages ---------------------------------------------


def test_masking_hides_the_password_without_garbling_messages(pg_server: PostgresServer, tmp_path: Path) -> None:
    role = f"short_{uuid.uuid4().hex[:8]}"
    with pg_server.connect() as connection:
        connection.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'e'")
    missing = f"nosuch_{uuid.uuid4().hex[:8]}"
    project = new_project(tmp_path, f"postgresql+psycopg://{role}:e@127.0.0.1:{pg_server.port}/{missing}")
    db(project, "init")
    line = one_error(db(project, "upgrade", code=2))
    assert f"postgresql+psycopg://{role}:***@127.0.0.1" in line
    assert f'database "{missing}" does not exist' in line and "connection" in line, line
    assert line.count("***") == 1, line

    # A long password is a secret wherever it appears: here as the database's name.
    secret_named = Project(project.root, project.package, pg_server.url(pg_server.password))
    line = one_error(db(secret_named, "upgrade", code=2))
    assert f'database "{pg_server.password}"' not in line and 'database "***" does not exist' in line, line


# -- 3. backups of the right database, or none --------------------------------------------------------


@pytest.fixture
def second_server() -> Iterator[PostgresServer]:
    """Another PostgreSQL cluster: what a wrong host/port would reach instead."""
    bindir = find_postgres_bin()
    if bindir is None:
        unavailable("PostgreSQL 15 is not installed")
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def with_pg_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", PG_BINDIR + os.pathsep + os.environ.get("PATH", ""))


def toc(dump: Path) -> str:
    done = subprocess.run([f"{PG_BINDIR}/pg_restore", "--list", str(dump)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def assert_private(folder: Path, backup: Path) -> None:
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert sorted(p.name for p in folder.iterdir()) == [backup.name]  # no temporary file left


def test_a_unix_socket_url_is_backed_up_from_its_own_server(
    tmp_path: Path, pg_server: PostgresServer, second_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The URL reaches server B through its socket folder; the shell's PG* variables point at
    server A, which has an (empty but for one table) database of the same name. The backup
    holds B's tables: no parameter of the URL is lost, nothing falls back."""
    name = f"sock_{uuid.uuid4().hex[:10]}"
    for server, marker in ((pg_server, "only_on_a"), (second_server, "only_on_b")):
        server.create_database(name)
        with server.connect(name) as connection:
            connection.execute(f"CREATE SCHEMA {marker}")  # outside the models' schema: no drift
            connection.execute(f"CREATE TABLE {marker}.{marker} (id int)")
    url = (
        f"postgresql+psycopg://{second_server.user}:{second_server.password}@/{name}"
        f"?host={second_server.tmpdir}&port={second_server.port}"
    )
    with_pg_tools(monkeypatch)
    for variable, value in (("PGHOST", "127.0.0.1"), ("PGPORT", str(pg_server.port)), ("PGDATABASE", name)):
        monkeypatch.setenv(variable, value)
    backups = tmp_path / "backups"
    project = new_project(tmp_path, url)
    project.set_factory(["accounts", "blog"], config={"ROLLBACK_BACKUP_DIR": str(backups)})
    db(project, "init")
    db(project, "makemigrations")
    old_umask = os.umask(0)  # the modes are the code's, not the umask's
    try:
        db(project, "deploy", "--label", "v1")
    finally:
        os.umask(old_umask)
    (record,) = records(project)
    backup = Path(record["backup"])
    listing = toc(backup)
    assert f"dbname: {name}" in listing
    assert " TABLE only_on_b only_on_b " in listing and "only_on_a" not in listing
    assert_private(backups, backup)
    assert app_tables(project) == {"users", "posts"}


def test_a_dump_of_another_database_is_refused_and_leaves_no_file(
    tmp_path: Path, pg_url: str, pg_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pg_dump reaching an unrelated empty database (here a pg_dump that is told another
    database, as a stray service file or wrapper would): the dump's table of contents does not
    match the live catalog, the deploy stops, nothing is applied and no file is left."""
    other = f"other_{uuid.uuid4().hex[:10]}"
    pg_server.create_database(other)
    tools = tmp_path / "bin"
    tools.mkdir()
    wrapper = tools / "pg_dump"
    wrapper.write_text(f'#!/bin/sh\nexec {PG_BINDIR}/pg_dump "$@" --dbname={other}\n')
    wrapper.chmod(0o755)
    (tools / "pg_restore").symlink_to(f"{PG_BINDIR}/pg_restore")
    monkeypatch.setenv("PATH", str(tools) + os.pathsep + os.environ.get("PATH", ""))
    backups = tmp_path / "backups"
    project = new_project(tmp_path, pg_url)
    project.set_factory(["accounts", "blog"], config={"ROLLBACK_BACKUP_DIR": str(backups)})
    db(project, "init")
    db(project, "makemigrations")
    before = state(project)
    line = one_error(db(project, "deploy", code=1))
    assert "pg_dump did not dump the database being migrated" in line and f"database {other!r}" in line
    assert pg_server.password not in line
    assert state(project) == before and app_tables(project) == set() and records(project) == []
    assert list(backups.iterdir()) == []


def test_sqlite_backups_are_private(tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    project = new_project(tmp_path, f"sqlite:///{tmp_path / 'app.db'}")
    project.set_factory(["accounts", "blog"], config={"ROLLBACK_BACKUP_DIR": str(backups)})
    db(project, "init")
    db(project, "makemigrations")
    old_umask = os.umask(0)
    try:
        db(project, "deploy", "--label", "v1")
    finally:
        os.umask(old_umask)
    (record,) = records(project)
    assert_private(backups, Path(record["backup"]))


def assert_deploy_refused(project: Project, result: Result | subprocess.CompletedProcess[str], *fragments: str) -> None:
    output = result.output if isinstance(result, Result) else result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]  # stdout: the gate's report
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    assert "Traceback" not in output, output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert app_tables(project) == set() and records(project) == []


def test_a_symlinked_backup_folder_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    real.mkdir()
    backups = tmp_path / "backups"
    backups.symlink_to(real)
    project = new_project(tmp_path, f"sqlite:///{tmp_path / 'app.db'}")
    project.set_factory(["accounts", "blog"], config={"ROLLBACK_BACKUP_DIR": str(backups)})
    db(project, "init")
    db(project, "makemigrations")
    result = db(project, "deploy", code=1)
    assert_deploy_refused(project, result, str(backups), "ROLLBACK_BACKUP_DIR", "is a symlink", "nothing was applied")
    assert list(real.iterdir()) == []


def test_an_unreadable_backup_folder_is_refused(tmp_path: Path) -> None:
    """Mode 000: refused before anything is applied. As root, the run drops the capabilities
    that let root ignore permissions (setpriv), as an ordinary deploy user would be."""
    backups = tmp_path / "backups"
    backups.mkdir(mode=0o700)
    project = new_project(tmp_path, f"sqlite:///{tmp_path / 'app.db'}")
    project.set_factory(["accounts", "blog"], config={"ROLLBACK_BACKUP_DIR": str(backups)})
    db(project, "init")
    db(project, "makemigrations")
    backups.chmod(0)
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            unavailable("running as root without setpriv (util-linux): root reads any folder")
        drop = "-dac_override,-dac_read_search"
        prefix = [setpriv, f"--bounding-set={drop}", f"--inh-caps={drop}"]
    try:
        result = subprocess.run(
            [*prefix, sys.executable, "-m", "flask", "db", "deploy"],
            cwd=project.root, env=project.env(), capture_output=True, text=True, timeout=120, check=False,
        )
    finally:
        backups.chmod(0o700)
    assert result.returncode == 1, result.stdout + result.stderr
    shown = os.path.relpath(backups, project.root)  # the command ran in the project: relative
    assert_deploy_refused(project, result, f"backup folder {shown} ", "is not readable and writable", "nothing was applied")
    assert list(backups.iterdir()) == []
