"""Schema snapshots: an empty database built at the heads in one step, not by replaying history.

A snapshot is the dump of a scratch database after every migration ran from empty: the schema
and the rows the migrations themselves inserted (seed data), without flask-rollback's own tables.
It is made with the database's own tools (SQLite: ``sqlite_master`` and the rows; PostgreSQL:
``pg_dump``; MariaDB/MySQL: ``mariadb-dump``), normalised so that making it again gives the same
bytes, and kept per bind and backend in ``<migrations>/schema-snapshots/`` (``sqlite.sql``,
``postgresql.sql``, ``mariadb.sql``; ``<bind>.<backend>.sql`` for the other binds). That folder
holds no Python file, so it is never taken for an app (app folders are those with migrations).

The header says what the snapshot was built from: the stored heads and a digest over (revision
id, sha256) of every migration file, read from the revision index without importing anything,
plus the body's sha256. A snapshot is *current* when both digests match; ``upgrade`` of an empty
database loads only a current one, ``check`` fails on one that is not, and ``predeploy`` also
replays the migrations on a scratch database and compares the dumps.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from .database import libpq_environment, mask
from .errors import EXIT_COULD_NOT_RUN, RollbackError
from .graph import Migration
from .index import Declared
from .project import Project
from .recorder import file_sha256, utcnow, who
from .wording import plural, shown_path

#: Bumped when the header or the dump's shape changes: a snapshot of another format is stale.
FORMAT = 1
FOLDER = "schema-snapshots"
MAGIC = "-- flask-rollback schema snapshot"
#: Bind keys that can be part of a file name as they are.
BIND_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
HEADER_RE = re.compile(r"^-- (format|backend|bind|migrations|heads|digest|body): ?(.*)$")
#: Lines pg_dump writes that differ from run to run or server to server: the versions, and
#: pg_dump 15.14+'s ``\restrict KEY`` / ``\unrestrict KEY`` (a random key; psql meta-commands the
#: driver could not run anyway).
PG_VARIABLE_RE = re.compile(r"^(?:-- Dumped (?:from database|by pg_dump) version .*|\\(?:un)?restrict .*)\n", re.M)
#: What mariadb-dump writes that depends on the run or the user: AUTO_INCREMENT counters (set
#: again by the rows themselves) and DEFINER clauses (the loading user may be another one).
MYSQL_AUTO_INCREMENT_RE = re.compile(r" AUTO_INCREMENT=\d+")
MYSQL_DEFINER_RE = re.compile(r" ?DEFINER=`(?:[^`]|``)*`@`(?:[^`]|``)*`")


@dataclass(frozen=True)
class Snapshot:
    """A snapshot file as read: what it was built from, and its body."""

    path: Path
    backend: str
    bind: str
    migrations: int
    heads: tuple[str, ...]
    digest: str
    body: str


class Unusable(Exception):
    """Why a snapshot file cannot be used (one line)."""


# -- names and digests ------------------------------------------------------------------------


def backend_name(connection: Connection) -> str:
    """``sqlite``, ``postgresql``, ``mariadb`` or ``mysql``: the server's own dump dialect."""
    name = connection.dialect.name
    if name in ("mysql", "mariadb"):
        return "mariadb" if getattr(connection.dialect, "is_mariadb", False) else "mysql"
    return name


def snapshot_path(project: Project, backend: str) -> Path:
    """Where the snapshot of ``project``'s bind for ``backend`` lives."""
    if project.bind is None:
        return project.root / FOLDER / f"{backend}.sql"
    if not BIND_RE.match(project.bind):
        raise RollbackError(
            f"bind key {project.bind!r} cannot name a snapshot file (letters, digits, '_' and '-' "
            "only); set ROLLBACK_SNAPSHOTS = False or rename the bind"
        )
    return project.root / FOLDER / f"{project.bind}.{backend}.sql"


