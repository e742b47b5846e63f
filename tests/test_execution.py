"""How migrations run: one transaction per migration, an applied log written inside it, SQLite
batch mode for ALTERs, and a migrations root whose env.py only calls into the package."""

from __future__ import annotations

import getpass
import hashlib
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command as alembic_command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from flask_rollback import RollbackError
from flask_rollback.recorder import VersionWrites
from tests.projects import Project, new_project
from tests.test_bad_input import USERS_UP, write_migration

PROFILES_UP = """
op.create_table("profiles", sa.Column("id", sa.Integer, primary_key=True), sa.Column("bio", sa.Text))
op.execute("INSERT INTO profiles (id, bio) VALUES (1, 'half-way')")
"""
FAILURE = 'raise RuntimeError("boom: the disk is on fire")'
SETTINGS_UP = 'op.create_table("settings", sa.Column("id", sa.Integer, primary_key=True))'


def log_rows(project: Project) -> list[dict[str, Any]]:
    engine = project.engine()
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table("rollback_log"):
                return []
            rows = connection.exec_driver_sql('SELECT * FROM rollback_log ORDER BY id').mappings()
            return [dict(row) for row in rows]
    finally:
        engine.dispose()


def as_utc(value: Any) -> datetime:
    """A log timestamp as an aware UTC datetime (SQLite hands back text, naive UTC)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def versions(project: Project) -> list[str]:
    return sorted(row[0] for row in project.query("SELECT version_num FROM alembic_version"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_log_row(row: dict[str, Any], path: Path, direction: str, window: tuple[datetime, datetime]) -> None:
    """A log row: the file's sha256, started <= finished within the run, duration, host, user."""
    assert row["app"] == "accounts"
    assert row["name"] == path.stem
    assert row["direction"] == direction
    assert not row["fake"]
    assert row["sha256"] == sha256(path)
    started, finished = as_utc(row["started_at"]), as_utc(row["finished_at"])
    slack = timedelta(seconds=1)
    assert window[0] - slack <= started <= finished <= window[1] + slack
    assert row["duration_ms"] >= 0
    assert abs(row["duration_ms"] - (finished - started).total_seconds() * 1000) < 1.0
    assert row["host"] == socket.gethostname()
    assert row["user"] == getpass.getuser()


def test_one_transaction_per_migration(tmp_path: Path, db_url: str) -> None:
    project = new_project(tmp_path, db_url, with_blog=False)
    assert project.db("init").exit_code == 0
    first = write_migration(
        project, "accounts", "0001_initial.py", "acc001", branch_labels=("accounts",),
        upgrade=USERS_UP, downgrade='op.drop_table("users")',
    )
    second = write_migration(
        project, "accounts", "0002_profiles.py", "acc002", down_revision="acc001",
        upgrade=PROFILES_UP + FAILURE, downgrade='op.drop_table("profiles")',
    )
    third = write_migration(
        project, "accounts", "0003_settings.py", "acc003", down_revision="acc002",
        upgrade=SETTINGS_UP, downgrade='op.drop_table("settings")',
    )

    start = datetime.now(timezone.utc)
    result = project.run("upgrade")
    end = datetime.now(timezone.utc)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    assert "accounts.0002_profiles" in errors[0]
    assert "RuntimeError" in errors[0] and "boom: the disk is on fire" in errors[0]

    tables = project.tables()
    if db_url.startswith("mysql"):
        # MariaDB committed CREATE TABLE profiles as it ran (its INSERT was rolled back): the
        # error says so, and the table, still empty, was dropped again: its known inverse.
        assert "CREATE TABLE profiles" in errors[0] and "PARTLY APPLIED" not in errors[0]
        assert "it was undone (DROP TABLE `profiles`), so it left no trace" in errors[0]
        assert "it was rolled back" not in errors[0]
        assert "rollback_log_partial" not in tables  # nothing to resolve, no marker left
    else:
        assert "PARTLY APPLIED" not in errors[0]
    # The first migration stays applied; the failing one left no trace; the third never ran.
    assert "users" in tables
    assert "profiles" not in tables
    assert "settings" not in tables
    assert versions(project) == ["acc001"]
    rows = log_rows(project)
    assert [(r["revision"], r["direction"]) for r in rows] == [("acc001", "up")]
    assert_log_row(rows[0], first, "up", (start, end))

    # Fix the file: the next upgrade continues from there.
    second.write_text(second.read_text().replace(FAILURE, "pass"))
    start = datetime.now(timezone.utc)
    result = project.db("upgrade")
    end = datetime.now(timezone.utc)
    assert result.exit_code == 0, result.output
    assert "Applied 2 migrations" in result.output
    assert {"users", "profiles", "settings"} <= project.tables()
    assert project.query("SELECT id, bio FROM profiles") == [(1, "half-way")]
    assert versions(project) == ["acc003"]
    rows = log_rows(project)
    assert [(r["revision"], r["direction"]) for r in rows] == [
        ("acc001", "up"), ("acc002", "up"), ("acc003", "up"),
    ]
    assert_log_row(rows[1], second, "up", (start, end))
    assert_log_row(rows[2], third, "up", (start, end))
    assert as_utc(rows[1]["finished_at"]) <= as_utc(rows[2]["started_at"])

    # Reverting writes 'down' rows, newest first.
    start = datetime.now(timezone.utc)
    result = project.db("downgrade", "accounts@acc001", "--allow-data-loss")
    end = datetime.now(timezone.utc)
    assert result.exit_code == 0, result.output
    assert "profiles" not in project.tables() and "settings" not in project.tables()
    assert versions(project) == ["acc001"]
    rows = log_rows(project)
    assert [(r["revision"], r["direction"]) for r in rows[3:]] == [("acc003", "down"), ("acc002", "down")]
    assert_log_row(rows[3], third, "down", (start, end))
    assert_log_row(rows[4], second, "down", (start, end))


