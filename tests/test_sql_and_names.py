"""Issue 10, items 4 and 5: SQL that always renders, and one naming scheme in and out.

- ``sqlmigrate`` and ``upgrade``/``downgrade --sql`` render every migration, SQLite batch
  migrations (table rebuilds) included, from any starting point (several apps applied). The
  rendered SQL is run on a second database and must leave it exactly as the online command
  leaves the first one.
- Every command that takes a migration accepts what output prints (``blog.0002_summary``,
  ``blog.0002``, ``blog@0002``, ``blog 0002``, ids and prefixes); a typo gets one ``Error:``
  line with "did you mean"; a name two apps share is "ambiguous", listing both.
- ``history`` is per app, newest first, with Django names.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pymysql
import pytest
import sqlalchemy as sa
from click.testing import Result

from flask_rollback import history as compat_history
from tests.projects import (
    BLOG_MODELS,
    Project,
    fingerprint,
    new_project,
    revision_of,
    write_migration,
)
from tests.test_example_app import ROOT, flask_db, untouched_example  # noqa: F401 (a fixture)

# -- helpers ------------------------------------------------------------------------------------


def ok(result: Result) -> str:
    """The in-process command succeeded without an uncaught exception; its output."""
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output, result.output
    return result.output


def one_error_line(result: Result) -> str:
    """Refused with exit 1 and exactly one line, ``Error: ...``, and no traceback."""
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def schema_and_versions(url: str) -> tuple[dict[str, Any], list[str]]:
    """Every table's columns (type, nullability), primary key, foreign keys, indexes and
    checks, minus flask-rollback's own tables, and the version rows: what a run leaves behind."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            tables = sorted(
                name for name in inspector.get_table_names()
                if name not in ("alembic_version", "rollback_log")
            )
            schema = {
                table: {
                    "columns": [
                        (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)
                    ],
                    "primary key": inspector.get_pk_constraint(table)["constrained_columns"],
                    "foreign keys": sorted(
                        (tuple(fk["constrained_columns"]), fk["referred_table"])
                        for fk in inspector.get_foreign_keys(table)
                    ),
                    "indexes": sorted(
                        (ix["name"], tuple(ix["column_names"])) for ix in inspector.get_indexes(table)
                    ),
                    "checks": sorted(
                        " ".join(c["sqltext"].split()) for c in inspector.get_check_constraints(table)
                    ),
                }
                for table in tables
            }
            versions = sorted(
                connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()
            ) if inspector.has_table("alembic_version") else []
            return schema, versions
    finally:
        engine.dispose()


def run_script(url: str, sql: str) -> None:
    """Run rendered SQL as a DBA would: the whole script, its own BEGIN/COMMIT included."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            connection.executescript(sql)
        return
    if url.startswith("mysql"):  # one round trip for the whole script, as the mariadb client
        parts = sa.make_url(url)
        with pymysql.connect(
            host=parts.host, port=parts.port, user=parts.username, password=parts.password,
            database=parts.database, charset="utf8mb4", autocommit=True,
            client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS,
        ) as connection, connection.cursor() as cursor:
            cursor.execute(sql)
            while cursor.nextset():  # each statement's result; an error surfaces here
                pass
        return
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(sql)
    finally:
        engine.dispose()


def created_tables(path: Path) -> list[str]:
    return re.findall(r"op\.create_table\(\s*['\"](\w+)['\"]", path.read_text())


@contextmanager
def another_database(db_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database on the same backend as ``db_url``, dropped afterwards."""
    if db_url.startswith("sqlite"):
        folder = request.getfixturevalue("tmp_path")
        yield f"sqlite:///{folder / f'offline_{uuid.uuid4().hex[:8]}.db'}"
        return
    server = request.getfixturevalue("mariadb_server" if db_url.startswith("mysql") else "pg_server")
    with server.fresh_database() as url:
        yield url


