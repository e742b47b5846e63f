"""makemigrations' questioner (Django's): renames and values for existing rows, asked on a
real terminal.

Each conversation runs ``flask db makemigrations`` as a subprocess on a pseudo-terminal (the
stdlib's ``os.openpty``), waits for each question and types the answer, as a user does; then
the migration written is run on real SQLite and PostgreSQL databases holding rows.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from flask_rollback.questioner import one_off_default
from tests.projects import BLOG_MODELS, Project, folder_state, new_project

TIMEOUT = 60.0

RENAME_TITLE = "Did you rename posts.title to posts.headline (VARCHAR(200))? [y/N] "
NOT_NULL_MENU = (
    " 1) Provide a one-off default now (will be set on all existing rows)\n"
    " 2) Make the column nullable\n"
    " 3) Quit, and add a server_default or make the column nullable in the models\n"
    "Select an option: "
)

#: ``op.drop_column('posts', 'title')``, or ``batch_op.drop_column('title')`` (SQLite).
DROP_TITLE = re.compile(r"drop_column\((?:'posts', )?'title'\)")

BLOG_HEADLINE = BLOG_MODELS.replace("title:", "headline:")
BLOG_SLUG = BLOG_MODELS + "    slug: Mapped[str] = mapped_column(db.String(50))\n"
BLOG_ARTICLES = BLOG_MODELS.replace('"posts"', '"articles"')


# -- a user at a terminal -----------------------------------------------------------------------


@dataclass
class Conversation:
    exit_code: int
    #: Everything the terminal showed (questions, the answers echoed, output and errors).
    transcript: str


def converse(project: Project, *args: str, answers: Sequence[tuple[str, str]] = ()) -> Conversation:
    """``flask db ARGS`` on a pseudo-terminal: for each ``(text, answer)``, wait until ``text``
    appears after what was already seen, then type ``answer`` and Enter; then read to the end.
    A question that never comes fails the test with the transcript."""
    master, slave = os.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "db", *args],
        # NO_COLOR: the transcript is compared as text (colour on a terminal: test_output.py)
        cwd=project.root, env={**project.env(), "NO_COLOR": "1"}, stdin=slave, stdout=slave, stderr=slave,
    )
    os.close(slave)
    seen, cursor = "", 0
    deadline = time.monotonic() + TIMEOUT
    try:
        for text, answer in answers:
            while (found := seen.find(text, cursor)) < 0:
                chunk = _read(master, deadline, seen)
                if chunk is None:
                    raise AssertionError(f"never asked {text!r}; the terminal showed:\n{seen}")
                seen += chunk
            cursor = found + len(text)
            os.write(master, answer.encode() + b"\n")
        while (chunk := _read(master, deadline, seen)) is not None:
            seen += chunk
        return Conversation(process.wait(timeout=TIMEOUT), seen)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)


def _read(master: int, deadline: float, seen: str) -> str | None:
    """The terminal's next output, or None at its end (the command exited)."""
    ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
    if not ready:
        raise AssertionError(f"the command neither asked nor ended in time; the terminal showed:\n{seen}")
    try:
        chunk = os.read(master, 4096)
    except OSError:  # EIO: every end of the terminal's other side is closed
        return None
    return chunk.decode().replace("\r\n", "\n") or None


# -- the project and what a test looks at --------------------------------------------------------


def blog_with_rows(tmp_path: Path, url: str, models: str = BLOG_MODELS) -> Project:
    """The example project with ``models`` for blog, applied, with two posts."""
    project = new_project(tmp_path, url)
    project.write("blog/models.py", models)
    for args in (("init",), ("makemigrations",), ("upgrade",)):
        result = project.db(*args)
        assert result.exit_code == 0, result.output
    project.query_write(
        "INSERT INTO users (id, email) VALUES (1, 'ann@example.com')",
        "INSERT INTO posts (id, title, author_id) VALUES (1, 'Hello', 1), (2, 'World', 1)",
    )
    return project


def new_blog_migration(project: Project) -> str:
    """The code of the one migration makemigrations wrote for blog after its initial one."""
    (path,) = (project.migrations / "blog").glob("0002_*.py")
    return path.read_text()