ACCOUNTS_BEFORE = '''
from sqlalchemy.orm import Mapped, mapped_column
from .. import db


class User(db.Model):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(db.String(120), unique=True)
    nickname: Mapped[str] = mapped_column(db.String(50))
'''

#: nickname: String(50) NOT NULL -> String(80) NULL with a unique constraint.
ACCOUNTS_AFTER = ACCOUNTS_BEFORE.replace(
    "nickname: Mapped[str] = mapped_column(db.String(50))",
    "nickname: Mapped[str | None] = mapped_column(db.String(80), unique=True)",
)


def nickname_state(project: Project) -> tuple[int | None, bool, bool, bool]:
    """(length, nullable, unique on nickname, unique on email) as the database has them."""
    engine = project.engine()
    try:
        inspector = sa.inspect(engine)
        column = next(c for c in inspector.get_columns("users") if c["name"] == "nickname")
        uniques = [tuple(u["column_names"]) for u in inspector.get_unique_constraints("users")]
        uniques += [tuple(i["column_names"]) for i in inspector.get_indexes("users") if i["unique"]]
        return column["type"].length, column["nullable"], ("nickname",) in uniques, ("email",) in uniques
    finally:
        engine.dispose()


#: (revision, down_revision, branch_labels, depends_on): two apps, blog's base standing on
#: accounts' first migration, a branch in blog merged, the merge standing on accounts' second.
BRANCHED = [
    ("acc000000001", None, ("accounts",), None),
    ("acc000000002", "acc000000001", None, None),
    ("acc000000003", "acc000000002", None, None),
    ("blg000000001", None, ("blog",), "acc000000001"),
    ("blgleft00002", "blg000000001", None, None),
    ("blgright0002", "blg000000001", None, None),
    ("blgmerge0003", ("blgleft00002", "blgright0002"), None, "acc000000002"),
]


def test_version_writes_compiled_once_leave_the_rows_alembic_leaves(tmp_path: Path, db_url: str) -> None:
    """Alembic's own version-table writes (revision ids as SQL literals) and the same writes
    through VersionWrites (bound parameters) leave the same rows after every move: new
    branches, merges, unmerges, depends_on, partial and full downgrades."""
    folder = tmp_path / "versions"
    folder.mkdir()
    for revision, down, labels, depends in BRANCHED:
        (folder / f"{revision}.py").write_text(
            f"revision = {revision!r}\ndown_revision = {down!r}\nbranch_labels = {labels!r}\n"
            f"depends_on = {depends!r}\n\n\ndef upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n"
        )
    script = ScriptDirectory(str(tmp_path), version_locations=[str(folder)])
    moves = ["blgleft00002", "blgright0002", "blgmerge0003", "heads", "blgleft00002",
             "acc000000001", "blg000000001", "base", "heads", "blog@base", "acc000000002", "base"]
    sent: list[tuple[str, Any]] = []
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as connection:
            sa.event.listen(connection, "before_cursor_execute",
                            lambda conn, cursor, statement, parameters, *rest: sent.append((statement, parameters)))
            for move in moves:
                rows = []
                for table, bound in (("literal_version", False), ("bound_version", True)):
                    context = MigrationContext.configure(connection, opts={"version_table": table})
                    if bound:
                        with VersionWrites(table).listening(connection):
                            context.stamp(script, move)
                    else:
                        context.stamp(script, move)
                    connection.commit()
                    rows.append(sorted(row[0] for row in connection.exec_driver_sql(f"SELECT version_num FROM {table}")))
                assert rows[0] == rows[1], move
            assert rows[0] == []
    finally:
        engine.dispose()
    writes = [(statement.split()[0], parameters) for statement, parameters in sent
              if "bound_version" in statement and statement.startswith(("INSERT", "UPDATE", "DELETE"))]
    assert {verb for verb, _ in writes} == {"INSERT", "UPDATE", "DELETE"}
    assert all(parameters for _, parameters in writes)  # every id went as a parameter
    literal = [statement for statement, _ in sent if "literal_version" in statement and "acc000000001" in statement]
    assert literal  # Alembic's own statements name the ids in the SQL


