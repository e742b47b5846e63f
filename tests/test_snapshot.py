"""Schema snapshots: an empty database built from ``migrations/schema-snapshots/<backend>.sql``
in one step, equal to one built by replaying every migration; a snapshot that disagrees with the
migrations is ignored with one line (the migrations are replayed) and ``check`` fails on it."""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import io
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result

from flask_rollback.errors import EXIT_SNAPSHOT_STALE
from flask_rollback.rehearsal import snapshot as schema_of
from tests.projects import ACCOUNTS_MODELS, Project, new_project, revision_of, write_migration
from tests.test_binds import ANALYTICS_MODELS

BUILT = "Built the database from the schema snapshot"
IGNORED = "ignored:"
SNAPSHOTS_ON = {"ROLLBACK_SNAPSHOTS": True}
OWN = {"alembic_version", "rollback_log", "rollback_log_partial", "rollback_lock"}


def ok(result: Result) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 0, result.output
    return result.output


def backend_of(url: str) -> str:
    return {"sqlite": "sqlite", "postgresql": "postgresql", "mysql": "mariadb"}[
        sa.make_url(url).get_backend_name()
    ]


def snapshot_file(project: Project, bind: str | None = None) -> Path:
    name = backend_of(project.url)
    return project.migrations / "schema-snapshots" / (f"{bind}.{name}.sql" if bind else f"{name}.sql")


def snapshot_project(tmp_path: Path, url: str) -> Project:
    """The issue's example project with schema snapshots on (the product default; the shared
    test factory turns them off so other tests keep replaying)."""
    project = new_project(tmp_path, url)
    project.set_factory(["accounts", "blog"], SNAPSHOTS_ON)
    return project


def seeded_project(tmp_path: Path, url: str) -> Project:
    """accounts and blog from makemigrations, plus a data migration inserting two users."""
    project = snapshot_project(tmp_path, url)
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    write_migration(
        project, "accounts", "0002_seed.py", "seed0002", revision_of(project, "accounts", "0001"),
        """
        users = sa.table("users", sa.column("id"), sa.column("email"))
        op.bulk_insert(users, [{"id": 1, "email": "admin@example.org"}, {"id": 2, "email": "o'brien@example.org"}])
        """,
        'op.execute("DELETE FROM users")',
    )
    ok(project.db("snapshot"))
    return project


