"""The pytest plugin (flask_rollback/testing), run by pytest itself through ``pytester`` on
projects of its own and on this repository's example app, on SQLite and PostgreSQL.

The plugin is loaded with ``-p flask_rollback.testing.plugin`` (the ``pytest11`` entry point
loads it by that same name once the package is installed with it; both together must work).
Each inner run's database is a throwaway one: a SQLite file of the inner test, or, with
``flask_rollback_url`` pointing at the ``db_url`` database, a new database on that server.
"""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest
import sqlalchemy.dialects.postgresql  # noqa: F401 - see below
from click.testing import Result

# Imported here (with SQLAlchemy's PostgreSQL dialect above), so pytester's inline runs find
# them loaded: a run forgets the modules it imported itself, and a dialect imported twice warns.
import flask_rollback.testing.checks
import flask_rollback.testing.factory
import flask_rollback.testing.migrator
import flask_rollback.testing.plugin  # noqa: F401
from tests.projects import (
    BLOG_MODELS,
    Project,
    new_project,
    revision_of,
    write_migration,
)
from tests.test_example_app import tree

pytest_plugins = ["pytester"]

ROOT = Path(__file__).parents[1]
PLUGIN = (
    "-p", "flask_rollback.testing.plugin", "-p", "no:cacheprovider",
    # this module imported the plugin already (see below), too early for assertion rewriting
    "-W", "ignore::pytest.PytestAssertRewriteWarning",
)
CHECKS = [
    "one-head-per-app",
    "models-match-migrations",
    "up-down-up",
    "no-silent-data-loss",
    "dependencies-declared",
    "migration-files",
]


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def project_in(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, db_url: str) -> Project:
    """The accounts/blog example project in pytester's folder, migrations made, and a
    pytest.ini naming its factory (and, on a server, the server to make test databases on)."""
    project = new_project(pytester.path, db_url)
    monkeypatch.setenv("TEST_DATABASE_URL", db_url)
    monkeypatch.setenv("TEST_MIGRATIONS", str(project.migrations))
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    server = "" if db_url.startswith("sqlite") else f"flask_rollback_url = {db_url}\n"
    pytester.makeini(f"[pytest]\nflask_rollback_app = {project.package}:create_app\n{server}")
    return project


def run_checks(pytester: pytest.Pytester, *args: str) -> dict[str, tuple[str, str]]:
    """``pytest --flask-rollback``: each check's outcome and report text, by name."""
    recorder = pytester.inline_run(*PLUGIN, "--flask-rollback", *args)
    found: dict[str, tuple[str, str]] = {}
    for report in recorder.getreports("pytest_runtest_logreport"):
        if not report.nodeid.startswith("flask-rollback::"):
            continue
        name = report.nodeid.split("::", 1)[1]
        if report.when == "call" or report.outcome != "passed":
            found[name] = (report.outcome, report.longreprtext)
    return found


def only_failure(found: dict[str, tuple[str, str]], check: str) -> str:
    """The failure text of ``check``, after asserting every other check passed or was skipped
    (could not run for the same cause)."""
    assert sorted(found) == sorted(CHECKS), found
    failed = {name: text for name, (outcome, text) in found.items() if outcome == "failed"}
    assert list(failed) == [check], found
    return failed[check]


# -- the ready-made checks ------------------------------------------------------------------


