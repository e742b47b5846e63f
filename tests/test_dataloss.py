"""Never lose data on rollback (issue 5): ``upgrade``, ``downgrade``, ``rollback`` and ``deploy``
count on the live database what their destructive steps would lose and refuse before touching
anything; ``--allow-data-loss`` runs anyway; ``--archive`` keeps a copy that ``restore`` writes
back; ``predeploy`` reports the data at risk.

Real projects on real SQLite and PostgreSQL databases; every assertion is on what a user sees:
exit codes, the "Data at risk" table and error lines, the schema, the rows, the archives.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result

from flask_rollback.errors import EXIT_REFUSED as REFUSED
from tests.projects import (
    BLOG_MODELS, Project, fingerprint, new_project, revision_of, write_migration,
)

#: blog.Post with a nullable title, so "non-NULL values" differ from rows.
BLOG_NULLABLE_TITLE = BLOG_MODELS.replace("title: Mapped[str]", "title: Mapped[str | None]")
#: Deploy 2 of the round trips: posts gains a tags column ...
BLOG_WITH_TAGS = BLOG_NULLABLE_TITLE + "    tags: Mapped[str | None] = mapped_column(db.String(100))\n"
#: ... or blog gains a comments table.
BLOG_WITH_COMMENTS = BLOG_NULLABLE_TITLE + '''

class Comment(db.Model):
    __tablename__ = "comments"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(db.String(200))
    post_id: Mapped[int] = mapped_column(db.ForeignKey("posts.id"))
'''

USERS = "INSERT INTO users (id, email) VALUES (1, 'ann@example.com'), (2, 'bob@example.com')"
POSTS = (
    "INSERT INTO posts (id, title, author_id) VALUES "
    "(1, 'short', 1), (2, 'a much longer title', 1), (3, NULL, 2)"
)


# -- running and observing ----------------------------------------------------------------------


def db(project: Project, *args: str, code: int = 0) -> Result:
    """``flask db ARGS`` in-process; it must exit with ``code`` and never escape an exception."""
    result = project.db(*args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"flask db {' '.join(args)} raised:\n{result.output}") from result.exception
    assert result.exit_code == code, f"flask db {' '.join(args)} -> {result.exit_code}:\n{result.output}"
    assert "Traceback" not in result.output
    return result


def error_lines(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("Error:")]


def risk_rows(text: str) -> list[list[str]]:
    """The rows of the "Data at risk:" table (header excluded), split into their columns
    (migration, app, object, lost, operation)."""
    lines = text.splitlines()
    assert "Data at risk:" in lines, text
    start = lines.index("Data at risk:") + 1
    header = lines[start]
    assert header.split() == ["migration", "app", "object", "lost", "operation"], text
    # Column starts from the header; the migration column holds "+ label"/"- label".
    starts = [header.index(word) for word in ("migration", "app", "object", "lost", "operation")]
    rows = []
    for line in lines[start + 1:]:
        if not line.startswith("  ") or line.startswith("  (") or not line.strip():
            break
        cells = [line[a:b].strip() for a, b in zip(starts, starts[1:] + [len(line)])]
        rows.append(cells)
    return rows



def label_of(project: Project, app: str, number: str) -> str:
    (path,) = (project.migrations / app).glob(f"{number}_*.py")
    return f"{app}.{path.stem}"




def columns(project: Project, table: str) -> list[str]:
    engine = project.engine()
    try:
        return [c["name"] for c in sa.inspect(engine).get_columns(table)]
    finally:
        engine.dispose()


def archive_tables(project: Project) -> set[str]:
    return {t for t in project.tables() if t.startswith("rollback_archives")}


def archives(project: Project) -> list[dict[str, Any]]:
    return json.loads(db(project, "archives", "--json").output)


def blog_project(tmp_path: Path, url: str, blog_models: str = BLOG_NULLABLE_TITLE) -> Project:
    """accounts + blog (nullable post titles), initial migrations applied, 2 users, 3 posts."""
    project = new_project(tmp_path, url)
    project.write("blog/models.py", blog_models)
    db(project, "init")
    db(project, "makemigrations")
    db(project, "upgrade")
    project.query_write(USERS, POSTS)
    return project


# -- 1 + 2. every destructive kind is counted, refused, and the database left as it was --------

KINDS = {
    # name: (upgrade body, object, lost)
    "drop_table": ('op.drop_table("posts")', "posts", "3 rows"),
    "drop_column": ('op.drop_column("posts", "title")', "posts.title", "2 values"),
    "batch_drop_column": (
        'with op.batch_alter_table("posts") as batch:\n    batch.drop_column("title")',
        "posts.title", "2 values",
    ),
    "narrowing": (
        'op.alter_column("posts", "title", type_=sa.String(5), existing_type=sa.String(200))',
        "posts.title", "1 value",
    ),
    "delete_all": ('op.execute("DELETE FROM posts")', "posts", "3 rows"),
    "delete_where": ('op.execute("DELETE FROM posts WHERE author_id = 1")', "posts", "2 rows"),
    "update": ("op.execute(\"UPDATE posts SET title = 'x'\")", "posts.title", "2 values"),
    "upsert": (
        "op.execute(\"INSERT INTO posts (id, title, author_id) VALUES (1, 'x', 1) \"\n"
        "           \"ON CONFLICT (id) DO UPDATE SET title = excluded.title\")",
        "posts", "1 row",
    ),
    "upsert_of_a_query": (
        "op.execute(\"INSERT INTO posts (id, title, author_id) SELECT 1, 'x', 1 WHERE true \"\n"
        "           \"ON CONFLICT (id) DO UPDATE SET title = excluded.title\")",
        "posts", "unknown",
    ),
    "truncate": ('op.execute("TRUNCATE posts")', "posts", "3 rows"),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_destructive_kind_is_counted_and_refused_untouched(
    tmp_path: Path, db_url: str, kind: str
) -> None:
    upgrade, what, lost = KINDS[kind]
    if kind == "upsert" and db_url.startswith("mysql"):
        lost = "unknown"  # ON CONFLICT is PostgreSQL's: a statement not understood is not counted
    project = blog_project(tmp_path, db_url)
    write_migration(project, "blog", "0002_destroy.py", "blog0002", revision_of(project, "blog", "0001"), upgrade)
    before = fingerprint(project)

    refused = db(project, "upgrade", code=REFUSED)
    assert refused.stdout == ""
    (row,) = risk_rows(refused.stderr)
    assert row[:4] == ["+ blog.0002_destroy", "blog", what, lost]
    assert row[4]  # the operation's reason
    (error,) = error_lines(refused)
    assert "would destroy existing data" in error and "nothing was run" in error
    assert "--archive" in error and "--allow-data-loss" in error
    assert fingerprint(project) == before
    if lost == "unknown":  # what a statement touches is not known up front: nothing to archive
        unarchivable = db(project, "upgrade", "--archive", code=REFUSED)
        (error,) = error_lines(unarchivable)
        assert "cannot archive" in error and "not known before it runs" in error
        assert "--allow-data-loss" in error
        assert fingerprint(project) == before

    # --plan shows the same table (on stdout) and applies nothing.
    planned = db(project, "upgrade", "--plan")
    assert risk_rows(planned.stdout) == [row]
    assert fingerprint(project) == before


#: tags with a primary key and a unique code, tag_uses pointing at them ON DELETE CASCADE.
TAGS = (
    'op.create_table("tags", sa.Column("id", sa.Integer, primary_key=True), '
    'sa.Column("code", sa.String(20), nullable=False, unique=True), sa.Column("name", sa.String(20)))\n'
    'op.create_table("tag_uses", sa.Column("id", sa.Integer, primary_key=True), '
    'sa.Column("tag_id", sa.Integer, sa.ForeignKey("tags.id", ondelete="CASCADE")))'
)
TAG_ROWS = (
    "INSERT INTO tags (id, code, name) VALUES (1, 'a', 'A'), (2, 'b', 'B'), (3, 'c', 'C')",
    "INSERT INTO tag_uses (id, tag_id) VALUES (1, 1), (2, 1), (3, 3)",
)

#: statement -> (objects at risk by backend, tags after it ran): rows sharing any unique key
#: with a new row are overwritten (ON DUPLICATE KEY UPDATE) or deleted (REPLACE, with what
#: their foreign keys cascade to; SQLite enforces no foreign key here).
ANY_KEY_UPSERTS = {
    "on_duplicate_key": (
        ("INSERT INTO tags (code, name) VALUES ('a', 'x'), ('B', 'y'), ('z', 'new') "
         "ON DUPLICATE KEY UPDATE name = VALUES(name)"),
        {"mysql": [["tags", "2 rows"]]},  # 'B' is 'b' under MariaDB's case-insensitive collation
        [(1, "a", "x"), (2, "b", "y"), (3, "c", "C"), (4, "z", "new")],
    ),
    "replace_by_either_key": (
        "REPLACE INTO tags (id, code, name) VALUES (1, 'b', 'x')",
        {"mysql": [["tags", "2 rows"], ["tag_uses", "2 rows"]], "sqlite": [["tags", "2 rows"]]},
        [(1, "b", "x"), (3, "c", "C")],
    ),
    "replace_of_new_rows_only": (
        "REPLACE INTO tags (code, name) VALUES ('z', 'new')",  # the id is a new auto-increment
        {"mysql": [], "sqlite": []},
        [(1, "a", "A"), (2, "b", "B"), (3, "c", "C"), (4, "z", "new")],
    ),
}


@pytest.mark.parametrize("case", [
    pytest.param(name, marks=pytest.mark.backends(*({"mysql": "mariadb"}.get(b, b) for b in risks)))
    for name, (_, risks, _) in ANY_KEY_UPSERTS.items()
])
def test_upserts_on_any_unique_key_count_the_rows_they_replace(
    tmp_path: Path, db_url: str, case: str
) -> None:
    """MariaDB's ON DUPLICATE KEY UPDATE and REPLACE (SQLite's REPLACE too), counted exactly
    before they run: refused without a flag; with one, they do what was counted (the run-time
    count of the guard agrees)."""
    statement, risks, after = ANY_KEY_UPSERTS[case]
    expected = risks[sa.make_url(db_url).get_backend_name()]
    project = blog_project(tmp_path, db_url)
    write_migration(project, "blog", "0002_tags.py", "blog0002", revision_of(project, "blog", "0001"),
                    TAGS, 'op.drop_table("tag_uses")\nop.drop_table("tags")')
    db(project, "upgrade")
    project.query_write(*TAG_ROWS)
    write_migration(project, "blog", "0003_upsert.py", "blog0003", "blog0002", f"op.execute({statement!r})")
    if expected:
        before = fingerprint(project)
        refused = db(project, "upgrade", code=REFUSED)
        assert [row[2:4] for row in risk_rows(refused.stderr)] == expected
        assert fingerprint(project) == before
    db(project, "upgrade", "--allow-data-loss")
    assert project.query("SELECT id, code, name FROM tags ORDER BY id") == after


def test_refusal_is_split_stdout_stderr_in_the_real_cli(tmp_path: Path, db_url: str) -> None:
    project = blog_project(tmp_path, db_url)
    write_migration(
        project, "blog", "0002_destroy.py", "blog0002", revision_of(project, "blog", "0001"),
        'op.drop_table("posts")\nop.execute("DELETE FROM users WHERE id = 2")',
    )
    before = fingerprint(project)
    run = project.run("upgrade")
    assert run.returncode == REFUSED, (run.stdout, run.stderr)
    assert "Data at risk" not in run.stdout and "Error" not in run.stdout
    rows = risk_rows(run.stderr)
    assert [row[:4] for row in rows] == [
        ["+ blog.0002_destroy", "blog", "posts", "3 rows"],
        ["+ blog.0002_destroy", "blog", "users", "1 row"],
    ]
    errors = [line for line in run.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "would destroy existing data in 2 places" in errors[0]
    assert "Traceback" not in run.stderr
    assert fingerprint(project) == before


# -- 3. no false alarms ---------------------------------------------------------------------------


def test_adding_and_dropping_what_holds_no_data_is_not_refused(tmp_path: Path, db_url: str) -> None:
    project = blog_project(tmp_path, db_url)
    blog_1 = revision_of(project, "blog", "0001")
    write_migration(
        project, "blog", "0002_add.py", "blog0002", blog_1,
        """
        op.add_column("posts", sa.Column("summary", sa.String(300), nullable=True))
        op.create_table("tags", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(20)))
        op.create_index("ix_posts_title", "posts", ["title"])
        """,
        """
        op.drop_index("ix_posts_title", table_name="posts")
        op.drop_table("tags")
        with op.batch_alter_table("posts") as batch:
            batch.drop_column("summary")
        """,
    )
    write_migration(
        project, "blog", "0003_drop_empty.py", "blog0003", "blog0002",
        """
        op.drop_table("tags")
        with op.batch_alter_table("posts") as batch:
            batch.drop_column("summary")
        """,
        """
        op.create_table("tags", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(20)))
        op.add_column("posts", sa.Column("summary", sa.String(300), nullable=True))
        """,
    )
    # Add-only, with data in posts: nothing at risk, nothing refused.
    added = db(project, "upgrade", "blog@+1")
    assert "Data at risk" not in added.output and "Warning" not in added.output
    assert "summary" in columns(project, "posts") and "tags" in project.tables()

    # Dropping an empty table and an all-NULL column: shown as 0 in --plan, then run.
    planned = db(project, "upgrade", "--plan")
    assert [row[2:4] for row in risk_rows(planned.output)] == [["tags", "0 rows"], ["posts.summary", "0 values"]]
    dropped = db(project, "upgrade")
    assert "Data at risk" not in dropped.output and "Archived" not in dropped.output
    assert "tags" not in project.tables() and "summary" not in columns(project, "posts")

    # Downgrades: recreate (safe), then drop an index, an empty table and an all-NULL column.
    db(project, "downgrade")
    reverted = db(project, "downgrade")
    assert "Data at risk" not in reverted.output
    assert "tags" not in project.tables() and columns(project, "posts") == ["id", "title", "author_id"]
    assert project.query("SELECT count(*) FROM posts") == [(3,)]
    assert archive_tables(project) == set()


# -- 4. archive, roll back, re-upgrade, restore: exactly the original rows -----------------------


def two_deploys(tmp_path: Path, url: str, deploy_2_models: str) -> Project:
    """Deploy 1: accounts + blog with 2 users, 3 posts; deploy 2: blog models ``deploy_2_models``."""
    project = new_project(tmp_path, url)
    project.write("blog/models.py", BLOG_NULLABLE_TITLE)
    db(project, "init")
    db(project, "makemigrations")
    db(project, "deploy", "--label", "v1")
    project.query_write(USERS, POSTS)
    project.write("blog/models.py", deploy_2_models)
    db(project, "makemigrations")
    gate = json.loads(db(project, "predeploy", "--json").output)
    (check,) = [c for c in gate["checks"] if c["name"] == "data at risk"]
    assert check["level"] == "ok", check
    assert "--archive" in check["message"]  # what rolling back would drop, and how to keep it
    assert check["details"] and all(d.startswith("rolling back blog.0002_") for d in check["details"])
    db(project, "deploy", "--label", "v2")
    return project


def test_column_archive_round_trip(tmp_path: Path, db_url: str) -> None:
    project = two_deploys(tmp_path, db_url, BLOG_WITH_TAGS)
    label, revision = label_of(project, "blog", "0002"), revision_of(project, "blog", "0002")
    project.query_write("UPDATE posts SET tags = 'news' WHERE id = 1", "UPDATE posts SET tags = 'a,b' WHERE id = 3")
    original = project.query("SELECT id, title, author_id, tags FROM posts ORDER BY id")
    before = fingerprint(project)

    planned = db(project, "rollback", "--plan")
    assert [row[:4] for row in risk_rows(planned.output)] == [[f"- {label}", "blog", "posts.tags", "2 values"]]
    refused = db(project, "rollback", "--yes", code=REFUSED)
    assert [row[:4] for row in risk_rows(refused.stderr)] == [[f"- {label}", "blog", "posts.tags", "2 values"]]
    assert "would destroy existing data" in error_lines(refused)[0]
    assert fingerprint(project) == before

    name = f"rollback_archives_{revision}_posts__tags"
    rolled = project.run("rollback", "--yes", "--archive")  # the real CLI: stdout only
    assert rolled.returncode == 0, (rolled.stdout, rolled.stderr)
    assert f"Archived posts.tags into {name} before {label}." in rolled.stdout
    assert f"'flask db restore {name}' writes it all back." in rolled.stdout
    assert "Rolled back deploy 2: reverted 1 migration." in rolled.stdout
    assert "Error" not in rolled.stderr and "Warning" not in rolled.stderr
    assert "tags" not in columns(project, "posts")
    (record,) = archives(project)
    assert (record["name"], record["table"], record["column"], record["rows"], record["direction"]) == (
        name, "posts", "tags", 2, "down")

    # Restoring before the column exists again: refused, the archive kept.
    early = db(project, "restore", name, code=1)
    assert "columns no longer match" in error_lines(early)[0] and "tags" in error_lines(early)[0]
    assert [a["name"] for a in archives(project)] == [name]
    unknown = db(project, "restore", "rollback_archives_nope", code=1)
    assert "no archive named 'rollback_archives_nope'" in error_lines(unknown)[0]
    assert name in error_lines(unknown)[0]

    # Redeploy with the archive still there: the gate (drift, rehearsal) and check ignore it.
    db(project, "deploy", "--label", "v3")
    db(project, "check")
    assert project.query("SELECT count(*) FROM posts WHERE tags IS NOT NULL") == [(0,)]
    restored = db(project, "restore", name)
    assert f"Restored posts.tags from {name}: 2 rows updated, 0 inserted." in restored.output
    assert f"Dropped archive {name}." in restored.output
    assert project.query("SELECT id, title, author_id, tags FROM posts ORDER BY id") == original
    assert archives(project) == []
    assert archive_tables(project) == {"rollback_archives"}  # only the (empty) registry


def test_whole_table_archive_round_trip(tmp_path: Path, db_url: str) -> None:
    project = two_deploys(tmp_path, db_url, BLOG_WITH_COMMENTS)
    label, revision = label_of(project, "blog", "0002"), revision_of(project, "blog", "0002")
    project.query_write(
        "INSERT INTO comments (id, body, post_id) VALUES (1, 'first!', 1), (2, 'me too', 1), (7, 'late', 3)"
    )
    original = project.query("SELECT id, body, post_id FROM comments ORDER BY id")
    before = fingerprint(project)

    refused = db(project, "rollback", "--yes", code=REFUSED)
    assert [row[:4] for row in risk_rows(refused.stderr)] == [[f"- {label}", "blog", "comments", "3 rows"]]
    assert fingerprint(project) == before

    rolled = db(project, "rollback", "--yes", "--archive")
    name = f"rollback_archives_{revision}_comments"
    assert f"Archived comments into {name} before {label}" in rolled.stdout
    assert "comments" not in project.tables()
    assert project.query(f"SELECT id, body, post_id FROM {name} ORDER BY id") == original

    early = db(project, "restore", name, code=1)
    assert "table comments does not exist" in error_lines(early)[0]

    db(project, "upgrade")
    restored = db(project, "restore", name)
    assert f"Restored comments from {name}: 0 rows updated, 3 inserted." in restored.output
    assert project.query("SELECT id, body, post_id FROM comments ORDER BY id") == original
    assert archives(project) == [] and name not in project.tables()
    # The application's next insert (no explicit id) must not collide with restored ids.
    project.query_write("INSERT INTO comments (body, post_id) VALUES ('after restore', 2)")
    assert project.query("SELECT id FROM comments WHERE body = 'after restore'") == [(8,)]


def test_restore_keeps_a_column_archive_whose_rows_are_partly_gone(tmp_path: Path, db_url: str) -> None:
    project = blog_project(tmp_path, db_url)
    write_migration(
        project, "blog", "0002_drop_title.py", "blog0002", revision_of(project, "blog", "0001"),
        'op.drop_column("posts", "title")',
        'op.add_column("posts", sa.Column("title", sa.String(200), nullable=True))',
    )
    db(project, "upgrade", "--archive")
    name = "rollback_archives_blog0002_posts__title"
    assert project.query(f"SELECT id, title FROM {name} ORDER BY id") == [(1, "short"), (2, "a much longer title")]
    db(project, "downgrade")
    project.query_write("DELETE FROM posts WHERE id = 2")
    restored = db(project, "restore", name)
    assert "1 row updated, 0 inserted." in restored.stdout
    assert "Warning: 1 archived row found no row with the same key" in restored.stderr
    assert project.query("SELECT id, title FROM posts ORDER BY id") == [(1, "short"), (3, None)]
    assert [a["name"] for a in archives(project)] == [name]


def test_a_narrowing_counts_the_values_it_changes(tmp_path: Path, db_url: str) -> None:
    """Characters, not bytes ('äöü' fits in 3); the fractions a lower scale rounds away
    (1.2300 keeps its value)."""
    project = blog_project(tmp_path, db_url)
    write_migration(
        project, "blog", "0002_prices.py", "blog0002", revision_of(project, "blog", "0001"),
        'op.create_table("prices", sa.Column("id", sa.Integer, primary_key=True), '
        'sa.Column("amount", sa.Numeric(10, 4)), sa.Column("label", sa.String(20)))',
        'op.drop_table("prices")',
    )
    db(project, "upgrade")
    project.query_write(
        "INSERT INTO prices (id, amount, label) VALUES (1, 1.2345, 'äöü'), (2, 1.23, 'abcd'), "
        "(3, 12345.5, 'ab'), (4, NULL, NULL)"
    )
    write_migration(
        project, "blog", "0003_narrow.py", "blog0003", "blog0002",
        'with op.batch_alter_table("prices") as batch:\n'
        '    batch.alter_column("amount", type_=sa.Numeric(10, 2), existing_type=sa.Numeric(10, 4))\n'
        '    batch.alter_column("label", type_=sa.String(3), existing_type=sa.String(20))',
    )
    before = fingerprint(project)
    refused = db(project, "upgrade", code=REFUSED)
    assert [row[2:4] for row in risk_rows(refused.stderr)] == [
        ["prices.amount", "1 value"], ["prices.label", "1 value"],
    ]
    assert fingerprint(project) == before


def test_narrowed_values_are_archived_and_restored_after_widening(tmp_path: Path, pg_url: str) -> None:
    project = blog_project(tmp_path, pg_url)
    write_migration(
        project, "blog", "0002_narrow.py", "blog0002", revision_of(project, "blog", "0001"),
        'op.alter_column("posts", "title", type_=sa.String(5), existing_type=sa.String(200), '
        'postgresql_using="left(title, 5)")',
        'op.alter_column("posts", "title", type_=sa.String(200), existing_type=sa.String(5))',
    )
    original = project.query("SELECT id, title FROM posts ORDER BY id")
    refused = db(project, "upgrade", code=REFUSED)
    assert [row[2:4] for row in risk_rows(refused.stderr)] == [["posts.title", "1 value"]]

    db(project, "upgrade", "--archive")
    assert project.query("SELECT id, title FROM posts ORDER BY id") == [(1, "short"), (2, "a muc"), (3, None)]
    name = "rollback_archives_blog0002_posts__title"
    (record,) = archives(project)
    assert (record["name"], record["rows"], record["direction"]) == (name, 2, "up")  # every non-NULL value

    widened = db(project, "downgrade")  # widening loses nothing
    assert "Data at risk" not in widened.output
    assert "2 rows updated, 0 inserted." in db(project, "restore", name).output
    assert project.query("SELECT id, title FROM posts ORDER BY id") == original


def test_an_archive_lives_and_dies_with_its_step(tmp_path: Path, db_url: str) -> None:
    project = blog_project(tmp_path, db_url)
    write_migration(
        project, "blog", "0002_fails.py", "blog0002", revision_of(project, "blog", "0001"),
        'op.drop_column("posts", "title")\nop.execute("INSERT INTO no_such_table VALUES (1)")',
    )
    failed = db(project, "upgrade", "--archive", code=1)
    assert "migration blog.0002_fails (up) failed" in error_lines(failed)[0]
    assert "Archived" not in failed.output
    if db_url.startswith("mysql"):
        # MariaDB committed the archive and the DROP COLUMN as they ran: the title values are in
        # the archive, and the error says the step is partly applied and lists what ran.
        (error,) = error_lines(failed)
        assert "PARTLY APPLIED" in error and "DROP COLUMN title" in error, error
        assert "title" not in columns(project, "posts")
        assert [row["column"] for row in archives(project)] == ["title"]
        return
    assert archives(project) == [] and archive_tables(project) == {"rollback_archives"}
    assert "title" in columns(project, "posts")
    assert project.query("SELECT count(*) FROM posts WHERE title IS NOT NULL") == [(2,)]


# -- 5. --allow-data-loss, ROLLBACK_ARCHIVE, archives --json / --drop ---------------------------


def test_allow_data_loss_really_drops(tmp_path: Path, db_url: str) -> None:
    project = blog_project(tmp_path, db_url)
    write_migration(
        project, "blog", "0002_drop.py", "blog0002", revision_of(project, "blog", "0001"),
        'op.drop_column("posts", "title")\nop.execute("DELETE FROM users WHERE id = 2 AND 1 = 0")',
    )
    before = fingerprint(project)
    db(project, "upgrade", "--allow-data-loss")
    assert fingerprint(project) != before
    assert columns(project, "posts") == ["id", "author_id"]
    assert project.query("SELECT count(*) FROM posts") == [(3,)]
    assert archive_tables(project) == set()
    assert db(project, "archives").output.strip() == "No archives."


def test_archive_setting_is_the_default_and_no_archive_overrides(tmp_path: Path, db_url: str) -> None:
    project = blog_project(tmp_path, db_url)
    project.set_factory(["accounts", "blog"], config={"ROLLBACK_ARCHIVE": True})
    write_migration(
        project, "blog", "0002_drop_title.py", "blog0002", revision_of(project, "blog", "0001"),
        'op.drop_column("posts", "title")',
        'op.add_column("posts", sa.Column("title", sa.String(200), nullable=True))',
    )
    before = fingerprint(project)
    refused = db(project, "upgrade", "--no-archive", code=REFUSED)
    assert [row[2:4] for row in risk_rows(refused.stderr)] == [["posts.title", "2 values"]]
    assert fingerprint(project) == before

    name = "rollback_archives_blog0002_posts__title"
    ran = db(project, "upgrade")
    assert f"Archived posts.title into {name} before blog.0002_drop_title." in ran.stdout
    assert f"'flask db restore {name}' writes it all back." in ran.stdout
    assert "title" not in columns(project, "posts")
    assert project.query(f"SELECT id, title FROM {name} ORDER BY id") == [(1, "short"), (2, "a much longer title")]

    (record,) = archives(project)
    created = record.pop("created_at")
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", created)
    assert record == {
        "name": name, "app": "blog", "migration": "blog.0002_drop_title", "revision": "blog0002",
        "direction": "up", "table": "posts", "column": "title", "key": ["id"], "rows": 2,
    }
    listed = db(project, "archives").output
    assert listed.splitlines()[1].split()[:5] == [name, "posts.title", "2", "blog.0002_drop_title", "up"]

    missing = db(project, "archives", "--drop", "rollback_archives_nope", code=1)
    assert "no archive named 'rollback_archives_nope'" in error_lines(missing)[0]
    dropped = db(project, "archives", "--drop", name)
    assert dropped.output.strip() == f"Dropped archive {name} (2 rows of posts.title)."
    assert archives(project) == [] and archive_tables(project) == {"rollback_archives"}
    assert "there are none" in error_lines(db(project, "restore", name, code=1))[0]


# -- 6. what cannot be archived or analysed ------------------------------------------------------


def test_a_table_without_primary_key_cannot_be_archived(tmp_path: Path, db_url: str) -> None:
    project = blog_project(tmp_path, db_url)
    write_migration(
        project, "blog", "0002_notes.py", "blog0002", revision_of(project, "blog", "0001"),
        'op.create_table("notes", sa.Column("body", sa.String(50)))',
        'op.drop_table("notes")',
    )
    db(project, "upgrade")
    project.query_write("INSERT INTO notes (body) VALUES ('keep me'), ('me too')")
    write_migration(
        project, "blog", "0003_drop_notes.py", "blog0003", "blog0002",
        'op.drop_table("notes")\nop.drop_column("posts", "title")',
    )
    before = fingerprint(project)
    refused = db(project, "upgrade", "--archive", code=REFUSED)
    (error,) = error_lines(refused)
    assert "cannot archive notes" in error and "no primary key" in error and "--allow-data-loss" in error
    assert fingerprint(project) == before

    # Both flags: what can be archived is, the rest is lost as allowed.
    ran = db(project, "upgrade", "--archive", "--allow-data-loss")
    assert "Archived posts.title into rollback_archives_blog0003_posts__title" in ran.output
    assert "Archived notes" not in ran.output
    assert "notes" not in project.tables()
    assert [a["table"] for a in archives(project)] == ["posts"]


def test_code_that_cannot_be_read_is_counted_as_it_runs(tmp_path: Path, db_url: str) -> None:
    """``op.get_bind()`` code cannot be read ahead: the gate says it will be checked as it
    runs (no warning, --strict passes), and the run reads each statement before it reaches the
    database: an UPDATE that overwrites existing titles is refused there and rolled back."""
    project = blog_project(tmp_path, db_url)
    write_migration(
        project, "blog", "0002_by_hand.py", "blog0002", revision_of(project, "blog", "0001"),
        'op.get_bind().exec_driver_sql("UPDATE posts SET title = upper(title)")',
        'op.get_bind().exec_driver_sql("UPDATE posts SET title = lower(title)")',
    )
    gate = json.loads(db(project, "predeploy", "--json").output)
    (check,) = [c for c in gate["checks"] if c["name"] == "data at risk"]
    if db_url.startswith("mysql"):  # no transactional DDL: a partial step would stay, so it warns
        assert check["level"] == "warning", check
        assert "a partial step cannot be rolled back on this database" in check["message"]
    else:
        assert check["level"] == "ok", check
        db(project, "predeploy", "--strict")
    assert any("blog.0002_by_hand" in d and "op.get_bind()" in d and "checked as it runs" in d
               for d in check["details"]), check

    before = fingerprint(project)
    refused = db(project, "upgrade", code=REFUSED)
    (error,) = error_lines(refused)
    assert error.startswith("Error: migration blog.0002_by_hand (up) was stopped: counted again as it ran")
    assert "2 values of posts.title" in error and "rolled back" in error, error
    assert fingerprint(project) == before

    up = db(project, "upgrade", "--allow-data-loss")
    assert project.query("SELECT title FROM posts WHERE id = 1") == [("SHORT",)]
    assert "not checked: --allow-data-loss" in up.stderr
    db(project, "downgrade", code=REFUSED)
    db(project, "downgrade", "--allow-data-loss")
    assert project.query("SELECT title FROM posts WHERE id = 1") == [("short",)]


# -- 7. predeploy and deploy with a pending destructive upgrade ----------------------------------

BLOG_WITHOUT_TITLE = BLOG_NULLABLE_TITLE.replace(
    "    title: Mapped[str | None] = mapped_column(db.String(200))\n", ""
)


def test_predeploy_warns_with_live_counts_and_deploy_refuses(tmp_path: Path, db_url: str) -> None:
    project = new_project(tmp_path, db_url)
    project.write("blog/models.py", BLOG_NULLABLE_TITLE)
    db(project, "init")
    db(project, "makemigrations")
    db(project, "deploy", "--label", "v1")
    project.query_write(USERS, POSTS)
    project.write("blog/models.py", BLOG_WITHOUT_TITLE)
    db(project, "makemigrations")
    label = label_of(project, "blog", "0002")

    text = db(project, "predeploy").output
    assert (
        "warning  data at risk: 1 pending step destroys existing data; "
        "deploy needs --archive or --allow-data-loss" in text
    )
    assert f"- {label}: drops column posts.title and its values (2 values)" in text
    assert "Ready: 1 pending migration" in text
    strict = db(project, "predeploy", "--strict", code=1).output
    assert "Blocked: 0 errors, 1 warning (--strict: warnings count)." in strict

    before = fingerprint(project)
    refused = db(project, "upgrade", code=REFUSED)
    assert [row[:4] for row in risk_rows(refused.stderr)] == [[f"+ {label}", "blog", "posts.title", "2 values"]]
    deploy = db(project, "deploy", "--label", "v2", code=REFUSED)
    assert [row[:4] for row in risk_rows(deploy.stderr)] == [[f"+ {label}", "blog", "posts.title", "2 values"]]
    assert "would destroy existing data" in error_lines(deploy)[0]
    assert fingerprint(project) == before  # no deploy record either

    deployed = db(project, "deploy", "--label", "v2", "--archive")
    assert "Archived posts.title into rollback_archives_" in deployed.output
    assert "title" not in columns(project, "posts")
    # Rolling the deploy back re-adds the column (nothing to lose), restore fills it again.
    db(project, "rollback", "--yes")
    (record,) = archives(project)
    db(project, "restore", record["name"])
    assert project.query("SELECT id, title FROM posts ORDER BY id") == [
        (1, "short"), (2, "a much longer title"), (3, None)]


# -- PostgreSQL: what else a statement reaches ---------------------------------------------------


def test_truncate_cascade_counts_and_archives_the_referencing_tables(tmp_path: Path, pg_url: str) -> None:
    project = blog_project(tmp_path, pg_url)
    write_migration(
        project, "blog", "0002_wipe.py", "blog0002", revision_of(project, "blog", "0001"),
        'op.execute("TRUNCATE users CASCADE")',
    )
    users = project.query("SELECT * FROM users ORDER BY id")
    posts = project.query("SELECT * FROM posts ORDER BY id")
    refused = db(project, "upgrade", code=REFUSED)
    assert [row[2:4] for row in risk_rows(refused.stderr)] == [["users", "2 rows"], ["posts", "3 rows"]]

    ran = db(project, "upgrade", "--archive")
    assert "Archived users into rollback_archives_blog0002_users" in ran.output
    assert "Archived posts into rollback_archives_blog0002_posts" in ran.output
    assert project.query("SELECT count(*) FROM posts") == [(0,)]
    db(project, "restore", "rollback_archives_blog0002_users")
    db(project, "restore", "rollback_archives_blog0002_posts")
    assert project.query("SELECT * FROM users ORDER BY id") == users
    assert project.query("SELECT * FROM posts ORDER BY id") == posts


def test_a_table_of_another_schema_is_named_and_not_archived_as_its_namesake(
    tmp_path: Path, pg_url: str
) -> None:
    project = blog_project(tmp_path, pg_url)
    project.query_write(
        "CREATE SCHEMA other",
        "CREATE TABLE other.posts (id serial PRIMARY KEY, body text)",
        "INSERT INTO other.posts (body) VALUES ('o1'), ('o2')",
    )
    write_migration(
        project, "blog", "0002_drop_other.py", "blog0002", revision_of(project, "blog", "0001"),
        'op.drop_table("posts", schema="other")',
    )
    before = fingerprint(project)
    refused = db(project, "upgrade", code=REFUSED)
    assert [row[2:4] for row in risk_rows(refused.stderr)] == [["other.posts", "2 rows"]]
    archived = db(project, "upgrade", "--archive", code=REFUSED)  # not a copy of public.posts
    (error,) = error_lines(archived)
    assert "cannot archive other.posts" in error and "--allow-data-loss" in error
    assert fingerprint(project) == before


# -- a long downgrade: the catalog read at once, every table still counted -----------------------


def test_a_downgrade_dropping_many_tables_counts_each_and_refuses_untouched(
    tmp_path: Path, db_url: str
) -> None:
    """From 10 destructive operations on, the assessment reads the catalog in one query: every
    table is still found and counted (the empty ones as 0), and the refusal leaves the database
    as it was."""
    project = blog_project(tmp_path, db_url)
    parent = first = revision_of(project, "blog", "0001")
    for number in range(2, 14):
        table = f"t{number:02d}"
        write_migration(
            project, "blog", f"{number:04d}_{table}.py", f"blog{number:04d}", parent,
            f'op.create_table("{table}", sa.Column("id", sa.Integer, primary_key=True))',
            f'op.drop_table("{table}")',
        )
        parent = f"blog{number:04d}"
    db(project, "upgrade")
    project.query_write(*[f"INSERT INTO t{n:02d} (id) VALUES {', '.join(f'({i})' for i in range(1, n + 1))}"
                          for n in range(2, 14) if n % 3 == 0])
    before = fingerprint(project)

    refused = db(project, "downgrade", f"blog@{first}", code=REFUSED)
    lost = {row[2]: row[3] for row in risk_rows(refused.output)}
    assert lost == {f"t{n:02d}": f"{n} rows" for n in range(2, 14) if n % 3 == 0}, refused.output
    assert fingerprint(project) == before

    planned = db(project, "downgrade", f"blog@{first}", "--plan")
    counted = {row[2]: row[3] for row in risk_rows(planned.output)}
    assert counted == {f"t{n:02d}": f"{n if n % 3 == 0 else 0} rows" for n in range(2, 14)}

    db(project, "downgrade", f"blog@{first}", "--allow-data-loss")
    assert not {f"t{n:02d}" for n in range(2, 14)} & project.tables()
    assert project.query("SELECT count(*) FROM posts") == [(3,)]
