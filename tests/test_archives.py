"""Archives that do not get in the way (issue 8): an archive keeps no dependency on the types
the migration drops (PostgreSQL enums, domains, extension types, arrays of them), ``restore``
casts the values back to the re-created types, and archive names fit the backend's identifier
limit (bytes on PostgreSQL, characters and file name bytes on MariaDB), stay readable and never
collide.

Real projects on real SQLite files, a throwaway PostgreSQL and MariaDB; assertions on exit codes,
output, schema and rows.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import pytest
import sqlalchemy as sa

from flask_rollback.archive import ArchiveLog, identifier_limit
from tests.projects import Project, revision_of, write_migration
from tests.test_dataloss import (
    BLOG_NULLABLE_TITLE,
    archives,
    blog_project,
    columns,
    db,
    error_lines,
    fingerprint,
)

#: blog.Post gains a nullable ``mood`` enum column (a PostgreSQL type named ``mood``).
BLOG_WITH_MOOD = BLOG_NULLABLE_TITLE + (
    '    mood: Mapped[str | None] = mapped_column(db.Enum("happy", "sad", "meh", name="mood"))\n'
)
MOODS = ("UPDATE posts SET mood = 'happy' WHERE id = 1", "UPDATE posts SET mood = 'meh' WHERE id = 3")
PG_ENUM = "from sqlalchemy.dialects import postgresql"


def pg_type_exists(project: Project, name: str) -> bool:
    return project.query(f"SELECT count(*) FROM pg_type WHERE typname = '{name}'") == [(1,)]


def column_type(project: Project, table: str, column: str) -> str:
    """PostgreSQL: the column's type as declared (``text``, ``mood``, ``mood[]``, a domain)."""
    ((name,),) = project.query(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        f"WHERE attrelid = CAST('{table}' AS regclass) AND attname = '{column}'"
    )
    return str(name)


def quoted(project: Project, name: str) -> str:
    """``name`` quoted for raw SQL on the project's backend."""
    engine = project.engine()
    try:
        return engine.dialect.identifier_preparer.quote_identifier(name)
    finally:
        engine.dispose()


def listed(project: Project) -> list[str]:
    """The archive names ``flask db archives`` prints, one per row under its header."""
    lines = db(project, "archives").output.splitlines()
    assert lines[0].split() == ["archive", "object", "rows", "from", "migration", "direction", "created"]
    return [line.split()[0] for line in lines[1:]]


# -- no dependency on types ------------------------------------------------------------------


def drop_mood_migration(project: Project, postgresql: bool, mood_labels: str = "'happy', 'sad', 'meh'") -> None:
    """blog 0002: drop posts.mood, then (PostgreSQL) its type; downgrade re-creates both."""
    if postgresql:
        upgrade = 'op.drop_column("posts", "mood")\nop.execute("DROP TYPE mood")'
        downgrade = (
            f'op.execute("CREATE TYPE mood AS ENUM ({mood_labels})")\n'
            'op.add_column("posts", sa.Column("mood", postgresql.ENUM(name="mood", create_type=False)))'
        )
    else:  # SQLite: an Enum is a VARCHAR, there is no type to drop
        upgrade = 'op.drop_column("posts", "mood")'
        downgrade = 'op.add_column("posts", sa.Column("mood", sa.Enum("happy", "sad", "meh", name="mood")))'
    write_migration(
        project, "blog", "0002_drop_mood.py", "blog0002", revision_of(project, "blog", "0001"),
        upgrade, downgrade, header=PG_ENUM,
    )


def test_an_enum_column_archive_lets_the_migration_drop_the_type(tmp_path: Path, db_url: str) -> None:
    postgresql = db_url.startswith("postgresql")
    project = blog_project(tmp_path, db_url, BLOG_WITH_MOOD)
    project.query_write(*MOODS)
    original = project.query("SELECT id, title, mood FROM posts ORDER BY id")
    drop_mood_migration(project, postgresql)

    name = "rollback_archives_blog0002_posts__mood"
    ran = db(project, "upgrade", "--archive")
    assert f"Archived posts.mood into {name} before blog.0002_drop_mood" in ran.stdout
    assert "mood" not in columns(project, "posts")
    assert project.query(f"SELECT id, mood FROM {name} ORDER BY id") == [(1, "happy"), (3, "meh")]
    if postgresql:
        assert not pg_type_exists(project, "mood")  # the migration's own DROP TYPE ran
        assert column_type(project, name, "mood") == "text"

    db(project, "downgrade")  # re-creates the type and an empty column
    if postgresql:
        assert column_type(project, "posts", "mood") == "mood"
    restored = db(project, "restore", name)
    assert f"Restored posts.mood from {name}: 2 rows updated, 0 inserted." in restored.output
    assert project.query("SELECT id, title, mood FROM posts ORDER BY id") == original
    assert archives(project) == []