@pytest.mark.backends("sqlite", "postgresql")
def test_checks_pass_on_a_clean_project(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    project_in(pytester, monkeypatch, db_url)
    found = run_checks(pytester)
    assert found == {name: ("passed", "") for name in CHECKS}


@pytest.mark.backends("sqlite", "postgresql")
def test_checks_pass_on_the_example_app(pytester: pytest.Pytester, db_url: str) -> None:
    """This repository's example app (four apps, one of them on a bind of its own) and its
    shipped migrations pass every check; on PostgreSQL the analytics bind gets a database of
    its own on the same server."""
    server = "" if db_url.startswith("sqlite") else f"flask_rollback_url = {db_url}\n"
    pytester.makeini(f"[pytest]\nflask_rollback_app = example_app:create_app\n{server}")
    pytester.makeconftest(
        f"""
        import pytest

        @pytest.fixture
        def flask_rollback_config():
            return {{"ROLLBACK_DIRECTORY": {str(ROOT / "migrations")!r}}}
        """
    )
    before = tree("example_app", "migrations")
    found = run_checks(pytester)
    assert found == {name: ("passed", "") for name in CHECKS}
    assert tree("example_app", "migrations") == before


# -- one broken migration of each kind: exactly its check fails, naming it -------------------


def with_post_columns(project: Project, *lines: str) -> None:
    """blog's Post model with more columns (``name: Mapped[...] = mapped_column(...)``)."""
    project.write("blog/models.py", BLOG_MODELS + "".join(f"    {line}\n" for line in lines))


def two_heads(project: Project, base: str) -> tuple[str, list[str]]:
    for name in ("0002_left", "0002_right"):
        write_migration(project, "blog", f"{name}.py", f"blog{name[5:]}", base, "pass", "pass")
    return "one-head-per-app", ["app 'blog' has 2 heads", "blog.0002_left", "blog.0002_right"]


def model_without_migration(project: Project, base: str) -> tuple[str, list[str]]:
    with_post_columns(project, "body: Mapped[str | None] = mapped_column(db.Text)")
    return "models-match-migrations", ["models of app 'blog' differ", "posts", "body"]


def downgrade_leaves_a_column(project: Project, base: str) -> tuple[str, list[str]]:
    with_post_columns(
        project,
        "subtitle: Mapped[str | None] = mapped_column(db.String(100))",
        "summary: Mapped[str | None] = mapped_column(db.String(100))",
    )
    write_migration(
        project, "blog", "0002_subtitles.py", "blogsubtitles", base,
        'op.add_column("posts", sa.Column("subtitle", sa.String(100), nullable=True))\n'
        'op.add_column("posts", sa.Column("summary", sa.String(100), nullable=True))',
        'with op.batch_alter_table("posts") as batch:\n    batch.drop_column("summary")',
    )
    return "up-down-up", [
        "blog.0002_subtitles: its downgrade does not restore the schema", "posts.subtitle",
    ]


def downgrade_drops_renamed_data(project: Project, base: str) -> tuple[str, list[str]]:
    """The schema comes back, the titles do not: reverted by drop and re-add."""
    project.write("blog/models.py", BLOG_MODELS.replace(
        "title: Mapped[str] = mapped_column(db.String(200))",
        "headline: Mapped[str] = mapped_column(db.String(200))",
    ))
    write_migration(
        project, "blog", "0002_headline.py", "blogheadline", base,
        'with op.batch_alter_table("posts") as batch:\n'
        '    batch.alter_column("title", new_column_name="headline", existing_type=sa.String(200), '
        "existing_nullable=False)",
        'with op.batch_alter_table("posts") as batch:\n'
        '    batch.drop_column("headline")\n'
        '    batch.add_column(sa.Column("title", sa.String(200), nullable=False))',
    )
    return "no-silent-data-loss", ["blog.0002_headline: its downgrade", "posts.title", "irreversible"]


def undeclared_dependency(project: Project, base: str) -> tuple[str, list[str]]:
    path = next((project.migrations / "blog").glob("0001_*.py"))
    text = path.read_text()
    declared = next(line for line in text.splitlines() if line.startswith("depends_on"))
    path.write_text(text.replace(declared, "depends_on = None"))
    accounts = revision_of(project, "accounts", "0001")
    return "dependencies-declared", [
        "blog.0001_initial uses table users, which accounts.0001_initial creates",
        f"depends_on = {accounts!r}",
    ]


def syntax_error(project: Project, base: str) -> tuple[str, list[str]]:
    write_migration(
        project, "blog", "0002_broken.py", "blogbroken", base,
        'op.add_column("posts", sa.Column("x", sa.Integer())', 'op.drop_column("posts", "x")',
    )
    return "migration-files", ["migrations/blog/0002_broken.py: syntax error at line"]


def empty_downgrade(project: Project, base: str) -> tuple[str, list[str]]:
    with_post_columns(project, "subtitle: Mapped[str | None] = mapped_column(db.String(100))")
    write_migration(
        project, "blog", "0002_subtitle.py", "blogsubtitle", base,
        'op.add_column("posts", sa.Column("subtitle", sa.String(100), nullable=True))', "pass",
    )
    return "migration-files", ["blog.0002_subtitle", "downgrade() is empty but upgrade() is not"]


BROKEN = [
    two_heads, model_without_migration, downgrade_leaves_a_column, downgrade_drops_renamed_data,
    undeclared_dependency, syntax_error, empty_downgrade,
]


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize("downgrade, fails", [
    ("op.execute(\"DELETE FROM users WHERE email IN ('a@example.com', 'b@example.com')\")", False),
    ('op.execute("DELETE FROM users")', True),
], ids=["takes-back-its-rows", "empties-the-table"])
def test_a_seed_migration_whose_downgrade_takes_back_its_rows_passes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, db_url: str, downgrade: str, fails: bool
) -> None:
    """A seed (rows inserted by the upgrade) reverted by a DELETE ... WHERE of those rows is
    not silent data loss (the guard counts whatever it deletes at run time); emptying the
    table, rows that were there before included, is."""
    project = project_in(pytester, monkeypatch, db_url)
    write_migration(
        project, "accounts", "0002_seed.py", "accountsseed", revision_of(project, "accounts", "0001"),
        "op.execute(\"INSERT INTO users (email) VALUES ('a@example.com'), ('b@example.com')\")",
        downgrade,
    )
    found = run_checks(pytester)
    if fails:
        assert "accounts.0002_seed: its downgrade" in only_failure(found, "no-silent-data-loss")
    else:
        assert found == {name: ("passed", "") for name in CHECKS}


