"""Static analysis of migrations (flask_rollback.analysis) and live loss counts
(flask_rollback.dataloss).

Migrations are real files under tmp_path imported with importlib (and, once, files written by
``flask db makemigrations``); counts run on real SQLite and PostgreSQL databases, which must be
unchanged afterwards.
"""

from __future__ import annotations

import hashlib
import importlib.util
import textwrap
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import alembic.op
import pytest
import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext

from flask_rollback.analysis import Operation, destructive, operations, worst
from flask_rollback.dataloss import Loss, count_losses
from flask_rollback.statements import DeleteRows, DropColumns, DropTables, Overwrite, Target, UpdateRows, read
from tests.projects import new_project

DIALECTS = ["sqlite", "postgresql"]

HEADER = '''
import sqlalchemy as sa
import sqlalchemy.dialects.postgresql
from alembic import op
from alembic.operations.ops import MigrateOperation


class CustomOp(MigrateOperation):
    """An operation no rule knows."""

'''


def load(tmp_path: Path, upgrade: str, downgrade: str = "pass") -> ModuleType:
    """A migration module written to disk and imported, like Alembic loads one."""
    name = f"mig_{uuid.uuid4().hex[:10]}"
    path = tmp_path / f"{name}.py"
    body = textwrap.dedent(upgrade).strip() or "pass"
    down = textwrap.dedent(downgrade).strip() or "pass"
    path.write_text(
        HEADER
        + "def upgrade():\n" + textwrap.indent(body, "    ") + "\n\n\n"
        + "def downgrade():\n" + textwrap.indent(down, "    ") + "\n"
    )
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(tmp_path: Path, code: str, dialect: str = "postgresql") -> list[Operation]:
    return operations(load(tmp_path, code), "upgrade", dialect)


def summary(ops: list[Operation]) -> list[tuple[str, str | None, str | None, str, bool]]:
    return [(o.kind, o.table, o.column, o.risk, o.in_batch) for o in ops]


# --- destroys -------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    "code, expected",
    [
        ('op.drop_table("users")', ("drop_table", "users", None, "drops table users")),
        ('op.drop_column("posts", "body")', ("drop_column", "posts", "body", "drops column posts.body")),
        ('op.alter_column("posts", "title", existing_type=sa.String(200), type_=sa.String(20))',
         ("alter_column", "posts", "title", "narrows posts.title from VARCHAR(200) to VARCHAR(20)")),
        ('op.alter_column("posts", "body", existing_type=sa.Text(), type_=sa.String(50))',
         ("alter_column", "posts", "body", "to VARCHAR(50)")),
        ('op.alter_column("posts", "n", existing_type=sa.Integer(), type_=sa.SmallInteger())',
         ("alter_column", "posts", "n", "smaller integer range")),
        ('op.alter_column("posts", "n", existing_type=sa.BigInteger(), type_=sa.Integer())',
         ("alter_column", "posts", "n", "smaller integer range")),
        ('op.alter_column("posts", "p", existing_type=sa.Numeric(10, 2), type_=sa.Numeric(8, 2))',
         ("alter_column", "posts", "p", "lower precision")),
        ('op.alter_column("posts", "p", existing_type=sa.Numeric(10, 2), type_=sa.Numeric(10, 1))',
         ("alter_column", "posts", "p", "lower scale")),
        ('op.alter_column("posts", "f", existing_type=sa.Float(), type_=sa.Integer())',
         ("alter_column", "posts", "f", "drops fractions")),
        ('op.alter_column("posts", "title", existing_type=sa.String(5), type_=sa.Boolean())',
         ("alter_column", "posts", "title", "to Boolean")),
        ('op.alter_column("posts", "at", existing_type=sa.DateTime(), type_=sa.Date())',
         ("alter_column", "posts", "at", "drops the time of day")),
    ],
)
def test_destructive_operations_are_destroys(
    tmp_path: Path, dialect: str, code: str, expected: tuple[str, str, str | None, str]
) -> None:
    kind, table, column, reason = expected
    [found] = record(tmp_path, code, dialect)
    assert (found.kind, found.table, found.column, found.risk) == (kind, table, column, "destroys")
    assert reason in found.reason
    assert not found.in_batch
    assert worst([found]) == "destroys" and destructive([found]) == [found]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_batch_operations_are_recorded_without_reflection(tmp_path: Path, dialect: str) -> None:
    """No database and no such table anywhere: a real batch would reflect it on exit."""
    ops = record(tmp_path, '''
        with op.batch_alter_table("posts", recreate="always", table_args=(), naming_convention={}) as batch_op:
            batch_op.drop_column("body")
            batch_op.alter_column("title", existing_type=sa.String(200), type_=sa.String(20))
            batch_op.add_column(sa.Column("summary", sa.Text(), nullable=True))
            batch_op.create_unique_constraint("uq_posts_slug", ["slug"])
            batch_op.execute("UPDATE posts SET slug = lower(slug)")
        op.create_index("ix_posts_title", "posts", ["title"])
    ''', dialect)
    assert summary(ops) == [
        ("drop_column", "posts", "body", "destroys", True),
        ("alter_column", "posts", "title", "destroys", True),
        ("add_column", "posts", "summary", "safe", True),
        ("create_unique_constraint", "posts", "slug", "may_fail", True),
        ("execute", "posts", "slug", "destroys", True),
        ("create_index", "posts", None, "safe", False),
    ]


