#!/usr/bin/env python3
"""Rehearsal time vs rows: `flask db predeploy` with an empty and with a big table.

    python3 bench/rehearsal.py [--rows 1000000] [--repeat 5] [--backends postgresql,sqlite]
                               [--scenarios add-only,drop-column] [--output FILE]

The predeploy gate rehearses pending migrations on a scratch copy of the database's *schema*,
so its time must not depend on how many rows the tables hold. This script builds one real
project (4 apps, 3 applied migrations, 15 pending ones: new tables, new columns, indexes,
cross-app foreign keys), applies the first 3 to two databases per backend, loads ``--rows``
rows into the big table (``events``) of one of them, and then times, ``--repeat`` times each
(the two states interleaved, one phase per kind of measurement), against the empty and the
loaded database:

  * the gate: ``flask_rollback.commands.predeploy`` in-process (the rehearsal part timed
    separately), and ``flask db predeploy`` as a subprocess (whole command);
  * the naive alternative a Flask-Migrate user has: copy the database WITH its data
    (SQLite: copy the file; PostgreSQL: CREATE DATABASE ... TEMPLATE, or pg_dump | psql), then
    Flask-Migrate ``upgrade``, ``downgrade`` to the deployed revision, ``upgrade`` on the copy,
    then drop the copy. Flask-Migrate (4.1) has no gate of its own. Same migration bodies, as a
    linear chain, on two databases of its own in the same state (same schema, same rows).

The second scenario adds one destructive pending migration (drop column ``events.payload``).

Starts its own throwaway PostgreSQL 15 server (tests/pgserver.py) on 127.0.0.1 and always stops
it; every file goes in one temporary directory that is removed at the end. The report goes to
stdout (and ``--output``); progress to stderr. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from statistics import median
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
for entry in (str(REPO), str(BENCH)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

import sqlalchemy as sa  # noqa: E402

import flask_rollback.gate as gate_module  # noqa: E402
import flask_rollback.rehearsal as rehearsal_module  # noqa: E402
from flask_rollback.commands import get_project, predeploy  # noqa: E402
from reliability import FLASK_MIGRATE_FACTORY, LoadSampler, Report, log, machine_info  # noqa: E402
from tests.pgserver import PostgresServer, find_postgres_bin  # noqa: E402
from tests.projects import Project  # noqa: E402

BIG_TABLE = "events"

# -- the project: models of the final state, and the migrations leading to it ----------------

ACCOUNTS_MODELS = """
from sqlalchemy.orm import Mapped, mapped_column
from .. import db


class User(db.Model):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(db.String(120), unique=True)
    display_name: Mapped[str | None] = mapped_column(db.String(80))


class Profile(db.Model):
    __tablename__ = "profiles"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(db.ForeignKey("users.id"), index=True)
    bio: Mapped[str | None] = mapped_column(db.Text)
"""

BLOG_MODELS = """
from sqlalchemy.orm import Mapped, mapped_column
from .. import db


class Post(db.Model):
    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(db.String(200))
    author_id: Mapped[int] = mapped_column(db.ForeignKey("users.id"))
    body: Mapped[str | None] = mapped_column(db.Text)


