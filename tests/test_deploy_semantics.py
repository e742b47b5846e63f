"""Deploy semantics and interruptions (issue 11, items 6 to 10).

Restore in key-ranged batches that a signal stops; an interactive rollback that asks before it
takes the lock and refuses a plan that changed; ``rollback DEPLOY`` reverting exactly what the
deploy applied (later plain upgrades marked); failed deploys that applied nothing blocking
nothing; labels checked before anything runs; a server lost mid-deploy naming the repair; a
database migrated by newer code said as such; SIGTERM during rollback and restore, on real
SQLite files (a long statement, stopped with ``interrupt()``), PostgreSQL (``pg_sleep``) and
MariaDB (``SLEEP()``, stopped with ``KILL QUERY``).
Timings are not asserted here: they are in ``bench/restore.py``.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest

import flask_rollback
from flask_rollback import archive as archive_module
from flask_rollback import commands
from flask_rollback.errors import EXIT_COULD_NOT_RUN, EXIT_TERMINATED, RollbackError
from tests.pgserver import PostgresServer
from tests.projects import ACCOUNTS_MODELS, Project, new_project, revision_of, write_chain, write_migration
from tests.test_deploy import (
    append_to_factory,
    app_tables,
    db,
    deployed_project,
    one_error,
    records,
    state,
    versions,
)
from tests.test_rehearsal_copy import finish, start_db, stderr_lines, wait_for

AUDIT_MODELS = ACCOUNTS_MODELS + '''

class Audit(db.Model):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(primary_key=True)
'''
AUDIT2_MODELS = AUDIT_MODELS + '''

class Audit2(db.Model):
    __tablename__ = "audit2"
    id: Mapped[int] = mapped_column(primary_key=True)
'''
TAGS_MODEL = '''

class Tag(db.Model):
    __tablename__ = "tags"
    id: Mapped[int] = mapped_column(primary_key=True)
'''


def label(project: Project, app: str, number: str) -> str:
    (path,) = (project.migrations / app).glob(f"{number}_*.py")
    return f"{app}.{path.stem}"


def is_postgresql(project: Project) -> bool:
    return project.url.startswith("postgresql")


# -- 6. restore: key-ranged batches, every row back ------------------------------------------------

PAIRS = (
    'op.create_table("pairs", sa.Column("a", sa.Integer, primary_key=True), '
    'sa.Column("b", sa.String(10), primary_key=True), sa.Column("v", sa.String(20)))'
)
DROP_V = 'with op.batch_alter_table("pairs") as batch:\n    batch.drop_column("v")'
ADD_V = 'op.add_column("pairs", sa.Column("v", sa.String(20)))'


def pairs_project(tmp_path: Path, url: str, whole_table: bool) -> tuple[Project, str, list[tuple]]:
    """accounts with table ``pairs`` (composite key) of 1000 rows, archived by accounts 0003
    (dropping the table, or its column ``v``) and re-created empty by the downgrade."""
    project = new_project(tmp_path, url, with_blog=False)
    db(project, "init")
    db(project, "makemigrations")
    first = revision_of(project, "accounts", "0001")
    write_migration(project, "accounts", "0002_pairs.py", "pairs0002", first, PAIRS, 'op.drop_table("pairs")')
    db(project, "upgrade")
    project.query_write(
        "INSERT INTO pairs (a, b, v) VALUES "
        + ", ".join(f"({i // 10}, 'k{i % 10}', 'v{i}')" for i in range(1000))
    )
    original = project.query("SELECT a, b, v FROM pairs ORDER BY a, b")
    if whole_table:
        write_migration(project, "accounts", "0003_drop.py", "drop0003", "pairs0002", 'op.drop_table("pairs")', PAIRS)
        name = "rollback_archives_drop0003_pairs"
    else:
        write_migration(project, "accounts", "0003_drop.py", "drop0003", "pairs0002", DROP_V, ADD_V)
        name = "rollback_archives_drop0003_pairs__v"
    assert f"into {name} before" in db(project, "upgrade", "--archive").output
    db(project, "downgrade", "accounts", "-1")
    return project, name, original


@pytest.mark.parametrize("whole_table", [True, False], ids=["table", "column"])
def test_restore_in_batches_puts_every_row_back(
    tmp_path: Path, db_url: str, whole_table: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, name, original = pairs_project(tmp_path, db_url, whole_table)
    monkeypatch.setattr(archive_module, "RESTORE_BATCH_ROWS", 97)  # 11 batches, ranges over (a, b)
    if whole_table:  # 300 rows exist again, with other values; 700 are missing
        project.query_write(
            "INSERT INTO pairs (a, b, v) VALUES "
            + ", ".join(f"({i // 10}, 'k{i % 10}', 'changed')" for i in range(300))
        )
        restored = db(project, "restore", name).output
        assert f"Restored pairs from {name}: 300 rows updated, 700 inserted." in restored
        assert f"Dropped archive {name}." in restored
    else:  # every row is there with v NULL, but those of a = 99 were deleted meanwhile
        project.query_write("DELETE FROM pairs WHERE a = 99")
        restored = db(project, "restore", name)
        assert f"Restored pairs.v from {name}: 990 rows updated, 0 inserted." in restored.output
        assert "10 archived rows found no row with the same key; the archive is kept" in restored.stderr
        original = [row for row in original if row[0] != 99]
    assert project.query("SELECT a, b, v FROM pairs ORDER BY a, b") == original


# -- 7. interactive rollback: asked before the lock, re-planned under it -----------------------------


def audited_project(tmp_path: Path, url: str) -> Project:
    """Deploy 1: accounts + blog; deploy 2: accounts.0002 (table audit)."""
    project = deployed_project(tmp_path, url)
    project.write("accounts/models.py", AUDIT_MODELS)
    db(project, "makemigrations")
    db(project, "deploy", "--label", "v2")
    return project


def api_rollback(project: Project, **options: object) -> commands.RollbackResult:
    with project.app().app_context():
        return commands.rollback(commands.get_project(), **options)  # type: ignore[arg-type]


def test_interactive_rollback_asks_before_locking_and_refuses_a_changed_plan(tmp_path: Path, db_url: str) -> None:
    project = audited_project(tmp_path, db_url)
    project.write("accounts/models.py", AUDIT2_MODELS)
    db(project, "makemigrations")  # accounts.0003 (audit2), pending
    asked: list[list[str]] = []

    def confirm_while_someone_upgrades(plan: flask_rollback.plan.Plan) -> bool:
        asked.append([step.migration.label for step in plan.steps])
        # The lock is free while the person reads: another process can take it meanwhile.
        upgraded = project.run("upgrade", "--lock-timeout", "5")
        assert upgraded.returncode == 0, upgraded.stderr
        return True

    with pytest.raises(RollbackError) as refused:
        api_rollback(project, confirm=confirm_while_someone_upgrades)
    assert asked == [[label(project, "accounts", "0002")]]  # before the other process upgraded
    assert refused.value.exit_code == EXIT_COULD_NOT_RUN
    assert "the rollback plan changed while waiting for confirmation" in refused.value.message
    assert "nothing was run" in refused.value.message
    assert {"audit", "audit2"} <= app_tables(project)
    assert [r["status"] for r in records(project)] == ["applied", "applied"]

    # Asked again: the plan shown is the plan run (audit2's migration marked, reverted too).
    shown: list[flask_rollback.plan.Plan] = []
    result = api_rollback(project, confirm=lambda plan: shown.append(plan) or True)
    (plan,) = shown
    assert [s.migration.revision for s in plan.steps] == [s.migration.revision for s in result.plan.steps]
    assert len(plan.steps) == 2 and list(plan.notes) == [plan.steps[0].migration.revision]
    assert "applied after deploy 2 by a plain upgrade" in plan.notes[plan.steps[0].migration.revision]
    assert app_tables(project) == {"users", "posts"}
    assert [r["status"] for r in records(project)] == ["applied", "rolled back"]


def test_a_declined_rollback_never_took_the_lock(tmp_path: Path, sqlite_url: str) -> None:
    project = audited_project(tmp_path, sqlite_url)
    before = state(project)

    def decline(_plan: object) -> bool:
        other = project.run("deploys", "--repair")  # takes the migration lock
        assert other.returncode == 0, other.stderr
        return False

    with pytest.raises(RollbackError, match="rollback cancelled; nothing was changed"):
        api_rollback(project, confirm=decline)
    assert state(project) == before


# -- 8. deploy records that mean what they say ---------------------------------------------------------

#: Fails on the real database only (the rehearsal passes), before it changes anything.
FAILS_ON_TARGET = """
import os
bind = op.get_bind()
from tests.projects import server_database, sleep_on_server
if bind.dialect.name == "sqlite":
    where = os.path.basename(bind.exec_driver_sql("PRAGMA database_list").fetchall()[0][2])
