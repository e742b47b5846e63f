"""Flask-SQLAlchemy binds: each app lives on the bind of its models, and every command works
bind by bind, each database with its own version table, log, lock and deploy records. Real
databases: two SQLite files, two PostgreSQL (or MariaDB) databases on the test server."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import Result

from flask_rollback.errors import EXIT_COULD_NOT_RUN
from flask_rollback.lock import migration_lock
from tests.projects import ACCOUNTS_MODELS, Project

ANALYTICS_MODELS = '''
from sqlalchemy.orm import Mapped, mapped_column
from .. import db


class Event(db.Model):
    __bind_key__ = "analytics"
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(db.String(50))
    user_id: Mapped[int | None] = mapped_column(db.Integer)
'''

#: One app whose models sit on two binds.
SPLIT_MODELS = '''
from sqlalchemy.orm import Mapped, mapped_column
from .. import db


class Event(db.Model):
    __bind_key__ = "analytics"
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(primary_key=True)


class Counter(db.Model):
    __tablename__ = "counters"
    id: Mapped[int] = mapped_column(primary_key=True)
'''

#: A foreign key from the analytics bind into the default bind's users.
CROSS_BIND_FK_MODELS = '''
from sqlalchemy.orm import Mapped, mapped_column
from .. import db
from ..accounts.models import User


class Event(db.Model):
    __bind_key__ = "analytics"
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(db.ForeignKey(User.id))
'''


def bind_project(tmp_path: Path, url: str, second: str, config: dict[str, object] | None = None) -> Project:
    project = Project(tmp_path, f"proj_{uuid.uuid4().hex[:10]}", url)
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.add_blueprint("analytics", ANALYTICS_MODELS)
    project.set_factory(
        ["accounts", "analytics"], {"SQLALCHEMY_BINDS": {"analytics": second}, **(config or {})}
    )
    return project


def ok(result: Result) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 0, result.output
    return result.output


def one_line_error(result: Result, code: int, *fragments: str) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def tables(url: str) -> set[str]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def rows(url: str, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.exec_driver_sql(sql)]
    finally:
        engine.dispose()


def revisions(project: Project, app: str) -> list[str]:
    return [
        line.split("'")[1] for path in sorted((project.migrations / app).glob("*.py"))
        for line in path.read_text().splitlines() if line.startswith("revision")
    ]


def test_every_command_works_bind_by_bind(tmp_path: Path, db_url: str, second_db_url: str) -> None:
    project = bind_project(tmp_path, db_url, second_db_url)
    ok(project.db("init"))

    # apps: a bind column; makemigrations compares each app with its own bind.
    listing = ok(project.db("apps")).splitlines()
    assert listing[0].split()[:2] == ["app", "bind"]
    assert [line.split()[:2] for line in listing[1:]] == [["accounts", "default"], ["analytics", "analytics"]]
    output = ok(project.db("makemigrations"))
    assert output.index("Bind 'default'") < output.index("Bind 'analytics'")
    assert project.files("accounts") == ["0001_initial.py"] and project.files("analytics") == ["0001_initial.py"]
    (analytics_initial,) = revisions(project, "analytics")
    (accounts_initial,) = revisions(project, "accounts")

    # upgrade: each database gets its apps' tables, its own version table and applied log.
    output = ok(project.db("upgrade"))
    assert "Applied 1 migration (accounts 1)" in output and "Applied 1 migration (analytics 1)" in output
    assert tables(db_url) == {"users", "alembic_version", "rollback_log"}
    assert tables(second_db_url) == {"events", "alembic_version", "rollback_log"}
    assert rows(db_url, "SELECT version_num FROM alembic_version") == [(accounts_initial,)]
    assert rows(second_db_url, "SELECT version_num FROM alembic_version") == [(analytics_initial,)]
    assert rows(second_db_url, "SELECT app, direction FROM rollback_log") == [("analytics", "up")]

    # showmigrations / check: per bind, --bind picks one.
    output = ok(project.db("showmigrations"))
    assert "Bind 'default'" in output and "Bind 'analytics'" in output
    output = ok(project.db("showmigrations", "--bind", "analytics"))
    assert "accounts" not in output and "analytics\n [X] 0001_initial" in output
    assert ok(project.db("check")).count("No problems") == 2

    # downgrade: an app names its bind; -1 alone is ambiguous across binds.
    one_line_error(project.db("downgrade"), EXIT_COULD_NOT_RUN, "several binds", "--bind")
    ok(project.db("downgrade", "analytics", "zero"))
    assert tables(second_db_url) == {"alembic_version", "rollback_log"}
    assert "users" in tables(db_url)
    ok(project.db("downgrade", "--bind", "default"))
    assert tables(db_url) == {"alembic_version", "rollback_log"}

    # deploy: every bind, a record in each bind's database; rollback: reverse bind order.
    output = ok(project.db("deploy", "--no-rehearsal"))
    assert "Undo this deploy on every bind with 'flask db rollback'." in output
    assert tables(db_url) >= {"users", "rollback_deploys"}
    assert tables(second_db_url) >= {"events", "rollback_deploys"}
    assert rows(db_url, "SELECT id, status FROM rollback_deploys") == [(1, "applied")]
    assert rows(second_db_url, "SELECT id, status FROM rollback_deploys") == [(1, "applied")]
    one_line_error(project.db("rollback", "1", "--yes"), EXIT_COULD_NOT_RUN, "deploy ids are per bind", "--bind")
    output = ok(project.db("rollback", "--yes"))
    assert output.index("Bind 'analytics'") < output.index("Bind 'default'")
    assert output.count("Rolled back deploy 1: reverted 1 migration.") == 2
    assert tables(db_url) == {"alembic_version", "rollback_log", "rollback_deploys"}
    assert tables(second_db_url) == {"alembic_version", "rollback_log", "rollback_deploys"}
    assert rows(second_db_url, "SELECT status FROM rollback_deploys") == [("rolled back",)]

    # log: each bind's own applied log; APP names its bind, --bind picks one.
    output = ok(project.db("log"))
    default, analytics = output.split("Bind 'analytics'")
    assert "Bind 'default'" in default and " accounts " in default and " analytics " not in default
    assert " analytics " in analytics and " accounts " not in analytics
    output = ok(project.db("log", "analytics", "--limit", "1"))
    assert "Bind 'default'" not in output
    assert output.splitlines()[-1].split()[3:6] == ["analytics", "0001_initial", "reverted"]
    logs = json.loads(ok(project.db("log", "--json")))["binds"]
    assert {entry["app"] for entry in logs["analytics"]} == {"analytics"} and len(logs["default"]) == 4
    picked = json.loads(ok(project.db("log", "--json", "--bind", "analytics")))["binds"]
    assert list(picked) == ["analytics"] and [e["deploy"] for e in picked["analytics"]] == [1, 1, None, None]


def test_rollback_undoes_only_the_latest_round(tmp_path: Path, db_url: str, second_db_url: str) -> None:
    """A deploy that had nothing to do on a bind writes no record there: rollback leaves that
    bind's older deploy alone."""
    project = bind_project(tmp_path, db_url, second_db_url)
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    ok(project.db("deploy", "--no-rehearsal"))
    project.write("accounts/models.py", ACCOUNTS_MODELS + "    name: Mapped[str | None] = mapped_column(db.String(50))\n")
    ok(project.db("makemigrations"))
    output = ok(project.db("deploy", "--no-rehearsal"))
    assert "Deploy 2 applied 1 migration" in output
    assert rows(second_db_url, "SELECT id FROM rollback_deploys") == [(1,)]

    output = ok(project.db("rollback", "--yes"))
    assert "Bind 'analytics'" not in output and "Rolled back deploy 2" in output
    assert "events" in tables(second_db_url)
    assert rows(second_db_url, "SELECT status FROM rollback_deploys") == [("applied",)]


