"""Settings: defaults < ``Rollback(**options)`` < ``init_app(**options)`` < ``ROLLBACK_*`` config.

Each test builds a real Flask project whose factory passes options at each layer, runs real
``flask db`` commands and looks at what the settings changed: where files land, which tables
appear, which command group exists, and the one-line errors for misspelt options and keys.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_rollback import Rollback, RollbackError
from tests.projects import ACCOUNTS_MODELS, Project

FACTORY = '''
import os

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from flask_rollback import NAMING_CONVENTION, Rollback


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
rollback = Rollback(**ROLLBACK_OPTIONS)


def create_app(url=None, config=None, init_options=None):
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = url or os.environ["TEST_DATABASE_URL"]
    app.config.update(CONFIG if config is None else config)
    db.init_app(app)
    from . import models  # noqa: F401
    from .accounts import bp

    app.register_blueprint(bp)
    rollback.init_app(app, db, **(INIT_OPTIONS if init_options is None else init_options))
    return app
'''

#: Outside every blueprint: the default app's.
NOTE_MODELS = '''
from sqlalchemy.orm import Mapped, mapped_column
from . import db


class Note(db.Model):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(db.String(50))
'''

DEFAULT_TABLES = {"alembic_version", "rollback_log"}


# -- helpers --------------------------------------------------------------------------------


def settings_project(
    tmp_path: Path,
    url: str,
    rollback_options: dict[str, Any] | None = None,
    init_options: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> Project:
    """A project (accounts blueprint + a default-app model) passing options at every layer."""
    project = Project(tmp_path, f"proj_{uuid.uuid4().hex[:10]}", url)
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.write("models.py", NOTE_MODELS)
    set_layers(project, rollback_options, init_options, config)
    return project


def set_layers(
    project: Project,
    rollback_options: dict[str, Any] | None = None,
    init_options: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> None:
    header = (
        f"ROLLBACK_OPTIONS = {rollback_options or {}!r}\n"
        f"INIT_OPTIONS = {init_options or {}!r}\n"
        f"CONFIG = {config or {}!r}\n"
    )
    project.write("__init__.py", header + FACTORY)


def invoke(app: Flask, *args: str) -> Result:
    """A command line of ``app``'s own CLI (group name included), in-process."""
    return app.test_cli_runner().invoke(args=list(args))


def ok(result: Result) -> Result:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 0, result.output
    return result


def one_line_error(result: Result, expected: str) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"uncaught {result.exception!r}: {result.output}"
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines() == [expected]


def tables(url: str) -> set[str]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def migration_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.py"))


# -- defaults -------------------------------------------------------------------------------


