"""The rehearsal's scratch database, and the copy of the schema it receives.

A scratch database is named after its host and process (``rollback_rehearsal_<host>_<pid>_...``)
and removed in a ``finally``. A process killed outright (SIGKILL, out of memory, a lost node)
cannot run that ``finally``, so every rehearsal first sweeps the scratch databases whose owner is
gone. PostgreSQL: the owner holds a session advisory lock keyed by the name, which the server
releases when the owner's connection dies; if the sweeper can take it, the owner is gone. SQLite:
a scratch file of this host whose process no longer exists.

The schema is copied with the database's own definition, not a reflection of it: PostgreSQL
``pg_dump --schema-only | psql`` (extensions, enum types, sequences, functions, views, triggers
come along), SQLite the SQL kept in ``sqlite_master``. Reflection is the fallback when the
PostgreSQL client tools are missing or pg_dump refuses the server (older than the server).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from .database import connect, create_engine, display_url, libpq_environment, mask
from .errors import EXIT_COULD_NOT_RUN, RollbackError
from .recorder import archive_prefix
from .wording import shown_path

SCRATCH_PREFIX = "rollback_rehearsal_"
#: Room for the host in a name: prefix (19) + host (20) + pid (7) + source tag (6) + random (8)
#: and four underscores make 63 bytes, the longest PostgreSQL identifier.
HOST_LABEL_LENGTH = 20
#: First half of the scratch databases' advisory lock keys ("RLR"); the migration lock uses "RLK".
SCRATCH_LOCK_CLASS = 0x524C52
#: The backends a scratch database can be made for.
SCRATCH_BACKENDS = ("sqlite", "postgresql", "mysql")
#: Files a SQLite scratch database may leave beside itself.
SQLITE_SUFFIXES = ("", "-journal", ".rollback-lock")
#: The message pg_dump gives when it cannot dump a server of another major version.
VERSION_MISMATCH = "server version mismatch"


# -- names ------------------------------------------------------------------------------------


def _host_label() -> str:
    """The host name in lower-case letters, digits and single underscores (safe in a database
    or file name), shortened to HOST_LABEL_LENGTH."""
    label = re.sub(r"_+", "_", re.sub(r"[^a-z0-9]", "_", socket.gethostname().lower()))
    return label.strip("_")[:HOST_LABEL_LENGTH].rstrip("_") or "host"


def _source_tag(admin: Connection) -> str:
    """A short tag of the database the admin connection is in. Advisory locks are per database,
    so a sweep judges only the scratch databases whose owner locked in the same database."""
    query = "SELECT DATABASE()" if admin.dialect.name in ("mysql", "mariadb") else "SELECT current_database()"
    database = admin.execute(sa.text(query)).scalar_one() or ""
    return hashlib.sha256(database.encode()).hexdigest()[:6]


def scratch_name(*parts: str) -> str:
    """``rollback_rehearsal_<host>_<pid>_<parts>_<random>``: who made it, at a glance."""
    return "_".join([SCRATCH_PREFIX + _host_label(), str(os.getpid()), *parts, secrets.token_hex(4)])


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") & 0x7FFFFFFF


# -- the scratch database -----------------------------------------------------------------------


@contextmanager
def scratch_database(url: URL, fix: str = "the gate needs CREATEDB") -> Iterator[URL]:
    """A new empty database of the same backend as ``url``, always removed afterwards; stale
    scratch databases of dead rehearsals are swept first. ``url``'s database need not exist
    (PostgreSQL: the scratch database is then created from the server's maintenance database).

    ``fix`` ends the line (exit code 2: the command could not run) when PostgreSQL refuses to
    create it: what to grant, or what to do instead."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        with _sqlite_scratch(url) as scratch:
            yield scratch
    elif backend == "postgresql":
        with _postgres_scratch(url, fix) as scratch:
            yield scratch
    elif backend in ("mysql", "mariadb"):
        with _mysql_scratch(url, fix) as scratch:
            yield scratch
    else:
        raise RollbackError(
            f"the rehearsal supports {' and '.join(SCRATCH_BACKENDS)}, not {backend}",
            EXIT_COULD_NOT_RUN,
        )


@contextmanager
def _sqlite_scratch(url: URL) -> Iterator[URL]:
    folder = Path(tempfile.gettempdir())
    sweep_sqlite(folder)
    path = folder / f"{scratch_name()}.db"
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise RollbackError(
            f"cannot create the scratch database file {shown_path(path)}: {exc.strerror or exc}",
            EXIT_COULD_NOT_RUN,
        ) from None
    try:
        yield url.set(database=str(path))
    finally:
        _remove_sqlite(path)


def _remove_sqlite(path: Path) -> None:
    for suffix in SQLITE_SUFFIXES:
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def sweep_sqlite(folder: Path) -> list[str]:
    """Remove the scratch files of this host whose process is gone; returns their names."""
    pattern = re.compile(
        rf"{re.escape(SCRATCH_PREFIX + _host_label())}_(\d+)_[0-9a-f]+\.db"
        rf"(?:{'|'.join(re.escape(s) for s in SQLITE_SUFFIXES if s)})?"
    )
    swept = []
    for path in folder.glob(f"{SCRATCH_PREFIX}*"):
        match = pattern.fullmatch(path.name)
        if match and not _alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            swept.append(path.name)
    return swept


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


@contextmanager
def _postgres_scratch(url: URL, fix: str) -> Iterator[URL]:
    """Lock the name, then create the database: a database of this name never exists without
    its owner's lock, so the sweep never takes a live rehearsal's database for a stale one."""
    with _admin_connection(url) as admin:
        tag = _source_tag(admin)
        name = scratch_name(tag)
        sweep_postgres(admin, tag)
        keys = {"c": SCRATCH_LOCK_CLASS, "k": _lock_key(name)}
        admin.execute(sa.text("SELECT pg_advisory_lock(:c, :k)"), keys)
        try:
            _create(admin, url, name, fix)
            try:
                yield url.set(database=name)
            finally:
                admin.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            admin.execute(sa.text("SELECT pg_advisory_unlock(:c, :k)"), keys)


#: Where the scratch database is created from when the URL's database does not exist yet (a
#: new project's makemigrations): every PostgreSQL server has them.
MAINTENANCE_DATABASES = ("postgres", "template1")


@contextmanager
def _mysql_scratch(url: URL, fix: str) -> Iterator[URL]:
    """MariaDB/MySQL: the same protocol as PostgreSQL with ``GET_LOCK(name)`` (server-wide,
    released when the owner's connection dies) in place of the advisory lock."""
    with _admin_connection(url) as admin:
        tag = _source_tag(admin)
        name = scratch_name(tag)
        sweep_mysql(admin, tag)
        admin.execute(sa.text("SELECT GET_LOCK(:n, 0)"), {"n": name})
        try:
            charset = admin.execute(
                sa.text("SELECT @@character_set_database, @@collation_database")
            ).one()
            try:
                admin.execute(
                    sa.text(f"CREATE DATABASE `{name}` CHARACTER SET {charset[0]} COLLATE {charset[1]}")
                )
            except sa.exc.DBAPIError as exc:
                raise RollbackError(
                    f"cannot create the scratch database on {display_url(url)}: "
                    f"{mask(str(exc.orig).splitlines()[0], url)}; {fix.replace('CREATEDB', 'CREATE')}",
                    EXIT_COULD_NOT_RUN,
                ) from None
            try:
                yield url.set(database=name)
            finally:
                admin.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        finally:
            admin.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": name})


def sweep_mysql(admin: Connection, tag: str) -> list[str]:
    """Drop the scratch databases (of this source database) whose owner no longer holds its
    ``GET_LOCK``; returns their names."""
    pattern = re.compile(rf"{re.escape(SCRATCH_PREFIX)}\w+_\d+_{tag}_[0-9a-f]+")
    names = admin.execute(
        sa.text("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE :prefix"),
        {"prefix": SCRATCH_PREFIX.replace("_", "\\_") + "%"},
    ).scalars()
    swept = []
    for name in [n for n in names if pattern.fullmatch(n)]:
        if not admin.execute(sa.text("SELECT GET_LOCK(:n, 0)"), {"n": name}).scalar():
            continue  # its rehearsal is running
        try:
            admin.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
            swept.append(name)
        except sa.exc.DBAPIError:
            pass
        finally:
            admin.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": name})
    return swept


#: MariaDB/MySQL's "Unknown database" error.
MYSQL_UNKNOWN_DATABASE = 1049


@contextmanager
def _admin_connection(url: URL) -> Iterator[Connection]:
    """An autocommit connection in ``url``'s database, or, when the server says that database
    does not exist, in a maintenance database; one line (exit 2) when neither can be reached."""
    if url.get_backend_name() in ("mysql", "mariadb"):
        # MariaDB: no database at all will do (``set(database=None)`` would keep it).
        candidates = [url, url._replace(database=None)]
    else:
        candidates = [url, *(url.set(database=name) for name in MAINTENANCE_DATABASES)]
    first_failure = ""
    for candidate in candidates:
        engine = create_engine(candidate, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        try:
            try:
                connection = engine.connect()
            except sa.exc.DBAPIError as exc:
                reason = " ".join(str(exc.orig or exc).split())
                first_failure = first_failure or reason
                code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
                if "does not exist" in reason or code == MYSQL_UNKNOWN_DATABASE:
                    continue  # the server answered: try the next database
                break
            with connection:
                yield connection
            return
        finally:
            engine.dispose()
    raise RollbackError(
        f"cannot connect to {display_url(url)} to create a scratch database: "
        f"{mask(first_failure, url)}",
        EXIT_COULD_NOT_RUN,
    )


def _create(admin: Connection, url: URL, name: str, fix: str) -> None:
    """template0: a clean database, whatever was added to template1, as pg_dump's output needs."""
    try:
        admin.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE template0'))
    except sa.exc.DBAPIError as exc:
        raise RollbackError(
            f"cannot create the scratch database on {display_url(url)}: "
            f"{mask(str(exc.orig).splitlines()[0], url)}; {fix}",
            EXIT_COULD_NOT_RUN,
        ) from None


def sweep_postgres(admin: Connection, tag: str) -> list[str]:
    """Drop the scratch databases (of this source database) whose owner no longer holds its
    lock; returns their names. One that cannot be dropped (another role's) is left alone."""
    pattern = re.compile(rf"{re.escape(SCRATCH_PREFIX)}\w+_\d+_{tag}_[0-9a-f]+")
    names = admin.execute(
        sa.text("SELECT datname FROM pg_database WHERE starts_with(datname, :prefix)"),
        {"prefix": SCRATCH_PREFIX},
    ).scalars()
    swept = []
    for name in [n for n in names if pattern.fullmatch(n)]:
        keys = {"c": SCRATCH_LOCK_CLASS, "k": _lock_key(name)}
        if not admin.execute(sa.text("SELECT pg_try_advisory_lock(:c, :k)"), keys).scalar():
            continue  # its rehearsal is running
        try:
            admin.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            swept.append(name)
        except sa.exc.DBAPIError:
            pass
        finally:
            admin.execute(sa.text("SELECT pg_advisory_unlock(:c, :k)"), keys)
    return swept


# -- the schema copy ------------------------------------------------------------------------------


def copy_schema(
    source: Connection,
    source_url: URL,
    scratch_url: URL,
    version_table: str,
    archive_table: str,
) -> str | None:
    """Give the scratch database the source's schema (never its rows, except the version
    table's) minus the archive tables. Returns why reflection was used, or None.

    Raises RollbackError saying why the copy failed."""
    archives = archive_prefix(archive_table)
    fallback = None
    if source.dialect.name == "postgresql":
        source.rollback()  # pg_dump must not wait for locks this session holds
        fallback = _dump_into(source, source_url, scratch_url, archives)
    with connect(scratch_url) as target:
        if source.dialect.name == "sqlite":
            _copy_sqlite(source, target, archives)
        elif source.dialect.name in ("mysql", "mariadb"):
            _copy_mysql(source, target, archives)
        elif fallback is not None:
            _copy_by_reflection(source, target, archives, fallback)
        _copy_version_rows(source, target, version_table)
    return fallback


def _failed(reason: str, url: URL) -> RollbackError:
    return RollbackError(
        f"copying the schema into the scratch database failed: {mask(' '.join(reason.split()), url)}"
    )


def _copy_sqlite(source: Connection, target: Connection, archives: str) -> None:
    rows = source.execute(
        sa.text(
            "SELECT tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL "
            "AND name NOT LIKE 'sqlite_%' "
            "ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 ELSE 2 END, rowid"
        )
    ).all()
    source.rollback()
    try:
        with target.begin():
            for table, statement in rows:
                if not table.startswith(archives):
                    target.exec_driver_sql(statement)
    except sa.exc.DBAPIError as exc:
        raise _failed(str(exc.orig).splitlines()[0], target.engine.url) from None


def _copy_mysql(source: Connection, target: Connection, archives: str) -> None:
    """Each table's and view's own ``SHOW CREATE`` (engine, charset, collation, indexes, checks and
    foreign keys exactly as the server has them), foreign key checks off while loading so the
    order does not matter. Triggers and routines are not copied."""
    rows = source.exec_driver_sql("SHOW FULL TABLES").all()
    tables = [name for name, kind in rows if kind == "BASE TABLE" and not name.startswith(archives)]
    views = [name for name, kind in rows if kind == "VIEW" and not name.startswith(archives)]
    statements = [source.exec_driver_sql(f"SHOW CREATE TABLE `{name}`").one()[1] for name in tables]
    for name in views:
        text = source.exec_driver_sql(f"SHOW CREATE VIEW `{name}`").one()[1]
        statements.append(re.sub(r"DEFINER=\S+ ", "", text))  # the scratch user may not be the definer
    source.rollback()
    try:
        target.exec_driver_sql("SET SESSION foreign_key_checks = 0")
        for statement in statements:
            target.exec_driver_sql(statement)
        target.exec_driver_sql("SET SESSION foreign_key_checks = 1")
        target.commit()
    except sa.exc.DBAPIError as exc:
        raise _failed(str(exc.orig).splitlines()[0], target.engine.url) from None


def _copy_by_reflection(source: Connection, target: Connection, archives: str, why: str) -> None:
    """Tables, indexes and constraints as SQLAlchemy understands them; a type it does not know
    (an extension's) fails here, with the reason saying why reflection was used."""
    metadata = sa.MetaData()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sa.exc.SAWarning)  # unknown types: the failure says so
        metadata.reflect(source, only=lambda name, _metadata: not name.startswith(archives))
    source.rollback()
    try:
        with target.begin():
            metadata.create_all(target)
    except sa.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise _failed(f"{reason} (tables copied by reflection: {why})", source.engine.url) from None


def _copy_version_rows(source: Connection, target: Connection, version_table: str) -> None:
    version = sa.table(version_table, sa.column("version_num"))
    if sa.inspect(source).has_table(version_table):
        rows = [dict(r) for r in source.execute(sa.select(version.c.version_num)).mappings()]
        if rows:
            with target.begin():
                target.execute(version.insert(), rows)
    source.rollback()


def _dump_into(source: Connection, source_url: URL, scratch_url: URL, archives: str) -> str | None:
    """``pg_dump --schema-only`` of the source piped into ``psql`` on the scratch database.
    Returns why it could not be used (then reflection copies the tables), or None when done."""
    pg_dump, psql = shutil.which("pg_dump"), shutil.which("psql")
    if pg_dump is None or psql is None:
        return f"{'pg_dump' if pg_dump is None else 'psql'} is not on PATH"
    try:
        dump_env, dump_conninfo = libpq_environment(source.dialect, source_url)
        load_env, load_conninfo = libpq_environment(source.dialect, scratch_url)
    except ValueError as exc:
        return str(exc)
    quoted_archives = archives.replace('"', '""')
    dump_command = [
        pg_dump, "--schema-only", "--no-owner", "--no-privileges", "--no-tablespaces",
        "--no-publications", "--no-subscriptions", "--no-security-labels", "--no-password",
        f'--exclude-table="{quoted_archives}"*',  # quoted: case and underscores taken literally
    ]
    load_command = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--no-password"]
    if dump_conninfo:
        dump_command.append(f"--dbname={dump_conninfo}")
    if load_conninfo:
        load_command.append(f"--dbname={load_conninfo}")
    with tempfile.TemporaryFile() as dump_errors, tempfile.TemporaryFile() as load_errors:
        dump_code, load_code = _pipe(
            (dump_command, {**os.environ, **dump_env}, dump_errors),
            (load_command, {**os.environ, **load_env}, load_errors),
        )
        dump_text, load_text = _read(dump_errors), _read(load_errors)
    if dump_code != 0 and VERSION_MISMATCH in dump_text:
        return f"pg_dump refused the server: {_reason(dump_text, 'pg_dump', source_url)}"
    broken_pipe = dump_code == -13 or "could not write" in dump_text
    if dump_code != 0 and not (load_code != 0 and broken_pipe):
        raise _failed(_reason(dump_text, "pg_dump", source_url), source_url)
    if load_code != 0:
        raise _failed(_reason(load_text, "psql", source_url), source_url)
    return None


Command = tuple[list[str], dict[str, str], IO[bytes]]


def _pipe(producer: Command, consumer: Command) -> tuple[int, int]:
    """Run ``producer | consumer``; both are killed if anything (SIGTERM) interrupts the wait."""
    first = subprocess.Popen(
        producer[0], env=producer[1], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=producer[2],
    )
    try:
        second = subprocess.Popen(
            consumer[0], env=consumer[1], stdin=first.stdout, stdout=subprocess.DEVNULL,
            stderr=consumer[2],
        )
    except BaseException:
        first.kill()
        first.wait()
        raise
    assert first.stdout is not None
    first.stdout.close()  # the consumer's end only: the producer gets SIGPIPE if it stops
    try:
        return first.wait(), second.wait()
    except BaseException:
        for process in (first, second):
            process.kill()
            process.wait()
        raise


def _read(stream: IO[bytes]) -> str:
    stream.seek(0)
    return stream.read().decode(errors="replace")


def _reason(stderr: str, tool: str, url: URL) -> str:
    """The tool's first error line (with pg_dump's detail line when it gives one)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if "error" in line.lower()]
    if not lines:
        return f"{tool} failed without a message"
    first = errors[0] if errors else 0
    reason = lines[first]
    if first + 1 < len(lines) and lines[first + 1].startswith(f"{tool}: detail:"):
        reason += f" ({lines[first + 1][len(tool) + len(': detail:'):].strip()})"
    if not reason.startswith(tool):
        reason = f"{tool}: {reason}"
    return mask(reason, url)