def state(url: str) -> tuple[object, list[tuple]]:  # type: ignore[type-arg]
    """The schema (tables, columns, keys, indexes) without our tables, and the users' rows."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            schema = schema_of(connection, OWN)
            rows = [tuple(r) for r in connection.exec_driver_sql("SELECT id, email FROM users ORDER BY id")]
        return schema, rows
    finally:
        engine.dispose()


def log_rows(project: Project) -> list[tuple]:  # type: ignore[type-arg]
    return project.query("SELECT app, name, direction, fake FROM rollback_log ORDER BY id")


def recorded_as_written(project: Project, count: int) -> None:
    """The log holds one fake row per migration file: its app, name, revision and file sha256,
    this host and user, one shared time and no duration."""
    from tests.test_commands import log_rows as typed_rows

    files = {(path.parent.name, path.stem): path for path in project.migrations.glob("*/[0-9]*.py")}
    rows = typed_rows(project)
    assert len(rows) == count == len(files)
    host, user = socket.gethostname(), getpass.getuser()
    for row in rows:
        path = files[row["app"], row["name"]]
        declared = re.search(r"^revision(?::[^=]*)? = ['\"](\w+)['\"]", path.read_text(), re.MULTILINE)
        assert declared is not None and row["revision"] == declared[1]
        assert row["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert row["direction"] == "up" and row["fake"] and row["duration_ms"] == 0
        assert row["started_at"] == row["finished_at"] == rows[0]["started_at"]
        assert (row["host"], row["user"]) == (host, user)


# -- making it and using it -----------------------------------------------------------------


def test_a_fresh_database_through_the_snapshot_equals_a_replayed_one(
    tmp_path: Path, db_url: str, second_db_url: str
) -> None:
    project = seeded_project(tmp_path, db_url)
    path = snapshot_file(project)
    text = path.read_text()
    assert text.startswith("-- flask-rollback schema snapshot\n-- format: 1\n")
    assert f"-- backend: {backend_of(db_url)}" in text and "-- migrations: 3" in text
    assert "seed0002" in text.split("\n\n")[0]  # the head it stands for
    assert "admin@example.org" in text  # the rows migrations insert come along
    assert "rollback_log" not in text and "alembic_version" not in text

    out = ok(project.db("upgrade"))
    assert BUILT in out and str(path) in out and "3 migrations" in out
    assert sorted(row[:3] for row in log_rows(project)) == [
        ("accounts", "0001_initial", "up"), ("accounts", "0002_seed", "up"), ("blog", "0001_initial", "up"),
    ]
    assert all(row[3] for row in log_rows(project))  # recorded, not run
    recorded_as_written(project, 3)

    replayed = Project(project.root, project.package, second_db_url)
    out = ok(replayed.db("upgrade", "--replay"))
    assert BUILT not in out and "Applied 3 migrations" in out
    assert state(project.url) == state(second_db_url)
    assert state(project.url)[1] == [(1, "admin@example.org"), (2, "o'brien@example.org")]

    shown = ok(project.db("showmigrations"))
    assert "[ ]" not in shown and shown.count("[X]") == 3
    ok(project.db("check"))
    # Step by step back down from there, then up again (by replay: the log is not empty).
    refused = project.db("downgrade", "accounts@-1")  # the guard counts the seed rows
    assert refused.exit_code == 6 and "would destroy existing data" in refused.output
    ok(project.db("downgrade", "accounts@-1", "--allow-data-loss"))
    assert project.query("SELECT count(*) FROM users") == [(0,)]
    ok(project.db("downgrade", "blog@-1"))
    ok(project.db("downgrade", "accounts@-1"))
    assert not project.tables() - OWN
    out = ok(project.db("upgrade"))
    assert BUILT not in out and "Applied 3 migrations" in out
    assert state(project.url) == state(second_db_url)


def test_the_python_api_uses_the_snapshot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = seeded_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    app = project.app()
    import flask_rollback

    with app.app_context():
        result = flask_rollback.upgrade()
    assert result.snapshot is not None and result.snapshot.used and result.snapshot.count == 3
    assert BUILT in capsys.readouterr().err
    assert project.query("SELECT email FROM users ORDER BY id")[0] == ("admin@example.org",)


def test_an_edit_between_two_calls_in_one_process_is_seen(tmp_path: Path) -> None:
    """A test suite upgrading a fresh database per test in one process: the second call reads
    what the first one left in memory only while the files are as they were; a migration edited
    in between (same size, its mtime put back: only its ctime tells) makes the snapshot stale."""
    import flask_rollback
    from flask_rollback.index import RACY_NS

    project = seeded_project(tmp_path, f"sqlite:///{tmp_path / 'one.sqlite'}")
    time.sleep(RACY_NS / 1e9 + 0.1)  # the files are no longer racy: what was read is reused

    def upgrade(name: str) -> tuple[object, Project]:
        fresh = Project(project.root, project.package, f"sqlite:///{tmp_path / name}")
        with fresh.app().app_context():
            return flask_rollback.upgrade().snapshot, fresh

    for name in ("one.sqlite", "two.sqlite"):
        snapshot, fresh = upgrade(name)
        assert snapshot is not None and snapshot.used and snapshot.count == 3  # type: ignore[attr-defined]
        assert fresh.query("SELECT email FROM users WHERE id = 1") == [("admin@example.org",)]

    seed = project.migrations / "accounts" / "0002_seed.py"
    before = seed.stat()
    seed.write_text(seed.read_text().replace("admin@example.org", "alice@example.org"))
    os.utime(seed, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert seed.stat().st_size == before.st_size and seed.stat().st_mtime_ns == before.st_mtime_ns

    snapshot, fresh = upgrade("three.sqlite")
    assert snapshot is not None and not snapshot.used  # type: ignore[attr-defined]
    assert "a migration file changed since it was made" in snapshot.line  # type: ignore[attr-defined]
    assert fresh.query("SELECT email FROM users WHERE id = 1") == [("alice@example.org",)]
    assert not any(row[3] for row in log_rows(fresh))  # replayed


def test_a_long_history_in_one_process(tmp_path: Path) -> None:
    """300 migrations (more than one INSERT of log rows on SQLite): every one recorded; then, in
    the same process, a migration added and removed again between two calls is seen each time
    (what the first calls made is reused only while every file is as it was)."""
    import flask_rollback
    from flask_rollback.index import RACY_NS

    project = seeded_project(tmp_path, f"sqlite:///{tmp_path / 'one.sqlite'}")
    parent = revision_of(project, "blog", "0001")
    for number in range(2, 299):
        write_migration(project, "blog", f"{number:04d}_step.py", f"step{number:04d}", parent, "pass")
        parent = f"step{number:04d}"
    ok(project.db("snapshot"))
    time.sleep(RACY_NS / 1e9 + 0.1)  # no file is racy any more: what was read is reused

    def upgrade(name: str) -> tuple[Any, Project]:
        fresh = Project(project.root, project.package, f"sqlite:///{tmp_path / name}")
        with fresh.app().app_context(), contextlib.redirect_stderr(io.StringIO()):
            return flask_rollback.upgrade().snapshot, fresh

    for name in ("one.sqlite", "two.sqlite"):
        snapshot, fresh = upgrade(name)
        assert snapshot.used and snapshot.count == 300
        recorded_as_written(fresh, 300)
        shown = ok(fresh.db("showmigrations"))
        assert shown.count("[X]") == 300 and "[ ]" not in shown

    extra = write_migration(project, "blog", "0299_step.py", "step0299", parent, "pass")
    snapshot, fresh = upgrade("three.sqlite")
    assert not snapshot.used and "made from 300 migrations, there are 301 now" in snapshot.line
    assert len(log_rows(fresh)) == 301 and not any(row[3] for row in log_rows(fresh))  # replayed

    extra.unlink()
    snapshot, fresh = upgrade("four.sqlite")
    assert snapshot.used and snapshot.count == 300
    recorded_as_written(fresh, 300)


def test_regenerating_gives_the_same_bytes_incremental_or_full(tmp_path: Path, db_url: str) -> None:
    project = seeded_project(tmp_path, db_url)
    path = snapshot_file(project)
    first = path.read_bytes()
    out = ok(project.db("snapshot"))
    assert "up to date" in out
    assert path.read_bytes() == first
    # A model change: makemigrations writes the migration and brings the snapshot along,
    # starting from the previous one; a full replay then gives the very same bytes.
    project.write("accounts/models.py", ACCOUNTS_MODELS + "    name: Mapped[str | None] = mapped_column(db.String(50))\n")
    out = ok(project.db("makemigrations"))
    assert "Updated the schema snapshot" in out and "(from the previous snapshot and the new migrations)" in out
    assert out.index("Created migration") < out.index("Updated the schema snapshot"), out  # what was made first
    incremental = path.read_bytes()
    assert re.search(rb"[\s`\"]name[`\"]? (?:character )?var", incremental, re.I) and incremental != first
    assert "up to date (every migration replayed)" in ok(project.db("snapshot"))
    assert path.read_bytes() == incremental
    # Loaded and dumped again: the same bytes too.
    assert "up to date (from the previous snapshot" in ok(project.db("snapshot", "--incremental"))
    assert path.read_bytes() == incremental
    if os.environ.get("SNAPSHOT_SHOW"):
        print(incremental.decode())


def test_makemigrations_check_and_dry_run_write_no_snapshot(tmp_path: Path) -> None:
    project = snapshot_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    ok(project.db("init"))
    assert project.db("makemigrations", "--check").exit_code == 3
    ok(project.db("makemigrations", "--dry-run"))
    assert not (project.migrations / "schema-snapshots").exists()


def test_snapshots_off(tmp_path: Path) -> None:
    project = Project(tmp_path, f"proj_{uuid.uuid4().hex[:10]}", f"sqlite:///{tmp_path / 'db.sqlite'}")
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.set_factory(["accounts"], {"ROLLBACK_SNAPSHOTS": False})
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    assert not (project.migrations / "schema-snapshots").exists()
    result = project.db("snapshot")
    assert result.exit_code == 1 and "ROLLBACK_SNAPSHOTS = False" in result.output
    assert BUILT not in ok(project.db("upgrade"))


# -- a snapshot that disagrees with the migrations -------------------------------------------


@pytest.mark.backends("postgresql")
def test_a_stale_snapshot_of_another_backend_says_which_url_makes_it(tmp_path: Path, db_url: str) -> None:
    """A project on PostgreSQL that also ships a SQLite snapshot (made from the same history
    on SQLite): a new migration leaves it stale, and 'flask db snapshot' here makes only the
    PostgreSQL one, so the line says which database URL makes it."""
    sqlite_project = seeded_project(tmp_path / "sqlite", f"sqlite:///{tmp_path / 'db.sqlite'}")
    project = seeded_project(tmp_path / "pg", db_url)
    stale = project.migrations / "schema-snapshots" / "sqlite.sql"
    shutil.copy(snapshot_file(sqlite_project), stale)
    ok(project.db("upgrade"))
    assert ok(project.db("check"))
    write_migration(project, "accounts", "0003_more.py", "more0003", "seed0002", "pass", "pass")
    ok(project.db("snapshot"))
    ok(project.db("upgrade"))
    result = project.db("check")
    assert result.exit_code == EXIT_SNAPSHOT_STALE, result.output
    lines = [line for line in result.output.splitlines() if "schema snapshot" in line]
    assert lines == [f"schema snapshot {stale} is not current: it was made from 3 migrations, there are 4 "
                     "now; run 'flask db snapshot' with a sqlite database URL"], lines


@pytest.mark.parametrize("change", ["edited migration", "new migration", "edited body"])
def test_a_stale_snapshot_is_ignored_and_check_fails(tmp_path: Path, change: str) -> None:
    project = seeded_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    path = snapshot_file(project)
    if change == "edited migration":
        seed = project.migrations / "accounts" / "0002_seed.py"
        seed.write_text(seed.read_text().replace("admin@example.org", "root@example.org"))
        why = "a migration file changed since it was made"
    elif change == "new migration":
        write_migration(project, "accounts", "0003_more.py", "more0003", "seed0002",
                        """op.execute("INSERT INTO users (id, email) VALUES (3, 'x@example.org')")""",
                        'op.execute("DELETE FROM users WHERE id = 3")')
        why = "it was made from 3 migrations, there are 4 now"
    else:
        path.write_text(path.read_text().replace("admin@example.org", "root@example.org"))
        why = "its body was edited after it was made"
    result = project.db("check")
    assert result.exit_code == EXIT_SNAPSHOT_STALE, result.output
    assert f"schema snapshot {path} is not current: {why}; run 'flask db snapshot'" in result.output
    assert "Traceback" not in result.output

    out = ok(project.db("upgrade"))
    lines = [line for line in out.splitlines() if IGNORED in line]
    assert lines == [f"Schema snapshot {path} ignored: {why}; replaying the migrations "
                     "('flask db snapshot' makes it again)."]
    assert BUILT not in out and "Applied" in out
    assert not any(row[3] for row in log_rows(project))  # really run
    expected = "root@example.org" if change == "edited migration" else "admin@example.org"
    assert project.query("SELECT email FROM users WHERE id = 1") == [(expected,)]
    gate = ok(project.db("predeploy"))  # a warning: upgrade ignores it, nothing is at risk
    assert "warning  schema snapshot: not current" in gate and f"{path} is not current: {why}" in gate
    assert project.db("predeploy", "--strict").exit_code == 1
    ok(project.db("snapshot"))
    ok(project.db("check"))


def test_predeploy_replays_and_compares(tmp_path: Path) -> None:
    """A snapshot whose header is consistent but whose body is not what the migrations build
    (made by hand, or by another version): only the replay finds it."""
    import hashlib

    project = seeded_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    out = ok(project.db("predeploy"))
    assert "schema snapshot: equal to the schema the migrations build" in out
    path = snapshot_file(project)
    head, _, body = path.read_text().partition("\n\n")
    body = body.replace("admin@example.org", "root@example.org")
    head = "\n".join(
        f"-- body: {hashlib.sha256(body.encode()).hexdigest()}" if line.startswith("-- body:") else line
        for line in head.split("\n")
    )
    path.write_text(f"{head}\n\n{body}")
    ok(project.db("upgrade", "--replay"))
    ok(project.db("check"))  # current as far as the digests tell
    result = project.db("predeploy")
    assert result.exit_code == 1, result.output
    assert "error    schema snapshot: current by its digests but not what the migrations build" in result.output
    assert f"schema snapshot {path} differs from the schema the migrations build" in result.output
    assert "root@example.org" in result.output and "Blocked" in result.output


def test_replay_flag_and_non_empty_database(tmp_path: Path) -> None:
    project = seeded_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    out = ok(project.db("upgrade", "--replay"))
    assert BUILT not in out and IGNORED not in out and "Applied 3 migrations" in out
    assert not any(row[3] for row in log_rows(project))

    other = Project(project.root, project.package, f"sqlite:///{tmp_path / 'other.sqlite'}")
    other.query_write("CREATE TABLE notes (id INTEGER PRIMARY KEY)")  # something of the app's
    out = ok(other.db("upgrade"))
    assert BUILT not in out and IGNORED not in out and "Applied 3 migrations" in out
    assert other.query("SELECT count(*) FROM notes") == [(0,)]

    # A named target (one app) replays too.
    third = Project(project.root, project.package, f"sqlite:///{tmp_path / 'third.sqlite'}")
    out = ok(third.db("upgrade", "accounts"))
    assert BUILT not in out


def test_read_only_migrations_folder(tmp_path: Path) -> None:
    """Nothing can be written (no index, no snapshot): upgrade still loads the snapshot, and
    ``flask db snapshot`` says in one line that it cannot write there (exit 2), leaving the old one. Root ignores permissions,
    so the commands run without CAP_DAC_OVERRIDE there."""
    project = seeded_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    shutil.rmtree(project.migrations / "accounts" / "__pycache__", ignore_errors=True)
    before = {p: p.read_bytes() for p in project.migrations.rglob("*.sql")}
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv is not None, "running as root needs setpriv (util-linux) to drop DAC override"
        drop = "-dac_override,-dac_read_search"
        prefix = [setpriv, f"--bounding-set={drop}", f"--inh-caps={drop}"]
    folders = [project.migrations, *[p for p in project.migrations.rglob("*") if p.is_dir()]]
    for folder in folders:
        folder.chmod(0o555)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, sys.executable, "-m", "flask", "db", *args],
            cwd=project.root, env=project.env(), capture_output=True, text=True, timeout=120,
        )

    try:
        upgraded = run("upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        assert BUILT in upgraded.stdout
        made = run("snapshot")
        assert made.returncode == 2 and "Traceback" not in made.stderr, made.stderr
        assert "Permission denied" in made.stderr and made.stderr.count("\n") == 1
    finally:
        for folder in folders:
            folder.chmod(0o755)
    assert {p: p.read_bytes() for p in project.migrations.rglob("*.sql")} == before
    assert not (project.migrations / "accounts" / "__pycache__").exists()


def test_a_symlinked_snapshot_is_not_followed(tmp_path: Path) -> None:
    project = seeded_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    path = snapshot_file(project)
    elsewhere = tmp_path / "elsewhere.sql"
    elsewhere.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(elsewhere)
    result = project.db("check")
    assert result.exit_code == EXIT_SNAPSHOT_STALE and "it is a symlink (never followed)" in result.output
    out = ok(project.db("upgrade"))
    assert "it is a symlink (never followed)" in out and BUILT not in out
    saved = elsewhere.read_bytes()
    ok(project.db("snapshot"))
    assert not path.is_symlink() and stat.S_ISREG(os.lstat(path).st_mode)
    assert elsewhere.read_bytes() == saved  # never written through


def test_the_snapshot_folder_is_not_an_app(tmp_path: Path) -> None:
    project = seeded_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    out = ok(project.db("showmigrations"))
    assert "schema-snapshots" not in out and "snapshot" not in out
    assert "schema-snapshots" not in ok(project.db("apps"))


def test_each_bind_has_its_own_snapshot(tmp_path: Path, db_url: str, second_db_url: str) -> None:
    project = Project(tmp_path, f"proj_{uuid.uuid4().hex[:10]}", db_url)
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.add_blueprint("analytics", ANALYTICS_MODELS)
    project.set_factory(["accounts", "analytics"], {"SQLALCHEMY_BINDS": {"analytics": second_db_url}, **SNAPSHOTS_ON})
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    default, analytics = snapshot_file(project), snapshot_file(project, "analytics")
    assert "CREATE TABLE" in default.read_text() and "users" in default.read_text()
    assert "events" not in default.read_text()
    assert "events" in analytics.read_text() and "users" not in analytics.read_text()
    assert "-- bind: analytics" in analytics.read_text()
    out = ok(project.db("upgrade"))
    assert f"{BUILT} {default}" in out and f"{BUILT} {analytics}" in out
    second = Project(project.root, project.package, second_db_url)
    assert {"events"} <= second.tables() and "users" not in second.tables()
    assert {"users"} <= project.tables() and "events" not in project.tables()
    ok(project.db("check"))


def test_merge_brings_the_snapshot_along(tmp_path: Path) -> None:
    """A hand-written migration leaves the snapshot stale; the merge that joins it makes it
    current again (merge writes a migration, like makemigrations)."""
    project = seeded_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    write_migration(project, "accounts", "0099_branch.py", "branch99", revision_of(project, "accounts", "0001"),
                    """op.execute("INSERT INTO users (id, email) VALUES (3, 'branch@example.org')")""",
                    'op.execute("DELETE FROM users WHERE id = 3")')
    stale = project.db("check")
    assert stale.exit_code == 5 and f"schema snapshot {snapshot_file(project)} is not current" in stale.output
    out = ok(project.db("merge", "accounts"))
    assert "Created merge migration" in out
    assert "branch@example.org" in snapshot_file(project).read_text()
    assert BUILT in ok(project.db("upgrade"))
    ok(project.db("check"))


@pytest.mark.parametrize("recorded_by", ["snapshot", "stamp"])
def test_an_applied_migration_recorded_without_running_is_covered_by_the_edit_check(
    tmp_path: Path, recorded_by: str
) -> None:
    """Log rows written without running the migration (a load of the schema snapshot, a stamp)
    carry the file's checksum: a later edit of that file is "edited after it was applied", as
    for a migration that ran."""
    project = seeded_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    if recorded_by == "snapshot":
        assert BUILT in ok(project.db("upgrade"))
    else:
        ok(project.db("upgrade", revision_of(project, "accounts", "0001")))
        ok(project.db("upgrade", "blog"))
        ok(project.db("stamp", "heads"))  # seed0002 recorded as applied, never run
    seed = project.migrations / "accounts" / "0002_seed.py"
    recorded = project.query("SELECT direction, sha256, fake FROM rollback_log WHERE name = '0002_seed' ORDER BY id")
    assert recorded[-1] == ("up", hashlib.sha256(seed.read_bytes()).hexdigest(), 1)
    assert "3 applied migrations unchanged" in ok(project.db("predeploy"))
    seed.write_text(seed.read_text().replace("admin@example.org", "root@example.org"))
    ok(project.db("snapshot"))  # the snapshot follows the edit; the database does not
    result = project.db("predeploy")
    assert result.exit_code == 1, result.output
    assert "applied migrations were edited after they ran" in result.output
    assert f"accounts.0002_seed ({seed})" in result.output
