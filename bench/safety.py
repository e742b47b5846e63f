#!/usr/bin/env python3
"""Safety benchmark (issue 8): does ``flask db upgrade`` lose data without a flag?

    python3 bench/safety.py [--backends postgresql,sqlite] [--tools flask-rollback,Flask-Migrate]
                            [--quick] [--cases TEXT] [--list] [--jobs 2] [--output FILE] [--keep]

Issue 8 promises: zero rows lost without an explicit flag, false alarms on safe migrations under
2 %, and every refusal leaves the database byte-for-byte unchanged. This script measures that.
It generates a corpus of complete migrations (upgrade and downgrade) from templates times
variations, destructive and safe, in classes (drops, renames, cascades, data migrations,
narrowing, raw-SQL rebuilds, code run as it goes, fresh databases). It runs each one through the
real ``flask db upgrade`` (or ``downgrade``), a subprocess with no flags, on a populated
database: for flask-rollback, and side by side for Flask-Migrate with the same migration body
in a linear Flask-Migrate project.

A full snapshot of the data is taken before and after each run. A run *loses data* when any row
that existed before is gone, or any of its non-NULL values is gone or changed (following the
renames and copies the case declares). For flask-rollback a refusal must exit 6 and leave the
database byte-for-byte as it was (SQLite: the file's sha256; PostgreSQL: schema and all rows).

Starts its own throwaway PostgreSQL server (tests/pgserver.py) on 127.0.0.1 and always stops
it; everything else lives in one temporary directory removed at the end (Ctrl-C and SIGTERM
included). The report (Markdown) goes to stdout and ``--output``; progress to stderr.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402

from flask_rollback.errors import EXIT_REFUSED  # noqa: E402
from reliability import (  # noqa: E402
    FLASK_MIGRATE_FACTORY, LoadSampler, Report, Run, log, machine_info, median, ratio, reap_all, run_db,
)
from tests.pgserver import PostgresServer, find_postgres_bin  # noqa: E402
from tests.projects import Project, fingerprint  # noqa: E402
from tests.test_safety_cases import FOREIGN_KEYS_ON  # noqa: E402

APP = "shop"  # the flask-rollback app (blueprint) owning every table of the benchmark
RUN_TIMEOUT = 240.0  # seconds for one ``flask db`` subprocess

# -- the schema every case starts from: migration 0001, the same body for both tools -------------

#: ``op.create_table`` code of each table (also used by downgrades that re-create a table).
TABLES: dict[str, str] = {
    "users": '''op.create_table(
    "users",
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(120), nullable=False),
    sa.Column("name", sa.String(100)),
    sa.Column("bio", sa.Text),
    sa.Column("score", sa.Integer),
    sa.Column("balance", sa.Numeric(10, 2)),
    sa.Column("rating", sa.Float),
    sa.Column("active", sa.Boolean),
    sa.Column("zip_code", sa.String(10)),
    sa.Column("created_at", sa.DateTime),
    sa.Column("legacy_code", sa.String(20)),
    sa.UniqueConstraint("email", name="uq_users_email"),
)''',
    "posts": '''op.create_table(
    "posts",
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("title", sa.String(200)),
    sa.Column("body", sa.Text),
    sa.Column("author_id", sa.Integer,
              sa.ForeignKey("users.id", name="fk_posts_author_id_users", ondelete="CASCADE"), nullable=False),
    sa.Column("views", sa.Integer),
    sa.Column("status", sa.String(20)),
    sa.Column("published_at", sa.DateTime),
)
op.create_index("ix_posts_author_id", "posts", ["author_id"])''',
    "comments": '''op.create_table(
    "comments",
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("post_id", sa.Integer,
              sa.ForeignKey("posts.id", name="fk_comments_post_id_posts", ondelete="CASCADE"), nullable=False),
    sa.Column("author_id", sa.Integer,
              sa.ForeignKey("users.id", name="fk_comments_author_id_users", ondelete="SET NULL")),
    sa.Column("body", sa.Text),
    sa.Column("created_at", sa.DateTime),
)
op.create_index("ix_comments_post_id", "comments", ["post_id"])''',
    "tags": '''op.create_table(
    "tags",
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), nullable=False),
    sa.UniqueConstraint("name", name="uq_tags_name"),
)''',
    "post_tags": '''op.create_table(
    "post_tags",
    sa.Column("post_id", sa.Integer,
              sa.ForeignKey("posts.id", name="fk_post_tags_post_id_posts", ondelete="CASCADE"), primary_key=True),
    sa.Column("tag_id", sa.Integer,
              sa.ForeignKey("tags.id", name="fk_post_tags_tag_id_tags", ondelete="CASCADE"), primary_key=True),
)''',
    "audit_log": '''op.create_table(
    "audit_log",
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("event", sa.String(50)),
    sa.Column("user_id", sa.Integer),
    sa.Column("payload", sa.Text),
    sa.Column("created_at", sa.DateTime),
)
op.create_index("ix_audit_log_created_at", "audit_log", ["created_at"])''',
    "settings": '''op.create_table(
    "settings",
    sa.Column("key", sa.String(50), primary_key=True),
    sa.Column("value", sa.Text),
)''',
    "old_reports": '''op.create_table(
    "old_reports",
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("body", sa.Text),
)''',
}

#: The type of each column a case drops, as code (a downgrade adds the column back with it).
COLUMN_TYPES: dict[str, str] = {
    "users.name": "sa.String(100)", "users.bio": "sa.Text()", "users.score": "sa.Integer()",
    "users.balance": "sa.Numeric(10, 2)", "users.rating": "sa.Float()", "users.zip_code": "sa.String(10)",
    "users.created_at": "sa.DateTime()", "users.legacy_code": "sa.String(20)", "users.email": "sa.String(120)",
    "posts.title": "sa.String(200)", "posts.body": "sa.Text()", "posts.views": "sa.Integer()",
    "posts.status": "sa.String(20)", "posts.published_at": "sa.DateTime()",
    "comments.body": "sa.Text()", "audit_log.payload": "sa.Text()", "audit_log.event": "sa.String(50)",
    "settings.value": "sa.Text()", "tags.name": "sa.String(50)",
}

INITIAL_UPGRADE = "\n".join(TABLES.values())
INITIAL_DOWNGRADE = "\n".join(f'op.drop_table("{name}")' for name in reversed(TABLES))

#: flask-rollback needs models for its app; they match migration 0001.
SHOP_MODELS = '''
import sqlalchemy as sa
from .. import db


class User(db.Model):
    __tablename__ = "users"
    __table_args__ = (sa.UniqueConstraint("email", name="uq_users_email"),)
    id = sa.Column(sa.Integer, primary_key=True)
    email = sa.Column(sa.String(120), nullable=False)
    name = sa.Column(sa.String(100))
    bio = sa.Column(sa.Text)
    score = sa.Column(sa.Integer)
    balance = sa.Column(sa.Numeric(10, 2))
    rating = sa.Column(sa.Float)
    active = sa.Column(sa.Boolean)
    zip_code = sa.Column(sa.String(10))
    created_at = sa.Column(sa.DateTime)
    legacy_code = sa.Column(sa.String(20))


class Post(db.Model):
    __tablename__ = "posts"
    id = sa.Column(sa.Integer, primary_key=True)
    title = sa.Column(sa.String(200))
    body = sa.Column(sa.Text)
    author_id = sa.Column(sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    views = sa.Column(sa.Integer)
    status = sa.Column(sa.String(20))
    published_at = sa.Column(sa.DateTime)


class Comment(db.Model):
    __tablename__ = "comments"
    id = sa.Column(sa.Integer, primary_key=True)
    post_id = sa.Column(sa.Integer, sa.ForeignKey("posts.id", ondelete="CASCADE"), nullable=False, index=True)
    author_id = sa.Column(sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"))
    body = sa.Column(sa.Text)
    created_at = sa.Column(sa.DateTime)


class Tag(db.Model):
    __tablename__ = "tags"
    __table_args__ = (sa.UniqueConstraint("name", name="uq_tags_name"),)
    id = sa.Column(sa.Integer, primary_key=True)
    name = sa.Column(sa.String(50), nullable=False)


post_tags = db.Table(
    "post_tags",
    sa.Column("post_id", sa.Integer, sa.ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("tag_id", sa.Integer, sa.ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
)


class AuditLog(db.Model):
    __tablename__ = "audit_log"
    id = sa.Column(sa.Integer, primary_key=True)
    event = sa.Column(sa.String(50))
    user_id = sa.Column(sa.Integer)
    payload = sa.Column(sa.Text)
    created_at = sa.Column(sa.DateTime, index=True)


class Setting(db.Model):
    __tablename__ = "settings"
    key = sa.Column(sa.String(50), primary_key=True)
    value = sa.Column(sa.Text)


class OldReport(db.Model):
    __tablename__ = "old_reports"
    id = sa.Column(sa.Integer, primary_key=True)
    body = sa.Column(sa.Text)
'''

FIRST = ["Ann", "Bob", "Chloé", "Dmitri", "Eve", "Farid", "Grace", "Hiro", "Ines", "José"]
LAST = ["Smith", "Okafor", "Müller", "Nakamura", "Silva", "Dubois", "Kowalski", "O'Brien"]
WORDS = ("migration database rollback deploy schema column table index archive data python flask "
         "release backup restore query replica cache").split()
TAGS = ["python", "flask", "sql", "postgres", "sqlite", "ops", "release", "howto", "news", "security",
        "testing", "design", "cloud", "backup", "perf", "misc"]
EVENTS = ["login", "logout", "purchase", "error", "signup"]
SETTINGS = {"theme": "light", "locale": "en_GB", "timezone": "Europe/Paris", "items_per_page": "25",
            "signup_open": "true", "support_email": "help@example.com", "maintenance": "false",
            "banner": "Welcome!"}


def populated_rows(seed: int = 8) -> dict[str, list[dict[str, Any]]]:
    """The rows of a realistic small shop/blog database, the same on every backend and run.

    Mixed-case e-mails, NULLs in nullable columns, fractions, times of day, scores beyond a
    smallint and zip codes with leading zeros are there so that every destructive template has
    something to destroy; ``legacy_code`` is NULL everywhere and ``old_reports`` is empty."""
    rng = random.Random(seed)
    start = datetime(2023, 1, 1, 8, 30)

    def moment() -> datetime:
        return start + timedelta(minutes=rng.randrange(3 * 365 * 24 * 60), seconds=rng.randrange(60))

    def words(low: int, high: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high))).capitalize()

    users = [{
        "id": i,
        "email": f"User{i}@Example.COM" if i % 7 == 0 else f"user{i}@example.com",
        "name": None if i % 10 == 0 else f"{rng.choice(FIRST)} {rng.choice(LAST)}",
        "bio": None if i % 2 else words(8, 20),
        "score": rng.randint(0, 90000),
        "balance": Decimal(rng.randint(0, 10_000_000)) / 100,
        "rating": round(rng.uniform(0, 5), 2),
        "active": i % 5 != 0,
        "zip_code": f"{rng.randint(1000, 99999):05d}",
        "created_at": moment(),
        "legacy_code": None,
    } for i in range(1, 151)]
    posts = []
    for i in range(1, 501):
        status = rng.choice(["draft", "published", "archived"])
        posts.append({
            "id": i, "title": None if i % 9 == 0 else words(1, 8), "body": words(20, 60),
            "author_id": rng.randint(1, 150), "views": rng.randint(0, 5000), "status": status,
            "published_at": None if status == "draft" else moment(),
        })
    comments = [{
        "id": i, "post_id": rng.randint(1, 500),
        "author_id": None if i % 20 == 0 else rng.randint(1, 150), "body": words(3, 25),
        "created_at": moment(),
    } for i in range(1, 1201)]
    pairs = sorted({(rng.randint(1, 500), rng.randint(1, len(TAGS))) for _ in range(800)})
    audit = [{
        "id": i, "event": rng.choice(EVENTS), "user_id": rng.randint(1, 150),
        "payload": None if i % 5 == 0 else f'{{"ip": "10.0.{rng.randint(0, 255)}.{rng.randint(0, 255)}", '
                                          f'"agent": "{rng.choice(WORDS)}"}}',
        "created_at": moment(),
    } for i in range(1, 2501)]
    return {
        "users": users, "posts": posts, "comments": comments,
        "tags": [{"id": i, "name": name} for i, name in enumerate(TAGS, start=1)],
        "post_tags": [{"post_id": p, "tag_id": t} for p, t in pairs],
        "audit_log": audit,
        "settings": [{"key": k, "value": v} for k, v in SETTINGS.items()],
    }


def load_rows(url: str, rows: dict[str, list[dict[str, Any]]]) -> None:
    """Insert the rows as the application would (SQLAlchemy types format dates, booleans, ...)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            metadata = sa.MetaData()
            metadata.reflect(connection, only=list(rows))
            for name, table_rows in rows.items():
                if table_rows:
                    connection.execute(metadata.tables[name].insert(), table_rows)
    finally:
        engine.dispose()