@pytest.mark.parametrize(
    "statement, table, column, reason",
    [
        ("DELETE FROM posts", "posts", None, "deletes every row of posts"),
        ("delete from posts where id > 3", "posts", None, "deletes rows of posts"),
        ('DROP TABLE IF EXISTS public."Users", posts CASCADE', "Users", None,
         "drops table public.Users, posts"),
        ("ALTER TABLE posts DROP COLUMN body", "posts", "body", "drops column posts.body"),
        ("ALTER TABLE ONLY posts DROP body, DROP CONSTRAINT ck", "posts", "body",
         "drops column posts.body"),
        ("TRUNCATE TABLE posts RESTART IDENTITY", "posts", None, "empties posts"),
        ("UPDATE posts SET title = upper(title)", "posts", "title", "overwrites title in posts"),
        ("INSERT INTO posts (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET id = 2", "posts", None,
         "upsert"),
        ("INSERT OR REPLACE INTO posts (id) VALUES (1)", "posts", None, "upsert"),
        ("INSERT INTO posts (id) VALUES (1) ON DUPLICATE KEY UPDATE id = 2", "posts", None, "upsert"),
        ("REPLACE INTO posts (id) VALUES (1)", "posts", None, "replaces (deletes and re-inserts)"),
        ("WITH gone AS (DELETE FROM posts RETURNING id) SELECT count(*) FROM gone", None, None,
         "a WITH clause that changes data"),
        ("DROP SCHEMA archive CASCADE", None, None, "drops a whole schema"),
    ],
)
def test_destructive_raw_sql_names_the_statement(
    tmp_path: Path, statement: str, table: str | None, column: str | None, reason: str
) -> None:
    [found] = record(tmp_path, f"op.execute({statement!r})")
    assert (found.kind, found.table, found.column, found.risk) == ("execute", table, column, "destroys")
    assert found.sql == statement
    assert reason in found.reason and statement[:30] in found.reason


#: statement -> (columns, rows, deletes) the data-loss count works from; None: not countable
#: from the text (only the table is known).
ANY_KEY_UPSERTS: dict[str, tuple[tuple[str, ...], str, bool] | None] = {
    "INSERT INTO tags (id, code) VALUES (1, 'a'), (2, 'b)') ON DUPLICATE KEY UPDATE code = VALUES(code)":
        (("id", "code"), "(1, 'a'), (2, 'b)')", False),
    "INSERT INTO tags (code) VALUE ('a') AS new ON DUPLICATE KEY UPDATE code = new.code":
        (("code",), "('a')", False),
    "INSERT IGNORE INTO tags SET id = 1, code = lower('A') ON DUPLICATE KEY UPDATE code = 'x'":
        (("id", "code"), "(1, lower('A'))", False),
    "REPLACE tags (id, code) VALUES (1, 'a');": (("id", "code"), "(1, 'a')", True),
    "REPLACE INTO tags SET id = 1, code = 'a'": (("id", "code"), "(1, 'a')", True),
    "INSERT OR REPLACE INTO tags (id, code) VALUES (1, 'a')": (("id", "code"), "(1, 'a')", True),
    "INSERT INTO tags (id, code) SELECT id, code FROM old ON DUPLICATE KEY UPDATE code = old.code": None,
    "INSERT INTO tags (id, code) VALUES (%s, %s) ON DUPLICATE KEY UPDATE code = VALUES(code)": None,
    "INSERT INTO tags VALUES (1, 'a') ON DUPLICATE KEY UPDATE code = 'a'": None,  # no column list
    "REPLACE INTO tags (id, code) VALUES (1, 'a', 'extra')": None,
}