@pytest.fixture
def second_url(db_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """Another fresh database on the same backend as ``db_url``."""
    with another_database(db_url, request) as url:
        yield url


# -- sqlmigrate on the shipped example app ---------------------------------------------------------

EXAMPLE_MIGRATIONS = sorted((ROOT / "migrations").glob("*/[0-9]*.py"))


@pytest.mark.parametrize("backwards", [False, True], ids=["forwards", "backwards"])
@pytest.mark.parametrize(
    "path", EXAMPLE_MIGRATIONS, ids=[f"{p.parent.name}.{p.stem}" for p in EXAMPLE_MIGRATIONS]
)
def test_sqlmigrate_renders_every_example_migration(
    db_url: str, second_db_url: str, untouched_example: None, path: Path, backwards: bool  # noqa: F811
) -> None:
    result = flask_db((db_url, second_db_url), "sqlmigrate", path.parent.name, path.stem, *(["--backwards"] if backwards else []))
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Traceback" not in output and not result.stderr, output
    revision = re.search(r"^revision(?::[^=]*)? = ['\"](\w+)['\"]", path.read_text(), re.MULTILINE)[1]  # type: ignore[index]
    arrow = f"-> {revision}" if not backwards else f"downgrade {revision} ->"
    assert arrow in result.stdout, result.stdout
    verb = "DROP TABLE" if backwards else "CREATE TABLE"
    assert created_tables(path), path
    for table in created_tables(path):
        assert f"{verb} {table}" in result.stdout, (table, result.stdout)
    assert schema_and_versions(db_url) == ({}, []) == schema_and_versions(second_db_url)  # nothing ran


# -- a SQLite batch migration, and several apps applied ----------------------------------------

#: blog 0002 adds a column (a plain ALTER); blog 0003 rebuilds the table in batch mode: drops a
#: column and alters the one 0002 added, so its copy_from must include 0002's work.
BATCH_UPGRADE = '''
with op.batch_alter_table("posts") as batch_op:
    batch_op.drop_column("title")
    batch_op.alter_column("summary", existing_type=sa.String(100), type_=sa.String(500), nullable=False)
'''
BATCH_DOWNGRADE = '''
with op.batch_alter_table("posts") as batch_op:
    batch_op.alter_column("summary", existing_type=sa.String(500), type_=sa.String(100), nullable=True)
    batch_op.add_column(sa.Column("title", sa.String(200), nullable=False))
'''


def applied_project(tmp_path: Path, url: str) -> Project:
    """accounts.0001 and blog.0001 (autogenerated, blog depends on accounts), applied."""
    project = new_project(tmp_path, url)
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    ok(project.db("upgrade"))
    return project


def add_blog_batch_chain(project: Project) -> tuple[str, str]:
    """blog.0002_summary (plain add_column) and blog.0003_batch (batch rebuild)."""
    summary, batch = "b10b0002aaaa", "b10b0003aaaa"
    write_migration(
        project, "blog", "0002_summary.py", summary, revision_of(project, "blog", "0001"),
        'op.add_column("posts", sa.Column("summary", sa.String(100), nullable=True))',
        'op.drop_column("posts", "summary")',
    )
    write_migration(project, "blog", "0003_batch.py", batch, summary, BATCH_UPGRADE, BATCH_DOWNGRADE)
    return summary, batch


def test_sqlmigrate_renders_a_sqlite_batch_migration_from_the_migrations_schema(
    tmp_path: Path, sqlite_url: str
) -> None:
    project = applied_project(tmp_path, sqlite_url)
    summary, batch = add_blog_batch_chain(project)
    before = fingerprint(project)

    forwards = ok(project.db("sqlmigrate", "blog", "0003"))
    rebuilt = re.search(r"CREATE TABLE _alembic_tmp_posts \((.*?)\n\);", forwards, re.DOTALL)
    assert rebuilt, forwards
    assert "summary VARCHAR(500) NOT NULL" in rebuilt[1]  # built from 0002's column
    assert "title" not in rebuilt[1] and "DROP TABLE posts" in forwards
    assert f"UPDATE alembic_version SET version_num='{batch}'" in forwards

    backwards = ok(project.db("sqlmigrate", "blog.0003_batch", "--backwards"))
    rebuilt = re.search(r"CREATE TABLE _alembic_tmp_posts \((.*?)\n\);", backwards, re.DOTALL)
    assert rebuilt, backwards
    assert "summary VARCHAR(100)," in rebuilt[1] and "title VARCHAR(200) NOT NULL" in rebuilt[1]
    assert f"version_num='{summary}'" in backwards
    assert fingerprint(project) == before  # sqlmigrate reads no database and changes none


#: blog's Post without its title and with an optional author: autogenerate on SQLite writes a
#: batch migration (render_as_batch is on there) that drops one column and alters another.
BLOG_WITHOUT_TITLE = BLOG_MODELS.replace(
    "    title: Mapped[str] = mapped_column(db.String(200))\n", ""
).replace(
    'author_id: Mapped[int] = mapped_column(db.ForeignKey("users.id"))',
    'author_id: Mapped[int | None] = mapped_column(db.ForeignKey("users.id"))',
)


def test_autogenerated_sqlite_batch_migration_renders_what_runs(tmp_path: Path, sqlite_url: str) -> None:
    online = applied_project(tmp_path, sqlite_url)
    offline = dataclasses.replace(online, url=f"sqlite:///{tmp_path / 'offline.db'}")
    ok(offline.db("upgrade"))
    online.write("blog/models.py", BLOG_WITHOUT_TITLE)
    ok(online.db("makemigrations"))
    (path,) = (online.migrations / "blog").glob("0002_*.py")
    assert "batch_alter_table" in path.read_text() and "drop_column" in path.read_text()
    assert "alter_column" in path.read_text()
    for command in (("upgrade",), ("downgrade", "blog@-1")):
        sql = ok(offline.db(*command, "--sql"))
        assert "CREATE TABLE _alembic_tmp_posts" in sql, sql
        run_script(offline.url, sql)
        ok(online.db(*command))
        assert schema_and_versions(offline.url) == schema_and_versions(online.url), command
    for args in (("sqlmigrate", "blog", "0002"), ("sqlmigrate", "blog.0002", "--backwards")):
        assert "CREATE TABLE _alembic_tmp_posts" in ok(online.db(*args))


#: A table with an unnamed foreign key and an unnamed CHECK (raw SQL: Alembic would name them),
#: then a batch that drops the key by the name its naming_convention gives it. Online, Alembic
#: applies the convention to the table it reflects and leaves the unnamed CHECK out of the
#: rebuilt table; the SQL shown must do the same.
UNNAMED_TABLE = (
    'op.execute("CREATE TABLE notes (id INTEGER NOT NULL PRIMARY KEY, '
    'post_id INTEGER REFERENCES posts (id), body VARCHAR(20) CHECK (length(body) > 0))")'
)
DROP_BY_CONVENTION = '''
with op.batch_alter_table(
    "notes", naming_convention={"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}
) as batch_op:
    batch_op.drop_constraint("fk_notes_post_id_posts", type_="foreignkey")
'''


def test_sqlite_batch_sql_follows_what_alembic_does_to_a_reflected_table(
    tmp_path: Path, sqlite_url: str
) -> None:
    online = applied_project(tmp_path, sqlite_url)
    offline = dataclasses.replace(online, url=f"sqlite:///{tmp_path / 'offline.db'}")
    ok(offline.db("upgrade"))
    blog_1 = revision_of(online, "blog", "0001")
    write_migration(online, "blog", "0002_notes.py", "b10b0002eeee", blog_1, UNNAMED_TABLE, 'op.drop_table("notes")')
    write_migration(online, "blog", "0003_unlink.py", "b10b0003eeee", "b10b0002eeee", DROP_BY_CONVENTION)
    run_script(offline.url, ok(offline.db("upgrade", "--sql")))
    ok(online.db("upgrade"))
    schema, _versions = schema_and_versions(online.url)
    assert schema["notes"]["foreign keys"] == [] and schema["notes"]["checks"] == []
    assert schema_and_versions(offline.url) == (schema, _versions)


def test_batch_migration_renders_as_alter_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    """The same batch migration on PostgreSQL: no rebuild, plain ALTERs, no table needed."""
    project = applied_project(tmp_path, pg_url)
    add_blog_batch_chain(project)
    forwards = ok(project.db("sqlmigrate", "blog@0003"))
    assert "ALTER TABLE posts DROP COLUMN title" in forwards
    assert "ALTER TABLE posts ALTER COLUMN summary SET NOT NULL" in forwards
    assert "_alembic_tmp" not in forwards
    backwards = ok(project.db("sqlmigrate", "blog", "0003_batch", "--backwards"))
    assert "ALTER TABLE posts ADD COLUMN title VARCHAR(200) NOT NULL" in backwards


def test_sql_of_upgrades_and_downgrades_does_what_running_them_does(
    tmp_path: Path, db_url: str, second_url: str
) -> None:
    """Several apps applied (two version rows): ``upgrade APP --sql``, ``upgrade --sql``,
    ``downgrade APP zero --sql`` and ``downgrade APP@-1 --sql`` render, and their SQL run on a
    twin database leaves it exactly as the online commands leave the first one (SQLite: the
    batch chain included)."""
    online = applied_project(tmp_path / "online", db_url)
    offline = dataclasses.replace(online, url=second_url)
    ok(offline.db("upgrade"))
    accounts_1 = revision_of(online, "accounts", "0001")
    write_migration(
        online, "accounts", "0002_nickname.py", "acc00002aaaa", accounts_1,
        'op.add_column("users", sa.Column("nickname", sa.String(40), nullable=True))',
        'op.drop_column("users", "nickname")',
    )
    for project in (online, offline):
        ok(project.db("upgrade"))
    assert len(schema_and_versions(db_url)[1]) == 2  # accounts 0002 and blog 0001 are stored
    assert schema_and_versions(db_url) == schema_and_versions(second_url)

    write_migration(
        online, "accounts", "0003_profiles.py", "acc00003aaaa", "acc00002aaaa",
        'op.create_table("profiles", sa.Column("id", sa.Integer, primary_key=True), '
        'sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False))',
        'op.drop_table("profiles")',
    )
    add_blog_batch_chain(online)
    for command in (("upgrade", "blog"), ("upgrade",), ("downgrade", "blog", "zero"),
                    ("downgrade", "accounts@-1")):
        sql = ok(offline.db(*command, "--sql"))
        assert "-- Running " in sql, (command, sql)
        run_script(second_url, sql)
        ok(online.db(*command))
        assert schema_and_versions(second_url) == schema_and_versions(db_url), command
    assert schema_and_versions(db_url)[1] == ["acc00002aaaa"]


def unreachable(url: str, tmp_path: Path) -> str:
    """A database URL of the same backend that cannot be connected to."""
    if url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'no-such-directory' / 'app.db'}"
    if url.startswith("mysql"):
        return "mysql+pymysql://nobody@127.0.0.1:1/nothing"
    return "postgresql+psycopg://nobody@127.0.0.1:1/nothing"