class Comment(db.Model):
    __tablename__ = "comments"
    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(db.ForeignKey("posts.id"), index=True)
    author_id: Mapped[int] = mapped_column(db.ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(db.Text)


class Tag(db.Model):
    __tablename__ = "tags"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(db.String(50), unique=True)


class PostTag(db.Model):
    __tablename__ = "post_tags"
    post_id: Mapped[int] = mapped_column(db.ForeignKey("posts.id"), primary_key=True)
    tag_id: Mapped[int] = mapped_column(db.ForeignKey("tags.id"), primary_key=True)
"""

SHOP_MODELS = """
import datetime
from decimal import Decimal
from sqlalchemy.orm import Mapped, mapped_column
from .. import db


class Product(db.Model):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(db.String(100))
    price: Mapped[Decimal] = mapped_column(db.Numeric(10, 2))


class Order(db.Model):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(db.ForeignKey("users.id"))
    created_at: Mapped[datetime.datetime] = mapped_column(db.DateTime)


class OrderItem(db.Model):
    __tablename__ = "order_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(db.ForeignKey("orders.id"), index=True)
    product_id: Mapped[int] = mapped_column(db.ForeignKey("products.id"))
    quantity: Mapped[int] = mapped_column(db.Integer)
"""

# events.payload disappears from the models in the drop-column scenario ($BENCH_DROP_PAYLOAD).
ANALYTICS_MODELS = """
import datetime
import os
from sqlalchemy.orm import Mapped, mapped_column
from .. import db


class Event(db.Model):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(db.Integer)
    kind: Mapped[str] = mapped_column(db.String(20))
    if not os.environ.get("BENCH_DROP_PAYLOAD"):
        payload: Mapped[str | None] = mapped_column(db.String(200))
    created_at: Mapped[datetime.datetime] = mapped_column(db.DateTime, index=True)
    source: Mapped[str | None] = mapped_column(db.String(40))


class DailyStat(db.Model):
    __tablename__ = "daily_stats"
    day: Mapped[datetime.date] = mapped_column(db.Date, primary_key=True)
    events: Mapped[int] = mapped_column(db.Integer)
"""

MODELS = {"accounts": ACCOUNTS_MODELS, "blog": BLOG_MODELS, "shop": SHOP_MODELS, "analytics": ANALYTICS_MODELS}


@dataclass(frozen=True)
class Migration:
    app: str
    number: int
    name: str
    upgrade: str
    downgrade: str
    depends_on: tuple[str, ...] = ()  # flask-rollback revision ids of other apps
    applied: bool = False  # part of the deployed state (applied before the measurements)

    @property
    def revision(self) -> str:
        return f"{self.app}{self.number:04d}"

    @property
    def label(self) -> str:
        return f"{self.app} {self.number:04d}_{self.name}"


def _pk(table: str, *columns: str) -> str:
    return f'sa.PrimaryKeyConstraint({", ".join(map(repr, columns))}, name=op.f("pk_{table}"))'


def _fk(table: str, column: str, target: str) -> str:
    return (f'sa.ForeignKeyConstraint(["{column}"], ["{target}.id"], '
            f'name=op.f("fk_{table}_{column}_{target}"))')


def _table(name: str, *items: str) -> str:
    return f'op.create_table(\n    "{name}",\n' + "".join(f"    {item},\n" for item in items) + ")"


def _index(table: str, column: str) -> tuple[str, str]:
    return (f'op.create_index(op.f("ix_{table}_{column}"), "{table}", ["{column}"])',
            f'op.drop_index(op.f("ix_{table}_{column}"), table_name="{table}")')


def _add_column(table: str, column: str, type_: str) -> tuple[str, str]:
    return (f'op.add_column("{table}", sa.Column("{column}", {type_}, nullable=True))',
            f'op.drop_column("{table}", "{column}")')


def _col(name: str, type_: str, nullable: bool = False) -> str:
    return f'sa.Column("{name}", {type_}, nullable={nullable})'


def _migrations() -> list[Migration]:
    """In an order that is also a valid linear chain (Flask-Migrate's)."""
    m: list[Migration] = []

    def add(app: str, number: int, name: str, up_down: tuple[str, str], *deps: str, applied: bool = False) -> None:
        m.append(Migration(app, number, name, up_down[0], up_down[1], deps, applied))

    # deployed state: users, posts (-> users), and the big table events
    add("accounts", 1, "initial", (_table(
        "users", _col("id", "sa.Integer()"), _col("email", "sa.String(length=120)"),
        _pk("users", "id"), 'sa.UniqueConstraint("email", name=op.f("uq_users_email"))'), 'op.drop_table("users")'),
        applied=True)
    add("blog", 1, "initial", (_table(
        "posts", _col("id", "sa.Integer()"), _col("title", "sa.String(length=200)"), _col("author_id", "sa.Integer()"),
        _fk("posts", "author_id", "users"), _pk("posts", "id")), 'op.drop_table("posts")'),
        "accounts0001", applied=True)
    add("analytics", 1, "initial", (_table(
        "events", _col("id", "sa.Integer()"), _col("user_id", "sa.Integer()"), _col("kind", "sa.String(length=20)"),
        _col("payload", "sa.String(length=200)", True), _col("created_at", "sa.DateTime()"), _pk("events", "id")),
        'op.drop_table("events")'), applied=True)
    # pending: 15 add-only migrations in 4 apps
    add("accounts", 2, "user_display_name", _add_column("users", "display_name", "sa.String(length=80)"))
    add("accounts", 3, "profiles", (_table(
        "profiles", _col("id", "sa.Integer()"), _col("user_id", "sa.Integer()"), _col("bio", "sa.Text()", True),
        _fk("profiles", "user_id", "users"), _pk("profiles", "id")), 'op.drop_table("profiles")'))
    add("accounts", 4, "profiles_user_index", _index("profiles", "user_id"))
    add("blog", 2, "post_body", _add_column("posts", "body", "sa.Text()"))
    add("blog", 3, "comments", (_table(
        "comments", _col("id", "sa.Integer()"), _col("post_id", "sa.Integer()"), _col("author_id", "sa.Integer()"),
        _col("body", "sa.Text()"), _fk("comments", "post_id", "posts"), _fk("comments", "author_id", "users"),
        _pk("comments", "id")), 'op.drop_table("comments")'), "accounts0002")
    add("blog", 4, "comments_post_index", _index("comments", "post_id"))
    add("blog", 5, "tags", (_table(
        "tags", _col("id", "sa.Integer()"), _col("name", "sa.String(length=50)"), _pk("tags", "id"),
        'sa.UniqueConstraint("name", name=op.f("uq_tags_name"))'), 'op.drop_table("tags")'))
    add("blog", 6, "post_tags", (_table(
        "post_tags", _col("post_id", "sa.Integer()"), _col("tag_id", "sa.Integer()"),
        _fk("post_tags", "post_id", "posts"), _fk("post_tags", "tag_id", "tags"), _pk("post_tags", "post_id", "tag_id")),
        'op.drop_table("post_tags")'))
    add("analytics", 2, "event_source", _add_column("events", "source", "sa.String(length=40)"))
    add("analytics", 3, "event_created_index", _index("events", "created_at"))
    add("shop", 1, "initial", (_table(
        "products", _col("id", "sa.Integer()"), _col("name", "sa.String(length=100)"),
        _col("price", "sa.Numeric(precision=10, scale=2)"), _pk("products", "id")), 'op.drop_table("products")'))
    add("shop", 2, "orders", (_table(
        "orders", _col("id", "sa.Integer()"), _col("user_id", "sa.Integer()"), _col("created_at", "sa.DateTime()"),
        _fk("orders", "user_id", "users"), _pk("orders", "id")), 'op.drop_table("orders")'), "accounts0001")
    add("shop", 3, "order_items", (_table(
        "order_items", _col("id", "sa.Integer()"), _col("order_id", "sa.Integer()"), _col("product_id", "sa.Integer()"),
        _col("quantity", "sa.Integer()"), _fk("order_items", "order_id", "orders"),
        _fk("order_items", "product_id", "products"), _pk("order_items", "id")), 'op.drop_table("order_items")'))
    add("shop", 4, "order_items_order_index", _index("order_items", "order_id"))
    add("analytics", 4, "daily_stats", (_table(
        "daily_stats", _col("day", "sa.Date()"), _col("events", "sa.Integer()"), _pk("daily_stats", "day")),
        'op.drop_table("daily_stats")'))
    return m


MIGRATIONS = _migrations()
# The destructive extra of the second scenario; its downgrade brings the (empty) column back.
DROP_PAYLOAD = Migration(
    "analytics", 5, "drop_event_payload", 'op.drop_column("events", "payload")',
    'op.add_column("events", sa.Column("payload", sa.String(length=200), nullable=True))',
)

MIGRATION_FILE = '''"""{name}"""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = {parent!r}
branch_labels = {labels!r}
depends_on = {depends_on!r}


def upgrade() -> None:
{upgrade}


def downgrade() -> None:
{downgrade}
'''


def _body(code: str) -> str:
    return textwrap.indent(code, "    ")


def write_flask_rollback(project: Project, migrations: list[Migration]) -> None:
    """One folder per app, one branch per app (branch label on its first migration)."""
    last: dict[str, str] = {}
    for mig in migrations:
        folder = project.migrations / mig.app
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{mig.number:04d}_{mig.name}.py").write_text(MIGRATION_FILE.format(
            name=mig.name, revision=mig.revision, parent=last.get(mig.app),
            labels=(mig.app,) if mig.app not in last else None,
            depends_on=mig.depends_on or None, upgrade=_body(mig.upgrade), downgrade=_body(mig.downgrade),
        ))
        last[mig.app] = mig.revision