@pytest.mark.parametrize("statement", list(ANY_KEY_UPSERTS))
def test_upserts_on_any_unique_key_are_read_with_their_rows(statement: str) -> None:
    """MariaDB/MySQL ``ON DUPLICATE KEY UPDATE`` and ``REPLACE`` (and SQLite's): which rows
    the statement writes, so that the rows of the table sharing any unique key with them can
    be counted."""
    (reading,) = read(statement)
    (effect,) = reading.effects
    assert reading.risk == "destroys" and reading.table == "tags"
    assert isinstance(effect, Overwrite) and effect.any_key and effect.keys == ()
    expected = ANY_KEY_UPSERTS[statement]
    if expected is None:
        assert (effect.columns, effect.rows) == ((), None)
        return
    columns, rows, deletes = expected
    assert effect.rows is not None
    assert (effect.columns, effect.rows.text, effect.deletes) == (columns, rows, deletes)


def test_raw_sql_as_text_core_and_several_statements(tmp_path: Path) -> None:
    ops = record(tmp_path, '''
        op.execute(sa.text("DELETE FROM sessions WHERE expires < :now"))
        op.execute(sa.table("posts", sa.column("title")).update().values(title="x"))
        op.execute(sa.table("posts", sa.column("title")).insert().values(title="x"))
        op.execute("""
            -- clean up, then log it
            TRUNCATE audit;
            DROP TABLE legacy;
            INSERT INTO log (msg) VALUES ('cleaned');
        """)
    ''')
    assert [(o.table, o.risk, o.sql and o.sql.splitlines()[-1].strip()) for o in ops] == [
        ("sessions", "destroys", "DELETE FROM sessions WHERE expires < %(now)s"),
        ("posts", "destroys", "UPDATE posts SET title=%(title)s"),  # NullType: no literal
        ("posts", "safe", "INSERT INTO posts (title) VALUES (%(title)s)"),
        ("audit", "destroys", "TRUNCATE audit"),  # after its comment line
        ("legacy", "destroys", "DROP TABLE legacy"),
        ("log", "safe", "INSERT INTO log (msg) VALUES ('cleaned')"),
    ]


def test_statements_read_into_effects() -> None:
    sql = (
        'DROP TABLE a.b, "C"; TRUNCATE d; DELETE FROM e; DELETE FROM f WHERE x = 1; '
        "UPDATE g SET x = 1; ALTER TABLE h DROP COLUMN i; SELECT 1"
    )
    effects = [reading.effects for reading in read(sql)]
    drop, truncate, delete_all, delete_some, update, drop_column, select = effects
    assert drop == (DropTables(((Target("b", None, "a")), Target("C"))),)
    assert truncate == (DropTables((Target("d"),), truncate=True),)
    assert delete_all == (DeleteRows(Target("e")),)
    (some,) = delete_some
    assert isinstance(some, DeleteRows) and some.where is not None and some.where.text == "x = 1"
    (assigned,) = update
    assert isinstance(assigned, UpdateRows) and assigned.assignments == (("x", "1"),)
    assert drop_column == (DropColumns((Target("h", "i"),)),)
    assert select == ()


# --- may_fail -------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    "code, kind, reason",
    [
        ('op.add_column("users", sa.Column("email", sa.String(100), nullable=False))',
         "add_column", "adds NOT NULL column users.email without a server default"),
        ('op.alter_column("users", "email", existing_type=sa.String(100), nullable=False)',
         "alter_column", "sets NOT NULL on users.email: fails if any row is NULL"),
        ('op.create_unique_constraint("uq_users_email", "users", ["email"])',
         "create_unique_constraint", "fails if existing rows have duplicates"),
        ('op.create_index("ix_users_email", "users", ["email"], unique=True)',
         "create_index", "unique index ix_users_email"),
        ('op.create_check_constraint("ck_users_age", "users", "age >= 0")',
         "create_check_constraint", "fails if an existing row violates it"),
        ('op.create_foreign_key("fk_users_team", "users", "teams", ["team_id"], ["id"])',
         "create_foreign_key", "missing teams row"),
        ('op.create_primary_key("pk_users", "users", ["email"])',
         "create_primary_key", "fails on NULLs or duplicates"),
        ('op.alter_column("users", "n", existing_type=sa.Integer(), type_=sa.BigInteger())',
         "alter_column", "fails if a value cannot be cast"),
        ('op.alter_column("users", "email", existing_type=sa.String(20), type_=sa.String(200))',
         "alter_column", "from VARCHAR(20) to VARCHAR(200)"),
    ],
)
def test_may_fail_operations(tmp_path: Path, dialect: str, code: str, kind: str, reason: str) -> None:
    [found] = record(tmp_path, code, dialect)
    assert (found.kind, found.table, found.risk) == (kind, "users", "may_fail")
    assert reason in found.reason
    assert worst([found]) == "may_fail" and destructive([found]) == []


