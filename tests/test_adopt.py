"""Coming from Flask-Migrate: ``flask db adopt`` and ``flask db upgrade --fake-initial``.

Real projects and real Flask-Migrate: each history is written by ``flask_migrate.Migrate`` and
its ``flask db init/migrate/revision/upgrade``, run as subprocesses, on the test's own database
(rows included); then the app switches to ``Rollback`` and the folder is adopted. Refusals
compare the migrations folder and the database before and after.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flask_rollback.loader import runs_our_env
from tests.projects import (
    ACCOUNTS_MODELS,
    BLUEPRINT,
    Project,
    fingerprint,
    flask_migrate_factory,
    folder_state,
    new_project,
)

FLASK_MIGRATE_FACTORY = flask_migrate_factory()

#: The same app after the switch: ``Migrate(app, db)`` replaced by ``Rollback(app, db)``; the
#: models are kept as they are (no naming convention was used with Flask-Migrate).
ROLLBACK_FACTORY = '''
import os
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from flask_rollback import Rollback

db = SQLAlchemy()
rollback = Rollback()


def create_app():
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["TEST_DATABASE_URL"]
    app.config["ROLLBACK_DIRECTORY"] = os.environ["TEST_MIGRATIONS"]
    app.config.update(CONFIG)
    db.init_app(app)
    from . import models  # noqa: F401
    for name in BLUEPRINTS:
        app.register_blueprint(__import__(f"{{__name__}}.{{name}}", fromlist=["bp"]).bp)
    rollback.init_app(app, db)
    return app


CONFIG = {config!r}
BLUEPRINTS = {blueprints!r}
'''

USER = '''
class User(db.Model):
    __tablename__ = "users"
    id = db.Column(db.Integer, primary_key=True)
    email = db.Column(db.String(120), unique=True)
'''
USER_BIO = USER + "    bio = db.Column(db.String(200))\n"
POST = '''
class Post(db.Model):
    __tablename__ = "posts"
    id = db.Column(db.Integer, primary_key=True)
    title = db.Column(db.String(200))
    user_id = db.Column(db.Integer, db.ForeignKey("users.id"))
'''
MODELS = "from . import db\n" + USER + POST
MODELS_BIO = "from . import db\n" + USER_BIO + POST

BACKFILL_UP = "op.execute(\"UPDATE users SET bio = 'none' WHERE bio IS NULL\")"
BACKFILL_DOWN = "op.execute(\"UPDATE users SET bio = NULL WHERE bio = 'none'\")"

#: Lines added to Flask-Migrate's env.py: what a team customised over the years.
CUSTOM_ENV_FUNCTIONS = '''

def include_object(object, name, type_, reflected, compare_to):
    return not name.startswith("legacy_")


def render_item(type_, obj, autogen_context):
    return False

'''
CUSTOM_ENV_KEYWORDS = (
    "include_object=include_object, render_item=render_item, compare_server_default=True, "
    'version_table="custom_version", user_module_prefix="myapp.types.", '
)


# -- helpers ------------------------------------------------------------------------------------


def fm_project(tmp_path: Path, url: str) -> Project:
    """A Flask-Migrate app (users, posts) with no migrations folder yet."""
    project = Project(tmp_path, f"fm_{uuid.uuid4().hex[:10]}", url)
    project.write("__init__.py", FLASK_MIGRATE_FACTORY)
    project.write("models.py", MODELS)
    return project


def as_shown(project: Project, path: Path) -> str:
    """A path as a command run in the project prints it: relative to the project's folder."""
    return os.path.relpath(path, project.root)