def fm_revision(index: int) -> str:
    return f"fm{index + 1:03d}"


def write_flask_migrate(project: Project, migrations: list[Migration]) -> None:
    """The same bodies as one linear chain in migrations/versions/."""
    folder = project.migrations / "versions"
    folder.mkdir(parents=True, exist_ok=True)
    for index, mig in enumerate(migrations):
        (folder / f"{index + 1:03d}_{mig.app}_{mig.name}.py").write_text(MIGRATION_FILE.format(
            name=f"{mig.app}: {mig.name}", revision=fm_revision(index),
            parent=fm_revision(index - 1) if index else None, labels=None, depends_on=None,
            upgrade=_body(mig.upgrade), downgrade=_body(mig.downgrade),
        ))


# -- backends ---------------------------------------------------------------------------------


class Backend(ABC):
    """What the benchmark needs from a database server kind (SQLite files, PostgreSQL)."""

    name = ""
    copy_method = ""

    @abstractmethod
    def new_url(self, tag: str) -> str: ...

    @abstractmethod
    def drop(self, url: str) -> None: ...

    @abstractmethod
    def copy(self, source: str, target: str) -> None:
        """The naive rehearsal's first step: a full copy of the database, data included."""

    @abstractmethod
    def load_rows(self, url: str, rows: int) -> None: ...

    @abstractmethod
    def size(self, url: str) -> str: ...


