"""Flask-Migrate compatibility: its Python functions (same names, parameters and defaults, called
from app code), every option of its ``flask db`` commands, and the clear error when another
package's ``flask db`` (Flask-Migrate 2.x's entry point) shadows ours.

Real projects on real databases (SQLite and PostgreSQL); the shadowing runs ``flask`` as a
subprocess with a fake distribution on ``PYTHONPATH``, since entry points are read from disk.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flask_migrate  # type: ignore[import-untyped]
import flask_migrate.cli  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa
from click.testing import Result

import flask_rollback
from flask_rollback import (
    RollbackError,
    branches,
    check,
    current,
    downgrade,
    edit,
    heads,
    history,
    list_templates,
    merge,
    migrate,
    revision,
    show,
    stamp,
    upgrade,
)
from flask_rollback import compat as compat_module
from flask_rollback.cli import db_group
from flask_rollback.commands import CheckReport, RunResult, Status
from flask_rollback.errors import EXIT_DATABASE_BEHIND
from tests.projects import (
    ACCOUNTS_MODELS,
    Project,
    fingerprint,
    folder_state,
    new_project,
    revision_of,
    write_migration,
)

#: The functions the issue names; Flask-Migrate's public command functions must be exactly these.
FLASK_MIGRATE_FUNCTIONS = {
    "init", "revision", "migrate", "edit", "merge", "upgrade", "downgrade", "show", "history",
    "heads", "branches", "current", "stamp", "check", "list_templates",
}
ACCOUNTS_BIO = ACCOUNTS_MODELS + "    bio: Mapped[str | None] = mapped_column(db.String(200))\n"
FACTORY_END = "    rollback.init_app(app, db)\n    return app\n"


# -- helpers ------------------------------------------------------------------------------------


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result


def one_error_line(result: Result, code: int = 1) -> str:
    """A refusal: the exit code, exactly one ``Error:`` line, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def initial(tmp_path: Path, url: str) -> Project:
    """The example project (accounts, blog -> accounts) with its initial migrations written."""
    project = new_project(tmp_path, url)
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    return project


def labels(result: RunResult) -> list[str]:
    return [step.migration.label for step, _ in result.report.done]


def versions(project: Project) -> set[str]:
    return {row[0] for row in project.query("SELECT version_num FROM alembic_version")}