def snapshot_files(project: Project) -> list[Path]:
    """The snapshot files of ``project``'s bind (every backend), whatever their state."""
    folder = project.root / FOLDER
    if not folder.is_dir():
        return []
    if project.bind is None:
        pattern = re.compile(r"^[a-z]+\.sql$")
    else:
        pattern = re.compile(rf"^{re.escape(project.bind)}\.[a-z]+\.sql$")
    return sorted(path for path in folder.iterdir() if pattern.match(path.name))


def digest(declared: Iterable[Declared]) -> str:
    """sha256 over (revision id, file sha256) of the migrations, in revision order."""
    lines = "".join(
        f"{item.revision} {item.sha256 or file_sha256(item.path)}\n"
        for item in sorted(declared, key=attrgetter("revision"))
    )
    return hashlib.sha256(lines.encode()).hexdigest()


def digest_of_all(declared: Mapping[str, Declared]) -> str:
    """``digest`` of every migration, made once per header map: ``loader.scan`` gives the same
    map again while no migration file changed."""
    for known, value in _digests:
        if known is declared:
            return value
    value = digest(declared.values())
    _digests[:] = [(declared, value), *_digests[:7]]
    return value


#: The digests of the last few header maps (one per bind of the project, usually).
_digests: list[tuple[Mapping[str, Declared], str]] = []


# -- the file ---------------------------------------------------------------------------------


def render(backend: str, bind: str, declared: list[Declared], heads: Iterable[str], body: str) -> str:
    lines = [
        MAGIC,
        f"-- format: {FORMAT}",
        f"-- backend: {backend}",
        f"-- bind: {bind}",
        f"-- migrations: {len(declared)}",
        f"-- heads: {' '.join(sorted(heads))}",
        f"-- digest: {digest(declared)}",
        f"-- body: {hashlib.sha256(body.encode()).hexdigest()}",
        "-- Made by 'flask db snapshot' (and makemigrations) from the migrations: do not edit, an",
        "-- edited snapshot is ignored. 'flask db upgrade' loads it into an empty database.",
        "",
    ]
    return "\n".join(lines) + "\n" + body


