"""Predicting failures on live data (issue 8, item 6): ``predeploy``, ``deploy`` and
``upgrade --plan`` count, with read-only queries on the live database, the rows that would make
a pending step fail, which the rehearsal (a copy of the schema without rows) cannot see.

Real projects on real SQLite, PostgreSQL and MariaDB databases. Each rule is checked against reality:
the step the gate blocks really fails when run without the gate, and passes once the table is
empty; what is not predicted really runs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.operations import Operations
from alembic.operations import ops as alembic_ops
from alembic.runtime.migration import MigrationContext
from click.testing import Result
from sqlalchemy.dialects import mysql

from flask_rollback import commands
from flask_rollback.analysis import Operation
from flask_rollback.predict import _LiveData, _refused_by_postgresql
from flask_rollback.questioner import Questioner
from flask_rollback.rehearsal import snapshot
from tests.projects import Project, new_project, revision_of, write_migration

#: posts with a nullable title and an editor id that is not (yet) a foreign key; post_tags
#: without a primary key (yet).
BLOG_BASE = '''
from sqlalchemy.orm import Mapped, mapped_column
from .. import db


class Post(db.Model):
    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str | None] = mapped_column(db.String(200))
    author_id: Mapped[int] = mapped_column(db.ForeignKey("users.id"))
    editor_id: Mapped[int | None] = mapped_column()


post_tags = db.Table(
    "post_tags",
    db.Column("post_id", db.ForeignKey("posts.id"), nullable=False),
    db.Column("tag", db.String(20), nullable=False),
)
'''

USERS = "INSERT INTO users (id, email) VALUES (1, 'ann@example.com'), (2, 'bob@example.com')"
#: 7 posts: title 'hello' three times, one of 19 characters, one of 11 whose last 6 are spaces,
#: two NULL titles; editor ids 7 and 9 match no user.
POSTS = (
    "INSERT INTO posts (id, title, author_id, editor_id) VALUES "
    "(1, 'hello', 1, 1), (2, 'hello', 2, 7), (3, 'hello', 1, NULL), "
    "(4, 'a much longer title', 2, 9), (5, NULL, 1, 2), (6, NULL, 2, NULL), "
    "(7, 'hello      ', 1, NULL)"
)
#: (1, 'a') twice.
POST_TAGS = "INSERT INTO post_tags (post_id, tag) VALUES (1, 'a'), (1, 'a'), (1, 'b'), (2, 'a')"


# -- running and observing ----------------------------------------------------------------------


def db(project: Project, *args: str, code: int = 0) -> Result:
    """``flask db ARGS`` in-process; it must exit with ``code`` and never escape an exception."""
    result = project.db(*args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"flask db {' '.join(args)} raised:\n{result.output}") from result.exception
    assert result.exit_code == code, f"flask db {' '.join(args)} -> {result.exit_code}:\n{result.output}"
    assert "Traceback" not in result.output
    return result


def gate(project: Project, code: int) -> dict[str, Any]:
    """``predeploy --json`` with its exit code."""
    return json.loads(db(project, "predeploy", "--json", code=code).output)


def check(report: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in report["checks"] if c["name"] == name]
    return found


def errors(report: dict[str, Any]) -> list[str]:
    return [c["name"] for c in report["checks"] if c["level"] == "error"]


def predicted(output: str) -> list[str]:
    """The lines of the "Would fail on live data:" section of ``upgrade --plan``."""
    lines = output.splitlines()
    if "Would fail on live data:" not in lines:
        return []
    start = lines.index("Would fail on live data:") + 1
    section = []
    for line in lines[start:]:
        if not line.startswith("  - "):
            break
        section.append(line.removeprefix("  - "))
    return section


def state(project: Project) -> tuple[Any, ...]:
    """Schema and every row (version table, applied log and deploy records included)."""
    engine = project.engine()
    try:
        with engine.connect() as connection:
            tables = sorted(sa.inspect(connection).get_table_names())
            rows = {
                table: sorted(map(repr, connection.execute(sa.select(sa.text("*")).select_from(sa.table(table)))))
                for table in tables
            }
            return snapshot(connection, set()), rows
    finally:
        engine.dispose()


def label_of(project: Project, app: str, number: str) -> str:
    (path,) = (project.migrations / app).glob(f"{number}_*.py")
    return f"{app}.{path.stem}"


def blog_project(tmp_path: Path, url: str) -> Project:
    """accounts + blog (BLOG_BASE) deployed, with 2 users, 7 posts and 4 post tags."""
    project = new_project(tmp_path, url)
    project.write("blog/models.py", BLOG_BASE)
    db(project, "init")
    db(project, "makemigrations")
    db(project, "deploy", "--label", "v1")
    project.query_write(USERS, POSTS, POST_TAGS)
    return project


def in_batch(table: str, *calls: str) -> str:
    """Migration code running ``calls`` in a ``batch_alter_table`` on ``table``: SQLite has no
    ALTER for them outside one; PostgreSQL runs them as plain ALTERs."""
    return f'with op.batch_alter_table("{table}") as batch:\n' + "".join(f"    batch.{c}\n" for c in calls)


SET_TITLE_NOT_NULL = in_batch("posts", 'alter_column("title", existing_type=sa.String(200), nullable=False)')


def set_title_not_null(project: Project, number: str, parent: str, base: str = BLOG_BASE) -> None:
    """Blog migration NUMBER after ``parent``, by hand (makemigrations needs the database at
    its head): SET NOT NULL on posts.title, as the models then say."""
    project.write("blog/models.py", base.replace("title: Mapped[str | None]", "title: Mapped[str]"))
    write_migration(
        project, "blog", f"{number}_title_required.py", f"blog{number}", parent, SET_TITLE_NOT_NULL,
        in_batch("posts", 'alter_column("title", existing_type=sa.String(200), nullable=True)'),
    )


def nullable(project: Project, table: str, column: str) -> bool:
    engine = project.engine()
    try:
        (found,) = [c for c in sa.inspect(engine).get_columns(table) if c["name"] == column]
        return bool(found["nullable"])
    finally:
        engine.dispose()


def models(project: Project, text: str) -> None:
    """New blog models, and the migration makemigrations writes for them."""
    project.write("blog/models.py", text)
    db(project, "makemigrations")


# -- 1. each rule: blocked with the live count, really failing, passing on an empty table ------


def add_not_null(project: Project) -> None:
    """The ADD as Alembic compares it, with nothing for the existing rows (written by hand, or
    by Flask-Migrate): the base Questioner asks and fills nothing, as makemigrations would."""
    project.write("blog/models.py", BLOG_BASE.replace(
        "    editor_id", "    slug: Mapped[str] = mapped_column(db.String(50))\n    editor_id"))
    app = project.app()
    with app.app_context():
        commands.makemigrations(commands.get_project(app), questioner=Questioner())


def set_not_null(project: Project) -> None:
    models(project, BLOG_BASE.replace("title: Mapped[str | None]", "title: Mapped[str]"))


def unique_constraint(project: Project) -> None:
    models(project, BLOG_BASE.replace("db.String(200))", "db.String(200), unique=True)"))


def unique_index(project: Project) -> None:
    models(project, BLOG_BASE.replace("db.String(200))", "db.String(200), unique=True, index=True)"))


def foreign_key(project: Project) -> None:
    models(project, BLOG_BASE.replace(
        "editor_id: Mapped[int | None] = mapped_column()",
        'editor_id: Mapped[int | None] = mapped_column(db.ForeignKey("users.id"))'))


def narrowing(project: Project) -> None:
    models(project, BLOG_BASE.replace("db.String(200)", "db.String(10)"))


def check_constraint(project: Project) -> None:
    """Hand-written (autogenerate does not see CHECK constraints), in a batch on both backends."""
    write_migration(
        project, "blog", "0002_short_titles.py", "blog0002", revision_of(project, "blog", "0001"),
        in_batch("posts", 'create_check_constraint("ck_posts_short_title", "length(title) < 10")'),
        in_batch("posts", 'drop_constraint("ck_posts_short_title", type_="check")'),
    )


def primary_key(project: Project) -> None:
    """Hand-written (autogenerate does not compare primary keys); the models say the same."""
    project.write("blog/models.py", BLOG_BASE.replace(
        'db.ForeignKey("posts.id"), nullable=False', 'db.ForeignKey("posts.id"), primary_key=True'
    ).replace('db.String(20), nullable=False', 'db.String(20), primary_key=True'))
    write_migration(
        project, "blog", "0002_post_tags_key.py", "blog0002", revision_of(project, "blog", "0001"),
        in_batch("post_tags", 'create_primary_key("pk_post_tags", ["post_id", "tag"])'),
        in_batch("post_tags", 'drop_constraint("pk_post_tags", type_="primary")'),
    )


#: rule -> (change, table it reads, operation, object, message, rows (by backend where they
#: differ), fix, backends it fails on)
RULES: dict[
    str, tuple[Callable[[Project], None], str, str, str, str, int | dict[str, int], str, tuple[str, ...]]
] = {
    # MariaDB fills the existing rows with the type's implicit default ('' for a VARCHAR).
    "add_not_null": (
        add_not_null, "posts", "add_column", "posts.slug",
        "adds NOT NULL column posts.slug without a server default", 7,
        "add a server_default or backfill in an earlier migration", ("sqlite", "postgresql"),
    ),
    "set_not_null": (
        set_not_null, "posts", "alter_column", "posts.title",
        "sets NOT NULL on posts.title, which holds NULLs", 2,
        "backfill the NULLs in an earlier migration", ("sqlite", "postgresql", "mysql"),
    ),
    # MariaDB's default collation ignores trailing spaces: 'hello      ' is a fourth 'hello'.
    "unique_constraint": (
        unique_constraint, "posts", "create_unique_constraint", "posts (title)",
        "adds unique constraint uq_posts_title on posts (title) over duplicate values",
        {"sqlite": 3, "postgresql": 3, "mysql": 4},
        "remove the duplicates in an earlier migration", ("sqlite", "postgresql", "mysql"),
    ),
    "unique_index": (
        unique_index, "posts", "create_index", "posts (title)",
        "adds unique index ix_posts_title on posts (title) over duplicate values",
        {"sqlite": 3, "postgresql": 3, "mysql": 4},
        "remove the duplicates in an earlier migration", ("sqlite", "postgresql", "mysql"),
    ),
    "primary_key": (
        primary_key, "post_tags", "create_primary_key", "post_tags (post_id, tag)",
        "adds primary key pk_post_tags on post_tags (post_id, tag) over {keys} keys", 2,
        "{fix} in an earlier migration", ("sqlite", "postgresql", "mysql"),
    ),
    "check_constraint": (
        check_constraint, "posts", "create_check_constraint", "posts",
        "adds check constraint ck_posts_short_title on posts over rows that violate it", 2,
        "correct those rows in an earlier migration", ("sqlite", "postgresql", "mysql"),
    ),
    # SQLite does not enforce foreign keys unless the connection asks (see the hook test below).
    "foreign_key": (
        foreign_key, "posts", "create_foreign_key", "posts (editor_id)",
        ("adds foreign key fk_posts_editor_id_users on posts (editor_id) -> users (id) over rows "
        "that match no users row"), 2,
        "delete or correct those rows (or set their editor_id to NULL) in an earlier migration",
        ("postgresql", "mysql"),
    ),
    # SQLite does not enforce lengths; PostgreSQL and MariaDB (strict mode) cut excess spaces
    # (row 7) without complaint.
    "narrowing": (
        narrowing, "posts", "alter_column", "posts.title",
        "narrows posts.title from VARCHAR(200) to VARCHAR(10) over values that do not fit", 1,
        "correct those values in an earlier migration{using}", ("postgresql", "mysql"),
    ),
}


def plan_predictions(project: Project) -> list[tuple[str, str, str, int]]:
    """``upgrade(plan_only=True).predictions`` through the Python API."""
    app = project.app()
    with app.app_context():
        result = commands.upgrade(commands.get_project(app), plan_only=True)
    return [(p.label, p.operation, p.object, p.rows) for p in result.predictions]


@pytest.mark.parametrize("rule", list(RULES))
def test_each_rule_blocks_the_gate_with_the_live_count(tmp_path: Path, db_url: str, rule: str) -> None:
    change, table, operation, object_, message, rows, fix, fails_on = RULES[rule]
    backend = sa.make_url(db_url).get_backend_name()
    rows = rows[backend] if isinstance(rows, dict) else rows
    project = blog_project(tmp_path, db_url)
    change(project)
    label = label_of(project, "blog", "0002")
    null_keys = backend in ("postgresql", "mysql")  # key columns become NOT NULL (SQLite: no)
    message = message.format(keys="NULL or duplicate" if null_keys else "duplicate")
    fix = fix.format(
        fix="fill the NULLs and remove the duplicates" if null_keys else "remove the duplicates",
        using=", or convert them with postgresql_using" if backend == "postgresql" else "",
    )
    expected = f"{label}: {message}: would fail on live data: {rows} row{'s' if rows > 1 else ''}; {fix}"
    before = state(project)

    if backend not in fails_on:
        # Not predicted, and rightly so: the step runs on these very rows.
        assert check(gate(project, 0), "live data")["level"] == "ok"
        assert predicted(db(project, "upgrade", "--plan").output) == []
        db(project, "deploy", "--label", "v2", "--allow-data-loss")
        assert project.query(f"SELECT count(*) FROM {table}")[0][0] > 0
        return

    report = gate(project, 1)
    assert check(report, "live data") == {
        "name": "live data", "level": "error",
        "message": "1 pending step would fail on live data", "details": [expected],
    }
    assert errors(report) == ["live data"]
    text = db(project, "predeploy", code=1).output
    assert "error    live data: 1 pending step would fail on live data" in text
    assert f"           - {expected}" in text
    assert "Blocked: 1 error" in text

    planned = db(project, "upgrade", "--plan")
    assert f"  1. + {label}" in planned.output
    assert predicted(planned.output) == [expected]
    assert plan_predictions(project) == [(label, operation, object_, rows)]

    blocked = db(project, "deploy", "--label", "v2", "--allow-data-loss", code=1)
    assert "Error: the gate blocked the deploy; nothing was applied." in blocked.stderr
    assert state(project) == before

    # The prediction is true: without the gate, the step fails on these rows.
    failed = db(project, "upgrade", "--allow-data-loss", code=1)
    assert f"migration {label} (up) failed" in failed.stderr
    assert state(project) == before

    # The same migration on an empty table passes the gate and deploys.
    project.query_write("DELETE FROM post_tags", f"DELETE FROM {table}")  # post_tags refers to posts
    assert check(gate(project, 0), "live data") == {
        "name": "live data", "level": "ok",
        "message": "no pending step would fail on the live data", "details": [],
    }
    assert predicted(db(project, "upgrade", "--plan").output) == []
    db(project, "deploy", "--label", "v2")
    assert [row[0] for row in project.query("SELECT version_num FROM alembic_version")] == [
        revision_of(project, "blog", "0002")
    ]


def test_a_primary_key_over_null_keys_fails_except_on_sqlite(tmp_path: Path, db_url: str) -> None:
    """PostgreSQL and MariaDB make key columns NOT NULL; SQLite accepts NULL in a VARCHAR key."""
    project = blog_project(tmp_path, db_url)
    blog_1 = revision_of(project, "blog", "0001")
    write_migration(
        project, "blog", "0002_labels.py", "blog0002", blog_1,
        'op.create_table("labels", sa.Column("code", sa.String(20)), sa.Column("name", sa.String(20)))',
        'op.drop_table("labels")',
    )
    db(project, "upgrade")
    project.query_write("INSERT INTO labels (code, name) VALUES ('a', 'A'), ('b', 'B'), (NULL, 'x'), (NULL, 'y')")
    write_migration(
        project, "blog", "0003_labels_key.py", "blog0003", "blog0002",
        in_batch("labels", 'create_primary_key("pk_labels", ["code"])'),
        in_batch("labels", 'drop_constraint("pk_labels", type_="primary")'),
    )
    planned = predicted(db(project, "upgrade", "--plan").output)
    if project.url.startswith("sqlite"):
        assert planned == []
        assert check(gate(project, 1), "live data")["level"] == "ok"  # labels is in no model
        db(project, "upgrade")
        assert project.query("SELECT count(*) FROM labels WHERE code IS NULL") == [(2,)]
        return
    assert planned == [
        ("blog.0003_labels_key: adds primary key pk_labels on labels (code) over NULL or duplicate "
        "keys: would fail on live data: 2 rows; fill the NULLs and remove the duplicates in an "
        "earlier migration")
    ]
    assert check(gate(project, 1), "live data")["details"] == planned
    failed = db(project, "upgrade", code=1)
    assert "migration blog.0003_labels_key (up) failed" in failed.stderr


#: old type, new type, values: some PostgreSQL converts (cutting, rounding), some it refuses.
NARROWINGS: dict[str, tuple[sa.types.TypeEngine[Any], sa.types.TypeEngine[Any], list[Any]]] = {
    "shorter string": (sa.String(20), sa.String(3), ["abc", "abcd", "ab    ", "abc   ", "ab  c", "a b c"]),
    "text to string": (sa.Text(), sa.String(3), ["abc", "abcd", "abc \t"]),
    "smaller integer": (sa.BigInteger(), sa.Integer(), [2**31 - 1, 2**31, -(2**31), -(2**31) - 1]),
    "lower precision": (
        sa.Numeric(10, 4), sa.Numeric(6, 2),
        [Decimal("9999.994"), Decimal("9999.995"), Decimal("-9999.995"), Decimal("123.4567")],
    ),
    "lower scale, rounding up into one more digit": (
        sa.Numeric(6, 4), sa.Numeric(5, 3), [Decimal("99.9994"), Decimal("99.9995"), Decimal("1.2345")],
    ),
    "fraction to small integer": (
        sa.Numeric(10, 4), sa.SmallInteger(),
        [Decimal("32767.4"), Decimal("32767.5"), Decimal("-32768.4"), Decimal("-32768.5"), Decimal("2.5")],
    ),
    "float to integer": (sa.Float(), sa.Integer(), [2147483647.4, 2147483647.6, -1.5]),
}


@pytest.mark.parametrize("narrowing", list(NARROWINGS))
def test_narrowing_counts_exactly_the_values_postgresql_refuses(pg_url: str, narrowing: str) -> None:
    """Value by value: the condition the prediction counts with, against the ALTER itself."""
    old, new, values = NARROWINGS[narrowing]
    refused = _refused_by_postgresql(old, new)
    assert refused is not None
    engine = sa.create_engine(pg_url, poolclass=sa.pool.NullPool)
    outcomes = []
    try:
        with engine.connect() as connection:
            for value in values:
                table = sa.Table("narrowed", sa.MetaData(), sa.Column("v", old))
                with connection.begin() as transaction:
                    table.create(connection)
                    connection.execute(table.insert().values(v=value))
                    counted = connection.execute(
                        sa.select(sa.func.count()).select_from(table).where(refused(table.c.v))
                    ).scalar_one()
                    try:
                        with connection.begin_nested():
                            Operations(MigrationContext.configure(connection)).alter_column(
                                "narrowed", "v", type_=new, existing_type=old
                            )
                        failed = False
                    except sa.exc.DBAPIError:
                        failed = True
                    transaction.rollback()
                outcomes.append((value, bool(counted), failed))
    finally:
        engine.dispose()
    assert [(value, counted) for value, counted, _ in outcomes] == [
        (value, failed) for value, _, failed in outcomes
    ]
    assert {failed for _, _, failed in outcomes} == {True, False}


def test_conversions_postgresql_never_refuses_are_not_predicted() -> None:
    """Times of day are cut (data loss, not a failure); a wider type narrows nothing."""
    for old, new in [
        (sa.DateTime(), sa.Date()),
        (sa.String(3), sa.String(20)),
        (sa.Integer(), sa.BigInteger()),
    ]:
        assert _refused_by_postgresql(old, new) is None, (old, new)


#: MariaDB's own rules on top of NARROWINGS: excess whitespace is cut (except VARCHAR to
#: VARCHAR of the same collation and length prefix size: both up to 255 bytes, here 20 and 3
#: characters of up to 4 bytes), unsigned types refuse every negative value, floats round to
#: even, a plain DECIMAL is DECIMAL(10, 0).
MARIADB_NARROWINGS: dict[str, tuple[sa.types.TypeEngine[Any], sa.types.TypeEngine[Any], list[Any]]] = {
    **NARROWINGS,
    "long string to short": (
        sa.String(200), sa.String(10),
        ["a" * 10, "a" * 11, "a" * 10 + " ", "a" * 10 + "\t\n\x0b\x0c\r ", "a" * 10 + "\u00a0", "a" * 9 + "  b"],
    ),
    "whitespace in a short string": (sa.String(20), sa.String(3), ["ab\t", "abc\t", "abc\u00a0"]),
    "shorter char": (sa.CHAR(10), sa.CHAR(3), ["abc", "abcd", "abc   ", "ab   c", "abc\t", "abc\u3000"]),
    "char to string": (sa.CHAR(10), sa.String(3), ["abc", "abcd", "abc  \t"]),
    "string to char": (sa.String(10), sa.CHAR(3), ["abc", "abcd", "abc   ", "abc\r\n"]),
    "text to string, other whitespace": (sa.Text(), sa.String(3), ["abc\n", "abc\x0c", "abc\u00a0"]),
    "characters, not bytes": (sa.String(10), sa.String(3), ["äöü", "äöüß", "日本語", "日本語x", "日本語 "]),
    "into the table's collation": (sa.String(20, collation="utf8mb4_bin"), sa.String(3), ["abc ", "abcd"]),
    "int to tinyint": (sa.Integer(), mysql.TINYINT(), [127, 128, -128, -129]),
    "to unsigned": (sa.BigInteger(), mysql.INTEGER(unsigned=True), [0, -1, 2**32 - 1, 2**32]),
    "fraction to unsigned": (
        sa.Numeric(8, 2), mysql.SMALLINT(unsigned=True),
        [Decimal("-0.49"), Decimal("0.49"), Decimal("65535.49"), Decimal("65535.5")],
    ),
    "to unsigned decimal": (
        sa.Numeric(8, 3), mysql.DECIMAL(6, 2, unsigned=True),
        [Decimal("-0.004"), Decimal(0), Decimal("9999.994"), Decimal("9999.995")],
    ),
    "double to small integer": (
        mysql.DOUBLE(), sa.SmallInteger(), [32767.5, 32766.5, 32767.49, -32768.5, -32769.5],
    ),
    "double to numeric": (mysql.DOUBLE(), sa.Numeric(4, 1), [999.94, 999.95, -999.95, 12.345]),
    "to a plain numeric": (
        sa.Numeric(14, 2), sa.Numeric(), [Decimal("9999999999.49"), Decimal("9999999999.5")],
    ),
    "to boolean": (sa.Integer(), sa.Boolean(), [0, 2, 127, 128, -129]),
}


@pytest.mark.parametrize("narrowing", list(MARIADB_NARROWINGS))
def test_narrowing_counts_exactly_the_values_mariadb_refuses(mariadb_url: str, narrowing: str) -> None:
    """Value by value, in strict mode (the default): the prediction for a one-row table
    against the ALTER itself (which commits at once on MariaDB)."""
    old, new, values = MARIADB_NARROWINGS[narrowing]
    engine = sa.create_engine(mariadb_url, poolclass=sa.pool.NullPool)
    outcomes = []
    try:
        with engine.connect() as connection:
            for value in values:
                connection.exec_driver_sql("DROP TABLE IF EXISTS narrowed")
                table = sa.Table("narrowed", sa.MetaData(), sa.Column("v", old))
                table.create(connection)
                connection.execute(table.insert().values(v=value))
                connection.commit()
                with connection.begin() as transaction:
                    predicted = _LiveData(connection).failures(Operation(
                        "alter_column", "narrowed", "v", "may_fail", "",
                        source=alembic_ops.AlterColumnOp("narrowed", "v", modify_type=new, existing_type=old),
                    ))
                    transaction.rollback()
                try:
                    Operations(MigrationContext.configure(connection)).alter_column(
                        "narrowed", "v", type_=new, existing_type=old
                    )
                    failed = False
                except sa.exc.DBAPIError:
                    failed = True
                connection.rollback()
                outcomes.append((value, [f.rows for f in predicted] == [1], failed))
    finally:
        engine.dispose()
    assert [(value, counted) for value, counted, _ in outcomes] == [
        (value, failed) for value, _, failed in outcomes
    ]
    assert {failed for _, _, failed in outcomes} == {True, False}


def with_sql_mode(url: str, mode: str) -> str:
    """``url`` with every connection (the app's, flask-rollback's, the test's) in ``mode``."""
    init = f"SET SESSION sql_mode = '{mode}'"
    return sa.make_url(url).update_query_dict({"init_command": init}).render_as_string(hide_password=False)


def test_what_mariadb_refuses_follows_its_sql_mode(tmp_path: Path, mariadb_url: str) -> None:
    """Without strict mode MariaDB turns NULLs into '' and cuts long values (with a warning):
    nothing fails, so nothing is predicted (the cut is data loss, flagged as such).
    NO_ZERO_DATE, strict or not, refuses the zero date a new NOT NULL DATE column gives
    existing rows."""
    project = blog_project(tmp_path, with_sql_mode(mariadb_url, "NO_ZERO_DATE"))
    short_title = BLOG_BASE.replace("title: Mapped[str | None] = mapped_column(db.String(200))",
                                    "title: Mapped[str] = mapped_column(db.String(10))")
    models(project, short_title)
    label = label_of(project, "blog", "0002")
    report = gate(project, 0)
    assert check(report, "live data")["level"] == "ok"
    assert check(report, "data at risk")["level"] == "warning"  # the cut title
    assert predicted(db(project, "upgrade", "--plan").output) == []
    db(project, "upgrade", "--allow-data-loss")
    assert project.query("SELECT id, title FROM posts WHERE id IN (4, 5) ORDER BY id") == [
        (4, "a much lon"), (5, ""),
    ]

    project.write("blog/models.py", short_title.replace(
        "    editor_id", "    published: Mapped[datetime.date] = mapped_column()\n    editor_id"
    ).replace("from sqlalchemy.orm", "import datetime\nfrom sqlalchemy.orm"))
    app = project.app()
    with app.app_context():  # the ADD with nothing for the existing rows, as in add_not_null
        commands.makemigrations(commands.get_project(app), questioner=Questioner())
    label = label_of(project, "blog", "0003")
    expected = (
        f"{label}: adds NOT NULL column posts.published without a server default: would fail "
        "on live data: 7 rows; add a server_default or backfill in an earlier migration"
    )
    assert check(gate(project, 1), "live data")["details"] == [expected]
    failed = db(project, "upgrade", code=1)
    assert f"migration {label} (up) failed" in failed.stderr and "Incorrect date value" in failed.stderr

    # The same migration in MariaDB's default mode gives every row 0000-00-00.
    project = dataclasses.replace(project, url=mariadb_url)
    assert check(gate(project, 0), "live data")["level"] == "ok"
    db(project, "upgrade")
    assert project.query("SELECT DISTINCT CAST(published AS CHAR) FROM posts") == [("0000-00-00",)]


# -- 2. what earlier operations of the plan change is not predicted -----------------------------


#: case -> (blog 0002, blog 0003): what blog 0003 does (alone it would be predicted to fail on
#: the live rows) comes after something changed those rows; no 0002 when it is the same step.
EARLIER_CHANGES: dict[str, tuple[str, str]] = {
    "rows deleted by raw SQL": (
        'op.execute("DELETE FROM posts WHERE title IS NULL")', SET_TITLE_NOT_NULL,
    ),
    "rows deleted by Python": (
        'op.get_bind().exec_driver_sql("DELETE FROM posts WHERE title IS NULL")', SET_TITLE_NOT_NULL,
    ),
    "table replaced": (
        ('op.rename_table("post_tags", "old_post_tags")\n'
        'op.create_table("post_tags", sa.Column("post_id", sa.Integer, nullable=False), '
        'sa.Column("tag", sa.String(20), nullable=False))'),
        in_batch("post_tags", 'create_primary_key("pk_post_tags", ["post_id", "tag"])'),
    ),
    "values rewritten earlier in the same step": (
        "",
        'op.execute("UPDATE posts SET title = id")\n'
        + in_batch("posts", 'create_unique_constraint("uq_posts_title", ["title"])'),
    ),
}


@pytest.mark.parametrize("case", list(EARLIER_CHANGES))
def test_what_an_earlier_operation_changed_is_not_predicted(tmp_path: Path, db_url: str, case: str) -> None:
    first, second = EARLIER_CHANGES[case]
    project = blog_project(tmp_path, db_url)
    parent = revision_of(project, "blog", "0001")
    if first:
        write_migration(project, "blog", "0002_first.py", "blog0002", parent, first)
        parent = "blog0002"
    write_migration(project, "blog", "0003_second.py", "blog0003", parent, second)

    report = gate(project, 1)  # the models were not changed: drift blocks
    assert check(report, "live data")["level"] == "ok" and "live data" not in errors(report)
    assert predicted(db(project, "upgrade", "--plan").output) == []
    db(project, "upgrade", "--allow-data-loss")  # and the plan really runs
    assert [row[0] for row in project.query("SELECT version_num FROM alembic_version")] == ["blog0003"]


# -- 3. what passes -----------------------------------------------------------------------------


def test_a_not_null_column_with_a_server_default_passes_and_deploys(tmp_path: Path, db_url: str) -> None:
    project = blog_project(tmp_path, db_url)
    models(project, BLOG_BASE.replace(
        "    editor_id",
        '    slug: Mapped[str] = mapped_column(db.String(50), server_default="draft")\n    editor_id'))
    report = gate(project, 0)
    assert check(report, "live data")["level"] == "ok" and report["ready"] is True
    db(project, "deploy", "--label", "v2")
    assert project.query("SELECT DISTINCT slug FROM posts") == [("draft",)]


def test_a_backfill_step_before_set_not_null_passes_and_deploys(tmp_path: Path, db_url: str) -> None:
    project = blog_project(tmp_path, db_url)
    write_migration(
        project, "blog", "0002_backfill_titles.py", "blog0002", revision_of(project, "blog", "0001"),
        "op.execute(\"UPDATE posts SET title = 'untitled' WHERE title IS NULL\")",
        "op.execute(\"UPDATE posts SET title = NULL WHERE title = 'untitled'\")",
    )
    set_title_not_null(project, "0003", "blog0002")
    report = gate(project, 0)
    assert check(report, "live data")["level"] == "ok"
    # The backfill only fills NULLs: it overwrites no value, so no flag is needed.
    assert check(report, "data at risk")["level"] == "ok"
    assert predicted(db(project, "upgrade", "--plan").output) == []
    db(project, "deploy", "--label", "v2")
    assert project.query("SELECT count(*) FROM posts WHERE title = 'untitled'") == [(2,)]
    assert not nullable(project, "posts", "title")


# -- 4. a deploy that would fail halfway is refused before its first step ----------------------


def test_deploy_refuses_a_plan_whose_second_step_would_fail(tmp_path: Path, db_url: str) -> None:
    project = blog_project(tmp_path, db_url)
    with_summary = BLOG_BASE.replace(
        "    editor_id", "    summary: Mapped[str | None] = mapped_column(db.String(300))\n    editor_id")
    models(project, with_summary)  # blog 0002: fine on any data
    set_title_not_null(project, "0003", revision_of(project, "blog", "0002"), with_summary)
    before = state(project)

    blocked = db(project, "deploy", "--label", "v2", code=1)
    assert (
        f"- {label_of(project, 'blog', '0003')}: sets NOT NULL on posts.title, which holds NULLs: "
        "would fail on live data: 2 rows" in blocked.stdout
    )
    assert "Error: the gate blocked the deploy; nothing was applied." in blocked.stderr
    assert state(project) == before
    assert [r["label"] for r in json.loads(db(project, "deploys", "--json").output)] == ["v1"]

    # What the gate prevented: without it, step 1 is applied and step 2 fails.
    failed = db(project, "upgrade", code=1)
    assert f"migration {label_of(project, 'blog', '0003')} (up) failed" in failed.stderr
    assert [row[0] for row in project.query("SELECT version_num FROM alembic_version")] == [
        revision_of(project, "blog", "0002")
    ]


# -- 5. SQLite with foreign keys enforced by the application's connect hook ---------------------

FOREIGN_KEYS_HOOK = '''
import sqlalchemy as sa


@sa.event.listens_for(sa.engine.Engine, "connect")
def _foreign_keys(dbapi_connection, _record):
    dbapi_connection.execute("PRAGMA foreign_keys = ON")
'''


def test_sqlite_orphans_are_predicted_when_a_hook_enforces_foreign_keys(
    tmp_path: Path, sqlite_url: str
) -> None:
    """A hook on every Engine (as Flask apps on SQLite often have) reaches the migration
    connection too. Run as subprocesses: such a hook must not leak into this test process."""
    project = blog_project(tmp_path, sqlite_url)
    # With foreign keys enforced, the batch rebuild of posts fails while post_tags rows refer to
    # it, orphans or not: not this test's subject.
    project.query_write("DELETE FROM post_tags")
    foreign_key(project)
    label = label_of(project, "blog", "0002")
    assert check(gate(project, 0), "live data")["level"] == "ok"

    project.write("foreign_keys.py", FOREIGN_KEYS_HOOK)
    project.set_factory(["accounts", "blog"], extra_modules=["foreign_keys"])
    run = project.run("predeploy", "--json")
    assert run.returncode == 1, (run.stdout, run.stderr)
    assert check(json.loads(run.stdout), "live data")["details"] == [
        (f"{label}: adds foreign key fk_posts_editor_id_users on posts (editor_id) -> users (id) "
        "over rows that match no users row: would fail on live data: 2 rows; delete or correct "
        "those rows (or set their editor_id to NULL) in an earlier migration")
    ]
    failed = project.run("upgrade")
    assert failed.returncode == 1 and f"migration {label} (up) failed" in failed.stderr
    # The rebuild runs with keys off (no cascade) and checks them before it commits.
    assert "it leaves 2 rows whose foreign keys point nowhere (in posts)" in failed.stderr

    project.query_write("UPDATE posts SET editor_id = NULL WHERE editor_id IN (7, 9)")
    run = project.run("predeploy", "--json")
    assert run.returncode == 0, (run.stdout, run.stderr)
    assert check(json.loads(run.stdout), "live data")["level"] == "ok"
    assert project.run("upgrade").returncode == 0