def test_branches_merges_and_depends_on_leave_alembics_version_rows(tmp_path: Path, db_url: str) -> None:
    """Run through the executor, the version table holds what Alembic keeps there: effective
    heads only (a migration another applied one depends on is not stored), a merge replacing
    its parents, an unmerge bringing them back."""
    project = new_project(tmp_path, db_url)
    assert project.db("init").exit_code == 0
    for revision, down, labels, depends in BRANCHED:
        app = "accounts" if revision.startswith("acc") else "blog"
        write_migration(project, app, f"{revision}.py", revision, down_revision=down if isinstance(down, str) else None,
                        depends_on=depends, branch_labels=labels)
    merge = project.migrations / "blog" / "blgmerge0003.py"
    merge.write_text(merge.read_text().replace("down_revision = None", "down_revision = ('blgleft00002', 'blgright0002')"))
    steps = [
        (("upgrade", "blgleft00002"), ["blgleft00002"]),
        (("upgrade", "blgright0002"), ["blgleft00002", "blgright0002"]),
        (("upgrade",), ["acc000000003", "blgmerge0003"]),
        (("downgrade", "blog@-1"), ["acc000000003", "blgleft00002", "blgright0002"]),
        (("downgrade", "blog", "zero"), ["acc000000003"]),
        (("downgrade", "accounts", "zero"), []),
        (("upgrade",), ["acc000000003", "blgmerge0003"]),
    ]
    for command, expected in steps:
        result = project.db(*command)
        assert result.exit_code == 0, (command, result.output)
        assert versions(project) == expected, command
    assert [row["revision"] for row in log_rows(project)][-1] == "blgmerge0003"


def test_alter_column_is_written_in_batch_mode(tmp_path: Path, db_url: str) -> None:
    project = new_project(tmp_path, db_url, with_blog=False)
    project.write("accounts/models.py", ACCOUNTS_BEFORE)
    assert project.db("init").exit_code == 0
    for args in (("makemigrations",), ("upgrade",)):
        result = project.db(*args)
        assert result.exit_code == 0, result.output
    _insert(project)
    data = [(1, "ann@x.org", "ann"), (2, "bob@x.org", "bob")]
    assert nickname_state(project) == (50, False, False, True)

    project.write("accounts/models.py", ACCOUNTS_AFTER)
    result = project.db("makemigrations", "-m", "nickname")
    assert result.exit_code == 0, result.output
    assert project.files("accounts") == ["0001_initial.py", "0002_nickname.py"]
    code = (project.migrations / "accounts" / "0002_nickname.py").read_text()
    assert "batch_alter_table" in code, code  # the default on every backend, as Flask-Migrate 4
    assert "alter_column" in code and "create_unique_constraint" in code

    result = project.db("upgrade")
    assert result.exit_code == 0, result.output
    assert project.query("SELECT id, email, nickname FROM users ORDER BY id") == data
    assert nickname_state(project) == (80, True, True, True)
    engine = project.engine()
    try:
        with engine.begin() as connection:  # NULL is now allowed...
            connection.exec_driver_sql("INSERT INTO users (id, email) VALUES (3, 'c@x.org')")
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:  # ...duplicates not
            connection.exec_driver_sql("INSERT INTO users (id, email, nickname) VALUES (4, 'd@x.org', 'ann')")
        with engine.begin() as connection:
            connection.exec_driver_sql("DELETE FROM users WHERE id = 3")
    finally:
        engine.dispose()

    result = project.db("downgrade", "accounts@-1")
    assert result.exit_code == 0, result.output
    assert project.query("SELECT id, email, nickname FROM users ORDER BY id") == data
    assert nickname_state(project) == (50, False, False, True)

    result = project.db("check")
    assert result.exit_code != 0  # the database is behind the 0002 migration again
    result = project.db("upgrade")
    assert result.exit_code == 0, result.output
    assert project.query("SELECT id, email, nickname FROM users ORDER BY id") == data
    assert nickname_state(project) == (80, True, True, True)


