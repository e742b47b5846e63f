"""The data-loss guard's verdicts, class by class (issue 8): renames, cascades, data migrations,
timing races, data-dependent failures and fresh databases.

Each case is a real project (accounts.users, blog.posts with rows) plus hand-written blog
migrations, run through the real ``flask db`` on SQLite files and PostgreSQL. A case either
loses data, and must be refused with the exact count before anything changes (the database
byte-for-byte as it was), or is safe, and must run without ``--allow-data-loss``.
"""

from __future__ import annotations

import gc
import json
import textwrap
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result
from sqlalchemy.engine import Engine

from flask_rollback.errors import EXIT_REFUSED
from tests.projects import (
    BLOG_MODELS,
    Project,
    fingerprint,
    new_project,
    revision_of,
    write_migration,
)

BLOG_NULLABLE = BLOG_MODELS.replace("title: Mapped[str]", "title: Mapped[str | None]")
USERS = "INSERT INTO users (id, email) VALUES (1, 'ann@example.com'), (2, 'bob@example.com')"
POSTS = (
    "INSERT INTO posts (id, title, author_id) VALUES "
    "(1, 'short', 1), (2, 'a much longer title', 1), (3, NULL, 2)"
)
#: The common connect listener that turns SQLite foreign keys on for every engine.
FOREIGN_KEYS_ON = '''
from sqlalchemy import event
from sqlalchemy.engine import Engine


@event.listens_for(Engine, "connect")
def _foreign_keys(dbapi_connection, _record):
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        dbapi_connection.execute("PRAGMA foreign_keys=ON")
'''



@pytest.fixture(autouse=True)
def _foreign_keys_off_afterwards() -> Iterator[None]:
    """Remove the listeners FOREIGN_KEYS_ON registered on every Engine (one per import of the
    project's module): left behind, they turn foreign keys on in later tests of this process."""
    yield
    for found in gc.get_objects():
        if (isinstance(found, types.FunctionType) and found.__name__ == "_foreign_keys"
                and found.__module__.endswith(".fk") and sa.event.contains(Engine, "connect", found)):
            sa.event.remove(Engine, "connect", found)


def db(project: Project, *args: str, code: int = 0) -> Result:
    result = project.db(*args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"flask db {' '.join(args)} raised:\n{result.output}") from result.exception
    assert result.exit_code == code, f"flask db {' '.join(args)} -> {result.exit_code}:\n{result.output}"
    assert "Traceback" not in result.output
    return result


def refused_rows(text: str) -> list[tuple[str, str]]:
    """(object, lost) of each row of the "Data at risk:" table."""
    lines = text.splitlines()
    start = lines.index("Data at risk:") + 1
    header = lines[start]
    starts = [header.index(w) for w in ("migration", "app", "object", "lost", "operation")]
    rows = []
    for line in lines[start + 1:]:
        if not line.startswith("  ") or not line.strip():
            break
        cells = [line[a:b].strip() for a, b in zip(starts, starts[1:] + [len(line)])]
        rows.append((cells[2], cells[3]))
    return rows


@dataclass
class Case:
    """Migrations blog.0002... (``(upgrade, downgrade)`` code, an optional module header), the
    number of them applied before the rows are written, and what the command then must do."""

    migrations: list[tuple[str, str] | tuple[str, str, str]]
    applied: int = 0
    rows: list[str] = field(default_factory=list)
    command: tuple[str, ...] = ("upgrade",)
    lost: list[tuple[str, str]] | None = None  # None: safe, must run; else the refused rows
    backends: tuple[str, ...] = ("sqlite", "postgresql")
    foreign_keys_on: bool = False
    extra_models: str = ""
    after: Callable[[Project], None] | None = None


def build(tmp_path: Path, url: str, case: Case) -> Project:
    project = new_project(tmp_path, url)
    project.write("blog/models.py", BLOG_NULLABLE + textwrap.dedent(case.extra_models))
    if case.foreign_keys_on:
        project.write("fk.py", FOREIGN_KEYS_ON)
        project.set_factory(["accounts", "blog"], extra_modules=["fk"])
    db(project, "init")
    db(project, "makemigrations")
    db(project, "upgrade")
    project.query_write(USERS, POSTS)
    parent = revision_of(project, "blog", "0001")
    for number, migration in enumerate(case.migrations, start=2):
        upgrade, downgrade, *header = migration
        revision = f"blog{number:04d}"
        write_migration(project, "blog", f"{number:04d}_case.py", revision, parent, upgrade,
                        downgrade, header=header[0] if header else "")
        parent = revision
    if case.applied:
        db(project, "upgrade", "blog", f"{case.applied + 1:04d}", "--allow-data-loss")
    if case.rows:
        project.query_write(*case.rows)
    return project


def on_their_backends(cases: dict[str, Case]) -> list[Any]:
    """The case names as parameters, each run on its case's backends only (conftest deselects
    the other ``db_url`` variants)."""
    return [pytest.param(name, marks=pytest.mark.backends(*case.backends)) for name, case in cases.items()]


def check(tmp_path: Path, db_url: str, case: Case) -> None:
    project = build(tmp_path, db_url, case)
    before = fingerprint(project)
    if case.lost is None:
        db(project, *case.command)
        if case.after:
            case.after(project)
        return
    refused = db(project, *case.command, code=EXIT_REFUSED)
    assert sorted(refused_rows(refused.output)) == sorted(case.lost), refused.output
    assert fingerprint(project) == before, "a refusal changed the database"
    db(project, *case.command, "--allow-data-loss")
    if case.after:
        case.after(project)