def test_the_restore_command_rollback_prints_works_as_printed(
    tmp_path: Path, db_url: str, second_db_url: str
) -> None:
    """With several binds, the archive's restore command names its bind, and runs as printed."""
    project = bind_project(tmp_path, db_url, second_db_url)
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    ok(project.db("upgrade"))
    project.write("analytics/models.py", ANALYTICS_MODELS + "    referrer: Mapped[str | None] = mapped_column(db.String(80))\n")
    ok(project.db("makemigrations"))
    ok(project.db("deploy", "--no-rehearsal"))
    engine = sa.create_engine(second_db_url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO events (id, name, referrer) VALUES (1, 'view', 'search')")
    engine.dispose()

    output = ok(project.db("rollback", "--yes", "--archive"))
    (line,) = [line for line in output.splitlines() if "flask db restore" in line]
    printed = line.split("'")[1].split()
    assert printed[:5] == ["flask", "db", "restore", "--bind", "analytics"], line
    ok(project.db("upgrade"))
    ok(project.db(*printed[2:]))
    assert rows(second_db_url, "SELECT id, referrer FROM events") == [(1, "search")]


def test_the_lock_is_per_bind(tmp_path: Path, db_url: str, second_db_url: str) -> None:
    """Each bind's database has its own migration lock: held on the analytics database, it
    stops that bind only; the default bind, visited first, is upgraded and stays so."""
    project = bind_project(tmp_path, db_url, second_db_url)
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    engine = sa.create_engine(second_db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection, migration_lock(connection, "alembic_version", 0):
            result = project.run("upgrade", "--lock-timeout", "0")
    finally:
        engine.dispose()
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert result.returncode == EXIT_COULD_NOT_RUN, result.stdout + result.stderr
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert errors[0].startswith("Error: bind 'analytics': ") and "lock" in errors[0], errors[0]
    assert "bind 'default' finished before it and stays as it is" in errors[0], errors[0]
    assert "users" in tables(db_url)
    assert tables(second_db_url) == set()
    ok(project.db("upgrade", "--bind", "analytics"))
    assert "events" in tables(second_db_url)


def test_unknown_bind_is_one_line_and_changes_nothing(tmp_path: Path, db_url: str, second_db_url: str) -> None:
    project = bind_project(tmp_path, db_url, second_db_url)
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    line = one_line_error(project.db("upgrade", "--bind", "analytcs"), EXIT_COULD_NOT_RUN, "unknown bind 'analytcs'", "default, analytics")
    assert "nothing was changed" in line
    assert tables(db_url) == set() and tables(second_db_url) == set()

    project.set_factory(
        ["accounts", "analytics"],
        {"SQLALCHEMY_BINDS": {"analytics": second_db_url}, "ROLLBACK_APP_BINDS": {"accounts": "events"}},
    )
    one_line_error(project.db("upgrade"), 1, "ROLLBACK_APP_BINDS", "'events'", "not configured", "default, analytics")
    project.set_factory(
        ["accounts", "analytics"],
        {"SQLALCHEMY_BINDS": {"analytics": second_db_url}, "ROLLBACK_APP_BINDS": {"acounts": "analytics"}},
    )
    one_line_error(project.db("upgrade"), 1, "ROLLBACK_APP_BINDS", "'acounts'", "did you mean 'accounts'")
    assert tables(db_url) == set() and tables(second_db_url) == set()


def test_an_app_on_two_binds_is_refused(tmp_path: Path, db_url: str, second_db_url: str) -> None:
    project = bind_project(tmp_path, db_url, second_db_url)
    ok(project.db("init"))
    project.write("analytics/models.py", SPLIT_MODELS)
    for command in (("apps",), ("makemigrations",), ("upgrade",)):
        one_line_error(
            project.db(*command), 1,
            "app 'analytics' has tables on 2 binds", "bind 'default': counters", "bind 'analytics': events",
        )
    assert project.files("analytics") == []
    assert tables(db_url) == set() and tables(second_db_url) == set()


def test_a_cross_bind_foreign_key_is_refused(tmp_path: Path, db_url: str, second_db_url: str) -> None:
    project = bind_project(tmp_path, db_url, second_db_url)
    ok(project.db("init"))
    project.write("analytics/models.py", CROSS_BIND_FK_MODELS)
    one_line_error(
        project.db("makemigrations"), 1,
        "foreign key events.user_id -> users.id crosses binds", "'events' is on bind 'analytics'",
        "'users' on bind 'default'",
    )
    assert project.files("analytics") == [] and project.files("accounts") == []
    assert tables(db_url) == set() and tables(second_db_url) == set()


@pytest.mark.backends("sqlite")
def test_the_python_api_needs_a_bind(tmp_path: Path, db_url: str, second_db_url: str) -> None:
    """With several binds, a database function on the whole project says how to pick one."""
    from flask_rollback import commands
    from flask_rollback.errors import RollbackError

    project = bind_project(tmp_path, db_url, second_db_url)
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    app = project.app()
    with app.app_context():
        with pytest.raises(RollbackError, match="several binds .*get_project\\(app, bind=KEY\\)"):
            commands.upgrade(commands.get_project(app))
        result = commands.upgrade(commands.get_project(app, bind="analytics"))
        assert [step.migration.label for step, _ in result.report.done] == ["analytics.0001_initial"]
    assert "events" in tables(second_db_url) and "users" not in tables(db_url)


#: No blueprints at all: one models.py, a few models on another bind (the common layout).
PLAIN_MODELS = '''
from sqlalchemy.orm import Mapped, mapped_column
from . import db


class User(db.Model):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)


class Event(db.Model):
    __bind_key__ = "analytics"
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(db.Integer)
'''


def test_models_outside_every_blueprint_form_a_default_app_per_bind(
    tmp_path: Path, db_url: str, second_db_url: str
) -> None:
    project = Project(tmp_path, f"proj_{uuid.uuid4().hex[:10]}", db_url)
    project.write("models.py", PLAIN_MODELS)
    project.set_factory([], {"SQLALCHEMY_BINDS": {"analytics": second_db_url}}, extra_modules=["models"])
    ok(project.db("init"))
    listing = ok(project.db("apps")).splitlines()
    assert [line.split()[:3] for line in listing[1:]] == [
        ["main", "default", "default"], ["analytics", "analytics", "default"]
    ]
    ok(project.db("makemigrations"))
    assert project.files("main") == ["0001_initial.py"] and project.files("analytics") == ["0001_initial.py"]
    ok(project.db("upgrade"))
    assert tables(db_url) == {"users", "alembic_version", "rollback_log"}
    assert tables(second_db_url) == {"events", "alembic_version", "rollback_log"}