def read(path: Path) -> Snapshot:
    """Read and check a snapshot file, never through a symlink. Raises Unusable saying why."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise Unusable("it does not exist") from None
    except OSError as exc:
        if os.path.islink(path):
            raise Unusable("it is a symlink (never followed)") from None
        raise Unusable(f"it cannot be read: {exc.strerror or exc}") from None
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise Unusable("it is not a regular file")
        data = handle.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Unusable("it is not UTF-8 text") from None
    head, separator, body = text.partition("\n\n")
    lines = head.split("\n")
    if not separator or lines[0] != MAGIC:
        raise Unusable("it is not a flask-rollback schema snapshot")
    fields = {m.group(1): m.group(2) for m in map(HEADER_RE.match, lines[1:]) if m}
    if fields.get("format") != str(FORMAT):
        raise Unusable(f"it is of another format ({fields.get('format')!r}, this version reads {FORMAT})")
    if set(fields) != {"format", "backend", "bind", "migrations", "heads", "digest", "body"} or not fields[
        "migrations"
    ].isdigit():
        raise Unusable("its header is damaged")
    if hashlib.sha256(body.encode()).hexdigest() != fields["body"]:
        raise Unusable("its body was edited after it was made")
    return Snapshot(
        path, fields["backend"], fields["bind"], int(fields["migrations"]),
        tuple(fields["heads"].split()), fields["digest"], body,
    )


def stale_reason(project: Project, snapshot: Snapshot) -> str | None:
    """Why ``snapshot`` does not show the schema the migrations build now, or None (current)."""
    declared = project.declared
    if snapshot.digest == digest_of_all(declared):
        return None
    if snapshot.migrations != len(declared) or set(snapshot.heads) - set(declared):
        return (
            f"it was made from {plural(snapshot.migrations, 'migration')}, there "
            f"{'is' if len(declared) == 1 else 'are'} {len(declared)} now"
        )
    return "a migration file changed since it was made"


def current(project: Project, path: Path) -> Snapshot:
    """The snapshot at ``path`` if it is current; raises Unusable saying why not."""
    snapshot = read(path)
    reason = stale_reason(project, snapshot)
    if reason is not None:
        raise Unusable(reason)
    return snapshot


def write(path: Path, text: str) -> None:
    """Replace ``path`` atomically (a temporary file of the same folder, renamed): a symlink
    at ``path`` is replaced, never written through; a symlinked folder is refused."""
    folder = path.parent
    try:
        if folder.is_symlink():
            raise RollbackError(f"{shown_path(folder)} is a symlink; snapshots are never written through one")
        folder.mkdir(exist_ok=True)
        temporary = folder / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise RollbackError(
            f"cannot write the schema snapshot {shown_path(path)}: {exc.strerror or exc}; nothing was written"
        ) from None


# -- dumping ----------------------------------------------------------------------------------


def dump(project: Project, connection: Connection, url: URL) -> str:
    """The schema and rows of the database ``connection`` (at ``url``) is in, minus
    flask-rollback's own tables, as SQL that builds them again; the same bytes every time."""
    backend = connection.dialect.name
    own = project.recorder.is_own_table
    if backend == "sqlite":
        return _dump_sqlite(connection, own)
    if backend == "postgresql":
        return _dump_postgres(connection, url, own)
    if backend in ("mysql", "mariadb"):
        return _dump_mysql(connection, url, own)
    raise RollbackError(f"schema snapshots support SQLite, PostgreSQL and MariaDB/MySQL, not {backend}")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _dump_sqlite(connection: Connection, own: Callable[[str], bool]) -> str:
    """Tables by name (SQLite checks foreign keys only when rows are written, and the keys are
    deferred to the end of the load), then their rows in rowid order, views, indexes, triggers."""
    objects = connection.exec_driver_sql(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid"
    ).all()
    objects = [row for row in objects if not own(row.tbl_name)]
    order = {"table": 0, "view": 2, "index": 3, "trigger": 4}
    tables = sorted((row for row in objects if row.type == "table"), key=lambda row: row.name)
    lines = ["PRAGMA defer_foreign_keys = ON;"]
    lines += [f"{row.sql};" for row in tables]
    for row in tables:
        columns = [c[1] for c in connection.exec_driver_sql(f"PRAGMA table_info({_quote(row.name)})")]
        names = ",".join(_quote(c) for c in columns)
        values = " || ',' || ".join(f"quote({_quote(c)})" for c in columns)
        by = "rowid" if "WITHOUT ROWID" not in row.sql.upper() else ",".join(str(i + 1) for i in range(len(columns)))
        rendered = connection.exec_driver_sql(
            f"SELECT 'INSERT INTO {_quote(row.name).replace(chr(39), chr(39) * 2)}({names.replace(chr(39), chr(39) * 2)}) "
            f"VALUES(' || {values} || ');' FROM {_quote(row.name)} ORDER BY {by}"
        ).scalars()
        lines += list(rendered)
    if connection.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").first():
        for name, seq in connection.exec_driver_sql("SELECT name, seq FROM sqlite_sequence ORDER BY name"):
            if not own(name):
                quoted = name.replace("'", "''")
                lines.append(f"DELETE FROM sqlite_sequence WHERE name = '{quoted}';")
                lines.append(f"INSERT INTO sqlite_sequence(name, seq) VALUES('{quoted}', {int(seq)});")
    rest = sorted(
        (row for row in objects if row.type != "table"),
        key=lambda row: (order.get(row.type, 5), row.name if row.type != "view" else ""),
    )
    lines += [f"{row.sql};" for row in rest]
    connection.rollback()
    return "\n".join(lines) + "\n"