def rows_of(project: Project, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    return project.query(sql)


def expect(sql: str, rows: list[tuple]) -> Callable[[Project], None]:  # type: ignore[type-arg]
    """An ``after`` check: ``sql`` returns exactly ``rows``."""

    def check_rows(project: Project) -> None:
        assert rows_of(project, sql) == rows, sql

    return check_rows


# --- renames: counts follow the object under its current name ----------------------------------

RENAMES = {
    "rename_then_drop_in_one_migration": Case(
        [('op.alter_column("posts", "title", new_column_name="headline")\n'
          'op.drop_column("posts", "headline")', "pass", 'noop_downgrade = "test"')],
        lost=[("posts.title", "2 values")],
    ),
    "rename_table_then_drop_table_in_one_plan": Case(
        [('op.rename_table("posts", "articles")', 'op.rename_table("articles", "posts")'),
         ('op.drop_table("articles")', "pass", 'irreversible = "test"')],
        lost=[("posts", "3 rows")],
    ),
    "batch_rename_then_batch_drop": Case(
        [('with op.batch_alter_table("posts") as b:\n    b.alter_column("title", new_column_name="headline")',
          'with op.batch_alter_table("posts") as b:\n    b.alter_column("headline", new_column_name="title")'),
         ('with op.batch_alter_table("posts") as b:\n    b.drop_column("headline")', "pass",
          'irreversible = "test"')],
        lost=[("posts.title", "2 values")],
    ),
    "raw_sql_rename_then_drop": Case(
        [('op.execute("ALTER TABLE posts RENAME COLUMN title TO headline")',
          'op.execute("ALTER TABLE posts RENAME COLUMN headline TO title")'),
         ('op.drop_column("posts", "headline")', "pass", 'irreversible = "test"')],
        lost=[("posts.title", "2 values")],
    ),
    # The example: add, rename, fill, then roll both back: the drop of the added
    # column is counted on the filled, renamed one.
    "add_rename_fill_then_roll_back": Case(
        [('op.add_column("posts", sa.Column("notes", sa.String(50)))', 'op.drop_column("posts", "notes")'),
         ('op.alter_column("posts", "notes", new_column_name="remarks")',
          'op.alter_column("posts", "remarks", new_column_name="notes")')],
        applied=2,
        rows=["UPDATE posts SET remarks = 'kept' WHERE id < 3"],
        command=("downgrade", "blog", "0001"),
        lost=[("posts.remarks", "2 values")],
    ),
    # A loop: title and body swap names through a temporary name; the drop of "body" loses
    # what was the title.
    "rename_chain_that_loops": Case(
        [('op.add_column("posts", sa.Column("body", sa.String(50)))\n'
          'op.alter_column("posts", "title", new_column_name="tmp")\n'
          'op.alter_column("posts", "body", new_column_name="title")\n'
          'op.alter_column("posts", "tmp", new_column_name="body")\n'
          'op.drop_column("posts", "body")', "pass", 'irreversible = "test"')],
        lost=[("posts.title", "2 values")],
    ),
    "rename_alone_is_safe": Case(
        [('op.alter_column("posts", "title", new_column_name="headline")',
          'op.alter_column("posts", "headline", new_column_name="title")'),
         ('op.rename_table("posts", "articles")', 'op.rename_table("articles", "posts")')],
        after=expect("SELECT headline FROM articles WHERE id = 1", [("short",)]),
    ),
}


@pytest.mark.parametrize("name", on_their_backends(RENAMES))
def test_renames(tmp_path: Path, db_url: str, name: str) -> None:
    check(tmp_path, db_url, RENAMES[name])


# --- cascades: rows removed through foreign keys are counted, rebuilds never cascade -----------

COMMENTS_TABLE = (
    'op.create_table("comments", sa.Column("id", sa.Integer, primary_key=True), '
    'sa.Column("body", sa.String(200)), sa.Column("post_id", sa.Integer, '
    'sa.ForeignKey("posts.id", name="fk_comments_post_id_posts", ondelete="CASCADE")))'
)
COMMENT_ROWS = ["INSERT INTO comments (id, body, post_id) VALUES (1, 'a', 1), (2, 'b', 1), (3, 'c', 2)"]


comments_survive = expect("SELECT count(*) FROM comments", [(3,)])


CASCADES = {
    # Seven lines of the issue: foreign keys on, a batch drop of a parent's column. Only the
    # column's values are at risk; the rebuild does not delete a single comment.
    "sqlite_rebuild_of_a_parent_does_not_cascade": Case(
        [(COMMENTS_TABLE, 'op.drop_table("comments")'),
         ('with op.batch_alter_table("posts") as b:\n    b.drop_column("title")',
          'with op.batch_alter_table("posts") as b:\n    b.add_column(sa.Column("title", sa.String(200)))')],
        applied=1, rows=COMMENT_ROWS, foreign_keys_on=True, backends=("sqlite",),
        lost=[("posts.title", "2 values")], after=comments_survive,
    ),
    "delete_of_parents_counts_cascaded_children": Case(
        [(COMMENTS_TABLE, 'op.drop_table("comments")'),
         ('op.execute("DELETE FROM posts WHERE author_id = 1")', "pass", 'irreversible = "test"')],
        applied=1, rows=COMMENT_ROWS, foreign_keys_on=True,
        lost=[("posts", "2 rows"), ("comments", "3 rows")],
    ),
    "sqlite_drop_table_with_keys_on_counts_children": Case(
        [(COMMENTS_TABLE, 'op.drop_table("comments")'),
         ('op.execute("DELETE FROM posts WHERE id = 2")', "pass", 'irreversible = "test"')],
        applied=1, rows=COMMENT_ROWS, foreign_keys_on=True, backends=("sqlite",),
        lost=[("posts", "1 row"), ("comments", "1 row")],
    ),
    "set_null_children_lose_their_values": Case(
        [(COMMENTS_TABLE.replace('"CASCADE"', '"SET NULL"'), 'op.drop_table("comments")'),
         ('op.execute("DELETE FROM posts WHERE id = 1")', "pass", 'irreversible = "test"')],
        applied=1, rows=COMMENT_ROWS, foreign_keys_on=True,
        lost=[("posts", "1 row"), ("comments.post_id", "2 values")],
    ),
    "truncate_cascade_empties_the_referencing_tables": Case(
        [(COMMENTS_TABLE, 'op.drop_table("comments")'),
         ('op.execute("TRUNCATE posts CASCADE")', "pass", 'irreversible = "test"')],
        applied=1, rows=COMMENT_ROWS, backends=("postgresql",),
        lost=[("posts", "3 rows"), ("comments", "3 rows")],
    ),
}


@pytest.mark.parametrize("name", on_their_backends(CASCADES))
def test_cascades(tmp_path: Path, db_url: str, name: str) -> None:
    check(tmp_path, db_url, CASCADES[name])


# --- data migrations: exact counts, no false alarms ----------------------------------------------

NOOP = 'noop_downgrade = "nothing to undo"'


def titles(project: Project) -> list[tuple]:  # type: ignore[type-arg]
    return rows_of(project, "SELECT id, title FROM posts ORDER BY id")


DATA_MIGRATIONS = {
    "backfill_of_nulls_is_safe": Case(
        [("op.execute(\"UPDATE posts SET title = 'untitled-' || id WHERE title IS NULL\")", "pass", NOOP)],
        after=expect("SELECT id, title FROM posts ORDER BY id",
                     [(1, "short"), (2, "a much longer title"), (3, "untitled-3")]),
    ),
    "backfill_of_a_new_column_is_safe": Case(
        [('op.add_column("posts", sa.Column("slug", sa.String(50)))\n'
          "op.execute(\"UPDATE posts SET slug = 'post-' || id\")", 'op.drop_column("posts", "slug")')],
    ),
    "copy_then_drop_keeps_the_values": Case(
        [('op.add_column("posts", sa.Column("headline", sa.String(200)))\n'
          'op.execute("UPDATE posts SET headline = title")\n'
          'op.drop_column("posts", "title")', "pass", 'irreversible = "test"')],
        after=expect("SELECT headline FROM posts ORDER BY id",
                     [("short",), ("a much longer title",), (None,)]),
    ),
    "copy_where_not_null_then_drop_keeps_the_values": Case(
        [('op.add_column("posts", sa.Column("headline", sa.String(200)))\n'
          'op.execute("UPDATE posts SET headline = title WHERE title IS NOT NULL")\n'
          'op.drop_column("posts", "title")', "pass", 'irreversible = "test"')],
    ),
    "manual_table_rebuild_is_safe": Case(
        [('op.execute("CREATE TABLE posts_new (id INTEGER PRIMARY KEY, title VARCHAR(200), '
          'author_id INTEGER REFERENCES users (id))")\n'
          'op.execute("INSERT INTO posts_new (id, title, author_id) SELECT id, title, author_id FROM posts")\n'
          'op.execute("DROP TABLE posts")\n'
          'op.execute("ALTER TABLE posts_new RENAME TO posts")', "pass", 'irreversible = "test"')],
        after=expect("SELECT id, title FROM posts ORDER BY id",
                     [(1, "short"), (2, "a much longer title"), (3, None)]),
    ),
    "manual_rebuild_that_leaves_a_column_behind": Case(
        [('op.execute("CREATE TABLE posts_new (id INTEGER PRIMARY KEY, author_id INTEGER)")\n'
          'op.execute("INSERT INTO posts_new (id, author_id) SELECT id, author_id FROM posts")\n'
          'op.execute("DROP TABLE posts")\n'
          'op.execute("ALTER TABLE posts_new RENAME TO posts")', "pass", 'irreversible = "test"')],
        lost=[("posts.title", "2 values")],
    ),
    "update_that_overwrites_is_counted": Case(
        [("op.execute(\"UPDATE posts SET title = upper(title) WHERE author_id = 1\")", "pass", NOOP)],
        lost=[("posts.title", "2 values")],
    ),
    "delete_with_a_subquery_is_counted": Case(
        [('op.execute("DELETE FROM posts WHERE author_id IN (SELECT id FROM users WHERE email LIKE \'bob%\')")',
          "pass", 'irreversible = "test"')],
        lost=[("posts", "1 row")],
    ),
    "delete_with_a_cte_is_counted": Case(
        [('op.execute("WITH old AS (SELECT id FROM posts WHERE id < 3) '
          'DELETE FROM posts WHERE id IN (SELECT id FROM old)")', "pass", 'irreversible = "test"')],
        lost=[("posts", "2 rows")],
    ),
    "delete_that_matches_nothing_is_safe": Case(
        [('op.execute("DELETE FROM posts WHERE id > 100")', "pass", NOOP)],
    ),
    "insert_of_seed_rows_is_safe": Case(
        [('op.bulk_insert(sa.table("users", sa.column("id"), sa.column("email")), '
          '[{"id": 3, "email": "cy@example.com"}])', 'op.execute("DELETE FROM users WHERE id = 3")')],
    ),
    # The declaration covers reversibility, not data loss.
    "noop_downgrade_does_not_cover_a_destructive_upgrade": Case(
        [('op.drop_column("posts", "title")', "pass", NOOP)],
        lost=[("posts.title", "2 values")],
    ),
}


@pytest.mark.parametrize("name", on_their_backends(DATA_MIGRATIONS))
def test_data_migrations(tmp_path: Path, db_url: str, name: str) -> None:
    check(tmp_path, db_url, DATA_MIGRATIONS[name])


def test_an_intentional_noop_downgrade_passes_the_gate_and_rolls_back(tmp_path: Path, db_url: str) -> None:
    """A backfill's empty downgrade is an error until it is declared; declared, the gate passes
    and the deploy rolls back. The message names both declarations."""
    x_id = "CONCAT('x', id)" if db_url.startswith("mysql") else "'x' || id"
    case = Case([(f"op.execute(\"UPDATE posts SET title = {x_id} WHERE title IS NULL\")", "pass")])
    project = build(tmp_path, db_url, case)
    report = json.loads(db(project, "predeploy", "--json", code=1).output)
    (reversibility,) = [c for c in report["checks"] if c["name"] == "reversibility"]
    assert reversibility["level"] == "error"
    (detail,) = reversibility["details"]
    assert "noop_downgrade" in detail and "irreversible" in detail
    path = next((project.migrations / "blog").glob("0002_*.py"))
    path.write_text(path.read_text().replace("depends_on = None\n", f"depends_on = None\n{NOOP}\n"))
    db(project, "predeploy", "--strict")
    db(project, "deploy")
    db(project, "rollback", "--yes")
    assert titles(project)[2] == (3, "x3")  # nothing to undo: the backfill stays


# --- timing races: what arrives between the assessment and the drop is counted -----------------

HOOK = '''
from flask import current_app
from sqlalchemy import create_engine, text

from . import rollback


@rollback.before_deploy
def _rows_arrive(plan):
    engine = create_engine(current_app.config["SQLALCHEMY_DATABASE_URI"])
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO drafts (id, body) VALUES (1, 'written during the backup')"))
    engine.dispose()
'''


def test_rows_written_while_the_deploy_runs_its_hooks_are_refused(tmp_path: Path, db_url: str) -> None:
    """The gate counts an empty table; a before_deploy hook (standing for a slow backup) lets a
    row arrive; the deploy counts again and refuses before applying anything."""
    case = Case(
        [('op.create_table("drafts", sa.Column("id", sa.Integer, primary_key=True), '
          'sa.Column("body", sa.String(100)))', 'op.drop_table("drafts")'),
         ('op.drop_table("drafts")', "pass", 'irreversible = "test"')],
        applied=1,
    )
    project = build(tmp_path, db_url, case)
    project.write("race.py", HOOK)
    project.set_factory(["accounts", "blog"], extra_modules=["race"])
    report = json.loads(db(project, "predeploy", "--json").output)
    (risk,) = [c for c in report["checks"] if c["name"] == "data at risk"]
    assert risk["level"] == "ok", risk  # empty at gate time
    refused = db(project, "deploy", code=EXIT_REFUSED)
    assert refused_rows(refused.output) == [("drafts", "1 row")]
    assert rows_of(project, "SELECT body FROM drafts") == [("written during the backup",)]
    assert "blog0003" not in str(rows_of(project, "SELECT version_num FROM alembic_version"))


RACER = '''
from flask import current_app


def write_elsewhere():
    """Another client commits a row while this migration runs (its own connection)."""
    engine = sa.create_engine(current_app.config["SQLALCHEMY_DATABASE_URI"])
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO drafts (id, body) VALUES (7, 'late')"))
    engine.dispose()
'''


def test_rows_committed_by_another_client_mid_run_are_counted_as_the_step_runs(
    tmp_path: Path, pg_url: str
) -> None:
    """Step 1 runs while another client commits a row into a table step 2 drops: step 2 counts
    again under its lock and refuses; step 1 stays applied, step 2 is rolled back."""
    case = Case(
        [('op.create_table("drafts", sa.Column("id", sa.Integer, primary_key=True), '
          'sa.Column("body", sa.String(100)))', 'op.drop_table("drafts")'),
         ('if not op.get_context().as_sql:  # running, not being read\n    write_elsewhere()\n'
          'op.add_column("posts", sa.Column("x", sa.Integer))',
          'op.drop_column("posts", "x")', RACER),
         ('op.drop_table("drafts")', "pass", 'irreversible = "test"')],
        applied=1,
    )
    project = build(tmp_path, pg_url, case)
    refused = db(project, "upgrade", code=EXIT_REFUSED)
    errors = [line for line in refused.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "blog.0004_case (up) was stopped: counted again as it ran" in errors[0]
    assert "1 row of drafts" in errors[0]
    assert rows_of(project, "SELECT id FROM drafts") == [(7,)]
    versions = {v for (v,) in rows_of(project, "SELECT version_num FROM alembic_version")}
    assert versions == {"blog0003"}


@pytest.mark.parametrize("hidden", [
    "DELETE FROM posts WHERE author_id = 2",
    "UPDATE posts SET title = NULL WHERE author_id = 2",
    "DELETE FROM posts WHERE id IN (SELECT id FROM posts WHERE author_id = 2)",
])
def test_rows_changed_by_a_step_that_reads_as_additive_are_caught_as_it_runs(
    tmp_path: Path, db_url: str, hidden: str
) -> None:
    """A step whose code reads as adding an index only, and deletes (or overwrites) rows only
    when really running: its statement was never read, so the rows it reports explain nothing
    (PostgreSQL: the transaction's own counters, read after the step; SQLite and MariaDB: the
    statement's own row count, charged to the table it names); the step is rolled back and
    refused, the earlier step of the run stays applied."""
    case = Case(
        [('op.create_index("ix_posts_title", "posts", ["title"])',
          'op.drop_index("ix_posts_title", table_name="posts")'),
         ('op.create_index("ix_posts_author", "posts", ["author_id"])\n'
          'if not op.get_context().as_sql:  # running, not being read\n'
          f'    op.execute("{hidden}")',
          'op.drop_index("ix_posts_author", table_name="posts")')],
    )
    project = build(tmp_path, db_url, case)
    before = rows_of(project, "SELECT id, title FROM posts ORDER BY id")
    refused = db(project, "upgrade", code=EXIT_REFUSED)
    errors = [line for line in refused.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "blog.0003_case (up) was stopped" in errors[0], refused.output
    how = "deleted" if hidden.startswith("DELETE") else "updated"
    assert f"posts {how} by a statement this step's reading did not show" in errors[0], errors[0]
    assert rows_of(project, "SELECT id, title FROM posts ORDER BY id") == before
    versions = {v for (v,) in rows_of(project, "SELECT version_num FROM alembic_version")}
    assert versions == {"blog0002"}


#: (statement the step's reading sees, statement that runs only when not rendering SQL, flags)
BESIDE_A_READ_STATEMENT = {
    "delete_beside_a_delete_that_matches_nothing": (
        'op.execute("DELETE FROM posts WHERE id > 100")', 'op.execute("DELETE FROM posts")', ()),
    "delete_beside_an_archived_delete": (
        'op.execute("DELETE FROM posts WHERE id = 1")', 'op.execute("DELETE FROM posts")', ("--archive",)),
    "nulling_update_beside_a_backfill": (
        "op.execute(\"UPDATE posts SET title = 'untitled' WHERE title IS NULL\")",
        'op.execute("UPDATE posts SET title = NULL")', ()),
    "overwrite_beside_an_archived_update": (
        "op.execute(\"UPDATE posts SET title = upper(title) WHERE id = 1\")",
        "op.execute(\"UPDATE posts SET title = 'x'\")", ("--archive",)),
    "delete_through_the_connection_beside_a_read_delete": (
        'op.execute("DELETE FROM posts WHERE id > 100")',
        'op.get_bind().execute(sa.text("DELETE FROM posts WHERE author_id = 1"))', (),
    ),
}


@pytest.mark.parametrize("name", list(BESIDE_A_READ_STATEMENT))
def test_an_unread_statement_is_not_credited_to_a_read_one_on_the_same_table(
    tmp_path: Path, db_url: str, name: str
) -> None:
    """A step whose reading shows one statement on posts, counted (and archived, or matching
    nothing), and that runs another on posts only when not rendering SQL: the unread statement's
    rows are its own, not the read one's; the step is rolled back and refused (exit 6)."""
    seen, hidden, flags = BESIDE_A_READ_STATEMENT[name]
    case = Case(
        [('op.create_index("ix_posts_title", "posts", ["title"])',
          'op.drop_index("ix_posts_title", table_name="posts")'),
         (f'{seen}\nif not op.get_context().as_sql:  # running, not being read\n    {hidden}',
          "pass", NOOP)],
    )
    project = build(tmp_path, db_url, case)
    before = rows_of(project, "SELECT id, title, author_id FROM posts ORDER BY id")
    refused = db(project, "upgrade", *flags, code=EXIT_REFUSED)
    errors = [line for line in refused.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "blog.0003_case (up) was stopped" in errors[0], refused.output
    how = "deleted" if "DELETE" in hidden else "updated"
    assert f"of posts {how} by a statement this step's reading did not show" in errors[0], errors[0]
    assert rows_of(project, "SELECT id, title, author_id FROM posts ORDER BY id") == before
    versions = {v for (v,) in rows_of(project, "SELECT version_num FROM alembic_version")}
    assert versions == {"blog0002"}


#: Destructive schema changes a step makes only when not rendering SQL: (code, what it
#: destroys as the refusal names it, the same code run unconditionally: refused as read).
HIDDEN_SCHEMA_CHANGES = {
    "drop_column": ('op.drop_column("posts", "title")', "posts.title", [("posts.title", "2 values")]),
    "drop_table": ('op.drop_table("posts")', "posts", [("posts", "3 rows")]),
    "type_narrowing": (
        'with op.batch_alter_table("posts") as b:\n'
        '    b.alter_column("title", type_=sa.String(4), existing_type=sa.String(200))',
        "posts.title", [("posts.title", "2 values")],
    ),
    "batch_drop_column": (
        'with op.batch_alter_table("posts") as b:\n    b.drop_column("title")',
        "posts.title", [("posts.title", "2 values")],
    ),
    "raw_drop_column": ('op.execute("ALTER TABLE posts DROP COLUMN title")', "posts.title",
                        [("posts.title", "2 values")]),
    "raw_drop_table": ('op.execute("DROP TABLE posts")', "posts", [("posts", "3 rows")]),
}


def hidden(code: str) -> str:
    """``code`` run only when not rendering SQL (so the step's reading never sees it)."""
    return "if not op.get_context().as_sql:  # running, not being read\n" + textwrap.indent(code, "    ")


def assert_hidden_change_refused(project: Project, what: str) -> None:
    """``upgrade`` stops at blog.0003 with one line naming ``what`` and saying the code runs
    only for real; the posts and the version are as they were."""
    before = rows_of(project, "SELECT id, title, author_id FROM posts ORDER BY id")
    refused = db(project, "upgrade", code=EXIT_REFUSED)
    errors = [line for line in refused.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "blog.0003_case (up) was stopped" in errors[0], refused.output
    assert f" of {what} " in errors[0] and "runs only when not rendering SQL" in errors[0], errors[0]
    assert rows_of(project, "SELECT id, title, author_id FROM posts ORDER BY id") == before
    versions = {v for (v,) in rows_of(project, "SELECT version_num FROM alembic_version")}
    assert versions == {"blog0002"}


@pytest.mark.parametrize("name", list(HIDDEN_SCHEMA_CHANGES))
def test_a_destructive_schema_change_the_reading_did_not_show_is_refused_before_it_runs(
    tmp_path: Path, db_url: str, name: str
) -> None:
    """A step that reads as adding an index and drops (or narrows) posts data only when really
    running: no row count could see a dropped column, so each operation the step runs is held
    against its reading, and this one is refused before it is sent (MariaDB commits DDL at
    once): exit 6, the data and the version as they were, the earlier step applied."""
    code, what, _ = HIDDEN_SCHEMA_CHANGES[name]
    project = build(tmp_path, db_url, Case([
        ('op.create_index("ix_posts_title", "posts", ["title"])',
         'op.drop_index("ix_posts_title", table_name="posts")'),
        ('op.create_index("ix_posts_author", "posts", ["author_id"])\n' + hidden(code), "pass", NOOP),
    ]))
    assert_hidden_change_refused(project, what)


@pytest.mark.parametrize("name", list(HIDDEN_SCHEMA_CHANGES))
def test_the_same_schema_change_read_is_refused_ahead_and_runs_when_accepted(
    tmp_path: Path, db_url: str, name: str
) -> None:
    """Run unconditionally, the same code is read, counted and refused before the run (the
    existing path); accepted, it runs (PostgreSQL and MariaDB refuse to cut values that do not
    fit a narrowed column: the step fails and is rolled back)."""
    code, _, lost = HIDDEN_SCHEMA_CHANGES[name]
    project = build(tmp_path, db_url, Case([(code, "pass", NOOP)]))
    before = fingerprint(project)
    refused = db(project, "upgrade", code=EXIT_REFUSED)
    assert sorted(refused_rows(refused.output)) == lost, refused.output
    assert fingerprint(project) == before
    fails = name == "type_narrowing" and not db_url.startswith("sqlite")
    db(project, "upgrade", "--allow-data-loss", code=1 if fails else 0)
    versions = {v for (v,) in rows_of(project, "SELECT version_num FROM alembic_version")}
    assert versions == ({revision_of(project, "blog", "0001")} if fails else {"blog0002"})


def test_a_rename_the_reading_did_not_show_is_not_credited_to_a_read_drop(tmp_path: Path, db_url: str) -> None:
    """The reading shows a drop of a table that does not exist (nothing to count); the step
    first renames posts to that name only when running: the drop is counted again on the
    database as it then is, and refused before it runs."""
    project = build(tmp_path, db_url, Case([
        (hidden('op.rename_table("posts", "articles")') + '\nop.drop_table("articles")', "pass", NOOP),
    ]))
    refused = db(project, "upgrade", code=EXIT_REFUSED)
    errors = [line for line in refused.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "3 rows of articles" in errors[0], refused.output
    assert "runs only when not rendering SQL" in errors[0], errors[0]
    assert rows_of(project, "SELECT count(*) FROM posts") == [(3,)]
    versions = {v for (v,) in rows_of(project, "SELECT version_num FROM alembic_version")}
    assert versions == {revision_of(project, "blog", "0001")}


#: Schema changes sent past Alembic's operations, only when not rendering SQL: (statement, what
#: the refusal names, what is left of posts once it ran: its columns, or None when it is gone).
THROUGH_THE_CONNECTION = {
    "drop_column": ("ALTER TABLE posts DROP COLUMN title", "posts.title", {"id", "author_id"}),
    "drop_table": ("DROP TABLE posts", "posts", None),
    "truncate": ("TRUNCATE TABLE posts", "posts", {"id", "title", "author_id"}),
}


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=[pytest.mark.backends("postgresql", "mariadb")] if name == "truncate" else [])
    for name in THROUGH_THE_CONNECTION
])
@pytest.mark.parametrize("empty", [False, True], ids=["with_rows", "empty"])
def test_a_schema_change_sent_through_the_connection_is_refused_before_it_runs(
    tmp_path: Path, db_url: str, name: str, empty: bool
) -> None:
    """``op.get_bind().execute(...)`` runs no Alembic operation, and no row count hears a drop
    or a TRUNCATE: each such statement is read as it is sent, counted on the database as it is
    then and refused before it reaches the database (MariaDB commits DDL at once): exit 6, the
    data and the version as they were, the earlier step applied. On an empty table it runs."""
    statement, what, left = THROUGH_THE_CONNECTION[name]
    project = build(tmp_path, db_url, Case([
        ('op.create_index("ix_posts_author", "posts", ["author_id"])',
         'op.drop_index("ix_posts_author", table_name="posts")'),
        ('op.create_table("tags", sa.Column("id", sa.Integer, primary_key=True))\n'
         + hidden(f'op.get_bind().execute(sa.text("{statement}"))'), "pass", NOOP),
    ]))
    if empty:
        project.query_write("DELETE FROM posts")
        db(project, "upgrade")
        assert {v for (v,) in rows_of(project, "SELECT version_num FROM alembic_version")} == {"blog0003"}
        engine = project.engine()
        try:
            inspector = sa.inspect(engine)
            found = {c["name"] for c in inspector.get_columns("posts")} if inspector.has_table("posts") else None
        finally:
            engine.dispose()
        assert found == left
        return
    assert_hidden_change_refused(project, what)


def test_a_rename_sent_through_the_connection_is_not_credited_to_a_read_drop(
    tmp_path: Path, db_url: str
) -> None:
    """The reading shows a drop of a table that does not exist (nothing to count); the step
    first renames posts to that name through the connection, only when running: the drop is
    counted again on the database as it then is, and refused before it runs."""
    project = build(tmp_path, db_url, Case([
        (hidden('op.get_bind().execute(sa.text("ALTER TABLE posts RENAME TO articles"))')
         + '\nop.drop_table("articles")', "pass", NOOP),
    ]))
    refused = db(project, "upgrade", code=EXIT_REFUSED)
    errors = [line for line in refused.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "3 rows of articles" in errors[0], refused.output
    assert rows_of(project, "SELECT count(*) FROM posts") == [(3,)]
    versions = {v for (v,) in rows_of(project, "SELECT version_num FROM alembic_version")}
    assert versions == {revision_of(project, "blog", "0001")}


#: A raw DB-API cursor dropping posts.title, ways to reach one (no SQLAlchemy event hears it).
RAW_CURSORS = {
    "pool_connection": "op.get_bind().connection.cursor()",
    "driver_connection": "op.get_bind().connection.driver_connection.cursor()",
}


@pytest.mark.parametrize("name", list(RAW_CURSORS))
def test_a_column_dropped_through_a_raw_cursor_is_refused(tmp_path: Path, db_url: str, name: str) -> None:
    """A step that reads as adding an index and drops posts.title through a raw DB-API cursor,
    only when running: PostgreSQL and SQLite run it in a savepoint, find the column gone from
    the catalog, roll back and refuse; MariaDB (DDL commits at once) refuses the step before it
    runs. Exit 6, the data and the version as they were; accepted, it runs."""
    project = build(tmp_path, db_url, Case([
        ('op.create_index("ix_posts_author", "posts", ["author_id"])\n' + hidden(
            f"cursor = {RAW_CURSORS[name]}\n"
            'cursor.execute("ALTER TABLE posts DROP COLUMN title")\n'
            "cursor.close()"),
         "pass", NOOP),
    ]))
    before = rows_of(project, "SELECT id, title, author_id FROM posts ORDER BY id")
    mariadb = sa.make_url(db_url).get_backend_name() == "mysql"
    report = json.loads(project.db("predeploy", "--json").output)
    (risk,) = [c for c in report["checks"] if c["name"] == "data at risk"]
    (said,) = [d for d in risk["details"] if "a raw DB-API cursor" in d]
    assert said.endswith("refused unless --allow-data-loss)" if mariadb else "(checked as it runs)"), said
    refused = db(project, "upgrade", code=EXIT_REFUSED)
    errors = [line for line in refused.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "blog.0002_case (up) was stopped" in errors[0], refused.output
    if mariadb:
        assert "cannot be checked for data loss on MariaDB/MySQL" in errors[0], errors[0]
        assert "a raw DB-API cursor" in errors[0] and "--allow-data-loss" in errors[0], errors[0]
    else:
        assert "2 values of posts.title" in errors[0] and "vanished" in errors[0], errors[0]
    assert rows_of(project, "SELECT id, title, author_id FROM posts ORDER BY id") == before
    versions = {v for (v,) in rows_of(project, "SELECT version_num FROM alembic_version")}
    assert versions == {revision_of(project, "blog", "0001")}
    db(project, "upgrade", "--allow-data-loss")
    assert rows_of(project, "SELECT * FROM posts ORDER BY id") == [(i, a) for i, _, a in before]


#: Harmless code that runs only when not rendering SQL: (code, backends it runs on).
HARMLESS_UNSEEN = {
    "insert_through_op_execute": (
        "op.execute(\"INSERT INTO posts (id, title, author_id) VALUES (10, 'new', 1)\")", ()),
    "insert_through_the_connection": (
        "op.get_bind().execute(sa.text(\"INSERT INTO posts (id, title, author_id) VALUES (10, 'new', 1)\"))",
        ()),
    "insert_through_a_raw_cursor": (
        ("cursor = op.get_bind().connection.cursor()\n"
         "cursor.execute(\"INSERT INTO posts (id, title, author_id) VALUES (10, 'new', 1)\")\n"
         "cursor.close()"), ("sqlite", "postgresql")),
}


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=[pytest.mark.backends(*HARMLESS_UNSEEN[name][1])] if HARMLESS_UNSEEN[name][1] else [])
    for name in HARMLESS_UNSEEN
])
def test_a_harmless_data_migration_the_reading_does_not_see_runs(
    tmp_path: Path, db_url: str, name: str
) -> None:
    """Code behind ``if not op.get_context().as_sql`` (or through a raw cursor, where one can
    be watched) that only adds a row: the step runs, nothing is refused, the row is there."""
    project = build(tmp_path, db_url, Case([
        ('op.create_index("ix_posts_author", "posts", ["author_id"])\n' + hidden(HARMLESS_UNSEEN[name][0]),
         "pass", NOOP),
    ]))
    db(project, "upgrade")
    assert titles(project)[-1] == (10, "new")
    assert {v for (v,) in rows_of(project, "SELECT version_num FROM alembic_version")} == {"blog0002"}


def test_read_statements_on_one_table_still_run_and_archive(tmp_path: Path, db_url: str) -> None:
    """The statements a step's reading shows, as strings, Core constructs and bound text, on
    one table: archived and run, nothing refused (the run's statements are matched to the read
    ones, also when their values are sent as bind parameters)."""
    posts = 'sa.table("posts", sa.column("id"), sa.column("title"))'
    project = build(tmp_path, db_url, Case([(
        'op.execute("DELETE FROM posts WHERE id = 3")\n'
        f'op.execute(sa.delete({posts}).where(sa.column("id") == 2))\n'
        'op.execute(sa.text("UPDATE posts SET title = :t WHERE id = :k").bindparams(t="new", k=1))\n'
        f'op.execute(sa.update({posts}).where(sa.column("title").is_(None)).values(title="none"))',
        "pass", 'irreversible = "test"')]))
    db(project, "upgrade", "--archive")
    assert titles(project) == [(1, "new")]
    archived = json.loads(db(project, "archives", "--json").output)
    assert sorted((a["table"], a["column"] or "", a["rows"]) for a in archived) == [
        ("posts", "", 1), ("posts", "", 1), ("posts", "title", 1),
    ]


# --- failures on live data: refused before the first step, with the fix -------------------------

FAILURES = {
    "not_null_without_default_on_rows": (
        'op.add_column("posts", sa.Column("slug", sa.String(50), nullable=False))',
        "would fail on live data: 3 rows;",
    ),
    "set_not_null_over_nulls": (
        ('with op.batch_alter_table("posts") as b:\n'
         '    b.alter_column("title", existing_type=sa.String(200), nullable=False)'),
        "would fail on live data: 1 row;",
    ),
}


#: MariaDB gives a new NOT NULL column's existing rows the type's implicit default ('') instead
#: of failing (test_predict checks that it is not predicted there and deploys).
FAILS_ON = {"not_null_without_default_on_rows": ("sqlite", "postgresql")}


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=[pytest.mark.backends(*FAILS_ON[name])] if name in FAILS_ON else [])
    for name in FAILURES
])
def test_failures_on_live_data_block_the_gate(tmp_path: Path, db_url: str, name: str) -> None:
    upgrade, detail = FAILURES[name]
    project = build(tmp_path, db_url, Case([("op.create_index('ix_posts_author', 'posts', ['author_id'])",
                                              "op.drop_index('ix_posts_author', 'posts')"),
                                             (upgrade, "pass", 'irreversible = "test"')]))
    before = fingerprint(project)
    report = json.loads(db(project, "predeploy", "--json", code=1).output)
    (live,) = [c for c in report["checks"] if c["name"] == "live data"]
    assert live["level"] == "error" and any(detail in d for d in live["details"]), live
    db(project, "deploy", "--allow-data-loss", code=1)
    assert fingerprint(project) == before  # not even the first step was applied