#: Migration 0002 of every fresh-database case: a few rows the run itself writes, small enough
#: for every narrowing of the corpus (nothing of them existed before the run).
FRESH_SEED = "\n".join(f"op.execute({statement!r})" for statement in (
    "INSERT INTO users (id, email, name, bio, score, balance, rating, active, zip_code, created_at) VALUES "
    "(1, 'a@example.com', 'Ann', 'hi', 7, 12.50, 4.5, TRUE, '01234', '2024-01-02 10:00:00'), "
    "(2, 'B@Example.com', 'Bob', NULL, 9, 3.25, 3.75, FALSE, '75001', '2024-02-03 11:30:00')",
    "INSERT INTO posts (id, title, body, author_id, views, status, published_at) VALUES "
    "(1, 'Hello', 'first', 1, 10, 'published', '2024-01-03 09:00:00'), "
    "(2, 'Draft', 'second', 2, 0, 'draft', NULL), (3, 'Old', 'third', 1, 3, 'archived', '2023-05-01 09:00:00')",
    "INSERT INTO comments (id, post_id, author_id, body) VALUES (1, 1, 2, 'nice'), (2, 3, 1, 'old')",
    "INSERT INTO tags (id, name) VALUES (1, 'python'), (2, 'flask')",
    "INSERT INTO post_tags (post_id, tag_id) VALUES (1, 1), (1, 2), (3, 1)",
    "INSERT INTO audit_log (id, event, user_id, payload, created_at) VALUES "
    "(1, 'login', 1, 'ok', '2023-06-01 10:00:00'), (2, 'error', 2, 'x', '2024-06-01 10:00:00'), "
    "(3, 'logout', 1, NULL, '2024-06-02 10:00:00')",
    "INSERT INTO settings (key, value) VALUES ('theme', 'light'), ('locale', 'en')",
))

# -- the corpus: templates x variations ---------------------------------------------------------

POSTGRESQL, SQLITE = "postgresql", "sqlite"
BOTH = (POSTGRESQL, SQLITE)
DESTRUCTIVE, SAFE, AMBIGUOUS = "destructive", "safe", "ambiguous"
NOOP = 'noop_downgrade = "a data migration: nothing to undo"'
REBUILT = 'noop_downgrade = "the rebuilt table has the same schema"'


@dataclass(frozen=True)
class Migration:
    """One complete migration file: ``upgrade()`` and ``downgrade()`` bodies, module-level lines."""

    upgrade: str
    downgrade: str = "pass"
    header: str = ""


@dataclass(frozen=True)
class Variant:
    """One variation of a template: its migrations and what the case does with them.

    ``applied`` migrations run (``flask db upgrade`` to there, no flag) before ``rows`` are
    written; the measured command is then ``upgrade`` (to the head) or, with ``downgrade``, a
    downgrade back to 0001. ``moves`` says where data legitimately goes: ``{"t": "t2"}`` for a
    table, ``{"t.c": "t2.c2"}`` for a column (renames, copies)."""

    name: str
    migrations: tuple[Migration, ...]
    applied: int = 0
    rows: tuple[str, ...] = ()
    downgrade: bool = False
    moves: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Case:
    """A variant made concrete for one backend: what runs, on what, and what it should do."""

    template: str
    variant: Variant
    cls: str
    label: str
    foreign_keys: bool = False  # SQLite: the project turns foreign keys on for every connection
    fresh: bool = False  # the whole history on an empty database, 0002 writing the rows
    why: str = ""

    @property
    def name(self) -> str:
        return f"{self.template}[{self.variant.name}]" + (" (fresh database)" if self.fresh else "")

    @property
    def migrations(self) -> tuple[Migration, ...]:
        seed = (Migration(FRESH_SEED, "pass", NOOP),) if self.fresh else ()
        return seed + self.variant.migrations


@dataclass(frozen=True)
class Template:
    name: str
    cls: str
    label: str
    backends: tuple[str, ...]
    variants: Callable[[str], Iterator[Variant]]
    foreign_keys: bool
    fresh: int  # this many first variants also run as a fresh-database case
    why: str


TEMPLATES: list[Template] = []


def template(cls: str, label: str, backends: tuple[str, ...] = BOTH, foreign_keys: bool = False,
             fresh: int = 0, why: str = "") -> Callable[[Callable[[str], Iterator[Variant]]], Callable[[str], Iterator[Variant]]]:
    """Register a generator of variants (given the backend) as a template of the corpus."""

    def register(variants: Callable[[str], Iterator[Variant]]) -> Callable[[str], Iterator[Variant]]:
        TEMPLATES.append(Template(variants.__name__, cls, label, backends, variants, foreign_keys, fresh, why))
        return variants

    return register


def corpus(backend: str, quick: bool = False) -> list[Case]:
    """Every case of every template for ``backend``; ``quick``: the first variant of each."""
    cases: list[Case] = []
    for spec in TEMPLATES:
        if backend not in spec.backends:
            continue
        variants = list(spec.variants(backend))
        for variant in variants[:1] if quick else variants:
            cases.append(Case(spec.name, variant, spec.cls, spec.label, spec.foreign_keys, why=spec.why))
        for variant in variants[:min(spec.fresh, 1) if quick else spec.fresh]:
            cases.append(Case(spec.name, variant, "fresh database", SAFE, spec.foreign_keys, fresh=True))
    names = [case.name for case in cases]
    duplicates = [name for name, count in Counter(names).items() if count > 1]
    assert not duplicates, f"case names must be unique: {duplicates}"
    return cases


# code builders: each returns Python source for a migration body

def execute(*statements: str) -> str:
    return "\n".join(f"op.execute({statement!r})" for statement in statements)


def execute_text(statement: str) -> str:
    return f"op.execute(sa.text({statement!r}))"


def batch(table: str, *lines: str, recreate: str = "auto") -> str:
    options = "" if recreate == "auto" else f", recreate={recreate!r}"
    return f'with op.batch_alter_table("{table}"{options}) as batch_op:\n' + textwrap.indent("\n".join(lines), "    ")


def add_column(table: str, column: str, type_code: str, options: str = "") -> str:
    return f'op.add_column("{table}", sa.Column("{column}", {type_code}{options}))'


def batch_add(column: str, type_code: str) -> str:
    return f'batch_op.add_column(sa.Column("{column}", {type_code}))'


def drop_column(table: str, column: str) -> str:
    return f'op.drop_column("{table}", "{column}")'


def rename_column(table: str, old: str, new: str) -> str:
    return f'op.alter_column("{table}", "{old}", new_column_name="{new}")'


def alter_type(old: str, new: str, using: str = "", existing: bool = True) -> str:
    """``alter_column`` keyword arguments changing a type (as autogenerate writes them)."""
    return (f"type_={new}" + (f", existing_type={old}" if existing else "")
            + (f", postgresql_using={using!r}" if using else ""))


def split(dotted: str) -> tuple[str, str]:
    table, column = dotted.split(".")
    return table, column


def code(source: str) -> str:
    return textwrap.dedent(source).strip()


def data_migration(name: str, body: str) -> Variant:
    """A data migration: nothing to undo, declared as such."""
    return Variant(name, (Migration(body, "pass", NOOP),))


# --- drops -------------------------------------------------------------------------------------

@template("drops", DESTRUCTIVE, fresh=1)
def drop_table(backend: str) -> Iterator[Variant]:
    for table, style in (("comments", "op"), ("audit_log", "raw")):
        if style == "op":
            yield Variant(f"op.drop_table {table}", (Migration(f'op.drop_table("{table}")', TABLES[table]),))
        else:
            yield Variant(f"raw DROP TABLE {table}", (Migration(execute(f"DROP TABLE {table}"), TABLES[table]),))
    yield Variant("raw DROP TABLE IF EXISTS post_tags",
                  (Migration(execute("DROP TABLE IF EXISTS post_tags"), TABLES["post_tags"]),))


RECREATE_POSTS_KEYS = code('''
    op.create_foreign_key("fk_comments_post_id_posts", "comments", "posts", ["post_id"], ["id"], ondelete="CASCADE")
    op.create_foreign_key("fk_post_tags_post_id_posts", "post_tags", "posts", ["post_id"], ["id"], ondelete="CASCADE")
''')


@template("drops", DESTRUCTIVE)
def drop_parent_table(backend: str) -> Iterator[Variant]:
    if backend == POSTGRESQL:  # the referencing foreign keys go, their rows stay
        yield Variant("raw DROP TABLE posts CASCADE", (Migration(
            execute("DROP TABLE posts CASCADE"), TABLES["posts"] + "\n" + RECREATE_POSTS_KEYS),))
    else:  # foreign keys off (SQLite's default): the children keep dangling keys
        yield Variant("op.drop_table posts", (Migration('op.drop_table("posts")', TABLES["posts"]),))


@template("drops", DESTRUCTIVE, fresh=1)
def drop_column_with_values(backend: str) -> Iterator[Variant]:
    for dotted, styles in (("users.name", ("op",)), ("posts.body", ("batch",)), ("comments.body", ("raw",)),
                           ("audit_log.payload", ("op", "batch", "raw"))):
        table, column = split(dotted)
        back = add_column(table, column, COLUMN_TYPES[dotted])
        if "op" in styles:
            yield Variant(f"op.drop_column {dotted}", (Migration(drop_column(table, column), back),))
        if "batch" in styles:
            yield Variant(f"batch drop_column {dotted}", (Migration(
                batch(table, f'batch_op.drop_column("{column}")'), batch(table, batch_add(column, COLUMN_TYPES[dotted]))),))
        if "raw" in styles:
            yield Variant(f"raw DROP COLUMN {dotted}", (Migration(execute(f"ALTER TABLE {table} DROP COLUMN {column}"), back),))
    yield Variant("op.drop_column users.score and users.rating", (Migration(
        drop_column("users", "score") + "\n" + drop_column("users", "rating"),
        add_column("users", "score", "sa.Integer()") + "\n" + add_column("users", "rating", "sa.Float()")),))


WISHLIST = code('''
    op.create_table(
        "wishlist",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", name="fk_wishlist_user_id_users")),
        sa.Column("item", sa.String(100)),
    )
''')


@template("drops", DESTRUCTIVE)
def downgrade_drops_written_data(backend: str) -> Iterator[Variant]:
    """Rows written after a deploy, then the deploy is rolled back (downgrade to 0001)."""
    yield Variant("op add users.nickname, written", (Migration(
        add_column("users", "nickname", "sa.String(50)"), drop_column("users", "nickname")),),
        applied=1, rows=("UPDATE users SET nickname = 'nick' || id WHERE id % 3 = 0",), downgrade=True)
    yield Variant("batch add posts.subtitle, written", (Migration(
        batch("posts", batch_add("subtitle", "sa.String(200)")), batch("posts", 'batch_op.drop_column("subtitle")')),),
        applied=1, rows=("UPDATE posts SET subtitle = 'part ' || id WHERE status = 'published'",), downgrade=True)
    yield Variant("create_table wishlist, written", (Migration(WISHLIST, 'op.drop_table("wishlist")'),),
                  applied=1, rows=("INSERT INTO wishlist (id, user_id, item) VALUES (1, 3, 'lamp'), (2, 5, 'desk')",),
                  downgrade=True)