def _dump_postgres(connection: Connection, url: URL, own: Callable[[str], bool]) -> str:
    """``pg_dump`` with the rows as INSERTs (loadable through the driver, in one transaction)."""
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise RollbackError("a PostgreSQL snapshot needs pg_dump on PATH", EXIT_COULD_NOT_RUN)
    # Our tables, and the sequences they own (serial columns), whose counters differ run to run.
    relations = connection.execute(sa.text(
        "SELECT c.relname, t.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_depend d ON c.relkind = 'S' AND d.classid = 'pg_class'::regclass "
        "AND d.objid = c.oid AND d.deptype IN ('a', 'i') "
        "LEFT JOIN pg_class t ON t.oid = d.refobjid AND d.refclassid = 'pg_class'::regclass "
        "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'S')"
    )).all()
    connection.rollback()
    tables = [name for name, owner in relations if own(name) or (owner is not None and own(owner))]
    try:
        env, conninfo = libpq_environment(connection.dialect, url)
    except ValueError as exc:
        raise RollbackError(f"cannot run pg_dump: {exc}", EXIT_COULD_NOT_RUN) from None
    command = [
        pg_dump, "--no-owner", "--no-privileges", "--no-tablespaces", "--no-publications",
        "--no-subscriptions", "--no-security-labels", "--no-password", "--inserts",
        *(f'--exclude-table="{name.replace(chr(34), chr(34) * 2)}"' for name in sorted(tables)),
    ]
    if conninfo:
        command.append(f"--dbname={conninfo}")
    done = subprocess.run(
        command, env={**os.environ, **env}, stdin=subprocess.DEVNULL, capture_output=True, check=False
    )
    if done.returncode != 0:
        reason = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[0]
        raise RollbackError(f"pg_dump failed: {mask(reason, url)}", EXIT_COULD_NOT_RUN)
    return PG_VARIABLE_RE.sub("", done.stdout.decode("utf-8"))


@contextmanager
def _mysql_options(connection: Connection, url: URL) -> Iterator[str]:
    """A private (0600) option file with every connection parameter, the password included, so
    none is ever on a command line; removed afterwards."""
    from .backup import mysql_option_file

    text = mysql_option_file(connection, url)
    descriptor, name = tempfile.mkstemp(prefix="rollback_snapshot_", suffix=".cnf")
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        yield name
    finally:
        os.unlink(name)