def test_sql_from_an_explicit_range_reads_no_database(
    tmp_path: Path, db_url: str, second_url: str
) -> None:
    """``--sql FROM:TO`` (Alembic's offline form) renders from FROM, in any name form and
    comma-separated across apps, with the database unreachable; the SQL run on a twin at FROM
    does what the online command does (SQLite: the batch chain included)."""
    online = applied_project(tmp_path / "online", db_url)
    offline = dataclasses.replace(online, url=second_url)
    ok(offline.db("upgrade"))
    nowhere = dataclasses.replace(online, url=unreachable(db_url, tmp_path))
    assert nowhere.db("upgrade", "--plan").exit_code == 2  # it really cannot connect
    add_blog_batch_chain(online)
    for command in (
        ("upgrade", "--sql", "accounts.0001,blog@0001:blog.0002"),
        ("upgrade", "--sql", "accounts,blog.0002:"),  # "accounts" alone: its head
        ("downgrade", "--sql", "heads:blog", "0001"),
        ("upgrade", "--sql", "accounts,blog 0001:heads"),
    ):
        sql = ok(nowhere.db(*command))
        assert "-- Running " in sql, (command, sql)
        run_script(second_url, sql)
        ok(online.db(command[0], command[2].partition(":")[2] or "heads", *command[3:]))
        assert schema_and_versions(second_url) == schema_and_versions(db_url), command

    from_nothing = ok(nowhere.db("upgrade", "--sql", "base:accounts"))
    assert "CREATE TABLE alembic_version" in from_nothing and "CREATE TABLE users" in from_nothing
    assert "posts" not in from_nothing


