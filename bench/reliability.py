#!/usr/bin/env python3
"""Reliability and speed benchmark: flask-rollback side by side with Flask-Migrate.

    python3 bench/reliability.py [--trials 200] [--concurrency 16] [--rounds 5]
                                 [--migrations 100] [--quick]

Starts its own throwaway PostgreSQL server (tests/pgserver.py) on 127.0.0.1 and always stops
it; SQLite databases are files in a temporary directory that is removed at the end. Every
``flask db`` run is a real subprocess with a timeout, killed (by its own process group) if the
benchmark is interrupted. The report goes to stdout (and ``--output``); progress to stderr.

Sections (see bench/README.md for what each number means):
  1. concurrency: ROUNDS rounds of N simultaneous ``flask db upgrade`` on a fresh database;
  2. kill trials: SIGKILL at a random moment of an upgrade / downgrade, then a consistency check;
  3. single-run speed: one full upgrade, one no-op upgrade, one full downgrade (median of 3).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402

from flask_rollback.database import migration_engine  # noqa: E402
from tests.mariadbserver import MariaDBServer, find_mariadb  # noqa: E402
from tests.pgserver import PostgresServer, find_postgres_bin  # noqa: E402
from tests.projects import Project, flask_migrate_factory, new_project  # noqa: E402

ROWS = 20  # rows inserted by every chain migration
SEED_ROWS = 500
CHAIN_APP = "chain"  # flask-rollback app label of the chain

# The same migration body for both tools; only the header differs (flask-rollback needs the
# branch label of its app on the first migration). ``_mark`` appends one byte to
# $BENCH_PROGRESS when a migration body starts, so the kill trials know (tool-independently)
# that a run is inside its migrations; it is a no-op when the variable is unset.
CHAIN_MIGRATION = '''"""step {number}"""

import os
import time

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = {parent!r}
branch_labels = {labels!r}
depends_on = None


def _mark(byte):
    path = os.environ.get("BENCH_PROGRESS")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, byte)
        finally:
            os.close(fd)


def upgrade() -> None:
    _mark(b"u")
    op.create_table("t{number:04d}", sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", sa.String(20)))
    op.bulk_insert(sa.table("t{number:04d}", sa.column("id"), sa.column("v")), [{{"id": i, "v": "x"}} for i in range(1, {rows} + 1)])
    time.sleep({sleep})


def downgrade() -> None:
    _mark(b"d")
    op.drop_table("t{number:04d}")
'''

FLASK_MIGRATE_FACTORY = flask_migrate_factory(models=False)


class LoadSampler:
    """The 1-minute load average every few seconds (other work shares the machine)."""

    def __init__(self, every: float = 5.0) -> None:
        self.samples: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self.thread.start()

    def _run(self, every: float) -> None:
        while not self.stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self.stop.wait(every)

    def summary(self) -> str:
        if not self.samples:
            return "n/a"
        return (f"min {min(self.samples):.2f}, median {statistics.median(self.samples):.2f}, "
                f"max {max(self.samples):.2f} ({len(self.samples)} samples)")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- processes: every child in its own process group, reaped on any exit ----------------------

LIVE: set[subprocess.Popen] = set()  # type: ignore[type-arg]


def kill_group(process: subprocess.Popen) -> None:  # type: ignore[type-arg]
    """SIGKILL the child's own process group (it was started with start_new_session)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def reap_all() -> None:
    for process in list(LIVE):
        kill_group(process)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        LIVE.discard(process)


@dataclass
class Run:
    """A finished ``flask db`` subprocess."""

    code: int | None  # None: killed by us (timeout or SIGKILL)
    out: str
    seconds: float
    timed_out: bool = False


class Child:
    """A ``flask db ARGS`` subprocess whose output goes to files (no pipe can fill up)."""

    def __init__(self, project: Project, args: tuple[str, ...], workdir: Path, extra_env: dict[str, str] | None = None):
        self.out_path = workdir / f"out-{uuid.uuid4().hex[:12]}.txt"
        self.out_file = open(self.out_path, "w+b")
        env = {**project.env(), **(extra_env or {})}
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flask", "db", *args],
            cwd=project.root, env=env, stdin=subprocess.DEVNULL, stdout=self.out_file,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        LIVE.add(self.process)
        self.ended: float | None = None

    def poll(self) -> int | None:
        code = self.process.poll()
        if code is not None and self.ended is None:
            self.ended = time.monotonic()
        return code

    def kill(self) -> None:
        kill_group(self.process)

    def finish(self, deadline: float) -> Run:
        """Wait until ``deadline`` (monotonic); past it the child is killed and marked timed out."""
        timed_out = False
        try:
            self.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            self.kill()
            self.process.wait(timeout=30)
        self.poll()
        LIVE.discard(self.process)
        self.out_file.close()
        out = self.out_path.read_text(errors="replace")
        self.out_path.unlink(missing_ok=True)
        code = self.process.returncode
        return Run(None if timed_out or code < 0 else code, out, (self.ended or time.monotonic()) - self.started, timed_out)