def test_a_conversion_can_fail_on_postgresql_and_destroys_on_sqlite(tmp_path: Path) -> None:
    """PostgreSQL refuses a cast that fails; SQLite's batch copy converts 'abc' to 0."""
    code = 'op.alter_column("users", "n", existing_type=sa.String(20), type_=sa.Integer())'
    [on_postgresql] = record(tmp_path, code, "postgresql")
    assert on_postgresql.risk == "may_fail" and "fails if a value cannot be cast" in on_postgresql.reason
    [on_sqlite] = record(tmp_path, code, "sqlite")
    assert on_sqlite.risk == "destroys" and "converts silently" in on_sqlite.reason


def test_alter_column_gives_one_row_per_change(tmp_path: Path) -> None:
    ops = record(tmp_path, '''
        op.alter_column("users", "email", existing_type=sa.String(200), type_=sa.String(50),
                        nullable=False, new_column_name="mail", server_default="x")
    ''')
    assert [o.risk for o in ops] == ["destroys", "may_fail", "safe", "safe"]
    assert worst(ops) == "destroys"
    assert destructive(ops) == ops[:1]


# --- safe -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_add_only_migration_has_no_false_alarm(tmp_path: Path, dialect: str) -> None:
    ops = record(tmp_path, '''
        tags = op.create_table(
            "tags",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(50), nullable=False),
        )
        op.bulk_insert(tags, [{"id": 1, "name": "news"}, {"id": 2, "name": "misc"}])
        op.add_column("posts", sa.Column("summary", sa.Text(), nullable=True))
        op.add_column("posts", sa.Column("views", sa.Integer(), nullable=False, server_default="0"))
        op.create_index("ix_posts_summary", "posts", ["summary"])
        op.create_table_comment("tags", "labels for posts")
        op.alter_column("posts", "title", existing_type=sa.String(200), nullable=True)
        op.execute("CREATE INDEX ix_posts_views ON posts (views)")
        op.execute("INSERT INTO tags (id, name) VALUES (3, 'other')")
        op.execute("COMMENT ON TABLE tags IS 'labels'")
        op.execute("GRANT SELECT ON tags TO reporting")
    ''', dialect)
    assert [o.kind for o in ops] == [
        "create_table", "bulk_insert", "add_column", "add_column", "create_index",
        "create_table_comment", "alter_column", "execute", "execute", "execute", "execute",
    ]
    assert {o.risk for o in ops} == {"safe"}
    assert worst(ops) == "safe" and destructive(ops) == []
    assert ops[1].reason == "inserts 2 rows into tags"


def test_drops_of_indexes_constraints_and_renames_are_safe(tmp_path: Path) -> None:
    ops = record(tmp_path, '''
        op.drop_index("ix_posts_title", table_name="posts")
        op.drop_constraint("uq_posts_slug", "posts", type_="unique")
        op.execute("DROP INDEX ix_old")
        op.rename_table("posts", "articles")
        op.alter_column("articles", "title", new_column_name="headline", existing_type=sa.String(200))
    ''')
    assert [(o.kind, o.risk) for o in ops] == [
        ("drop_index", "safe"), ("drop_constraint", "safe"), ("execute", "safe"),
        ("rename_table", "safe"), ("alter_column", "safe"),
    ]
    assert "running clients" in ops[3].reason and "running clients" in ops[4].reason
    assert "data kept" in ops[4].reason


# --- review ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code, reason",
    [
        ('op.execute("DO $$ BEGIN PERFORM 1; END $$")', "SQL not recognised"),
        ('op.execute("SELECT setval(\'posts_id_seq\', 100)")', "runs a query or function"),
        ('op.execute("this is ) not ( sql")', "SQL not recognised"),
        ('op.execute("ALTER TYPE mood ADD VALUE \'meh\'")', "ALTER not understood"),
        ('op.execute("DROP FUNCTION purge() CASCADE")', "drops with CASCADE"),
        ('op.alter_column("posts", "title", type_=sa.String(20))', "without existing_type"),
        ("op.invoke(CustomOp())", "unknown operation custom"),
    ],
)
def test_unknown_things_need_review(tmp_path: Path, code: str, reason: str) -> None:
    [found] = record(tmp_path, code)
    assert found.risk == "review"
    assert reason in found.reason
    assert worst([found]) == "review"