@pytest.mark.parametrize("args, fragment", [
    (("upgrade", "accounts.0001:blog"), "only for the SQL (--sql, sql=True)"),
    (("upgrade", "--sql", "blgo.0001:"), "did you mean 'blog.0001_initial'"),
    (("upgrade", "--sql", "0001:"), "'0001' is ambiguous"),
    (("upgrade", "--sql", "base:blog:heads"), "more than one colon"),
    (("upgrade", "--sql", "--fake-initial", "base:"), "--fake-initial reads the database"),
    (("downgrade", "--sql", "heads:blgo", "zero"), "unknown app 'blgo' (did you mean 'blog'?)"),
], ids=["without-sql", "typo", "ambiguous", "two-colons", "fake-initial", "unknown-app"])
def test_sql_range_refusals_are_one_line(tmp_path: Path, sqlite_url: str, args: tuple[str, ...], fragment: str) -> None:
    project = applied_project(tmp_path, sqlite_url)
    before = fingerprint(project)
    line = one_error_line(project.db(*args))
    assert fragment in line, line
    assert fingerprint(project) == before


def test_sql_with_nothing_to_do_is_a_comment(tmp_path: Path, sqlite_url: str) -> None:
    project = applied_project(tmp_path, sqlite_url)
    sql = ok(project.db("upgrade", "--sql"))
    assert sql.strip() == "-- Nothing to upgrade: already at heads."