@pytest.mark.backends("sqlite", "postgresql")
@pytest.mark.parametrize("breakage", BROKEN, ids=[b.__name__ for b in BROKEN])
def test_a_broken_migration_fails_exactly_its_check(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, db_url: str, breakage: object
) -> None:
    project = project_in(pytester, monkeypatch, db_url)
    check, expected = breakage(project, revision_of(project, "blog", "0001"))  # type: ignore[operator]
    project.app()  # the edited models, imported afresh
    text = only_failure(run_checks(pytester), check)
    assert "Traceback" not in text and "def " not in text, text
    for part in expected:
        assert part in text, text


# -- the migrator ----------------------------------------------------------------------------

#: blog.0002: a slug column filled from the titles (a data migration), dropped on the way back.
SLUGS_UPGRADE = '''
op.add_column("posts", sa.Column("slug", sa.String(200), nullable=True))
op.execute("UPDATE posts SET slug = lower(title)")
'''
SLUGS_DOWNGRADE = '''
with op.batch_alter_table("posts") as batch:
    batch.drop_column("slug")
'''

MIGRATOR_TESTS = '''
import pytest
from flask_rollback import RollbackError


def test_forward_and_back(migrator):
    migrator.apply("blog", "0001")
    assert migrator.applied == ["accounts.0001_initial", "blog.0001_initial"]
    assert set(migrator.table("posts").c.keys()) == {"id", "title", "author_id"}
    migrator.apply("blog.0002")
    assert "slug" in migrator.table("posts").c
    migrator.apply("blog zero")
    assert migrator.applied == ["accounts.0001_initial"]
    migrator.apply("blogslugs")  # a revision id
    assert migrator.applied == ["accounts.0001_initial", "blog.0001_initial", "blog.0002_slugs"]
    migrator.apply([("blog", "0001_initial"), "accounts"], allow_data_loss=True)
    assert migrator.applied == ["accounts.0001_initial", "blog.0001_initial"]


def test_data_migration(migrator):
    """Django-test-migrations' example: rows written at the old state, asserted at the new."""
    migrator.apply("blog", "0001")
    author = migrator.insert("users", email="ada@example.com")
    migrator.insert("posts", rows=[
        {"title": "Hello World", "author_id": author},
        {"title": "Second", "author_id": author},
    ])
    migrator.apply("blog", "0002")
    assert [row["slug"] for row in migrator.rows("posts")] == ["hello world", "second"]
    with pytest.raises(RollbackError, match="would destroy existing data: .*allow_data_loss=True"):
        migrator.apply("blog", "0001")
    assert "slug" in migrator.table("posts").c
    migrator.apply("blog", "0001", allow_data_loss=True)
    assert "slug" not in migrator.table("posts").c
    assert [row["title"] for row in migrator.rows("posts")] == ["Hello World", "Second"]


def test_tables_are_the_migrated_state_not_the_models(migrator, flask_rollback_app):
    ext = flask_rollback_app.extensions["sqlalchemy"]
    assert "slug" in ext.metadata.tables["posts"].c  # the models have it
    migrator.apply("blog", "0001")
    posts = migrator.table("posts")
    assert "slug" not in posts.c
    with migrator.connection("posts") as connection:
        assert connection.execute(posts.select()).all() == []


def test_upgrade_and_reset(migrator):
    migrator.upgrade()
    assert migrator.applied == ["accounts.0001_initial", "blog.0001_initial", "blog.0002_slugs"]
    migrator.reset()
    assert migrator.applied == []
    with pytest.raises(RollbackError, match="no database holds a table 'posts'"):
        migrator.table("posts")


def test_unknown_app(migrator):
    migrator.apply("nope", "0001")


def test_unknown_revision(migrator):
    migrator.apply("blog", "0099")
'''