def run_db(project: Project, args: tuple[str, ...], workdir: Path, timeout: float, extra_env: dict[str, str] | None = None) -> Run:
    return Child(project, args, workdir, extra_env).finish(time.monotonic() + timeout)


# -- what went wrong, from a process's output -------------------------------------------------

ERROR_KINDS: list[tuple[str, re.Pattern[str]]] = [
    ("UniqueViolation", re.compile(r"UniqueViolation|duplicate key value violates unique constraint")),
    ("DuplicateTable / table already exists", re.compile(r"DuplicateTable|already exists")),
    ("database is locked", re.compile(r"database is locked")),
    ("deadlock detected", re.compile(r"deadlock detected")),
    ("migration lock timeout", re.compile(r"could not take the migration lock")),
    ("no such table", re.compile(r"no such table|UndefinedTable|does not exist")),
    ("can't locate revision", re.compile(r"Can't locate revision|not present|Requested revision")),
    ("connection error", re.compile(r"connection (refused|failed)|could not connect|server closed")),
]


def error_kinds(run: Run) -> list[str]:
    if run.timed_out:
        return ["timed out (killed by the benchmark)"]
    if run.code == 0:
        return []
    kinds = [name for name, pattern in ERROR_KINDS if pattern.search(run.out)]
    if kinds:
        return kinds[:1]  # the first (most specific) match names the failure
    lines = [line.strip() for line in run.out.splitlines() if line.strip()]
    return [f"other: {lines[-1][:100] if lines else '(no output)'}"]


# -- tools and backends -----------------------------------------------------------------------


@dataclass
class Tool:
    name: str
    has_log: bool
    upgrade: tuple[str, ...]
    downgrade: tuple[str, ...]
    revision_prefix: str

    def versions_dir(self, project: Project) -> Path:
        raise NotImplementedError

    def branch_labels(self) -> tuple[str, ...] | None:
        raise NotImplementedError

    def setup(self, root: Path, url: str, workdir: Path) -> Project:
        raise NotImplementedError


class FlaskRollback(Tool):
    def __init__(self) -> None:
        super().__init__("flask-rollback", True, ("upgrade",), ("downgrade", CHAIN_APP, "zero", "--allow-data-loss"), CHAIN_APP)

    def versions_dir(self, project: Project) -> Path:
        return project.migrations / CHAIN_APP

    def branch_labels(self) -> tuple[str, ...] | None:
        return (CHAIN_APP,)

    def setup(self, root: Path, url: str, workdir: Path) -> Project:
        project = new_project(root, url, with_blog=False)
        result = run_db(project, ("init",), workdir, 120)
        if result.code != 0:
            raise SystemExit(f"flask-rollback `flask db init` failed:\n{result.out}")
        return project


class FlaskMigrate(Tool):
    def __init__(self) -> None:
        super().__init__("Flask-Migrate", False, ("upgrade",), ("downgrade", "base"), "fm")

    def versions_dir(self, project: Project) -> Path:
        return project.migrations / "versions"

    def branch_labels(self) -> tuple[str, ...] | None:
        return None

    def setup(self, root: Path, url: str, workdir: Path) -> Project:
        project = Project(root, f"fmproj_{uuid.uuid4().hex[:10]}", url)
        project.write("__init__.py", FLASK_MIGRATE_FACTORY)
        result = run_db(project, ("init",), workdir, 120)  # Flask-Migrate's own init: env.py etc.
        if result.code != 0 or not (project.migrations / "env.py").exists():
            raise SystemExit(f"Flask-Migrate `flask db init` failed:\n{result.out}")
        return project


def write_chain(tool: Tool, project: Project, count: int, sleep: float) -> list[str]:
    folder = tool.versions_dir(project)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*_step.py"):
        old.unlink()
    shutil.rmtree(folder / "__pycache__", ignore_errors=True)
    revisions: list[str] = []
    for number in range(1, count + 1):
        revision = f"{tool.revision_prefix}{number:04d}"
        (folder / f"{number:04d}_step.py").write_text(
            CHAIN_MIGRATION.format(
                number=number, revision=revision, parent=revisions[-1] if revisions else None,
                labels=tool.branch_labels() if number == 1 else None, rows=ROWS, sleep=sleep,
            )
        )
        revisions.append(revision)
    return revisions


class Backend:
    name = ""

    def new_database(self) -> str:
        raise NotImplementedError

    def drop_database(self, url: str) -> None:
        raise NotImplementedError


class ServerBackend(Backend):
    """Databases on a throwaway server (PostgreSQL or MariaDB) that both tools share."""

    def __init__(self, name: str, server: PostgresServer | MariaDBServer) -> None:
        self.name = name
        self.server = server

    def new_database(self) -> str:
        name = f"bench_{uuid.uuid4().hex[:12]}"
        self.server.create_database(name)
        return self.server.url(name)

    def drop_database(self, url: str) -> None:
        self.server.drop_database(sa.make_url(url).database or "")