def test_example_app_upgrade_sql_builds_the_same_schema(
    db_url: str, second_db_url: str, second_url: str, untouched_example: None,  # noqa: F811
    request: pytest.FixtureRequest,
) -> None:
    """The shipped app, bind by bind: the SQL of ``upgrade --sql`` on empty databases builds
    what ``upgrade`` builds; ``downgrade shop zero --sql`` with every app applied reverts what
    ``downgrade shop zero`` reverts (shop is on the default bind)."""
    live = (db_url, second_db_url)
    with another_database(db_url, request) as analytics_offline:
        offline = (second_url, analytics_offline)
        for bind, command in (
            ("default", ("upgrade",)), ("analytics", ("upgrade",)), ("default", ("downgrade", "shop", "zero")),
        ):
            index = 0 if bind == "default" else 1
            rendered = flask_db(offline, *command, "--sql", "--bind", bind)
            assert rendered.returncode == 0 and not rendered.stderr, rendered.stderr
            heading = rendered.stdout.splitlines()[0]
            assert heading.startswith(f"-- Bind '{bind}' ("), heading  # a comment: still SQL
            run_script(offline[index], rendered.stdout)
            done = flask_db(live, *command, "--bind", bind)
            assert done.returncode == 0, done.stdout + done.stderr
            assert schema_and_versions(offline[index]) == schema_and_versions(live[index]), (bind, command)


# -- what cannot render: one line naming the migration ---------------------------------------------

READS_THE_DATABASE = 'op.get_bind().execute(sa.text("SELECT count(*) FROM posts")).scalar()'
NEEDS_ROWS = '''
if not op.get_bind().execute(sa.text("SELECT count(*) FROM users")).scalar():
    raise RuntimeError("this backfill needs users")
'''


def test_a_migration_that_reads_the_database_cannot_render(tmp_path: Path, db_url: str) -> None:
    project = applied_project(tmp_path, db_url)
    write_migration(
        project, "blog", "0002_count.py", "b10b0002cccc", revision_of(project, "blog", "0001"),
        READS_THE_DATABASE,
    )
    for args in (("upgrade", "--sql"), ("sqlmigrate", "blog.0002")):
        line = one_error_line(project.db(*args))
        assert line.startswith("Error: cannot render the SQL of blog.0002_count (up): "), line


