#!/usr/bin/env python3
"""Command speed vs history size: flask-rollback and Flask-Migrate on the same history.

    python3 bench/speed.py [--sizes 0,1000,10000] [--repeat 5] [--commands heads,current,...]
                           [--check-tables 300 [--check-size 600]]
                           [--sections commands,snapshot,upgrade] [--upgrade-sizes 1000]
                           [--snapshot-sizes 1000,10000] [--snapshot-backends sqlite,postgresql]
                           [--output FILE] [--write-results] [--keep]
    python3 bench/speed.py --quick          # sizes 0,200, repeat 3: a smoke run of a minute

For each size N the script generates one history and gives it to both tools:

  * flask-rollback: ``--tables`` tables (50) owned by ``--apps`` blueprints (20), one branch per
    app in ``migrations/<app>/``; a table's creation depends on (``depends_on``) the creation of
    the table its foreign key points to, in another app, and every 100th revision also depends
    on the latest revision of the next app;
  * Flask-Migrate 4.1: a real project (``Migrate(app, db)``, its own ``flask db init`` and stock
    env.py) with the same migration bodies as one linear chain in ``migrations/versions/``.

Revisions 1..tables create the tables; later ones come in pairs (create an index, drop it), an
odd last one is a data migration touching no row, so the models (the same at every size, also
at N = 0) match the schema at heads. Each tool's SQLite database is brought to heads by its own
``flask db stamp`` plus the models' ``create_all`` (replaying 10,000 migrations is not what is
measured here).

Every command is timed as a whole subprocess (``python -m flask db ...``: start-up, imports,
reading the migrations, connecting), ``--repeat`` times after one untimed warm-up run (which
writes ``__pycache__``), the two tools alternating; the report gives medians, the
flask-rollback / Flask-Migrate ratio, the ratio to the same command on the empty history, and
each run's peak memory (``ru_maxrss`` of the child, read with ``os.wait4``). The first run of
``heads`` on a fresh copy of the migrations (nothing cached) is reported apart as "cold".

Flask-Migrate has no ``showmigrations``: its closest verb, ``history --indicate-current`` (every
revision, the current one marked, the database read), is timed opposite it; ``check`` is
flask-rollback's ``check --database live`` (models vs the live database, what Flask-Migrate's
``check`` compares) opposite Flask-Migrate's ``check``. ``--check-tables 300`` adds one more
history (``--check-size`` revisions, 600, over 300 tables) on which ``check`` and
``makemigrations --check`` (both ``--database live``) are timed opposite Flask-Migrate's
``check``: what comparing a wide schema costs.

The ``upgrade`` section (``--sections``; sizes ``--upgrade-sizes``, default 1000) times
``flask db upgrade`` of the whole history on a fresh SQLite file for both tools (replay), against
raw DDL: the same statements (Alembic's offline ``--sql`` output of the Flask-Migrate project)
through Python's sqlite3 alone, one transaction + version update per step. Each is timed as a
whole process and in-process (the app created first, then only the upgrade), with ratios
flask-rollback / Flask-Migrate and flask-rollback / raw DDL and the issue's limit (≤ 2× raw DDL).
Its children run with bytecode caches (``PYTHONDONTWRITEBYTECODE`` dropped), as installed
software does; every tool's schema is checked against the raw DDL's once.

Everything lives in one temporary directory, removed at the end (``--keep`` keeps it). The
report (Markdown) goes to stdout and ``--output``; ``--write-results`` also puts it into
bench/RESULTS.md between the markers ``<!-- speed.py -->`` and ``<!-- /speed.py -->``. Progress
goes to stderr. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version as dist_version
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from flask_rollback import NAMING_CONVENTION  # noqa: E402
from tests.projects import Project, flask_migrate_factory  # noqa: E402

RESULTS = BENCH / "RESULTS.md"
BEGIN, END = "<!-- speed.py -->", "<!-- /speed.py -->"

FLASK_ROLLBACK = "flask-rollback"
FLASK_MIGRATE = "Flask-Migrate"

MODEL = '''

class T{t:03d}(db.Model):
    __tablename__ = "t{t:03d}"
    id: Mapped[int] = mapped_column(primary_key=True)
    v: Mapped[str | None] = mapped_column(db.String(20))
{parent}'''

MODEL_PARENT = '''    parent_id: Mapped[int | None] = mapped_column(db.ForeignKey("t{p:03d}.id"))
'''

MIGRATION = '''"""{message}

Revision ID: {revision}
Revises: {down}
Create Date: 2026-01-01 00:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = {revision!r}
down_revision = {down!r}
branch_labels = {labels!r}
depends_on = {depends!r}


def upgrade():
{upgrade}