def _insert(project: Project) -> None:
    engine = project.engine()
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO users (id, email, nickname) VALUES (1, 'ann@x.org', 'ann')")
            connection.exec_driver_sql("INSERT INTO users (id, email, nickname) VALUES (2, 'bob@x.org', 'bob')")
    finally:
        engine.dispose()


def test_env_py_is_a_few_lines_calling_the_package(tmp_path: Path, sqlite_url: str) -> None:
    project = new_project(tmp_path, sqlite_url)
    assert project.db("init").exit_code == 0
    shipped = Path(__file__).parents[1] / "migrations" / "env.py"
    for env in (project.migrations / "env.py", shipped):
        lines = [line for line in env.read_text().splitlines() if line.strip()]
        assert len(lines) <= 10, env
        code = [line for line in lines if not line.lstrip().startswith(("#", '"""'))]
        assert "from flask_rollback.env import run_env" in code
        assert "run_env()" in code
    # Run by plain Alembic (not 'flask db'), it says so instead of doing anything.
    config = Config()
    config.set_main_option("script_location", str(project.migrations))
    with pytest.raises(RollbackError, match="flask db"):
        alembic_command.upgrade(config, "heads")
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()


@pytest.fixture
def mariadb_project(tmp_path: Path, mariadb_url: str) -> Project:
    project = new_project(tmp_path, mariadb_url, with_blog=False)
    assert project.db("init").exit_code == 0
    write_migration(
        project, "accounts", "0001_initial.py", "acc001", branch_labels=("accounts",),
        upgrade=USERS_UP, downgrade='op.drop_table("users")',
    )
    write_migration(
        project, "accounts", "0002_profiles.py", "acc002", down_revision="acc001",
        upgrade=PROFILES_UP + 'op.add_column("users", sa.Column("age", sa.Integer))\n'
        + 'op.execute("INSERT INTO no_such_table VALUES (1)")',
        downgrade='op.drop_column("users", "age")\nop.drop_table("profiles")',
    )
    return project