def test_a_batch_whose_starting_schema_cannot_be_built_names_where(
    tmp_path: Path, sqlite_url: str
) -> None:
    """The copy_from tables come from running the migrations below on an empty in-memory
    database; a migration that needs rows there fails, and the line says so."""
    project = applied_project(tmp_path, sqlite_url)
    write_migration(
        project, "blog", "0002_summary.py", "b10b0002aaaa", revision_of(project, "blog", "0001"),
        'op.add_column("posts", sa.Column("summary", sa.String(100), nullable=True))\n' + NEEDS_ROWS,
        'op.drop_column("posts", "summary")',
    )
    write_migration(project, "blog", "0003_batch.py", "b10b0003aaaa", "b10b0002aaaa", BATCH_UPGRADE)
    line = one_error_line(project.db("sqlmigrate", "blog", "0003"))
    assert "cannot render the SQL of blog.0003_batch (up)" in line, line
    assert "failed at blog.0002_summary (up): RuntimeError: this backfill needs users" in line, line


def test_postgresql_batch_recreate_always_cannot_render(tmp_path: Path, pg_url: str) -> None:
    project = applied_project(tmp_path, pg_url)
    write_migration(
        project, "blog", "0002_rebuild.py", "b10b0002dddd", revision_of(project, "blog", "0001"),
        'with op.batch_alter_table("posts", recreate="always") as batch_op:\n'
        '    batch_op.drop_column("title")',
    )
    line = one_error_line(project.db("upgrade", "--sql"))
    assert line.startswith("Error: cannot render the SQL of blog.0002_rebuild (up): CommandError: "), line
    assert "copy_from" in line


# -- one naming scheme: every form, every command ---------------------------------------------------


@dataclasses.dataclass
class Named:
    """A project with accounts.0001, blog.0001..0003, and a copy of its database with accounts
    and blog.0001 applied, restored before each test."""

    project: Project
    template: Path
    revisions: dict[str, str]
    editor_log: Path

    @property
    def database(self) -> Path:
        return Path(self.project.url.removeprefix("sqlite:///"))

    def reset(self) -> None:
        shutil.copy(self.template, self.database)
        self.editor_log.write_text("")

    def versions(self) -> set[str]:
        return {row[0] for row in self.project.query("SELECT version_num FROM alembic_version")}


@pytest.fixture(scope="module")
def named_project(tmp_path_factory: pytest.TempPathFactory) -> Named:
    root = tmp_path_factory.mktemp("names")
    project = applied_project(root, f"sqlite:///{root / 'test.db'}")
    blog_1 = revision_of(project, "blog", "0001")
    write_migration(
        project, "blog", "0002_summary.py", "5eed0002beef", blog_1,
        'op.add_column("posts", sa.Column("summary", sa.String(100), nullable=True))',
        'op.drop_column("posts", "summary")',
    )
    write_migration(
        project, "blog", "0003_rating.py", "5eed0003beef", "5eed0002beef",
        'op.add_column("posts", sa.Column("rating", sa.Integer, nullable=True))',
        'op.drop_column("posts", "rating")',
    )
    template = root / "template.db"
    shutil.copy(root / "test.db", template)
    editor = root / "editor"
    editor_log = root / "editor.log"
    editor.write_text(f"#!/bin/sh\necho \"$1\" >> {editor_log}\n")
    editor.chmod(0o755)
    revisions = {
        "accounts.0001": revision_of(project, "accounts", "0001"),
        "blog.0001": blog_1, "blog.0002": "5eed0002beef", "blog.0003": "5eed0003beef",
    }
    return Named(project, template, revisions, editor_log)


@pytest.fixture
def named(named_project: Named, monkeypatch: pytest.MonkeyPatch) -> Named:
    named_project.reset()
    monkeypatch.setenv("EDITOR", str(named_project.editor_log.with_name("editor")))
    return named_project


def shortest_unique_prefix(revision: str, others: list[str]) -> str:
    return next(
        revision[:n] for n in range(1, len(revision))
        if not any(other.startswith(revision[:n]) for other in others if other != revision)
    )


#: Every way output names blog.0002_summary, as command words.
FORMS: dict[str, Callable[[Named], tuple[str, ...]]] = {
    "app.name": lambda n: ("blog.0002_summary",),
    "app.number": lambda n: ("blog.0002",),
    "app@number": lambda n: ("blog@0002",),
    "app number": lambda n: ("blog", "0002"),
    "app@name": lambda n: ("blog@0002_summary",),
    "revision id": lambda n: (n.revisions["blog.0002"],),
    "revision prefix": lambda n: (shortest_unique_prefix(
        n.revisions["blog.0002"], [*n.revisions.values(), "0001_initial", "0002_summary", "0003_rating"]
    ),),
}


