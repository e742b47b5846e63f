"""Every ``flask db`` command on real projects and real databases (SQLite and PostgreSQL).

No mocks: each test writes a real Flask project package, runs ``flask db ...`` on it and looks
at what a user would see: the files written, the schema, the version table, the applied log
(``rollback_log``), exit codes and output.
"""

from __future__ import annotations

import ast
import getpass
import hashlib
import json
import re
import socket
import textwrap
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result

from tests.projects import ACCOUNTS_MODELS, BLOG_MODELS, Project, new_project

# -- model variants -----------------------------------------------------------------------------

ACCOUNTS_BIO = ACCOUNTS_MODELS + "    bio: Mapped[str | None] = mapped_column(db.String(200))\n"
ACCOUNTS_BIO_AGE = ACCOUNTS_BIO + "    age: Mapped[int | None] = mapped_column(db.Integer)\n"
BLOG_SUMMARY = BLOG_MODELS + "    summary: Mapped[str | None] = mapped_column(db.String(300))\n"
BLOG_SUMMARY_RATING = BLOG_SUMMARY + "    rating: Mapped[int | None] = mapped_column(db.Integer)\n"
#: accounts gains a foreign key into blog's table (use_alter: users and posts now point at
#: each other, which SQLAlchemy can only sort with the constraint created afterwards).
ACCOUNTS_FAVOURITE_POST = ACCOUNTS_MODELS + (
    "    favourite_post_id: Mapped[int | None] = "
    "mapped_column(db.ForeignKey(\"posts.id\", use_alter=True))\n"
)
#: blog without any model: Post (table posts) was removed.
BLOG_NO_MODELS = "from .. import db  # noqa: F401\n"

MIGRATION_TEMPLATE = '''
"""{message}"""

import sqlalchemy as sa
from alembic import op

revision = {revision!r}
down_revision = {down_revision!r}
branch_labels = None
depends_on = None
{extra}

def upgrade() -> None:
{upgrade}


def downgrade() -> None:
{downgrade}
'''


# -- helpers ------------------------------------------------------------------------------------


def ok(result: Result) -> Result:
    """The command succeeded; on failure show everything it printed."""
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result


def fails(result: Result, code: int = 1) -> Result:
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    return result


def module_value(path: Path, name: str) -> Any:
    """A module-level constant of a migration file (revision, down_revision, depends_on ...)."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if node.target.id == name:
                return ast.literal_eval(node.value) if node.value else None
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == name:
                    return ast.literal_eval(node.value)
    raise AssertionError(f"{path} declares no {name}")


def as_set(value: Any) -> set[str]:
    if value is None:
        return set()
    if isinstance(value, str):
        return {value}
    return set(value)


def rev(project: Project, app: str, prefix: str) -> str:
    """Revision id of the file of ``app`` whose name starts with ``prefix`` (e.g. ``0001``)."""
    (path,) = [p for p in (project.migrations / app).glob(f"{prefix}*.py")]
    return module_value(path, "revision")


def mpath(project: Project, app: str, prefix: str) -> Path:
    (path,) = [p for p in (project.migrations / app).glob(f"{prefix}*.py")]
    return path


def versions(project: Project) -> set[str]:
    if "alembic_version" not in project.tables():
        return set()
    return {row[0] for row in project.query("SELECT version_num FROM alembic_version")}


def columns(project: Project, table: str) -> set[str]:
    engine = project.engine()
    try:
        return {c["name"] for c in sa.inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def log_rows(project: Project) -> list[dict[str, Any]]:
    """Rows of the applied log, oldest first, with typed values (reflected table)."""
    engine = project.engine()
    try:
        table = sa.Table("rollback_log", sa.MetaData(), autoload_with=engine)
        with engine.connect() as connection:
            rows = connection.execute(table.select().order_by(table.c.id)).mappings()
            return [dict(row) for row in rows]
    finally:
        engine.dispose()


def log_summary(project: Project) -> list[tuple[str, str, str, bool]]:
    """(app, name, direction, fake) per log row."""
    if "rollback_log" not in project.tables():
        return []
    return [(r["app"], r["name"], r["direction"], bool(r["fake"])) for r in log_rows(project)]


def snapshot(project: Project) -> tuple[Any, ...]:
    """Everything a command could change in the database."""
    tables = project.tables()
    return (
        tables,
        {t: columns(project, t) for t in sorted(tables)},
        versions(project),
        log_summary(project),
    )


def write_migration(
    project: Project,
    app: str,
    filename: str,
    revision: str,
    down_revision: str | None,
    upgrade: str = "pass",
    downgrade: str = "pass",
    extra: str = "",
) -> Path:
    """A hand-written migration file in ``app``'s folder."""
    text = MIGRATION_TEMPLATE.format(
        message=filename,
        revision=revision,
        down_revision=down_revision,
        extra=extra,
        upgrade=textwrap.indent(textwrap.dedent(upgrade).strip(), "    "),
        downgrade=textwrap.indent(textwrap.dedent(downgrade).strip(), "    "),
    )
    path = project.migrations / app / filename
    path.write_text(text.lstrip())
    return path


def initial(tmp_path: Path, url: str, upgrade: bool = False) -> Project:
    """init + makemigrations (+ upgrade) of the accounts/blog example."""
    project = new_project(tmp_path, url)
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    if upgrade:
        ok(project.db("upgrade"))
    return project


def two_migrations_each(tmp_path: Path, url: str) -> Project:
    """accounts 0001 (users), 0002 (users.bio); blog 0001 (posts), 0002 (posts.summary);
    all files written, nothing applied."""
    project = initial(tmp_path, url, upgrade=True)
    project.write("accounts/models.py", ACCOUNTS_BIO)
    project.write("blog/models.py", BLOG_SUMMARY)
    ok(project.db("makemigrations"))
    assert project.files("accounts") == ["0001_initial.py", "0002_add_users_bio.py"]
    assert project.files("blog") == ["0001_initial.py", "0002_add_posts_summary.py"]
    ok(project.db("downgrade", "accounts", "zero", "--cascade"))
    assert versions(project) == set()
    assert project.tables() == {"alembic_version", "rollback_log"}
    return project