class SQLite(Backend):
    name = "SQLite"
    copy_method = "copy the database file"

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "sqlite"
        self.dir.mkdir()

    def new_url(self, tag: str) -> str:
        return f"sqlite:///{self.dir / f'{tag}.db'}"

    @staticmethod
    def path(url: str) -> Path:
        return Path(sa.make_url(url).database or "")

    def drop(self, url: str) -> None:
        for suffix in ("", "-journal", "-wal", "-shm", ".rollback-lock"):
            Path(str(self.path(url)) + suffix).unlink(missing_ok=True)

    def copy(self, source: str, target: str) -> None:
        shutil.copyfile(self.path(source), self.path(target))

    def load_rows(self, url: str, rows: int) -> None:
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.begin() as connection:  # one transaction, rows made by SQLite itself
                connection.exec_driver_sql(
                    "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < ?) "
                    "INSERT INTO events (id, user_id, kind, payload, created_at) "
                    "SELECT x, x % 5000, 'kind' || (x % 7), hex(randomblob(16)), "
                    "datetime('2026-01-01', '+' || x || ' seconds') FROM g",
                    (rows,),
                )
        finally:
            engine.dispose()

    def size(self, url: str) -> str:
        return f"{self.path(url).stat().st_size / 2**20:.0f} MiB file"


class Postgres(Backend):
    name = "PostgreSQL"

    def __init__(self, server: PostgresServer, method: str) -> None:
        self.server = server
        self.method = method
        self.copy_method = (
            "CREATE DATABASE ... TEMPLATE" if method == "template" else "pg_dump | psql into a new database"
        )

    @staticmethod
    def dbname(url: str) -> str:
        return sa.make_url(url).database or ""

    def new_url(self, tag: str) -> str:
        name = f"bench_{tag}"
        self.server.create_database(name)
        return self.server.url(name)

    def drop(self, url: str) -> None:
        with self.server.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname(url)}" WITH (FORCE)')

    def copy(self, source: str, target: str) -> None:
        if self.method == "template":
            with self.server.connect() as conn:
                conn.execute(f'CREATE DATABASE "{self.dbname(target)}" TEMPLATE "{self.dbname(source)}"')
            return
        self.server.create_database(self.dbname(target))
        env = {**os.environ, "PGPASSWORD": self.server.password}
        common = ["-h", "127.0.0.1", "-p", str(self.server.port), "-U", self.server.user]
        dump = subprocess.Popen(
            ["pg_dump", *common, "--no-owner", self.dbname(source)], stdout=subprocess.PIPE, env=env,
            stdin=subprocess.DEVNULL,
        )
        assert dump.stdout is not None
        restore = subprocess.run(
            ["psql", *common, "-q", "-v", "ON_ERROR_STOP=1", "-d", self.dbname(target)],
            stdin=dump.stdout, stdout=subprocess.DEVNULL, env=env, timeout=600,
        )
        dump.stdout.close()
        if dump.wait(timeout=600) != 0 or restore.returncode != 0:
            raise RuntimeError(f"pg_dump | psql failed ({dump.returncode}, {restore.returncode})")

    def load_rows(self, url: str, rows: int) -> None:
        with self.server.connect(self.dbname(url)) as conn:
            conn.execute(
                "INSERT INTO events (id, user_id, kind, payload, created_at) "
                "SELECT g, g %% 5000, 'kind' || (g %% 7), md5(g::text), timestamp '2026-01-01' + g * interval '1 second' "
                "FROM generate_series(1, %s) AS g",
                (rows,),
            )
            conn.execute("VACUUM ANALYZE events")  # what autovacuum would do soon after a bulk load

    def size(self, url: str) -> str:
        with self.server.connect() as conn:
            row = conn.execute("SELECT pg_database_size(%s)", (self.dbname(url),)).fetchone()
        return f"{(row[0] if row else 0) / 2**20:.0f} MiB database"

    def table_reads(self, url: str, table: str) -> tuple[int, int]:
        """(rows read by sequential scans, index entries fetched) of ``table`` so far."""
        with self.server.connect(self.dbname(url)) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute(
                "SELECT seq_tup_read, coalesce(idx_tup_fetch, 0) FROM pg_stat_user_tables WHERE relname = %s",
                (table,),
            ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)


# -- measuring --------------------------------------------------------------------------------