def check_upgrade(named: Named, words: tuple[str, ...]) -> None:
    ok(named.project.db("upgrade", *words))
    assert named.versions() == {named.revisions["blog.0002"]}


def check_downgrade(named: Named, words: tuple[str, ...]) -> None:
    ok(named.project.db("upgrade"))
    ok(named.project.db("downgrade", *words))
    assert named.versions() == {named.revisions["blog.0002"]}


def check_stamp(named: Named, words: tuple[str, ...]) -> None:
    ok(named.project.db("stamp", *words))
    assert named.versions() == {named.revisions["blog.0002"]}
    assert "summary" not in [column for column, _type, _null in schema_and_versions(named.project.url)[0]["posts"]["columns"]]


def check_sqlmigrate(named: Named, words: tuple[str, ...]) -> None:
    sql = ok(named.project.db("sqlmigrate", *words))
    assert f"-- Running upgrade {named.revisions['blog.0001']} -> {named.revisions['blog.0002']}" in sql
    assert "ADD COLUMN summary" in sql


def check_show(named: Named, words: tuple[str, ...]) -> None:
    assert f"Rev: {named.revisions['blog.0002']}\n" in ok(named.project.db("show", *words))


def check_edit(named: Named, words: tuple[str, ...]) -> None:
    ok(named.project.db("edit", *words))
    assert [Path(line).name for line in named.editor_log.read_text().splitlines()] == ["0002_summary.py"]


def check_history_range(named: Named, words: tuple[str, ...]) -> None:
    end = " ".join(words)
    lines = ok(named.project.db("history", "-r", f"{end}:{end}")).splitlines()
    assert lines == ["blog", "  0002_summary"]