def test_set_not_null_after_a_backfill_in_the_same_plan_deploys(tmp_path: Path, db_url: str) -> None:
    project = build(tmp_path, db_url, Case([
        ("op.execute(\"UPDATE posts SET title = 'untitled' WHERE title IS NULL\")", "pass", NOOP),
        ('with op.batch_alter_table("posts") as b:\n'
         '    b.alter_column("title", existing_type=sa.String(200), nullable=False)',
         'with op.batch_alter_table("posts") as b:\n'
         '    b.alter_column("title", existing_type=sa.String(200), nullable=True)'),
    ]))
    project.write("blog/models.py", BLOG_MODELS)  # the models say NOT NULL too
    db(project, "predeploy", "--strict")
    db(project, "deploy")
    assert titles(project)[2] == (3, "untitled")


# --- fresh databases: never refused ---------------------------------------------------------------

HISTORY = [
    ('op.create_table("roles", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(50)))\n'
     'op.bulk_insert(sa.table("roles", sa.column("id"), sa.column("name")), '
     '[{"id": 1, "name": "admin"}, {"id": 2, "name": "editor"}, {"id": 3, "name": "guest"}])',
     'op.drop_table("roles")'),
    ('op.execute("UPDATE roles SET name = upper(name)")', "pass", NOOP),
    ('op.execute("DELETE FROM roles WHERE id = 3")', "pass", NOOP),
    ('op.add_column("roles", sa.Column("label", sa.String(50)))\n'
     'op.execute("UPDATE roles SET label = name")\n'
     'op.drop_column("roles", "name")', "pass", 'irreversible = "test"'),
    ('op.rename_table("roles", "groups")\n'
     'op.execute("UPDATE posts SET title = \'x\'")', 'op.rename_table("groups", "roles")'),
    ('op.drop_table("groups")', "pass", 'irreversible = "test"'),
]