def _mysql_program(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise RollbackError(f"a MariaDB/MySQL snapshot needs {names[0]} on PATH", EXIT_COULD_NOT_RUN)


def _dump_mysql(connection: Connection, url: URL, own: Callable[[str], bool]) -> str:
    program = _mysql_program("mariadb-dump", "mysqldump")
    database = url.database or ""
    tables = [name for name, _kind in connection.exec_driver_sql("SHOW FULL TABLES")]
    connection.rollback()
    with _mysql_options(connection, url) as options:
        command = [
            program, f"--defaults-extra-file={options}", "--single-transaction", "--routines",
            "--triggers", "--hex-blob", "--no-tablespaces", "--skip-comments", "--skip-dump-date",
            "--order-by-primary", "--no-create-db", "--skip-add-locks", "--skip-add-drop-table",
            *(f"--ignore-table={database}.{name}" for name in sorted(tables) if own(name)),
            "--", database,
        ]
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    if done.returncode != 0:
        reason = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise RollbackError(f"{Path(program).name} failed: {mask(reason, url)}", EXIT_COULD_NOT_RUN)
    text = done.stdout.decode("utf-8")
    return MYSQL_DEFINER_RE.sub("", MYSQL_AUTO_INCREMENT_RE.sub("", text))


# -- loading ----------------------------------------------------------------------------------


class LoadFailed(Exception):
    """The body did not load; nothing of it is left in the database."""


def load(project: Project, connection: Connection, url: URL, body: str) -> None:
    """Run a snapshot's body on ``connection``. SQLite and PostgreSQL: inside the caller's open
    transaction (a failure leaves nothing once it is rolled back). MariaDB/MySQL, whose DDL
    commits at once: through the ``mariadb`` client; on failure what it created is dropped again
    (the database was empty). Raises LoadFailed with the reason."""
    backend = connection.dialect.name
    raw = connection.connection.dbapi_connection
    if backend == "sqlite":
        try:
            for statement in _sqlite_statements(body):
                raw.execute(statement)  # type: ignore[union-attr]
        except Exception as exc:  # sqlite3.Error
            raise LoadFailed(str(exc).strip().splitlines()[0]) from None
    elif backend == "postgresql":
        search_path = connection.exec_driver_sql("SELECT current_setting('search_path')").scalar()
        cursor = raw.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(body)
        except Exception as exc:  # the driver's error: the caller rolls back
            raise LoadFailed(mask(str(exc).strip().splitlines()[0], url)) from None
        finally:
            cursor.close()
        # pg_dump empties search_path for the session; our own tables come next.
        connection.execute(sa.text("SELECT set_config('search_path', :p, false)"), {"p": search_path})
    else:
        _load_mysql(project, connection, url, body)


def _sqlite_statements(body: str) -> Iterator[str]:
    """The body's statements one by one (``executescript`` would COMMIT the caller's transaction
    first, before Python 3.12)."""
    import sqlite3

    pending = ""
    for line in body.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending.strip():
        yield pending


def _load_mysql(project: Project, connection: Connection, url: URL, body: str) -> None:
    program = _mysql_program("mariadb", "mysql")
    with _mysql_options(connection, url) as options:
        done = subprocess.run(
            [program, f"--defaults-extra-file={options}", "--batch", "--", url.database or ""],
            input=body.encode("utf-8"), capture_output=True, check=False,
        )
    if done.returncode == 0:
        return
    reason = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
    own = project.recorder.is_own_table
    rows = [(name, kind) for name, kind in connection.exec_driver_sql("SHOW FULL TABLES") if not own(name)]
    connection.exec_driver_sql("SET SESSION foreign_key_checks = 0")
    for name, kind in rows:
        what = "VIEW" if kind == "VIEW" else "TABLE"
        connection.exec_driver_sql(f"DROP {what} IF EXISTS `{name.replace('`', '``')}`")
    connection.exec_driver_sql("SET SESSION foreign_key_checks = 1")
    connection.commit()
    raise LoadFailed(mask(reason, url))


# -- the empty database -----------------------------------------------------------------------


def is_empty(project: Project, connection: Connection) -> bool:
    """No table or view besides flask-rollback's own, and those (the lock table excepted: this
    run may hold it) without a row."""
    backend = connection.dialect.name
    if backend == "sqlite":
        names = connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        ).scalars().all()
    elif backend == "postgresql":
        names = connection.exec_driver_sql(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
        ).scalars().all()
    else:
        names = [row[0] for row in connection.exec_driver_sql("SHOW FULL TABLES")]
    recorder = project.recorder
    if any(not recorder.is_own_table(name) for name in names):
        connection.rollback()
        return False
    quote = connection.dialect.identifier_preparer.quote
    for name in names:
        if name != project.settings.lock_table and connection.exec_driver_sql(
            f"SELECT 1 FROM {quote(name)} LIMIT 1"
        ).first():
            connection.rollback()
            return False
    connection.rollback()
    return True


# -- recording --------------------------------------------------------------------------------


def record_all(project: Project, connection: Connection, revisions: Iterable[str] | None = None) -> int:
    """The version table at the heads of ``revisions`` (default: every migration) and one log
    row per migration, marked fake (recorded, not run), in the caller's transaction; returns
    how many were recorded."""
    graph = project.graph
    declared = project.declared
    recorder = project.recorder
    recorder.version.create(connection, checkfirst=True)
    recorder.log.create(connection, checkfirst=True)
    chosen: Iterable[Migration]
    if revisions is None:
        heads, chosen = graph.heads_of_everything, graph.migrations.values()
    else:
        wanted = set(revisions)
        heads = graph.stored_heads(wanted)
        chosen = [m for revision, m in graph.migrations.items() if revision in wanted]
    if heads:
        connection.execute(recorder.version.insert(), [{"version_num": head} for head in heads])
    # Column by column: no object per row for the cycle collector to walk (10,000 rows).
    apps, names, digests = [], [], []
    for migration in chosen:
        apps.append(migration.app)
        names.append(migration.name)
        digests.append(declared[migration.revision].sha256 or file_sha256(migration.path))
    revisions = [migration.revision for migration in chosen]
    constants = _log_constants(project, connection)
    _insert_log_rows(connection, recorder.log, [apps, revisions, names, digests], constants)
    return len(revisions)