def test_mariadb_partial_step_is_recorded_refused_and_resolved(mariadb_project: Project) -> None:
    """MariaDB commits DDL at once: a migration failing after CREATE TABLE and ADD COLUMN stays
    partly applied. The error lists what ran, the version table stays at the last complete
    migration, the partial step is recorded, showmigrations marks the app, every writing
    command refuses until 'resolve'."""
    project = mariadb_project
    failed = project.run("upgrade")
    assert failed.returncode == 1, failed.stderr
    (error,) = [line for line in failed.stderr.splitlines() if line.startswith("Error:")]
    assert "accounts.0002_profiles (up) failed" in error and "PARTLY APPLIED" in error
    assert "CREATE TABLE profiles" in error and "ADD COLUMN age" in error
    assert "INSERT INTO profiles" in error  # committed by the ADD COLUMN after it
    assert "no_such_table" in error  # the failing statement's error
    assert "flask db resolve accounts acc002 --applied" in error
    assert versions(project) == ["acc001"]
    assert "profiles" in project.tables()
    (row,) = project.query("SELECT revision, direction, statements, resolved_at FROM rollback_log_partial")
    assert row[:2] == ("acc002", "up") and row[3] is None
    assert "CREATE TABLE profiles" in row[2] and "ADD COLUMN age" in row[2]
    assert [r["revision"] for r in log_rows(project)] == ["acc001"]

    shown = project.db("showmigrations")
    assert shown.exit_code == 0, shown.output
    assert "accounts  NEEDS ATTENTION" in shown.output
    assert "[!] 0002_profiles  PARTLY APPLIED (up" in shown.output
    assert "committed: CREATE TABLE profiles" in shown.output
    # A committed INSERT has no inverse: --undo would stop there, so it is not offered; the
    # way that works is.
    assert "--undo" not in shown.output.replace("'--undo' cannot reverse it", "")
    assert ("'--undo' cannot reverse it (INSERT INTO profiles (id, bio) VALUES (1, 'half-way') has no "
            "known inverse): make the schema match one side by hand, then run 'flask db resolve "
            "accounts acc002 --applied'") in shown.output

    for command in (["upgrade"], ["downgrade", "accounts@base", "--allow-data-loss"], ["stamp", "heads"]):
        refused = project.db(*command)
        assert refused.exit_code == 1, (command, refused.output)
        assert "app accounts needs attention" in refused.output, refused.output
        assert "nothing was changed" in refused.output
        assert "resolve accounts acc002 --undo" not in refused.output
    assert versions(project) == ["acc001"]
    assert project.db("upgrade", "--plan").exit_code == 0  # looking is fine

    wrong = project.db("resolve", "accounts", "acc001", "--applied")
    assert wrong.exit_code == 1 and "is not the partly applied migration" in wrong.output
    missing = project.db("resolve", "accounts", "acc002")
    assert missing.exit_code == 2 and "--applied or --reverted" in missing.output

    # The INSERT before ADD COLUMN was committed by it too: everything the migration meant to
    # do is in place (the failing statement was a mistake), so it is recorded as applied.
    assert project.query("SELECT id, bio FROM profiles") == [(1, "half-way")]
    resolved = project.db("resolve", "accounts", "acc002", "--applied")
    assert resolved.exit_code == 0, resolved.output
    assert "recorded as applied" in resolved.output
    assert versions(project) == ["acc002"]
    assert [(r["revision"], r["direction"], bool(r["fake"])) for r in log_rows(project)] == [
        ("acc001", "up", False), ("acc002", "up", True),
    ]
    again = project.db("resolve", "accounts", "acc002", "--applied")
    assert again.exit_code == 1 and "is not partly applied: nothing to resolve" in again.output
    assert "NEEDS ATTENTION" not in project.db("showmigrations").output
    down = project.db("downgrade", "accounts@acc001", "--allow-data-loss")
    assert down.exit_code == 0, down.output
    assert versions(project) == ["acc001"] and "profiles" not in project.tables()


UNDOABLE_UP = """
op.create_table("profiles", sa.Column("id", sa.Integer, primary_key=True), sa.Column("user_id", sa.Integer))
op.add_column("users", sa.Column("age", sa.Integer, server_default="0", nullable=False))
op.create_index("ix_users_age", "users", ["age"])
op.create_foreign_key("fk_profiles_user", "profiles", "users", ["user_id"], ["id"])
op.execute("INSERT INTO no_such_table VALUES (1)")
"""


def show_create(project: Project, table: str) -> str:
    return project.query(f"SHOW CREATE TABLE {table}")[0][1]


def test_mariadb_failure_after_ddl_is_undone_when_every_statement_has_a_safe_inverse(
    tmp_path: Path, mariadb_url: str
) -> None:
    """Issue 12 item 2: the committed CREATE TABLE, ADD COLUMN (values all its default), CREATE
    INDEX and ADD CONSTRAINT go back in reverse order; the schema is what it was before."""
    project = new_project(tmp_path, mariadb_url, with_blog=False)
    assert project.db("init").exit_code == 0
    write_migration(project, "accounts", "0001_initial.py", "acc001", branch_labels=("accounts",),
                    upgrade=USERS_UP, downgrade='op.drop_table("users")')
    assert project.db("upgrade").exit_code == 0
    project.query_write("INSERT INTO users (id, email) VALUES (1, 'ada@example.org'), (2, 'bob@example.org')")
    before, tables = show_create(project, "users"), project.tables()
    path = write_migration(project, "accounts", "0002_profiles.py", "acc002", down_revision="acc001",
                           upgrade=UNDOABLE_UP, downgrade='op.drop_table("profiles")')

    failed = project.run("upgrade")
    assert failed.returncode == 1, failed.stderr
    (error,) = [line for line in failed.stderr.splitlines() if line.strip()]
    assert error.startswith("Error: migration accounts.0002_profiles (up) failed: ProgrammingError: ")
    assert "no_such_table" in error and "PARTLY APPLIED" not in error
    assert "the database had committed 4 of its statements as they ran (CREATE TABLE profiles" in error
    assert (
        "they were undone (ALTER TABLE `profiles` DROP FOREIGN KEY `fk_profiles_user`; DROP INDEX "
        "`ix_users_age` ON `users`; ALTER TABLE `users` DROP COLUMN `age`; DROP TABLE `profiles`), "
        "so it left no trace; 0 earlier steps of this run stay done"
    ) in error
    assert show_create(project, "users") == before and project.tables() == tables
    assert versions(project) == ["acc001"]
    assert project.query("SELECT id, email FROM users ORDER BY id") == [(1, "ada@example.org"), (2, "bob@example.org")]

    path.write_text(path.read_text().replace('op.execute("INSERT INTO no_such_table VALUES (1)")', "pass"))
    assert project.db("upgrade").exit_code == 0
    assert versions(project) == ["acc002"] and "profiles" in project.tables()