def test_a_fresh_database_is_never_refused(tmp_path: Path, db_url: str) -> None:
    """The whole history, with seeds rewritten, deleted, copied and dropped, on an empty
    database: nothing existed before the run, so nothing is refused (and no flag is needed)."""
    project = new_project(tmp_path, db_url)
    project.write("blog/models.py", BLOG_NULLABLE)
    db(project, "init")
    db(project, "makemigrations")
    parent = revision_of(project, "blog", "0001")
    for number, (upgrade, downgrade, *header) in enumerate(HISTORY, start=2):
        revision = f"blog{number:04d}"
        write_migration(project, "blog", f"{number:04d}_history.py", revision, parent, upgrade,
                        downgrade, header=header[0] if header else "")
        parent = revision
    db(project, "predeploy")  # ready; --strict would stop at the two declared barriers
    db(project, "upgrade", "--plan")
    db(project, "upgrade")
    assert "groups" not in project.tables() and "roles" not in project.tables()


def test_a_fresh_database_deploys_the_same_history(tmp_path: Path, db_url: str) -> None:
    project = new_project(tmp_path, db_url)
    project.write("blog/models.py", BLOG_NULLABLE)
    db(project, "init")
    db(project, "makemigrations")
    parent = revision_of(project, "blog", "0001")
    for number, (upgrade, downgrade, *header) in enumerate(HISTORY, start=2):
        revision = f"blog{number:04d}"
        write_migration(project, "blog", f"{number:04d}_history.py", revision, parent, upgrade,
                        downgrade, header=header[0] if header else "")
        parent = revision
    db(project, "deploy")


