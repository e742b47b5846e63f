"""makemigrations without the live database, cycles between tables, exact dry runs, and
``depends_on`` on the migration that created what a foreign key points at (SQLite and PostgreSQL).

Each test writes a real project package, runs ``flask db ...`` on it and looks at the files
written, the schema, exit codes and output.
"""

from __future__ import annotations

import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from psycopg import sql

from tests.pgserver import PostgresServer
from tests.projects import (
    ACCOUNTS_MODELS,
    BLOG_MODELS,
    Project,
    fingerprint,
    folder_state,
    new_project,
    write_migration,
)
from tests.test_commands import (
    ACCOUNTS_BIO,
    BLOG_SUMMARY,
    as_set,
    columns,
    fails,
    module_value,
    mpath,
    ok,
    rev,
    versions,
)

# -- models ---------------------------------------------------------------------------------------

#: users <-> teams across apps, users.manager_id -> users (self), and a 3-table cycle in one app.
CYCLIC_ACCOUNTS = '''
from sqlalchemy.orm import Mapped, mapped_column
from .. import db


class User(db.Model):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int | None] = mapped_column(db.ForeignKey("teams.id"))
    manager_id: Mapped[int | None] = mapped_column(db.ForeignKey("users.id"))


class RingA(db.Model):
    __tablename__ = "ring_a"
    id: Mapped[int] = mapped_column(primary_key=True)
    b_id: Mapped[int | None] = mapped_column(db.ForeignKey("ring_b.id"))


class RingB(db.Model):
    __tablename__ = "ring_b"
    id: Mapped[int] = mapped_column(primary_key=True)
    c_id: Mapped[int | None] = mapped_column(db.ForeignKey("ring_c.id"))


class RingC(db.Model):
    __tablename__ = "ring_c"
    id: Mapped[int] = mapped_column(primary_key=True)
    a_id: Mapped[int | None] = mapped_column(db.ForeignKey("ring_a.id"))
'''

CYCLIC_TEAMS = '''
from sqlalchemy.orm import Mapped, mapped_column
from .. import db


class Team(db.Model):
    __tablename__ = "teams"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(db.ForeignKey("users.id"))
'''

#: Every foreign key of the cyclic project: (table, column) -> referenced table.
CYCLIC_FOREIGN_KEYS = {
    ("users", "team_id"): "teams",
    ("users", "manager_id"): "users",
    ("teams", "owner_id"): "users",
    ("ring_a", "b_id"): "ring_b",
    ("ring_b", "c_id"): "ring_c",
    ("ring_c", "a_id"): "ring_a",
}

GROUP_MODEL = '''

class Group(db.Model):
    __tablename__ = "groups"
    id: Mapped[int] = mapped_column(primary_key=True)
'''
#: accounts in five steps: users; + groups; + users.bio; + users.age; + groups.title.
ACCOUNTS_STEPS = [
    ACCOUNTS_MODELS,
    ACCOUNTS_MODELS + GROUP_MODEL,
    ACCOUNTS_BIO + GROUP_MODEL,
    ACCOUNTS_BIO + "    age: Mapped[int | None] = mapped_column(db.Integer)\n" + GROUP_MODEL,
    ACCOUNTS_BIO + "    age: Mapped[int | None] = mapped_column(db.Integer)\n" + GROUP_MODEL
    + "    title: Mapped[str | None] = mapped_column(db.String(80))\n",
]
BLOG_GROUP = BLOG_MODELS + '    group_id: Mapped[int | None] = mapped_column(db.ForeignKey("groups.id"))\n'
ACCOUNTS_CODE = ACCOUNTS_MODELS + "    code: Mapped[str | None] = mapped_column(db.String(20), unique=True)\n"
BLOG_AUTHOR_CODE = BLOG_MODELS + (
    '    author_code: Mapped[str | None] = mapped_column(db.ForeignKey("users.code"))\n'
)


# -- helpers --------------------------------------------------------------------------------------