@pytest.mark.backends("sqlite", "postgresql")
def test_migrator(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, db_url: str) -> None:
    project = project_in(pytester, monkeypatch, db_url)
    with_post_columns(project, "slug: Mapped[str | None] = mapped_column(db.String(200))")
    write_migration(
        project, "blog", "0002_slugs.py", "blogslugs", revision_of(project, "blog", "0001"),
        SLUGS_UPGRADE, SLUGS_DOWNGRADE,
    )
    project.app()
    written = pytester.makepyfile(test_migrations=MIGRATOR_TESTS).read_text().splitlines()
    recorder = pytester.inline_run(*PLUGIN)
    reports = {
        report.nodeid.split("::")[-1]: report
        for report in recorder.getreports("pytest_runtest_logreport")
        if report.when == "call"
    }
    outcomes = {name: report.outcome for name, report in reports.items()}
    assert outcomes == {
        "test_forward_and_back": "passed",
        "test_data_migration": "passed",
        "test_tables_are_the_migrated_state_not_the_models": "passed",
        "test_upgrade_and_reset": "passed",
        "test_unknown_app": "failed",
        "test_unknown_revision": "failed",
    }, {name: report.longreprtext for name, report in reports.items()}
    # one line each, where the test called the migrator: no traceback
    app_line = written.index('    migrator.apply("nope", "0001")') + 1
    revision_line = written.index('    migrator.apply("blog", "0099")') + 1
    assert reports["test_unknown_app"].longreprtext == (
        f"test_migrations.py:{app_line}: flask-rollback: unknown app 'nope'; known apps: accounts, blog"
    )
    assert reports["test_unknown_revision"].longreprtext == (
        f"test_migrations.py:{revision_line}: flask-rollback: no migration in app 'blog' matches "
        "'0099'; see 'flask db showmigrations'"
    )


# -- loading, configuration and bad input ------------------------------------------------------