def test_sql_too_deep_for_sqlparse_or_not_compilable_needs_review(tmp_path: Path) -> None:
    deep = "DELETE FROM t WHERE id IN " + "(" * 150 + "SELECT 1" + ")" * 150
    ops = record(tmp_path, f"""
        op.execute({deep!r})
        op.execute(sa.schema.CreateTable(sa.Table(
            "docs", sa.MetaData(), sa.Column("words", sa.dialects.postgresql.TSVECTOR))))
    """, "sqlite")
    assert [(o.risk, o.sql) for o in ops] == [("review", deep), ("review", None)]
    assert ops[0].reason.startswith("SQL cannot be parsed (Maximum grouping depth exceeded")
    assert ops[1].reason.startswith("executes CreateTable that cannot be compiled")


@pytest.mark.parametrize(
    "code, why",
    [
        ('op.get_bind().execute(sa.text("DELETE FROM posts"))', "calls op.get_bind()"),
        ('conn = op.get_context().bind\nconn.execute(sa.text("DELETE FROM posts"))',
         "reads op.get_context().bind"),
        ("try:\n    op.get_bind()\nexcept Exception:\n    pass\nop.drop_index('ix_b')",
         "calls op.get_bind()"),
        ('with op.batch_alter_table("posts") as b:\n    b.get_bind()', "calls op.get_bind()"),
    ],
)
def test_code_using_the_connection_needs_review(tmp_path: Path, code: str, why: str) -> None:
    ops = record(tmp_path, f'op.create_index("ix_a", "posts", ["a"])\n{code}')
    assert ops[0].kind == "create_index"
    python = ops[-1]
    assert (python.kind, python.risk) == ("python", "review")
    assert python.reason.startswith("upgrade() cannot be analysed: ")
    assert why in python.reason
    assert worst(ops) == "review"


def test_downgrade_that_raises_needs_review(tmp_path: Path) -> None:
    module = load(
        tmp_path,
        'op.add_column("posts", sa.Column("slug", sa.String(50)))',
        'op.drop_index("ix_posts_slug", table_name="posts")\n'
        'raise RuntimeError("cannot restore slugs\\nsee ticket 42")\n'
        'op.drop_column("posts", "slug")',
    )
    down = operations(module, "downgrade", "sqlite")
    assert summary(down) == [
        ("drop_index", "posts", None, "safe", False),
        ("python", None, None, "review", False),
    ]
    assert down[-1].reason == (
        "downgrade() cannot be analysed: raised RuntimeError: cannot restore slugs"
    )
    assert worst(operations(module, "upgrade", "sqlite")) == "safe"


def test_not_implemented_and_missing_functions_need_review(tmp_path: Path) -> None:
    module = load(tmp_path, "pass", 'raise NotImplementedError("one-way data fix")')
    [down] = operations(module, "downgrade", "postgresql")
    assert down.reason == (
        "downgrade() cannot be analysed: raised NotImplementedError: one-way data fix"
    )
    del module.downgrade
    [missing] = operations(module, "downgrade", "postgresql")
    assert (missing.risk, missing.reason) == (
        "review", "downgrade() cannot be analysed: the module has no downgrade()"
    )


# --- the recorder itself ---------------------------------------------------------------------


def test_dialect_is_visible_to_the_migration(tmp_path: Path) -> None:
    module = load(tmp_path, '''
        if op.get_context().dialect.name == "postgresql":
            op.execute("DROP TABLE pg_only")
        else:
            with op.get_context().autocommit_block():
                op.add_column("t", sa.Column("c", sa.Integer))
    ''')
    assert [o.kind for o in operations(module, "upgrade", "postgresql")] == ["execute"]
    assert [o.kind for o in operations(module, "upgrade", "sqlite")] == ["add_column"]


def test_alembic_op_proxy_is_restored(tmp_path: Path) -> None:
    module = load(tmp_path, 'op.drop_table("t")', 'raise ValueError("no")')
    before = getattr(alembic.op, "_proxy", None)
    assert before is None
    operations(module, "upgrade", "sqlite")
    operations(module, "downgrade", "sqlite")
    assert getattr(alembic.op, "_proxy", None) is before
    context = MigrationContext.configure(dialect_name="sqlite", opts={"as_sql": True})
    with Operations.context(context) as real:
        assert operations(module, "upgrade", "sqlite")[0].kind == "drop_table"
        assert getattr(alembic.op, "_proxy") is real