def downgrade():
{downgrade}
'''


# -- the history ------------------------------------------------------------------------------


@dataclass
class Revision:
    """One generated migration: what both tools get, apart from parents and labels."""

    number: int
    app: int
    message: str
    upgrade: str
    downgrade: str
    depends_on: list[int] = field(default_factory=list)

    @property
    def revision(self) -> str:
        return f"r{self.number:05d}"


def table_app(table: int, apps: int) -> int:
    return table % apps


def history(size: int, tables: int, apps: int) -> list[Revision]:
    """The issue's history: tables first, then index pairs, cross-app dependencies."""
    revisions: list[Revision] = []
    created: dict[int, int] = {}  # table -> revision number that created it
    latest: dict[int, int] = {}  # app -> its latest revision number
    for number in range(1, size + 1):
        if number <= tables:
            t = number - 1
            parent = f', sa.Column("parent_id", sa.Integer, sa.ForeignKey("t{t - 1:03d}.id"))' if t else ""
            revision = Revision(
                number, table_app(t, apps), f"create t{t:03d}",
                f'    op.create_table("t{t:03d}", sa.Column("id", sa.Integer, primary_key=True), '
                f'sa.Column("v", sa.String(20)){parent})',
                f'    op.drop_table("t{t:03d}")',
                [created[t - 1]] if t and table_app(t - 1, apps) != table_app(t, apps) else [],
            )
            created[t] = number
        else:
            pair, second = divmod(number - tables - 1, 2)
            t = pair % tables
            index = f"ix_p{pair:05d}"
            if second:
                up, down = f'    op.drop_index("{index}", table_name="t{t:03d}")', \
                    f'    op.create_index("{index}", "t{t:03d}", ["v"])'
            elif number == size:  # unpaired last one: a data migration that touches no row
                up = down = f'    op.execute("UPDATE t{t:03d} SET v = v WHERE 1 = 0")'
            else:
                up, down = f'    op.create_index("{index}", "t{t:03d}", ["v"])', \
                    f'    op.drop_index("{index}", table_name="t{t:03d}")'
            app = table_app(t, apps)
            other = (app + 1) % apps
            depends = [latest[other]] if number % 100 == 0 and other in latest and other != app else []
            revision = Revision(number, app, f"index pair {pair} on t{t:03d}", up, down, depends)
        latest[revision.app] = number
        revisions.append(revision)
    return revisions


def app_label(app: int) -> str:
    return f"a{app:02d}"


def write_models(path: Path, tables: int, header: str) -> None:
    body = "".join(
        MODEL.format(t=t, parent=MODEL_PARENT.format(p=t - 1) if t else "") for t in range(tables)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + body)


MODELS_HEADER = "from sqlalchemy.orm import Mapped, mapped_column\nfrom {dots} import db\n"


def write_migration(folder: Path, name: str, revision: Revision, down: str | None,
                    labels: tuple[str, ...] | None, depends: list[str] | None) -> None:
    (folder / f"{name}.py").write_text(MIGRATION.format(
        message=revision.message, revision=revision.revision, down=down, labels=labels,
        depends=tuple(depends) if depends else None,
        upgrade=revision.upgrade, downgrade=revision.downgrade,
    ))


# -- processes --------------------------------------------------------------------------------

LIVE: set[subprocess.Popen] = set()  # type: ignore[type-arg]


@dataclass
class Run:
    code: int
    seconds: float
    peak_kib: int
    out: str
    #: The child's CPU seconds (user + system): steadier than wall time on a busy machine.
    cpu: float = 0.0


def run(project: Project, args: list[str], workdir: Path, timeout: float = 900,
        command: list[str] | None = None, env: dict[str, str] | None = None) -> Run:
    """``python -m flask db ARGS`` (or ``command``): wall time and the child's own peak RSS
    (``os.wait4``)."""
    out_path = workdir / f"out-{uuid.uuid4().hex[:10]}.txt"
    with open(out_path, "w+b") as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            command or [sys.executable, "-m", "flask", "db", *args], cwd=project.root,
            env=env or project.env(), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        LIVE.add(process)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.002)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        LIVE.discard(process)
    text = out_path.read_text(errors="replace")
    out_path.unlink()
    return Run(process.returncode, seconds, usage.ru_maxrss, text, usage.ru_utime + usage.ru_stime)


def python(project: Project, code: str, workdir: Path) -> None:
    result = subprocess.run([sys.executable, "-c", code], cwd=project.root, env=project.env(),
                            capture_output=True, text=True, timeout=600)
    if result.returncode:
        raise SystemExit(f"setup step failed:\n{result.stdout}{result.stderr}")


def reap_all() -> None:
    for process in list(LIVE):
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the two projects -------------------------------------------------------------------------


def rollback_project(root: Path, revisions: list[Revision], tables: int, apps: int,
                     workdir: Path) -> Project:
    project = Project(root, f"frproj_{uuid.uuid4().hex[:8]}", f"sqlite:///{root / 'db.sqlite'}")
    labels = [app_label(a) for a in range(apps)]
    for a, label in enumerate(labels):
        project.write(f"{label}/__init__.py",
                      f'from flask import Blueprint\n\nbp = Blueprint("{label}", __name__)\n\n'
                      "from . import models  # noqa: E402,F401\n")
        (project.package_dir / label / "models.py").write_text(MODELS_HEADER.format(dots=".."))
    # Each app's models: the tables it owns (appended, one file per app).
    for t in range(tables):
        path = project.package_dir / app_label(table_app(t, apps)) / "models.py"
        with path.open("a") as handle:
            handle.write(MODEL.format(t=t, parent=MODEL_PARENT.format(p=t - 1) if t else ""))
    project.set_factory(labels)
    result = run(project, ["init"], workdir)
    if result.code:
        raise SystemExit(f"flask-rollback `flask db init` failed:\n{result.out}")
    counts: dict[int, int] = {}
    latest: dict[int, str] = {}
    for revision in revisions:
        folder = project.migrations / app_label(revision.app)
        folder.mkdir(parents=True, exist_ok=True)
        counts[revision.app] = counts.get(revision.app, 0) + 1
        first = revision.app not in latest
        write_migration(
            folder, f"{counts[revision.app]:04d}_{revision.revision}", revision,
            latest.get(revision.app), (app_label(revision.app),) if first else None,
            [f"r{n:05d}" for n in revision.depends_on],
        )
        latest[revision.app] = revision.revision
    return project


def migrate_project(root: Path, revisions: list[Revision], tables: int, workdir: Path) -> Project:
    project = Project(root, f"fmproj_{uuid.uuid4().hex[:8]}", f"sqlite:///{root / 'db.sqlite'}")
    # the same naming convention as flask-rollback: both tools load and compare the same schema
    project.write("__init__.py", flask_migrate_factory(naming_convention=NAMING_CONVENTION))
    write_models(project.package_dir / "models.py", tables, MODELS_HEADER.format(dots="."))
    result = run(project, ["init"], workdir)
    if result.code:
        raise SystemExit(f"Flask-Migrate `flask db init` failed:\n{result.out}")
    folder = project.migrations / "versions"
    previous = None
    for revision in revisions:
        write_migration(folder, f"{revision.number:05d}_{revision.revision}", revision, previous,
                        None, None)
        previous = revision.revision
    return project


def to_heads(tool: str, project: Project, size: int, workdir: Path) -> None:
    """The database at heads: stamp (each tool its own way) and the models' tables."""
    if size:
        result = run(project, ["stamp", "heads" if tool == FLASK_ROLLBACK else "head"], workdir)
        if result.code:
            raise SystemExit(f"{tool} stamp failed:\n{result.out}")
    python(project, f"import {project.package} as p; app = p.create_app()\n"
                    "with app.app_context(): p.db.create_all()", workdir)


# -- what is timed ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One row of the report: the arguments of ``flask db`` for each tool.

    More rows (``upgrade`` of a fresh database, through replay or a schema snapshot, with raw
    DDL as a third column) fit here: ``prepare`` runs untimed before each timed run."""

    name: str
    rollback: list[str]
    migrate: list[str]
    note: str = ""
    prepare: Callable[[str, Project, Path], None] | None = None


COMMANDS: dict[str, Command] = {
    "help": Command("db --help", ["--help"], ["--help"]),
    "heads": Command("heads", ["heads"], ["heads"]),
    "current": Command("current", ["current"], ["current"]),
    "showmigrations": Command(
        "showmigrations", ["showmigrations"], ["history", "--indicate-current"],
        "Flask-Migrate: history --indicate-current",
    ),
    "history": Command("history", ["history"], ["history"]),
    "check": Command(
        "check", ["check", "--database", "live"], ["check"],
        "flask-rollback: check --database live",
    ),
}
#: The rows of the ``--check-tables`` run (a wide schema: what check's comparison costs).
CHECK_COMMANDS: dict[str, Command] = {
    "check": COMMANDS["check"],
    "makemigrations --check": Command(
        "makemigrations --check", ["makemigrations", "--check", "--database", "live"], ["check"],
        "flask-rollback: makemigrations --check --database live",
    ),
}


@dataclass
class Sample:
    seconds: list[float] = field(default_factory=list)
    peak_kib: list[int] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    codes: set[int] = field(default_factory=set)
    last_out: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def peak_mib(self) -> float:
        return max(self.peak_kib) / 1024


@dataclass
class SizeResult:
    size: int
    samples: dict[tuple[str, str], Sample] = field(default_factory=dict)  # (command, tool)
    cold: dict[str, Run] = field(default_factory=dict)


def measure(size: int, args: argparse.Namespace, base: Path, tables: int | None = None,
            commands: list[Command] | None = None) -> SizeResult:
    """Time ``commands`` (default: ``--commands``) on a history of ``size`` revisions over
    ``tables`` tables (default: ``--tables``)."""
    tables = args.tables if tables is None else tables
    workdir = base / f"n{size}" if tables == args.tables else base / f"n{size}-t{tables}"
    workdir.mkdir()
    log(f"size {size}: generating the history and both projects")
    revisions = history(size, tables, args.apps)
    projects = {
        FLASK_ROLLBACK: rollback_project(workdir / "fr", revisions, tables, args.apps, workdir),
        FLASK_MIGRATE: migrate_project(workdir / "fm", revisions, tables, workdir),
    }
    result = SizeResult(size)
    for tool, project in projects.items():
        log(f"size {size}: {tool}: cold heads, then stamp + create_all")
        result.cold[tool] = run(project, ["heads"], workdir)
        to_heads(tool, project, size, workdir)
    commands = commands or [COMMANDS[name] for name in args.commands]
    for command in commands:
        for tool, project in projects.items():  # warm-up: __pycache__, indexes
            run(project, command.rollback if tool == FLASK_ROLLBACK else command.migrate, workdir)
    tools = list(projects)
    for repeat in range(args.repeat):
        log(f"size {size}: round {repeat + 1}/{args.repeat}")
        for command in commands:
            for tool in tools if repeat % 2 == 0 else reversed(tools):
                project = projects[tool]
                if command.prepare is not None:
                    command.prepare(tool, project, workdir)
                outcome = run(project, command.rollback if tool == FLASK_ROLLBACK else command.migrate, workdir)
                sample = result.samples.setdefault((command.name, tool), Sample())
                sample.seconds.append(outcome.seconds)
                sample.peak_kib.append(outcome.peak_kib)
                sample.codes.add(outcome.code)
                sample.last_out = outcome.out
    return result


# -- the report -------------------------------------------------------------------------------


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def report(results: list[SizeResult], args: argparse.Namespace, started: datetime, seconds: float,
           loads: tuple[list[float], list[float]], check: SizeResult | None = None) -> str:
    commands = [COMMANDS[name] for name in args.commands]
    empty = next((r for r in results if r.size == 0), None)
    lines = [
        "## Command speed vs history size (`bench/speed.py`)",
        "",
        f"- **Date:** {started:%Y-%m-%d %H:%M} UTC, {seconds:.0f} s. **Command:** "
        f"`python3 bench/speed.py {' '.join(args.argv)}`".rstrip(),
        f"- **Machine:** nproc {os.cpu_count()}, Python {sys.version.split()[0]}, SQLite file "
        f"databases; Flask {dist_version('flask')}, alembic {dist_version('alembic')}, "
        f"SQLAlchemy {dist_version('sqlalchemy')}, Flask-Migrate {dist_version('Flask-Migrate')}, "
        f"flask-rollback working tree.",
        f"- **Load average (1 min):** {' '.join(f'{x:.2f}' for x in loads[0])} at the start, "
        f"{' '.join(f'{x:.2f}' for x in loads[1])} at the end.",
        f"- **History:** {args.tables} tables in {args.apps} apps (`--check-tables`: "
        f"{args.check_tables or 'none'}); medians of {args.repeat} runs "
        "of the whole `python -m flask db ...` process after one warm-up run; peak = the largest "
        "`ru_maxrss` of those runs.",
        "",
    ]
    for result in results:
        lines += [
            f"### {result.size:,} revisions",
            "",
            "| command | flask-rollback s | Flask-Migrate s | ratio | vs empty (fr) | peak MiB fr | "
            "peak MiB FM | peak vs empty (fr) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for command in commands:
            fr = result.samples[(command.name, FLASK_ROLLBACK)]
            fm = result.samples[(command.name, FLASK_MIGRATE)]
            base = empty.samples.get((command.name, FLASK_ROLLBACK)) if empty else None
            vs_empty = ratio(fr.median, base.median) if base else "n/a"
            mem_empty = ratio(fr.peak_mib, base.peak_mib) if base else "n/a"
            codes = ""
            if fr.codes != {0} or fm.codes != {0}:
                codes = f" (exit fr {sorted(fr.codes)}, FM {sorted(fm.codes)})"
            lines.append(
                f"| `{command.name}`{codes} | {fr.median:.3f} | {fm.median:.3f} | "
                f"{ratio(fr.median, fm.median)} | {vs_empty} | {fr.peak_mib:.0f} | "
                f"{fm.peak_mib:.0f} | {mem_empty} |"
            )
        fr_cold, fm_cold = result.cold[FLASK_ROLLBACK], result.cold[FLASK_MIGRATE]
        lines += [
            f"| `heads`, cold (first run, nothing cached) | {fr_cold.seconds:.3f} | "
            f"{fm_cold.seconds:.3f} | {ratio(fr_cold.seconds, fm_cold.seconds)} | | "
            f"{fr_cold.peak_kib / 1024:.0f} | {fm_cold.peak_kib / 1024:.0f} | |",
            "",
        ]
    notes = [c.note for c in commands if c.note]
    if notes and results:
        lines += ["Opposite commands: " + "; ".join(notes) + ".", ""]
    lines += targets(results, commands)
    if check is not None:
        lines += check_report(check, args)
    failures = [
        f"- {result.size:,} revisions, `{name}` ({tool}) exited {sorted(sample.codes)}: "
        + (sample.last_out.strip().splitlines() or ["(no output)"])[-1][:200]
        for result in results for (name, tool), sample in result.samples.items()
        if sample.codes - {0} and name != "check"
    ]
    if failures:
        lines += ["Non-zero exits:", "", *failures, ""]
    return "\n".join(lines)


def check_report(result: SizeResult, args: argparse.Namespace) -> list[str]:
    """The ``--check-tables`` run: its table and the issue's limit (at most Flask-Migrate's time)."""
    lines = [
        f"### check, {args.check_tables} tables, {result.size:,} revisions",
        "",
        "| command | flask-rollback s | Flask-Migrate `check` s | ratio | peak MiB fr | peak MiB FM |",
        "|---|---|---|---|---|---|",
    ]
    limits = []
    for command in CHECK_COMMANDS.values():
        fr = result.samples[(command.name, FLASK_ROLLBACK)]
        fm = result.samples[(command.name, FLASK_MIGRATE)]
        codes = f" (exit fr {sorted(fr.codes)}, FM {sorted(fm.codes)})" if fr.codes != {0} or fm.codes != {0} else ""
        lines.append(f"| `{command.name}`{codes} | {fr.median:.3f} | {fm.median:.3f} | "
                     f"{ratio(fr.median, fm.median)} | {fr.peak_mib:.0f} | {fm.peak_mib:.0f} |")
        limits.append(f"- `{command.name}`, {args.check_tables} tables: {fr.median / fm.median:.2f}× "
                      f"Flask-Migrate's `check` (limit 1.00): {'met' if fr.median <= fm.median else 'NOT met'}")
    notes = "; ".join(c.note for c in CHECK_COMMANDS.values() if c.note)
    return [*lines, "", f"Opposite commands: {notes}.", "", *limits, ""]


def targets(results: list[SizeResult], commands: list[Command]) -> list[str]:
    """The issue's limits, checked where this run has the numbers."""
    by_size = {r.size: r for r in results}
    out: list[str] = []
    read_only = [c.name for c in commands if c.name in ("heads", "current", "showmigrations")]
    if 1000 in by_size:
        for name in read_only:
            fr = by_size[1000].samples[(name, FLASK_ROLLBACK)].median
            fm = by_size[1000].samples[(name, FLASK_MIGRATE)].median
            out.append(f"- `{name}`, 1,000 revisions: {fr / fm:.2f}× Flask-Migrate (limit 0.70): "
                       f"{'met' if fr / fm <= 0.7 else 'NOT met'}")
    if 0 in by_size and 10000 in by_size:
        for name in read_only:
            big = by_size[10000].samples[(name, FLASK_ROLLBACK)]
            empty = by_size[0].samples[(name, FLASK_ROLLBACK)]
            time_ratio, mem_ratio = big.median / empty.median, big.peak_mib / empty.peak_mib
            out.append(
                f"- `{name}`, 10,000 revisions: {time_ratio:.2f}× the empty history's time (limit "
                f"1.20): {'met' if time_ratio <= 1.2 else 'NOT met'}; peak memory "
                f"{mem_ratio:.2f}× (limit 1.20): {'met' if mem_ratio <= 1.2 else 'NOT met'}"
            )
    return ["### Limits (issue 13)", "", *out, ""] if out else []



# -- fresh database through the schema snapshot -------------------------------------------------

#: Runs inside the project (its package importable): ``repeat`` fresh databases built through the
#: Python API (``flask_rollback.upgrade()`` on apps created beforehand, as a test suite's session
#: fixture would) and as many loaded straight from the same snapshot in one transaction (sqlite3
#: ``executescript`` inside BEGIN/COMMIT; ``psql -1 -f``), alternating; one API call first pays
#: the imports (reported apart).
SNAPSHOT_CHILD = r"""
import json, os, sqlite3, subprocess, sys, time
from pathlib import Path
from contextlib import redirect_stderr
import io

spec = json.loads(Path(sys.argv[1]).read_text())
import importlib
package = importlib.import_module(spec["package"])
import flask_rollback

apps = []
for url in spec["api_urls"]:
    os.environ["TEST_DATABASE_URL"] = url
    apps.append(package.create_app())


def api(app):
    started = time.perf_counter()
    with app.app_context(), redirect_stderr(io.StringIO()):
        result = flask_rollback.upgrade()
    seconds = time.perf_counter() - started
    assert result.snapshot is not None and result.snapshot.used, "the snapshot was not used"
    return seconds


def direct(target):
    started = time.perf_counter()
    if spec["backend"] == "sqlite":
        connection = sqlite3.connect(target)
        connection.executescript("BEGIN;\n" + Path(spec["snapshot"]).read_text() + "\nCOMMIT;")
        connection.close()
    else:
        subprocess.run(["psql", "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-f", spec["snapshot"], target],
                       check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PGPASSWORD": spec["password"]})
    return time.perf_counter() - started


first = api(apps[0])
times = {"api": [], "direct": []}
for i, target in enumerate(spec["direct_targets"]):
    pair = [("api", apps[i + 1]), ("direct", target)]
    for kind, arg in pair if i % 2 == 0 else reversed(pair):
        times[kind].append(api(arg) if kind == "api" else direct(arg))
replay = None
if spec["replay_url"]:  # for scale: the same empty database by running every migration, once
    from flask_rollback import commands
    os.environ["TEST_DATABASE_URL"] = spec["replay_url"]
    app = package.create_app()
    with app.app_context():
        started = time.perf_counter()
        commands.upgrade(commands.get_project(app), replay=True)
        replay = time.perf_counter() - started
print(json.dumps({"first": first, "replay": replay, **times}))
"""


@dataclass
class SnapshotTiming:
    backend: str
    size: int
    first: float
    api: list[float]
    direct: list[float]
    generate_seconds: float
    replay: float | None


def snapshot_timings(size: int, args: argparse.Namespace, base: Path, pg_server: object | None) -> list[SnapshotTiming]:
    """One history of ``size`` revisions; its snapshot made by ``flask db snapshot`` for each
    backend, then timed through the API and loaded directly."""
    workdir = base / f"snapshot-n{size}"
    workdir.mkdir()
    log(f"snapshot, size {size}: generating the history")
    project = rollback_project(workdir / "fr", history(size, args.tables, args.apps), args.tables, args.apps, workdir)
    # The shared test factory replays; this section measures the product default.
    project.set_factory([app_label(a) for a in range(args.apps)], {"ROLLBACK_SNAPSHOTS": True})
    timings = []
    for backend in args.snapshot_backends:
        if backend == "postgresql" and pg_server is None:
            continue
        if backend == "sqlite":
            made_for = project
            targets = [str(workdir / f"direct-{i}.db") for i in range(args.repeat)]
            api_urls = [f"sqlite:///{workdir / f'api-{i}.db'}" for i in range(args.repeat + 1)]
            password = ""
        else:
            names = [f"snap_{uuid.uuid4().hex[:10]}" for _ in range(2 * args.repeat + 2)]
            for name in names:
                pg_server.create_database(name)  # type: ignore[attr-defined]
            urls = [pg_server.url(name) for name in names]  # type: ignore[attr-defined]
            made_for = Project(project.root, project.package, urls[-1])
            api_urls = urls[: args.repeat + 1]
            targets = [
                f"host=127.0.0.1 port={pg_server.port} user={pg_server.user} dbname={name}"  # type: ignore[attr-defined]
                for name in names[args.repeat + 1: 2 * args.repeat + 1]
            ]
            password = pg_server.password  # type: ignore[attr-defined]
        log(f"snapshot, size {size}, {backend}: flask db snapshot (replays every migration once)")
        made = run(made_for, ["snapshot"], workdir, timeout=3600)
        if made.code:
            raise SystemExit(f"flask db snapshot failed on {backend}:\n{made.out}")
        snapshot = project.migrations / "schema-snapshots" / f"{backend}.sql"
        spec = workdir / f"spec-{backend}.json"
        spec.write_text(json.dumps({
            "package": project.package, "backend": backend, "snapshot": str(snapshot),
            "api_urls": api_urls, "direct_targets": targets, "password": password,
            "replay_url": f"sqlite:///{workdir / 'replay.db'}" if backend == "sqlite" else None,
        }))
        log(f"snapshot, size {size}, {backend}: {args.repeat} runs each way")
        child = subprocess.run([sys.executable, "-c", SNAPSHOT_CHILD, str(spec)], cwd=project.root,
                               env=project.env(), capture_output=True, text=True, timeout=3600)
        if child.returncode:
            raise SystemExit(f"snapshot timing failed on {backend}:\n{child.stdout}{child.stderr}")
        found = json.loads(child.stdout.strip().splitlines()[-1])
        timings.append(SnapshotTiming(
            backend, size, found["first"], found["api"], found["direct"], made.seconds, found["replay"]
        ))
    return timings


def snapshot_report(timings: list[SnapshotTiming], repeat: int) -> list[str]:
    """The section's table and the issue's limit (≤ 1.3× loading the schema directly)."""
    if not timings:
        return []
    lines = [
        "### Fresh database through the schema snapshot",
        "",
        f"In one process, an app created beforehand calls `flask_rollback.upgrade()` on an empty "
        f"database (as a test suite's session fixture would) against loading the same snapshot "
        f"directly in one transaction, its best case (SQLite: `sqlite3` `executescript` inside "
        f"BEGIN/COMMIT; PostgreSQL: `psql -1 -f`, a process of its own); medians of {repeat} runs "
        "each, alternating. The first API call of the process (imports included) is shown apart, "
        "and, for scale, one `upgrade(replay=True)` of the same history (SQLite).",
        "",
        "| backend | revisions | API ms | direct ms | ratio | first API call ms | replay s | `flask db snapshot` s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for t in timings:
        api, direct = statistics.median(t.api), statistics.median(t.direct)
        lines.append(
            f"| {t.backend} | {t.size:,} | {api * 1000:.1f} | {direct * 1000:.1f} | "
            f"{ratio(api, direct)} | {t.first * 1000:.0f} | "
            f"{f'{t.replay:.2f}' if t.replay is not None else ''} | {t.generate_seconds:.1f} |"
        )
        verdicts.append(
            f"- fresh database through the snapshot, {t.backend}, {t.size:,} revisions: "
            f"{api / direct:.2f}× loading it directly (limit 1.30): {'met' if api / direct <= 1.3 else 'NOT met'}"
        )
    return [*lines, "", *verdicts, ""]


def snapshot_section(args: argparse.Namespace, base: Path) -> list[str]:
    """Time the snapshot path at each of ``--snapshot-sizes``; PostgreSQL when a throwaway
    server can be started (initdb/pg_ctl on this machine)."""
    from tests.pgserver import PostgresServer, find_postgres_bin

    server = None
    if "postgresql" in args.snapshot_backends:
        bindir = find_postgres_bin()
        if bindir is None or shutil.which("psql") is None:
            log("snapshot: no PostgreSQL server programs or psql here; SQLite only")
        else:
            server = PostgresServer(bindir)
            log("snapshot: starting a throwaway PostgreSQL server")
            server.start()
    try:
        timings = [t for size in args.snapshot_sizes for t in snapshot_timings(size, args, base, server)]
    finally:
        if server is not None:
            server.stop()
    return snapshot_report(timings, args.repeat)


# -- upgrade of a fresh database: replay against raw DDL -------------------------------------

#: The floor (issue 13's "raw DDL"): the statements Alembic renders offline for the
#: Flask-Migrate project, through Python's sqlite3 only, one transaction + version update per
#: step. Prints the seconds from connecting to the last commit (the in-process number).
RAW_DDL = """
import sqlite3, sys, time
head, *steps = open(sys.argv[1]).read().split("\\n-- Running upgrade")
started = time.perf_counter()
db = sqlite3.connect(sys.argv[2], isolation_level=None)
db.executescript(head)
for chunk in steps:
    db.executescript("BEGIN;" + chunk.split("\\n", 1)[1] + "COMMIT;")
db.close()
print(time.perf_counter() - started)
"""

#: In one process: the app created first (untimed), then only the upgrade through each tool's
#: Python API is timed (flask-rollback's ``commands.upgrade``, Flask-Migrate's ``upgrade()``).
IN_PROCESS = """
import importlib, os, sys, time
app = importlib.import_module(os.environ["FLASK_APP"]).create_app()
with app.app_context():
    if sys.argv[1] == "rollback":
        from flask_rollback import commands
        from flask_rollback.commands.context import get_project
        project, upgrade = get_project(), commands.upgrade
        started = time.perf_counter()
        steps = len(upgrade(project).report.done)
    else:
        import flask_migrate
        started = time.perf_counter()
        flask_migrate.upgrade()
        steps = -1
print(time.perf_counter() - started, steps)
"""

RAW = "raw DDL"
#: The parts of the report ``--sections`` picks from.
SECTIONS = {"commands", "upgrade", "snapshot"}
UPGRADE_TOOLS = (FLASK_ROLLBACK, FLASK_MIGRATE, RAW)
#: ``upgrade`` of N steps (replay) may take at most this many times the raw DDL.
UPGRADE_LIMIT = 2.0


@dataclass
class UpgradeResult:
    size: int
    whole: dict[str, Sample] = field(default_factory=dict)  # tool -> whole-process runs
    #: tool -> start-up: a no-op ``flask db upgrade`` right after (raw: ``import sqlite3``).
    idle: dict[str, list[float]] = field(default_factory=dict)
    inner: dict[str, list[float]] = field(default_factory=dict)  # tool -> in-process seconds
    problems: list[str] = field(default_factory=list)


def bytecode_env(env: dict[str, str]) -> dict[str, str]:
    """Children write and use ``__pycache__`` as installed software does, whatever this shell
    says (PYTHONDONTWRITEBYTECODE would recompile 1,000 migrations on every run, for every tool)."""
    return {key: value for key, value in env.items() if key != "PYTHONDONTWRITEBYTECODE"}


def fresh_sqlite(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def schema_of(path: Path) -> set[tuple[str, str]]:
    """(type, name) of every table and index, without the tools' own bookkeeping tables."""
    import sqlite3

    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchall()
    return {(kind, name) for kind, name in rows if not name.startswith(("rollback_", "alembic_version"))}


def measure_upgrade(size: int, args: argparse.Namespace, base: Path) -> UpgradeResult:
    """``flask db upgrade`` of ``size`` steps on a fresh SQLite file, each tool replaying the
    whole history, against the same DDL through sqlite3 alone; whole processes and in-process."""
    workdir = base / f"upgrade{size}"
    workdir.mkdir()
    log(f"upgrade {size}: generating the history and both projects")
    revisions = history(size, args.tables, args.apps)
    projects = {
        FLASK_ROLLBACK: rollback_project(workdir / "fr", revisions, args.tables, args.apps, workdir),
        FLASK_MIGRATE: migrate_project(workdir / "fm", revisions, args.tables, workdir),
    }
    envs = {tool: bytecode_env(project.env()) for tool, project in projects.items()}
    databases = {tool: project.root / "db.sqlite" for tool, project in projects.items()}
    databases[RAW] = workdir / "raw.sqlite"
    fm = projects[FLASK_MIGRATE]
    rendered = subprocess.run(
        [sys.executable, "-m", "flask", "db", "upgrade", "--sql"], cwd=fm.root, env=envs[FLASK_MIGRATE],
        capture_output=True, text=True, timeout=600,
    )
    if rendered.returncode:
        raise SystemExit(f"Flask-Migrate `flask db upgrade --sql` failed:\n{rendered.stderr}")
    statements = workdir / "upgrade.sql"
    statements.write_text(rendered.stdout.replace(" RETURNING version_num", ""))
    raw_script = workdir / "raw_ddl.py"
    raw_script.write_text(RAW_DDL)
    in_process = workdir / "in_process.py"
    in_process.write_text(IN_PROCESS)
    commands = {
        FLASK_ROLLBACK: [sys.executable, "-m", "flask", "db", "upgrade"],
        FLASK_MIGRATE: [sys.executable, "-m", "flask", "db", "upgrade"],
        RAW: [sys.executable, str(raw_script), str(statements), str(databases[RAW])],
    }
    result = UpgradeResult(size)

    def whole(tool: str) -> Run:
        fresh_sqlite(databases[tool])
        project = projects.get(tool, fm)
        return run(project, [], workdir, command=commands[tool], env=envs.get(tool, envs[FLASK_MIGRATE]))

    def inner(tool: str) -> float:
        fresh_sqlite(databases[tool])
        if tool == RAW:
            command, project = commands[RAW], fm
        else:
            command = [sys.executable, str(in_process), "rollback" if tool == FLASK_ROLLBACK else "migrate"]
            project = projects[tool]
        done = subprocess.run(command, cwd=project.root, env=envs.get(tool, envs[FLASK_MIGRATE]),
                              capture_output=True, text=True, timeout=900)
        if done.returncode:
            result.problems.append(f"{tool} in-process: exit {done.returncode}: "
                                   + (done.stderr.strip().splitlines() or ["?"])[-1][:200])
            return float("nan")
        words = done.stdout.strip().splitlines()[-1].split()
        if tool == FLASK_ROLLBACK and int(words[1]) != size:
            result.problems.append(f"flask-rollback in-process ran {words[1]} of {size} steps")
        return float(words[0])

    log(f"upgrade {size}: warm-up (writes __pycache__), then the schemas compared")
    for tool in UPGRADE_TOOLS:
        warm = whole(tool)
        if warm.code:
            raise SystemExit(f"{tool} upgrade failed:\n{warm.out[-2000:]}")
    expected = schema_of(databases[RAW])
    for tool in (FLASK_ROLLBACK, FLASK_MIGRATE):
        if schema_of(databases[tool]) != expected:
            result.problems.append(f"{tool}: the schema after upgrade differs from the raw DDL's")
    for repeat in range(args.repeat):
        log(f"upgrade {size}: round {repeat + 1}/{args.repeat}")
        order = UPGRADE_TOOLS if repeat % 2 == 0 else tuple(reversed(UPGRADE_TOOLS))
        for tool in order:
            outcome = whole(tool)
            sample = result.whole.setdefault(tool, Sample())
            sample.seconds.append(outcome.seconds)
            sample.peak_kib.append(outcome.peak_kib)
            sample.cpu.append(outcome.cpu)
            sample.codes.add(outcome.code)
            sample.last_out = outcome.out
            idle = commands[tool] if tool != RAW else [sys.executable, "-c", "import sqlite3"]
            result.idle.setdefault(tool, []).append(
                run(projects.get(tool, fm), [], workdir, command=idle, env=envs.get(tool, envs[FLASK_MIGRATE])).seconds
            )
        for tool in order:
            result.inner.setdefault(tool, []).append(inner(tool))
    return result


def upgrade_report(results: list[UpgradeResult], args: argparse.Namespace) -> list[str]:
    lines = [
        "### Upgrade of a fresh SQLite file, replaying the history",
        "",
        "Each tool runs `flask db upgrade` on an empty SQLite file; raw DDL is the same statements "
        "(Alembic's offline SQL of the Flask-Migrate project) through Python's sqlite3 alone, one "
        "transaction + version update per step. Whole process: the `python` process, start-up "
        "included. In-process: the app created first, then only the upgrade timed (each tool's "
        "Python API; raw: connect to last commit). CPU s: the whole process's user + system "
        "time (steadier than wall time on a busy machine; waiting for fsync is not in it). "
        "Start-up: `flask db upgrade` again on the migrated database (nothing to do: interpreter, "
        "imports, app, reading the migrations, the lock), raw: `python -c 'import sqlite3'`. "
        "Children use `__pycache__`. Flask-Migrate runs the whole upgrade in one transaction (its "
        "default), flask-rollback one per migration.",
        "",
        "| steps | measure | flask-rollback s | Flask-Migrate s | raw DDL s | fr / FM | fr / raw |",
        "|---|---|---|---|---|---|---|",
    ]
    limits: list[str] = []
    for result in results:
        wholes = {tool: result.whole[tool].median for tool in UPGRADE_TOOLS}
        inners = {tool: statistics.median(result.inner[tool]) for tool in UPGRADE_TOOLS}
        cpus = {tool: statistics.median(result.whole[tool].cpu) for tool in UPGRADE_TOOLS}
        idles = {tool: statistics.median(result.idle[tool]) for tool in UPGRADE_TOOLS}
        nets = {tool: wholes[tool] - idles[tool] for tool in UPGRADE_TOOLS}
        for measure, numbers in (("whole process", wholes), ("in-process", inners),
                                 ("whole process, CPU s", cpus), ("start-up (no-op run)", idles),
                                 ("whole process minus start-up", nets)):
            fr, fm, raw = (numbers[tool] for tool in UPGRADE_TOOLS)
            lines.append(f"| {result.size:,} | {measure} | {fr:.3f} | {fm:.3f} | {raw:.3f} | "
                         f"{ratio(fr, fm)} | {ratio(fr, raw)} |")
        codes = {tool: sorted(result.whole[tool].codes) for tool in UPGRADE_TOOLS if result.whole[tool].codes != {0}}
        result.problems += [f"{tool} exited {code}" for tool, code in codes.items()]
        whole_ratio = wholes[FLASK_ROLLBACK] / wholes[RAW]
        fastest = min(result.whole[FLASK_ROLLBACK].seconds) / min(result.whole[RAW].seconds)
        inner_ratio = inners[FLASK_ROLLBACK] / inners[RAW]
        limits.append(
            f"- `upgrade` {result.size:,} steps (replay) ≤ {UPGRADE_LIMIT:g}× raw DDL: "
            f"{'met' if whole_ratio <= UPGRADE_LIMIT else 'NOT met'} (whole process {whole_ratio:.2f}×; "
            f"fastest runs {fastest:.2f}×; in-process {inner_ratio:.2f}×; minus start-up "
            f"{ratio(nets[FLASK_ROLLBACK], nets[RAW])}×). On a busy machine the fsync waits of "
            "raw DDL swing most: trust the line only when the fastest-runs ratio agrees"
        )
    lines += ["", *limits, ""]
    problems = [f"- {result.size:,} steps: {problem}" for result in results for problem in result.problems]
    if problems:
        lines += ["Problems:", "", *problems, ""]
    return lines


def write_results(text: str) -> None:
    """Replace (or append) the section between the markers in bench/RESULTS.md."""
    current = RESULTS.read_text() if RESULTS.exists() else ""
    section = f"{BEGIN}\n{text.rstrip()}\n{END}\n"
    if BEGIN in current and END in current:
        head, _, rest = current.partition(BEGIN)
        _, _, tail = rest.partition(END)
        current = head + section + tail.lstrip("\n")
    else:
        current = current.rstrip("\n") + ("\n\n" if current else "") + section
    RESULTS.write_text(current)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="0,1000,10000", help="history sizes (revisions), comma-separated")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per command, tool and size")
    parser.add_argument("--tables", type=int, default=50)
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--commands", default=",".join(COMMANDS),
                        help=f"which to time, of {', '.join(COMMANDS)}")
    parser.add_argument("--check-tables", type=int, default=0,
                        help="also time check and makemigrations --check on this many tables (0: not)")
    parser.add_argument("--check-size", type=int, default=600,
                        help="revisions of the --check-tables history")
    parser.add_argument("--quick", action="store_true", help="sizes 0,200 (upgrade, snapshot: 200) and repeat 3")
    parser.add_argument("--sections", default=",".join(sorted(SECTIONS)),
                        help="which to run, of commands (the read-only commands), upgrade (a fresh "
                             "database replayed against raw DDL), snapshot (a fresh database through "
                             "the schema snapshot against loading it directly)")
    parser.add_argument("--upgrade-sizes", default="1000", help="history sizes of the upgrade section")
    parser.add_argument("--output", type=Path, help="also write the report to FILE")
    parser.add_argument("--write-results", action="store_true", help="put the report into bench/RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--snapshot-sizes", default="1000,10000",
                        help="history sizes for the fresh-database-through-the-snapshot section ('' : none)")
    parser.add_argument("--snapshot-backends", default="sqlite,postgresql",
                        help="backends of that section (PostgreSQL: a throwaway server, if installed)")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.sizes, args.upgrade_sizes, args.repeat, args.snapshot_sizes = "0,200", "200", 3, "200"
    sections = {name.strip() for name in args.sections.split(",") if name.strip()}
    if sections - SECTIONS:
        parser.error(f"unknown section(s) {', '.join(sorted(sections - SECTIONS))}; "
                     f"known: {', '.join(sorted(SECTIONS))}")
    args.snapshot_sizes = (
        [int(size) for size in args.snapshot_sizes.split(",") if size.strip()] if "snapshot" in sections else []
    )
    args.snapshot_backends = [name.strip() for name in args.snapshot_backends.split(",") if name.strip()]
    args.commands = [name.strip() for name in args.commands.split(",") if name.strip()]
    unknown = [name for name in args.commands if name not in COMMANDS]
    if unknown:
        parser.error(f"unknown command(s) {', '.join(unknown)}; known: {', '.join(COMMANDS)}")
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()] if "commands" in sections else []
    upgrade_sizes = (
        [int(size) for size in args.upgrade_sizes.split(",") if size.strip()] if "upgrade" in sections else []
    )
    started, clock = datetime.now(timezone.utc), time.monotonic()
    load_start = list(os.getloadavg())
    base = Path(tempfile.mkdtemp(prefix="flask-rollback-speed-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        results = [measure(size, args, base) for size in sizes]
        check = (
            measure(args.check_size, args, base, args.check_tables, list(CHECK_COMMANDS.values()))
            if args.check_tables else None
        )
        snapshot_lines = snapshot_section(args, base) if args.snapshot_sizes else []
        upgrades = [measure_upgrade(size, args, base) for size in upgrade_sizes]
    finally:
        reap_all()
        if args.keep:
            log(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    text = report(results, args, started, time.monotonic() - clock, (load_start, list(os.getloadavg())), check)
    text = "\n".join([text, *snapshot_lines])
    if upgrades:
        text = text.rstrip("\n") + "\n\n" + "\n".join(upgrade_report(upgrades, args))
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    if args.write_results:
        write_results(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