# --- archives of data migrations keep just the rows they touch ----------------------------------


def test_archives_of_a_delete_and_an_update_restore_only_those_rows(tmp_path: Path, db_url: str) -> None:
    """A DELETE ... WHERE and an UPDATE ... WHERE run with --archive: each archive holds just
    the rows the statement took, so a restore puts those back and leaves later edits alone."""
    project = build(tmp_path, db_url, Case([
        ('op.execute("DELETE FROM posts WHERE id = 2")\n'
         "op.execute(\"UPDATE posts SET title = upper(title) WHERE id = 1\")", "pass",
         'irreversible = "test"'),
    ]))
    ran = db(project, "upgrade", "--archive")
    archived = json.loads(db(project, "archives", "--json").output)
    assert sorted((a["table"], a["column"] or "", a["rows"]) for a in archived) == [
        ("posts", "", 1), ("posts", "title", 1),
    ], ran.output
    project.query_write("UPDATE posts SET title = 'edited later' WHERE id = 3")
    for archive in archived:
        db(project, "restore", archive["name"])
    assert titles(project) == [(1, "short"), (2, "a much longer title"), (3, "edited later")]


ROW_BY_ROW = '''
def normalise_titles():
    """The common data migration: read rows, write each back through the connection."""
    connection = op.get_bind()
    posts = sa.table("posts", sa.column("id"), sa.column("title"))
    rows = connection.execute(sa.select(posts.c.id, posts.c.title)).all()
    connection.execute(
        posts.update().where(posts.c.id == sa.bindparam("key")).values(title=sa.bindparam("value")),
        [{"key": key, "value": (title or "").title()} for key, title in rows],
    )
'''