#: Code in a migration's source its reading cannot see: (upgrade body, the extra row's kind).
UNSEEN_CODE = {
    "as_sql_branch": ('if not op.get_context().as_sql:\n    op.drop_table("t")', "unrendered"),
    "as_sql_option": ('if not op.get_context().opts["as_sql"]:\n    op.drop_table("t")', "unrendered"),
    "pool_cursor": ("op.get_bind().connection.cursor().execute('DROP TABLE t')", "raw_dbapi"),
    "driver_connection": ("bind = op.get_bind()\nbind.connection.driver_connection.cursor()", "raw_dbapi"),
    "nested_connection": ("op.get_context().connection.connection.execute('DROP TABLE t')", "raw_dbapi"),
    "bind_connection": ("op.get_bind().connection.execute('DROP TABLE t')", "raw_dbapi"),
    "raw_connection": ("op.get_bind().engine.raw_connection()", "raw_dbapi"),
    "executescript": ("op.get_bind().connection.executescript('DROP TABLE t;')", "raw_script"),
}


@pytest.mark.parametrize("name", list(UNSEEN_CODE))
def test_code_the_reading_cannot_see_gives_one_review_row(tmp_path: Path, name: str) -> None:
    """A test of ``as_sql`` or a raw DB-API connection in the direction read gives one "review"
    row saying so (the guard watches such a step); the other direction is not marked."""
    body, kind = UNSEEN_CODE[name]
    module = load(tmp_path, 'op.add_column("t", sa.Column("a", sa.Integer))\n' + body,
                  'op.drop_column("t", "a")')
    rows = [row for row in operations(module, "upgrade", "sqlite") if row.kind == kind]
    assert [(row.risk, row.table) for row in rows] == [("review", None)]
    assert "which its reading cannot see" in rows[0].reason
    assert [(o.kind, o.risk) for o in operations(module, "downgrade", "sqlite")] == [("drop_column", "destroys")]


def test_the_words_in_comments_and_strings_mark_nothing(tmp_path: Path) -> None:
    """Only code counts: a comment or a docstring naming ``as_sql`` or a cursor is not code."""
    module = load(tmp_path, '''
        """Runs the same whether as_sql or not; no .cursor() or executescript here."""
        # if not op.get_context().as_sql: op.get_bind().connection.cursor()
        op.add_column("t", sa.Column("a", sa.Integer))
    ''')
    assert [o.kind for o in operations(module, "upgrade", "sqlite")] == ["add_column"]


def test_readings_sharing_one_context_do_not_leak_into_each_other(tmp_path: Path) -> None:
    """Every migration is read through one recording context per backend: one that reaches for
    the connection is stopped there, and the next one, which does not, is read whole; read
    again, the first is stopped again (nothing of one reading stays for the next)."""
    reaches = load(tmp_path, '''
        op.add_column("t", sa.Column("a", sa.Integer))
        op.get_context().connection.execute(sa.text("DELETE FROM t"))
        op.drop_table("never_seen")
    ''')
    plain = load(tmp_path, '''
        assert op.get_context().as_sql
        op.add_column("t", sa.Column("b", sa.Integer))
        op.drop_table("t2")
    ''')
    first = operations(reaches, "upgrade", "sqlite")
    assert [(o.kind, o.risk) for o in first] == [("add_column", "safe"), ("python", "review")]
    assert "reads op.get_context().bind / .connection" in first[1].reason
    assert [(o.kind, o.table) for o in operations(plain, "upgrade", "sqlite")] == [
        ("add_column", "t"), ("drop_table", "t2"), ("unrendered", None),  # it tests as_sql
    ]
    assert [(o.kind, o.risk) for o in operations(reaches, "upgrade", "sqlite")] == [
        ("add_column", "safe"), ("python", "review"),
    ]


def test_worst_orders_risks() -> None:
    def op(risk: Any) -> Operation:
        return Operation("execute", None, None, risk, risk)

    assert worst([]) == "safe"
    assert worst([op("safe"), op("review")]) == "review"
    assert worst([op("review"), op("may_fail"), op("safe")]) == "may_fail"
    assert worst([op("may_fail"), op("destroys"), op("review")]) == "destroys"
    assert destructive([op("safe"), op("destroys")]) == [op("destroys")]


# --- count_losses on real databases -----------------------------------------------------------