def columns(project: Project, table: str) -> set[str]:
    engine = project.engine()
    try:
        return {column["name"] for column in sa.inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def upgrade_on_start(project: Project) -> None:
    """The app factory calls ``upgrade()`` as it starts (a common Flask-Migrate pattern)."""
    path = project.package_dir / "__init__.py"
    text = path.read_text()
    assert FACTORY_END in text
    path.write_text(
        "from flask_rollback import upgrade\n"
        + text.replace(
            FACTORY_END,
            "    rollback.init_app(app, db)\n"
            "    with app.app_context():\n"
            "        app.extensions['startup_upgrade'] = upgrade()\n"
            "    return app\n",
        )
    )


# -- the Python functions -----------------------------------------------------------------------


def test_signatures_match_flask_migrate() -> None:
    """Same names, parameter order, kinds and defaults as the installed Flask-Migrate."""
    public = {
        name for name, function in vars(flask_migrate).items()
        if inspect.isfunction(function) and hasattr(function, "__wrapped__")  # @catch_errors
    }
    assert public == FLASK_MIGRATE_FUNCTIONS
    assert set(compat_module.__all__) == FLASK_MIGRATE_FUNCTIONS
    assert FLASK_MIGRATE_FUNCTIONS <= set(flask_rollback.__all__)
    for name in sorted(FLASK_MIGRATE_FUNCTIONS):
        theirs = inspect.signature(getattr(flask_migrate, name)).parameters.values()
        ours = inspect.signature(getattr(flask_rollback, name)).parameters.values()
        assert [(p.name, p.kind, p.default) for p in ours] == [
            (p.name, p.kind, p.default) for p in theirs
        ], name


def test_app_factory_upgrades_on_start(tmp_path: Path, db_url: str) -> None:
    project = initial(tmp_path, db_url)
    upgrade_on_start(project)

    result = project.app().extensions["startup_upgrade"]
    assert isinstance(result, RunResult)
    assert labels(result) == ["accounts.0001_initial", "blog.0001_initial"]
    assert {"users", "posts"} <= project.tables()
    assert versions(project) == {revision_of(project, "blog", "0001")}

    again = project.app().extensions["startup_upgrade"]
    assert again.plan.steps == [] and again.report.done == []


def test_backup_import_stamps_heads_then_upgrades(tmp_path: Path, db_url: str) -> None:
    """An importer restores tables (here: create_all plus a row), stamps heads, then upgrades."""
    project = initial(tmp_path, db_url)
    app = project.app()
    package = sys.modules[project.package]
    with app.app_context():
        package.db.create_all()
    project.query_write("INSERT INTO users (id, email) VALUES (1, 'ada@example.com')")

    with app.app_context():
        stamped = stamp(revision="heads")
        assert isinstance(stamped, RunResult) and stamped.plan.kind == "stamp"
        assert labels(stamped) == ["accounts.0001_initial", "blog.0001_initial"]
        assert upgrade().report.done == []
    assert [bool(fake) for (fake,) in project.query("SELECT fake FROM rollback_log")] == [True, True]

    project.write("accounts/models.py", ACCOUNTS_BIO)
    app = project.app()
    with app.app_context():
        (new,) = migrate(message="profile bio")
        assert new.path is not None and labels(upgrade()) == [f"accounts.{new.path.stem}"]
    assert "bio" in columns(project, "users")
    assert project.query("SELECT email FROM users") == [("ada@example.com",)]


def test_functions_run_and_return_objects(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    project = initial(tmp_path, db_url)
    accounts_1, blog_1 = revision_of(project, "accounts", "0001"), revision_of(project, "blog", "0001")
    app = project.app()
    with app.app_context():
        with pytest.raises(RollbackError, match="the database is behind") as behind:
            check()
        assert behind.value.exit_code == EXIT_DATABASE_BEHIND
        upgrade()
        assert isinstance(check(), CheckReport)

        status = current()
        assert isinstance(status, Status)
        assert {app.label: app.current for app in status.apps} == {
            "accounts": [accounts_1], "blog": [blog_1],
        }
        assert [m.revision for m in heads()] == [accounts_1, blog_1]
        assert [m.revision for m in history()] == [accounts_1, blog_1]  # per app, as printed

        reverted = downgrade(revision="-1")
        assert [(s.migration.label, s.direction) for s, _ in reverted.report.done] == [
            ("blog.0001_initial", "down")
        ]
        assert "posts" not in project.tables()
        upgrade(revision="blog@heads")  # Alembic's spelling of the app's head
    capsys.readouterr()

    project.write("accounts/models.py", ACCOUNTS_BIO)
    app = project.app()
    with app.app_context():
        (new,) = migrate(message="profile bio")
        assert (new.app, new.path.name if new.path else None) == ("accounts", "0002_profile_bio.py")
        (fix,) = revision(message="data fix", head="blog@head", rev_id="blog_fix_0002")
        assert fix.app == "blog" and fix.revision == "blog_fix_0002"
        assert revision_of(project, "blog", "0002") == "blog_fix_0002"

        planned = upgrade(sql=True)
        printed = capsys.readouterr().out
        assert planned.sql is not None and "bio" in planned.sql and printed == planned.sql
        assert "bio" not in columns(project, "users")

        one_more = upgrade(revision=f"{accounts_1}+1")  # Alembic's REV+N: within the app
        assert labels(one_more) == ["accounts.0002_profile_bio"]
        assert labels(upgrade()) == ["blog.0002_data_fix"]
    assert "bio" in columns(project, "users")


@pytest.fixture(scope="module")
def refusing_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """SQLite, applied, accounts with two migrations (so 0001 is not a head)."""
    tmp_path = tmp_path_factory.mktemp("refusals")
    project = initial(tmp_path, f"sqlite:///{tmp_path / 'test.db'}")
    ok(project.db("revision", "--app", "accounts", "-m", "second"))
    ok(project.db("upgrade"))
    yield project


REFUSALS: list[tuple[Callable[..., Any], dict[str, Any], str]] = [
    (revision, {"splice": True}, "splice (--splice) is not supported by flask-rollback: every app is one branch"),
    (revision, {"branch_label": "extra"}, "branch_label (--branch-label) is not supported"),
    (migrate, {"version_path": "elsewhere"}, "version_path (--version-path) is not supported"),
    (migrate, {"sql": True}, "sql (--sql) is not supported by flask-rollback: creating a migration runs no SQL"),
    (revision, {"head": "ACCOUNTS_0001"}, "use head='accounts@head'"),
    (revision, {"rev_id": "bad id", "head": "blog@head"}, "invalid revision 'bad id'"),
    (revision, {"rev_id": "ACCOUNTS_0001", "head": "blog@head"}, "is already used by accounts.0001_initial"),
    (flask_rollback.init, {"multidb": True}, "multidb (--multidb) is not supported"),
    (flask_rollback.init, {"template": "flask-multidb"}, "template 'flask-multidb' is not supported"),
    (stamp, {"sql": True}, "sql (--sql) with stamp is not supported"),
    (merge, {"branch_label": "x"}, "branch_label (--branch-label) is not supported"),
    (merge, {"revisions": "heads"}, "no app has more than one head; nothing to merge"),
    (upgrade, {"revision": "abc:def"}, "revision range 'abc:def' is Alembic's offline form"),
]


@pytest.mark.parametrize(
    ("function", "arguments", "message"), REFUSALS,
    ids=[f"{f.__name__}-{'-'.join(a)}" for f, a, _ in REFUSALS],
)
def test_a_parameter_that_cannot_be_honoured_raises(
    refusing_project: Project, function: Callable[..., Any], arguments: dict[str, Any], message: str
) -> None:
    accounts_1 = revision_of(refusing_project, "accounts", "0001")
    arguments = {k: v.replace("ACCOUNTS_0001", accounts_1) if isinstance(v, str) else v
                 for k, v in arguments.items()}
    files, database = folder_state(refusing_project), fingerprint(refusing_project)
    app = refusing_project.app()
    with app.app_context(), pytest.raises(RollbackError) as refused:
        function(**arguments)
    assert message in str(refused.value)
    assert folder_state(refusing_project) == files and fingerprint(refusing_project) == database


def test_outside_an_app_context_is_an_error() -> None:
    with pytest.raises(RollbackError, match=r"inside 'with app.app_context\(\):'"):
        upgrade()


def test_merge_takes_flask_migrate_revisions(tmp_path: Path) -> None:
    project = initial(tmp_path, f"sqlite:///{tmp_path / 'test.db'}")
    blog_1 = revision_of(project, "blog", "0001")
    for name in ("left", "right"):
        write_migration(project, "blog", f"0002_{name}.py", f"blog_{name}", blog_1, "pass")
    app = project.app()
    with app.app_context():
        with pytest.raises(RollbackError, match="are not the heads of one app"):
            merge(revisions=["blog_left", blog_1])
        joined = merge(revisions=["blog_left", "blog_right"], message="join", rev_id="blog_join")
    assert (joined.app, joined.revision) == ("blog", "blog_join")
    assert revision_of(project, "blog", "0003") == "blog_join"
    assert [m.revision for m in _heads(project)] == [revision_of(project, "accounts", "0001"), "blog_join"]


def _heads(project: Project) -> list[Any]:
    app = project.app()
    with app.app_context():
        return heads()


# -- the CLI options ----------------------------------------------------------------------------


def test_every_flask_migrate_option_is_accepted() -> None:
    """Each option (every spelling) and argument of every Flask-Migrate 4.1 command exists on
    ours; the ones that do not fit per-app branches are refused when used (tests below)."""
    for name, theirs in flask_migrate.cli.db.commands.items():
        ours = db_group.commands[name]
        spellings = {opt for param in ours.params for opt in (*param.opts, *param.secondary_opts)}
        for param in theirs.params:
            if param.param_type_name == "argument":
                assert any(p.param_type_name == "argument" for p in ours.params), (name, param.name)
            else:
                missing = {*param.opts, *param.secondary_opts} - spellings
                assert not missing, (name, missing)
    group_spellings = {opt for param in db_group.params for opt in param.opts}
    assert {opt for param in flask_migrate.cli.db.params for opt in param.opts} <= group_spellings


CLI_REFUSALS = [
    (("init", "--multidb"), "multidb (--multidb)"),
    (("init", "-t", "aioflask"), "template 'aioflask'"),
    (("revision", "--splice", "--app", "blog"), "splice (--splice)"),
    (("revision", "--branch-label", "extra", "--app", "blog"), "branch_label (--branch-label)"),
    (("revision", "--version-path", "x", "--app", "blog"), "version_path (--version-path)"),
    (("revision", "--sql", "--app", "blog"), "sql (--sql)"),
    (("migrate", "--splice"), "splice (--splice)"),
    (("migrate", "--head", "nope@head"), "nope"),
    (("merge", "--branch-label", "x", "blog"), "branch_label (--branch-label)"),
    (("stamp", "--sql", "heads"), "sql (--sql) with stamp"),
    (("upgrade", "abc:def"), "revision range 'abc:def' is Alembic's offline form, only for the SQL"),
    (("revision", "--app", "blog", "--rev-id", "no-dashes"), "invalid revision 'no-dashes'"),
]


@pytest.mark.parametrize(("args", "message"), CLI_REFUSALS, ids=[" ".join(a) for a, _ in CLI_REFUSALS])
def test_cli_options_that_do_not_fit_are_refused(
    refusing_project: Project, args: tuple[str, ...], message: str
) -> None:
    files = folder_state(refusing_project)
    assert message in one_error_line(refusing_project.db(*args))
    assert folder_state(refusing_project) == files


def test_rev_id_on_the_cli(tmp_path: Path, db_url: str) -> None:
    project = initial(tmp_path, db_url)
    ok(project.db("upgrade"))
    ok(project.db("revision", "--head", "accounts@head", "--rev-id", "accounts_fix", "-m", "fix"))
    assert revision_of(project, "accounts", "0002") == "accounts_fix"
    assert "accounts_fix" in one_error_line(
        project.db("revision", "--app", "blog", "--rev-id", "accounts_fix")
    )
    ok(project.db("upgrade"))

    project.write("accounts/models.py", ACCOUNTS_BIO)
    ok(project.db("migrate", "-m", "bio", "--rev-id", "accounts_bio"))
    assert revision_of(project, "accounts", "0003") == "accounts_bio"


TAGGED = """
from alembic import context
name = "_".join(["tagged", context.get_tag_argument() or "untagged", *context.get_x_argument()])
op.{verb}_table(name{columns})
"""


def test_tag_and_x_reach_migrations(tmp_path: Path, db_url: str) -> None:
    """``--tag`` (and ``-x`` after the command) reach ``context.get_tag_argument()`` in a
    migration, from the CLI, in ``--sql`` output and from the Python API."""
    project = initial(tmp_path, db_url)
    write_migration(
        project, "accounts", "0002_tagged.py", "accounts_tagged", revision_of(project, "accounts", "0001"),
        TAGGED.format(verb="create", columns=', sa.Column("id", sa.Integer, primary_key=True)'),
        TAGGED.format(verb="drop", columns=""),
    )
    sql = ok(project.db("upgrade", "--sql", "--tag", "r42", "-x", "eu")).output
    assert "CREATE TABLE tagged_r42_eu" in sql

    ok(project.db("upgrade", "--tag", "r42", "-x", "eu"))
    assert "tagged_r42_eu" in project.tables()
    ok(project.db("downgrade", "accounts@-1", "--tag", "r42", "-x", "eu"))
    assert "tagged_r42_eu" not in project.tables()

    app = project.app()
    with app.app_context():
        assert labels(upgrade(tag="py", x_arg="api")) == ["accounts.0002_tagged"]
        assert "tagged_py_api" in project.tables()
        assert labels(downgrade(tag="py", x_arg=["api"])) == ["accounts.0002_tagged"]
    assert not {"tagged_py_api", "tagged_untagged"} & project.tables()


def test_package_directory_and_informational_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``init --package``, ``-d`` after the command, and the options of the look-only commands."""
    monkeypatch.setenv("EDITOR", "true")  # edit opens $EDITOR
    project = new_project(tmp_path, f"sqlite:///{tmp_path / 'test.db'}")
    other = tmp_path / "other_migrations"
    ok(project.db("init", "--package", "-d", str(other)))
    assert {p.relative_to(other).as_posix() for p in other.rglob("__init__.py")} == {
        "__init__.py", "accounts/__init__.py", "blog/__init__.py"
    }
    assert not project.migrations.exists()
    ok(project.db("migrate", "-d", str(other), "-m", "start"))
    ok(project.db("upgrade", "-d", str(other)))
    assert {"users", "posts"} <= project.tables()

    resolved = ok(project.db("-d", str(other), "heads", "--resolve-dependencies")).output
    everything = ok(project.db("-d", str(other), "heads")).output
    assert resolved.count("blog:") == 1 and "accounts:" not in resolved  # blog depends on it
    assert everything.count("accounts:") == 1
    for args in (("history", "-r", "base:heads", "-v", "-i"), ("current", "-v"), ("branches", "-v"),
                 ("show", "head"), ("edit", "blog@head"), ("check",), ("list-templates",)):
        ok(project.db("-d", str(other), *args))

    app = project.app()
    with app.app_context():
        blog_head = [m.label for m in show(directory=str(other), revision="blog@head")]
        assert blog_head == ["blog.0001_start"]
        assert [m.label for m in edit(directory=str(other))] == ["accounts.0001_start", "blog.0001_start"]
        assert branches(directory=str(other)) == []
        assert list_templates() == compat_module.TEMPLATES


# -- another package's `flask db` ---------------------------------------------------------------

FAKE_CLI = '''
import click
from flask import current_app
from flask.cli import with_appcontext


@click.group()
def db():
    """Perform database migrations (an old Flask-Migrate)."""


@db.command()
@with_appcontext
def upgrade():
    click.echo(f"fakepkg upgraded {current_app.name}")
'''


def fake_distribution(folder: Path) -> Path:
    """A distribution ``fake-flask-migrate`` declaring ``[flask.commands] db``, as Flask-Migrate
    2.x did; returns the folder to put on PYTHONPATH."""
    info = folder / "fake_flask_migrate-2.7.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-flask-migrate\nVersion: 2.7.0\n")
    (info / "entry_points.txt").write_text("[flask.commands]\ndb = fakepkg.cli:db\n")
    (folder / "fakepkg").mkdir()
    (folder / "fakepkg" / "__init__.py").write_text("")
    (folder / "fakepkg" / "cli.py").write_text(textwrap.dedent(FAKE_CLI))
    return folder


def run_python(project: Project, site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in the project, with the fake distribution installed (on PYTHONPATH)."""
    env = project.env()
    env["PYTHONPATH"] = os.pathsep.join([str(site), env["PYTHONPATH"]])
    return subprocess.run(
        [sys.executable, *args],
        cwd=project.root, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def run_flask(project: Project, site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_python(project, site, "-m", "flask", *args)


def test_another_packages_flask_db_is_named(tmp_path: Path) -> None:
    project = new_project(tmp_path, f"sqlite:///{tmp_path / 'test.db'}")
    site = fake_distribution(tmp_path / "site")

    shadowed = run_flask(project, site, "db", "upgrade")
    assert shadowed.returncode == 2, shadowed
    (line,) = shadowed.stderr.strip().splitlines()
    assert line.startswith("Error: 'flask db' runs fake-flask-migrate's command (fakepkg.cli:db)")
    assert "pip uninstall fake-flask-migrate" in line and 'ROLLBACK_COMMAND = "rollback"' in line
    assert "fakepkg upgraded" not in shadowed.stdout

    listed = run_flask(project, site, "--help")
    assert listed.returncode == 0
    assert listed.stderr.strip().splitlines() == [line.replace("Error:", "Warning:", 1)]

    routes = run_flask(project, site, "routes")  # another command: the warning, then its work
    assert routes.returncode == 0 and "static" in routes.stdout
    assert routes.stderr.strip().splitlines() == [line.replace("Error:", "Warning:", 1)]

    # A web server importing the app is not the Flask CLI: nothing printed, nothing stopped.
    imported = run_python(project, site, "-c", f"import {project.package} as p; p.create_app()")
    assert (imported.returncode, imported.stdout, imported.stderr) == (0, "", "")

    project.set_factory(["accounts", "blog"], config={"ROLLBACK_COMMAND": "rollback"})
    for args in (("init",), ("makemigrations",), ("upgrade",)):
        ran = run_flask(project, site, "rollback", *args)
        assert ran.returncode == 0 and ran.stderr == "", ran
    assert {"users", "posts"} <= project.tables()
    theirs = run_flask(project, site, "db", "upgrade")
    assert theirs.returncode == 0 and theirs.stdout.startswith("fakepkg upgraded") and theirs.stderr == ""