def test_row_by_row_updates_through_the_connection_are_counted(tmp_path: Path, db_url: str) -> None:
    """An executemany UPDATE sent by code that cannot be read ahead is counted row by row as
    it runs: refused without a flag, archived (one archive of the column) with --archive."""
    project = build(tmp_path, db_url, Case([("normalise_titles()", "pass", ROW_BY_ROW + NOOP)]))
    before = fingerprint(project)
    refused = db(project, "upgrade", code=EXIT_REFUSED)
    assert "counted again as it ran" in refused.output
    assert fingerprint(project) == before
    db(project, "upgrade", "--archive")
    assert titles(project) == [(1, "Short"), (2, "A Much Longer Title"), (3, "")]
    (archive,) = json.loads(db(project, "archives", "--json").output)
    assert (archive["table"], archive["column"], archive["rows"]) == ("posts", "title", 2)


# --- what a user found trying to break it ------------------------------------------------------

COMMENTS_WITH_KEYS = [(COMMENTS_TABLE, 'op.drop_table("comments")')]
SLUGS_BY_HAND = '''
def fill_slugs():
    connection = op.get_bind()
    for key, title in connection.execute(sa.text("SELECT id, title FROM posts")).fetchall():
        connection.execute(sa.text("UPDATE posts SET slug = :s WHERE id = :k"), {"s": f"{title}-{key}", "k": key})
'''
TRIGGER = {
    "sqlite": ("CREATE TRIGGER wipe AFTER UPDATE ON users BEGIN DELETE FROM posts; END",
               "DROP TRIGGER wipe"),
    "postgresql": ("CREATE FUNCTION wipe() RETURNS trigger AS $$ BEGIN DELETE FROM posts; RETURN NEW; END "
                   "$$ LANGUAGE plpgsql; CREATE TRIGGER wipe AFTER UPDATE ON users FOR EACH STATEMENT "
                   "EXECUTE FUNCTION wipe()", "DROP TRIGGER wipe ON users; DROP FUNCTION wipe()"),
    "mysql": ("CREATE TRIGGER wipe AFTER UPDATE ON users FOR EACH ROW DELETE FROM posts", "DROP TRIGGER wipe"),
}