SCHEMA = [
    "CREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR(100))",
    "CREATE TABLE empty_table (id INTEGER PRIMARY KEY)",
    "CREATE TABLE posts (id INTEGER PRIMARY KEY, title VARCHAR(200), body TEXT, n INTEGER, "
    "price NUMERIC(10, 2), score FLOAT)",
    'CREATE TABLE "Weird Table" (id INTEGER PRIMARY KEY, "Odd Col" VARCHAR(10))',
]
ROWS = [
    "INSERT INTO users (id, email) VALUES (1, 'a@x'), (2, NULL), (3, 'c@x')",
    "INSERT INTO posts (id, title, body, n, price, score) VALUES "
    "(1, 'short', 'b1', 1, 1.25, 1.0), "
    "(2, 'a title that is well over twenty', 'b2', 40000, 3.50, 2.5), "
    "(3, NULL, NULL, -40000, NULL, NULL), "
    "(4, 'exactly twenty chars', NULL, NULL, 7.10, 4.0), "
    "(5, 'twenty-one characters', 'b5', 32767, 2.05, -0.5)",
    'INSERT INTO "Weird Table" (id, "Odd Col") VALUES (1, \'x\'), (2, NULL)',
]

DESTROYING_DOWNGRADE = '''
op.drop_table("users")
op.drop_table("empty_table")
op.drop_table("no_such_table")
op.drop_column("posts", "body")
op.drop_column("posts", "no_such_column")
with op.batch_alter_table("Weird Table") as batch_op:
    batch_op.drop_column("Odd Col")
op.alter_column("posts", "title", existing_type=sa.String(200), type_=sa.String(20))
op.alter_column("posts", "n", existing_type=sa.Integer(), type_=sa.SmallInteger())
op.alter_column("posts", "price", existing_type=sa.Numeric(10, 2), type_=sa.Numeric(10, 1))
op.alter_column("posts", "score", existing_type=sa.Float(), type_=sa.Integer())
op.alter_column("posts", "email", existing_type=sa.String(200), type_=sa.String(2))
op.alter_column("users", "email", existing_type=sa.String(100), type_=sa.Boolean())
op.add_column("posts", sa.Column("slug", sa.String(20), nullable=False))
op.execute("DELETE FROM users")
op.execute('TRUNCATE "Weird Table"')
op.execute("DROP TABLE IF EXISTS no_such_table, Empty_Table")
op.execute("ALTER TABLE posts DROP COLUMN title")
op.execute("UPDATE posts SET title = 'x' WHERE id = 1")
op.execute("DELETE FROM posts WHERE id > 3")
'''


def snapshot(engine: sa.Engine) -> Any:
    """Every table's columns and rows, plus the file's bytes on SQLite."""
    with engine.connect() as connection:
        inspector = sa.inspect(connection)
        state: dict[str, Any] = {}
        for name in sorted(inspector.get_table_names()):
            columns = [c["name"] for c in inspector.get_columns(name)]
            table = sa.table(name, *[sa.column(c) for c in columns])
            rows = connection.execute(sa.select(table).order_by(*table.c)).all()
            state[name] = (columns, [tuple(row) for row in rows])
    if engine.dialect.name == "sqlite":
        assert engine.url.database is not None
        state["file sha256"] = hashlib.sha256(Path(engine.url.database).read_bytes()).hexdigest()
    return state


@pytest.fixture
def seeded(db_url: str) -> Any:
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        if engine.dialect.name == "mysql":  # the standard "quoted names" of SCHEMA and ROWS
            connection.exec_driver_sql("SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')")
        for statement in SCHEMA + ROWS:
            connection.exec_driver_sql(statement)
    yield engine
    engine.dispose()


def test_count_losses_counts_exactly_and_changes_nothing(tmp_path: Path, seeded: sa.Engine) -> None:
    dialect = seeded.dialect.name
    ops = operations(load(tmp_path, "pass", DESTROYING_DOWNGRADE), "downgrade", dialect)
    assert worst(ops) == "destroys"
    before = snapshot(seeded)
    with seeded.connect() as connection:
        losses = count_losses(connection, ops)
        assert not connection.in_transaction()
    assert snapshot(seeded) == before
    # The operations are followed in order: what an earlier one dropped is not lost twice,
    # what an earlier one emptied holds nothing that existed.
    assert [(l.table, l.column, l.rows) for l in losses] == [
        ("users", None, 3),
        ("empty_table", None, 0),  # harmless, but reported: the caller decides
        ("posts", "body", 3),
        ("Weird Table", "Odd Col", 1),
        ("posts", "title", 2),  # longer than 20
        ("posts", "n", 2),  # outside SMALLINT
        ("posts", "price", 2),  # 1.25 and 2.05 need two decimals
        ("posts", "score", 2),  # 2.5 and -0.5 are not whole
        # users.email to Boolean, DELETE FROM users: users is gone already
        ("Weird Table", None, 2),  # TRUNCATE "Weird Table"
        # DROP TABLE ... Empty_Table: gone already
        ("posts", "title", 4),  # ALTER TABLE posts DROP COLUMN title
        # UPDATE posts SET title: no title any more
        ("posts", None, 2),  # DELETE ... WHERE id > 3: counted
    ]
    assert losses[0] == Loss("users", None, 3, "drops table users and every row in it: 3 rows")
    assert losses[4].reason.endswith(": 2 values that do not fit")
    assert losses[-1].reason.endswith("DELETE FROM posts WHERE id > 3: 2 rows")