def quiet_ok(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    """``flask db ARGS`` as a subprocess (where Python prints every SAWarning to stderr, as a
    user sees it): it succeeds and prints no SQLAlchemy warning."""
    result = project.run(*args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    assert "SAWarning" not in result.stderr, (args, result.stderr)
    return result


def one_error_line(output: str) -> str:
    """The output is exactly one ``Error:`` line (no traceback); returns it."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    return lines[0]


def new_files(project: Project, before: dict[str, str]) -> dict[str, str]:
    """Migration files that are not in ``before`` (a folder_state), with their text."""
    return {
        name: (project.migrations / name).read_text()
        for name in folder_state(project) if name not in before
    }


def remove(project: Project, files: dict[str, str]) -> None:
    for name in files:
        (project.migrations / name).unlink()


def foreign_keys(project: Project) -> dict[tuple[str, str], str]:
    engine = project.engine()
    try:
        inspector = sa.inspect(engine)
        return {
            (table, fk["constrained_columns"][0]): fk["referred_table"]
            for table in inspector.get_table_names()
            for fk in inspector.get_foreign_keys(table)
        }
    finally:
        engine.dispose()


def closed_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def unreachable(url: str, tmp_path: Path) -> str:
    """The same backend, a database that cannot be reached (PostgreSQL: its server is down)."""
    if url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'no-such-folder' / 'app.db'}"
    return sa.make_url(url).set(port=closed_port()).render_as_string(hide_password=False)


def absent(url: str, tmp_path: Path) -> str:
    """The same backend, a database that does not exist (PostgreSQL: on a running server)."""
    if url.startswith("sqlite"):
        return unreachable(url, tmp_path)
    missing = f"missing_{uuid.uuid4().hex[:8]}"
    return sa.make_url(url).set(database=missing).render_as_string(hide_password=False)


def cyclic_project(tmp_path: Path, url: str) -> Project:
    project = Project(tmp_path, f"proj_{uuid.uuid4().hex[:10]}", url)
    project.add_blueprint("accounts", CYCLIC_ACCOUNTS)
    project.add_blueprint("teams", CYCLIC_TEAMS)
    project.set_factory(["accounts", "teams"])
    return project


# -- 1. cycles between tables ------------------------------------------------------------------------


def test_cyclic_foreign_keys_make_migrations_that_apply_without_warnings(tmp_path: Path, db_url: str) -> None:
    project = cyclic_project(tmp_path, db_url)
    quiet_ok(project, "init")
    quiet_ok(project, "makemigrations")
    assert project.files("accounts") == ["0001_initial.py", "0002_add_fk_users_team_id.py"]
    assert project.files("teams") == ["0001_initial.py"]
    accounts_1, accounts_2 = mpath(project, "accounts", "0001"), mpath(project, "accounts", "0002")
    teams_1 = mpath(project, "teams", "0001")

    # Across apps: accounts.0001 creates users without its key into teams; teams.0001 creates
    # teams with its key into users, after accounts.0001; accounts.0002 adds the missing key.
    first = accounts_1.read_text()
    assert "'teams.id'" not in first
    assert "sa.ForeignKeyConstraint(['manager_id'], ['users.id']" in first  # self-reference inline
    assert as_set(module_value(teams_1, "depends_on")) == {module_value(accounts_1, "revision")}
    assert "sa.ForeignKeyConstraint(['owner_id'], ['users.id']" in teams_1.read_text()
    assert module_value(accounts_2, "down_revision") == module_value(accounts_1, "revision")
    assert as_set(module_value(accounts_2, "depends_on")) == {module_value(teams_1, "revision")}
    assert "create_foreign_key(" in accounts_2.read_text() and "'teams'" in accounts_2.read_text()
    # Within one app: the 3-table ring is created first, one of its keys added after it.
    assert first.count("create_foreign_key(") == 1
    assert first.index("create_foreign_key(") > max(
        first.index(f"create_table('{table}'") for table in ("ring_a", "ring_b", "ring_c")
    )

    quiet_ok(project, "predeploy")  # each migration up, down and up again on a scratch copy
    quiet_ok(project, "upgrade")
    assert foreign_keys(project) == CYCLIC_FOREIGN_KEYS
    assert "No changes detected." in quiet_ok(project, "makemigrations", "--check").stdout
    quiet_ok(project, "check")
    quiet_ok(project, "showmigrations")
    quiet_ok(project, "downgrade", "base", "--cascade")
    assert project.tables() <= {"alembic_version", "rollback_log"}
    quiet_ok(project, "upgrade")
    assert foreign_keys(project) == CYCLIC_FOREIGN_KEYS


def test_a_cyclic_key_without_a_naming_convention_gets_a_name_its_downgrade_drops(
    tmp_path: Path, db_url: str
) -> None:
    project = cyclic_project(tmp_path, db_url)
    factory = project.package_dir / "__init__.py"
    factory.write_text(factory.read_text().replace("MetaData(naming_convention=NAMING_CONVENTION)", "MetaData()"))
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    assert "'users_team_id_fkey'" in mpath(project, "accounts", "0002").read_text()
    assert "_id_fkey'" in mpath(project, "accounts", "0001").read_text()  # the ring's key
    ok(project.db("upgrade"))
    assert foreign_keys(project) == CYCLIC_FOREIGN_KEYS
    ok(project.db("makemigrations", "--check"))
    ok(project.db("downgrade", "base", "--cascade"))
    assert project.tables() <= {"alembic_version", "rollback_log"}


# -- 2. the live database is not needed ----------------------------------------------------------------


def test_makemigrations_writes_the_same_files_whatever_the_live_database(tmp_path: Path, db_url: str) -> None:
    project = new_project(tmp_path, db_url)
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    project.write("accounts/models.py", ACCOUNTS_BIO)
    project.write("blog/models.py", BLOG_SUMMARY)
    before = folder_state(project)
    written: dict[str, dict[str, str]] = {}

    def generate(state: str) -> None:
        ok(project.db("makemigrations"))
        written[state] = new_files(project, before)
        remove(project, written[state])

    generate("empty")                   # nothing applied, no version table
    ok(project.db("upgrade", "accounts"))
    generate("behind")                  # blog's initial migration pending
    ok(project.db("upgrade"))
    generate("current")
    ok(project.db("makemigrations"))    # written, applied, then deleted: the database is ahead
    ok(project.db("upgrade"))
    remove(project, new_files(project, before))
    assert "bio" in columns(project, "users")
    generate("ahead")
    live_url = project.url
    project.url = absent(live_url, tmp_path)  # SQLite: in a folder that does not exist
    generate("absent")
    project.url = live_url

    assert sorted(written["empty"]) == ["accounts/0002_add_users_bio.py", "blog/0002_add_posts_summary.py"]
    for state, files in written.items():
        assert files == written["empty"], state


def test_postgresql_server_down_is_one_line_exit_2(tmp_path: Path, pg_url: str) -> None:
    """The scratch database needs the server (not the project's database): without it, one
    line, nothing written."""
    project = new_project(tmp_path, pg_url)
    ok(project.db("init"))
    project.url = unreachable(pg_url, tmp_path)
    for args in (("makemigrations",), ("makemigrations", "--check"), ("makemigrations", "--dry-run")):
        before = folder_state(project)
        result = fails(project.db(*args), 2)
        line = one_error_line(result.output)
        assert "cannot connect to" in line and "to create a scratch database" in line
        assert "s3cret-pw" not in line
        assert folder_state(project) == before


def test_database_live_compares_with_the_live_database(tmp_path: Path, db_url: str) -> None:
    project = new_project(tmp_path, db_url)
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    ok(project.db("showmigrations"))  # the database file exists, empty
    before_files, before_db = folder_state(project), fingerprint(project)

    # behind: refused, exit 4, the fix named; nothing written or changed
    result = fails(project.db("makemigrations", "--database", "live"), 4)
    line = one_error_line(result.output)
    assert "the database is behind" in line and "flask db upgrade" in line
    assert "leave out --database live" in line
    fails(project.db("makemigrations", "--check", "--database", "live"), 4)
    assert folder_state(project) == before_files and fingerprint(project) == before_db

    # at its heads: today's behaviour, the same file as from the scratch database
    ok(project.db("upgrade"))
    project.write("accounts/models.py", ACCOUNTS_BIO)
    from_scratch = ok(project.db("makemigrations", "--dry-run", "-v")).output
    result = fails(project.db("makemigrations", "--check", "--database", "live"), 3)
    assert "users.bio" in result.output
    ok(project.db("makemigrations", "--database", "live"))
    assert mpath(project, "accounts", "0002").read_text() in from_scratch

    # unreachable: one line, exit 2, files unchanged
    before_files = folder_state(project)
    project.url = unreachable(db_url, tmp_path)
    for args in (("makemigrations",), ("makemigrations", "--check"), ("makemigrations", "--dry-run")):
        result = project.run(*args, "--database", "live")
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "cannot connect to the database" in one_error_line(result.stderr)
        assert result.stdout == ""
        assert folder_state(project) == before_files


def test_check_exit_3_from_the_scratch_database_also_when_behind(tmp_path: Path, db_url: str) -> None:
    project = new_project(tmp_path, db_url)
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    project.write("accounts/models.py", ACCOUNTS_BIO)

    result = fails(project.db("makemigrations", "--check"), 3)
    assert "users.bio" in result.output
    assert project.files("accounts") == ["0001_initial.py"]
    # check: behind (4) comes first, and the models are compared all the same
    result = fails(project.db("check"), 4)
    assert "the database is behind" in result.output
    assert "models of app 'accounts' differ from its migrations: AddColumn users.bio" in result.output
    assert "models of app 'blog'" not in result.output
    # --database live cannot compare a database that is behind: only the 4
    result = fails(project.db("check", "--database", "live"), 4)
    assert "differ" not in result.output
    assert project.tables() <= {"alembic_version", "rollback_log"}


def test_a_migration_that_fails_on_the_scratch_database_stops_it(tmp_path: Path, db_url: str) -> None:
    project = new_project(tmp_path, db_url)
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    write_migration(project, "accounts", "0002_broken.py", "broken0002", rev(project, "accounts", "0001"),
                    "op.execute('UPDATE no_such_table SET x = 1')")
    project.write("accounts/models.py", ACCOUNTS_BIO)
    before = folder_state(project)
    result = fails(project.db("makemigrations"), 1)
    line = one_error_line(result.output)
    assert "building the migrations' schema on a scratch database failed" in line
    assert "accounts.0002_broken" in line and "no_such_table" in line
    assert folder_state(project) == before


@pytest.fixture
def no_createdb_url(pg_server: PostgresServer) -> Iterator[str]:
    """A database owned by a role that may not create databases."""
    role, database = f"plain_{uuid.uuid4().hex[:8]}", f"test_{uuid.uuid4().hex[:16]}"
    secret = "plain-secret-pw"
    with pg_server.connect() as connection:
        connection.execute(
            sql.SQL("CREATE ROLE {} LOGIN NOCREATEDB PASSWORD {}").format(sql.Identifier(role), sql.Literal(secret))
        )
        connection.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(role))
        )
    try:
        yield f"postgresql+psycopg://{role}:{secret}@127.0.0.1:{pg_server.port}/{database}"
    finally:
        pg_server.drop_database(database)
        with pg_server.connect() as connection:
            connection.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_role_without_createdb_is_told_the_fix(tmp_path: Path, no_createdb_url: str) -> None:
    project = new_project(tmp_path, no_createdb_url)
    ok(project.db("init"))
    before_files, before_db = folder_state(project), fingerprint(project)
    result = project.run("makemigrations")
    assert result.returncode == 2, (result.stdout, result.stderr)
    line = one_error_line(result.stderr)
    assert "cannot create the scratch database" in line and "permission denied" in line
    assert "grant CREATEDB" in line and "(--database live)" in line
    assert "plain-secret-pw" not in line
    assert folder_state(project) == before_files and fingerprint(project) == before_db

    ok(project.db("makemigrations", "--database", "live"))
    assert project.files("accounts") == ["0001_initial.py"]
    ok(project.db("upgrade"))
    assert "(--database live)" in one_error_line(fails(project.db("check"), 2).output)
    ok(project.db("check", "--database", "live"))


# -- 3. a dry run shows the file it writes --------------------------------------------------------------


def test_dry_run_shows_exactly_the_files_then_written(tmp_path: Path, db_url: str) -> None:
    project = cyclic_project(tmp_path, db_url)
    ok(project.db("init"))
    before = folder_state(project)
    shown = ok(project.db("makemigrations", "--dry-run", "-v")).output
    assert folder_state(project) == before
    ok(project.db("makemigrations"))
    files = new_files(project, before)
    assert len(files) == 3
    for name, text in files.items():
        path = project.migrations / name
        assert f"Would create migration {path} (revision {module_value(path, 'revision')})\n" in shown
        assert text in shown, name
    teams_1 = module_value(mpath(project, "teams", "0001"), "revision")
    assert f"  depends on teams.0001_initial ({teams_1})\n" in shown  # the name the output uses

    before = folder_state(project)
    shown = ok(project.db("makemigrations", "--empty", "teams", "-m", "backfill", "--dry-run", "-v")).output
    ok(project.db("makemigrations", "--empty", "teams", "-m", "backfill"))
    ((name, text),) = new_files(project, before).items()
    assert name == "teams/0002_backfill.py"
    assert f"(revision {module_value(project.migrations / name, 'revision')})" in shown
    assert text in shown


# -- 4. depends_on names the migration that created the referenced table or column ------------------


def test_cross_app_depends_on_names_the_creating_migration(tmp_path: Path, db_url: str) -> None:
    project = new_project(tmp_path, db_url)
    ok(project.db("init"))
    for models in ACCOUNTS_STEPS:  # no upgrade in between: the scratch database needs none
        project.write("accounts/models.py", models)
        ok(project.db("makemigrations"))
    assert [name[:4] for name in project.files("accounts")] == ["0001", "0002", "0003", "0004", "0005"]
    assert project.files("accounts")[1] == "0002_create_groups.py"
    project.write("blog/models.py", BLOG_GROUP)
    ok(project.db("makemigrations", "blog"))
    blog_2 = mpath(project, "blog", "0002")
    assert as_set(module_value(blog_2, "depends_on")) == {rev(project, "accounts", "0002")}

    ok(project.db("upgrade"))
    result = ok(project.db("downgrade", "accounts@-1"))  # accounts.0005 only: blog stays
    assert "Reverted 1 migration" in result.output
    assert "title" not in columns(project, "groups")
    assert "group_id" in columns(project, "posts")
    assert module_value(blog_2, "revision") in versions(project)
    result = fails(project.db("downgrade", "accounts", "0001"))  # reverting groups needs blog's
    assert "blog.0002" in result.output and "--cascade" in result.output


def test_depends_on_names_the_migration_that_added_the_referenced_column(tmp_path: Path, db_url: str) -> None:
    project = new_project(tmp_path, db_url)
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    project.write("accounts/models.py", ACCOUNTS_CODE)
    ok(project.db("makemigrations"))
    project.write("accounts/models.py", ACCOUNTS_CODE + "    bio: Mapped[str | None] = mapped_column(db.String(200))\n")
    ok(project.db("makemigrations"))
    project.write("blog/models.py", BLOG_AUTHOR_CODE)
    ok(project.db("makemigrations"))
    assert as_set(module_value(mpath(project, "blog", "0002"), "depends_on")) == {rev(project, "accounts", "0002")}
    ok(project.db("upgrade"))
    ok(project.db("downgrade", "accounts@-1"))
    assert "bio" not in columns(project, "users") and "author_code" in columns(project, "posts")


def test_depends_on_names_the_later_migration_that_made_the_referenced_column_unique(
    tmp_path: Path, db_url: str
) -> None:
    """A key into ``users.code`` needs the unique constraint (PostgreSQL refuses it otherwise):
    the migration that added it, not the one that added the column, nor the app's head."""
    plain_code = ACCOUNTS_MODELS + "    code: Mapped[str | None] = mapped_column(db.String(20))\n"
    project = new_project(tmp_path, db_url)
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    project.write("accounts/models.py", plain_code)
    ok(project.db("makemigrations"))
    project.write("accounts/models.py", ACCOUNTS_CODE)  # code becomes unique
    ok(project.db("makemigrations"))
    project.write("accounts/models.py", ACCOUNTS_CODE + "    bio: Mapped[str | None] = mapped_column(db.String(200))\n")
    ok(project.db("makemigrations"))
    project.write("blog/models.py", BLOG_AUTHOR_CODE)
    ok(project.db("makemigrations"))
    assert project.files("accounts")[3].startswith("0004")
    assert as_set(module_value(mpath(project, "blog", "0002"), "depends_on")) == {rev(project, "accounts", "0003")}
    ok(project.db("upgrade"))
    ok(project.db("downgrade", "accounts@-1"))  # bio goes, blog stays
    assert "bio" not in columns(project, "users") and "author_code" in columns(project, "posts")