#: The log's columns: those that differ from row to row of ``record_all`` (what each varying row
#: holds, in this order), and those every row shares.
VARYING_COLUMNS = ("app", "revision", "name", "sha256")
CONSTANT_COLUMNS = ("direction", "fake", "started_at", "finished_at", "duration_ms", "host", "user")


def _log_constants(project: Project, connection: Connection) -> tuple[object, ...]:
    """The shared values (CONSTANT_COLUMNS order) as the driver takes them: each converted once
    by its column type's bind processor."""
    log = project.recorder.log
    dialect = connection.dialect
    now = utcnow()
    host, user = who()
    values = {"direction": "up", "fake": True, "started_at": now, "finished_at": now,
              "duration_ms": 0.0, "host": host, "user": user}
    bound = []
    for column in CONSTANT_COLUMNS:
        processor = log.c[column].type._cached_bind_processor(dialect)
        bound.append(processor(values[column]) if processor is not None else values[column])
    return tuple(bound)


#: The driver's placeholder for a positional parameter, by DBAPI paramstyle (psycopg takes
#: ``%s`` as well as its default ``%(name)s``).
PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
#: SQLite before 3.32 takes 999 parameters a statement.
SQLITE_PARAMETERS = 999


def _insert_log_rows(
    connection: Connection, table: sa.Table, varying: list[list[str]], constants: tuple[object, ...]
) -> None:
    """Insert a log row per item of the ``varying`` columns (VARYING_COLUMNS) with
    ``constants`` (CONSTANT_COLUMNS) in a handful of statements instead of one round trip per
    row, each constant sent once a statement where the database can take it so."""
    dialect = connection.dialect
    quote = dialect.identifier_preparer
    columns = ", ".join(quote.quote(c) for c in (*VARYING_COLUMNS, *CONSTANT_COLUMNS))
    head = f"INSERT INTO {quote.format_table(table)} ({columns}) "
    if dialect.name == "postgresql":
        _insert_rows_postgres(connection, head, varying, constants)
        return
    count = len(varying[0])
    marker = PLACEHOLDERS.get(dialect.paramstyle)
    if marker is None:  # another driver: its own executemany
        names = (*VARYING_COLUMNS, *CONSTANT_COLUMNS)
        connection.execute(
            table.insert(), [dict(zip(names, (*row, *constants))) for row in zip(*varying)]
        )
        return
    width = len(VARYING_COLUMNS)
    if dialect.name == "sqlite":
        # The constants once, the rows as a VALUES table (its columns are column1, column2...).
        size = (SQLITE_PARAMETERS - len(constants)) // width
        shared = ", ".join([marker] * len(constants))
        values = ", ".join(f"column{i + 1}" for i in range(width))
        for start in range(0, count, size):
            stop = min(start + size, count)
            rows = ", ".join([f"({', '.join([marker] * width)})"] * (stop - start))
            connection.exec_driver_sql(
                f"{head}SELECT {values}, {shared} FROM (VALUES {rows})",
                (*constants, *_row_by_row(varying, start, stop)),
            )
        return
    size = 1000
    group = f"({', '.join([marker] * (width + len(constants)))})"
    for start in range(0, count, size):
        stop = min(start + size, count)
        connection.exec_driver_sql(
            f"{head}VALUES {', '.join([group] * (stop - start))}",
            tuple(_row_by_row(varying, start, stop, constants)),
        )


def _row_by_row(
    columns: list[list[str]], start: int, stop: int, constants: tuple[object, ...] = ()
) -> list[object]:
    """Rows ``start`` to ``stop`` of ``columns`` as one flat list, row after row, each row
    followed by ``constants``."""
    width = len(columns) + len(constants)
    flat: list[object] = [None] * (width * (stop - start))
    for i, column in enumerate(columns):
        flat[i::width] = column[start:stop]
    for i, value in enumerate(constants, start=len(columns)):
        flat[i::width] = [value] * (stop - start)
    return flat