@template("drops", SAFE)
def drop_what_holds_nothing(backend: str) -> Iterator[Variant]:
    yield Variant("op.drop_table old_reports (empty)", (Migration('op.drop_table("old_reports")', TABLES["old_reports"]),))
    back = add_column("users", "legacy_code", "sa.String(20)")
    yield Variant("op.drop_column users.legacy_code (all NULL)", (Migration(drop_column("users", "legacy_code"), back),))
    yield Variant("raw DROP COLUMN users.legacy_code (all NULL)", (Migration(
        execute("ALTER TABLE users DROP COLUMN legacy_code"), back),))
    yield Variant("op.drop_index", (Migration(
        'op.drop_index("ix_audit_log_created_at", table_name="audit_log")',
        'op.create_index("ix_audit_log_created_at", "audit_log", ["created_at"])'),))
    if backend == POSTGRESQL:
        yield Variant("op.drop_constraint unique", (Migration(
            'op.drop_constraint("uq_tags_name", "tags", type_="unique")',
            'op.create_unique_constraint("uq_tags_name", "tags", ["name"])'),))
    else:  # SQLite alters constraints only by a rebuild
        yield Variant("batch drop_constraint unique", (Migration(
            batch("tags", 'batch_op.drop_constraint("uq_tags_name", type_="unique")'),
            batch("tags", 'batch_op.create_unique_constraint("uq_tags_name", ["name"])')),))


@template("drops", SAFE)
def downgrade_drops_nothing_written(backend: str) -> Iterator[Variant]:
    """A deploy rolled back before anything was written into what it added."""
    yield Variant("op add users.nickname, not written", (Migration(
        add_column("users", "nickname", "sa.String(50)"), drop_column("users", "nickname")),),
        applied=1, downgrade=True)
    yield Variant("create_index, then rows written elsewhere", (Migration(
        'op.create_index("ix_posts_status", "posts", ["status"])', 'op.drop_index("ix_posts_status", table_name="posts")'),),
        applied=1, rows=("INSERT INTO posts (id, title, author_id, status) VALUES (9001, 'new', 1, 'draft')",),
        downgrade=True)


# --- additions (safe only) ---------------------------------------------------------------------

@template("additions", SAFE)
def add_column_nullable(backend: str) -> Iterator[Variant]:
    yield Variant("op users.nickname", (Migration(
        add_column("users", "nickname", "sa.String(50)"), drop_column("users", "nickname")),))
    yield Variant("batch posts.subtitle", (Migration(
        batch("posts", batch_add("subtitle", "sa.String(200)")), batch("posts", 'batch_op.drop_column("subtitle")')),))


@template("additions", SAFE)
def add_column_with_default(backend: str) -> Iterator[Variant]:
    yield Variant("op users.plan NOT NULL DEFAULT", (Migration(
        add_column("users", "plan", "sa.String(20)", ", nullable=False, server_default='free'"), drop_column("users", "plan")),))
    yield Variant("batch comments.hidden NOT NULL DEFAULT", (Migration(
        batch("comments", 'batch_op.add_column(sa.Column("hidden", sa.Boolean(), nullable=False, server_default=sa.false()))'),
        batch("comments", 'batch_op.drop_column("hidden")')),))


@template("additions", SAFE)
def create_index(backend: str) -> Iterator[Variant]:
    for table, column, style in (("posts", "status", "op"), ("users", "created_at", "raw")):
        name = f"ix_{table}_{column}"
        down = f'op.drop_index("{name}", table_name="{table}")'
        if style == "op":
            yield Variant(f"op {name}", (Migration(f'op.create_index("{name}", "{table}", ["{column}"])', down),))
        else:
            yield Variant(f"raw {name}", (Migration(execute(f"CREATE INDEX {name} ON {table} ({column})"), down),))


@template("additions", SAFE)
def create_table(backend: str) -> Iterator[Variant]:
    yield Variant("with foreign keys", (Migration(WISHLIST, 'op.drop_table("wishlist")'),))
    yield Variant("with seed rows", (Migration(code('''
        coupons = op.create_table("coupons", sa.Column("code", sa.String(20), primary_key=True), sa.Column("percent", sa.Integer))
        op.bulk_insert(coupons, [{"code": "WELCOME", "percent": 10}, {"code": "VIP", "percent": 25}])
    '''), 'op.drop_table("coupons")'),))


@template("additions", SAFE)
def add_constraint(backend: str) -> Iterator[Variant]:
    if backend == POSTGRESQL:
        yield Variant("op check constraint", (Migration(
            'op.create_check_constraint("ck_posts_views", "posts", "views >= 0")',
            'op.drop_constraint("ck_posts_views", "posts", type_="check")'),))
    else:  # SQLite adds constraints only by a rebuild
        yield Variant("batch check constraint", (Migration(
            batch("posts", 'batch_op.create_check_constraint("ck_posts_views", "views >= 0")'),
            batch("posts", 'batch_op.drop_constraint("ck_posts_views", type_="check")')),))


# --- renames -----------------------------------------------------------------------------------

#: (table, column, new name, styles): ``op.alter_column``, ``batch_alter_table``, raw ``ALTER TABLE``
RENAMED_COLUMNS = (("users", "name", "full_name", ("op", "raw SQL")), ("posts", "title", "headline", ("batch", "raw SQL")))
RENAMED_TABLES = (("audit_log", "events"), ("settings", "config"))


@template("renames", DESTRUCTIVE, fresh=1)
def rename_column_then_drop(backend: str) -> Iterator[Variant]:
    """The column is dropped under its new name: the values of the old one are lost."""
    for table, old, new, styles in RENAMED_COLUMNS:
        type_code = COLUMN_TYPES[f"{table}.{old}"]
        migrations = {
            "op": Migration(rename_column(table, old, new) + "\n" + drop_column(table, new), add_column(table, old, type_code)),
            "batch": Migration(  # two blocks: one batch cannot drop a column it renames
                batch(table, f'batch_op.alter_column("{old}", new_column_name="{new}")') + "\n"
                + batch(table, f'batch_op.drop_column("{new}")'),
                batch(table, batch_add(old, type_code))),
            "raw SQL": Migration(
                execute(f"ALTER TABLE {table} RENAME COLUMN {old} TO {new}", f"ALTER TABLE {table} DROP COLUMN {new}"),
                add_column(table, old, type_code)),
        }
        for style in styles:
            yield Variant(f"{style} {table}.{old}", (migrations[style],))


@template("renames", DESTRUCTIVE)
def rename_column_then_drop_later(backend: str) -> Iterator[Variant]:
    """Rename in one migration, drop in the next: one plan."""
    yield Variant("op users.bio", (
        Migration(rename_column("users", "bio", "about"), rename_column("users", "about", "bio")),
        Migration(drop_column("users", "about"), add_column("users", "about", "sa.Text()"))))
    yield Variant("batch comments.body", (
        Migration(batch("comments", 'batch_op.alter_column("body", new_column_name="content")'),
                  batch("comments", 'batch_op.alter_column("content", new_column_name="body")')),
        Migration(batch("comments", 'batch_op.drop_column("content")'), batch("comments", batch_add("content", "sa.Text()")))))


@template("renames", DESTRUCTIVE, fresh=1)
def rename_table_then_drop(backend: str) -> Iterator[Variant]:
    for old, new in RENAMED_TABLES:
        yield Variant(f"op {old}", (Migration(f'op.rename_table("{old}", "{new}")\nop.drop_table("{new}")', TABLES[old]),))
    yield Variant("raw SQL audit_log", (Migration(
        execute("ALTER TABLE audit_log RENAME TO events", "DROP TABLE events"), TABLES["audit_log"]),))
    yield Variant("op comments, drop in the next migration", (
        Migration('op.rename_table("comments", "remarks")', 'op.rename_table("remarks", "comments")'),
        Migration('op.drop_table("remarks")', TABLES["comments"].replace('"comments"', '"remarks"'))))


@template("renames", DESTRUCTIVE)
def rename_loop_then_drop(backend: str) -> Iterator[Variant]:
    """title and a new summary swap names through a temporary one; dropping summary loses titles."""
    yield Variant("posts.title <-> posts.summary", (Migration("\n".join((
        add_column("posts", "summary", "sa.String(200)"), rename_column("posts", "title", "tmp"),
        rename_column("posts", "summary", "title"), rename_column("posts", "tmp", "summary"),
        drop_column("posts", "summary"))), add_column("posts", "summary", "sa.String(200)")),))


@template("renames", DESTRUCTIVE)
def add_rename_fill_then_downgrade(backend: str) -> Iterator[Variant]:
    """The issue's example: add a column, rename it, fill it, then roll both back."""
    for table, column, renamed in (("posts", "notes", "remarks"), ("users", "nick", "handle")):
        fill = (f"UPDATE {table} SET {renamed} = 'kept ' || id WHERE id % 2 = 0",)
        yield Variant(f"op {table}.{column}", (
            Migration(add_column(table, column, "sa.String(50)"), drop_column(table, column)),
            Migration(rename_column(table, column, renamed), rename_column(table, renamed, column))),
            applied=2, rows=fill, downgrade=True)
    yield Variant("batch posts.notes", (
        Migration(batch("posts", batch_add("notes", "sa.String(50)")), batch("posts", 'batch_op.drop_column("notes")')),
        Migration(batch("posts", 'batch_op.alter_column("notes", new_column_name="remarks")'),
                  batch("posts", 'batch_op.alter_column("remarks", new_column_name="notes")'))),
        applied=2, rows=("UPDATE posts SET remarks = 'kept ' || id WHERE id % 2 = 0",), downgrade=True)


@template("renames", SAFE)
def rename_column_alone(backend: str) -> Iterator[Variant]:
    for table, old, new, styles in RENAMED_COLUMNS:
        migrations = {
            "op": Migration(rename_column(table, old, new), rename_column(table, new, old)),
            "batch": Migration(batch(table, f'batch_op.alter_column("{old}", new_column_name="{new}")'),
                               batch(table, f'batch_op.alter_column("{new}", new_column_name="{old}")')),
            "raw SQL": Migration(execute(f"ALTER TABLE {table} RENAME COLUMN {old} TO {new}"),
                                 execute(f"ALTER TABLE {table} RENAME COLUMN {new} TO {old}")),
        }
        for style in styles:
            yield Variant(f"{style} {table}.{old}", (migrations[style],), moves=((f"{table}.{old}", f"{table}.{new}"),))


@template("renames", SAFE)
def rename_table_alone(backend: str) -> Iterator[Variant]:
    for old, new in RENAMED_TABLES:
        yield Variant(f"op {old}", (Migration(f'op.rename_table("{old}", "{new}")', f'op.rename_table("{new}", "{old}")'),),
                      moves=((old, new),))
    yield Variant("raw SQL audit_log", (Migration(
        execute("ALTER TABLE audit_log RENAME TO events"), execute("ALTER TABLE events RENAME TO audit_log")),),
        moves=(("audit_log", "events"),))


@template("renames", SAFE)
def rename_then_downgrade(backend: str) -> Iterator[Variant]:
    """A rename rolled back after rows were written under the new name: the data goes back."""
    yield Variant("column posts.title", (Migration(
        rename_column("posts", "title", "headline"), rename_column("posts", "headline", "title")),),
        applied=1, rows=("UPDATE posts SET headline = 'edited ' || id WHERE id <= 20",), downgrade=True,
        moves=(("posts.headline", "posts.title"),))
    yield Variant("table settings", (Migration('op.rename_table("settings", "config")', 'op.rename_table("config", "settings")'),),
                  applied=1, rows=("INSERT INTO config (key, value) VALUES ('currency', 'EUR')",), downgrade=True,
                  moves=(("config", "settings"),))


# --- cascades (SQLite: with the common PRAGMA foreign_keys=ON listener) ------------------------

@template("cascades", DESTRUCTIVE, foreign_keys=True, fresh=1)
def delete_parents(backend: str) -> Iterator[Variant]:
    for name, statement in (
        ("posts WHERE status", "DELETE FROM posts WHERE status = 'archived'"),
        ("users: posts cascade, comments SET NULL", "DELETE FROM users WHERE id > 140"),
        ("tags: post_tags cascade", "DELETE FROM tags WHERE name IN ('misc', 'news')"),
        ("posts by subquery", "DELETE FROM posts WHERE id IN "
                              "(SELECT post_id FROM comments GROUP BY post_id HAVING count(*) > 4)"),
    ):
        yield data_migration(name, execute(statement))