#: Filled by the wrappers below during one predeploy() call.
PARTS: dict[str, float] = {}
PART_KEYS = ("data at risk", "rehearsal", "copy schema", "snapshots", "migrations", "drift")


def _time_into(module: Any, name: str, key: str) -> None:
    original = getattr(module, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            PARTS[key] = PARTS.get(key, 0.0) + time.perf_counter() - started

    setattr(module, name, timed)


# The gate calls gate.rehearse(); rehearse() calls the module globals copy_schema and _drift.
_time_into(gate_module, "rehearse", "rehearsal")
_time_into(rehearsal_module, "copy_schema", "copy schema")
_time_into(rehearsal_module, "_drift", "drift")
_time_into(rehearsal_module, "snapshot", "snapshots")
_time_into(rehearsal_module, "execute", "migrations")
if hasattr(gate_module, "_data_at_risk"):  # the live "data at risk" counts (newer gates)
    _time_into(gate_module, "_data_at_risk", "data at risk")


@dataclass
class Samples:
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, key: str, seconds: float) -> None:
        self.values.setdefault(key, []).append(seconds)

    def med(self, key: str) -> float:
        return median(self.values[key]) if self.values.get(key) else float("nan")


@dataclass
class Side:
    """One database state (0 rows or N rows) on one backend: both tools' databases and apps."""

    rows: int
    fr: Project
    fm_source: str
    fm_copy: Project  # a Flask-Migrate project pointed at the (re-created) copy
    fr_app: Any = None
    fm_app: Any = None
    samples: Samples = field(default_factory=Samples)
    verdicts: set[str] = field(default_factory=set)
    checks: list[str] = field(default_factory=list)
    size: str = ""


def run_gate(side: Side) -> None:
    # A fresh import of the project for every run (untimed), so that neither state is always
    # the app imported last (that alone made runs a few % slower in a 0-vs-1-row check).
    side.fr_app = side.fr.app()
    PARTS.clear()
    with side.fr_app.app_context():
        project = get_project(side.fr_app)
        started = time.perf_counter()
        report = predeploy(project)
        total = time.perf_counter() - started
    side.samples.add("gate", total)
    for key in PART_KEYS:
        side.samples.add(key, PARTS.get(key, float("nan")))
    side.verdicts.add("ready" if not report.blocked else "BLOCKED: " + "; ".join(
        f"{c.name}: {c.message} {c.details}" for c in report.checks if c.level != "ok"))
    side.checks = [f"{c.name}={c.level}" for c in report.checks]


def run_cli(side: Side) -> None:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "flask", "db", "predeploy", "--json"], cwd=side.fr.root, env=side.fr.env(),
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )
    side.samples.add("cli", time.perf_counter() - started)
    try:
        ready = json.loads(result.stdout)["ready"]
    except (ValueError, KeyError):
        ready = False
    if result.returncode != 0 or not ready:
        side.verdicts.add(f"CLI exit {result.returncode}: {(result.stdout + result.stderr)[-300:]}")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Flask-Migrate's env.py configures logging to stderr; keep it out of the report."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        yield


def run_naive(side: Side, backend: Backend, deployed_revision: str) -> None:
    import flask_migrate

    def call(fn: Callable[..., None], **kwargs: Any) -> None:
        try:
            with quiet():
                fn(directory=str(side.fm_copy.migrations), **kwargs)
        except SystemExit as exc:  # Flask-Migrate's catch_errors turns errors into sys.exit(1)
            raise RuntimeError(f"Flask-Migrate {fn.__name__} failed on the copy") from exc

    copy_url = side.fm_copy.url
    backend.drop(copy_url)
    started = time.perf_counter()
    backend.copy(side.fm_source, copy_url)
    copied = time.perf_counter()
    with side.fm_app.app_context():
        try:
            call(flask_migrate.upgrade, revision="head")
            up = time.perf_counter()
            call(flask_migrate.downgrade, revision=deployed_revision)
            down = time.perf_counter()
            call(flask_migrate.upgrade, revision="head")
            up2 = time.perf_counter()
        finally:
            for engine in side.fm_app.extensions["sqlalchemy"].engines.values():
                engine.dispose()
    backend.drop(copy_url)
    dropped = time.perf_counter()
    s = side.samples
    s.add("naive", dropped - started)
    s.add("naive copy", copied - started)
    s.add("naive upgrade", up - copied)
    s.add("naive downgrade", down - up)
    s.add("naive upgrade again", up2 - down)
    s.add("naive drop copy", dropped - up2)


STATEMENTS: list[tuple[str, str]] = []