else:
    where = server_database(bind)
if not where.startswith("rollback_rehearsal_"):
    raise RuntimeError("the real database says no")
"""


def test_rollback_reverts_exactly_what_the_deploy_applied(tmp_path: Path, db_url: str) -> None:
    project = audited_project(tmp_path, db_url)
    deploy_2 = records(project)[1]
    assert deploy_2["migrations"] == [revision_of(project, "accounts", "0002")]

    # A plain upgrade afterwards: accounts.0003 stands on the deploy's migration, blog.0002 not.
    project.write("accounts/models.py", AUDIT2_MODELS)
    project.write("blog/models.py", (project.package_dir / "blog/models.py").read_text() + TAGS_MODEL)
    db(project, "makemigrations")
    db(project, "upgrade")
    later = revision_of(project, "accounts", "0003")

    # Deploy 3 fails on the real database before applying anything.
    write_migration(project, "accounts", "0004_fails.py", "fails0004", later, FAILS_ON_TARGET, 'op.execute("SELECT 1")')
    failed = db(project, "deploy", "--label", "v3", "-q", code=1)  # -q: no progress line
    assert "deploy 3 failed" in one_error(failed) and "the real database says no" in one_error(failed)
    assert [(r["status"], r["migrations"]) for r in records(project)][2] == ("failed", [])
    (project.migrations / "accounts" / "0004_fails.py").unlink()

    plan = [  # deploy 3 blocks nothing; MariaDB's note on DDL is tested with --plan itself
        line for line in db(project, "rollback", "--plan").output.splitlines()
        if "commits every DDL statement at once" not in line
    ]
    assert plan[0] == "Plan: downgrade before deploy 2: 2 migrations (accounts 2)"
    assert plan[1].split()[:3] == ["1.", "-", label(project, "accounts", "0003")]
    assert plan[1].endswith("NOT IN THE DEPLOY: applied after deploy 2 by a plain upgrade")
    assert plan[2].split()[:3] == ["2.", "-", label(project, "accounts", "0002")] and "NOT IN THE DEPLOY" not in plan[2]
    assert "depends on it and is reverted too" in plan[3]
    assert "blog" not in "\n".join(plan)

    out = [re.sub(r"OK \(\d+\.\d\d s\)", "OK", line) for line in db(project, "rollback", "2", "--yes").output.splitlines()]
    assert out == [
        f"Unapplying {label(project, 'accounts', '0003')}... OK",
        f"Unapplying {label(project, 'accounts', '0002')}... OK",
        "Rolled back deploy 2: reverted 2 migrations.",
        f"Also reverted, applied after deploy 2 by a plain upgrade: {label(project, 'accounts', '0003')}.",
    ]
    assert app_tables(project) == {"users", "posts", "tags"}  # blog.0002 stays: not the deploy's
    assert [r["status"] for r in records(project)] == ["applied", "rolled back", "failed"]
    assert revision_of(project, "blog", "0002") in versions(project)


HOOK_MARKER = """
import os, pathlib