@template("cascades", DESTRUCTIVE, foreign_keys=True, fresh=1)
def cascade_from_a_table_the_run_created(backend: str) -> Iterator[Variant]:
    """Only the run's own rows are deleted, but ON DELETE CASCADE takes existing posts with them."""
    categories = code('''
        categories = op.create_table("categories", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(50)))
        op.bulk_insert(categories, [{"id": 1, "name": "general"}, {"id": 2, "name": "popular"}])
        op.execute("ALTER TABLE posts ADD COLUMN category_id INTEGER REFERENCES categories (id) ON DELETE CASCADE")
        op.execute("UPDATE posts SET category_id = CASE WHEN views > 2500 THEN 2 ELSE 1 END")
    ''')
    undo = batch("posts", 'batch_op.drop_column("category_id")') + '\nop.drop_table("categories")'
    yield Variant("DELETE FROM categories", (Migration(categories, undo),
                                             Migration(execute("DELETE FROM categories WHERE id = 2"), "pass", NOOP)))


@template("cascades", DESTRUCTIVE, backends=(POSTGRESQL,))
def truncate_cascade(backend: str) -> Iterator[Variant]:
    for table in ("posts", "tags"):
        yield data_migration(f"TRUNCATE {table} CASCADE", execute(f"TRUNCATE {table} CASCADE"))


@template("cascades", DESTRUCTIVE, backends=(SQLITE,), foreign_keys=True)
def drop_parent_with_foreign_keys_on(backend: str) -> Iterator[Variant]:
    """DROP TABLE with foreign keys on deletes every row first, and the children cascade."""
    yield Variant("op.drop_table tags", (Migration('op.drop_table("tags")', TABLES["tags"]),))
    # A hand-written rebuild that copies every row and column of posts: only the cascade loses.
    yield Variant("hand-written rebuild of posts", (Migration(execute(
        "CREATE TABLE posts_new (id INTEGER PRIMARY KEY, title VARCHAR(200), body TEXT, "
        "author_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE, views INTEGER, status VARCHAR(20), "
        "published_at DATETIME)",
        "INSERT INTO posts_new SELECT id, title, body, author_id, views, status, published_at FROM posts",
        "DROP TABLE posts", "ALTER TABLE posts_new RENAME TO posts",
        "CREATE INDEX ix_posts_author_id ON posts (author_id)"), "pass", REBUILT),))


@template("cascades", DESTRUCTIVE, foreign_keys=True)
def batch_drop_parent_column(backend: str) -> Iterator[Variant]:
    """The column's values are lost (refuse); the children must survive the rebuild either way."""
    for table, column in (("posts", "body"), ("users", "bio")):
        type_code = COLUMN_TYPES[f"{table}.{column}"]
        yield Variant(f"{table}.{column}", (Migration(
            batch(table, f'batch_op.drop_column("{column}")'), batch(table, batch_add(column, type_code))),))


@template("cascades", SAFE, foreign_keys=True)
def batch_rebuild_of_a_parent(backend: str) -> Iterator[Variant]:
    """Rebuilds (SQLite) of parents that lose nothing: a tool whose rebuild cascades loses children."""
    rebuild = "always" if backend == SQLITE else "auto"  # PostgreSQL cannot rebuild a referenced table
    yield Variant(f"posts recreate={rebuild} add_column", (Migration(
        batch("posts", batch_add("subtitle", "sa.String(200)"), recreate=rebuild),
        batch("posts", 'batch_op.drop_column("subtitle")')),))
    yield Variant("posts widen title", (Migration(
        batch("posts", 'batch_op.alter_column("title", existing_type=sa.String(200), type_=sa.String(300))'),
        batch("posts", 'batch_op.alter_column("title", existing_type=sa.String(300), type_=sa.String(200))')),))
    yield Variant("users drop all-NULL legacy_code", (Migration(
        batch("users", 'batch_op.drop_column("legacy_code")'), batch("users", batch_add("legacy_code", "sa.String(20)"))),))
    yield Variant("users widen email", (Migration(
        batch("users", 'batch_op.alter_column("email", existing_type=sa.String(120), type_=sa.String(255))'),
        batch("users", 'batch_op.alter_column("email", existing_type=sa.String(255), type_=sa.String(120))')),))
    yield Variant(f"tags recreate={rebuild} add_column", (Migration(
        batch("tags", batch_add("slug", "sa.String(50)"), recreate=rebuild), batch("tags", 'batch_op.drop_column("slug")')),))
    yield Variant("posts add check constraint", (Migration(
        batch("posts", 'batch_op.create_check_constraint("ck_posts_views", "views >= 0")'),
        batch("posts", 'batch_op.drop_constraint("ck_posts_views", type_="check")')),))


@template("cascades", SAFE, foreign_keys=True)
def delete_parents_matching_nothing(backend: str) -> Iterator[Variant]:
    yield data_migration("posts WHERE status = 'spam'", execute("DELETE FROM posts WHERE status = 'spam'"))
    yield data_migration("users by e-mail domain", execute("DELETE FROM users WHERE email LIKE '%@nowhere.invalid'"))


# --- data migrations ---------------------------------------------------------------------------

@template("data migrations", DESTRUCTIVE, fresh=1)
def delete_rows(backend: str) -> Iterator[Variant]:
    yield data_migration("DELETE all", execute("DELETE FROM audit_log"))
    yield data_migration("WHERE", execute("DELETE FROM audit_log WHERE event = 'logout'"))
    yield data_migration("WHERE, sa.text", execute_text("DELETE FROM audit_log WHERE event = 'purchase'"))
    yield data_migration("Core delete() construct", code('''
        log = sa.table("audit_log", sa.column("event"))
        op.execute(log.delete().where(log.c.event == "signup"))
    '''))
    yield data_migration("subquery", execute(
        "DELETE FROM comments WHERE post_id IN (SELECT id FROM posts WHERE status = 'draft')"))
    yield data_migration("correlated EXISTS", execute(
        "DELETE FROM comments WHERE EXISTS (SELECT 1 FROM posts WHERE posts.id = comments.post_id AND posts.views < 500)"))
    yield data_migration("CTE", execute(
        "WITH stale AS (SELECT id FROM audit_log WHERE event = 'error') DELETE FROM audit_log WHERE id IN (SELECT id FROM stale)"))
    yield data_migration("dedupe, keep the newest", execute(
        "DELETE FROM audit_log WHERE id NOT IN (SELECT max(id) FROM audit_log GROUP BY user_id, event)"))
    if backend == POSTGRESQL:
        yield data_migration("USING", execute(
            "DELETE FROM comments c USING posts p WHERE c.post_id = p.id AND p.status = 'archived'"))


@template("data migrations", DESTRUCTIVE, fresh=1)
def update_overwrites(backend: str) -> Iterator[Variant]:
    for name, statement in (
        ("lower-case e-mails", "UPDATE users SET email = lower(email)"),
        ("WHERE", "UPDATE posts SET status = 'archived' WHERE published_at < '2024-01-01'"),
        ("set NULL", "UPDATE users SET name = NULL WHERE active = FALSE"),
        ("value from a subquery", "UPDATE posts SET views = (SELECT count(*) FROM comments WHERE comments.post_id = posts.id)"),
        ("CTE", "WITH top AS (SELECT id FROM users ORDER BY score DESC LIMIT 10) "
                "UPDATE users SET score = 0 WHERE id IN (SELECT id FROM top)"),
        ("UPDATE ... FROM", "UPDATE posts SET status = 'hidden' FROM users "
                            "WHERE users.id = posts.author_id AND users.active = FALSE"),
        ("copy over a filled column", "UPDATE posts SET body = title WHERE title IS NOT NULL"),
    ):
        yield data_migration(name, execute(statement))
    yield data_migration("Core update() construct", code('''
        users = sa.table("users", sa.column("rating"))
        op.execute(users.update().values(rating=0))
    '''))


@template("data migrations", DESTRUCTIVE, fresh=1)
def upsert(backend: str) -> Iterator[Variant]:
    yield data_migration("ON CONFLICT DO UPDATE", execute(
        "INSERT INTO settings (key, value) VALUES ('theme', 'dark') ON CONFLICT (key) DO UPDATE SET value = excluded.value"))
    if backend == POSTGRESQL:
        yield data_migration("INSERT ... SELECT ON CONFLICT DO UPDATE", execute(
            "INSERT INTO tags (id, name) SELECT id, upper(name) FROM tags WHERE id <= 3 "
            "ON CONFLICT (id) DO UPDATE SET name = excluded.name"))
    else:
        yield data_migration("INSERT OR REPLACE", execute("INSERT OR REPLACE INTO settings (key, value) VALUES ('locale', 'fr_FR')"))
        yield data_migration("REPLACE INTO", execute("REPLACE INTO settings (key, value) VALUES ('banner', 'Hello')"))


@template("data migrations", DESTRUCTIVE, backends=(POSTGRESQL,), fresh=1)
def truncate(backend: str) -> Iterator[Variant]:
    for statement in ("TRUNCATE audit_log", "TRUNCATE comments, post_tags", "TRUNCATE TABLE settings RESTART IDENTITY"):
        yield data_migration(statement, execute(statement))


@template("data migrations", SAFE)
def backfill_nulls(backend: str) -> Iterator[Variant]:
    yield data_migration("posts.title", execute("UPDATE posts SET title = 'untitled-' || id WHERE title IS NULL"))
    yield data_migration("users.name, sa.text", execute_text("UPDATE users SET name = 'user-' || id WHERE name IS NULL"))
    yield data_migration("posts.published_at of drafts", execute(
        "UPDATE posts SET published_at = '2024-01-01 00:00:00' WHERE published_at IS NULL AND status = 'draft'"))
    # Every value stays what it was (COALESCE keeps the non-NULL ones): safe by the data.
    yield data_migration("audit_log.payload with COALESCE, no WHERE", execute(
        "UPDATE audit_log SET payload = COALESCE(payload, '{}')"))


@template("data migrations", SAFE)
def backfill_a_new_column(backend: str) -> Iterator[Variant]:
    for table, column, type_code, value in (
        ("users", "display_name", "sa.String(120)", "COALESCE(name, email)"),
        ("comments", "length", "sa.Integer()", "length(body)"),
    ):
        yield Variant(f"{table}.{column}", (Migration(
            add_column(table, column, type_code) + "\n" + execute(f"UPDATE {table} SET {column} = {value}"),
            drop_column(table, column)),))


def copy_then_drop_migration(table: str, old: str, new: str, style: str, where: str = "") -> Migration:
    """Add ``new``, copy ``old`` into it, drop ``old``; the downgrade copies back."""
    type_code = COLUMN_TYPES[f"{table}.{old}"]
    copy = execute(f"UPDATE {table} SET {new} = {old}{where}")
    copy_back = execute(f"UPDATE {table} SET {old} = {new}")
    if style == "batch":
        return Migration(
            batch(table, batch_add(new, type_code)) + "\n" + copy + "\n" + batch(table, f'batch_op.drop_column("{old}")'),
            batch(table, batch_add(old, type_code)) + "\n" + copy_back + "\n" + batch(table, f'batch_op.drop_column("{new}")'))
    return Migration(
        add_column(table, new, type_code) + "\n" + copy + "\n" + drop_column(table, old),
        add_column(table, old, type_code) + "\n" + copy_back + "\n" + drop_column(table, new))


@template("data migrations", SAFE)
def copy_then_drop(backend: str) -> Iterator[Variant]:
    for table, old, new, styles in (("users", "name", "full_name", ("op", "batch")), ("comments", "body", "content", ("batch",))):
        for style in styles:
            yield Variant(f"{style} {table}.{old}", (copy_then_drop_migration(table, old, new, style),),
                          moves=((f"{table}.{old}", f"{table}.{new}"),))
    yield Variant("op audit_log.payload WHERE NOT NULL", (copy_then_drop_migration(
        "audit_log", "payload", "data", "op", " WHERE payload IS NOT NULL"),), moves=(("audit_log.payload", "audit_log.data"),))


@template("data migrations", SAFE)
def copy_then_drop_then_downgrade(backend: str) -> Iterator[Variant]:
    """Rolled back after edits under the new name: the downgrade copies them back first."""
    yield Variant("posts.title", (copy_then_drop_migration("posts", "title", "headline", "op"),), applied=1,
                  rows=("UPDATE posts SET headline = headline || ' (edited)' WHERE id <= 20",), downgrade=True,
                  moves=(("posts.headline", "posts.title"),))


@template("data migrations", SAFE)
def matching_no_rows(backend: str) -> Iterator[Variant]:
    for name, statement in (
        ("DELETE WHERE", "DELETE FROM audit_log WHERE id < 0"),
        ("UPDATE with a CTE", "WITH neg AS (SELECT id FROM users WHERE score < 0) "
                              "UPDATE users SET score = 0 WHERE id IN (SELECT id FROM neg)"),
        ("DELETE of an empty table", "DELETE FROM old_reports"),
        ("UPDATE of a filled column, no match", "UPDATE posts SET title = upper(title) WHERE status = 'spam'"),
    ):
        yield data_migration(name, execute(statement))