def run(project: Project, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    result = project.run(*args)
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    return result


def column(project: Project, table: str, name: str) -> dict[str, Any]:
    """The column as the database describes it (nullable, default)."""
    engine = project.engine()
    try:
        (found,) = [c for c in sa.inspect(engine).get_columns(table) if c["name"] == name]
        return found
    finally:
        engine.dispose()


def models_match(project: Project) -> None:
    """Nothing is left for the next makemigrations: the answer made the schema the models'."""
    assert "No changes detected." in run(project, "makemigrations", "--check").stdout


# -- renames ------------------------------------------------------------------------------------


def test_column_rename_answered_yes_keeps_the_values(tmp_path: Path, db_url: str) -> None:
    project = blog_with_rows(tmp_path, db_url)
    project.write("blog/models.py", BLOG_HEADLINE)
    talk = converse(project, "makemigrations", answers=[(RENAME_TITLE, "y")])
    assert talk.exit_code == 0, talk.transcript
    code = new_blog_migration(project)
    assert "new_column_name='headline'" in code
    assert "drop_column" not in code and "add_column" not in code
    assert "new_column_name='title'" in code.split("def downgrade")[1]
    if db_url.startswith("sqlite"):
        assert "batch_alter_table('posts'" in code
    run(project, "upgrade")
    assert project.query("SELECT id, headline FROM posts ORDER BY id") == [(1, "Hello"), (2, "World")]
    models_match(project)
    run(project, "downgrade", "blog", "0001")
    assert project.query("SELECT id, title FROM posts ORDER BY id") == [(1, "Hello"), (2, "World")]


def test_column_rename_answered_no_adds_and_drops(tmp_path: Path, db_url: str) -> None:
    """No rename: the new NOT NULL column is asked about next, and the drop stays, which the
    data-loss guard then refuses to run."""
    project = blog_with_rows(tmp_path, db_url)
    project.write("blog/models.py", BLOG_HEADLINE)
    talk = converse(project, "makemigrations", answers=[(RENAME_TITLE, "n"), (NOT_NULL_MENU, "2")])
    assert talk.exit_code == 0, talk.transcript
    assert "NOT NULL column posts.headline (VARCHAR(200))" in talk.transcript
    code = new_blog_migration(project)
    assert "new_column_name" not in code
    assert "sa.Column('headline', sa.String(length=200), nullable=True)" in code
    assert DROP_TITLE.search(code)
    refused = run(project, "upgrade", code=6)
    assert "posts.title" in refused.stdout + refused.stderr
    assert project.query("SELECT id, title FROM posts ORDER BY id") == [(1, "Hello"), (2, "World")]


def test_table_rename_answered_yes_keeps_the_rows(tmp_path: Path, db_url: str) -> None:
    indexed = BLOG_MODELS.replace("db.String(200))", "db.String(200), index=True)")
    project = blog_with_rows(tmp_path, db_url, indexed)
    project.write("blog/models.py", indexed.replace('"posts"', '"articles"'))
    talk = converse(project, "makemigrations", answers=[("Did you rename the table posts to articles? [y/N] ", "y")])
    assert talk.exit_code == 0, talk.transcript
    code = new_blog_migration(project)
    upgrade, downgrade = code.split("def downgrade")
    assert "op.rename_table('posts', 'articles')" in upgrade
    assert "op.rename_table('articles', 'posts')" in downgrade
    assert "create_table" not in code and "drop_table" not in code
    run(project, "upgrade")
    assert project.query("SELECT id, title FROM articles ORDER BY id") == [(1, "Hello"), (2, "World")]
    assert "posts" not in project.tables()
    models_match(project)
    run(project, "downgrade", "blog", "0001")
    assert project.query("SELECT id, title FROM posts ORDER BY id") == [(1, "Hello"), (2, "World")]


def test_several_candidates_are_asked_per_pair(tmp_path: Path, db_url: str) -> None:
    """Django's order: each added column against each dropped one of its type; a dropped column
    renamed once is not offered again, and a column of another type is never offered. A rename
    carries the new nullability (tagline is NOT NULL, subtitle was not)."""
    before = BLOG_MODELS + (
        "    subtitle: Mapped[str | None] = mapped_column(db.String(200))\n"
        "    views: Mapped[int | None] = mapped_column()\n"
    )
    project = blog_with_rows(tmp_path, db_url, before)
    sub_title = "CONCAT('sub ', title)" if db_url.startswith("mysql") else "'sub ' || title"
    project.query_write(f"UPDATE posts SET subtitle = {sub_title}, views = id")
    project.write("blog/models.py", before.replace("subtitle: Mapped[str | None]", "tagline: Mapped[str]").replace("title: Mapped[str]", "headline: Mapped[str]"))
    talk = converse(project, "makemigrations", answers=[
        ("Did you rename posts.subtitle to posts.headline (VARCHAR(200))? [y/N] ", "n"),
        (RENAME_TITLE, "y"),
        ("Did you rename posts.subtitle to posts.tagline (VARCHAR(200))? [y/N] ", "yes"),
    ])
    assert talk.exit_code == 0, talk.transcript
    assert talk.transcript.count("[y/N]") == 3
    code = new_blog_migration(project)
    assert "alter_column('title'" in code and "new_column_name='headline'" in code
    assert "alter_column('subtitle'" in code and "new_column_name='tagline'" in code
    run(project, "upgrade")
    assert project.query("SELECT headline, tagline, views FROM posts ORDER BY id") == [
        ("Hello", "sub Hello", 1), ("World", "sub World", 2)]
    assert not column(project, "posts", "tagline")["nullable"]
    models_match(project)
    run(project, "downgrade", "blog", "0001")
    assert column(project, "posts", "subtitle")["nullable"]
    assert project.query("SELECT title, subtitle FROM posts ORDER BY id") == [("Hello", "sub Hello"), ("World", "sub World")]


# -- NOT NULL columns added to tables with rows ----------------------------------------------------


def test_not_null_column_gets_a_one_off_default(tmp_path: Path, db_url: str) -> None:
    project = blog_with_rows(tmp_path, db_url)
    project.write("blog/models.py", BLOG_SLUG)
    talk = converse(project, "makemigrations", answers=[(NOT_NULL_MENU, "1"), (">>> ", "draft")])
    assert talk.exit_code == 0, talk.transcript
    assert "It is impossible to add the NOT NULL column posts.slug (VARCHAR(50)) without a default" in talk.transcript
    upgrade = new_blog_migration(project).split("def downgrade")[0]
    assert "sa.Column('slug', sa.String(length=50), server_default='draft', nullable=False)" in upgrade
    assert upgrade.index("server_default='draft'") < upgrade.index("server_default=None")
    run(project, "upgrade")
    assert project.query("SELECT id, slug FROM posts ORDER BY id") == [(1, "draft"), (2, "draft")]
    slug = column(project, "posts", "slug")
    assert slug["default"] is None and not slug["nullable"]
    models_match(project)
    run(project, "downgrade", "blog", "0001", "--allow-data-loss")
    assert "slug" not in {c["name"] for c in sa.inspect(project.engine()).get_columns("posts")}


def test_not_null_column_made_nullable(tmp_path: Path, db_url: str) -> None:
    project = blog_with_rows(tmp_path, db_url)
    project.write("blog/models.py", BLOG_SLUG)
    talk = converse(project, "makemigrations", answers=[(NOT_NULL_MENU, "2")])
    assert talk.exit_code == 0, talk.transcript
    assert "posts.slug is added as nullable" in talk.transcript
    assert "sa.Column('slug', sa.String(length=50), nullable=True)" in new_blog_migration(project)
    run(project, "upgrade")
    assert project.query("SELECT id, slug FROM posts ORDER BY id") == [(1, None), (2, None)]
    assert column(project, "posts", "slug")["nullable"]


def test_unparsable_default_is_asked_again(tmp_path: Path, db_url: str) -> None:
    """Each NOT NULL column is asked in turn; a value that does not parse for its type is
    refused with the reason and asked again."""
    project = blog_with_rows(tmp_path, db_url)
    project.write("blog/models.py", BLOG_MODELS.replace(
        "from .. import db", "from datetime import date, datetime\nfrom .. import db") + (
        "    views: Mapped[int] = mapped_column()\n"
        "    published_on: Mapped[date] = mapped_column()\n"
        "    featured: Mapped[bool] = mapped_column()\n"
        "    seen_at: Mapped[datetime] = mapped_column()\n"
        "    score: Mapped[float] = mapped_column(db.Numeric(6, 2))\n"
    ))
    talk = converse(project, "makemigrations", answers=[
        (NOT_NULL_MENU, "1"), (">>> ", "abc"), ("'abc' is not a whole number\n>>> ", "7"),
        (NOT_NULL_MENU, "1"), (">>> ", "2024-02-30"),
        ("'2024-02-30' is not an ISO date (e.g. 2024-01-31), nor now\n>>> ", ""),
        ("Invalid default: type a value\n>>> ", "2024-02-29"),
        (NOT_NULL_MENU, "1"), (">>> ", "maybe"), ("'maybe' is not true or false\n>>> ", "TRUE"),
        (NOT_NULL_MENU, "1"), (">>> ", "now"),
        (NOT_NULL_MENU, "4"), ("Please select a valid option: ", "1"),
        (">>> ", "1,5"), ("'1,5' is not a number\n>>> ", "-1.50"),
    ])
    assert talk.exit_code == 0, talk.transcript
    run(project, "upgrade")
    rows = project.query("SELECT views, published_on, featured, seen_at, score FROM posts ORDER BY id")
    assert len(rows) == 2
    for views, published_on, featured, seen_at, score in rows:
        assert views == 7 and str(published_on) == "2024-02-29" and bool(featured) is True
        assert seen_at is not None and float(score) == -1.5
    for name in ("views", "published_on", "featured", "seen_at", "score"):
        assert column(project, "posts", name)["default"] is None, name
    models_match(project)


def test_quit_writes_nothing(sqlite_url: str, tmp_path: Path) -> None:
    project = blog_with_rows(tmp_path, sqlite_url)
    project.write("blog/models.py", BLOG_SLUG)
    before = folder_state(project)
    talk = converse(project, "makemigrations", answers=[(NOT_NULL_MENU, "3")])
    assert talk.exit_code == 1
    assert talk.transcript.rstrip().endswith(
        "Error: makemigrations stopped: no value for posts.slug was given; give the column a "
        "server_default or make it nullable in the models; nothing was written")
    assert "Traceback" not in talk.transcript
    assert folder_state(project) == before


def test_model_scalar_default_fills_the_rows_without_a_question(tmp_path: Path, db_url: str) -> None:
    """``default=0`` is what the application writes: it is the one-off default, as Django's
    AddField uses a field's default; nothing is asked, also without a terminal."""
    project = blog_with_rows(tmp_path, db_url)
    project.write("blog/models.py", BLOG_MODELS + "    views: Mapped[int] = mapped_column(default=0)\n")
    run(project, "makemigrations", "--no-input")
    run(project, "upgrade")
    assert project.query("SELECT id, views FROM posts ORDER BY id") == [(1, 0), (2, 0)]
    assert column(project, "posts", "views")["default"] is None


# -- no one to ask ------------------------------------------------------------------------------

NO_ANSWERS = {
    "--no-input on a terminal": ("--no-input",),
    "--noinput on a terminal": ("--noinput",),
    "stdin closed": (),
    "stdin not a terminal": (),
}


def without_answers(project: Project, how: str, *args: str) -> tuple[int, str, str]:
    """makemigrations with no one to answer: exit code, stdout, stderr (on a terminal, both
    are the terminal)."""
    command = ("makemigrations", *args, *NO_ANSWERS[how])
    if how.endswith("on a terminal"):
        talk = converse(project, *command)
        return talk.exit_code, talk.transcript, talk.transcript
    stdin = subprocess.DEVNULL if how == "stdin not a terminal" else None
    prefix = ["sh", "-c", 'exec "$@" <&-', "sh"] if how == "stdin closed" else []
    result = subprocess.run(
        [*prefix, sys.executable, "-m", "flask", "db", *command], stdin=stdin,
        cwd=project.root, env=project.env(), capture_output=True, text=True, timeout=TIMEOUT,
    )
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize("how", list(NO_ANSWERS))
def test_without_answers_a_not_null_column_is_an_error(tmp_path: Path, db_url: str, how: str) -> None:
    project = blog_with_rows(tmp_path, db_url)
    project.write("blog/models.py", BLOG_HEADLINE)
    before = folder_state(project)
    code, _stdout, stderr = without_answers(project, how)
    assert code == 1
    assert stderr.strip().splitlines() == [
        "Error: cannot add the NOT NULL column posts.headline without a default to the existing "
        "table posts: its rows need a value; give the column a server_default, make it nullable, "
        "or run 'flask db makemigrations' on a terminal to give a one-off default; nothing was written"
    ]
    assert folder_state(project) == before


@pytest.mark.parametrize("how", ["--no-input on a terminal", "stdin closed"])
def test_without_answers_no_rename_is_assumed(tmp_path: Path, db_url: str, how: str) -> None:
    project = blog_with_rows(tmp_path, db_url)
    project.write("blog/models.py", BLOG_HEADLINE.replace("headline: Mapped[str]", "headline: Mapped[str | None]"))
    code, stdout, _stderr = without_answers(project, how)
    assert code == 0, stdout
    assert "[y/N]" not in stdout
    migration = new_blog_migration(project)
    assert "add_column(" in migration and "sa.Column('headline'" in migration and DROP_TITLE.search(migration)
    assert "new_column_name" not in migration
    run(project, "upgrade", code=6)  # the data-loss guard refuses the drop


def test_dry_run_asks_as_the_real_run_does_and_shows_its_file(sqlite_url: str, tmp_path: Path) -> None:
    """--dry-run shows exactly the file the real run writes, so it asks the same questions;
    --check only reports and asks nothing."""
    project = blog_with_rows(tmp_path, sqlite_url)
    project.write("blog/models.py", BLOG_HEADLINE)
    before = folder_state(project)
    talk = converse(project, "makemigrations", "--dry-run", "-v", answers=[(RENAME_TITLE, "y")])
    assert talk.exit_code == 0, talk.transcript
    assert "RenameColumn posts.title to headline" in talk.transcript
    assert "new_column_name='headline'" in talk.transcript
    assert folder_state(project) == before

    checked = converse(project, "makemigrations", "--check")
    assert checked.exit_code == 3, checked.transcript
    assert "[y/N]" not in checked.transcript and "Select an option" not in checked.transcript
    assert "AddColumn posts.headline" in checked.transcript and "DropColumn posts.title" in checked.transcript
    assert folder_state(project) == before

    talk = converse(project, "makemigrations", answers=[(RENAME_TITLE, "y")])
    assert talk.exit_code == 0, talk.transcript
    assert "new_column_name='headline'" in new_blog_migration(project)


# -- the one-off default rule -------------------------------------------------------------------

DIALECTS = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect()}