def test_a_value_the_recreated_enum_refuses_fails_the_restore_and_keeps_the_archive(tmp_path: Path, pg_url: str) -> None:
    project = blog_project(tmp_path, pg_url, BLOG_WITH_MOOD)
    project.query_write(*MOODS)
    drop_mood_migration(project, postgresql=True, mood_labels="'happy', 'sad'")  # no 'meh' any more
    name = "rollback_archives_blog0002_posts__mood"
    db(project, "upgrade", "--archive")
    db(project, "downgrade")
    before = fingerprint(project)

    refused = db(project, "restore", name, code=1)
    (error,) = error_lines(refused)
    assert error.startswith(f"Error: cannot restore {name}: ") and "meh" in error
    assert error.endswith("nothing was written, the archive is kept")
    assert fingerprint(project) == before

    project.query_write("ALTER TYPE mood ADD VALUE 'meh'")
    assert "2 rows updated" in db(project, "restore", name).output
    assert project.query("SELECT id, mood FROM posts ORDER BY id") == [(1, "happy"), (2, None), (3, "meh")]


#: The registry as version 0.1 created it; its archives kept the column's own type.
REGISTRY_0_1 = (
    "CREATE TABLE rollback_archives (name VARCHAR(63) PRIMARY KEY, app VARCHAR(64) NOT NULL, "
    "migration VARCHAR(255) NOT NULL, revision VARCHAR(64) NOT NULL, direction VARCHAR(8) NOT NULL, "
    "source_table VARCHAR(255) NOT NULL, source_column VARCHAR(255), key_columns VARCHAR(1000) NOT NULL, "
    "rows INTEGER NOT NULL, created_at TIMESTAMP WITH TIME ZONE NOT NULL)"
)


def test_an_archive_of_0_1_that_kept_the_enum_type_is_listed_and_restored(
    tmp_path: Path, pg_url: str
) -> None:
    project = blog_project(tmp_path, pg_url, BLOG_WITH_MOOD)
    project.query_write(*MOODS)
    original = project.query("SELECT id, mood FROM posts ORDER BY id")
    name = "rollback_archives_blog0001_posts__mood"
    project.query_write(
        REGISTRY_0_1,
        f"CREATE TABLE {name} AS SELECT id, mood FROM posts WHERE mood IS NOT NULL",
        f"INSERT INTO rollback_archives VALUES ('{name}', 'blog', 'blog.0001_initial', 'blog0001', "
        "'down', 'posts', 'mood', 'id', 2, now())",
        "UPDATE posts SET mood = NULL",
    )
    assert column_type(project, name, "mood") == "mood"
    assert listed(project) == [name]
    assert "2 rows updated, 0 inserted." in db(project, "restore", name).output
    assert project.query("SELECT id, mood FROM posts ORDER BY id") == original
    assert archives(project) == []


#: A table whose columns use an enum, an array of it, a domain over varchar(5) with a check,
#: and citext (an extension's type), all created, then dropped, by the migrations.
CREATE_MOODS = [
    "CREATE EXTENSION citext",
    "CREATE TYPE mood AS ENUM ('happy', 'sad', 'meh')",
    "CREATE DOMAIN short_code AS varchar(5) CHECK (VALUE <> '')",
    "CREATE TABLE moods (id serial PRIMARY KEY, mood mood, history mood[], code short_code, name citext)",
]
DROP_MOODS = ["DROP TABLE moods", "DROP DOMAIN short_code", "DROP TYPE mood", "DROP EXTENSION citext"]


def executed(statements: list[str]) -> str:
    """Migration code running each raw SQL statement with ``op.execute``."""
    return "\n".join(f"op.execute({statement!r})" for statement in statements)