@template("data migrations", SAFE)
def insert_rows(backend: str) -> Iterator[Variant]:
    yield Variant("bulk_insert tags", (Migration(
        'op.bulk_insert(sa.table("tags", sa.column("id"), sa.column("name")), '
        '[{"id": 100, "name": "django"}, {"id": 101, "name": "alembic"}])',
        execute("DELETE FROM tags WHERE id IN (100, 101)")),))
    yield Variant("ON CONFLICT DO NOTHING over an existing key", (Migration(execute(
        "INSERT INTO settings (key, value) VALUES ('theme', 'dark'), ('currency', 'EUR') ON CONFLICT (key) DO NOTHING"),
        execute("DELETE FROM settings WHERE key = 'currency'")),))
    if backend == SQLITE:
        yield Variant("INSERT OR IGNORE over an existing key", (Migration(execute(
            "INSERT OR IGNORE INTO settings (key, value) VALUES ('theme', 'dark'), ('currency', 'EUR')"),
            execute("DELETE FROM settings WHERE key = 'currency'")),))
    # New keys only: nothing exists to overwrite, so nothing changes (safe by the data).
    yield Variant("ON CONFLICT DO UPDATE, new keys only", (Migration(execute(
        "INSERT INTO settings (key, value) VALUES ('currency', 'EUR') ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
        execute("DELETE FROM settings WHERE key = 'currency'")),))
    yield Variant("INSERT ... SELECT into a new table", (Migration(
        'op.create_table("post_stats", sa.Column("post_id", sa.Integer, primary_key=True), sa.Column("comments", sa.Integer))\n'
        + execute("INSERT INTO post_stats (post_id, comments) SELECT post_id, count(*) FROM comments GROUP BY post_id"),
        'op.drop_table("post_stats")'),))


@template("data migrations", SAFE)
def fill_a_column_that_is_all_null(backend: str) -> Iterator[Variant]:
    yield data_migration("users.legacy_code, no WHERE", execute("UPDATE users SET legacy_code = 'L' || id"))


# --- narrowing type changes --------------------------------------------------------------------

def type_change(style: str, table: str, column: str, old: str, new: str, using: str = "",
                existing: bool = True) -> Migration:
    change, back = alter_type(old, new, using, existing), alter_type(new, old)
    if style == "batch":
        return Migration(batch(table, f'batch_op.alter_column("{column}", {change})'),
                         batch(table, f'batch_op.alter_column("{column}", {back})'))
    return Migration(f'op.alter_column("{table}", "{column}", {change})', f'op.alter_column("{table}", "{column}", {back})')


@template("narrowing", DESTRUCTIVE, fresh=1)
def narrowing_that_changes_values(backend: str) -> Iterator[Variant]:
    """Values are rounded, cut or reinterpreted (SQLite: the rebuild's CAST does it)."""
    style = "op" if backend == POSTGRESQL else "batch"
    specs = [
        ("users.rating Float to Integer", "users", "rating", "sa.Float()", "sa.Integer()", ""),
        ("users.created_at DateTime to Date", "users", "created_at", "sa.DateTime()", "sa.Date()", ""),
        ("users.zip_code String to Integer (leading zeros)", "users", "zip_code", "sa.String(10)", "sa.Integer()",
         "zip_code::integer"),
    ]
    if backend == POSTGRESQL:
        specs += [
            ("users.balance Numeric(10, 2) to Numeric(10, 0)", "users", "balance", "sa.Numeric(10, 2)", "sa.Numeric(10, 0)", ""),
            ("posts.title String(200) to String(10) USING left()", "posts", "title", "sa.String(200)", "sa.String(10)",
             "left(title, 10)"),
        ]
    else:
        specs.append(("users.balance Numeric(10, 2) to Integer", "users", "balance", "sa.Numeric(10, 2)", "sa.Integer()", ""))
    for name, table, column, old, new, using in specs:
        yield Variant(f"{style} {name}", (type_change(style, table, column, old, new, using if backend == POSTGRESQL else ""),))
    yield Variant(f"{style} users.rating Float to Integer without existing_type", (type_change(
        style, "users", "rating", "sa.Float()", "sa.Integer()", existing=False),))


@template("narrowing", DESTRUCTIVE, backends=(POSTGRESQL,))
def narrowing_over_values_that_do_not_fit(backend: str) -> Iterator[Variant]:
    """PostgreSQL refuses the values (the migration fails); a database that does not would lose them."""
    for name, table, column, old, new in (
        ("posts.title String(200) to String(10)", "posts", "title", "sa.String(200)", "sa.String(10)"),
        ("users.score Integer to SmallInteger", "users", "score", "sa.Integer()", "sa.SmallInteger()"),
        ("audit_log.payload Text to String(20)", "audit_log", "payload", "sa.Text()", "sa.String(20)"),
    ):
        yield Variant(f"op {name}", (type_change("op", table, column, old, new),))


@template("narrowing", AMBIGUOUS, backends=(SQLITE,), why=(
    "SQLite keeps every value as it was (no length or integer-range enforcement; NUMERIC affinity keeps "
    "the cents), so no data is lost on this database; but the declared type no longer holds the values, and "
    "the same migration fails (PostgreSQL) or truncates (MySQL) elsewhere"))
def narrowing_that_sqlite_ignores(backend: str) -> Iterator[Variant]:
    for name, table, column, old, new in (
        ("posts.title String(200) to String(10)", "posts", "title", "sa.String(200)", "sa.String(10)"),
        ("users.balance Numeric(10, 2) to Numeric(10, 0)", "users", "balance", "sa.Numeric(10, 2)", "sa.Numeric(10, 0)"),
        ("users.score Integer to SmallInteger", "users", "score", "sa.Integer()", "sa.SmallInteger()"),
    ):
        yield Variant(f"batch {name}", (type_change("batch", table, column, old, new),))


@template("narrowing", SAFE)
def type_change_that_fits(backend: str) -> Iterator[Variant]:
    """Narrowing over values that all fit, and widening."""
    style = "op" if backend == POSTGRESQL else "batch"
    for name, table, column, old, new in (
        ("posts.title String(200) to String(150), all fit", "posts", "title", "sa.String(200)", "sa.String(150)"),
        ("posts.views Integer to SmallInteger, all fit", "posts", "views", "sa.Integer()", "sa.SmallInteger()"),
        ("users.balance Numeric(10, 2) to Numeric(8, 2), all fit", "users", "balance", "sa.Numeric(10, 2)", "sa.Numeric(8, 2)"),
        ("posts.views widened to BigInteger", "posts", "views", "sa.Integer()", "sa.BigInteger()"),
        ("users.balance widened to Numeric(12, 2)", "users", "balance", "sa.Numeric(10, 2)", "sa.Numeric(12, 2)"),
    ):
        yield Variant(f"{style} {name}", (type_change(style, table, column, old, new),))


# --- hand-written (raw SQL) table rebuilds -----------------------------------------------------

AUDIT_COLUMNS = "id INTEGER PRIMARY KEY, event VARCHAR(50), user_id INTEGER, payload TEXT, created_at TIMESTAMP"
AUDIT_INDEX = "CREATE INDEX ix_audit_log_created_at ON audit_log (created_at)"


def rebuild(table: str, columns: str, insert: str, *after: str) -> str:
    """Create ``<table>_new``, fill it, drop the table, rename the new one into its place."""
    return execute(f"CREATE TABLE {table}_new ({columns})", insert, f"DROP TABLE {table}",
                   f"ALTER TABLE {table}_new RENAME TO {table}", *after)


@template("rebuilds", DESTRUCTIVE, fresh=1)
def rebuild_that_loses(backend: str) -> Iterator[Variant]:
    yield Variant("audit_log leaves payload behind", (Migration(rebuild(
        "audit_log", AUDIT_COLUMNS.replace(" payload TEXT,", ""),
        "INSERT INTO audit_log_new (id, event, user_id, created_at) SELECT id, event, user_id, created_at FROM audit_log",
        AUDIT_INDEX), add_column("audit_log", "payload", "sa.Text()")),))
    yield Variant("audit_log keeps only some rows", (Migration(rebuild(
        "audit_log", AUDIT_COLUMNS,
        "INSERT INTO audit_log_new SELECT id, event, user_id, payload, created_at FROM audit_log WHERE event <> 'error'",
        AUDIT_INDEX), "pass", REBUILT),))
    yield Variant("audit_log cuts payloads", (Migration(rebuild(
        "audit_log", AUDIT_COLUMNS,
        "INSERT INTO audit_log_new SELECT id, event, user_id, substr(payload, 1, 10), created_at FROM audit_log",
        AUDIT_INDEX), "pass", REBUILT),))
    yield Variant("settings transforms values", (Migration(rebuild(
        "settings", "key VARCHAR(50) PRIMARY KEY, value TEXT",
        "INSERT INTO settings_new (key, value) SELECT key, upper(value) FROM settings"), "pass", REBUILT),))
    yield Variant("settings by CREATE TABLE AS, without a column", (Migration(execute(
        "CREATE TABLE settings_new AS SELECT key FROM settings", "DROP TABLE settings",
        "ALTER TABLE settings_new RENAME TO settings"), add_column("settings", "value", "sa.Text()")),))


@template("rebuilds", SAFE)
def rebuild_that_keeps_everything(backend: str) -> Iterator[Variant]:
    yield Variant("audit_log, every column", (Migration(rebuild(
        "audit_log", AUDIT_COLUMNS,
        "INSERT INTO audit_log_new (id, event, user_id, payload, created_at) "
        "SELECT id, event, user_id, payload, created_at FROM audit_log", AUDIT_INDEX), "pass", REBUILT),))
    yield Variant("settings, every column", (Migration(rebuild(
        "settings", "key VARCHAR(50) PRIMARY KEY, value TEXT",
        "INSERT INTO settings_new (key, value) SELECT key, value FROM settings"), "pass", REBUILT),))
    yield Variant("audit_log plus a column with a default", (Migration(rebuild(
        "audit_log", AUDIT_COLUMNS + ", source VARCHAR(20) DEFAULT 'import'",
        "INSERT INTO audit_log_new (id, event, user_id, payload, created_at) "
        "SELECT id, event, user_id, payload, created_at FROM audit_log", AUDIT_INDEX),
        batch("audit_log", 'batch_op.drop_column("source")')),))
    yield Variant("audit_log renaming payload to data", (Migration(rebuild(
        "audit_log", AUDIT_COLUMNS.replace("payload TEXT", "data TEXT"),
        "INSERT INTO audit_log_new (id, event, user_id, data, created_at) "
        "SELECT id, event, user_id, payload, created_at FROM audit_log", AUDIT_INDEX),
        execute("ALTER TABLE audit_log RENAME COLUMN data TO payload")),), moves=(("audit_log.payload", "audit_log.data"),))
    if backend == SQLITE:  # foreign keys off (SQLite's default): a parent can be rebuilt by hand
        yield Variant("posts, every column (foreign keys off)", (Migration(rebuild(
            "posts", "id INTEGER PRIMARY KEY, title VARCHAR(200), body TEXT, author_id INTEGER NOT NULL "
                     "REFERENCES users (id) ON DELETE CASCADE, views INTEGER, status VARCHAR(20), published_at DATETIME",
            "INSERT INTO posts_new SELECT id, title, body, author_id, views, status, published_at FROM posts",
            "CREATE INDEX ix_posts_author_id ON posts (author_id)"), "pass", REBUILT),))


# --- code that runs as it goes: op.get_bind(), inspection, DO blocks, functions ----------------

CODE = "code run as it goes"


@template(CODE, DESTRUCTIVE, fresh=1)
def bind_code_that_destroys(backend: str) -> Iterator[Variant]:
    yield data_migration("get_bind DELETE", code('''
        bind = op.get_bind()
        bind.execute(sa.text("DELETE FROM audit_log WHERE event = 'logout'"))
    '''))
    yield data_migration("get_bind executemany UPDATE", code('''
        bind = op.get_bind()
        bind.execute(sa.text("UPDATE users SET name = :name WHERE id = :id"),
                     [{"id": i, "name": f"renamed {i}"} for i in range(1, 21)])
    '''))
    yield Variant("get_bind DROP TABLE", (Migration(
        'op.get_bind().execute(sa.text("DROP TABLE settings"))', TABLES["settings"]),))
    yield data_migration("exec_driver_sql DELETE", 'op.get_bind().exec_driver_sql("DELETE FROM comments WHERE post_id < 50")')
    yield Variant("inspector-conditional drop_column", (Migration(code('''
        bind = op.get_bind()
        if "bio" in {column["name"] for column in sa.inspect(bind).get_columns("users")}:
            op.drop_column("users", "bio")
    '''), add_column("users", "bio", "sa.Text()")),))
    yield data_migration("row loop DELETE", code('''
        bind = op.get_bind()
        for (post_id,) in bind.execute(sa.text("SELECT id FROM posts WHERE views < 100")).fetchall():
            bind.execute(sa.text("DELETE FROM post_tags WHERE post_id = :id"), {"id": post_id})
    '''))
    yield Variant("ORM Session delete", (Migration(code('''
        session = orm.Session(bind=op.get_bind())
        log = sa.table("audit_log", sa.column("event"))
        session.execute(sa.delete(log).where(log.c.event == "error"))
        session.commit()
    '''), "pass", NOOP + "\nfrom sqlalchemy import orm"),))
    yield data_migration("Python transform of every name", code('''
        bind = op.get_bind()
        rows = bind.execute(sa.text("SELECT id, name FROM users WHERE name IS NOT NULL")).fetchall()
        for user_id, name in rows:
            bind.execute(sa.text("UPDATE users SET name = :name WHERE id = :id"), {"id": user_id, "name": name.upper()})
    '''))
    yield Variant("get_bind ALTER TABLE DROP COLUMN", (Migration(
        'op.get_bind().execute(sa.text("ALTER TABLE posts DROP COLUMN views"))', add_column("posts", "views", "sa.Integer()")),))


@template(CODE, DESTRUCTIVE, backends=(POSTGRESQL,), fresh=1)
def plpgsql_that_destroys(backend: str) -> Iterator[Variant]:
    yield data_migration("DO block DELETE", execute("DO $$ BEGIN DELETE FROM audit_log WHERE event = 'error'; END $$"))
    yield data_migration("SQL function DELETE", execute(
        "CREATE FUNCTION purge_logins() RETURNS void LANGUAGE sql AS $$ DELETE FROM audit_log WHERE event = 'login' $$",
        "SELECT purge_logins()", "DROP FUNCTION purge_logins()"))
    yield data_migration("plpgsql function UPDATE", execute(
        "CREATE FUNCTION reset_scores() RETURNS void LANGUAGE plpgsql AS $$ BEGIN UPDATE users SET score = 0; END $$",
        "SELECT reset_scores()", "DROP FUNCTION reset_scores()"))
    yield Variant("DO block EXECUTE DROP TABLE", (Migration(
        execute("DO $$ BEGIN EXECUTE 'DROP TABLE settings'; END $$"), TABLES["settings"]),))


@template(CODE, SAFE)
def bind_code_that_keeps(backend: str) -> Iterator[Variant]:
    yield Variant("reads, then create_index", (Migration(code('''
        count = op.get_bind().execute(sa.text("SELECT count(*) FROM posts")).scalar()
        if count > 100:
            op.create_index("ix_posts_views", "posts", ["views"])
    '''), 'op.drop_index("ix_posts_views", table_name="posts")'),))
    yield Variant("inspector-conditional add_column", (Migration(code('''
        if "nickname" not in {column["name"] for column in sa.inspect(op.get_bind()).get_columns("users")}:
            op.add_column("users", sa.Column("nickname", sa.String(50)))
    '''), drop_column("users", "nickname")),))
    yield data_migration("row loop backfill of NULLs", code('''
        bind = op.get_bind()
        for (post_id,) in bind.execute(sa.text("SELECT id FROM posts WHERE title IS NULL")).fetchall():
            bind.execute(sa.text("UPDATE posts SET title = :title WHERE id = :id"), {"id": post_id, "title": f"post {post_id}"})
    '''))
    yield Variant("executemany INSERT of seed rows", (Migration(code('''
        op.get_bind().execute(sa.text("INSERT INTO tags (id, name) VALUES (:id, :name)"),
                              [{"id": 200, "name": "seeded-1"}, {"id": 201, "name": "seeded-2"}])
    '''), execute("DELETE FROM tags WHERE id IN (200, 201)")),))
    yield Variant("CREATE INDEX", (Migration(
        'op.get_bind().execute(sa.text("CREATE INDEX ix_comments_author_id ON comments (author_id)"))',
        'op.drop_index("ix_comments_author_id", table_name="comments")'),))


@template(CODE, SAFE, backends=(POSTGRESQL,))
def plpgsql_that_keeps(backend: str) -> Iterator[Variant]:
    yield Variant("DO block ADD COLUMN IF missing", (Migration(execute(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'users' "
        "AND column_name = 'nickname') THEN ALTER TABLE users ADD COLUMN nickname VARCHAR(50); END IF; END $$"),
        drop_column("users", "nickname")),))
    yield Variant("SQL function INSERT", (Migration(execute(
        "CREATE FUNCTION seed_tags() RETURNS void LANGUAGE sql AS $$ INSERT INTO tags (id, name) VALUES (300, 'seeded') $$",
        "SELECT seed_tags()", "DROP FUNCTION seed_tags()"), execute("DELETE FROM tags WHERE id = 300")),))


# -- backends: a populated template database per tool, copied for every case ---------------------

class Backend(ABC):
    name = ""
    title = ""

    @abstractmethod
    def empty(self) -> str:
        """URL of a new empty database."""

    @abstractmethod
    def copy(self, template: str) -> str:
        """URL of a new database holding exactly what ``template`` holds."""

    @abstractmethod
    def drop(self, url: str) -> None: ...

    def fingerprint(self, url: str) -> str:
        """What a refusal must leave alone (tests/projects.fingerprint: SQLite file bytes;
        PostgreSQL schema, sequences and every row)."""
        return fingerprint(Project(REPO, "unused", url))


class Postgres(Backend):
    name, title = POSTGRESQL, "PostgreSQL"

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.copying = threading.Lock()

    def empty(self) -> str:
        name = f"safety_{uuid.uuid4().hex[:12]}"
        self.server.create_database(name)
        return self.server.url(name)

    def copy(self, template: str) -> str:
        name = f"safety_{uuid.uuid4().hex[:12]}"
        with self.copying, self.server.connect() as connection:
            connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{sa.make_url(template).database}"')
        return self.server.url(name)

    def drop(self, url: str) -> None:
        self.server.drop_database(sa.make_url(url).database or "")


class SQLiteFiles(Backend):
    name, title = SQLITE, "SQLite"

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "sqlite"
        self.dir.mkdir(parents=True, exist_ok=True)

    def empty(self) -> str:
        return f"sqlite:///{self.dir / f'safety_{uuid.uuid4().hex[:12]}.db'}"

    def copy(self, template: str) -> str:
        url = self.empty()
        shutil.copyfile(sa.make_url(template).database or "", sa.make_url(url).database or "")
        return url

    def drop(self, url: str) -> None:
        path = sa.make_url(url).database or ""
        for suffix in ("", "-journal", "-wal", "-shm", ".rollback-lock"):
            Path(path + suffix).unlink(missing_ok=True)


# -- tools: the same migration files in a flask-rollback app and a Flask-Migrate chain -----------

class Tool(ABC):
    name = ""
    guards = False  # refuses destructive plans (exit 6)

    @abstractmethod
    def create(self, root: Path, foreign_keys: bool, workdir: Path) -> Project: ...

    @abstractmethod
    def folder(self, project: Project) -> Path: ...

    @abstractmethod
    def revision(self, number: int) -> str: ...

    @abstractmethod
    def upgrade_to(self, number: int) -> tuple[str, ...]: ...

    @abstractmethod
    def downgrade_to_initial(self) -> tuple[str, ...]: ...

    def branch_labels(self, number: int) -> tuple[str, ...] | None:
        return None

    def write(self, project: Project, number: int, slug: str, migration: Migration) -> None:
        def body(text: str) -> str:
            return textwrap.indent(text.strip() or "pass", "    ")

        parent = self.revision(number - 1) if number > 1 else None
        (self.folder(project) / f"{number:04d}_{slug}.py").write_text(
            f'"""{slug}"""\n\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
            f"revision = {self.revision(number)!r}\ndown_revision = {parent!r}\n"
            f"branch_labels = {self.branch_labels(number)!r}\ndepends_on = None\n{migration.header}\n\n\n"
            f"def upgrade():\n{body(migration.upgrade)}\n\n\ndef downgrade():\n{body(migration.downgrade)}\n"
        )

    def write_case(self, project: Project, case: Case) -> None:
        """Replace the previous case's files (0002...) by this case's; 0001 stays."""
        folder = self.folder(project)
        for old in folder.glob("*.py"):
            if not old.name.startswith("0001_"):
                old.unlink()
        shutil.rmtree(folder / "__pycache__", ignore_errors=True)
        for number, migration in enumerate(case.migrations, start=2):
            self.write(project, number, "case", migration)


class Stopped(Exception):
    """The benchmark is stopping (Ctrl-C, SIGTERM, a failed worker): start no more processes."""


STOP = threading.Event()


def flask_db(project: Project, args: tuple[str, ...], workdir: Path) -> Run:
    if STOP.is_set():
        raise Stopped
    return run_db(project, args, workdir, RUN_TIMEOUT)


class FlaskRollback(Tool):
    name, guards = "flask-rollback", True

    def create(self, root: Path, foreign_keys: bool, workdir: Path) -> Project:
        project = Project(root, f"shop_{uuid.uuid4().hex[:10]}", "sqlite://")
        project.add_blueprint(APP, SHOP_MODELS)
        if foreign_keys:
            project.write("fk.py", FOREIGN_KEYS_ON)
        project.set_factory([APP], extra_modules=["fk"] if foreign_keys else None)
        result = flask_db(project, ("init",), workdir)
        if result.code != 0:
            raise SystemExit(f"flask-rollback `flask db init` failed:\n{result.out}")
        self.folder(project).mkdir(parents=True, exist_ok=True)
        return project

    def folder(self, project: Project) -> Path:
        return project.migrations / APP

    def revision(self, number: int) -> str:
        return f"{APP}{number:04d}"

    def branch_labels(self, number: int) -> tuple[str, ...] | None:
        return (APP,) if number == 1 else None

    def upgrade_to(self, number: int) -> tuple[str, ...]:
        return ("upgrade", APP, f"{number:04d}")

    def downgrade_to_initial(self) -> tuple[str, ...]:
        return ("downgrade", APP, "0001")


class FlaskMigrate(Tool):
    name = "Flask-Migrate"

    def create(self, root: Path, foreign_keys: bool, workdir: Path) -> Project:
        project = Project(root, f"fmshop_{uuid.uuid4().hex[:10]}", "sqlite://")
        factory = FLASK_MIGRATE_FACTORY
        if foreign_keys:
            project.write("fk.py", FOREIGN_KEYS_ON)
            factory += "\nfrom . import fk  # noqa: E402,F401\n"
        project.write("__init__.py", factory)
        result = flask_db(project, ("init",), workdir)  # Flask-Migrate's own env.py
        if result.code != 0 or not (project.migrations / "env.py").exists():
            raise SystemExit(f"Flask-Migrate `flask db init` failed:\n{result.out}")
        return project

    def folder(self, project: Project) -> Path:
        return project.migrations / "versions"

    def revision(self, number: int) -> str:
        return f"fm{number:04d}"

    def upgrade_to(self, number: int) -> tuple[str, ...]:
        return ("upgrade", self.revision(number))

    def downgrade_to_initial(self) -> tuple[str, ...]:
        return ("downgrade", self.revision(1))


@dataclass
class Bench:
    """One tool on one backend: the populated database every case starts from (with its data
    and fingerprint, read once), and per worker its projects (SQLite: with and without the
    foreign-key listener), so workers never share migration folders."""

    tool: Tool
    backend: Backend
    template: str
    data: dict[str, TableData]
    print: str
    projects: list[dict[bool, Project]]

    @classmethod
    def build(cls, tool: Tool, backend: Backend, workdir: Path, rows: dict[str, list[dict[str, Any]]],
              jobs: int) -> Bench:
        first: dict[bool, Project] = {}
        for foreign_keys in (False, True) if backend.name == SQLITE else (False,):
            root = workdir / f"{tool.name}-{backend.name}{'-fk' if foreign_keys else ''}-0"
            root.mkdir()
            first[foreign_keys] = project = tool.create(root, foreign_keys, workdir)
            tool.write(project, 1, "initial", Migration(INITIAL_UPGRADE, INITIAL_DOWNGRADE))
        template = backend.empty()
        project = first[False]
        project.url = template
        result = flask_db(project, ("upgrade",), workdir)
        if result.code != 0:
            raise SystemExit(f"{tool.name}: migration 0001 failed on {backend.title}:\n{result.out}")
        load_rows(template, rows)
        print_ = backend.fingerprint(template)
        copy = backend.copy(template)  # a case's copy must be the template, fingerprint and all
        try:
            if backend.fingerprint(copy) != print_:
                raise SystemExit(f"{backend.title}: a copy of the template has another fingerprint")
        finally:
            backend.drop(copy)
        projects = [first]
        for worker in range(1, jobs):  # the same package in another folder: a separate process imports it
            copies: dict[bool, Project] = {}
            for foreign_keys, project in first.items():
                root = project.root.with_name(project.root.name[:-1] + str(worker))
                shutil.copytree(project.root, root)
                copies[foreign_keys] = Project(root, project.package, project.url)
            projects.append(copies)
        return cls(tool, backend, template, snapshot(template), print_, projects)


# -- the data before and after a run -----------------------------------------------------------

IGNORED_PREFIXES = ("alembic_version", "rollback_", "sqlite_")


@dataclass
class TableData:
    key: tuple[str, ...]  # primary key columns (all columns when there is none)
    rows: dict[tuple[Any, ...], dict[str, Any]]

    def by(self, key: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, Any]]:
        """The rows keyed by ``key`` (another table's key, for a table that moved)."""
        if key == self.key:
            return self.rows
        return {tuple(row[c] for c in key): row for row in self.rows.values() if all(c in row for c in key)}