def test_defaults(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default directory is relative: ./migrations
    project = settings_project(tmp_path, db_url)
    app = project.app()
    settings = app.extensions["rollback"].settings(app)
    assert settings.directory == "migrations"
    assert settings.default_app == "main"
    assert dict(settings.app_directories) == {}
    assert settings.command == "db"
    assert settings.compare_type is True
    assert settings.compare_server_default is False
    assert settings.render_as_batch is True
    assert settings.version_table == "alembic_version"
    assert settings.log_table == "rollback_log"
    assert "db" in app.cli.list_commands(app.cli.make_context("flask", [], resilient_parsing=True))

    ok(project.db("init"))
    assert (tmp_path / "migrations" / "env.py").is_file()
    ok(project.db("makemigrations"))
    assert migration_files(tmp_path / "migrations" / "main") == ["0001_initial.py"]
    assert migration_files(tmp_path / "migrations" / "accounts") == ["0001_initial.py"]
    ok(project.db("upgrade"))
    assert project.tables() == {"users", "notes", *DEFAULT_TABLES}

    # compare_type is on: a changed column type is a migration. Batch mode on every backend.
    project.write("models.py", NOTE_MODELS.replace("db.String(50)", "db.String(120)"))
    result = ok(project.db("makemigrations"))
    assert "AlterColumn notes.text" in result.output
    code = (tmp_path / "migrations" / "main" / "0002_alter_notes.py").read_text()
    assert "String(length=120)" in code
    assert "batch_alter_table" in code
    ok(project.db("upgrade"))


def test_autogenerate_options_from_config(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    base = {"ROLLBACK_DIRECTORY": str(tmp_path / "migrations")}
    project = settings_project(tmp_path, url, config={**base, "ROLLBACK_COMPARE_TYPE": False})
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    ok(project.db("upgrade"))
    project.write("models.py", NOTE_MODELS.replace("db.String(50)", "db.String(120)"))
    set_layers(project, config={**base, "ROLLBACK_COMPARE_TYPE": False})
    assert ok(project.db("makemigrations")).output.strip() == "No changes detected."
    # Type comparison on, batch mode off even on SQLite: plain alter_column.
    set_layers(project, config={**base, "ROLLBACK_RENDER_AS_BATCH": False})
    ok(project.db("makemigrations"))
    code = (tmp_path / "migrations" / "main" / "0002_alter_notes.py").read_text()
    assert "op.alter_column('notes'" in code or 'op.alter_column("notes"' in code
    assert "batch_alter_table" not in code


# -- precedence -----------------------------------------------------------------------------

LAYER_CASES = {
    # name: (Rollback(...), init_app(...), config, expected directory name, default app,
    #        version table, log table)
    "defaults": ({}, {}, {}, "migrations", "main", "alembic_version", "rollback_log"),
    "rollback": (
        {"directory": "m_ext", "default_app": "ext", "version_table": "v_ext"},
        {}, {}, "m_ext", "ext", "v_ext", "rollback_log",
    ),
    "init_app": (
        {"directory": "m_ext", "default_app": "ext", "version_table": "v_ext", "log_table": "log_ext"},
        {"directory": "m_init", "default_app": "init", "version_table": "v_init"},
        {}, "m_init", "init", "v_init", "log_ext",
    ),
    "config": (
        {"directory": "m_ext", "default_app": "ext", "version_table": "v_ext", "log_table": "log_ext"},
        {"directory": "m_init", "default_app": "init", "version_table": "v_init"},
        {"ROLLBACK_DIRECTORY": "m_config", "ROLLBACK_DEFAULT_APP": "config", "ROLLBACK_LOG_TABLE": "log_config"},
        "m_config", "config", "v_init", "log_config",
    ),
}


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_precedence(tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ext, init, config, directory, default_app, version_table, log_table = LAYER_CASES[case]
    project = settings_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", ext, init, config)
    ok(project.db("init"))
    root = tmp_path / directory
    assert (root / "env.py").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if (p / "env.py").exists()) == [directory]
    ok(project.db("makemigrations"))
    assert migration_files(root / default_app) == ["0001_initial.py"]
    assert "'notes'" in (root / default_app / "0001_initial.py").read_text()
    assert migration_files(root / "accounts") == ["0001_initial.py"]
    ok(project.db("upgrade"))
    assert project.tables() == {"users", "notes", version_table, log_table}
    assert len(project.query(f"SELECT * FROM {version_table}")) == 2
    assert len(project.query(f"SELECT * FROM {log_table}")) == 2


def test_directory_option_of_the_command_wins(tmp_path: Path) -> None:
    project = settings_project(
        tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}",
        config={"ROLLBACK_DIRECTORY": str(tmp_path / "from_config")},
    )
    other = tmp_path / "from_option"
    ok(project.db("-d", str(other), "init"))
    ok(project.db("-d", str(other), "makemigrations"))
    assert migration_files(other / "main") == ["0001_initial.py"]
    assert not (tmp_path / "from_config").exists()


def test_config_read_per_command(tmp_path: Path) -> None:
    """Config set after init_app counts: settings are resolved when a command runs."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    project = settings_project(tmp_path, url, config={"ROLLBACK_DIRECTORY": str(tmp_path / "migrations")})
    app = project.app()
    app.config["ROLLBACK_DEFAULT_APP"] = "late"
    ok(invoke(app, "db", "init"))
    ok(invoke(app, "db", "makemigrations"))
    assert migration_files(tmp_path / "migrations" / "late") == ["0001_initial.py"]
    assert not (tmp_path / "migrations" / "main").exists()


# -- unknown options and keys -----------------------------------------------------------------


def test_unknown_keyword_options_are_one_error_line_and_never_stop_the_app(tmp_path: Path) -> None:
    """A typo (or an option Flask-Migrate passed to Alembic) must not keep the web app from
    starting: it is reported when a flask db command or the Python API resolves the settings."""
    for options, message in [
        ({"directroy": "x"}, "unknown flask-rollback option 'directroy' (did you mean directory?)"),
        ({"banana": 1}, "unknown flask-rollback option 'banana'"),
        ({"include_schemas": True}, "unknown flask-rollback option 'include_schemas' (an Alembic "
         "option Flask-Migrate passed on: not supported yet: autogenerate compares the "
         "database's default schema; remove it)"),
    ]:
        app = Flask(__name__)
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'db.sqlite'}"
        db = SQLAlchemy(app)
        Rollback(app, db, **options)
        assert "rollback" in app.extensions and "db" in app.cli.commands
        with pytest.raises(RollbackError) as info:
            app.extensions["rollback"].settings(app)
        assert str(info.value) == message
        assert info.value.exit_code == 1
        result = app.test_cli_runner().invoke(args=["db", "current"])
        assert result.exit_code == 1
        assert result.output == f"Error: {message}\n"
        assert "Traceback" not in result.output
    assert not (tmp_path / "db.sqlite").exists()

    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite://"
    db = SQLAlchemy(app)
    Rollback().init_app(app, db, defualt_app="x")
    with pytest.raises(RollbackError, match=r"'defualt_app' \(did you mean default_app\?\)"):
        app.extensions["rollback"].settings(app)


def test_flask_migrate_set_up_too_is_a_warning(tmp_path: Path) -> None:
    from flask_migrate import Migrate

    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite://"
    db = SQLAlchemy(app)
    Migrate(app, db)
    with pytest.warns(UserWarning, match=r"Migrate\(app, db\) is also set up on this app: remove it"):
        Rollback(app, db)


TYPO_CASES = {
    "ROLLBACK_DIRECTROY": "ROLLBACK_DIRECTORY",
    "ROLLBACK_DEFAULT_APPS": "ROLLBACK_DEFAULT_APP",
    "ROLLBACK_LOGTABLE": "ROLLBACK_LOG_TABLE",
    "ROLLBACK_COMAND": "ROLLBACK_COMMAND",
}

COMMANDS = [
    ("init",),
    ("makemigrations",),
    ("makemigrations", "--check"),
    ("upgrade",),
    ("upgrade", "--plan"),
    ("downgrade", "accounts", "zero"),
    ("stamp", "heads"),
    ("showmigrations",),
    ("current",),
    ("heads",),
    ("check",),
    ("history",),
    ("sqlmigrate", "accounts", "0001"),
]


@pytest.mark.parametrize("typo", list(TYPO_CASES))
def test_misspelt_config_key_fails_every_command(tmp_path: Path, typo: str) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    good = {"ROLLBACK_DIRECTORY": str(tmp_path / "migrations")}
    project = settings_project(tmp_path, url, config=good)
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    ok(project.db("upgrade", "main"))
    before = sorted((tmp_path / "migrations").rglob("*.py"))
    log = project.query("SELECT revision, direction FROM rollback_log")

    set_layers(project, config={**good, typo: "x"})
    expected = (
        f"Error: unknown config key {typo} (did you mean {TYPO_CASES[typo]}?); "
        "see the README for the ROLLBACK_* keys"
    )
    for args in COMMANDS:
        one_line_error(project.db(*args), expected)
    # Nothing ran: same files, same schema, same log.
    assert sorted((tmp_path / "migrations").rglob("*.py")) == before
    assert project.tables() == {"notes", *DEFAULT_TABLES}
    assert project.query("SELECT revision, direction FROM rollback_log") == log


def test_misspelt_config_key_from_a_real_shell(tmp_path: Path) -> None:
    project = settings_project(
        tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}",
        config={"ROLLBACK_DIRECTROY": str(tmp_path / "elsewhere")},
    )
    done = subprocess.run(
        [sys.executable, "-m", "flask", "db", "init"],
        cwd=tmp_path, env=project.env(), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "Error: unknown config key ROLLBACK_DIRECTROY (did you mean ROLLBACK_DIRECTORY?); "
        "see the README for the ROLLBACK_* keys"
    ]
    assert not (tmp_path / "migrations").exists() and not (tmp_path / "elsewhere").exists()


def test_unrelated_and_unsuggestable_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    good = {"ROLLBACK_DIRECTORY": str(tmp_path / "migrations")}
    # Keys without the ROLLBACK_ prefix belong to someone else: ignored.
    project = settings_project(tmp_path, url, config={**good, "ROLLBAK_DIRECTORY": "x", "MY_ROLLBACK_X": 1})
    ok(project.db("init"))
    # A ROLLBACK_ key close to nothing: an error without a suggestion.
    set_layers(project, config={**good, "ROLLBACK_ZZZZZZZZ": 1})
    one_line_error(
        project.db("showmigrations"),
        "Error: unknown config key ROLLBACK_ZZZZZZZZ; see the README for the ROLLBACK_* keys",
    )


# -- the command group's name ---------------------------------------------------------------

COMMAND_CASES = {
    "config": ({}, {}, {"ROLLBACK_COMMAND": "schema"}, ["db"]),
    "rollback_option": ({"command": "schema"}, {}, {}, ["db"]),
    "init_option": ({"command": "other"}, {"command": "schema"}, {}, ["db", "other"]),
    "config_beats_options": ({"command": "other"}, {"command": "third"}, {"ROLLBACK_COMMAND": "schema"}, ["db", "other", "third"]),
}


@pytest.mark.parametrize("case", list(COMMAND_CASES))
def test_command_group_name(tmp_path: Path, case: str) -> None:
    ext, init, config, absent = COMMAND_CASES[case]
    config = {**config, "ROLLBACK_DIRECTORY": str(tmp_path / "migrations")}
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    project = settings_project(tmp_path, url, ext, init, config)
    app = project.app()
    ok(invoke(app, "schema", "init"))
    ok(invoke(app, "schema", "makemigrations"))
    ok(invoke(app, "schema", "upgrade"))
    assert {"users", "notes"} <= project.tables()
    for name in absent:
        result = invoke(app, name, "upgrade")
        assert result.exit_code == 2, result.output
        assert f"No such command '{name}'" in result.output


def test_command_group_name_from_a_real_shell(tmp_path: Path) -> None:
    project = settings_project(
        tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}",
        config={"ROLLBACK_COMMAND": "schema", "ROLLBACK_DIRECTORY": str(tmp_path / "migrations")},
    )
    app = project.app()
    ok(invoke(app, "schema", "init"))
    ok(invoke(app, "schema", "makemigrations"))

    def flask(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flask", *args],
            cwd=tmp_path, env=project.env(), capture_output=True, text=True, timeout=120,
        )

    done = flask("schema", "upgrade")
    assert done.returncode == 0, done.stderr
    assert "2 migrations" in done.stdout  # built from the schema snapshot makemigrations wrote
    assert {"users", "notes"} <= project.tables()
    done = flask("db", "upgrade")
    assert done.returncode == 2
    assert "No such command 'db'" in done.stderr


# -- two apps in one process ------------------------------------------------------------------


def test_two_apps_in_one_process_keep_their_own_settings(
    tmp_path: Path, sqlite_url: str, pg_url: str
) -> None:
    """One extension, one db, two apps: each its own database, folder, labels and command."""
    project = settings_project(tmp_path, sqlite_url)
    project.app()  # imports the package
    factory = sys.modules[project.package].create_app
    one_dir, two_dir = tmp_path / "one_migrations", tmp_path / "two_migrations"
    one = factory(
        url=sqlite_url,
        config={"ROLLBACK_DIRECTORY": str(one_dir)},
        init_options={"default_app": "one", "version_table": "one_versions"},
    )
    two = factory(
        url=pg_url,
        config={"ROLLBACK_DIRECTORY": str(two_dir), "ROLLBACK_DEFAULT_APP": "two", "ROLLBACK_COMMAND": "schema"},
        init_options={"log_table": "two_log"},
    )
    state_one, state_two = one.extensions["rollback"], two.extensions["rollback"]
    assert state_one is not state_two
    assert state_one.extension is state_two.extension is sys.modules[project.package].rollback
    assert state_one.settings(one).default_app == "one"
    assert state_two.settings(two).default_app == "two"

    # Interleaved, after both exist: neither sees the other's settings.
    ok(invoke(one, "db", "init"))
    ok(invoke(two, "schema", "init"))
    ok(invoke(two, "schema", "makemigrations"))
    ok(invoke(one, "db", "makemigrations"))
    assert migration_files(one_dir / "one") == ["0001_initial.py"]
    assert migration_files(two_dir / "two") == ["0001_initial.py"]
    assert not (one_dir / "two").exists() and not (two_dir / "one").exists()
    ok(invoke(one, "db", "upgrade"))
    assert tables(sqlite_url) == {"users", "notes", "one_versions", "rollback_log"}
    assert not {"users", "notes", "one_versions", "rollback_log"} & tables(pg_url)
    ok(invoke(two, "schema", "upgrade"))
    assert tables(pg_url) == {"users", "notes", "alembic_version", "two_log"}
    assert tables(sqlite_url) == {"users", "notes", "one_versions", "rollback_log"}

    shown_one = ok(invoke(one, "db", "showmigrations")).output
    shown_two = ok(invoke(two, "schema", "showmigrations")).output
    assert [line for line in shown_one.splitlines() if not line.startswith(" ")] == ["accounts", "one"]
    assert [line for line in shown_two.splitlines() if not line.startswith(" ")] == ["accounts", "two"]
    assert invoke(one, "schema", "upgrade").exit_code == 2
    assert invoke(two, "db", "upgrade").exit_code == 2

    # Reverting in one app's database leaves the other's alone.
    ok(invoke(two, "schema", "downgrade", "two", "zero"))
    assert "notes" not in tables(pg_url)
    assert "notes" in tables(sqlite_url)
    assert os.path.isdir(one_dir / "one") and os.path.isdir(two_dir / "two")