COMMANDS: dict[str, Callable[[Named, tuple[str, ...]], None]] = {
    "upgrade": check_upgrade, "downgrade": check_downgrade, "stamp": check_stamp,
    "sqlmigrate": check_sqlmigrate, "show": check_show, "edit": check_edit,
    "history -r": check_history_range,
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_every_name_output_prints(named: Named, command: str, form: str) -> None:
    COMMANDS[command](named, FORMS[form](named))


def command_words(command: str, words: tuple[str, ...]) -> tuple[str, ...]:
    """The command line that gives ``words`` where ``command`` takes a migration."""
    if command == "history -r":
        return ("history", "-r", f"{' '.join(words)}:")
    return (command, *words)


#: Typos, and the suggestion each must get.
TYPOS = {
    "name typo": (("blog.0002_sumary",), "'blog.0002_summary'"),
    "app typo": (("blgo", "0002"), "'blog'"),
    "app typo dotted": (("blgo.0002_summary",), "'blog.0002_summary'"),
    "bare name typo": (("0002_sumary",), "'blog.0002_summary'"),
}


@pytest.mark.parametrize("typo", TYPOS)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_typo_is_one_line_with_did_you_mean(named: Named, command: str, typo: str) -> None:
    words, suggestion = TYPOS[typo]
    before = fingerprint(named.project)
    line = one_error_line(named.project.db(*command_words(command, words)))
    assert "did you mean" in line and suggestion in line, line
    assert fingerprint(named.project) == before
    assert named.editor_log.read_text() == ""


@pytest.mark.parametrize("command", COMMANDS)
def test_a_name_in_two_apps_is_ambiguous(named: Named, command: str) -> None:
    before = fingerprint(named.project)
    line = one_error_line(named.project.db(*command_words(command, ("0001",))))
    assert "'0001' is ambiguous" in line, line
    assert re.search(r"accounts\.0001_initial .*blog\.0001_initial", line), line
    assert fingerprint(named.project) == before


def test_show_takes_an_app_for_its_head(named: Named) -> None:
    assert f"Rev: {named.revisions['blog.0003']} (head)" in ok(named.project.db("show", "blog"))
    line = one_error_line(named.project.db("show", "blgo"))
    assert "no app or migration matches 'blgo'" in line and "did you mean 'blog'" in line, line


def test_alembic_forms_keep_working(named: Named) -> None:
    """head(s), base, -1, APP@head, APP@-1, REV+N (also with a printed name), ranges."""
    project, revisions = named.project, named.revisions
    ok(project.db("upgrade", "blog.0001+1"))
    assert named.versions() == {revisions["blog.0002"]}
    ok(project.db("upgrade", "blog@head"))
    assert named.versions() == {revisions["blog.0003"]}
    ok(project.db("downgrade", "blog@-1"))
    assert named.versions() == {revisions["blog.0002"]}
    ok(project.db("downgrade", "-1"))
    assert named.versions() == {revisions["blog.0001"]}
    ok(project.db("upgrade", "heads"))
    ok(project.db("stamp", "base"))
    assert named.versions() == set()
    ok(project.db("stamp", "head"))
    assert named.versions() == {revisions["blog.0003"]}
    assert ok(project.db("history", "-r", "base:heads")).splitlines()[0] == "accounts"


# -- history ---------------------------------------------------------------------------------------


def test_history_is_per_app_newest_first(named: Named) -> None:
    project, revisions = named.project, named.revisions
    ok(project.db("upgrade", "blog.0002"))
    assert ok(project.db("history")).splitlines() == [
        "accounts", "  0001_initial (head)",
        "blog", "  0003_rating (head)", "  0002_summary", "  0001_initial",
    ]
    assert ok(project.db("history", "blog", "-i")).splitlines() == [
        "blog", "  0003_rating (head)", "  0002_summary (current)", "  0001_initial",
    ]
    # The template writes no Create Date (a file must not depend on when it was generated);
    # one written by hand, or by Flask-Migrate before adoption, is shown.
    first = next((project.migrations / "blog").glob("0001_*.py"))
    assert "Create Date" not in first.read_text()
    assert "created:" not in ok(project.db("history", "blog", "-v")).split("  0001_initial\n")[1]
    first.write_text(first.read_text().replace('"""', '"""Create Date: 2026-01-02 03:04:05\n', 1))
    verbose = ok(project.db("history", "blog", "-v"))
    blog_1_details = verbose.split("  0001_initial\n")[1]
    assert f"revision: {revisions['blog.0001']}" in blog_1_details
    assert "parent: (base)" in blog_1_details
    assert f"depends on: accounts.0001_initial ({revisions['accounts.0001']})" in blog_1_details
    assert "created: 2026-01-02 03:04:05" in blog_1_details
    assert f"parent: blog.0002_summary ({revisions['blog.0002']})" in verbose

    assert ok(project.db("history", "-r", "blog.0002:")).splitlines() == [
        "blog", "  0003_rating (head)", "  0002_summary",
    ]
    assert ok(project.db("history", "blog", "-r", ":0002")).splitlines() == [
        "blog", "  0002_summary", "  0001_initial",
    ]
    assert ok(project.db("history", "-r", "current:", "blog")).splitlines() == [
        "blog", "  0003_rating (head)", "  0002_summary",
    ]

    app = project.app()
    with app.app_context():
        shown = compat_history(rev_range="blog@0002:blog@head")
    assert [m.label for m in shown] == ["blog.0003_rating", "blog.0002_summary"]


@pytest.mark.parametrize("args, fragment", [
    (("history", "-r", "accounts.0001:blog.0002"), "spans apps accounts, blog"),
    (("history", "-r", "blog@-1:"), "'blog@-1' is relative"),
    (("history", "-r", "blog.0002"), "needs a colon"),
    (("history", "accounts", "-r", "blog@head:"), "is in app 'blog', not in accounts"),
    (("history", "accounts", "-r", "blog.0002:"), "'blog.0002' names app 'blog', not 'accounts'"),
    (("history", "blgo"), "unknown app 'blgo' (did you mean 'blog'?)"),
], ids=["two-apps", "relative", "no-colon", "other-app", "other-app-migration", "unknown-app"])
def test_history_refusals_are_one_line(named: Named, args: tuple[str, ...], fragment: str) -> None:
    line = one_error_line(named.project.db(*args))
    assert fragment in line, line