def snapshot(url: str) -> dict[str, TableData]:
    """Every row of every application table, values as the driver returns them."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            tables: dict[str, TableData] = {}
            for name in inspector.get_table_names():
                if name.startswith(IGNORED_PREFIXES):
                    continue
                result = connection.exec_driver_sql(f'SELECT * FROM "{name}"')
                columns = list(result.keys())
                key = tuple(inspector.get_pk_constraint(name)["constrained_columns"]) or tuple(columns)
                rows = [dict(zip(columns, row, strict=True)) for row in result]
                tables[name] = TableData(key, {tuple(row[c] for c in key): row for row in rows})
            return tables
    finally:
        engine.dispose()


def same(old: Any, new: Any) -> bool:
    """The value survived: equal, or equal once printed (a type change that kept it), or a
    midnight timestamp that became its date."""
    if old == new:
        return True
    if isinstance(old, datetime) and type(new) is date:
        return old == datetime.combine(new, datetime.min.time())
    return isinstance(old, str) != isinstance(new, str) and str(old) == str(new)


MISSING = object()


def lost_data(before: dict[str, TableData], after: dict[str, TableData], moves: dict[str, str]) -> list[str]:
    """Rows that existed before and are gone, and non-NULL values gone or changed, following
    the moves the case declares (renames, copies)."""
    found: list[str] = []
    for table, data in before.items():
        if not data.rows:
            continue
        target = moves.get(table, table)
        if target not in after:
            found.append(f"{table}: all {len(data.rows)} rows (table gone)")
            continue
        kept = after[target].by(data.key)
        missing = sum(1 for key in data.rows if key not in kept)
        if missing:
            found.append(f"{table}: {missing} of {len(data.rows)} rows")
        changed: Counter[str] = Counter()
        for key, row in data.rows.items():
            if key not in kept:
                continue
            for column, value in row.items():
                if value is None:
                    continue
                dest_table, dest_column = split(moves.get(f"{table}.{column}", f"{target}.{column}"))
                dest = kept if dest_table == target else (after[dest_table].by(data.key) if dest_table in after else {})
                if not same(value, dest.get(key, {}).get(dest_column, MISSING)):
                    changed[f"{table}.{column}"] += 1
        found += [f"{column}: {count} values" for column, count in changed.items()]
    return found


def write_rows(url: str, statements: tuple[str, ...]) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(sa.text(statement))  # text() escapes "%" for psycopg
    finally:
        engine.dispose()


# -- one case, one tool ------------------------------------------------------------------------

@dataclass
class Outcome:
    case: Case
    tool: str
    backend: str
    code: int | None  # None: timed out
    seconds: float
    lost: list[str]
    unchanged: bool | None  # a refusal: the fingerprint after equals the one before
    message: str  # the first ``Error:`` line, or the last line of output
    setup_failed: str = ""

    @property
    def refused(self) -> bool:
        return self.code == EXIT_REFUSED

    @property
    def failed(self) -> bool:
        return self.code not in (0, EXIT_REFUSED)

    def verdict(self) -> str:
        if self.setup_failed:
            return f"setup failed: {self.setup_failed}"
        state = "ran" if self.code == 0 else "refused" if self.refused else f"failed (exit {self.code})"
        return state + (f", LOST {'; '.join(self.lost)}" if self.lost else "")


def summary_line(run: Run) -> str:
    lines = [line.strip() for line in run.out.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:") or "Error:" in line[:60]]
    if run.timed_out:
        return "timed out"
    return (errors[-1] if errors else lines[-1] if lines else "(no output)")[:300]


def run_case(bench: Bench, worker: int, case: Case, workdir: Path) -> Outcome:
    tool, backend = bench.tool, bench.backend
    project = bench.projects[worker][case.foreign_keys and backend.name == SQLITE]
    tool.write_case(project, case)
    url = backend.empty() if case.fresh else backend.copy(bench.template)
    project.url = url
    try:
        before, print_before = bench.data, bench.print
        if case.variant.applied:
            setup = flask_db(project, tool.upgrade_to(case.variant.applied + 1), workdir)
            if setup.code != 0:
                return Outcome(case, tool.name, backend.name, setup.code, 0.0, [], None, "", summary_line(setup))
        if case.variant.rows:
            write_rows(url, case.variant.rows)
        if case.fresh or case.variant.applied or case.variant.rows:  # not the template any more
            before = snapshot(url)
            print_before = backend.fingerprint(url) if tool.guards else ""
        run = flask_db(project, tool.downgrade_to_initial() if case.variant.downgrade else ("upgrade",), workdir)
        after = snapshot(url)
        unchanged = backend.fingerprint(url) == print_before if run.code == EXIT_REFUSED else None
        return Outcome(case, tool.name, backend.name, run.code, run.seconds,
                       lost_data(before, after, dict(case.variant.moves)), unchanged, summary_line(run))
    finally:
        backend.drop(url)


# -- the report ---------------------------------------------------------------------------------

FR, FM = FlaskRollback.name, FlaskMigrate.name


@dataclass
class Results:
    """Every outcome, by (backend, tool, case name)."""

    outcomes: dict[tuple[str, str, str], Outcome] = field(default_factory=dict)

    def add(self, outcome: Outcome) -> None:
        self.outcomes[(outcome.backend, outcome.tool, outcome.case.name)] = outcome

    def of(self, backend: str, tool: str, label: str | None = None, cls: str | None = None) -> list[Outcome]:
        return [o for (b, t, _), o in self.outcomes.items() if b == backend and t == tool
                and (label is None or o.case.label == label) and (cls is None or o.case.cls == cls)]

    def get(self, backend: str, tool: str, case: Case) -> Outcome | None:
        return self.outcomes.get((backend, tool, case.name))


def count(outcomes: list[Outcome], test: Callable[[Outcome], bool]) -> int:
    return sum(1 for o in outcomes if test(o))


def percent(part: int, whole: int) -> str:
    return f"{part} ({100 * part / whole:.1f} %)" if whole else "0"


def seconds(outcomes: list[Outcome]) -> str:
    values = [o.seconds for o in outcomes if not o.setup_failed and o.code is not None]
    return f"{median(values):.2f}" if values else "n/a"


def is_safe(o: Outcome) -> bool:
    return o.case.label == SAFE


def shortfalls(o: Outcome) -> list[str]:
    """Why a flask-rollback outcome breaks the promise (empty: it keeps it)."""
    reasons = []
    if o.setup_failed:
        reasons.append("the setup upgrade failed")
    if o.lost and o.case.label != AMBIGUOUS:
        reasons.append("lost data without a flag")
    if o.refused and is_safe(o):
        reasons.append("refused a safe migration (false alarm)")
    if o.refused and o.unchanged is False:
        reasons.append("the refusal changed the database")
    if o.failed and is_safe(o):
        reasons.append("failed on a safe migration")
    return reasons


def migration_listing(case: Case) -> list[str]:
    lines = []
    for number, migration in enumerate(case.migrations, start=2):
        if case.fresh and number == 2:
            lines.append("    # 0002: the fresh database's seed rows (FRESH_SEED)")
            continue
        if migration.header.strip():
            lines += [f"    # {number:04d} header: {line}" for line in migration.header.strip().splitlines()]
        lines.append(f"    # {number:04d} upgrade():")
        lines += ["    " + line for line in migration.upgrade.splitlines()]
        lines.append(f"    # {number:04d} downgrade():")
        lines += ["    " + line for line in migration.downgrade.splitlines()]
    return lines


def describe(case: Case, backend: str) -> str:
    steps = []
    if case.variant.applied:
        steps.append(f"0002..{case.variant.applied + 1:04d} applied first")
    if case.variant.rows:
        steps.append("then written: " + "; ".join(f"`{r}`" for r in case.variant.rows))
    steps.append("measured: `flask db downgrade` to 0001" if case.variant.downgrade else "measured: `flask db upgrade`")
    if case.foreign_keys and backend == SQLITE:
        steps.append("foreign keys on (the PRAGMA foreign_keys=ON connect listener)")
    return "; ".join(steps)


def write_report(report: Report, results: Results, backends: list[Backend], tools: list[str]) -> None:
    columns = [(b, t) for t in tools for b in backends]
    header = "| | " + " | ".join(f"{t} {b.title}" for b, t in columns) + " |"
    rule = "|---" * (len(columns) + 1) + "|"

    def row(title: str, cell: Callable[[Backend, str], str]) -> None:
        report(f"| {title} | " + " | ".join(cell(b, t) for b, t in columns) + " |")

    report("### Summary")
    report("")
    report(header)
    report(rule)
    row("destructive cases", lambda b, t: str(len(results.of(b.name, t, DESTRUCTIVE))))
    row("**lost data without a flag**", lambda b, t: str(count(results.of(b.name, t, DESTRUCTIVE), lambda o: bool(o.lost))))
    row("refused (exit 6)", lambda b, t: str(count(results.of(b.name, t, DESTRUCTIVE), lambda o: o.refused)))
    row("every refusal (false alarms, ambiguous included): database byte-for-byte unchanged", lambda b, t: (
        f"{count(results.of(b.name, t), lambda o: o.refused and bool(o.unchanged))} / "
        f"{count(results.of(b.name, t), lambda o: o.refused)}" if t == FR else "n/a"))
    row("failed with another error, nothing lost", lambda b, t: str(count(
        results.of(b.name, t, DESTRUCTIVE), lambda o: o.failed and not o.lost)))
    row("ran and lost nothing", lambda b, t: str(count(
        results.of(b.name, t, DESTRUCTIVE), lambda o: o.code == 0 and not o.lost)))
    row("safe cases (fresh databases included)", lambda b, t: str(len(results.of(b.name, t, SAFE))))
    row("**refused: false alarms**", lambda b, t: percent(
        count(results.of(b.name, t, SAFE), lambda o: o.refused), len(results.of(b.name, t, SAFE))))
    row("failed with an error", lambda b, t: str(count(results.of(b.name, t, SAFE), lambda o: o.failed)))
    row("lost data", lambda b, t: str(count(results.of(b.name, t, SAFE), lambda o: bool(o.lost))))
    row("fresh databases refused", lambda b, t: (
        f"{count(results.of(b.name, t, SAFE, 'fresh database'), lambda o: o.refused)} / "
        f"{len(results.of(b.name, t, SAFE, 'fresh database'))}"))
    row("ambiguous cases: refused / ran / lost", lambda b, t: "/".join(str(count(results.of(b.name, t, AMBIGUOUS), test)) for test in (
        lambda o: o.refused, lambda o: o.code == 0, lambda o: bool(o.lost))) if results.of(b.name, t, AMBIGUOUS) else "none")
    row("time per case, median (s)", lambda b, t: seconds(results.of(b.name, t)))
    row("time per safe case both tools ran, median (s)", lambda b, t: seconds(both_ran(results, b.name, t)))
    report("")
    if FR in tools and FM in tools:
        report("Time per case, flask-rollback / Flask-Migrate (subprocess wall time, Python start-up included):")
        report("")
        for backend in backends:
            fr, fm = results.of(backend.name, FR), results.of(backend.name, FM)
            fr_ran, fm_ran = both_ran(results, backend.name, FR), both_ran(results, backend.name, FM)
            report(f"- {backend.title}: all cases {ratio(float(seconds(fr)), float(seconds(fm)))}; "
                   f"safe cases both ran ({len(fr_ran)}) {ratio(float(seconds(fr_ran)), float(seconds(fm_ran)))}")
        report("")
    for backend in backends:
        class_table(report, results, backend, tools)
    if FR in tools:
        report_shortfalls(report, results, backends)
    if FM in tools:
        report_oracle(report, results, backends)
    report_ambiguous(report, results, backends, tools)
    report_failures(report, results, backends, tools)


def both_ran(results: Results, backend: str, tool: str) -> list[Outcome]:
    """Safe cases both tools ran to the end (exit 0): the same work, so comparable times."""
    mine = results.of(backend, tool, SAFE)
    other = FM if tool == FR else FR
    return [o for o in mine if o.code == 0 and (twin := results.get(backend, other, o.case)) is not None and twin.code == 0]


CLASSES = ["drops", "renames", "cascades", "data migrations", "narrowing", "rebuilds", CODE, "additions", "fresh database"]


def class_table(report: Report, results: Results, backend: Backend, tools: list[str]) -> None:
    report(f"### Per class, {backend.title}")
    report("")
    fr_cols = "FR lost | FR refused | FR refusals (all) unchanged | " if FR in tools else ""
    fm_cols = "FM lost | FM failed | " if FM in tools else ""
    safe_cols = ("FR false alarms | " if FR in tools else "") + "safe cases losing data (" + "/".join(
        "FR" if t == FR else "FM" for t in tools) + ") | "
    time_cols = " | ".join(f"{'FR' if t == FR else 'FM'} median s" for t in tools)
    report(f"| class | destructive | {fr_cols}{fm_cols}safe | {safe_cols}{time_cols} |")
    report("|---" * (4 + bool(fr_cols) * 3 + bool(fm_cols) * 2 + (FR in tools) + len(tools)) + "|")
    for cls in CLASSES:
        if not any(results.of(backend.name, t, cls=cls) for t in tools):
            continue
        cells = [cls]
        reference = results.of(backend.name, tools[0], DESTRUCTIVE, cls)
        cells.append(str(len(reference)))
        if FR in tools:
            fr = results.of(backend.name, FR, DESTRUCTIVE, cls)
            refused = [o for o in results.of(backend.name, FR, cls=cls) if o.refused]
            cells += [str(count(fr, lambda o: bool(o.lost))), str(count(fr, lambda o: o.refused)),
                      f"{count(refused, lambda o: bool(o.unchanged))}/{len(refused)}"]
        if FM in tools:
            fm = results.of(backend.name, FM, DESTRUCTIVE, cls)
            cells += [str(count(fm, lambda o: bool(o.lost))), str(count(fm, lambda o: o.failed))]
        cells.append(str(len(results.of(backend.name, tools[0], SAFE, cls))))
        if FR in tools:
            cells.append(str(count(results.of(backend.name, FR, SAFE, cls), lambda o: o.refused)))
        cells.append("/".join(str(count(results.of(backend.name, t, SAFE, cls), lambda o: bool(o.lost))) for t in tools))
        cells += [seconds(results.of(backend.name, t, cls=cls)) for t in tools]
        report("| " + " | ".join(cells) + " |")
    report("")


def report_shortfalls(report: Report, results: Results, backends: list[Backend]) -> None:
    report("### Where flask-rollback broke the promise")
    report("")
    found = [(o, reasons) for backend in backends for o in results.of(backend.name, FR) if (reasons := shortfalls(o))]
    if not found:
        report("None: no data lost without a flag, no safe case refused, every refusal left the database unchanged.")
        report("")
        return
    for o, reasons in found:
        twin = results.get(o.backend, FM, o.case)
        report(f"- **{o.backend}: {o.case.name}** ({o.case.cls}, {o.case.label}): {', '.join(reasons)}.")
        report(f"  flask-rollback: {o.verdict()}: `{o.message or o.setup_failed}`")
        if twin is not None:
            report(f"  Flask-Migrate: {twin.verdict()}")
        report(f"  {describe(o.case, o.backend)}")
        report("")
        report("  ```python")
        for line in migration_listing(o.case):
            report(line)
        report("  ```")
    report("")


def report_oracle(report: Report, results: Results, backends: list[Backend]) -> None:
    """Flask-Migrate runs every migration as written: it checks the corpus's labels."""
    report("### Flask-Migrate as a check of the labels")
    report("")
    doubtful = [o for b in backends for o in results.of(b.name, FM, DESTRUCTIVE) if o.code == 0 and not o.lost]
    report(f"- Destructive cases Flask-Migrate ran without losing anything (a wrong label): {len(doubtful)}"
           + "".join(f"\n  - {o.backend}: {o.case.name}" for o in doubtful))
    harmed = [o for b in backends for o in results.of(b.name, FM, SAFE) if o.lost]
    report(f"- Safe cases in which Flask-Migrate lost data (the tool, not the migration): {len(harmed)}"
           + "".join(f"\n  - {o.backend}: {o.case.name}: {'; '.join(o.lost)}" for o in harmed))
    failed = [o for b in backends for o in results.of(b.name, FM, DESTRUCTIVE) if o.failed]
    report(f"- Destructive cases that failed under Flask-Migrate (the database refused the values): {len(failed)}"
           + "".join(f"\n  - {o.backend}: {o.case.name}: `{o.message}`" for o in failed))
    report("")