KILLED_UP = """
import os, signal
bind = op.get_bind()
op.add_column("users", sa.Column("age", sa.Integer))
if bind.exec_driver_sql("SELECT DATABASE()").scalar().startswith("test_"):  # not while read
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_mariadb_step_killed_after_ddl_is_marked_refused_and_undone_only_without_data_loss(
    tmp_path: Path, mariadb_url: str
) -> None:
    """A SIGKILL between a step's DDL and its commit leaves the step's marker: the app needs
    attention, the schema says the statement ran, and 'resolve --undo' drops the column only
    while no value in it would be lost."""
    project = new_project(tmp_path, mariadb_url, with_blog=False)
    assert project.db("init").exit_code == 0
    write_migration(project, "accounts", "0001_initial.py", "acc001", branch_labels=("accounts",),
                    upgrade=USERS_UP, downgrade='op.drop_table("users")')
    assert project.db("upgrade").exit_code == 0
    project.query_write("INSERT INTO users (id, email) VALUES (1, 'ada@example.org')")
    before = show_create(project, "users")
    path = write_migration(project, "accounts", "0002_age.py", "acc002", down_revision="acc001",
                           upgrade=KILLED_UP, downgrade='op.drop_column("users", "age")')

    killed = project.run("upgrade")
    assert killed.returncode == -9, (killed.stdout, killed.stderr)
    assert "age" in show_create(project, "users") and versions(project) == ["acc001"]

    shown = project.db("showmigrations").output  # takes no lock: the marker as it was left
    assert "accounts  NEEDS ATTENTION" in shown
    assert " [!] 0002_age  INTERRUPTED (up, started " in shown
    assert "       may have run: ALTER TABLE users ADD COLUMN age INTEGER" in shown
    assert "run 'flask db resolve accounts acc002 --undo' to reverse its committed statements" in shown

    refused = project.db("upgrade")
    assert refused.exit_code == 1, refused.output
    assert "app accounts needs attention: migration accounts.0002_age (up)" in refused.output
    assert "interrupted: the process running it ended" in refused.output
    assert "the live schema shows its last statement ran" in refused.output
    assert "flask db resolve accounts acc002 --undo" in refused.output
    assert "[!] 0002_age  PARTLY APPLIED (up, failed " in project.db("showmigrations").output

    project.query_write("UPDATE users SET age = 7")  # the new code already wrote to it
    shown = project.db("showmigrations").output
    assert "resolve accounts acc002 --undo" not in shown
    assert ("'--undo' cannot reverse it (column users.age holds 1 value other than its default): "
            "make the schema match one side by hand, then run 'flask db resolve accounts acc002 "
            "--applied'") in shown
    kept = project.db("resolve", "accounts", "acc002", "--undo")
    assert kept.exit_code == 1, kept.output
    assert (
        "Error: cannot undo accounts.0002_age: column users.age holds 1 value other than its "
        "default; nothing was changed"
    ) in kept.output
    assert "age" in show_create(project, "users")

    project.query_write("UPDATE users SET age = NULL")
    undone = project.db("resolve", "accounts", "acc002", "--undo")
    assert undone.exit_code == 0, undone.output
    assert undone.output.strip() == (
        "Undid accounts.0002_age (up): ran ALTER TABLE `users` DROP COLUMN `age`; the schema is "
        "back where the version table says; migrations can run again."
    )
    assert show_create(project, "users") == before and versions(project) == ["acc001"]
    assert project.query("SELECT resolution FROM rollback_log_partial") == [("undone",)]
    assert "NEEDS ATTENTION" not in project.db("showmigrations").output

    path.write_text(path.read_text().replace("    os.kill(os.getpid(), signal.SIGKILL)", "    pass"))
    assert project.db("upgrade").exit_code == 0
    assert versions(project) == ["acc002"]