@rollback.before_deploy
def mark(plan):
    pathlib.Path(os.environ["TEST_HOOK_MARKER"]).write_text("ran")
"""


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("--label", "v" * 256, "--label must be 1 to 255 characters (got 256)"),
        ("--label", "v2\nrm -rf /", "--label must be one line of printable characters"),
        ("--label", "   ", "--label must be 1 to 255 characters"),
        ("--git-sha", "not-a-sha; true", "--git-sha must be a commit id, up to 64 hex digits"),
        ("--git-sha", "a" * 65, "--git-sha must be a commit id"),
    ],
    ids=["long-label", "newline-label", "blank-label", "bad-sha", "long-sha"],
)
def test_label_and_git_sha_are_checked_before_any_backup_or_hook(
    tmp_path: Path, sqlite_url: str, option: str, value: str, fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = new_project(tmp_path, sqlite_url)
    backups, marker = tmp_path / "backups", tmp_path / "hook-ran"
    project.set_factory(["accounts", "blog"], config={"ROLLBACK_BACKUP_DIR": str(backups)})
    append_to_factory(project, HOOK_MARKER)
    monkeypatch.setenv("TEST_HOOK_MARKER", str(marker))
    db(project, "init")
    db(project, "makemigrations")
    result = project.run("deploy", option, value)
    assert result.returncode == EXIT_COULD_NOT_RUN, (result.stdout, result.stderr)
    (line,) = stderr_lines(result)
    assert line.startswith("Error: ") and fragment in line and line.endswith("nothing was run"), line
    assert not marker.exists() and not backups.exists()
    assert app_tables(project) == set() and "rollback_deploys" not in project.tables()


def test_a_server_lost_mid_deploy_names_the_deploy_and_the_repair(
    tmp_path: Path, pg_server: PostgresServer, pg_url: str
) -> None:
    project = new_project(tmp_path, pg_url, with_blog=False)
    db(project, "init")
    chain = write_chain(project, "chain", 40, rows=5, sleep=0.05)
    process = start_db(project, "deploy", "--no-rehearsal", "--allow-data-loss")

    def applied() -> int:
        if "rollback_log" not in project.tables():
            return 0
        return int(project.query("SELECT count(*) FROM rollback_log WHERE app = 'chain'")[0][0])

    wait_for(lambda: applied() >= 3, process, "the deploy to get going")
    pg_server.stop_server_only()
    try:
        result = finish(process)
    finally:
        pg_server.start_server_only()
    assert result.returncode == EXIT_COULD_NOT_RUN, (result.stdout, result.stderr)
    (line,) = stderr_lines(result)
    assert line.startswith("Error: deploy 1: it stopped (") and "flask db deploys --repair" in line, line
    assert pg_server.password not in result.stderr and "Traceback" not in result.stderr

    repaired = db(project, "deploys", "--repair").output.splitlines()
    assert repaired[1].split()[:2] == ["1", "failed"]
    (record,) = records(project)
    done = len(record["migrations"])
    assert 3 <= done < 40 and record["migrations"] == chain[:done]


# -- 9. a database migrated by newer code ---------------------------------------------------------------


def test_a_database_ahead_of_the_code_recommends_deploying_that_code(tmp_path: Path, db_url: str) -> None:
    project = audited_project(tmp_path, db_url)
    newer = project.migrations / "accounts"
    (file,) = newer.glob("0002_*.py")
    revision, name = revision_of(project, "accounts", "0002"), label(project, "accounts", "0002")
    file.unlink()  # the code running now is older than what migrated the database
    project.write("accounts/models.py", ACCOUNTS_MODELS)
    for command in (["upgrade"], ["rollback", "--plan"], ["showmigrations"], ["deploy"]):
        result = project.db(*command)
        text = result.output
        assert f"migrated by newer code than this: it is at {name} ({revision})" in text, (command, text)
        assert "deploy the code that has this migration (the release that applied it)" in text
        assert "--purge" not in text
    gate = project.db("predeploy").output
    assert "migrated by newer code" in gate and "--purge" not in gate
    package = Path(flask_rollback.__file__).parent
    for source in [*package.rglob("*.py"), Path(flask_rollback.__file__).parents[1] / "README.md"]:
        assert "stamp --purge" not in source.read_text(), source


# -- 10. SIGTERM during rollback and restore -------------------------------------------------------------

#: A downgrade that takes (nearly) forever once TEST_MARKER is set: SQLite in one long statement
#: (stopped only by interrupt()), PostgreSQL in pg_sleep, MariaDB in SLEEP() (cancelled on the
#: server).
SLOW_DOWNGRADE = '''
import os, pathlib
bind = op.get_bind()
from tests.projects import server_database, sleep_on_server
op.drop_table("audit")
if "TEST_MARKER" in os.environ:
    pathlib.Path(os.environ["TEST_MARKER"]).write_text("in the statement")
    if bind.dialect.name == "sqlite":
        bind.exec_driver_sql(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000000) "
            "SELECT count(*) FROM c"
        ).all()
    else:
        sleep_on_server(bind, 600)
'''


def test_sigterm_during_rollback_rolls_the_step_back(tmp_path: Path, db_url: str) -> None:
    project = deployed_project(tmp_path, db_url)
    project.write("accounts/models.py", AUDIT_MODELS)
    write_migration(
        project, "accounts", "0002_slow.py", "slow0002", revision_of(project, "accounts", "0001"),
        'op.create_table("audit", sa.Column("id", sa.Integer, primary_key=True))', SLOW_DOWNGRADE,
    )
    db(project, "deploy", "--label", "v2")
    before = state(project)
    marker = tmp_path / "marker"
    process = start_db(project, "rollback", "--yes", TEST_MARKER=str(marker))
    wait_for(marker.exists, process, "the slow downgrade")
    time.sleep(0.3)  # into the statement that follows the marker
    process.send_signal(signal.SIGTERM)
    result = finish(process)  # the statement alone would run for minutes

    assert result.returncode == EXIT_TERMINATED, (result.stdout, result.stderr)
    if db_url.startswith("mysql"):  # DROP TABLE committed at once and has no inverse
        assert stderr_lines(result) == [
            "Error: terminated by SIGTERM; migration accounts.0002_slow (down) was stopped: it is "
            "PARTLY APPLIED: the database committed 1 of its statements as they ran (DROP TABLE "
            "audit); the rest did not run; it cannot be undone automatically (DROP TABLE audit has "
            "no known inverse); the version table still names the last complete migration; 0 "
            "earlier steps of this run stay done; recorded in rollback_log_partial: migrations "
            "stay refused until the schema is made to match one side by hand and 'flask db "
            "resolve accounts slow0002 --applied' or '--reverted' says which; deploy 2 stays "
            "recorded as applied"
        ]
        assert "audit" not in project.tables() and versions(project) == before[1]
        line = one_error(db(project, "rollback", "--yes", code=1))
        assert "app accounts needs attention" in line and "resolve accounts slow0002" in line
        out = db(project, "resolve", "accounts", "slow0002", "--reverted", "--lock-timeout", "5").output
        assert out.startswith("Resolved accounts.0002_slow: recorded as not applied")  # nothing left locked
        assert versions(project) == sorted(v for v in before[1] if v != "slow0002")
        return
    assert stderr_lines(result) == [
        "Error: terminated by SIGTERM; migration accounts.0002_slow (down) was rolled back, "
        "0 earlier steps of this run stay done; deploy 2 stays recorded as applied"
    ]
    assert state(project) == before and "audit" in project.tables()
    out = db(project, "rollback", "--yes", "--lock-timeout", "5").output  # nothing left locked
    assert out.splitlines()[-1] == "Rolled back deploy 2: reverted 1 migration."


SQLITE_SLOW_TRIGGER = (
    "CREATE TABLE big AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000) "
    "SELECT x FROM c",
    "CREATE TRIGGER slow BEFORE UPDATE ON pairs BEGIN SELECT count(*) FROM big a, big b, big c; END",
)
PG_SLOW_TRIGGER = (
    "CREATE FUNCTION slow() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(600); RETURN NULL; END $$ "
    "LANGUAGE plpgsql",
    "CREATE TRIGGER slow BEFORE UPDATE ON pairs FOR EACH STATEMENT EXECUTE FUNCTION slow()",
)

#: MariaDB: each updated row sleeps (KILL QUERY stops it, as pg_sleep's cancel does).
MARIADB_SLOW_TRIGGER = ("CREATE TRIGGER slow BEFORE UPDATE ON pairs FOR EACH ROW SET @slow = SLEEP(600)",)


def write_locked(project: Project) -> bool:
    """SQLite: another connection holds the write lock (the restore is writing)."""
    database = project.url.removeprefix("sqlite:///")
    connection = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        connection.close()


def test_sigterm_during_restore_writes_nothing_and_keeps_the_archive(tmp_path: Path, db_url: str) -> None:
    project, name, original = pairs_project(tmp_path, db_url, whole_table=False)
    postgresql = is_postgresql(project)
    mariadb = db_url.startswith("mysql")
    server = postgresql or mariadb
    project.query_write(
        *(PG_SLOW_TRIGGER if postgresql else MARIADB_SLOW_TRIGGER if mariadb else SQLITE_SLOW_TRIGGER)
    )
    before = project.query("SELECT a, b, v FROM pairs ORDER BY a, b")
    process = start_db(project, "restore", name)
    sleeping = (
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'" if postgresql else
        "SELECT count(*) FROM information_schema.PROCESSLIST WHERE STATE = 'User sleep'"
    )
    if server:
        wait_for(lambda: project.query(sleeping) == [(1,)], process, "the restore's UPDATE")
    else:
        wait_for(lambda: write_locked(project), process, "the restore's write transaction")
        time.sleep(0.5)  # from the index (milliseconds) into the UPDATE (minutes)
    process.send_signal(signal.SIGTERM)
    result = finish(process)

    assert result.returncode == EXIT_TERMINATED, (result.stdout, result.stderr)
    assert stderr_lines(result) == [
        f"Error: terminated by SIGTERM; the restore of {name} was rolled back: nothing was "
        "written, the archive is kept"
    ]
    assert project.query("SELECT a, b, v FROM pairs ORDER BY a, b") == before
    if server:
        assert project.query(sleeping) == [(0,)]  # the statement stopped on the server too
    project.query_write("DROP TRIGGER slow ON pairs" if postgresql else "DROP TRIGGER slow")
    restored = db(project, "restore", name, "--lock-timeout", "5").output
    assert "1000 rows updated" in restored
    assert project.query("SELECT a, b, v FROM pairs ORDER BY a, b") == original