def report_ambiguous(report: Report, results: Results, backends: list[Backend], tools: list[str]) -> None:
    cases = [o.case for b in backends for o in results.of(b.name, tools[0], AMBIGUOUS)]
    if not cases:
        return
    report("### Ambiguous cases (in neither rate)")
    report("")
    report(f"Why ambiguous: {cases[0].why}.")
    report("")
    for case in cases:
        backend = next(b.name for b in backends if results.get(b.name, tools[0], case))
        outcomes = [results.get(backend, t, case) for t in tools]
        report(f"- {backend}: {case.name}: " + "; ".join(f"{o.tool} {o.verdict()}" for o in outcomes if o))
    report("")


def report_failures(report: Report, results: Results, backends: list[Backend], tools: list[str]) -> None:
    """Non-zero exits that are not refusals, grouped by message (the corpus's expected failures
    and anything unexpected)."""
    report("### Other non-zero exits")
    report("")
    any_failure = False
    for backend in backends:
        for tool in tools:
            failed = [o for o in results.of(backend.name, tool) if o.failed or o.setup_failed]
            if not failed:
                continue
            any_failure = True
            report(f"- {tool}, {backend.title}: {len(failed)}")
            for o in failed:
                report(f"  - {o.case.name} ({o.case.label}): {o.verdict()}: `{o.message or o.setup_failed}`")
    if not any_failure:
        report("None.")
    report("")