class SQLiteFile(Backend):
    name = "SQLite file"

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "sqlite"
        self.dir.mkdir(parents=True, exist_ok=True)

    def new_database(self) -> str:
        return f"sqlite:///{self.dir / f'bench_{uuid.uuid4().hex[:12]}.db'}"

    def drop_database(self, url: str) -> None:
        path = Path(sa.make_url(url).database or "")
        for suffix in ("", "-journal", "-wal", "-shm", ".rollback-lock"):
            Path(str(path) + suffix).unlink(missing_ok=True)


# -- reading the state of a database in one snapshot ------------------------------------------


@dataclass
class State:
    count: int  # position according to the version table (0: none)
    problems: list[str] = field(default_factory=list)  # "kind: detail"
    tables: int = 0  # chain tables present
    seed: str | None = None
    ups: dict[str, int] = field(default_factory=dict)  # rollback_log 'up' rows per revision
    downs: int = 0

    @property
    def consistent(self) -> bool:
        return not self.problems

    def kinds(self) -> list[str]:
        return [p.split(":", 1)[0] for p in self.problems]


def seed_database(url: str) -> str:
    """A table outside the migrations with rows that must survive everything."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "CREATE TABLE seeded (id INTEGER PRIMARY KEY, payload VARCHAR(40) NOT NULL)"
            )
            connection.exec_driver_sql(
                "INSERT INTO seeded (id, payload) VALUES "
                + ", ".join(f"({i}, 'row-{i * 7919 % 1000}')" for i in range(SEED_ROWS))
            )
    finally:
        engine.dispose()
    return read_state(url, [], False).seed or ""


def read_state(url: str, revisions: list[str], has_log: bool, seed: str | None = None) -> State:
    """Schema, version table, applied log and seeded rows, read in one snapshot."""
    engine = migration_engine(sa.make_url(url))
    try:
        with engine.connect() as connection:
            if connection.dialect.name in ("postgresql", "mysql"):
                # MariaDB's default too; its snapshot starts at the first read (InnoDB)
                connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                return _read_state(connection, revisions, has_log, seed)
    except sa.exc.DBAPIError as exc:
        first = str(exc.orig or exc).strip().splitlines()[0]
        return State(-1, [f"state unreadable: {first}"])
    finally:
        engine.dispose()


def _read_state(connection: sa.Connection, revisions: list[str], has_log: bool, seed: str | None) -> State:
    def rows(sql: str) -> list[tuple]:  # type: ignore[type-arg]
        return [tuple(row) for row in connection.exec_driver_sql(sql)]

    if connection.dialect.name == "postgresql":
        names = {r[0] for r in rows("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    elif connection.dialect.name == "mysql":
        names = {r[0] for r in rows(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"
        )}
    else:
        names = {r[0] for r in rows("SELECT name FROM sqlite_master WHERE type = 'table'")}
    state = State(0)
    if "seeded" in names:
        data = rows("SELECT id, payload FROM seeded ORDER BY id")
        state.seed = hashlib.sha256(repr(data).encode()).hexdigest()
        if seed is not None and state.seed != seed:
            state.problems.append("seeded rows changed: checksum differs")
    elif seed is not None:
        state.problems.append("seeded rows changed: table gone")
    if not revisions:
        return state
    stored = [r[0] for r in rows("SELECT version_num FROM alembic_version")] if "alembic_version" in names else []
    if len(stored) > 1:
        state.problems.append(f"version table has several rows: {stored}")
    if stored and stored[0] not in revisions:
        state.problems.append(f"version table names an unknown revision: {stored[0]}")
    count = revisions.index(stored[0]) + 1 if stored and stored[0] in revisions else 0
    state.count = count
    present = [n for n in range(1, len(revisions) + 1) if f"t{n:04d}" in names]
    state.tables = len(present)
    ahead = [n for n in present if n > count]
    missing = [n for n in range(1, count + 1) if n not in present]
    if ahead:
        state.problems.append(
            f"tables ahead of the version table: {len(ahead)} (t{ahead[0]:04d}..t{ahead[-1]:04d}) beyond position {count}"
        )
    if missing:
        state.problems.append(f"tables missing below the version table: {len(missing)} (first t{missing[0]:04d})")
    if present:
        counted = rows(" UNION ALL ".join(f"SELECT {n}, count(*) FROM t{n:04d}" for n in present))
        wrong = [n for n, c in counted if c != ROWS]
        if wrong:
            state.problems.append(f"chain tables with wrong row counts: {len(wrong)} (first t{wrong[0]:04d})")
    if has_log:
        net: dict[str, int] = {}
        if "rollback_log" in names:
            for revision, direction, number in rows(
                "SELECT revision, direction, count(*) FROM rollback_log GROUP BY revision, direction"
            ):
                if direction == "up":
                    state.ups[revision] = number
                    net[revision] = net.get(revision, 0) + number
                else:
                    state.downs += number
                    net[revision] = net.get(revision, 0) - number
        disagree = [
            rev for n, rev in enumerate(revisions, 1) if net.get(rev, 0) != (1 if n <= count else 0)
        ]
        if disagree:
            state.problems.append(f"applied log disagrees with the version table: {len(disagree)} revision(s)")
    return state


# -- the sections -----------------------------------------------------------------------------


@dataclass
class Combo:
    tool: Tool
    backend: Backend
    project: Project
    revisions: list[str]

    @property
    def label(self) -> str:
        return f"{self.tool.name} / {self.backend.name}"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(a: float, b: float) -> str:
    if a != a or b != b:
        return "n/a"
    if a <= 0 or b <= 0:
        return "n/a (within noise)"  # a net time at or below zero: start-up noise dominates
    return f"{a / b:.2f}"


class Budget:
    """Soft wall-clock budget: the kill trials stop early (and say so) when it is spent."""

    def __init__(self, minutes: float) -> None:
        self.deadline = time.monotonic() + minutes * 60

    def spent(self) -> bool:
        return time.monotonic() > self.deadline


@dataclass
class RoundResult:
    ok: int = 0
    failed: int = 0
    tracebacks: int = 0
    waited: int = 0
    kinds: Counter = field(default_factory=Counter)  # type: ignore[type-arg]
    correct: bool = False
    problems: list[str] = field(default_factory=list)
    wall: float = 0.0


def concurrency_round(combo: Combo, n: int, workdir: Path, timeout: float) -> RoundResult:
    url = combo.backend.new_database()
    combo.project.url = url
    result = RoundResult()
    try:
        start = time.monotonic()
        children = [Child(combo.project, combo.tool.upgrade, workdir) for _ in range(n)]
        deadline = start + timeout
        runs = [child.finish(deadline) for child in children]
        result.wall = max(child.ended or time.monotonic() for child in children) - start
        for run in runs:
            if run.code == 0:
                result.ok += 1
            else:
                result.failed += 1
            result.tracebacks += "Traceback" in run.out
            result.waited += "waiting for the migration lock" in run.out
            result.kinds.update(error_kinds(run))
        state = read_state(url, combo.revisions, combo.tool.has_log)
        problems = list(state.problems)
        m = len(combo.revisions)
        if state.count != m:
            problems.append(f"not at the last revision: position {state.count}/{m}")
        if state.tables != m:
            problems.append(f"chain tables present: {state.tables}/{m}")
        if combo.tool.has_log:
            once = sum(1 for rev in combo.revisions if state.ups.get(rev) == 1)
            if once != m or state.downs:
                problems.append(f"applied exactly once in rollback_log: {once}/{m} (down rows {state.downs})")
        result.problems = problems
        result.correct = not problems
    finally:
        combo.backend.drop_database(url)
    return result


@dataclass
class KillTally:
    trials: int = 0
    upgrades: int = 0
    downgrades: int = 0
    landed: int = 0  # SIGKILL sent while the process was still running
    mid_migrations: int = 0  # ... and before its last migration body had started
    partial: int = 0  # the database was left strictly between the start and the target
    finished_first: int = 0  # the process had exited before the kill
    failed_first: int = 0  # ... with a non-zero exit code
    failed_kinds: Counter = field(default_factory=Counter)  # type: ignore[type-arg]
    consistent: int = 0
    inconsistent: int = 0
    inconsistent_kinds: Counter = field(default_factory=Counter)  # type: ignore[type-arg]
    recovered: int = 0  # inconsistent, then one plain `flask db upgrade` made it right
    fix_silent: int = 0  # ... that plain upgrade exited 0 yet left the database inconsistent
    reset: int = 0  # inconsistent and not recoverable: database recreated to go on
    seed_changed: int = 0
    final_ok: bool = False
    final_detail: str = ""
    stopped_early: bool = False
    examples: list[str] = field(default_factory=list)


def calibrate(combo: Combo, workdir: Path, url: str) -> tuple[float, float]:
    """Seconds from the first to the last migration body start, for a full upgrade and a full
    downgrade: the window the kill moments are drawn from (scaled by the work left)."""
    durations = []
    for args in (combo.tool.upgrade, combo.tool.downgrade):
        marker = workdir / f"calib-{uuid.uuid4().hex[:8]}"
        child = Child(combo.project, args, workdir, {"BENCH_PROGRESS": str(marker)})
        first = last = None
        size = 0
        while child.poll() is None and time.monotonic() - child.started < 300:
            now_size = marker.stat().st_size if marker.exists() else 0
            if now_size != size:
                last = time.monotonic()
                first = first or last
                size = now_size
            time.sleep(0.002)
        run = child.finish(time.monotonic() + 1)
        if run.code != 0 or first is None or last is None:
            raise SystemExit(f"{combo.label}: calibration `flask db {' '.join(args)}` failed:\n{run.out}")
        # the last body's own duration: one more average step
        durations.append((last - first) * len(combo.revisions) / max(1, len(combo.revisions) - 1))
        marker.unlink(missing_ok=True)
    return durations[0], durations[1]


def kill_trials(combo: Combo, trials: int, workdir: Path, rng: random.Random, budget: Budget) -> KillTally:
    tally = KillTally()
    tool, backend, m = combo.tool, combo.backend, len(combo.revisions)
    url = backend.new_database()
    combo.project.url = url
    try:
        up_seconds, down_seconds = calibrate(combo, workdir, url)
        log(f"  {combo.label}: full upgrade {up_seconds:.2f}s, downgrade {down_seconds:.2f}s (migration bodies, first to last)")
        seed = seed_database(url)
        marker = workdir / "progress"
        for trial in range(trials):
            if budget.spent():
                tally.stopped_early = True
                break
            before = read_state(url, combo.revisions, tool.has_log, seed)
            position = before.count
            upgrade = trial % 2 == 0
            if position == 0:
                upgrade = True
            elif position == m:
                upgrade = False
            args, target, full = (tool.upgrade, m, up_seconds) if upgrade else (tool.downgrade, 0, down_seconds)
            remaining = abs(target - position)
            tally.trials += 1
            tally.upgrades += upgrade
            tally.downgrades += not upgrade
            marker.unlink(missing_ok=True)
            child = Child(combo.project, args, workdir, {"BENCH_PROGRESS": str(marker)})
            while child.poll() is None and not marker.exists() and time.monotonic() - child.started < 120:
                time.sleep(0.002)  # until the first migration body runs, then a random moment later
            if child.poll() is None:
                time.sleep(rng.uniform(0, 1.1 * full * remaining / m))
            if child.poll() is None:
                started = marker.stat().st_size if marker.exists() else 0
                child.kill()
                tally.landed += 1
                tally.mid_migrations += started < remaining
                run = child.finish(time.monotonic() + 30)
            else:
                run = child.finish(time.monotonic() + 1)
                tally.finished_first += 1
                if run.code != 0:
                    tally.failed_first += 1
                    tally.failed_kinds.update(error_kinds(run))
            after = read_state(url, combo.revisions, tool.has_log, seed)
            tally.partial += after.consistent and after.count not in (position, target)
            tally.seed_changed += any(k.startswith("seeded rows") for k in after.kinds())
            if after.consistent:
                tally.consistent += 1
                continue
            tally.inconsistent += 1
            tally.inconsistent_kinds.update(after.kinds())
            if len(tally.examples) < 3:
                tally.examples.append(
                    f"trial {trial}: {'upgrade' if upgrade else 'downgrade'} from {position}, "
                    f"killed={run.code is None}: " + "; ".join(after.problems)
                )
            fix = run_db(combo.project, tool.upgrade, workdir, 300)
            fixed = read_state(url, combo.revisions, tool.has_log, seed)
            if fix.code == 0 and fixed.consistent and fixed.count == m:
                tally.recovered += 1
            else:
                tally.fix_silent += fix.code == 0
                if len(tally.examples) < 4:
                    tally.examples.append(
                        f"  then plain `flask db upgrade` -> exit {fix.code}: {error_kinds(fix) or ['ok']}"
                        f"; state: {'; '.join(fixed.problems) or f'position {fixed.count}'}"
                    )
                tally.reset += 1
                backend.drop_database(url)
                url = backend.new_database()
                combo.project.url = url
                seed = seed_database(url)
        final = run_db(combo.project, tool.upgrade, workdir, 300)
        state = read_state(url, combo.revisions, tool.has_log, seed)
        tally.final_ok = final.code == 0 and state.consistent and state.count == m
        tally.final_detail = (
            "completed, consistent, all migrations applied, seeded rows intact" if tally.final_ok
            else f"exit {final.code} {error_kinds(final)}; " + "; ".join(state.problems or [f"position {state.count}/{m}"])
        )
        marker.unlink(missing_ok=True)
    finally:
        backend.drop_database(url)
    return tally


@dataclass
class Speed:
    upgrade: list[float] = field(default_factory=list)
    noop: list[float] = field(default_factory=list)
    downgrade: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def speed_runs(combo: Combo, repeats: int, workdir: Path) -> Speed:
    speed = Speed()
    for _ in range(repeats):
        url = combo.backend.new_database()
        combo.project.url = url
        try:
            for key, args in (("upgrade", combo.tool.upgrade), ("noop", combo.tool.upgrade), ("downgrade", combo.tool.downgrade)):
                run = run_db(combo.project, args, workdir, 300)
                if run.code != 0:
                    speed.failures.append(f"{key}: exit {run.code} {error_kinds(run)}")
                    break
                getattr(speed, key).append(run.seconds)
            state = read_state(url, combo.revisions, combo.tool.has_log)
            if state.problems or state.count or state.tables:
                speed.failures.append(f"after downgrade: position {state.count}, tables {state.tables}, {state.problems}")
        finally:
            combo.backend.drop_database(url)
    return speed


#: The floor: the chain's statements run by one fresh Python process through SQLAlchemy, one
#: transaction per migration as the tools do, with no migration tool at all.
RAW_CHAIN = """
import sys, time
import sqlalchemy as sa
url, count, rows, direction = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
with engine.connect() as connection:
    for number in range(1, count + 1) if direction == "up" else range(count, 0, -1):
        with connection.begin():
            if direction == "up":
                connection.exec_driver_sql(
                    f"CREATE TABLE t{number:04d} (id INTEGER NOT NULL PRIMARY KEY, v VARCHAR(20))")
                connection.execute(sa.text(f"INSERT INTO t{number:04d} (id, v) VALUES (:id, :v)"),
                                   [{"id": i, "v": "x"} for i in range(1, rows + 1)])
            else:
                connection.exec_driver_sql(f"DROP TABLE t{number:04d}")