def test_count_losses_inside_the_callers_transaction(tmp_path: Path, seeded: sa.Engine) -> None:
    """A caller already in a transaction gets a savepoint, rolled back; its transaction goes on."""
    ops = operations(load(tmp_path, 'op.drop_column("posts", "title")'), "upgrade", seeded.dialect.name)
    before = snapshot(seeded)
    with seeded.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM users")).scalar_one() == 3
        assert connection.in_transaction()
        losses = count_losses(connection, ops)
        assert connection.in_transaction()
        assert connection.execute(sa.text("SELECT count(*) FROM posts")).scalar_one() == 5
        connection.rollback()
    assert losses == [Loss("posts", "title", 4, "drops column posts.title and its values: 4 non-NULL values")]
    assert snapshot(seeded) == before


def test_count_losses_ignores_non_destructive_steps(tmp_path: Path, seeded: sa.Engine) -> None:
    ops = operations(load(tmp_path, '''
        op.add_column("posts", sa.Column("slug", sa.String(20), nullable=False))
        op.create_index("ix_users_email", "users", ["email"], unique=True)
        op.alter_column("posts", "title", type_=sa.String(5))
        op.execute("SELECT 1")
    '''), "upgrade", seeded.dialect.name)
    assert [o.risk for o in ops] == ["may_fail", "may_fail", "review", "review"]
    with seeded.connect() as connection:
        assert count_losses(connection, ops) == []


def test_made_migrations_of_a_real_project(tmp_path: Path, db_url: str) -> None:
    """Files ``flask db makemigrations`` wrote, loaded through Project.script: the added
    column's downgrade destroys it (in a batch, the default on every backend, as in
    Flask-Migrate 4) and loses exactly the filled rows."""
    project = new_project(tmp_path, db_url)
    for args in (("init",), ("makemigrations",), ("upgrade",)):
        result = project.db(*args)
        assert result.exit_code == 0, result.output
    project.write("blog/models.py", BLOG_WITH_BODY)
    for args in (("makemigrations",), ("upgrade",)):
        result = project.db(*args)
        assert result.exit_code == 0, result.output
    project.query_write(
        "INSERT INTO users (id, email) VALUES (1, 'a@x')",
        "INSERT INTO posts (id, title, author_id, body) VALUES "
        "(1, 't1', 1, 'text'), (2, 't2', 1, NULL), (3, 't3', 1, 'more')",
    )
    app = project.app()
    rollback = app.extensions["rollback"].project(app)
    dialect = sa.make_url(db_url).get_backend_name()
    first, second = rollback.graph.of_app("blog")
    initial = rollback.script.get_revision(first.revision).module
    added = rollback.script.get_revision(second.revision).module

    up = operations(initial, "upgrade", dialect)
    assert worst(up) == "safe" and up[0].kind == "create_table"
    assert summary(operations(added, "upgrade", dialect)) == [
        ("add_column", "posts", "body", "safe", True),
    ]
    down = operations(added, "downgrade", dialect)
    assert summary(down) == [("drop_column", "posts", "body", "destroys", True)]
    assert [o.kind for o in destructive(operations(initial, "downgrade", dialect))] == ["drop_table"]

    engine = project.engine()
    try:
        with engine.connect() as connection:
            assert [(l.table, l.column, l.rows) for l in count_losses(connection, down)] == [
                ("posts", "body", 2)
            ]
    finally:
        engine.dispose()
    assert project.query("SELECT count(body) FROM posts") == [(2,)]


BLOG_WITH_BODY = '''
from sqlalchemy.orm import Mapped, mapped_column
from .. import db


class Post(db.Model):
    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(db.String(200))
    author_id: Mapped[int] = mapped_column(db.ForeignKey("users.id"))
    body: Mapped[str | None] = mapped_column(db.Text)
'''