# -- main ---------------------------------------------------------------------------------------

def run_all(work: list[tuple[Backend, Case]], tools: list[Tool], benches: dict[tuple[str, str], Bench],
            results: Results, jobs: int, workdir: Path) -> None:
    """``jobs`` workers take cases from one queue; each runs the case with every tool, the
    order alternating so that neither tool always runs first (or always shares the machine
    with the same neighbour). A worker's error stops the benchmark."""
    queue = list(enumerate(work, start=1))
    taking = threading.Lock()
    errors: list[BaseException] = []

    def worker(number: int) -> None:
        try:
            while not STOP.is_set():
                with taking:
                    if not queue:
                        return
                    position, (backend, case) = queue.pop(0)
                order = tools if position % 2 else tools[::-1]
                outcomes = [run_case(benches[(backend.name, tool.name)], number, case, workdir) for tool in order]
                for outcome in outcomes:
                    results.add(outcome)
                log(f"{position}/{len(work)} {backend.name} {case.name} [{case.label}]: "
                    + "; ".join(f"{o.tool} {o.verdict()} {o.seconds:.1f}s" for o in outcomes))
        except Stopped:
            return
        except BaseException as exc:  # a bug of the benchmark: stop everything, report it
            errors.append(exc)
            STOP.set()

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)  # short waits, so that Ctrl-C reaches the main thread
    if errors:
        raise errors[0]



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument("--tools", default=f"{FR},{FM}")
    parser.add_argument("--quick", action="store_true", help="the first variant of each template only")
    parser.add_argument("--cases", default="", help="only cases whose name contains this text")
    parser.add_argument("--list", action="store_true", help="print the corpus and exit")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at the same time (each runs both tools)")
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    backend_names = [b for b in BOTH if b in args.backends.split(",")]
    tool_names = [t for t in (FR, FM) if t in args.tools.split(",")]
    if not backend_names or not tool_names:
        parser.error("no known backend or tool selected")
    corpora = {b: [c for c in corpus(b, args.quick) if args.cases in c.name] for b in backend_names}
    if args.list:
        for name, cases in corpora.items():
            for case in cases:
                print(f"{name}\t{case.cls}\t{case.label}\t{case.name}")
        return 0

    bindir = find_postgres_bin()
    if bindir is None and POSTGRESQL in backend_names:
        print("PostgreSQL (initdb/pg_ctl) not found; use --backends sqlite", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="flask-rollback-safety-"))
    server = PostgresServer(bindir) if bindir and POSTGRESQL in backend_names else None

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    report = Report()
    started = time.monotonic()
    load = LoadSampler()
    results = Results()
    try:
        backends: list[Backend] = []
        if server is not None:
            log("starting a throwaway PostgreSQL server")
            server.start()
            backends.append(Postgres(server))
        if SQLITE in backend_names:
            backends.append(SQLiteFiles(workdir))
        tools: list[Tool] = [t for t in (FlaskRollback(), FlaskMigrate()) if t.name in tool_names]
        rows = populated_rows()
        log(f"building the populated databases and projects ({args.jobs} worker(s))")
        benches = {(b.name, t.name): Bench.build(t, b, workdir, rows, args.jobs) for b in backends for t in tools}
        work = [(backend, case) for backend in backends for case in corpora[backend.name]]
        run_all(work, tools, benches, results, args.jobs, workdir)

        now = datetime.now(timezone.utc)
        sizes = ", ".join(f"{len(rows[t])} {t}" for t in rows)
        report(f"## Safety benchmark (issue 8), {now:%Y-%m-%d %H:%M} UTC")
        report("")
        report(f"- **Command:** `python3 bench/safety.py {' '.join(argv if argv is not None else sys.argv[1:])}`")
        report(f"- **Machine:** {machine_info(server)}")
        report(f"- **Database:** {sizes} rows (old_reports empty, users.legacy_code all NULL)")
        for backend in backends:
            cases = corpora[backend.name]
            labels = Counter(c.label for c in cases)
            report(f"- **Corpus, {backend.title}:** {len(cases)} cases from {len({c.template for c in cases})} templates: "
                   f"{labels[DESTRUCTIVE]} destructive, {labels[SAFE]} safe "
                   f"({sum(c.fresh for c in cases)} of them fresh databases), {labels[AMBIGUOUS]} ambiguous; "
                   f"{sum(c.variant.downgrade for c in cases)} measure a downgrade after data was written")
        report(f"- **Run time:** {time.monotonic() - started:.0f} s with {args.jobs} case(s) at a time; "
               f"1-minute load average: {load.summary()}")
        report("")
        write_report(report, results, backends, tool_names)
        return 0
    except KeyboardInterrupt as exc:
        log(f"interrupted ({exc}); cleaning up")
        return 130
    finally:
        STOP.set()
        load.stop.set()
        reap_all()
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