def _record_statement(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    STATEMENTS.append((conn.engine.url.database or "", statement))


READS_BIG_TABLE = re.compile(rf'\b(FROM|JOIN|UPDATE|INTO)\s+(main\.)?"?{BIG_TABLE}"?(\s|$|\))', re.IGNORECASE)


def probe_statements(side: Side) -> tuple[int, list[str]]:
    """One untimed gate run with every SQL statement recorded: how many went to the target
    database, and those among them that read or write rows of the big table."""
    STATEMENTS.clear()
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", _record_statement)
    try:
        run_gate(side)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", _record_statement)
    target = sa.make_url(side.fr.url).database or ""
    on_target = [s for db, s in STATEMENTS if db == target]
    return len(on_target), [" ".join(s.split())[:160] for s in on_target if READS_BIG_TABLE.search(s)]


# -- setup ------------------------------------------------------------------------------------


def flask(project: Project, *args: str, extra_env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "flask", "db", *args], cwd=project.root, env={**project.env(), **(extra_env or {})},
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise SystemExit(f"`flask db {' '.join(args)}` failed in {project.root}:\n{result.stdout}{result.stderr}")
    return result.stdout


def make_projects(workdir: Path) -> tuple[Project, Project]:
    """The flask-rollback project (4 blueprints) and its Flask-Migrate twin."""
    fr = Project(workdir / "fr", f"benchproj_{uuid.uuid4().hex[:10]}", "sqlite://")
    for app, models in MODELS.items():
        fr.add_blueprint(app, models)
    fr.set_factory(list(MODELS))
    flask(fr, "init")
    fm = Project(workdir / "fm", f"fmproj_{uuid.uuid4().hex[:10]}", "sqlite://")
    fm.write("__init__.py", FLASK_MIGRATE_FACTORY)
    flask(fm, "init")  # Flask-Migrate's own init: its stock env.py and alembic.ini
    ini = fm.migrations / "alembic.ini"
    ini.write_text(re.sub(r"(\[logger_alembic\]\s*level\s*=\s*)INFO", r"\1WARN", ini.read_text()))
    return fr, fm


def prepare_backend(backend: Backend, fr: Project, fm: Project, rows: int, tag: str) -> list[Side]:
    """Two states (0 rows, N rows); each: a flask-rollback database and a Flask-Migrate one,
    with the deployed migrations applied by each tool's own `flask db upgrade`."""
    deployed = [m for m in MIGRATIONS if m.applied]
    write_flask_rollback(fr, deployed)
    write_flask_migrate(fm, deployed)
    sides = []
    for count in (0, rows):
        key = f"{tag}_{'big' if count else 'empty'}"
        fr_side = Project(fr.root, fr.package, backend.new_url(f"fr_{key}"))
        fm_source = Project(fm.root, fm.package, backend.new_url(f"fm_{key}"))
        flask(fr_side, "upgrade")
        flask(fm_source, "upgrade")
        if count:
            log(f"{backend.name}: loading {count:,} rows into {BIG_TABLE} (twice: one database per tool)")
            backend.load_rows(fr_side.url, count)
            backend.load_rows(fm_source.url, count)
        copy_url = backend.new_url(f"fm_{key}_copy")
        backend.drop(copy_url)  # only the name is kept; the copy is made in each naive run
        sides.append(Side(count, fr_side, fm_source.url, Project(fm.root, fm.package, copy_url),
                          size=backend.size(fr_side.url)))
    write_flask_rollback(fr, MIGRATIONS)
    write_flask_migrate(fm, MIGRATIONS)
    return sides


def add_drop_scenario(fr: Project, fm: Project, sides: list[Side]) -> None:
    """One more pending migration (drop events.payload); the models lose the column too."""
    write_flask_rollback(fr, MIGRATIONS + [DROP_PAYLOAD])
    write_flask_migrate(fm, MIGRATIONS + [DROP_PAYLOAD])
    os.environ["BENCH_DROP_PAYLOAD"] = "1"  # read by the models; inherited by the CLI runs
    for side in sides:
        side.samples = Samples()
        side.verdicts = set()
        side.fr_app = side.fr.app()


# -- the report -------------------------------------------------------------------------------


def fmt(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds == seconds else "n/a"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b and a == a and b == b else "n/a"


ROWS_SHOWN = [
    ("gate", "predeploy() in-process, whole gate"),
    ("data at risk", "  of which: data at risk (live counts on the target)"),
    ("rehearsal", "  of which: rehearsal (scratch db, up/down/up, drift)"),
    ("copy schema", "    of which: copy schema + version rows"),
    ("migrations", "    of which: migrations up, down, up on the scratch db"),
    ("snapshots", "    of which: schema snapshots (2 per migration)"),
    ("drift", "    of which: drift (models vs migrations)"),
    ("cli", "`flask db predeploy` subprocess"),
    ("naive", "NAIVE: full copy + FM up/down/up + drop"),
    ("naive copy", "  of which: copy with data"),
    ("naive upgrade", "  of which: upgrade"),
    ("naive downgrade", "  of which: downgrade"),
    ("naive upgrade again", "  of which: upgrade again"),
    ("naive drop copy", "  of which: drop the copy"),
]


def report_scenario(report: Report, backend: Backend, sides: list[Side], title: str, probe: dict[int, Any]) -> dict[str, str]:
    empty, big = sides
    report("")
    report(f"  {backend.name}: {title}")
    report(f"    database sizes: 0 rows: {empty.size}; {big.rows:,} rows: {big.size}; "
           f"naive copy: {backend.copy_method}")
    report(f"    {'median seconds':<54} {'0 rows':>9} {f'{big.rows:,} rows':>15} {'ratio':>8}")
    for key, label in ROWS_SHOWN:
        a, b = empty.samples.med(key), big.samples.med(key)
        if a != a and b != b:
            continue
        report(f"    {label:<54} {fmt(a):>9} {fmt(b):>15} {ratio(b, a):>8}")
    report(f"    gate verdicts: 0 rows: {', '.join(sorted(empty.verdicts))}; {big.rows:,} rows: {', '.join(sorted(big.verdicts))}")
    report(f"    gate checks: {', '.join(big.checks)}")
    for side in sides:
        count, matches, reads = probe[side.rows]
        line = (f"    target database, {side.rows:,} rows: {count} SQL statements per gate run, "
                f"{len(matches)} of them reading/writing rows of {BIG_TABLE}")
        if reads is not None:
            line += f"; rows of {BIG_TABLE} read per gate run (pg_stat_user_tables): {reads}"
        report(line)
        for statement in matches:
            report(f"      {statement}")
    spread = {
        key: (f"{min(big.samples.values[key]):.3f}-{max(big.samples.values[key]):.3f}" if big.samples.values.get(key) else "")
        for key in ("gate", "naive")
    }
    report(f"    min-max at {big.rows:,} rows: gate {spread['gate']} s, naive {spread['naive']} s")
    def low(side: Side, key: str) -> float:
        return min(side.samples.values.get(key) or [float("nan")])

    return {
        "gate min": ratio(low(big, "gate"), low(empty, "gate")),
        "naive min": ratio(low(big, "naive"), low(empty, "naive")),
        "gate": ratio(big.samples.med("gate"), empty.samples.med("gate")),
        "rehearsal": ratio(big.samples.med("rehearsal"), empty.samples.med("rehearsal")),
        "cli": ratio(big.samples.med("cli"), empty.samples.med("cli")),
        "naive": ratio(big.samples.med("naive"), empty.samples.med("naive")),
        "gate s": f"{fmt(empty.samples.med('gate'))} / {fmt(big.samples.med('gate'))}",
        "naive s": f"{fmt(empty.samples.med('naive'))} / {fmt(big.samples.med('naive'))}",
    }


def measure(report: Report, backend: Backend, sides: list[Side], repeat: int, cli: bool, naive: bool,
            title: str, deployed_revision: str) -> dict[str, str]:
    """Three phases: the gate, the CLI, the naive rehearsal. The naive one writes hundreds of MiB
    (full copies, index builds on the big table); kept apart, those writes and their write-back
    never overlap the gate's own runs. Within each phase the two states are interleaved and their
    order alternates from round to round, so load on the machine hits both alike."""

    def rounds(what: str, run: Callable[[Side], None]) -> None:
        for r in range(repeat):
            log(f"{backend.name}: {title}: {what} {r + 1}/{repeat}")
            for side in sides if r % 2 == 0 else sides[::-1]:
                run(side)

    log(f"{backend.name}: {title}: warm-up")
    for side in sides:  # one untimed run each: imports, first connections, caches
        run_gate(side)
    probe: dict[int, Any] = {}
    for side in sides:
        before = backend.table_reads(side.fr.url, BIG_TABLE) if isinstance(backend, Postgres) else None
        count, matches = probe_statements(side)
        reads = None
        if before is not None:
            time.sleep(0.6)  # the gate's backends have exited; their stats are flushed
            after = backend.table_reads(side.fr.url, BIG_TABLE)
            reads = (after[0] - before[0]) + (after[1] - before[1])
        probe[side.rows] = (count, matches, reads)
    for side in sides:
        side.samples = Samples()
    rounds("gate", run_gate)
    if cli:
        rounds("CLI", run_cli)
    if naive:
        for side in sides:  # untimed warm-up of Flask-Migrate
            run_naive(side, backend, deployed_revision)
            for key in [k for k in side.samples.values if k.startswith("naive")]:
                side.samples.values[key].clear()
        rounds("naive", lambda side: run_naive(side, backend, deployed_revision))
    return report_scenario(report, backend, sides, title, probe)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the big table of the loaded state")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (the median is reported)")
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument("--scenarios", default="add-only,drop-column",
                        help="add-only (15 pending migrations), drop-column (the same + drop events.payload)")
    parser.add_argument("--pg-copy", choices=("template", "dump"), default="template",
                        help="how the naive rehearsal copies a PostgreSQL database")
    parser.add_argument("--no-cli", action="store_true", help="skip the `flask db predeploy` subprocess timings")
    parser.add_argument("--no-naive", action="store_true",
                        help="skip the naive full-copy rehearsal (time the gate alone, without the copies' disk writes)")
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if not scenarios or set(scenarios) - {"add-only", "drop-column"}:
        parser.error("--scenarios: add-only and/or drop-column")

    bindir = find_postgres_bin()
    if bindir is None and "postgresql" in args.backends:
        print("PostgreSQL (initdb/pg_ctl) not found; use --backends sqlite", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="flask-rollback-rehearsal-bench-"))
    server = PostgresServer(bindir) if bindir and "postgresql" in args.backends else None

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    os.environ.pop("BENCH_DROP_PAYLOAD", None)
    report = Report()
    started = time.monotonic()
    load = LoadSampler()
    try:
        backends: list[Backend] = []
        if server is not None:
            log("starting a throwaway PostgreSQL server")
            server.start()
            backends.append(Postgres(server, args.pg_copy))
        if "sqlite" in args.backends:
            backends.append(SQLite(workdir))
        pending = [m for m in MIGRATIONS if not m.applied]
        deployed_fm = fm_revision(len(MIGRATIONS) - len(pending) - 1)

        report("Rehearsal time vs rows: `flask db predeploy` against an empty and a loaded big table")
        report(f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
        report(f"machine: {machine_info(server)}")
        report(
            f"project: 4 apps; deployed: {len(MIGRATIONS) - len(pending)} migrations (users, posts, {BIG_TABLE}); "
            f"pending: {len(pending)} add-only migrations "
            f"({', '.join(m.label for m in pending)}); big table {BIG_TABLE}: 0 vs {args.rows:,} rows; "
            f"median of {args.repeat}, after one warm-up run"
        )
        results: dict[tuple[str, str], dict[str, str]] = {}
        for backend in backends:
            os.environ.pop("BENCH_DROP_PAYLOAD", None)
            tag = backend.name.lower()
            root = workdir / f"projects-{tag}"
            root.mkdir()
            fr, fm = make_projects(root)
            sides = prepare_backend(backend, fr, fm, args.rows, tag)
            for side in sides:
                side.fr_app = side.fr.app()
                side.fm_app = side.fm_copy.app()
            try:
                for scenario in scenarios:
                    if scenario == "drop-column":
                        add_drop_scenario(fr, fm, sides)
                        title = f"drop-column: the {len(pending)} add-only + 1 dropping {BIG_TABLE}.payload"
                    else:
                        title = f"add-only: {len(pending)} pending migrations"
                    results[(backend.name, scenario)] = measure(
                        report, backend, sides, args.repeat, not args.no_cli, not args.no_naive, title, deployed_fm
                    )
            finally:
                for side in sides:
                    for app in (side.fr_app, side.fm_app):
                        if app is not None:
                            with app.app_context():
                                for engine in app.extensions["sqlalchemy"].engines.values():
                                    engine.dispose()
                    backend.drop(side.fr.url)
                    backend.drop(side.fm_source)
                    backend.drop(side.fm_copy.url)

        report("")
        report(f"SUMMARY: ratio {args.rows:,} rows / 0 rows of the medians (of the minimums in brackets); "
               f"absolute: median seconds at 0 / {args.rows:,} rows")
        report(f"  {'backend / scenario':<26} {'gate':>15} {'rehearsal':>10} {'CLI':>7} {'naive':>15}"
               f"   {'gate s':>13}   {'naive s':>13}")
        for (backend_name, scenario), r in results.items():
            report(f"  {backend_name + ' / ' + scenario:<26} {r['gate'] + ' (' + r['gate min'] + ')':>15} "
                   f"{r['rehearsal']:>10} {r['cli']:>7} {r['naive'] + ' (' + r['naive min'] + ')':>15}"
                   f"   {r['gate s']:>13}   {r['naive s']:>13}")
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
        if server is not None:
            log("stopping the PostgreSQL server")
            server.stop()
        if args.output:
            args.output.write_text(report.text())
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