def run(project: Project, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    """``flask db ARGS`` as a subprocess, with the exit code checked and no traceback."""
    result = project.run(*args)
    assert result.returncode == code, (args, result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def build_history(project: Project) -> None:
    """Flask-Migrate writes and applies: users and posts (rows added), users.bio, a backfill."""
    run(project, "init")
    run(project, "migrate", "-m", "create users and posts")
    run(project, "upgrade")
    project.query_write(
        "INSERT INTO users (email) VALUES ('ada@example.com'), ('bob@example.com')",
        "INSERT INTO posts (title, user_id) VALUES ('hello', 1)",
    )
    project.write("models.py", MODELS_BIO)
    run(project, "migrate", "-m", "add bio")
    run(project, "upgrade")
    run(project, "revision", "-m", "backfill bio")
    (backfill,) = (project.migrations / "versions").glob("*_backfill_bio.py")
    text = backfill.read_text()
    text = re.sub(r"def upgrade\(\):\n(    .*\n|\n)*", f"def upgrade():\n    {BACKFILL_UP}\n\n\n", text)
    text = re.sub(r"def downgrade\(\):\n(    .*\n?|\n)*", f"def downgrade():\n    {BACKFILL_DOWN}\n", text)
    backfill.write_text(text)
    run(project, "upgrade")


def switch_to_rollback(
    project: Project, blueprints: tuple[str, ...] = (), config: dict[str, Any] | None = None
) -> None:
    project.write("__init__.py", ROLLBACK_FACTORY.format(config=config or {}, blueprints=list(blueprints)))


def module_value(path: Path, name: str) -> Any:
    tree = ast.parse(path.read_text())
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return ast.literal_eval(node.value)  # type: ignore[union-attr, arg-type]
    raise AssertionError(f"{path} declares no {name}")


def as_set(value: str | list[str] | tuple[str, ...] | None) -> set[str]:
    """``depends_on`` as a set: Alembic writes one revision as a string."""
    return {value} if isinstance(value, str) else set(value or ())


def history_ids(folder: Path) -> list[str]:
    """The revision ids of a Flask-Migrate versions/ folder, parents first."""
    parents = {
        module_value(path, "revision"): module_value(path, "down_revision")
        for path in folder.glob("*.py")
    }
    order: list[str] = []
    while len(order) < len(parents):
        order += [rev for rev, parent in parents.items() if parent == (order[-1] if order else None)]
    return order


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and its content hash."""
    return folder_state(Project(folder.parent, "", "")) if folder.name == "migrations" else {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def state(project: Project) -> tuple[dict[str, str], str | None, list[str]]:
    """The migrations folder, the database (None: no SQLite file) and what sits next to the
    folder (a backup would); the migration lock's file is not state."""
    exists = not project.url.startswith("sqlite") or Path(project.url.removeprefix("sqlite:///")).exists()
    return (
        folder_state(project),
        fingerprint(project) if exists else None,
        sorted(p.name for p in project.root.iterdir() if not p.name.endswith(".rollback-lock")),
    )


def rows(project: Project) -> list[tuple[Any, ...]]:
    return project.query(
        "SELECT u.email, u.bio, p.title FROM users u LEFT JOIN posts p ON p.user_id = u.id ORDER BY u.id"
    )


def columns(project: Project, table: str) -> set[str]:
    engine = project.engine()
    try:
        return {column["name"] for column in sa.inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def flask_migrate_history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrations folder written by Flask-Migrate (on a throwaway SQLite database), for the
    tests whose database does not matter or that apply it themselves."""
    root = tmp_path_factory.mktemp("fm_history")
    project = fm_project(root, f"sqlite:///{root / 'history.db'}")
    build_history(project)
    return project.migrations


def copy_history(tmp_path: Path, url: str, history: Path, apply: bool = False) -> Project:
    """A Flask-Migrate project holding a copy of ``history`` (applied by Flask-Migrate when
    ``apply``), switched to Rollback."""
    project = fm_project(tmp_path, url)
    project.write("models.py", MODELS_BIO)
    shutil.copytree(history, project.migrations, ignore=shutil.ignore_patterns("__pycache__"))
    if apply:
        run(project, "upgrade")
    switch_to_rollback(project)
    return project


# -- adopt: the whole way from Flask-Migrate ------------------------------------------------------


def test_adopt_keeps_history_data_and_downgrades(tmp_path: Path, db_url: str) -> None:
    project = fm_project(tmp_path, db_url)
    build_history(project)
    ids = history_ids(project.migrations / "versions")
    assert len(ids) == 3
    originals = {module_value(p, "revision"): p.read_bytes() for p in (project.migrations / "versions").glob("*.py")}
    data = rows(project)
    assert data == [("ada@example.com", "none", "hello"), ("bob@example.com", "none", None)]
    switch_to_rollback(project)

    before = state(project)
    dry = run(project, "adopt", "--dry-run")
    assert "Would adopt" in dry.stdout and "nothing was written" in dry.stdout
    assert state(project) == before
    old_tree = folder_state(project)

    result = run(project, "adopt")
    assert "revision ids kept" in result.stdout
    backup = tmp_path / "migrations.flask-migrate-backup"
    assert f"Backup of the old folder: {as_shown(project, backup)}" in result.stdout
    assert tree(backup) == old_tree  # the old folder, every file as it was
    main = project.migrations / "main"
    assert project.files("main") == ["0001_create_users_and_posts.py", "0002_add_bio.py", "0003_backfill_bio.py"]
    assert [module_value(path, "revision") for path in sorted(main.glob("*.py"))] == ids
    root_file, *others = sorted(main.glob("*.py"))
    assert module_value(root_file, "branch_labels") == ("main",)
    assert [p.read_bytes() for p in others] == [originals[ids[1]], originals[ids[2]]]
    assert runs_our_env(project.migrations / "env.py")
    assert not (project.migrations / "env.py.orig").exists()  # the stock env.py: nothing to keep
    assert sorted(p.name for p in project.migrations.iterdir() if p.name != "__pycache__") == [
        "env.py", "main", "script.py.mako",
    ]

    # Recognised as it is: no stamping, everything applied, the models match, data intact.
    shown = run(project, "showmigrations").stdout
    assert shown.splitlines() == [
        "main", " [X] 0001_create_users_and_posts", " [X] 0002_add_bio", " [X] 0003_backfill_bio",
    ]
    assert f"main: {ids[2]} 0003_backfill_bio (head)" in run(project, "current").stdout
    run(project, "makemigrations", "--check")
    assert rows(project) == data
    again = run(project, "adopt")
    assert again.stdout.startswith("Nothing to do:")

    # The next migration is numbered after the adopted ones.
    project.write("models.py", MODELS_BIO + "    summary = db.Column(db.String(300))\n")
    run(project, "makemigrations")
    assert project.files("main")[-1] == "0004_add_posts_summary.py"
    run(project, "upgrade")

    # Downgrading past the switch really reverts, and asks before losing data.
    refused = run(project, "downgrade", "main@0001", code=6)
    assert "users.bio" in refused.stdout + refused.stderr
    assert "bio" in columns(project, "users")
    run(project, "downgrade", "main@0001", "--allow-data-loss")
    assert "bio" not in columns(project, "users") and "summary" not in columns(project, "posts")
    assert project.query("SELECT email FROM users ORDER BY id") == [("ada@example.com",), ("bob@example.com",)]
    assert project.query("SELECT version_num FROM alembic_version") == [(ids[0],)]
    run(project, "downgrade", "main", "zero", "--allow-data-loss")
    assert not {"users", "posts"} & project.tables()
    run(project, "upgrade")
    assert {"users", "posts"} <= project.tables() and "bio" in columns(project, "users")


def test_new_apps_depend_on_the_adopted_history(tmp_path: Path, sqlite_url: str, flask_migrate_history: Path) -> None:
    """The adopted history (app main) created every table; models now live in blueprints. A
    blueprint's first migrations must run after the main migration that created their tables,
    or a fresh database fails."""
    project = copy_history(tmp_path, sqlite_url, flask_migrate_history, apply=True)
    run(project, "adopt")
    ids = history_ids(tmp_path / "migrations.flask-migrate-backup" / "versions")
    project.write("models.py", "from . import db  # noqa: F401\n")
    project.write("accounts/__init__.py", BLUEPRINT.format(name="accounts"))
    project.write("accounts/models.py", "from .. import db\n" + USER_BIO)
    project.write("blog/__init__.py", BLUEPRINT.format(name="blog"))
    project.write("blog/models.py", "from .. import db\n" + POST + textwrap.dedent('''
        class Comment(db.Model):
            __tablename__ = "comments"
            id = db.Column(db.Integer, primary_key=True)
            user_id = db.Column(db.Integer, db.ForeignKey("users.id"))
        '''))
    switch_to_rollback(project, blueprints=("accounts", "blog"))
    result = run(project, "makemigrations", "blog")  # a foreign key into accounts, which has none
    assert project.files("blog") == ["0001_initial.py"]
    assert as_set(module_value(project.migrations / "blog" / "0001_initial.py", "depends_on")) == {ids[0]}
    assert ids[0] in result.stdout
    run(project, "upgrade")
    project.write("accounts/models.py", "from .. import db\n" + USER_BIO + "    age = db.Column(db.Integer)\n")
    run(project, "makemigrations")
    accounts = project.migrations / "accounts" / "0001_initial.py"
    # main 0002 is the latest adopted migration that changed users (it added bio): a fresh
    # database has users as main left it before accounts changes it
    assert as_set(module_value(accounts, "depends_on")) == {ids[1]}
    run(project, "upgrade")
    run(project, "makemigrations", "--check")

    fresh = Project(tmp_path, project.package, f"sqlite:///{tmp_path / 'fresh.db'}")
    applied = run(fresh, "upgrade", "--replay")  # every migration, in dependency order
    assert "Applied 5 migrations" in applied.stdout
    assert {"users", "posts", "comments"} <= fresh.tables() and "age" in columns(fresh, "users")


def test_adopt_plain_alembic_with_version_locations(tmp_path: Path, db_url: str) -> None:
    """An ``alembic init`` project whose revisions live in a folder of their own
    (``version_locations``): adopted from its alembic.ini, which moves into the backup."""
    subprocess.run([sys.executable, "-m", "alembic", "init", "alembic"], cwd=tmp_path, check=True, capture_output=True)
    ini = tmp_path / "alembic.ini"
    text = ini.read_text().replace("driver://user:pass@localhost/dbname", db_url.replace("%", "%%"))
    text = re.sub(r"^# version_locations = .*$", "version_locations = %(here)s/db_versions", text, flags=re.MULTILINE)
    ini.write_text(text)
    versions = tmp_path / "db_versions"
    versions.mkdir()
    first = "aaaa1111aaaa"
    users_table = (
        'op.create_table("users", sa.Column("id", sa.Integer, primary_key=True), '
        'sa.Column("email", sa.String(120), unique=True))'
    )
    for revision, parent, name, up, down in (
        (first, None, "create users", users_table, 'op.drop_table("users")'),
        ("bbbb2222bbbb", first, "add bio", 'op.add_column("users", sa.Column("bio", sa.String(200)))',
         'op.drop_column("users", "bio")'),
    ):
        (versions / f"{revision}_{name.replace(' ', '_')}.py").write_text(
            f'"""{name}"""\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
            f"revision = {revision!r}\ndown_revision = {parent!r}\nbranch_labels = None\n"
            f"depends_on = None\n\n\ndef upgrade():\n    {up}\n\n\ndef downgrade():\n    {down}\n"
        )
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    project = Project(tmp_path, f"al_{uuid.uuid4().hex[:10]}", db_url)
    project.write("models.py", "from . import db\n" + USER_BIO)
    switch_to_rollback(project)

    result = run(project, "adopt", "--from", "alembic.ini")
    assert "Alembic history" in result.stdout
    assert project.files("main") == ["0001_create_users.py", "0002_add_bio.py"]
    backup = tmp_path / "alembic.alembic-backup"
    assert (backup / "env.py").is_file() and (backup / "alembic.ini").is_file() and not ini.exists()
    assert f"Left in place (no longer read): {as_shown(project, versions)}" in result.stdout
    assert run(project, "showmigrations").stdout.splitlines() == ["main", " [X] 0001_create_users", " [X] 0002_add_bio"]
    run(project, "makemigrations", "--check")


# -- adopt: what it refuses, writing nothing ------------------------------------------------------


def test_adopted_empty_downgrades_are_listed_and_downgrade_goes_back_one(
    tmp_path: Path, db_url: str, flask_migrate_history: Path
) -> None:
    """Flask-Migrate's template writes ``pass`` in downgrade(): adopt lists those migrations;
    going back past one is refused until it says why; downgrade with no target reverts the
    most recent adopted migration (no log rows: the history's own order)."""
    project = copy_history(tmp_path, db_url, flask_migrate_history)
    ids = history_ids(project.migrations / "versions")
    (project.migrations / "versions" / "f00dfeed0001_fill_titles.py").write_text(textwrap.dedent(f'''\
        """fill titles"""
        from alembic import op

        revision = "f00dfeed0001"
        down_revision = "{ids[-1]}"
        branch_labels = None
        depends_on = None


        def upgrade():
            op.execute("UPDATE posts SET title = 'untitled' WHERE title IS NULL")


        def downgrade():
            pass
        '''))
    project.write("__init__.py", FLASK_MIGRATE_FACTORY)
    run(project, "upgrade")
    project.query_write("INSERT INTO users (email, bio) VALUES ('ada@example.com', 'none')")
    switch_to_rollback(project)

    lines = run(project, "adopt").stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "an empty downgrade()" in line)
    assert lines[start].startswith("1 adopted migration has an empty downgrade()")
    assert lines[start + 1] == "  - migrations/main/0004_fill_titles.py"

    before = fingerprint(project)
    refused = run(project, "downgrade", code=1)
    assert "0004_fill_titles" in refused.stderr and "noop_downgrade" in refused.stderr
    assert fingerprint(project) == before
    path = project.migrations / "main" / "0004_fill_titles.py"
    path.write_text(path.read_text().replace(
        'depends_on = None', 'depends_on = None\nnoop_downgrade = "a backfill: nothing to undo"'
    ))
    run(project, "downgrade")
    assert project.query("SELECT version_num FROM alembic_version") == [(ids[-1],)]
    # the next most recent: the bio backfill, whose downgrade overwrites values (so: the flag)
    assert "users.bio" in run(project, "downgrade", code=6).stderr
    run(project, "downgrade", "--allow-data-loss")
    assert project.query("SELECT version_num FROM alembic_version") == [(ids[-2],)]
    assert project.query("SELECT DISTINCT bio FROM users") == [(None,)]


def test_adopt_refuses_two_heads(tmp_path: Path, sqlite_url: str, flask_migrate_history: Path) -> None:
    project = copy_history(tmp_path, sqlite_url, flask_migrate_history, apply=True)
    versions = project.migrations / "versions"
    _first, second, third = history_ids(versions)
    (branch,) = versions.glob(f"{second}_*.py")
    (versions / "cccc3333cccc_other_branch.py").write_text(
        branch.read_text().replace(second, "cccc3333cccc")
    )
    before = state(project)
    error = one_error_line(run(project, "adopt", code=1))
    assert "2 heads" in error and third in error and "cccc3333cccc" in error
    assert "flask db merge" in error and "nothing was written" in error
    assert state(project) == before


def _drop_down_revision(versions: Path, ids: list[str]) -> str:
    (path,) = versions.glob(f"{ids[1]}_*.py")
    path.write_text(re.sub(r"^down_revision = .*\n", "", path.read_text(), flags=re.MULTILINE))
    return f"{path} declares no down_revision"


def _dangling_down_revision(versions: Path, ids: list[str]) -> str:
    (path,) = versions.glob(f"{ids[0]}_*.py")
    path.unlink()
    return f"down_revision '{ids[0]}', which no file provides"


def _unparsable(versions: Path, ids: list[str]) -> str:
    (path,) = versions.glob(f"{ids[2]}_*.py")
    path.write_text(path.read_text() + "\ndef broken(:\n")
    return f"{path} cannot be parsed at line"


def _computed_revision(versions: Path, ids: list[str]) -> str:
    (path,) = versions.glob(f"{ids[2]}_*.py")
    path.write_text(path.read_text().replace(f"revision = '{ids[2]}'", f"revision = '{ids[2][:6]}' + '{ids[2][6:]}'"))
    return f"{path} computes its revision id at runtime"


def _duplicate_id(versions: Path, ids: list[str]) -> str:
    (path,) = versions.glob(f"{ids[2]}_*.py")
    shutil.copyfile(path, versions / "0000_copy_of_backfill.py")
    return f"revision id '{ids[2]}' is used by two files"


@pytest.mark.parametrize(
    "breakage",
    [_drop_down_revision, _dangling_down_revision, _unparsable, _computed_revision, _duplicate_id],
    ids=["no_down_revision", "dangling_down_revision", "unparsable", "computed_revision", "duplicate_id"],
)
def test_adopt_refuses_files_it_cannot_convert(
    tmp_path: Path, sqlite_url: str, flask_migrate_history: Path, breakage: Any
) -> None:
    project = copy_history(tmp_path, sqlite_url, flask_migrate_history)
    versions = project.migrations / "versions"
    expected = breakage(versions, history_ids(flask_migrate_history / "versions"))
    before = state(project)
    error = one_error_line(run(project, "adopt", code=1))
    assert expected in error and error.endswith("nothing was written"), error
    assert state(project) == before


def test_adopt_refuses_database_at_unknown_revision(
    tmp_path: Path, db_url: str, flask_migrate_history: Path
) -> None:
    project = copy_history(tmp_path, db_url, flask_migrate_history, apply=True)
    versions = project.migrations / "versions"
    *_, last = history_ids(versions)
    (path,) = versions.glob(f"{last}_*.py")
    path.unlink()  # the database is at a revision the folder no longer provides
    before = state(project)
    error = one_error_line(run(project, "adopt", code=1))
    assert f"the database is at revision {last}, which no file of the history provides" in error
    assert state(project) == before
    assert one_error_line(run(project, "adopt", "--dry-run", code=1)) == error


def test_adopt_custom_env_is_converted_with_notes(
    tmp_path: Path, db_url: str, flask_migrate_history: Path
) -> None:
    project = copy_history(tmp_path, db_url, flask_migrate_history)
    env = project.migrations / "env.py"
    text = env.read_text().replace("\n\ndef run_migrations_offline", CUSTOM_ENV_FUNCTIONS + "\ndef run_migrations_offline")
    text = text.replace("target_metadata=get_metadata(),\n            **conf_args", "target_metadata=get_metadata(),\n            " + CUSTOM_ENV_KEYWORDS + "**conf_args")
    assert CUSTOM_ENV_KEYWORDS in text
    env.write_text(text)
    project.write("__init__.py", FLASK_MIGRATE_FACTORY)
    run(project, "upgrade")  # with the custom env.py: the version row is in custom_version
    switch_to_rollback(project)

    result = run(project, "adopt")
    lines = result.stdout.splitlines()
    start = next(i for i, text_line in enumerate(lines) if text_line.startswith("The old env.py"))
    notes = [text_line for text_line in lines[start + 1 :] if text_line.startswith("  - ")]
    line = text[: text.index(CUSTOM_ENV_KEYWORDS)].count("\n") + 1
    not_carried = "not carried over (no ROLLBACK_* setting)"
    renders = "autogenerate renders types itself; edit the generated migration where needed"
    assert sorted(notes) == sorted([
        (f"  - line {line}: include_object=include_object: {not_carried}: autogenerate compares "
         "every table of db.metadata (flask-rollback's own tables excepted)"),
        f"  - line {line}: render_item=render_item: {not_carried}: {renders}",
        f"  - line {line}: compare_server_default=True: set ROLLBACK_COMPARE_SERVER_DEFAULT = True",
        (f'  - line {line}: version_table="custom_version": set ROLLBACK_VERSION_TABLE = '
         "'custom_version' (the database's version rows are there)"),
        f'  - line {line}: user_module_prefix="myapp.types.": {not_carried}: {renders}',
    ])
    assert f"a copy is kept as {as_shown(project, project.migrations / 'env.py.orig')}" in result.stdout
    assert (project.migrations / "env.py.orig").read_text() == text
    assert runs_our_env(project.migrations / "env.py")

    assert lines[-1].startswith(
        "Before anything else, set ROLLBACK_VERSION_TABLE = 'custom_version': the database's "
        "version rows are there"
    )
    switch_to_rollback(project, config={"ROLLBACK_VERSION_TABLE": "custom_version"})
    assert run(project, "showmigrations").stdout.count("[X]") == 3


def test_already_adopted_or_initialised_is_nothing_to_do(tmp_path: Path, sqlite_url: str) -> None:
    project = new_project(tmp_path, sqlite_url)
    assert project.db("init").exit_code == 0
    before = state(project)
    result = run(project, "adopt")
    assert result.stdout == f"Nothing to do: {project.migrations} is already a flask-rollback migrations folder.\n"
    assert state(project) == before


# -- a leftover Flask-Migrate folder, seen by the other commands ----------------------------------


@pytest.mark.parametrize("command", [("showmigrations",), ("makemigrations",), ("init",), ("upgrade",)])
def test_leftover_flask_migrate_folder_is_one_line_pointing_at_adopt(
    tmp_path: Path, sqlite_url: str, flask_migrate_history: Path, command: tuple[str, ...]
) -> None:
    project = copy_history(tmp_path, sqlite_url, flask_migrate_history)
    before = state(project)
    error = one_error_line(run(project, *command, code=1))
    assert "is a Flask-Migrate or Alembic migrations folder" in error and "'flask db adopt'" in error
    assert state(project) == before
    assert not (project.migrations / "main").exists()


@pytest.mark.parametrize(
    ("marker", "named"),
    [
        ("alembic.ini", "(alembic.ini)"),
        ("versions", "(versions/ with 1 migration file)"),
        ("env.py", "(an env.py that does not call flask_rollback.env.run_env)"),
    ],
)
def test_each_flask_migrate_marker_is_recognised(
    tmp_path: Path, sqlite_url: str, marker: str, named: str
) -> None:
    """One marker is enough: an alembic.ini, a versions/ folder with migrations, or an env.py
    that does not call flask-rollback."""
    project = new_project(tmp_path, sqlite_url)
    assert project.db("init").exit_code == 0
    if marker == "alembic.ini":
        (project.migrations / "alembic.ini").write_text("[alembic]\n")
    elif marker == "versions":
        (project.migrations / "versions").mkdir()
        (project.migrations / "versions" / "abc123_initial.py").write_text("revision = 'abc123'\n")
    else:
        (project.migrations / "env.py").write_text("from alembic import context\ncontext.run_migrations()\n")
    result = project.db("showmigrations")
    assert result.exit_code == 1, result.output
    assert result.output == (
        f"Error: {project.migrations} is a Flask-Migrate or Alembic migrations folder {named}; "
        "run 'flask db adopt' to convert it, keeping its history\n"
    )


def test_adopt_moves_a_teammates_leftover_migration_into_the_history_it_continues(
    tmp_path: Path, sqlite_url: str, flask_migrate_history: Path
) -> None:
    """A branch made before the switch adds a file to versions/; merged after the switch, it is
    one line pointing at adopt, and adopt moves it (id kept) after the adopted files."""
    project = copy_history(tmp_path, sqlite_url, flask_migrate_history, apply=True)
    run(project, "adopt")
    ids = history_ids(tmp_path / "migrations.flask-migrate-backup" / "versions")
    versions = project.migrations / "versions"
    versions.mkdir()
    leftover = versions / "d00d1e5aa001_add_posts_summary.py"
    leftover.write_text(textwrap.dedent(f'''\
        """add posts summary

        Revision ID: d00d1e5aa001
        Revises: {ids[-1]}
        """
        from alembic import op
        import sqlalchemy as sa

        revision = "d00d1e5aa001"
        down_revision = "{ids[-1]}"
        branch_labels = None
        depends_on = None


        def upgrade():
            with op.batch_alter_table("posts") as batch_op:
                batch_op.add_column(sa.Column("summary", sa.String(length=300), nullable=True))


        def downgrade():
            with op.batch_alter_table("posts") as batch_op:
                batch_op.drop_column("summary")
        '''))
    text = leftover.read_bytes()
    error = one_error_line(run(project, "showmigrations", code=1))
    assert "versions/ with 1 migration file" in error and "'flask db adopt'" in error

    before = state(project)
    dry = run(project, "adopt", "--dry-run").stdout
    assert f"{as_shown(project, leftover)} -> migrations/main/0004_add_posts_summary.py" in dry
    assert state(project) == before
    moved = run(project, "adopt").stdout
    assert moved.startswith("Moved 1 migration file left in")
    assert not versions.exists()
    assert (project.migrations / "main" / "0004_add_posts_summary.py").read_bytes() == text
    assert run(project, "showmigrations", "main").stdout.splitlines()[-1] == " [ ] 0004_add_posts_summary"
    run(project, "upgrade")
    assert "summary" in columns(project, "posts")


def test_adopt_refuses_a_leftover_migration_that_continues_nothing(
    tmp_path: Path, sqlite_url: str, flask_migrate_history: Path
) -> None:
    project = copy_history(tmp_path, sqlite_url, flask_migrate_history, apply=True)
    run(project, "adopt")
    (project.migrations / "versions").mkdir()
    (project.migrations / "versions" / "e1_orphan.py").write_text(
        'revision = "e1e1e1e1e1e1"\ndown_revision = "fffffffffff0"\n'
    )
    before = state(project)
    error = one_error_line(run(project, "adopt", code=1))
    assert "e1_orphan.py has down_revision fffffffffff0, which no file provides" in error
    assert error.endswith("nothing was written")
    assert state(project) == before


# -- upgrade --fake-initial -----------------------------------------------------------------------


def _tables_without_history(project: Project) -> None:
    """The schema exists, the history does not (tables made by db.create_all(), or a copy)."""
    project.query_write("DROP TABLE alembic_version", "DROP TABLE rollback_log")


def test_fake_initial_records_existing_tables(tmp_path: Path, db_url: str) -> None:
    project = new_project(tmp_path, db_url)
    assert project.db("init").exit_code == 0
    assert project.db("makemigrations").exit_code == 0
    assert project.db("upgrade").exit_code == 0
    project.query_write("INSERT INTO users (id, email) VALUES (1, 'ada@example.com')")
    project.write("accounts/models.py", ACCOUNTS_MODELS + "    bio: Mapped[str | None] = mapped_column(db.String(200))\n")
    assert project.db("makemigrations").exit_code == 0  # accounts 0002 (users.bio), still pending
    _tables_without_history(project)

    failed = run(project, "upgrade", code=1)  # the initial migrations cannot run: tables exist
    assert "accounts.0001_initial (up) failed" in one_error_line(failed)
    plan = run(project, "upgrade", "--fake-initial", "--plan").stdout
    assert re.search(r"\+ accounts\.0001_initial .*FAKE: its tables exist", plan)
    assert not re.search(r"\+ accounts\.0002_add_users_bio .*FAKE", plan)
    sql = run(project, "upgrade", "--fake-initial", "--sql").stdout
    assert "CREATE TABLE users" not in sql and "CREATE TABLE posts" not in sql  # faked: no DDL
    assert "ADD COLUMN bio" in sql

    result = run(project, "upgrade", "--fake-initial")
    assert "Applying accounts.0001_initial... FAKED\n" in result.stdout
    assert re.search(r"^Applying accounts\.0002_add_users_bio\.\.\. OK \(", result.stdout, re.M)
    assert "Applied 3 migrations" in result.stdout
    assert "recorded without running (tables exist): accounts.0001_initial, blog.0001_initial" in result.stdout
    log = project.query("SELECT name, app, fake FROM rollback_log ORDER BY id")
    assert [(name, app, bool(fake)) for name, app, fake in log] == [
        ("0001_initial", "accounts", True), ("0002_add_users_bio", "accounts", False),
        ("0001_initial", "blog", True),
    ]
    assert project.query("SELECT email FROM users") == [("ada@example.com",)]
    assert "bio" in columns(project, "users")
    assert run(project, "showmigrations").stdout.count("[X]") == 3


@pytest.mark.parametrize("missing", ["table", "column"])
def test_fake_initial_refuses_tables_that_exist_only_partly(tmp_path: Path, db_url: str, missing: str) -> None:
    project = new_project(tmp_path, db_url, with_blog=False)
    project.write("accounts/models.py", ACCOUNTS_MODELS + textwrap.dedent('''
        class Note(db.Model):
            __tablename__ = "notes"
            id: Mapped[int] = mapped_column(primary_key=True)
            body: Mapped[str] = mapped_column(db.String(200))
        '''))
    assert project.db("init").exit_code == 0
    assert project.db("makemigrations").exit_code == 0
    assert project.db("upgrade").exit_code == 0
    _tables_without_history(project)
    if missing == "table":
        project.query_write("DROP TABLE notes")
    else:
        project.query_write("DROP TABLE notes", "CREATE TABLE notes (id INTEGER PRIMARY KEY)")
    before = state(project)
    error = one_error_line(run(project, "upgrade", "--fake-initial", code=1))
    gone = "table notes" if missing == "table" else "column notes.body"
    assert f"the tables of accounts.0001_initial (missing {gone}) exist only partly" in error
    assert "nothing was recorded" in error
    assert state(project) == before