@pytest.mark.parametrize("dialect_name", list(DIALECTS))
@pytest.mark.parametrize(("column_type", "typed", "sql"), [
    (sa.Integer(), " 42 ", {"sqlite": "42", "postgresql": "42"}),
    (sa.BigInteger(), "-3", {"sqlite": "-3", "postgresql": "-3"}),
    (sa.Numeric(6, 2), "1.50", {"sqlite": "1.50", "postgresql": "1.50"}),
    (sa.Float(), "2e3", {"sqlite": "2E+3", "postgresql": "2E+3"}),
    (sa.Boolean(), "False", {"sqlite": "0", "postgresql": "false"}),
    (sa.String(10), "draft", "draft"),
    (sa.String(10), '" two "', " two "),
    (sa.String(10), "'exit'", "exit"),
    (sa.Text(), "now", "now"),
    (sa.Enum("draft", "live", name="state"), "live", "live"),
    (sa.Date(), "2024-02-29", "2024-02-29"),
    (sa.Date(), "now", {"sqlite": "CURRENT_DATE", "postgresql": "CURRENT_DATE"}),
    (sa.DateTime(), "2024-02-29T10:30", "2024-02-29 10:30:00"),
    (sa.DateTime(), "NOW", {"sqlite": "CURRENT_TIMESTAMP", "postgresql": "now()"}),
    (sa.Time(), "10:30", "10:30:00"),
    (sa.JSON(), "{\"a\": [1]}", "{\"a\": [1]}"),
    (sa.Uuid(), "12345678-1234-5678-1234-567812345678", "12345678-1234-5678-1234-567812345678"),
])
def test_one_off_default_accepts_literals_of_the_type(
    dialect_name: str, column_type: sa.types.TypeEngine[Any], typed: str, sql: Any
) -> None:
    """Numbers, booleans and ``now`` become SQL; everything else is a string default (quoted by
    the DDL), so nothing typed is ever run as code."""
    dialect = DIALECTS[dialect_name]
    default = one_off_default(typed, column_type, dialect)
    if isinstance(sql, dict):
        assert str(default.compile(dialect=dialect)) == sql[dialect_name]  # type: ignore[union-attr]
    else:
        assert default == sql


@pytest.mark.parametrize(("column_type", "typed", "reason"), [
    (sa.Integer(), "abc", "is not a whole number"),
    (sa.Integer(), "1.5", "is not a whole number"),
    (sa.Integer(), "__import__('os').getpid()", "is not a whole number"),
    (sa.Numeric(), "nan", "is not a finite number"),
    (sa.Numeric(), "1,5", "is not a number"),
    (sa.Boolean(), "yes", "is not true or false"),
    (sa.Date(), "2024-02-30", "is not an ISO date"),
    (sa.DateTime(), "yesterday", "is not an ISO datetime"),
    (sa.Time(), "25:00", "is not an ISO time"),
    (sa.String(3), "long", "is longer than 3 characters"),
    (sa.Enum("draft", "live", name="state"), "gone", "is not one of draft, live"),
    (sa.JSON(), "{bad", "is not JSON"),
    (sa.Uuid(), "nope", "is not a UUID"),
    (sa.String(), "'half", "cannot be written as a default"),
    (sa.String(), "   ", "type a value"),
])
def test_one_off_default_refuses_what_does_not_fit(
    column_type: sa.types.TypeEngine[Any], typed: str, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        one_off_default(typed, column_type, postgresql.dialect())