def _insert_rows_postgres(
    connection: Connection, head: str, varying: list[list[str]], constants: tuple[object, ...]
) -> None:
    """PostgreSQL: one statement, the varying columns as arrays (``unnest``), the constants
    once: no per-row parameters to parse or plan."""
    statement = sa.text(
        f"{head}SELECT t.*, {', '.join(f':c{i}' for i in range(len(constants)))} FROM unnest("
        + ", ".join(f"CAST(:v{i} AS text[])" for i in range(len(varying)))
        + ") AS t"
    )
    parameters: dict[str, object] = {f"v{i}": column for i, column in enumerate(varying)}
    parameters.update({f"c{i}": value for i, value in enumerate(constants)})
    connection.execute(statement, parameters)


# -- what the commands call -------------------------------------------------------------------


@dataclass(frozen=True)
class Fresh:
    """What ``upgrade`` of an empty database did with the snapshot: used it (``count``
    migrations recorded), or ignored it (``line`` says why; the migrations are replayed)."""

    path: Path
    used: bool
    line: str
    count: int = 0


def fresh_database(project: Project, connection: Connection, applied: AbstractSet[str]) -> Fresh | None:
    """Build an empty database from its current snapshot and record every migration as applied.
    None when no snapshot applies (snapshots off, not empty, no file): replay, nothing to say."""
    if not project.settings.snapshots or applied or not project.declared:
        return None
    backend = backend_name(connection)
    try:
        path = snapshot_path(project, backend)
    except RollbackError:
        return None
    if not os.path.lexists(path) or not is_empty(project, connection):
        return None
    shown = shown_path(path)
    try:
        snapshot = current(project, path)
    except Unusable as exc:
        return Fresh(path, False, f"Schema snapshot {shown} ignored: {exc}; replaying the migrations "
                                  "('flask db snapshot' makes it again).")
    if backend == "postgresql":
        # pg_dump names the scratch database's schema (public) in every statement.
        schema = connection.exec_driver_sql("SELECT current_schema()").scalar()
        connection.rollback()
        if schema != "public":
            return Fresh(path, False, f"Schema snapshot {shown} ignored: it builds schema public, "
                                      f"this connection migrates schema {schema}; replaying the migrations.")
    url = connection.engine.url
    try:
        if connection.dialect.name in ("mysql", "mariadb"):
            load(project, connection, url, snapshot.body)
            with connection.begin():
                count = record_all(project, connection)
        else:
            with connection.begin():
                load(project, connection, url, snapshot.body)
                count = record_all(project, connection)
    except LoadFailed as exc:
        return Fresh(path, False, f"Schema snapshot {shown} ignored: it did not load ({exc}); "
                                  "replaying the migrations.")
    return Fresh(path, True, f"Built the database from the schema snapshot {shown}: "
                             f"{plural(count, 'migration')} recorded as applied (--replay runs "
                             f"{'it' if count == 1 else 'them'} instead).", count)


@dataclass(frozen=True)
class Generated:
    """A snapshot written (or found unchanged) by ``generate``."""

    path: Path
    changed: bool
    #: How it was made: from the previous snapshot and the new migrations, or every migration.
    how: str


def generate(project: Project, incremental: bool = True) -> Generated:
    """Make the snapshot of ``project``'s bind for its backend on a scratch database: from the
    previous snapshot plus the new migrations when it is current for its own heads
    (``incremental``), else by replaying every migration."""
    if not project.settings.snapshots:
        raise RollbackError("schema snapshots are off (ROLLBACK_SNAPSHOTS = False)")
    from .database import connect
    from .scratch import scratch_database

    fix = "grant CREATEDB to the role, or set ROLLBACK_SNAPSHOTS = False"
    with scratch_database(project.url, fix) as url, connect(url) as scratch:
        path = snapshot_path(project, backend_name(scratch))
        base = _base(project, path) if incremental else None
        if base is not None:
            with scratch.begin():
                try:
                    load(project, scratch, url, base.body)
                except LoadFailed:
                    base = None
                else:
                    record_all(project, scratch, project.graph.closure(base.heads))
            if base is None:
                return generate(project, incremental=False)
            return _complete(project, scratch, "from the previous snapshot and the new migrations")
        return _complete(project, scratch, "every migration replayed")