FOUND = {
    # op.get_bind() before a batch on SQLite with keys on: the rebuild must not cascade.
    "unreadable_code_with_a_batch_keeps_the_children": Case(
        COMMENTS_WITH_KEYS + [(
            'op.add_column("posts", sa.Column("slug", sa.String(220)))\nfill_slugs()\n'
            'with op.batch_alter_table("posts") as b:\n'
            '    b.alter_column("slug", existing_type=sa.String(220), nullable=False)',
            'with op.batch_alter_table("posts") as b:\n    b.drop_column("slug")', SLUGS_BY_HAND)],
        applied=1, rows=COMMENT_ROWS, foreign_keys_on=True, backends=("sqlite",),
        after=comments_survive,
    ),
    "raw_alter_type_using_rewrites_values": Case(
        [("op.execute(\"ALTER TABLE posts ALTER COLUMN title TYPE varchar(4) USING left(title, 4)\")",
          "pass", 'irreversible = "test"')],
        backends=("postgresql",), lost=[("posts.title", "2 values")],
    ),
    "postgresql_using_rewrites_values": Case(
        [('op.alter_column("posts", "title", type_=sa.String(200), existing_type=sa.String(200), '
          'postgresql_using="upper(title)")', "pass", 'irreversible = "test"')],
        backends=("postgresql",), lost=[("posts.title", "2 values")],
    ),
    "sqlite_batch_conversion_to_integer": Case(
        [('with op.batch_alter_table("posts") as b:\n'
          '    b.alter_column("title", type_=sa.Integer(), existing_type=sa.String(200))',
          "pass", 'irreversible = "test"')],
        backends=("sqlite",), lost=[("posts.title", "2 values")],
    ),
    "split_out_column_then_drop_is_safe": Case(
        [('op.create_table("titles", sa.Column("post_id", sa.Integer), sa.Column("text", sa.String(200)))\n'
          'op.execute("INSERT INTO titles (post_id, text) SELECT id, title FROM posts WHERE title IS NOT NULL")\n'
          'op.drop_column("posts", "title")', "pass", 'irreversible = "test"')],
        after=expect("SELECT count(*) FROM titles", [(2,)]),
    ),
    "set_a_column_to_itself_is_safe": Case(
        [('op.execute("UPDATE posts SET title = title")', "pass", NOOP)],
    ),
}