def test_a_table_of_database_made_types_is_archived_and_its_types_dropped(
    tmp_path: Path, pg_url: str
) -> None:
    project = blog_project(tmp_path, pg_url)
    write_migration(
        project, "blog", "0002_moods.py", "blog0002", revision_of(project, "blog", "0001"),
        executed(CREATE_MOODS), executed(DROP_MOODS),
    )
    db(project, "upgrade")
    project.query_write(
        "INSERT INTO moods (mood, history, code, name) VALUES "
        "('happy', '{happy,sad}', 'ab', 'Ann'), (NULL, '{}', NULL, NULL), ('meh', '{meh,NULL}', 'xyz', 'BOB')"
    )
    write_migration(
        project, "blog", "0003_drop_moods.py", "blog0003", "blog0002",
        'op.drop_table("moods")\n' + executed(DROP_MOODS[1:]), executed(CREATE_MOODS),
    )
    select = "SELECT id, mood::text, history::text, code, name::text FROM moods ORDER BY id"
    original = project.query(select)

    name = "rollback_archives_blog0003_moods"
    ran = db(project, "upgrade", "--archive")
    assert f"Archived moods into {name} before blog.0003_drop_moods" in ran.stdout
    assert "moods" not in project.tables()
    assert project.query("SELECT count(*) FROM pg_type WHERE typname IN ('mood', 'short_code', 'citext')") == [(0,)]
    assert project.query("SELECT count(*) FROM pg_extension WHERE extname = 'citext'") == [(0,)]
    assert {c: column_type(project, name, c) for c in ("id", "mood", "history", "code", "name")} == {
        "id": "integer", "mood": "text", "history": "text", "code": "text", "name": "text"}
    assert project.query(f"SELECT id, mood, history, code, name FROM {name} ORDER BY id") == original

    db(project, "downgrade")  # re-creates the extension, types and an empty table
    restored = db(project, "restore", name)
    assert f"Restored moods from {name}: 0 rows updated, 3 inserted." in restored.output
    assert project.query(select) == original
    assert [column_type(project, "moods", c) for c in ("mood", "history", "code", "name")] == [
        "mood", "mood[]", "short_code", "citext"]
    project.query_write("INSERT INTO moods (code) VALUES ('new')")  # the serial moved past them
    assert project.query("SELECT id FROM moods WHERE code = 'new'") == [(4,)]


def test_a_column_of_a_database_made_collation_is_archived_without_it(tmp_path: Path, pg_url: str) -> None:
    project = blog_project(tmp_path, pg_url)
    write_migration(
        project, "blog", "0002_nick.py", "blog0002", revision_of(project, "blog", "0001"),
        "op.execute(\"CREATE COLLATION nocase (provider = icu, locale = 'und-u-ks-level2', "
        "deterministic = false)\")\n"
        'op.execute("ALTER TABLE users ADD COLUMN nick text COLLATE nocase")',
        'op.drop_column("users", "nick")\nop.execute("DROP COLLATION nocase")',
    )
    db(project, "upgrade")
    project.query_write("UPDATE users SET nick = 'Ann' WHERE id = 1")
    write_migration(
        project, "blog", "0003_drop_nick.py", "blog0003", "blog0002",
        'op.drop_column("users", "nick")\nop.execute("DROP COLLATION nocase")',
        "op.execute(\"CREATE COLLATION nocase (provider = icu, locale = 'und-u-ks-level2', "
        "deterministic = false)\")\n"
        'op.execute("ALTER TABLE users ADD COLUMN nick text COLLATE nocase")',
    )
    name = "rollback_archives_blog0003_users__nick"
    db(project, "upgrade", "--archive")
    assert project.query("SELECT count(*) FROM pg_collation WHERE collname = 'nocase'") == [(0,)]
    db(project, "downgrade")
    db(project, "restore", name)
    assert project.query("SELECT id FROM users WHERE nick = 'ANN'") == [(1,)]  # the collation is back


# -- names: within the identifier limit in bytes, readable, never colliding -------------------


def long_names_project(tmp_path: Path, url: str, table: str, dropped: list[str]) -> Project:
    """blog 0002 creates ``table`` (id + ``dropped`` text columns) and fills 2 rows;
    0003 drops those columns, its downgrade adds them back."""
    project = blog_project(tmp_path, url)
    text_columns = "".join(f", sa.Column({c!r}, sa.Text)" for c in dropped)
    write_migration(
        project, "blog", "0002_long.py", "blog0002", revision_of(project, "blog", "0001"),
        f'op.create_table({table!r}, sa.Column("id", sa.Integer, primary_key=True){text_columns})',
        f"op.drop_table({table!r})",
    )
    db(project, "upgrade")
    names = ", ".join(quoted(project, c) for c in dropped)
    for row in (1, 2):
        values = ", ".join(f"'{c[:3]}{row}'" for c in dropped)
        project.query_write(f"INSERT INTO {quoted(project, table)} (id, {names}) VALUES ({row}, {values})")
    write_migration(
        project, "blog", "0003_drop_long.py", "blog0003", "blog0002",
        "\n".join(f"op.drop_column({table!r}, {c!r})" for c in dropped),
        "\n".join(f"op.add_column({table!r}, sa.Column({c!r}, sa.Text))" for c in dropped),
    )
    return project