def _complete(project: Project, scratch: Connection, how: str) -> Generated:
    """Run on ``scratch`` what its version table says is pending, dump it, write the file
    (unless the same bytes are there already)."""
    from .executor import execute
    from .plan import Planner

    graph = project.graph
    heads = project.recorder.stored_heads(scratch)
    scratch.rollback()
    try:
        execute(project, scratch, Planner(graph, heads).upgrade())
    except RollbackError as exc:
        raise RollbackError(
            f"building the schema snapshot on a scratch database failed: {exc.message}", exc.exit_code
        ) from None
    backend = backend_name(scratch)
    path = snapshot_path(project, backend)
    body = dump(project, scratch, scratch.engine.url)
    text = render(
        backend, project.bind_label, list(project.declared.values()),
        graph.heads_of_everything, body,
    )
    try:
        unchanged = path.is_file() and not path.is_symlink() and path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        unchanged = False
    if not unchanged:
        write(path, text)
    return Generated(path, not unchanged, how)


def _base(project: Project, path: Path) -> Snapshot | None:
    """The snapshot at ``path`` when it shows exactly the migrations below its own heads as they
    are now (so only the newer migrations need to run on it), else None."""
    try:
        snapshot = read(path)
    except Unusable:
        return None
    graph, declared = project.graph, project.declared
    if not snapshot.heads or any(head not in graph.migrations for head in snapshot.heads):
        return None
    below = graph.closure(snapshot.heads)
    if len(below) != snapshot.migrations or digest(declared[r] for r in below) != snapshot.digest:
        return None
    return snapshot


def stale_files(project: Project) -> list[str]:
    """One line per snapshot file of ``project``'s bind that is not current (``check``); none
    when snapshots are off."""
    if not project.settings.snapshots:
        return []
    problems = []
    configured = project.url.get_backend_name()
    for path in snapshot_files(project):
        try:
            current(project, path)
        except Unusable as exc:
            backend = path.stem.rsplit(".", 1)[-1]
            # 'flask db snapshot' makes the snapshot of the backend it is connected to.
            where = "" if _same_backend(backend, configured) else f" with a {backend} database URL"
            problems.append(
                f"schema snapshot {shown_path(path)} is not current: {exc}; run 'flask db snapshot'{where}"
            )
    return problems


def _same_backend(snapshot_backend: str, url_backend: str) -> bool:
    """A URL's backend (``mysql`` for MariaDB too) can make a snapshot of that name."""
    family = {"mariadb": "mysql"}
    return family.get(snapshot_backend, snapshot_backend) == family.get(url_backend, url_backend)


def verify(project: Project) -> list[str]:
    """The full check of a current snapshot of this bind's backend: every migration replayed on
    a scratch database and its dump compared with the snapshot's body (a snapshot made by hand
    or by another version could be current by its digests and still wrong). One line per
    problem; none when there is no such snapshot or it is right."""
    from .database import connect
    from .executor import execute
    from .plan import Planner
    from .scratch import scratch_database

    fix = "grant CREATEDB to the role, or set ROLLBACK_SNAPSHOTS = False"
    with scratch_database(project.url, fix) as url, connect(url) as scratch:
        path = snapshot_path(project, backend_name(scratch))
        try:
            snapshot = current(project, path)
        except Unusable:
            return []  # absent, or stale: stale_files says so
        execute(project, scratch, Planner(project.graph, ()).upgrade())
        body = dump(project, scratch, url)
    if snapshot.body == body:
        return []
    return [f"schema snapshot {shown_path(path)} differs from the schema the migrations build "
            f"({_first_difference(snapshot.body, body)}); run 'flask db snapshot'"]


def _first_difference(stored: str, built: str) -> str:
    old, new = stored.splitlines(), built.splitlines()
    for number, (a, b) in enumerate(zip(old, new), start=1):
        if a != b:
            return f"body line {number}: {a[:80]!r}, the migrations build {b[:80]!r}"
    shorter = "snapshot" if len(old) < len(new) else "migrations' schema"
    return f"the {shorter} ends at body line {min(len(old), len(new))}"
