"""Bad input is refused cleanly: a non-zero exit, one ``Error:`` line naming the problem, no
traceback, and the database exactly as it was (SQLite: the file's bytes; PostgreSQL: schema,
version table and row counts).

On SQLite every command runs as a real ``python -m flask db`` subprocess, so the output checked is
exactly what a user sees. On PostgreSQL the same commands run in-process through Flask's CLI
runner (a subprocess costs about a second of imports), where an escaping exception would show up
as ``result.exception``; the connection-failure cases, which are PostgreSQL-only, run as
subprocesses too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import textwrap
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.projects import Project, folder_state, new_project

SECRET = "hunter2-secret"

USERS_UP = """
op.create_table(
    "users",
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(120), nullable=False),
    sa.UniqueConstraint("email", name="uq_users_email"),
)
"""
POSTS_UP = """
op.create_table(
    "posts",
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("author_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
)
"""


def write_migration(
    project: Project,
    app: str,
    filename: str,
    revision: str,
    *,
    down_revision: str | None = None,
    depends_on: str | None = None,
    branch_labels: tuple[str, ...] | None = None,
    upgrade: str = "pass",
    downgrade: str = "pass",
) -> Path:
    """A hand-written migration file with a chosen revision id."""
    body = lambda code: textwrap.indent(textwrap.dedent(code).strip(), "    ")  # noqa: E731
    path = project.migrations / app / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'"""{filename}"""\n\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
        f"revision = {revision!r}\ndown_revision = {down_revision!r}\n"
        f"branch_labels = {branch_labels!r}\ndepends_on = {depends_on!r}\n\n\n"
        f"def upgrade():\n{body(upgrade)}\n\n\ndef downgrade():\n{body(downgrade)}\n"
    )
    return path


def write_migrations(project: Project) -> None:
    """accounts 0001 (abc111), blog 0001 (abc222, depends on abc111), blog 0002 (def333).

    abc111 and abc222 share the prefix 'abc' on purpose."""
    result = project.db("init")
    assert result.exit_code == 0, result.output
    write_migration(
        project, "accounts", "0001_initial.py", "abc111", branch_labels=("accounts",),
        upgrade=USERS_UP, downgrade='op.drop_table("users")',
    )
    write_migration(
        project, "blog", "0001_initial.py", "abc222", branch_labels=("blog",),
        depends_on="abc111", upgrade=POSTS_UP, downgrade='op.drop_table("posts")',
    )
    write_migration(
        project, "blog", "0002_add_post_body.py", "def333", down_revision="abc222",
        upgrade='op.add_column("posts", sa.Column("body", sa.Text, nullable=True))',
        downgrade='op.drop_column("posts", "body")',
    )


def applied_project(tmp_path: Path, url: str) -> Project:
    """abc111 and abc222 applied with a few rows; def333 pending."""
    project = new_project(tmp_path, url)
    write_migrations(project)
    result = project.db("upgrade", "abc222")
    assert result.exit_code == 0, result.output
    engine = project.engine()
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO users (id, email) VALUES (1, 'a@x.org')")
            connection.exec_driver_sql("INSERT INTO users (id, email) VALUES (2, 'b@x.org')")
            connection.exec_driver_sql(
                "INSERT INTO posts (id, title, author_id) VALUES (1, 'hello', 1)"
            )
    finally:
        engine.dispose()
    assert project.query("SELECT version_num FROM alembic_version") == [("abc222",)]
    return project


# -- observing the database and the migrations folder ---------------------------------------


def snapshot(url: str) -> Any:
    """SQLite: the file's sha256 (or 'absent'); PostgreSQL: schema, version rows, row counts."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        if not path.exists():
            return "absent"
        return hashlib.sha256(path.read_bytes()).hexdigest()
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            state: dict[str, Any] = {}
            for table in sorted(inspector.get_table_names()):
                columns = [
                    (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                    for c in inspector.get_columns(table)
                ]
                quoted = connection.dialect.identifier_preparer.quote(table)
                count = connection.exec_driver_sql(f"SELECT count(*) FROM {quoted}").scalar()
                state[table] = (columns, count)
            if "alembic_version" in state:
                state["versions"] = sorted(
                    connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()
                )
            if "rollback_log" in state:
                state["log"] = list(
                    connection.exec_driver_sql(
                        "SELECT id, app, revision, direction FROM rollback_log ORDER BY id"
                    )
                )
            return state
    finally:
        engine.dispose()



def invoke(project: Project, *args: str) -> tuple[int, str]:
    """``flask db ARGS``: a subprocess on SQLite, in-process on PostgreSQL; (exit code, output)."""
    if project.url.startswith("sqlite"):
        result = project.run(*args)
        return result.returncode, result.stdout + result.stderr
    outcome = project.db(*args)
    if outcome.exception is not None and not isinstance(outcome.exception, SystemExit):
        trace = "".join(traceback.format_exception(outcome.exception))
        raise AssertionError(f"flask db {' '.join(args)} raised instead of failing cleanly:\n{trace}")
    return outcome.exit_code, outcome.output


def assert_refused(code: int, output: str, *fragments: str) -> str:
    """Non-zero exit, exactly one 'Error:' line containing every fragment, no traceback."""
    assert code != 0, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    for fragment in fragments:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
    return errors[0]


def shown(project: Project, path: Path) -> str:
    """A path as the error prints it: relative to the working directory when inside it (the
    project's, for the subprocess ``invoke`` runs on SQLite)."""
    return os.path.relpath(path, project.root) if project.url.startswith("sqlite") else str(path)


def run_refused(project: Project, args: tuple[str, ...], fragments: list[str], url: str | None = None) -> str:
    """Run ``flask db ARGS``; it must be refused and change neither database nor folder."""
    url = url or project.url
    before, files_before = snapshot(url), folder_state(project)
    line = assert_refused(*invoke(project, *args), *fragments)
    assert snapshot(url) == before, f"flask db {' '.join(args)} changed the database"
    assert folder_state(project) == files_before, f"flask db {' '.join(args)} changed the files"
    return line


# -- bad targets, on an applied database -------------------------------------------------------

TARGET_CASES = [
    # unknown app label
    pytest.param(("upgrade", "nope@head"), ["unknown app 'nope'", "accounts", "blog"], id="upgrade-unknown-app"),
    pytest.param(("downgrade", "nope", "zero"), ["unknown app 'nope'"], id="downgrade-unknown-app"),
    pytest.param(("upgrade", "nope"), ["no app or migration matches 'nope'"], id="upgrade-unknown-word"),
    pytest.param(("upgrade", "../etc@head"), ["invalid app label '../etc'"], id="upgrade-invalid-label"),
    # unknown revision
    pytest.param(("upgrade", "blog@zz999"), ["no migration in app 'blog' matches 'zz999'"], id="upgrade-unknown-rev"),
    pytest.param(("downgrade", "zz999"), ["'zz999'"], id="downgrade-unknown-rev"),
    pytest.param(("sqlmigrate", "blog", "zz999"), ["'zz999'"], id="sqlmigrate-unknown-rev"),
    # ambiguous prefix: abc111 and abc222
    pytest.param(("upgrade", "abc"), ["'abc' is ambiguous", "abc111", "abc222"], id="upgrade-ambiguous"),
    pytest.param(("downgrade", "abc"), ["'abc' is ambiguous", "abc111", "abc222"], id="downgrade-ambiguous"),
    # a target in the wrong direction
    pytest.param(("upgrade", "blog@base"), ["goes down", "downgrade blog zero"], id="upgrade-app-base"),
    pytest.param(("upgrade", "accounts", "zero"), ["goes down", "downgrade accounts zero"], id="upgrade-accounts-zero"),
    pytest.param(("upgrade", "blog@-1"), ["goes down", "downgrade blog@-1"], id="upgrade-app-minus-one"),
    pytest.param(("upgrade", "-1"), ["goes down", "downgrade -1"], id="upgrade-minus-one"),
    pytest.param(("downgrade", "def333"), ["blog.0002_add_post_body is not applied"], id="downgrade-unapplied"),
    pytest.param(("downgrade", "+1"), ["goes up"], id="downgrade-plus-one"),
    # comparing with the live database while it is behind (def333 pending)
    pytest.param(("makemigrations", "--database", "live"), ["database is behind", "1 migration is not applied", "upgrade"], id="makemigrations-live-behind"),
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_applied(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """One applied project per backend for all target cases: each case checks that it left the
    database and the files unchanged, so sharing cannot hide a change."""
    root = tmp_path_factory.mktemp(f"targets_{request.param}")
    if request.param == "sqlite":
        yield applied_project(root, f"sqlite:///{root / 'test.db'}")
        return
    server = request.getfixturevalue("pg_server")
    name = f"test_{uuid.uuid4().hex[:16]}"
    server.create_database(name)
    try:
        yield applied_project(root, server.url(name))
    finally:
        server.drop_database(name)


@pytest.mark.parametrize("args, fragments", TARGET_CASES)
def test_bad_target_is_refused(shared_applied: Project, args: tuple[str, ...], fragments: list[str]) -> None:
    run_refused(shared_applied, args, fragments)


def test_verbose_shows_the_traceback(shared_applied: Project) -> None:
    before = snapshot(shared_applied.url)
    code, output = invoke(shared_applied, "--verbose", "upgrade", "nope")
    assert code != 0
    assert "Traceback (most recent call last)" in output, output
    assert "Error: no app or migration matches 'nope'" in output
    assert snapshot(shared_applied.url) == before


# -- a broken migrations folder ----------------------------------------------------------------


def test_missing_migrations_folder(tmp_path: Path, db_url: str) -> None:
    project = new_project(tmp_path, db_url)  # no 'flask db init'
    assert snapshot(db_url) in ("absent", {})
    run_refused(project, ("upgrade",), ["no migrations folder", shown(project, project.migrations), "flask db init"])
    assert snapshot(db_url) in ("absent", {})
    assert not project.migrations.exists()


BROKEN_FILES = [
    pytest.param(
        "revision = 'bad444'\ndown_revision = 'def333'\n\ndef upgrade(:\n    pass\n",
        ["syntax error", "line 4"],
        id="syntax-error",
    ),
    pytest.param(
        "down_revision = 'def333'\n\ndef upgrade():\n    pass\n",
        ["declares no revision"],
        id="no-revision",
    ),
    pytest.param(
        "import not_a_module_anywhere_xyz\n\nrevision = 'bad444'\ndown_revision = 'def333'\n",
        ["failed to import", "not_a_module_anywhere_xyz", "line 1"],
        id="import-error",
    ),
]


@pytest.mark.parametrize("content, fragments", BROKEN_FILES)
def test_broken_migration_file(tmp_path: Path, db_url: str, content: str, fragments: list[str]) -> None:
    project = applied_project(tmp_path, db_url)
    broken = project.migrations / "blog" / "0003_broken.py"
    broken.write_text(content)
    named = f"migration file {shown(project, broken)}"
    run_refused(project, ("upgrade",), [named, *fragments])
    if "syntax error" in fragments:
        run_refused(project, ("downgrade", "accounts", "zero", "--cascade"), [named, *fragments])


def test_broken_file_before_the_first_upgrade(tmp_path: Path, db_url: str) -> None:
    """Nothing is created: the SQLite file stays absent, the PostgreSQL database empty."""
    project = new_project(tmp_path, db_url)
    write_migrations(project)
    broken = project.migrations / "accounts" / "0002_broken.py"
    broken.write_text("revision = 'bad444'\ndown_revision = 'abc111'\nx = (\n")
    run_refused(project, ("upgrade",), [f"migration file {shown(project, broken)} has a syntax error"])
    assert snapshot(db_url) in ("absent", {})


def test_two_files_with_the_same_revision(tmp_path: Path, db_url: str) -> None:
    project = applied_project(tmp_path, db_url)
    original = project.migrations / "blog" / "0002_add_post_body.py"
    copy = project.migrations / "blog" / "0003_copy.v2.py"  # Alembic loads dotted names too
    shutil.copyfile(original, copy)
    run_refused(project, ("downgrade", "blog", "zero"), ["'def333'", shown(project, original), shown(project, copy)])
    # In two different apps as well.
    copy.unlink()
    other = project.migrations / "accounts" / "0002_same_id.py"
    write_migration(project, "accounts", "0002_same_id.py", "abc222", down_revision="abc111")
    run_refused(project, ("upgrade",), ["'abc222'", "blog/0001_initial.py", shown(project, other)])


# -- database URLs -----------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_database_does_not_show_the_password(tmp_path: Path) -> None:
    port = _closed_port()
    url = f"postgresql+psycopg://rollback:{SECRET}@127.0.0.1:{port}/nowhere"
    project = new_project(tmp_path, url)
    write_migrations(project)
    for args in (("upgrade",), ("makemigrations",)):
        files_before = folder_state(project)
        result = project.run(*args)
        output = result.stdout + result.stderr
        line = assert_refused(result.returncode, output, "cannot connect", f"127.0.0.1:{port}")
        assert SECRET not in output, line
        assert folder_state(project) == files_before
    # Not even with --verbose, which prints a traceback.
    result = project.run("--verbose", "downgrade", "blog", "zero")
    assert result.returncode != 0
    assert SECRET not in result.stdout + result.stderr


def test_wrong_password_does_not_show_the_password(tmp_path: Path, pg_server: Any, pg_url: str) -> None:
    good = applied_project(tmp_path, pg_url)
    before = snapshot(pg_url)
    wrong = sa.engine.make_url(pg_url).set(password=SECRET).render_as_string(hide_password=False)
    assert f":{SECRET}@127.0.0.1:{pg_server.port}/" in wrong
    project = Project(good.root, good.package, wrong)
    for args in (("upgrade",), ("downgrade", "blog", "zero")):
        result = project.run(*args)
        output = result.stdout + result.stderr
        line = assert_refused(result.returncode, output, "cannot connect", "password authentication failed")
        assert SECRET not in output, line
    assert snapshot(pg_url) == before


def test_mysql_url_without_the_driver_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app's engine exists (made while the driver was importable); our own engine cannot be
    made: one line naming the extra, exit 2, no traceback."""
    project = new_project(tmp_path, "mysql+pymysql://app:pw@127.0.0.1:9/shop")
    assert project.db("init").exit_code == 0
    app = project.app()
    monkeypatch.setitem(__import__("sys").modules, "pymysql", None)
    monkeypatch.setitem(__import__("sys").modules, "MySQLdb", None)
    result = app.test_cli_runner().invoke(args=["db", "showmigrations"])
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "pip install 'flask-rollback[mysql]'" in lines[0]
    assert "pw@" not in lines[0]


def test_driver_message_for_a_mysql_url_without_pymysql() -> None:
    """``mysql://`` means mysqlclient to SQLAlchemy: the line also says to name PyMySQL."""
    from flask_rollback.database import create_engine
    from flask_rollback.errors import RollbackError

    with pytest.raises(RollbackError) as caught:
        create_engine(sa.engine.make_url("mysql://app:pw@127.0.0.1:9/shop"))
    assert caught.value.exit_code == 2
    assert "pip install 'flask-rollback[mysql]'" in caught.value.message
    assert "mysql+pymysql://" in caught.value.message and "pw@" not in caught.value.message