def test_a_non_ascii_name_longer_than_63_bytes_is_shortened_by_bytes(tmp_path: Path, db_url: str) -> None:
    """PostgreSQL (and SQLite, for portable names) counts 63 bytes; MariaDB 64 characters,
    where the whole name fits."""
    table, column = "tâches", "описание_задачи"
    whole = f"rollback_archives_blog0003_{table}__{column}"
    assert len(whole) <= 63 < len(whole.encode())  # fits in characters, not in bytes
    project = long_names_project(tmp_path, db_url, table, [column])
    q = partial(quoted, project)
    original = project.query(f"SELECT id, {q(column)} FROM {q(table)} ORDER BY id")

    ran = db(project, "upgrade", "--archive")
    (name,) = [a["name"] for a in archives(project)]
    if project.url.startswith("mysql"):
        assert name == whole
    else:
        assert len(name.encode()) <= 63
        assert re.fullmatch(r"rollback_archives_blog0003_tâches__опис\w*_[0-9a-f]{8}", name), name
    assert f"Archived {table}.{column} into {name} before blog.0003_drop_long" in ran.stdout
    assert name in project.tables()  # the registered name is the table's real name
    assert listed(project) == [name]
    assert project.query(f"SELECT id, {q(column)} FROM {q(name)} ORDER BY id") == original

    db(project, "downgrade")
    assert "2 rows updated, 0 inserted." in db(project, "restore", name).output
    assert project.query(f"SELECT id, {q(column)} FROM {q(table)} ORDER BY id") == original
    assert archives(project) == [] and name not in project.tables()


def test_long_names_sharing_their_first_63_bytes_get_distinct_archives(tmp_path: Path, db_url: str) -> None:
    table = "measurements_of_the_weather_station"
    dropped = [f"temperature_reading_in_celsius_{n}" for n in ("north", "south")]
    wholes = [f"rollback_archives_blog0003_{table}__{c}" for c in dropped]
    assert wholes[0].encode()[:63] == wholes[1].encode()[:63]
    project = long_names_project(tmp_path, db_url, table, dropped)
    original = project.query(f"SELECT id, {', '.join(dropped)} FROM {table} ORDER BY id")

    db(project, "upgrade", "--archive")
    names = {a["column"]: a["name"] for a in archives(project)}
    assert set(names) == set(dropped)
    assert len(set(names.values())) == 2
    limit = identifier_limit(sa.make_url(db_url).get_backend_name())  # MariaDB: 64 characters
    assert all(limit.length(n) == limit.size and n in project.tables() for n in names.values())
    assert sorted(listed(project)) == sorted(names.values())
    for position, (column, name) in enumerate(names.items(), start=1):
        kept = [(row[0], row[position]) for row in original]
        assert project.query(f"SELECT id, {column} FROM {name} ORDER BY id") == kept

    db(project, "downgrade")
    for name in names.values():
        db(project, "restore", name)
    assert project.query(f"SELECT id, {', '.join(dropped)} FROM {table} ORDER BY id") == original