"""


def raw_runs(backend: Backend, migrations: int, repeats: int) -> Speed:
    """Wall time of RAW_CHAIN up and down (Python start-up included, like the tools' runs)."""
    speed = Speed()
    for _ in range(repeats):
        url = backend.new_database()
        try:
            for key, direction in (("upgrade", "up"), ("downgrade", "down")):
                started = time.monotonic()
                done = subprocess.run(
                    [sys.executable, "-c", RAW_CHAIN, url, str(migrations), str(ROWS), direction],
                    capture_output=True, text=True, timeout=300, check=False,
                )
                if done.returncode != 0:
                    speed.failures.append(f"raw {direction}: {done.stderr.strip().splitlines()[-1:]}")
                    break
                getattr(speed, key).append(time.monotonic() - started)
        finally:
            backend.drop_database(url)
    return speed


# -- report -----------------------------------------------------------------------------------


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str = "") -> None:
        self.lines.append(line)
        print(line, flush=True)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def machine_info(server: PostgresServer | None, mariadb: MariaDBServer | None = None) -> str:
    import sqlite3
    from importlib.metadata import version as dist_version

    pg = "PostgreSQL not used"
    if server is not None and server.tmpdir is not None:
        with server.connect() as conn:
            row = conn.execute("SHOW server_version").fetchone()
        pg = f"PostgreSQL {row[0] if row else '?'} (fsync=off, synchronous_commit=off)"
    if mariadb is not None and mariadb.tmpdir is not None:
        with mariadb.connect() as conn, conn.cursor() as cursor:
            cursor.execute("SELECT VERSION()")
            pg += f", MariaDB {cursor.fetchone()[0]} (InnoDB, flush at commit off)"
    return (
        f"nproc {os.cpu_count()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, "
        f"{pg}, SQLite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}, "
        f"Flask {dist_version('flask')}, alembic {dist_version('alembic')}, SQLAlchemy {sa.__version__}, "
        f"flask-rollback {dist_version('flask-rollback')}, Flask-Migrate {dist_version('Flask-Migrate')}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200, help="kill trials per tool and backend")
    parser.add_argument("--concurrency", type=int, default=16, help="simultaneous upgrades per round")
    parser.add_argument("--rounds", type=int, default=5, help="concurrency rounds per tool and backend")
    parser.add_argument("--migrations", type=int, default=100, help="length of the migration chain")
    parser.add_argument("--repeats", type=int, default=3, help="single-run speed repetitions (median)")
    parser.add_argument("--sleep", type=float, default=0.004, help="seconds each migration sleeps (sections 1, 2)")
    parser.add_argument("--quick", action="store_true", help="smoke run: trials 4, concurrency 4, rounds 1, migrations 20")
    parser.add_argument("--sections", default="1,2,3", help="which sections to run, e.g. 1,3")
    parser.add_argument("--tools", default="flask-rollback,Flask-Migrate")
    parser.add_argument("--backends", default="postgresql,mariadb,sqlite")
    parser.add_argument("--max-minutes", type=float, default=90, help="soft budget; kill trials stop early past it")
    parser.add_argument("--seed", type=int, default=20261125, help="random seed of the kill moments")
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.concurrency, args.rounds, args.migrations = 4, 4, 1, 20
    sections = {s.strip() for s in args.sections.split(",")}

    bindir = find_postgres_bin()
    if bindir is None and "postgresql" in args.backends:
        print("PostgreSQL (initdb/pg_ctl) not found; use --backends sqlite", file=sys.stderr)
        return 2
    mariadb_programs = find_mariadb()
    if mariadb_programs is None and "mariadb" in args.backends:
        print("MariaDB (mariadb-install-db/mariadbd) not found; apt-get install mariadb-server, "
              "or leave mariadb out of --backends", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="flask-rollback-bench-"))
    server = PostgresServer(bindir) if bindir else None
    mariadb = MariaDBServer(*mariadb_programs) if mariadb_programs and "mariadb" in args.backends else None

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    report = Report()
    started = time.monotonic()
    budget = Budget(args.max_minutes)
    load = LoadSampler()
    try:
        backends: list[Backend] = []
        if "postgresql" in args.backends:
            assert server is not None
            log("starting a throwaway PostgreSQL server")
            server.start()
            backends.append(ServerBackend("PostgreSQL", server))
        if mariadb is not None:
            log("starting a throwaway MariaDB server")
            mariadb.start()
            backends.append(ServerBackend("MariaDB", mariadb))
        if "sqlite" in args.backends:
            backends.append(SQLiteFile(workdir))
        tools = [t for t in (FlaskRollback(), FlaskMigrate()) if t.name in args.tools.split(",")]
        combos: list[Combo] = []
        for tool in tools:
            for backend in backends:
                root = workdir / f"{tool.revision_prefix}-{backend.name.split()[0].lower()}"
                root.mkdir()
                project = tool.setup(root, "sqlite://", workdir)
                combos.append(Combo(tool, backend, project, write_chain(tool, project, args.migrations, args.sleep)))

        now = datetime.now(timezone.utc)
        report("flask-rollback vs Flask-Migrate: reliability and speed")
        report(f"date: {now:%Y-%m-%d %H:%M} UTC")
        report(f"machine: {machine_info(server, mariadb)}")
        report(
            f"sizes: migrations M={args.migrations} (each: CREATE TABLE + {ROWS} rows + sleep {args.sleep}s), "
            f"concurrency N={args.concurrency}, rounds R={args.rounds}, kill trials T={args.trials}, speed repeats={args.repeats}"
        )

        if "1" in sections:
            section_concurrency(report, combos, args, workdir)
        if "2" in sections:
            section_kills(report, combos, args, workdir, budget)
        if "3" in sections:
            section_speed(report, combos, args, workdir)
        report("")
        report(f"total time {time.monotonic() - started:.0f}s; load average at the end "
               f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        report(f"1-minute load average sampled every 5s during the run: {load.summary()}")
        return 0
    except KeyboardInterrupt as exc:
        log(f"interrupted ({exc}); cleaning up")
        return 130
    finally:
        load.stop.set()
        reap_all()
        if server is not None:
            log("stopping the PostgreSQL server")
            server.stop()
        if mariadb is not None:
            log("stopping the MariaDB server")
            mariadb.stop()
        if args.output:
            args.output.write_text(report.text())
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _for_each(combos: list[Combo], tool: str) -> dict[str, Combo]:
    return {c.backend.name: c for c in combos if c.tool.name == tool}


def section_concurrency(report: Report, combos: list[Combo], args: argparse.Namespace, workdir: Path) -> None:
    n, rounds, m = args.concurrency, args.rounds, args.migrations
    report("")
    report(f"1. CONCURRENCY: {rounds} round(s) x {n} simultaneous `flask db upgrade` of {m} migrations, fresh database each round")
    results: dict[str, list[RoundResult]] = {}
    for combo in combos:
        results[combo.label] = []
        for r in range(rounds):
            log(f"concurrency {combo.label} round {r + 1}/{rounds}")
            results[combo.label].append(concurrency_round(combo, n, workdir, timeout=max(300.0, 6.0 * m)))
    for combo in combos:
        rs = results[combo.label]
        total = n * len(rs)
        ok = sum(r.ok for r in rs)
        failed = sum(r.failed for r in rs)
        kinds: Counter = Counter()  # type: ignore[type-arg]
        for r in rs:
            kinds.update(r.kinds)
        report("")
        report(f"  {combo.label}")
        report(f"    processes exiting 0 / non-zero:   {ok} / {failed} of {total}  ({failed / len(rs):.1f} failed per round)")
        report(f"    processes printing a Traceback:   {sum(r.tracebacks for r in rs)}")
        if combo.tool.has_log:
            report(f"    processes that waited for lock:   {sum(r.waited for r in rs)}")
        report("    error kinds (processes):          " + (", ".join(f"{k}: {v}" for k, v in kinds.most_common()) or "none"))
        correct = sum(r.correct for r in rs)
        report(f"    final state correct:              {correct} / {len(rs)} rounds")
        for i, r in enumerate(rs, 1):
            if r.problems:
                report(f"      round {i}: " + "; ".join(r.problems))
        walls = [r.wall for r in rs]
        report(f"    round wall time (s):              median {median(walls):.2f}, min {min(walls):.2f}, max {max(walls):.2f}")
    report("")
    report("  ratios (flask-rollback / Flask-Migrate):")
    fr, fm = _for_each(combos, "flask-rollback"), _for_each(combos, "Flask-Migrate")
    for backend in fr:
        if backend not in fm:
            continue
        a, b = results[fr[backend].label], results[fm[backend].label]
        fa, fb = sum(r.failed for r in a) / len(a), sum(r.failed for r in b) / len(b)
        report(
            f"    {backend}: failed processes per round {fa:.1f} vs {fb:.1f}; "
            f"correct rounds {sum(r.correct for r in a)}/{len(a)} vs {sum(r.correct for r in b)}/{len(b)}; "
            f"wall time ratio {ratio(median([r.wall for r in a]), median([r.wall for r in b]))}"
        )


def section_kills(report: Report, combos: list[Combo], args: argparse.Namespace, workdir: Path, budget: Budget) -> None:
    report("")
    report(
        f"2. KILL TRIALS: {args.trials} x SIGKILL at a random moment of an upgrade (even trials) or a downgrade to base "
        f"(odd trials) of up to {args.migrations} migrations, each followed by a consistency check"
    )
    rng = random.Random(args.seed)
    tallies: dict[str, KillTally] = {}
    for combo in combos:
        log(f"kill trials {combo.label}")
        tallies[combo.label] = kill_trials(combo, args.trials, workdir, rng, budget)
    for combo in combos:
        t = tallies[combo.label]
        report("")
        report(f"  {combo.label}: {t.trials} trials ({t.upgrades} upgrades, {t.downgrades} downgrades)"
               + ("  [stopped early: --max-minutes budget spent]" if t.stopped_early else ""))
        report(f"    kill landed while running:        {t.landed}  (before the last migration began: {t.mid_migrations}; "
               f"left a partial position: {t.partial})")
        report(f"    process had already exited:       {t.finished_first}  (with an error: {t.failed_first}"
               + (f": {', '.join(f'{k}: {v}' for k, v in t.failed_kinds.most_common())}" if t.failed_kinds else "") + ")")
        report(f"    consistent / inconsistent after:  {t.consistent} / {t.inconsistent}"
               + (f"  ({t.inconsistent / t.trials:.0%} inconsistent)" if t.trials else ""))
        if t.inconsistent:
            report("    inconsistency kinds:              " + ", ".join(f"{k}: {v}" for k, v in t.inconsistent_kinds.most_common()))
            report(f"    fixed by one plain upgrade:       {t.recovered}; database had to be recreated: {t.reset} "
                   f"(of which the plain upgrade exited 0 yet left it inconsistent: {t.fix_silent})")
            for example in t.examples:
                report(f"      e.g. {example}")
        report(f"    seeded table checksum changed:    {t.seed_changed}")
        report(f"    final full upgrade:               {t.final_detail}")


def section_speed(report: Report, combos: list[Combo], args: argparse.Namespace, workdir: Path) -> None:
    report("")
    report(
        f"3. SINGLE-RUN SPEED: wall time of one `flask db` process (incl. Python start-up), median of {args.repeats}, "
        f"{args.migrations} migrations, sleep 0"
    )
    speeds: dict[str, Speed] = {}
    for combo in combos:
        log(f"speed {combo.label}")
        write_chain(combo.tool, combo.project, args.migrations, 0.0)
        speeds[combo.label] = speed_runs(combo, args.repeats, workdir)
        write_chain(combo.tool, combo.project, args.migrations, args.sleep)
    backends = {combo.backend.name: combo.backend for combo in combos}
    raw: dict[str, Speed] = {}
    for name, backend in backends.items():
        log(f"speed raw SQL / {name}")
        raw[name] = raw_runs(backend, args.migrations, args.repeats)
    report("")
    report(f"  {'tool / backend':<32} {'upgrade':>9} {'no-op':>9} {'downgrade':>10}   (seconds)")
    for combo in combos:
        s = speeds[combo.label]
        report(f"  {combo.label:<32} {median(s.upgrade):>9.2f} {median(s.noop):>9.2f} {median(s.downgrade):>10.2f}"
               + (f"   FAILURES: {s.failures}" if s.failures else ""))
    for name, s in raw.items():
        label = f"raw SQL / {name}"
        report(f"  {label:<32} {median(s.upgrade):>9.2f} {'-':>9} {median(s.downgrade):>10.2f}"
               + (f"   FAILURES: {s.failures}" if s.failures else ""))
    report("  (raw SQL: the same statements from one Python process through SQLAlchemy, one transaction")
    report("   per migration, no migration tool: the floor either tool could reach)")
    report("")
    report("  ratios flask-rollback / Flask-Migrate (net = minus the no-op run, i.e. start-up and connecting):")
    fr, fm = _for_each(combos, "flask-rollback"), _for_each(combos, "Flask-Migrate")
    for backend in fr:
        if backend not in fm:
            continue
        a, b = speeds[fr[backend].label], speeds[fm[backend].label]
        report(
            f"    {backend}: upgrade {ratio(median(a.upgrade), median(b.upgrade))} "
            f"(net {ratio(median(a.upgrade) - median(a.noop), median(b.upgrade) - median(b.noop))}), "
            f"downgrade {ratio(median(a.downgrade), median(b.downgrade))} "
            f"(net {ratio(median(a.downgrade) - median(a.noop), median(b.downgrade) - median(b.noop))}), "
            f"no-op {ratio(median(a.noop), median(b.noop))}"
        )
    report("  ratios to raw SQL (upgrade, downgrade):")
    for combo in combos:
        s, floor = speeds[combo.label], raw[combo.backend.name]
        report(f"    {combo.label}: {ratio(median(s.upgrade), median(floor.upgrade))}, "
               f"{ratio(median(s.downgrade), median(floor.downgrade))}")


if __name__ == "__main__":
    sys.exit(main())
