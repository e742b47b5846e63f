"""``flask db squashmigrations APP FROM TO``: one migration replacing a linear run of an app's
migrations, on fresh databases and on databases that applied the originals (or part of them),
the refusals, and ``check`` saying when the originals can be deleted."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from flask_rollback.autodetect import file_number
from flask_rollback.errors import EXIT_ERROR
from tests.projects import Project, folder_state, new_project, write_migration

OWN_TABLES = {"alembic_version", "rollback_log", "rollback_lock", "rollback_deploys", "rollback_archives"}
SQUASH = "0001_squashed_0003_title.py"


def table(name: str) -> str:
    return f'op.create_table("{name}", sa.Column("id", sa.Integer, primary_key=True))'


@pytest.fixture
def project(tmp_path: Path, db_url: str) -> Project:
    """accounts a1; blog b1 (depends on a1) <- b2 <- b3 (a batch block and an index) <- b4."""
    project = new_project(tmp_path / "project", db_url)
    assert project.run("init").returncode == 0
    write_migration(project, "accounts", "0001_initial.py", "a1", None, table("users"),
                    'op.drop_table("users")', header="branch_labels = ('accounts',)")
    write_migration(project, "blog", "0001_initial.py", "b1", None, table("posts"), 'op.drop_table("posts")',
                    header="branch_labels = ('blog',)\ndepends_on = 'a1'")
    write_migration(project, "blog", "0002_tags.py", "b2", "b1", table("tags"), 'op.drop_table("tags")')
    write_migration(
        project, "blog", "0003_title.py", "b3", "b2",
        'with op.batch_alter_table("posts") as batch_op:\n'
        '    batch_op.add_column(sa.Column("title", sa.String(20), nullable=True))\n'
        'op.create_index("ix_tags_id", "tags", ["id"])',
        'op.drop_index("ix_tags_id", table_name="tags")\n'
        'with op.batch_alter_table("posts") as batch_op:\n'
        '    batch_op.drop_column("title")',
    )
    write_migration(project, "blog", "0004_more.py", "b4", "b3", table("more"), 'op.drop_table("more")')
    return project


def ok(project: Project, *args: str) -> str:
    result = project.run(*args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def schema(project: Project) -> dict[str, object]:
    """Tables (not flask-rollback's own), their columns, keys and indexes, as reflected."""
    engine = project.engine()
    try:
        inspector = sa.inspect(engine)
        return {
            name: (
                [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(name)],
                inspector.get_pk_constraint(name)["constrained_columns"],
                sorted((i["name"], tuple(i["column_names"])) for i in inspector.get_indexes(name)),
                sorted(repr(sorted(fk.items())) for fk in inspector.get_foreign_keys(name)),
            )
            for name in sorted(inspector.get_table_names()) if name not in OWN_TABLES
        }
    finally:
        engine.dispose()


def versions(project: Project) -> list[str]:
    return sorted(row[0] for row in project.query("SELECT version_num FROM alembic_version"))


def squash(project: Project) -> str:
    out = ok(project, "squashmigrations", "blog", "0001", "0003")
    assert f"Created migration migrations/blog/{SQUASH}" in out
    assert "replacing blog.0001_initial, blog.0002_tags, blog.0003_title" in out
    text = (project.migrations / "blog" / SQUASH).read_text()
    match = re.search(r"^revision = '(\w+)'", text, re.M)
    assert match
    assert "replaces = (\n    'b1',  # blog.0001_initial\n    'b2',  # blog.0002_tags\n    'b3',  # blog.0003_title\n)" in text
    assert "down_revision = None" in text and "branch_labels = 'blog'" in text and "depends_on = 'a1'" in text
    return match.group(1)


def squashed_status(project: Project) -> list[str]:
    return [line.split("  (")[0] for line in ok(project, "showmigrations", "blog").splitlines()]


@pytest.mark.backends("sqlite", "postgresql")
def test_fresh_database_runs_the_squash_alone(project: Project, second_db_url: str) -> None:
    ok(project, "upgrade")
    unsquashed = schema(project)
    revision = squash(project)
    fresh = dataclasses.replace(project, url=second_db_url)
    out = ok(fresh, "upgrade")
    assert "Applied 3 migrations (accounts 1, blog 2)" in out
    assert schema(fresh) == unsquashed
    assert versions(fresh) == ["b4"]
    ran = fresh.query("SELECT revision FROM rollback_log WHERE app = 'blog' ORDER BY id")
    assert ran == [(revision,), ("b4",)]
    # and down through it, all the way
    ok(fresh, "downgrade", "blog", "zero")
    assert set(schema(fresh)) == {"users"}
    assert versions(fresh) == ["a1"]


@pytest.mark.backends("sqlite", "postgresql")
def test_database_that_applied_the_originals(project: Project) -> None:
    ok(project, "upgrade", "blog.0003")
    before = schema(project)
    revision = squash(project)
    assert squashed_status(project) == ["blog", f" [X] {SQUASH[:-3]}", " [ ] 0004_more"]
    assert "Nothing to upgrade" in ok(project, "upgrade", "blog.0001_squashed")  # already applied
    assert versions(project) == ["b3"] and schema(project) == before
    assert "Applied 1 migration (blog 1)" in ok(project, "upgrade")  # only 0004
    assert versions(project) == ["b4"]
    # recorded without running when 0004 ran: the originals had applied it
    assert squashed_status(project) == ["blog", f" [X] {SQUASH[:-3]} (fake)", " [X] 0004_more"]
    ok(project, "downgrade", "blog@-1")
    assert versions(project) == [revision] and schema(project) == before
    ok(project, "downgrade", "blog@-1")  # the squash's downgrade: the originals' in reverse
    assert set(schema(project)) == {"users"} and versions(project) == ["a1"]
    ok(project, "upgrade")
    assert set(schema(project)) == {"users", "posts", "tags", "more"}


@pytest.mark.backends("sqlite", "postgresql")
def test_database_that_applied_everything_before_the_squash(project: Project) -> None:
    ok(project, "upgrade")
    revision = squash(project)
    assert "Nothing to upgrade" in ok(project, "upgrade")
    ok(project, "downgrade", "blog@-1")
    ok(project, "downgrade", "blog@-1")
    assert set(schema(project)) == {"users"}
    log = project.query("SELECT revision, direction FROM rollback_log WHERE app = 'blog' ORDER BY id")
    assert log[-2:] == [("b4", "down"), (revision, "down")]


@pytest.mark.backends("sqlite", "postgresql")
def test_database_inside_the_range_finishes_it_with_the_originals(project: Project) -> None:
    ok(project, "upgrade", "blog.0002")  # the release before the squash stopped here
    squash(project)
    status = squashed_status(project)  # read without the squash: the originals
    assert status == ["blog", " [X] 0001_initial", " [X] 0002_tags", " [ ] 0003_title", " [ ] 0004_more"]
    ok(project, "upgrade")
    ran = project.query("SELECT revision FROM rollback_log WHERE app = 'blog' ORDER BY id")
    assert ran[-2:] == [("b3",), ("b4",)]
    assert squashed_status(project) == ["blog", f" [X] {SQUASH[:-3]}", " [X] 0004_more"]


@pytest.mark.backends("sqlite", "postgresql")
def test_check_says_when_the_originals_can_go(project: Project) -> None:
    ok(project, "upgrade", "blog.0002")
    squash(project)
    originals = ["migrations/blog/0001_initial.py", "migrations/blog/0002_tags.py", "migrations/blog/0003_title.py"]
    result = project.run("check")
    assert f"Note: keep the original migrations of squash migrations/blog/{SQUASH}: the database applied only part of them" in result.stdout
    refused = project.run("squashmigrations", "blog", "0001", "0003", "--delete-originals")
    assert refused.returncode == EXIT_ERROR and "nothing was deleted" in refused.stderr
    assert all((project.root / path).exists() for path in originals)
    ok(project, "upgrade", "blog.0003")
    note = (
        f"Note: the original migrations of squash blog.{SQUASH[:-3]} can be deleted (every database "
        "known here applied all of them): 'flask db squashmigrations blog 0001_initial 0003_title "
        f"--delete-originals' (or delete {', '.join(originals)})"
    )
    assert note in project.run("check").stdout
    out = ok(project, "squashmigrations", "blog", "0001_initial", "0003_title", "--delete-originals")
    assert out.splitlines() == [f"Deleted the originals of squash migrations/blog/{SQUASH}:",
                                *(f"  {path}" for path in originals)]
    assert project.files("blog") == [SQUASH, "0004_more.py"]
    assert "Note:" not in project.run("check").stdout
    # the version table still names 0003: the squash's replaces says what it means
    assert versions(project) == ["b3"]
    assert squashed_status(project) == ["blog", f" [X] {SQUASH[:-3]}", " [ ] 0004_more"]
    ok(project, "upgrade")
    assert versions(project) == ["b4"]


def test_a_migration_after_the_squash_is_numbered_after_its_range() -> None:
    assert file_number("0002_squashed_0004_add_tags.py") == 4
    assert file_number("0003_x.py") == 3 and file_number("x.py") is None


# -- refusals -------------------------------------------------------------------------------------


def refused(project: Project, *args: str) -> str:
    before = folder_state(project)
    result = project.run("squashmigrations", *args)
    assert result.returncode == EXIT_ERROR, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert folder_state(project) == before  # nothing written
    return lines[0]


@pytest.mark.backends("sqlite")
def test_refusals(project: Project) -> None:
    assert "accounts.0001_initial is a migration of app 'accounts', not 'blog'" in refused(
        project, "blog", "0001", "accounts.0001")
    assert "FROM blog.0003_title comes after TO blog.0001_initial" in refused(project, "blog", "0003", "0001")
    assert "no migration in app 'blog' matches '0009'" in refused(project, "blog", "0001", "0009")
    assert "unknown app 'nope'" in refused(project, "nope", "0001", "0002")
    assert "nothing to squash" in refused(project, "blog", "0002", "0002")


@pytest.mark.backends("sqlite")
def test_refuses_a_merge_point_and_a_branch_point(project: Project) -> None:
    write_migration(project, "blog", "0004_other.py", "b4x", "b3", table("other"), 'op.drop_table("other")')
    assert "blog.0003_title is a branch point" in refused(project, "blog", "0001", "0004_more")
    write_migration(project, "blog", "0005_merge.py", "b5", ("b4", "b4x"), "pass")
    write_migration(project, "blog", "0006_after.py", "b6", "b5", table("after"), 'op.drop_table("after")')
    assert "blog.0005_merge is a merge point" in refused(project, "blog", "0004_more", "0006")


@pytest.mark.backends("sqlite")
def test_refuses_an_inner_migration_another_app_depends_on(project: Project) -> None:
    write_migration(project, "accounts", "0002_links.py", "a2", "a1", table("links"), 'op.drop_table("links")',
                    header="depends_on = 'b2'")
    message = refused(project, "blog", "0001", "0003")
    assert "accounts.0002_links depends on blog.0002_tags, inside the range" in message


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize("code", [
    'op.execute("UPDATE posts SET id = id")',
    'op.bulk_insert(sa.table("tags", sa.column("id")), [{"id": 1}])',
    'for name in ("x",):\n    op.create_table(name, sa.Column("id", sa.Integer, primary_key=True))',
], ids=["execute", "bulk_insert", "python"])
def test_refuses_a_data_migration_unless_elidable(project: Project, code: str) -> None:
    path = project.migrations / "blog" / "0002_tags.py"
    path.write_text(path.read_text().replace('op.create_table("tags"', f"{code.splitlines()[0]}\n    " + "\n    ".join(code.splitlines()[1:]) + '\n    op.create_table("tags"', 1))
    assert "cannot squash blog.0002_tags: line" in refused(project, "blog", "0001", "0003")
    path.write_text(path.read_text() + "\nelidable = True\n")
    ok(project, "squashmigrations", "blog", "0001", "0003")
    text = (project.migrations / "blog" / SQUASH).read_text()
    assert 'op.create_table("tags"' in text
    assert "op.execute" not in text and "bulk_insert" not in text and "for name" not in text


@pytest.mark.backends("sqlite", "postgresql")
def test_a_middle_range_another_app_depends_on_at_its_end(project: Project, second_db_url: str) -> None:
    """0002..0003 (not the app's first): the squash keeps 0001 as its down_revision, and
    accounts.0002, which depends on 0003, is read as depending on the squash."""
    write_migration(project, "accounts", "0002_links.py", "a2", "a1", table("links"), 'op.drop_table("links")',
                    header="depends_on = 'b3'")
    ok(project, "upgrade")
    assert versions(project) == ["a2", "b4"]  # b3 is stored in neither row: a2 and b4 stand on it
    unsquashed = schema(project)
    out = ok(project, "squashmigrations", "blog", "blog.0002", "blog.0003_title")
    assert "migrations/blog/0002_squashed_0003_title.py" in out
    text = (project.migrations / "blog" / "0002_squashed_0003_title.py").read_text()
    assert "down_revision = 'b1'" in text and "branch_labels = None" in text and "depends_on = None" in text
    status = [line.split("  (")[0] for line in ok(project, "showmigrations").splitlines()]
    assert status == ["accounts", " [X] 0001_initial", " [X] 0002_links",
                      "blog", " [X] 0001_initial", " [X] 0002_squashed_0003_title", " [X] 0004_more"]
    assert "Nothing to upgrade" in ok(project, "upgrade")
    fresh = dataclasses.replace(project, url=second_db_url)
    ok(fresh, "upgrade")
    assert schema(fresh) == unsquashed
    order = [row[0] for row in fresh.query("SELECT revision FROM rollback_log ORDER BY id")]
    squash_id = re.search(r"^revision = '(\w+)'", text, re.M).group(1)  # type: ignore[union-attr]
    assert order.index("b1") < order.index(squash_id) < order.index("a2")
    ok(project, "downgrade", "blog", "0001", "--cascade")  # reverts the squash and accounts.0002 on it
    assert set(schema(project)) == {"users", "posts"}