def test_an_archive_name_in_use_is_never_clobbered(tmp_path: Path, db_url: str) -> None:
    project = blog_project(tmp_path, db_url)
    write_migration(
        project, "blog", "0002_drop_title.py", "blog0002", revision_of(project, "blog", "0001"),
        'op.drop_column("posts", "title")',
        'op.add_column("posts", sa.Column("title", sa.String(200), nullable=True))',
    )
    name = "rollback_archives_blog0002_posts__title"
    # A table with the would-be name, an index with the next one (a table cannot take it on
    # PostgreSQL and SQLite; MariaDB names indexes per table) and a view with the one after.
    project.query_write(
        f"CREATE TABLE {name} (id integer PRIMARY KEY, note text)",
        f"INSERT INTO {name} VALUES (1, 'mine')",
        f"CREATE INDEX {name}_2 ON users (email)",
        f"CREATE VIEW {name}_3 AS SELECT id FROM users",
    )
    free, following = (2, 4) if project.url.startswith("mysql") else (4, 5)  # past the view
    titles = project.query("SELECT id, title FROM posts WHERE title IS NOT NULL ORDER BY id")

    ran = db(project, "upgrade", "--archive")
    assert f"Archived posts.title into {name}_{free} before" in ran.stdout
    assert project.query(f"SELECT id, note FROM {name}") == [(1, "mine")]
    assert project.query(f"SELECT id, title FROM {name}_{free} ORDER BY id") == titles

    # A registered archive whose table was dropped by hand keeps its name too.
    db(project, "downgrade")
    project.query_write(
        f"UPDATE posts SET title = (SELECT title FROM {name}_{free} WHERE {name}_{free}.id = posts.id)",
        f"DROP TABLE {name}_{free}",
    )
    db(project, "upgrade", "--archive")
    assert sorted(listed(project)) == [f"{name}_{free}", f"{name}_{following}"]
    assert project.query(f"SELECT id, title FROM {name}_{following} ORDER BY id") == titles
    db(project, "downgrade")
    db(project, "restore", f"{name}_{following}")
    assert project.query("SELECT id, title FROM posts WHERE title IS NOT NULL ORDER BY id") == titles
    assert project.query(f"SELECT id, note FROM {name}") == [(1, "mine")]


def test_a_mariadb_archive_name_fits_as_a_file_name(tmp_path: Path, mariadb_url: str) -> None:
    """MariaDB keeps a table in files named after it, a CJK character taking 5 bytes there,
    and refuses a name over 251 such bytes: with a short registry name, 62 characters are
    already too many."""
    table, column = "日" * 24, "本" * 24
    project = long_names_project(tmp_path, mariadb_url, table, [column])
    project.set_factory(["accounts", "blog"], config={"ROLLBACK_ARCHIVE_TABLE": "ar"})
    whole = f"ar_blog0003_{table}__{column}"
    assert len(whole) <= 64
    original = project.query(f"SELECT id, `{column}` FROM `{table}` ORDER BY id")

    db(project, "upgrade", "--archive")
    (name,) = [a["name"] for a in archives(project)]
    assert re.fullmatch(rf"ar_blog0003_{table}__本+_[0-9a-f]{{8}}", name), name
    assert name in project.tables()
    assert project.query(f"SELECT id, `{column}` FROM `{name}` ORDER BY id") == original
    db(project, "downgrade")
    db(project, "restore", name)
    assert project.query(f"SELECT id, `{column}` FROM `{table}` ORDER BY id") == original
    with pytest.raises(sa.exc.DBAPIError, match="File name too long"):  # what the cut avoids
        project.query_write(f"CREATE TABLE `{whole}` (id integer)")


def test_an_archive_table_setting_too_long_to_name_archives_is_refused(tmp_path: Path, sqlite_url: str) -> None:
    project = blog_project(tmp_path, sqlite_url)
    registry = "archives_of_everything_this_application_has_ever_dropped"
    project.set_factory(["accounts", "blog"], config={"ROLLBACK_ARCHIVE_TABLE": registry})
    write_migration(
        project, "blog", "0002_drop_title.py", "blog0002", revision_of(project, "blog", "0001"),
        'op.drop_column("posts", "title")',
    )
    before = fingerprint(project)
    refused = db(project, "upgrade", "--archive", code=1)
    (error,) = error_lines(refused)
    assert f"archive table name {registry!r} is too long to name archives within 63 bytes" in error
    assert "ROLLBACK_ARCHIVE_TABLE" in error
    assert fingerprint(project) == before


def test_names_are_measured_as_each_backend_measures_identifiers() -> None:
    """PostgreSQL (and SQLite, for portability) count UTF-8 bytes; MySQL counts characters."""
    log = ArchiveLog("rollback_archives")
    column = "описание_задачи_проекта"
    whole = f"rollback_archives_tasks0002_tâches__{column}"
    assert len(whole) <= 64 < len(whole.encode())
    for dialect in ("postgresql", "sqlite"):
        name = log._name("tasks0002", "tâches", column, set(), identifier_limit(dialect))
        assert len(name.encode()) <= 63 and name != whole
        assert name.startswith("rollback_archives_tasks0002_tâches__опис")
    for dialect in ("mysql", "mariadb"):
        assert log._name("tasks0002", "tâches", column, set(), identifier_limit(dialect)) == whole