def entry_point_line() -> str:
    """setup.cfg's pytest11 entry point, as the installed package declares it."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return parser["options.entry_points"]["pytest11"].strip()


def test_the_entry_point_and_p_and_pytest_plugins_load_it_once(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed, the package's entry point loads the plugin; naming it again with ``-p`` or
    in a conftest's ``pytest_plugins`` finds it loaded (pluggy refuses a module registered
    under two names)."""
    site = pytester.mkdir("site")
    dist = site / "flask_rollback_entry-0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: flask-rollback-entry\nVersion: 0\n")
    (dist / "entry_points.txt").write_text(f"[pytest11]\n{entry_point_line()}\n")
    monkeypatch.syspath_prepend(str(site))
    pytester.makepyfile("def test_fixture(flask_rollback_config):\n    assert flask_rollback_config == {}\n")
    quiet = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")
    pytester.runpytest(*quiet).assert_outcomes(passed=1)  # the entry point alone
    pytester.runpytest(*PLUGIN).assert_outcomes(passed=1)
    pytester.makeconftest('pytest_plugins = ["flask_rollback.testing.plugin"]')
    pytester.runpytest(*PLUGIN).assert_outcomes(passed=1)


def test_an_unused_plugin_changes_nothing(pytester: pytest.Pytester) -> None:
    """No checks without --flask-rollback, and a test not using the plugin keeps its traceback."""
    pytester.makepyfile(
        """
        from flask_rollback import RollbackError

        def test_plain():
            raise RollbackError("plain failure")
        """
    )
    recorder = pytester.inline_run(*PLUGIN)
    reports = [r for r in recorder.getreports("pytest_runtest_logreport") if r.when == "call"]
    assert [(r.nodeid, r.outcome) for r in reports] == [("test_an_unused_plugin_changes_nothing.py::test_plain", "failed")]
    assert 'raise RollbackError("plain failure")' in reports[0].longreprtext


def test_checks_without_an_app_say_how_to_name_it(pytester: pytest.Pytester) -> None:
    recorder = pytester.inline_run(*PLUGIN, "--flask-rollback", "-k", "one-head")
    (report,) = [r for r in recorder.getreports("pytest_runtest_logreport") if r.failed]
    assert report.nodeid == "flask-rollback::one-head-per-app"
    assert report.longreprtext == (
        "flask-rollback: set flask_rollback_app = module:create_app in pytest.ini (or pass "
        "--flask-rollback-app), or override the flask_rollback_app fixture"
    )


FACTORIES = '''
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from flask_rollback import Rollback

db = SQLAlchemy()
rollback = Rollback()


def no_config():
    return Flask(__name__)


def ignores_config(test_config=None):
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///real.db"
    db.init_app(app)
    rollback.init_app(app, db)
    return app


app = no_config()
'''


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("factories:no_config", "factories:no_config takes no argument, so the plugin cannot give it a test database"),
        ("factories:ignores_config", "factories:ignores_config did not use the test config's SQLALCHEMY_DATABASE_URI"),
        ("factories:app", "flask_rollback_app = 'factories:app' is an app object, not a factory"),
        ("factories:missing", "flask_rollback_app = 'factories:missing': module 'factories' has no 'missing'"),
        ("nosuchmodule", "flask_rollback_app = 'nosuchmodule': cannot import 'nosuchmodule'"),
    ],
)
def test_a_factory_the_plugin_cannot_use_is_one_line(pytester: pytest.Pytester, factory: str, message: str) -> None:
    """The app is never made on its usual database: the test stops at setup with one line."""
    pytester.makepyfile(factories=FACTORIES, test_it="def test_it(migrator):\n    pass\n")
    recorder = pytester.inline_run(*PLUGIN, "--flask-rollback-app", factory, "test_it.py")
    (report,) = [r for r in recorder.getreports("pytest_runtest_logreport") if r.failed]
    assert report.when == "setup"
    assert report.longreprtext.startswith(f"flask-rollback: {message}"), report.longreprtext
    assert "\n" not in report.longreprtext
    assert not list(pytester.path.rglob("real.db"))