# -- init ---------------------------------------------------------------------------------------


def test_init_creates_env_template_and_app_folders(tmp_path: Path, sqlite_url: str) -> None:
    project = new_project(tmp_path, sqlite_url)
    result = ok(project.db("init"))
    env = project.migrations / "env.py"
    code = [line for line in env.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert len(code) <= 6, code
    assert "from flask_rollback.env import run_env" in env.read_text()
    assert "run_env()" in code
    assert (project.migrations / "script.py.mako").is_file()
    assert (project.migrations / "accounts").is_dir()
    assert (project.migrations / "blog").is_dir()
    assert "env.py" in result.output and "accounts" in result.output and "blog" in result.output
    assert project.tables() == set()

    before = env.read_text()
    again = fails(project.db("init"))
    assert "already initialised" in again.output
    assert env.read_text() == before


# -- makemigrations -------------------------------------------------------------------------


def test_makemigrations_initial_and_no_changes(tmp_path: Path, db_url: str) -> None:
    project = new_project(tmp_path, db_url)
    ok(project.db("init"))
    result = ok(project.db("makemigrations"))
    assert project.files("accounts") == ["0001_initial.py"]
    assert project.files("blog") == ["0001_initial.py"]
    accounts = mpath(project, "accounts", "0001")
    blog = mpath(project, "blog", "0001")
    accounts_rev = module_value(accounts, "revision")
    blog_rev = module_value(blog, "revision")
    assert module_value(accounts, "down_revision") is None
    assert module_value(blog, "down_revision") is None
    assert as_set(module_value(accounts, "depends_on")) == set()
    assert as_set(module_value(blog, "depends_on")) == {accounts_rev}
    assert as_set(module_value(accounts, "branch_labels")) == {"accounts"}
    assert as_set(module_value(blog, "branch_labels")) == {"blog"}
    assert "create_table('users'" in accounts.read_text()
    assert "create_table('posts'" not in accounts.read_text()
    assert "create_table('posts'" in blog.read_text()
    assert "Created migration" in result.output
    assert str(accounts) in result.output and str(blog) in result.output
    # Writing migrations creates no table of the models (Alembic may create its version table).
    assert project.tables() <= {"alembic_version"}

    # upgrade without a target: every app to its head.
    result = ok(project.db("upgrade"))
    assert "Applied 2 migrations" in result.output
    assert {"users", "posts"} <= project.tables()
    assert versions(project) == {blog_rev}  # accounts' head is implied by blog's depends_on

    result = ok(project.db("makemigrations"))
    assert "No changes detected." in result.output
    assert project.files("accounts") == ["0001_initial.py"]
    assert project.files("blog") == ["0001_initial.py"]
    result = ok(project.db("makemigrations", "--check"))
    assert "No changes detected." in result.output


def test_makemigrations_dry_run_and_check_write_nothing(tmp_path: Path, db_url: str) -> None:
    project = new_project(tmp_path, db_url)
    ok(project.db("init"))
    result = ok(project.db("makemigrations", "--dry-run"))
    assert f"Would create migration {project.migrations / 'accounts' / '0001_initial.py'}" in result.output
    assert f"Would create migration {project.migrations / 'blog' / '0001_initial.py'}" in result.output
    assert "CreateTable users" in result.output and "CreateTable posts" in result.output
    assert project.files("accounts") == [] and project.files("blog") == []

    result = fails(project.db("makemigrations", "--check"), 3)
    assert "accounts" in result.output and "blog" in result.output
    assert project.files("accounts") == [] and project.files("blog") == []
    assert not {"users", "posts"} & project.tables()

    ok(project.db("makemigrations"))
    ok(project.db("upgrade"))
    project.write("accounts/models.py", ACCOUNTS_BIO)
    result = ok(project.db("makemigrations", "--dry-run"))
    assert f"Would create migration {project.migrations / 'accounts' / '0002_add_users_bio.py'}" in result.output
    assert "blog" not in result.output
    assert "users.bio" in result.output
    assert project.files("accounts") == ["0001_initial.py"]
    fails(project.db("makemigrations", "--check"), 3)
    assert project.files("accounts") == ["0001_initial.py"]
    assert "bio" not in columns(project, "users")


def test_makemigrations_add_column_and_name(tmp_path: Path, db_url: str) -> None:
    project = initial(tmp_path, db_url, upgrade=True)
    accounts_1 = rev(project, "accounts", "0001")
    blog_1 = rev(project, "blog", "0001")

    project.write("accounts/models.py", ACCOUNTS_BIO)
    result = ok(project.db("makemigrations"))
    assert project.files("accounts") == ["0001_initial.py", "0002_add_users_bio.py"]
    assert project.files("blog") == ["0001_initial.py"]
    new = mpath(project, "accounts", "0002")
    assert module_value(new, "down_revision") == accounts_1
    assert as_set(module_value(new, "depends_on")) == set()
    assert module_value(new, "branch_labels") is None
    assert "add_column('bio'" in new.read_text() or "sa.Column('bio'" in new.read_text()
    assert "0002_add_users_bio.py" in result.output
    ok(project.db("upgrade"))
    assert "bio" in columns(project, "users")

    project.write("blog/models.py", BLOG_SUMMARY)
    ok(project.db("makemigrations", "-m", "summaries"))
    assert project.files("blog") == ["0001_initial.py", "0002_summaries.py"]
    assert project.files("accounts") == ["0001_initial.py", "0002_add_users_bio.py"]
    assert module_value(mpath(project, "blog", "0002"), "down_revision") == blog_1
    ok(project.db("upgrade"))
    assert "summary" in columns(project, "posts")
    ok(project.db("makemigrations", "--check"))


def test_makemigrations_empty(tmp_path: Path, db_url: str) -> None:
    project = initial(tmp_path, db_url, upgrade=True)
    blog_1 = rev(project, "blog", "0001")
    result = ok(project.db("makemigrations", "--empty", "blog"))
    assert project.files("blog") == ["0001_initial.py", "0002_custom.py"]
    assert project.files("accounts") == ["0001_initial.py"]
    empty = mpath(project, "blog", "0002")
    assert module_value(empty, "down_revision") == blog_1
    assert "op.create_table" not in empty.read_text()
    assert "0002_custom.py" in result.output

    ok(project.db("makemigrations", "--empty", "blog", "-m", "backfill"))
    assert project.files("blog") == ["0001_initial.py", "0002_custom.py", "0003_backfill.py"]
    assert module_value(mpath(project, "blog", "0003"), "down_revision") == rev(project, "blog", "0002")

    # --empty needs to know which app.
    fails(project.db("makemigrations", "--empty"))
    assert project.files("blog") == ["0001_initial.py", "0002_custom.py", "0003_backfill.py"]
    assert project.files("accounts") == ["0001_initial.py"]

    result = ok(project.db("upgrade"))
    assert "Applied 2 migrations" in result.output


def test_makemigrations_only_named_app(tmp_path: Path, db_url: str) -> None:
    project = initial(tmp_path, db_url, upgrade=True)
    project.write("accounts/models.py", ACCOUNTS_BIO)
    project.write("blog/models.py", BLOG_SUMMARY)
    result = ok(project.db("makemigrations", "blog"))
    assert project.files("blog") == ["0001_initial.py", "0002_add_posts_summary.py"]
    assert project.files("accounts") == ["0001_initial.py"]
    assert "accounts" not in result.output
    ok(project.db("upgrade"))
    assert "summary" in columns(project, "posts")
    assert "bio" not in columns(project, "users")

    ok(project.db("makemigrations"))
    assert project.files("accounts") == ["0001_initial.py", "0002_add_users_bio.py"]
    assert project.files("blog") == ["0001_initial.py", "0002_add_posts_summary.py"]


def test_makemigrations_drop_lands_in_creating_app(tmp_path: Path, db_url: str) -> None:
    project = initial(tmp_path, db_url, upgrade=True)
    project.write("blog/models.py", BLOG_NO_MODELS)
    result = ok(project.db("makemigrations"))
    assert project.files("blog") == ["0001_initial.py", "0002_drop_posts.py"]
    assert project.files("accounts") == ["0001_initial.py"]
    assert not (project.migrations / "main").exists() or project.files("main") == []
    drop = mpath(project, "blog", "0002")
    assert "drop_table('posts')" in drop.read_text()
    assert module_value(drop, "down_revision") == rev(project, "blog", "0001")
    assert "0002_drop_posts.py" in result.output

    ok(project.db("upgrade"))
    assert "posts" not in project.tables() and "users" in project.tables()
    # The drop is reversible: its downgrade recreates the table.
    ok(project.db("downgrade", "blog@-1"))
    assert "posts" in project.tables()


def test_makemigrations_cross_app_fk_depends_on_creating_migration(tmp_path: Path, db_url: str) -> None:
    project = initial(tmp_path, db_url, upgrade=True)
    # blog moves on first, so blog's head is not the migration that created posts.
    project.write("blog/models.py", BLOG_SUMMARY)
    ok(project.db("makemigrations"))
    ok(project.db("upgrade"))

    project.write("accounts/models.py", ACCOUNTS_FAVOURITE_POST)
    ok(project.db("makemigrations"))
    accounts_files = project.files("accounts")
    assert len(accounts_files) == 2
    assert accounts_files[1].startswith("0002_add_users_favourite_post_id")
    assert project.files("blog") == ["0001_initial.py", "0002_add_posts_summary.py"]
    new = mpath(project, "accounts", "0002")
    assert module_value(new, "down_revision") == rev(project, "accounts", "0001")
    assert as_set(module_value(new, "depends_on")) == {rev(project, "blog", "0001")}

    ok(project.db("upgrade"))
    assert "favourite_post_id" in columns(project, "users")
    # accounts stands on the migration that created posts, not on blog's head: reverting blog's
    # head leaves accounts alone; reverting the creation of posts is refused without --cascade.
    result = ok(project.db("downgrade", "blog@-1"))
    assert "Reverted 1 migration" in result.output
    assert "summary" not in columns(project, "posts")
    assert "favourite_post_id" in columns(project, "users")
    before = snapshot(project)
    result = fails(project.db("downgrade", "blog@-1"))
    assert "accounts.0002_add_users_favourite_post_id" in result.output
    assert "--cascade" in result.output
    assert snapshot(project) == before


def test_multiple_heads_makemigrations_refuses_check_5_merge(tmp_path: Path, db_url: str) -> None:
    project = initial(tmp_path, db_url, upgrade=True)
    blog_1 = rev(project, "blog", "0001")
    write_migration(project, "blog", "0002_left.py", "aaaa11112222", blog_1)
    write_migration(project, "blog", "0002_right.py", "bbbb33334444", blog_1)
    project.write("accounts/models.py", ACCOUNTS_BIO)

    result = fails(project.db("makemigrations"))
    assert "blog" in result.output and "merge" in result.output
    assert project.files("accounts") == ["0001_initial.py"]

    result = ok(project.db("heads"))
    assert "blog: aaaa11112222 0002_left" in result.output
    assert "blog: bbbb33334444 0002_right" in result.output
    heads = json.loads(ok(project.db("heads", "--json")).output)
    assert set(heads["apps"]["blog"]) == {"aaaa11112222", "bbbb33334444"}

    result = fails(project.db("check"), 5)
    assert "blog" in result.output
    data = json.loads(fails(project.db("check", "--json"), 5).output)
    assert data["exit_code"] == 5 and data["ok"] is False
    assert 5 in [p["code"] for p in data["problems"]]

    result = project.run("branches")
    assert result.returncode == 0, result.stderr
    assert blog_1 in result.stdout
    assert "aaaa11112222" in result.stdout and "bbbb33334444" in result.stdout

    result = ok(project.db("merge", "blog"))
    assert project.files("blog") == [
        "0001_initial.py", "0002_left.py", "0002_right.py", "0003_merge.py"
    ]
    merge = mpath(project, "blog", "0003")
    assert as_set(module_value(merge, "down_revision")) == {"aaaa11112222", "bbbb33334444"}
    assert "0003_merge.py" in result.output
    heads = json.loads(ok(project.db("heads", "--json")).output)
    assert heads["apps"]["blog"] == [module_value(merge, "revision")]

    result = ok(project.db("upgrade"))
    assert "Applied 3 migrations" in result.output
    assert versions(project) == {module_value(merge, "revision")}
    ok(project.db("makemigrations"))
    assert project.files("accounts") == ["0001_initial.py", "0002_add_users_bio.py"]
    # merging a single head is an error
    fails(project.db("merge", "blog"))


def test_flask_migrate_aliases(tmp_path: Path, db_url: str) -> None:
    project = initial(tmp_path, db_url, upgrade=True)
    project.write("accounts/models.py", ACCOUNTS_BIO)
    result = ok(project.db("migrate", "-m", "profile bio"))
    assert project.files("accounts") == ["0001_initial.py", "0002_profile_bio.py"]
    assert project.files("blog") == ["0001_initial.py"]
    assert "0002_profile_bio.py" in result.output
    ok(project.db("upgrade"))

    project.write("blog/models.py", BLOG_SUMMARY)
    ok(project.db("revision", "--autogenerate", "-m", "post summary"))
    assert project.files("blog") == ["0001_initial.py", "0002_post_summary.py"]
    assert "summary" in mpath(project, "blog", "0002").read_text()
    assert project.files("accounts") == ["0001_initial.py", "0002_profile_bio.py"]
    ok(project.db("upgrade"))
    assert "summary" in columns(project, "posts")

    ok(project.db("revision", "--app", "accounts", "-m", "data fix"))
    assert project.files("accounts") == ["0001_initial.py", "0002_profile_bio.py", "0003_data_fix.py"]
    fix = mpath(project, "accounts", "0003")
    assert module_value(fix, "down_revision") == rev(project, "accounts", "0002")
    assert "op.add_column" not in fix.read_text() and "op.create_table" not in fix.read_text()

    # Several apps and no --app: refused, nothing written.
    result = fails(project.db("revision", "-m", "where"))
    assert "--app" in result.output
    assert len(project.files("accounts")) == 3 and len(project.files("blog")) == 2


# -- targets ------------------------------------------------------------------------------------


def test_upgrade_downgrade_targets(tmp_path: Path, db_url: str) -> None:
    project = two_migrations_each(tmp_path, db_url)
    a1, a2 = rev(project, "accounts", "0001"), rev(project, "accounts", "0002")
    b1, b2 = rev(project, "blog", "0001"), rev(project, "blog", "0002")

    # APP@name-prefix
    ok(project.db("upgrade", "accounts@0001"))
    assert versions(project) == {a1}
    assert project.tables() >= {"users"} and "posts" not in project.tables()
    assert "bio" not in columns(project, "users")
    # APP@+N
    ok(project.db("upgrade", "accounts@+1"))
    assert versions(project) == {a2}
    assert "bio" in columns(project, "users")
    # APP@-N
    ok(project.db("downgrade", "accounts@-1"))
    assert versions(project) == {a1}
    assert "bio" not in columns(project, "users")
    # APP REV (name prefix) pulls in what it depends on only
    ok(project.db("upgrade", "blog", "0001"))
    assert versions(project) == {b1}
    assert "posts" in project.tables() and "summary" not in columns(project, "posts")
    # a bare revision id prefix
    ok(project.db("upgrade", b2[:8]))
    assert versions(project) == {b2}
    assert "summary" in columns(project, "posts")
    # APP: that app's head
    ok(project.db("upgrade", "accounts"))
    assert versions(project) == {a2, b2}
    # APP@base
    ok(project.db("downgrade", "blog@base"))
    assert versions(project) == {a2}
    assert "posts" not in project.tables()
    # APP@REV with a revision id prefix (downgrade to it)
    ok(project.db("downgrade", f"accounts@{a1[:7]}"))
    assert versions(project) == {a1}
    # +N in the global order: accounts' 0002 comes before blog's migrations
    ok(project.db("upgrade", "+1"))
    assert versions(project) == {a2}
    ok(project.db("upgrade", "+2"))
    assert versions(project) == {a2, b2}
    # APP zero
    ok(project.db("downgrade", "blog", "zero"))
    assert versions(project) == {a2}
    # APP REV with a full revision id
    ok(project.db("downgrade", "accounts", a1))
    assert versions(project) == {a1}
    # a full revision id alone
    ok(project.db("upgrade", b1))
    assert versions(project) == {b1}
    # heads / head
    ok(project.db("upgrade", "heads"))
    assert versions(project) == {a2, b2}
    ok(project.db("downgrade", "blog@-2"))
    assert versions(project) == {a2}
    ok(project.db("upgrade", "head"))
    assert versions(project) == {a2, b2}
    assert "summary" in columns(project, "posts") and "bio" in columns(project, "users")
    result = ok(project.db("upgrade"))
    assert "Nothing to upgrade" in result.output

    # Wrong directions and unknown names are refused without changes.
    before = snapshot(project)
    fails(project.db("upgrade", "-1"))
    fails(project.db("downgrade", "+1"))
    fails(project.db("downgrade", "--bogus"), 2)
    fails(project.db("upgrade", "nosuchapp@0001"))
    fails(project.db("upgrade", "blog@9999"))
    assert snapshot(project) == before


def test_stamp_targets(tmp_path: Path, db_url: str) -> None:
    project = two_migrations_each(tmp_path, db_url)
    a1, a2 = rev(project, "accounts", "0001"), rev(project, "accounts", "0002")
    b1, b2 = rev(project, "blog", "0001"), rev(project, "blog", "0002")
    tables = project.tables()
    ok(project.db("stamp", "accounts@0001"))
    assert versions(project) == {a1}
    ok(project.db("stamp", "blog", b1[:6]))
    assert versions(project) == {b1}
    ok(project.db("stamp", "accounts"))
    assert versions(project) == {a2, b1}
    ok(project.db("stamp", "blog@+1"))
    assert versions(project) == {a2, b2}
    ok(project.db("stamp", "blog@-1"))
    assert versions(project) == {a2, b1}
    ok(project.db("stamp", "blog", "zero"))
    assert versions(project) == {a2}
    ok(project.db("stamp", "head"))
    assert versions(project) == {a2, b2}
    ok(project.db("stamp", "accounts@base"))
    assert versions(project) == set()
    ok(project.db("stamp", "+1"))
    assert versions(project) == {a1}
    ok(project.db("stamp", "+2"))  # global order: accounts 0002, then blog 0001
    assert versions(project) == {a2, b1}
    ok(project.db("stamp", f"blog@{b2}"))
    assert versions(project) == {a2, b2}
    ok(project.db("stamp", "accounts", "0001"))  # blog stands on accounts 0001 only
    assert versions(project) == {b2}
    ok(project.db("stamp", "blog@-2"))
    assert versions(project) == {a1}
    assert project.tables() == tables  # stamping never changes the schema


def test_downgrade_without_target_reverts_most_recent(tmp_path: Path, db_url: str) -> None:
    project = two_migrations_each(tmp_path, db_url)
    a1, a2 = rev(project, "accounts", "0001"), rev(project, "accounts", "0002")
    b1, b2 = rev(project, "blog", "0001"), rev(project, "blog", "0002")
    # Known order: accounts 0001, blog 0001, accounts 0002, blog 0002 (the last one
    # applied is not the last in the global order after the next step).
    ok(project.db("upgrade", "blog@0001"))
    ok(project.db("upgrade", "accounts"))
    ok(project.db("upgrade", "blog"))
    ok(project.db("downgrade", "blog@-1"))
    # applied log now says: accounts 0002 was the most recently applied still-applied one.
    assert versions(project) == {a2, b1}

    result = ok(project.db("downgrade"))
    assert "Reverted 1 migration (accounts 1)" in result.output
    assert versions(project) == {b1}
    assert "bio" not in columns(project, "users") and "posts" in project.tables()

    ok(project.db("upgrade", "accounts"))
    ok(project.db("upgrade", "blog"))
    # most recent first: blog 0002, accounts 0002, blog 0001, accounts 0001
    result = ok(project.db("downgrade", "-2"))
    assert "Reverted 2 migrations" in result.output
    assert versions(project) == {b1}
    assert "bio" not in columns(project, "users") and "summary" not in columns(project, "posts")

    result = ok(project.db("downgrade"))
    assert versions(project) == {a1}
    assert "posts" not in project.tables() and "users" in project.tables()
    downs = [(app, name) for app, name, direction, _ in log_summary(project) if direction == "down"]
    assert downs == [
        ("blog", "0001_initial"),  # the fixture's reset
        ("accounts", "0001_initial"),
        ("blog", "0002_add_posts_summary"),  # downgrade blog@-1
        ("accounts", "0002_add_users_bio"),  # downgrade
        ("blog", "0002_add_posts_summary"),  # downgrade -2
        ("accounts", "0002_add_users_bio"),
        ("blog", "0001_initial"),  # downgrade
    ]
    ok(project.db("downgrade"))
    assert versions(project) == set()
    # nothing applied, nothing to revert
    result = fails(project.db("downgrade"))
    assert "nothing to revert" in result.output


# -- --plan -------------------------------------------------------------------------------------


def test_plan_prints_and_applies_nothing(tmp_path: Path, db_url: str) -> None:
    project = two_migrations_each(tmp_path, db_url)
    a1, a2 = rev(project, "accounts", "0001"), rev(project, "accounts", "0002")
    b1, b2 = rev(project, "blog", "0001"), rev(project, "blog", "0002")
    before = snapshot(project)
    result = ok(project.db("upgrade", "--plan"))
    lines = result.output.splitlines()
    assert "4 migrations" in lines[0] and "accounts 2" in lines[0] and "blog 2" in lines[0]
    order = [line.split()[2] for line in lines[1:5]]
    assert order == [
        "accounts.0001_initial",
        "accounts.0002_add_users_bio",
        "blog.0001_initial",
        "blog.0002_add_posts_summary",
    ]
    assert all(line.split()[1] == "+" for line in lines[1:5])
    assert f"({a1})" in lines[1] and f"({b2})" in lines[4]
    commits_at_once = "commits every DDL statement at once" in result.output
    assert commits_at_once == db_url.startswith("mysql")  # said on MariaDB, and only there
    assert snapshot(project) == before

    result = ok(project.db("upgrade", "blog@0001", "--plan"))
    assert "accounts.0001_initial" in result.output and "blog.0001_initial" in result.output
    assert "accounts.0002" not in result.output and "blog.0002" not in result.output
    assert snapshot(project) == before

    ok(project.db("upgrade"))
    before = snapshot(project)
    result = ok(project.db("downgrade", "accounts", "zero", "--cascade", "--plan"))
    order = [line.split()[2] for line in result.output.splitlines()[1:5]]
    assert order == [
        "blog.0002_add_posts_summary",
        "blog.0001_initial",
        "accounts.0002_add_users_bio",
        "accounts.0001_initial",
    ]
    assert "cascade" in result.output
    assert f"({b1})" in result.output and f"({a2})" in result.output
    assert snapshot(project) == before
    result = ok(project.db("downgrade", "--plan"))
    assert "blog.0002_add_posts_summary" in result.output
    assert "accounts" not in result.output.splitlines()[-1]
    assert snapshot(project) == before


# -- cascade ------------------------------------------------------------------------------------


def test_downgrade_cascade(tmp_path: Path, db_url: str) -> None:
    project = initial(tmp_path, db_url, upgrade=True)
    a1, b1 = rev(project, "accounts", "0001"), rev(project, "blog", "0001")
    before = snapshot(project)
    result = fails(project.db("downgrade", "accounts", "zero"))
    assert "blog.0001_initial" in result.output
    assert "--cascade" in result.output
    assert snapshot(project) == before
    result = fails(project.db("downgrade", "accounts@-1"))
    assert "blog.0001_initial" in result.output
    assert snapshot(project) == before

    result = ok(project.db("downgrade", "accounts", "zero", "--cascade"))
    assert "Reverted 2 migrations" in result.output
    assert "users" not in project.tables() and "posts" not in project.tables()
    assert versions(project) == set()
    downs = [(a, n) for a, n, d, _ in log_summary(project) if d == "down"]
    assert downs == [("blog", "0001_initial"), ("accounts", "0001_initial")]

    ok(project.db("upgrade"))
    ok(project.db("downgrade", "blog", "zero"))
    assert "posts" not in project.tables() and "users" in project.tables()
    assert versions(project) == {a1}
    assert b1 not in versions(project)


# -- irreversible downgrades --------------------------------------------------------------------

BARRIERS = {
    "pass": dict(downgrade="pass"),
    "not-implemented": dict(downgrade='raise NotImplementedError("cannot bring the rows back")'),
    "declared": dict(
        downgrade="op.execute(\"DELETE FROM users WHERE email = 'seed@example.com'\")",
        extra='irreversible = "the seed user may have been edited since"\n',
    ),
}


@pytest.mark.parametrize("kind", list(BARRIERS))
def test_irreversible_downgrade_refused_before_running(
    tmp_path: Path, db_url: str, kind: str
) -> None:
    project = initial(tmp_path, db_url, upgrade=True)
    blog_1 = rev(project, "blog", "0001")
    write_migration(
        project, "blog", "0002_seed.py", "5eed5eed5eed", blog_1,
        upgrade="op.execute(\"INSERT INTO users (email) VALUES ('seed@example.com')\")",
        **BARRIERS[kind],
    )
    project.write("blog/models.py", BLOG_SUMMARY)
    ok(project.db("upgrade"))
    ok(project.db("makemigrations"))
    assert project.files("blog") == ["0001_initial.py", "0002_seed.py", "0003_add_posts_summary.py"]
    ok(project.db("upgrade"))
    assert "summary" in columns(project, "posts")
    assert project.query("SELECT email FROM users") == [("seed@example.com",)]

    before = snapshot(project)
    # The barrier is the second step: the first (0003) must not run either.
    result = fails(project.db("downgrade", "blog", "zero"))
    assert "blog.0002_seed" in result.output
    assert "nothing was run" in result.output
    assert snapshot(project) == before
    assert "summary" in columns(project, "posts")
    assert project.query("SELECT email FROM users") == [("seed@example.com",)]

    result = fails(project.db("downgrade", "accounts", "zero", "--cascade"))
    assert "blog.0002_seed" in result.output
    assert snapshot(project) == before

    result = ok(project.db("downgrade", "blog", "zero", "--plan"))
    seed_line = next(line for line in result.output.splitlines() if "blog.0002_seed" in line)
    assert "IRREVERSIBLE" in seed_line
    other = [line for line in result.output.splitlines() if "blog.0003" in line or "blog.0001" in line]
    assert other and all("IRREVERSIBLE" not in line for line in other)
    assert snapshot(project) == before

    # Above the barrier, downgrades still work.
    ok(project.db("downgrade", "blog@-1"))
    assert "summary" not in columns(project, "posts")


def test_empty_upgrade_and_downgrade_is_reversible(tmp_path: Path, db_url: str) -> None:
    project = initial(tmp_path, db_url, upgrade=True)
    ok(project.db("makemigrations", "--empty", "blog"))
    ok(project.db("upgrade"))
    result = ok(project.db("downgrade", "blog@-1"))
    assert "Reverted 1 migration (blog 1)" in result.output
    assert versions(project) == {rev(project, "blog", "0001")}


# -- looking ------------------------------------------------------------------------------------


def test_showmigrations(tmp_path: Path, db_url: str) -> None:
    project = initial(tmp_path, db_url)
    a1, b1 = rev(project, "accounts", "0001"), rev(project, "blog", "0001")
    before = snapshot(project)
    result = ok(project.db("showmigrations"))
    assert result.output.splitlines() == ["accounts", " [ ] 0001_initial", "blog", " [ ] 0001_initial"]
    assert snapshot(project) == before

    ok(project.db("upgrade", "accounts"))
    lines = ok(project.db("showmigrations")).output.splitlines()
    assert lines[0] == "accounts"
    assert lines[1].startswith(" [X] 0001_initial  (applied 20")
    assert lines[2:] == ["blog", " [ ] 0001_initial"]

    lines = ok(project.db("showmigrations", "blog")).output.splitlines()
    assert lines == ["blog", " [ ] 0001_initial"]
    fails(project.db("showmigrations", "nosuchapp"))

    lines = ok(project.db("showmigrations", "--plan")).output.splitlines()
    assert lines[0].split() == ["migration", "applied"] and len(lines) == 3
    assert re.fullmatch(r"\[X\]  accounts\.0001_initial  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\S*", lines[1])
    assert lines[2] == "[ ]  blog.0001_initial"
    assert lines[0].index("migration") == lines[1].index("accounts") and lines[0].index("applied") == lines[1].index("20")

    data = json.loads(ok(project.db("showmigrations", "--json")).output)
    apps = {a["app"]: a for a in data["apps"]}
    assert set(apps) == {"accounts", "blog"}
    assert apps["accounts"]["heads"] == [a1] and apps["accounts"]["current"] == [a1]
    assert apps["blog"]["heads"] == [b1] and apps["blog"]["current"] == []
    (acc,) = apps["accounts"]["migrations"]
    assert acc["name"] == "0001_initial" and acc["revision"] == a1 and acc["applied"] is True
    assert acc["applied_at"] and acc["applied_at"].startswith("20")
    (blog,) = apps["blog"]["migrations"]
    assert blog["revision"] == b1 and blog["applied"] is False and blog["applied_at"] is None


def test_current_and_heads(tmp_path: Path, db_url: str) -> None:
    project = initial(tmp_path, db_url)
    a1, b1 = rev(project, "accounts", "0001"), rev(project, "blog", "0001")
    lines = ok(project.db("current")).output.splitlines()
    assert lines == ["accounts: (none)", "blog: (none)"]
    data = json.loads(ok(project.db("current", "--json")).output)
    assert data["apps"] == {"accounts": [], "blog": []}

    ok(project.db("upgrade", "accounts"))
    lines = ok(project.db("current")).output.splitlines()
    assert lines == [f"accounts: {a1} 0001_initial (head)", "blog: (none)"]
    ok(project.db("upgrade"))
    data = json.loads(ok(project.db("current", "--json")).output)
    assert data["apps"] == {"accounts": [a1], "blog": [b1]}
    assert data["stored_heads"] == [b1]

    lines = ok(project.db("heads")).output.splitlines()
    assert lines == [f"accounts: {a1} 0001_initial", f"blog: {b1} 0001_initial"]
    assert json.loads(ok(project.db("heads", "--json")).output) == {
        "apps": {"accounts": [a1], "blog": [b1]}
    }

    project.write("accounts/models.py", ACCOUNTS_BIO)
    ok(project.db("makemigrations"))
    a2 = rev(project, "accounts", "0002")
    lines = ok(project.db("current")).output.splitlines()
    assert lines[0] == f"accounts: {a1} 0001_initial"  # no longer the head
    assert json.loads(ok(project.db("heads", "--json")).output)["apps"]["accounts"] == [a2]


def test_sqlmigrate(tmp_path: Path, db_url: str) -> None:
    project = initial(tmp_path, db_url)
    before = snapshot(project)
    result = ok(project.db("sqlmigrate", "blog", "0001"))
    assert "CREATE TABLE posts" in result.output
    assert "CREATE TABLE users" not in result.output
    assert "DROP TABLE" not in result.output

    result = ok(project.db("sqlmigrate", "accounts", rev(project, "accounts", "0001")))
    assert "CREATE TABLE users" in result.output and "posts" not in result.output

    result = ok(project.db("sqlmigrate", "blog", "0001", "--backwards"))
    assert "DROP TABLE posts" in result.output
    assert "CREATE TABLE posts" not in result.output and "DROP TABLE users" not in result.output

    # Nothing of it ran.
    assert snapshot(project) == before
    assert not {"users", "posts"} & project.tables()
    fails(project.db("sqlmigrate", "blog", "0009"))

    ok(project.db("upgrade"))
    before = snapshot(project)
    result = ok(project.db("sqlmigrate", "accounts", "0001", "--backwards"))
    assert "DROP TABLE users" in result.output
    assert snapshot(project) == before


def test_stamp_heads_zero_and_purge(tmp_path: Path, db_url: str) -> None:
    project = initial(tmp_path, db_url)
    a1, b1 = rev(project, "accounts", "0001"), rev(project, "blog", "0001")
    result = ok(project.db("stamp", "heads"))
    assert "Stamped 2 migrations" in result.output
    assert versions(project) == {b1}
    assert project.tables() == {"alembic_version", "rollback_log"}  # no schema change
    rows = log_rows(project)
    assert [(r["app"], r["revision"], r["direction"], bool(r["fake"])) for r in rows] == [
        ("accounts", a1, "up", True),
        ("blog", b1, "up", True),
    ]
    lines = ok(project.db("showmigrations")).output.splitlines()
    assert lines[1].startswith(" [X] 0001_initial") and lines[3].startswith(" [X] 0001_initial")

    ok(project.db("stamp", "blog", "zero"))
    assert versions(project) == {a1}
    assert log_summary(project)[-1] == ("blog", "0001_initial", "down", True)
    assert project.tables() == {"alembic_version", "rollback_log"}

    # A revision no file provides: normal commands refuse, recommending the newer code (never
    # stamp --purge, which would forget what ran); stamp --purge still works when meant.
    engine = project.engine()
    with engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM alembic_version")
        connection.exec_driver_sql("INSERT INTO alembic_version (version_num) VALUES ('deadbeef0000')")
    engine.dispose()
    result = fails(project.db("upgrade"))
    assert "deadbeef0000" in result.output and "--purge" not in result.output
    assert "migrated by newer code" in result.output and "deploy the code that has" in result.output
    fails(project.db("stamp", "heads"))
    assert versions(project) == {"deadbeef0000"}

    ok(project.db("stamp", "--purge", "heads"))
    assert versions(project) == {b1}
    assert project.tables() == {"alembic_version", "rollback_log"}
    assert all(r["fake"] for r in log_rows(project))
    assert log_summary(project)[-2:] == [
        ("accounts", "0001_initial", "up", True),
        ("blog", "0001_initial", "up", True),
    ]


def test_history_show_branches(tmp_path: Path, sqlite_url: str) -> None:
    """Alembic's informational verbs read the files (only -i looks at the database), so one
    backend is enough; real processes, as a user runs them."""
    project = initial(tmp_path, sqlite_url, upgrade=True)
    a1, b1 = rev(project, "accounts", "0001"), rev(project, "blog", "0001")
    result = project.run("history", "--indicate-current", "-v")  # -v: with revision ids
    assert result.returncode == 0, result.stderr
    assert a1 in result.stdout and b1 in result.stdout
    assert "current" in result.stdout
    result = project.run("show", b1)
    assert result.returncode == 0, result.stderr
    assert b1 in result.stdout and a1 in result.stdout  # shows its depends_on
    result = project.run("branches")
    assert result.returncode == 0, result.stderr


def test_alembic_verbs_print_through_click(tmp_path: Path, sqlite_url: str) -> None:
    """history/show/branches print to the command's stdout like every other command
    (so they can be captured, e.g. by Flask's CLI runner)."""
    project = initial(tmp_path, sqlite_url, upgrade=True)
    a1, b1 = rev(project, "accounts", "0001"), rev(project, "blog", "0001")
    result = ok(project.db("history", "-v"))
    assert a1 in result.output and b1 in result.output
    result = ok(project.db("show", a1))
    assert a1 in result.output


# -- check --------------------------------------------------------------------------------------


def test_check_exit_codes(tmp_path: Path, db_url: str) -> None:
    project = initial(tmp_path, db_url)
    result = fails(project.db("check"), 4)
    assert "behind" in result.output
    data = json.loads(fails(project.db("check", "--json"), 4).output)
    assert data == {
        "ok": False,
        "exit_code": 4,
        "problems": [data["problems"][0]],
        "notes": [],
    }
    assert data["problems"][0]["code"] == 4

    ok(project.db("upgrade"))
    result = ok(project.db("check"))
    assert "No problems" in result.output
    data = json.loads(ok(project.db("check", "--json")).output)
    assert data == {"ok": True, "exit_code": 0, "problems": [], "notes": []}

    project.write("accounts/models.py", ACCOUNTS_BIO)
    result = fails(project.db("check"), 3)
    assert "accounts" in result.output and "blog" not in result.output
    data = json.loads(fails(project.db("check", "--json"), 3).output)
    assert data["exit_code"] == 3 and [p["code"] for p in data["problems"]] == [3]
    assert project.files("accounts") == ["0001_initial.py"]  # check writes nothing

    ok(project.db("makemigrations"))
    fails(project.db("check"), 4)
    ok(project.db("upgrade"))
    ok(project.db("check"))


# -- applied log and progress -------------------------------------------------------------------


def test_applied_log_rows(tmp_path: Path, db_url: str) -> None:
    project = initial(tmp_path, db_url, upgrade=True)
    files = {
        "accounts": mpath(project, "accounts", "0001"),
        "blog": mpath(project, "blog", "0001"),
    }
    host, user = socket.gethostname(), getpass.getuser()
    rows = log_rows(project)
    assert [(r["app"], r["name"], r["direction"]) for r in rows] == [
        ("accounts", "0001_initial", "up"),
        ("blog", "0001_initial", "up"),
    ]
    for row in rows:
        path = files[row["app"]]
        assert row["revision"] == module_value(path, "revision")
        assert row["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert not row["fake"]
        assert row["started_at"] is not None and row["finished_at"] is not None
        assert row["finished_at"] >= row["started_at"]
        assert row["duration_ms"] >= 0
        assert row["host"] == host and row["user"] == user
    assert rows[1]["started_at"] >= rows[0]["started_at"]

    ok(project.db("downgrade", "accounts", "zero", "--cascade"))
    rows = log_rows(project)
    assert [(r["app"], r["name"], r["direction"]) for r in rows] == [
        ("accounts", "0001_initial", "up"),
        ("blog", "0001_initial", "up"),
        ("blog", "0001_initial", "down"),
        ("accounts", "0001_initial", "down"),
    ]
    for row in rows[2:]:
        assert row["sha256"] == hashlib.sha256(files[row["app"]].read_bytes()).hexdigest()
        assert not row["fake"] and row["finished_at"] >= row["started_at"]
        assert row["host"] == host and row["user"] == user


def test_progress_lines_per_migration_in_a_pipe(tmp_path: Path, db_url: str) -> None:
    """Django's progress lines on stdout (a pipe here, not a TTY): one per migration, then the
    summary; with -q, the summary only."""
    project = initial(tmp_path, db_url)
    ok(project.db("makemigrations", "--empty", "accounts"))
    ok(project.db("makemigrations", "--empty", "blog"))
    result = project.run("upgrade")  # a real process, stdout/stderr are pipes
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [re.sub(r"\(\d+\.\d\d s\)", "(T s)", line) for line in lines[:4]] == [
        "Applying accounts.0001_initial... OK (T s)",
        "Applying accounts.0002_custom... OK (T s)",
        "Applying blog.0001_initial... OK (T s)",
        "Applying blog.0002_custom... OK (T s)",
    ]
    assert lines[4].startswith("Applied 4 migrations (accounts 2, blog 2) in ") and len(lines) == 5
    assert result.stderr == ""
    assert "\r" not in result.stdout and "\033" not in result.stdout

    result = project.run("downgrade", "blog@-1")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        r"Unapplying blog\.0002_custom\.\.\. OK \(\d+\.\d\d s\)\nReverted 1 migration \(blog 1\) in .*\n",
        result.stdout,
    )
    result = ok(project.db("upgrade", "-q"))
    assert result.output.splitlines() == [result.output.strip()]
    assert result.output.startswith("Applied 1 migration (blog 1) in ")
    result = ok(project.db("downgrade", "--quiet", "accounts", "zero", "--cascade"))
    assert result.output.startswith("Reverted 4 migrations (") and len(result.output.splitlines()) == 1


def test_progress_line_is_out_before_the_step_runs(tmp_path: Path, db_url: str) -> None:
    """"Applying X..." is flushed before X's code runs (a step that hangs shows which it is),
    and a step that fails ends its line with FAILED before the error."""
    project = initial(tmp_path, db_url, upgrade=True)
    blog_1 = rev(project, "blog", "0001")
    write_migration(
        project, "blog", "0002_talks.py", "aaaa22220002", blog_1,
        upgrade="import os\nos.write(1, b'<running>')",  # past Python's buffers, onto the pipe
    )
    write_migration(project, "blog", "0003_broken.py", "aaaa22220003", "aaaa22220002", upgrade="raise RuntimeError('boom')")
    result = project.run("upgrade")
    assert result.returncode == 1
    assert re.search(  # (the data-loss analysis reads the code first, and may print <running> too)
        r"Applying blog\.0002_talks\.\.\.<running> OK \(\d+\.\d\d s\)\n"
        r"Applying blog\.0003_broken\.\.\. FAILED\n\Z",
        result.stdout,
    )
    assert result.stderr.startswith("Error: migration blog.0003_broken (up) failed: RuntimeError: boom")