@pytest.mark.parametrize("name", on_their_backends(FOUND))
def test_what_a_user_found(tmp_path: Path, db_url: str, name: str) -> None:
    check(tmp_path, db_url, FOUND[name])


@pytest.mark.parametrize(
    "how", ["trigger", "raw_cursor", pytest.param("function", marks=pytest.mark.backends("postgresql"))]
)
def test_rows_changed_behind_the_statements_are_refused(tmp_path: Path, db_url: str, how: str) -> None:
    """A trigger the migration creates, a raw DB-API cursor, a function: rows change without a
    statement that says so; the step is rolled back and refused (exit 6)."""
    backend = sa.make_url(db_url).get_backend_name()
    create, _drop = TRIGGER[backend]
    upgrade = {
        "trigger": f'op.execute("""{create}""")\n'
                   'op.execute("UPDATE users SET email = email WHERE id = 1")',
        "raw_cursor": 'cursor = op.get_bind().connection.cursor()\n'
                      'cursor.execute("DELETE FROM posts WHERE author_id = 1")\ncursor.close()',
        "function": 'op.execute("CREATE FUNCTION purge() RETURNS void AS $$ DELETE FROM posts $$ '
                    'LANGUAGE sql")\nop.execute("SELECT purge()")',
    }[how]
    project = build(tmp_path, db_url, Case([(upgrade, "pass", 'irreversible = "test"')]))
    refused = db(project, "upgrade", code=EXIT_REFUSED)
    errors = [line for line in refused.output.splitlines() if line.startswith("Error:")]
    if how == "raw_cursor" and backend == "mysql":
        # MariaDB commits DDL a raw cursor may send at once: the step is refused before it runs
        assert len(errors) == 1 and "cannot be checked for data loss" in errors[0], errors
        assert rows_of(project, "SELECT count(*) FROM posts") == [(3,)]
        return
    assert len(errors) == 1 and "counted again as it ran" in errors[0], errors
    # MariaDB's session counters say how many rows changed, not where.
    table = "an unknown table" if backend == "mysql" else "posts"
    assert f"of {table} deleted by something no statement of this step says" in errors[0]
    assert rows_of(project, "SELECT count(*) FROM posts") == [(3,)]


def test_archive_of_a_statement_with_percent_signs(tmp_path: Path, db_url: str) -> None:
    project = build(tmp_path, db_url, Case([
        ('op.execute("DELETE FROM posts WHERE title LIKE \'a%\'")', "pass", 'irreversible = "test"'),
    ]))
    db(project, "upgrade", "--archive")
    (archive,) = json.loads(db(project, "archives", "--json").output)
    assert archive["rows"] == 1
    db(project, "restore", archive["name"])
    assert rows_of(project, "SELECT count(*) FROM posts") == [(3,)]


def test_strict_deploy_with_archive_and_json_answers(tmp_path: Path, db_url: str) -> None:
    """Data at risk blocks a --strict deploy only until the deploy says what to do with it;
    a refused deploy still answers --json on stdout."""
    project = build(tmp_path, db_url, Case([('op.drop_column("posts", "title")', 'op.add_column('
                                             '"posts", sa.Column("title", sa.String(200)))')]))
    project.write("blog/models.py", BLOG_NULLABLE.replace(
        "    title: Mapped[str | None] = mapped_column(db.String(200))\n", ""))
    refused = db(project, "deploy", "--json", code=EXIT_REFUSED)
    answer = json.loads(refused.stdout)
    assert answer["ok"] is False and answer["exit_code"] == EXIT_REFUSED
    assert "deploy would destroy existing data" in answer["error"]
    assert answer["data_at_risk"][0]["object"] == "posts.title"
    db(project, "deploy", "--strict", code=1)
    deployed = json.loads(db(project, "deploy", "--strict", "--archive", "--json").stdout)
    (risk,) = [c for c in deployed["report"]["checks"] if c["name"] == "data at risk"]
    assert risk["level"] == "ok" and "accepted with --archive" in risk["message"]
    db(project, "rollback", "--yes", "--archive")


def test_no_rehearsal_is_a_warning(tmp_path: Path, db_url: str) -> None:
    project = build(tmp_path, db_url, Case([("op.create_index('ix_posts_author', 'posts', ['author_id'])",
                                             "op.drop_index('ix_posts_author', 'posts')")]))
    report = json.loads(db(project, "predeploy", "--no-rehearsal", "--json").output)
    (rehearsal,) = [c for c in report["checks"] if c["name"] == "rehearsal"]
    assert rehearsal["level"] == "warning" and "--no-rehearsal" in rehearsal["message"]
    db(project, "predeploy", "--no-rehearsal", "--strict", code=1)
    db(project, "deploy", "--no-rehearsal")


def test_a_cascade_from_a_table_the_run_created_is_caught(tmp_path: Path, db_url: str) -> None:
    """Deleting from a table this step created cascades into rows that existed: nothing could
    count that ahead, the rows changed are seen after the step and it is refused."""
    project = build(tmp_path, db_url, Case([(
        'op.create_table("categories", sa.Column("id", sa.Integer, primary_key=True))\n'
        'op.execute("INSERT INTO categories (id) VALUES (1)")\n'
        'op.execute("ALTER TABLE posts ADD COLUMN category_id INTEGER REFERENCES categories (id) '
        'ON DELETE CASCADE")\n'
        'op.execute("UPDATE posts SET category_id = 1")\n'
        'op.execute("DELETE FROM categories")', "pass", 'irreversible = "test"')],
        foreign_keys_on=True))
    db(project, "upgrade", code=EXIT_REFUSED)
    assert rows_of(project, "SELECT count(*) FROM posts") == [(3,)]


def test_an_update_that_only_fills_nulls_through_coalesce_is_safe(tmp_path: Path, db_url: str) -> None:
    project = build(tmp_path, db_url, Case([
        ("op.execute(\"UPDATE posts SET title = COALESCE(title, 'untitled')\")", "pass", NOOP),
    ]))
    db(project, "upgrade")
    assert titles(project) == [(1, "short"), (2, "a much longer title"), (3, "untitled")]


def test_an_executemany_update_through_the_connection_is_counted(tmp_path: Path, db_url: str) -> None:
    project = build(tmp_path, db_url, Case([(
        'op.get_bind().execute(sa.text("UPDATE posts SET title = :t WHERE id = :id"), '
        '[{"id": 1, "t": "x"}, {"id": 2, "t": "y"}])', "pass", NOOP)]))
    db(project, "upgrade", code=EXIT_REFUSED)
    assert titles(project)[:2] == [(1, "short"), (2, "a much longer title")]
