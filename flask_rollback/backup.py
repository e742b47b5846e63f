"""The ready-made before-deploy hook: a backup of the database into ``ROLLBACK_BACKUP_DIR``.

A backup of the right database, or none:

* **PostgreSQL**: ``pg_dump`` in custom format, connecting exactly where the driver does (every
  parameter of the URL, ``?host=/socket/dir``, ``sslmode`` and the rest, as ``PG*`` environment
  variables; the password only in ``PGPASSWORD``, never on a command line). The dump's table of
  contents (``pg_restore -l``) must name the database being migrated and list the same tables,
  with the same catalog OIDs, as the live catalog: a dump of another server or database fails.
* **SQLite**: the sqlite3 online backup API (consistent while others write), checked the same way.
* **MariaDB/MySQL**: ``mariadb-dump`` (or ``mysqldump``) ``--single-transaction`` with routines
  and triggers, every connection parameter of the driver in a private option file
  (``--defaults-extra-file``, so the password is never on a command line). The dump must name the
  database being migrated and create the same tables; unlike PostgreSQL there is no catalog id to
  tell a same-named database of another server apart.

The file is written under a temporary name in the folder and renamed when it is complete and
checked, so a failed or wrong backup leaves no file. Files are 0600, the folder 0700; a symlinked,
unreadable or unwritable folder stops the deploy before anything is applied.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import stat
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from .database import display_url, libpq_environment, mask
from .errors import RollbackError
from .files import publish
from .wording import shown_path

SETTING = "ROLLBACK_BACKUP_DIR"
FILE_MODE = 0o600
FOLDER_MODE = 0o700
#: Tables pg_dump writes as ``TABLE`` entries: ordinary and partitioned, not an extension's own.
LIVE_TABLES = """
SELECT n.nspname, c.relname, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
"""
#: A ``pg_restore --list`` line for a table (1259 is pg_class): ``215; 1259 16385 TABLE public
#: users owner``; ``TABLE DATA`` lines are the rows of the same tables.
TOC_TABLE_RE = re.compile(r"^\d+; 1259 (\d+) TABLE (?!DATA )(\S+) (.+) \S+$")
TOC_DATABASE_RE = re.compile(r"^;\s+dbname: (.*)$", re.MULTILINE | re.IGNORECASE)


def backup_database(connection: Connection, url: URL, directory: str) -> Path:
    """Write a checked backup of the database ``connection`` is in and return its path."""
    folder = backup_folder(Path(directory))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    backend = url.get_backend_name()
    if backend == "sqlite":
        target = folder / f"{_file_stem(Path(url.database or 'memory').stem)}-{stamp}.sqlite3"
        _in_place(target, lambda temporary: _sqlite_backup(url, temporary))
        return target
    if backend == "postgresql":
        target = folder / f"{_file_stem(url.database or 'postgres')}-{stamp}.dump"
        _in_place(target, lambda temporary: _pg_dump(connection, url, temporary))
        return target
    if backend in ("mysql", "mariadb"):
        target = folder / f"{_file_stem(url.database or 'mysql')}-{stamp}.sql"
        _in_place(target, lambda temporary: _mysql_dump(connection, url, temporary))
        return target
    raise RollbackError(f"the backup hook supports SQLite, PostgreSQL and MariaDB/MySQL, not {backend}")


def backup_folder(folder: Path) -> Path:
    """``folder`` created 0700 if missing, or an existing real folder (not a symlink) this user
    can read and write. Otherwise one line naming the setting (exit 1), before anything runs."""
    try:
        folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    except FileExistsError:
        pass  # a file, or a dangling symlink: said below
    except OSError as exc:
        raise _folder_error(folder, f"cannot be created: {exc.strerror or exc}") from None
    try:
        found = os.lstat(folder)
    except OSError as exc:
        raise _folder_error(folder, f"cannot be read: {exc.strerror or exc}") from None
    if stat.S_ISLNK(found.st_mode):
        raise _folder_error(
            folder, f"is a symlink (to {os.readlink(folder)}); set {SETTING} to the real folder"
        )
    if not stat.S_ISDIR(found.st_mode):
        raise _folder_error(folder, "is not a folder")
    if not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
        raise _folder_error(folder, "is not readable and writable by this user")
    if found.st_uid == os.geteuid() and stat.S_IMODE(found.st_mode) != FOLDER_MODE:
        os.chmod(folder, FOLDER_MODE)  # ours: backups hold every row, keep them private
    return folder


def _folder_error(folder: Path, what: str) -> RollbackError:
    return RollbackError(f"the backup folder {shown_path(folder)} ({SETTING}) {what}; nothing was applied")


def _file_stem(name: str) -> str:
    """A database name as a file name: no path separators, no leading dot."""
    return re.sub(r"[^\w.-]", "_", name).lstrip(".") or "database"


def _in_place(target: Path, write) -> None:  # type: ignore[no-untyped-def]
    """Create a private temporary file beside ``target``, let ``write`` fill and check it, then
    give it its name; on any failure the temporary file is removed and no backup is left."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        descriptor = os.open(
            temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE
        )
    except OSError as exc:
        raise _folder_error(target.parent, f"cannot hold a new file: {exc.strerror or exc}") from None
    os.fchmod(descriptor, FILE_MODE)
    os.close(descriptor)
    try:
        write(temporary)
        publish(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# -- SQLite -------------------------------------------------------------------------------------


def _sqlite_backup(url: URL, temporary: Path) -> None:
    database = url.database or ":memory:"
    if database != ":memory:" and not Path(database).is_file():
        raise RollbackError(
            f"the SQLite backup found no database file at {shown_path(database)}; no backup was written"
        )
    try:
        source = sqlite3.connect(database)
        try:
            destination = sqlite3.connect(temporary)
            try:
                with destination:
                    source.backup(destination)
                copied = _sqlite_tables(destination)
            finally:
                destination.close()
            live = _sqlite_tables(source)
        finally:
            source.close()
    except (OSError, sqlite3.Error) as exc:
        raise RollbackError(
            f"the SQLite backup of {shown_path(database)} failed: {exc}; no backup was written"
        ) from None
    if copied != live:
        raise RollbackError(
            f"the SQLite backup of {shown_path(database)} does not hold its tables "
            f"({_difference(live, copied)}); no backup was written"
        )


def _sqlite_tables(connection: sqlite3.Connection) -> set[str]:
    return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


# -- PostgreSQL ---------------------------------------------------------------------------------


def _pg_dump(connection: Connection, url: URL, temporary: Path) -> None:
    pg_dump, pg_restore = shutil.which("pg_dump"), shutil.which("pg_restore")
    if pg_dump is None or pg_restore is None:
        missing = "pg_dump" if pg_dump is None else "pg_restore"
        raise RollbackError(f"the backup hook needs pg_dump on PATH (PostgreSQL client tools; {missing} is missing)")
    try:
        environment, conninfo = libpq_environment(connection.dialect, url)
    except ValueError as exc:
        raise RollbackError(f"the backup hook cannot run pg_dump: {exc}") from None
    environment = {**os.environ, **environment}
    command = [pg_dump, "--format=custom", "--no-password", f"--file={temporary}"]
    if conninfo:
        command.append(f"--dbname={conninfo}")  # parameters without a variable; never a secret
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=3600, check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RollbackError(f"pg_dump of {display_url(url)} failed: {mask(reason, url)}; no backup was written")
    listed = subprocess.run(
        [pg_restore, "--list", str(temporary)], capture_output=True, text=True, timeout=600, check=False
    )
    if listed.returncode != 0:
        reason = (listed.stderr.strip().splitlines() or ["no output"])[-1]
        raise RollbackError(
            f"the backup of {display_url(url)} is unreadable (pg_restore --list: {reason}); "
            "no backup was written"
        )
    _check_dump(connection, url, listed.stdout)


#: PyMySQL connection arguments -> mariadb-dump options. SQLAlchemy also passes client_flag
#: (FOUND_ROWS, meaningless to a dump) and autocommit; anything else is refused, not dropped.
MYSQL_OPTIONS = {
    "host": "host", "port": "port", "user": "user", "password": "password",
    "unix_socket": "socket", "charset": "default-character-set",
    "connect_timeout": "connect-timeout", "database": None, "db": None,
}
MYSQL_SSL_OPTIONS = {"ca": "ssl-ca", "cert": "ssl-cert", "key": "ssl-key", "cipher": "ssl-cipher", "capath": "ssl-capath"}
MYSQL_IGNORED = ("client_flag", "autocommit")
DUMP_DATABASE_RE = re.compile(r"^-- Host: .*\sDatabase: (\S+)\s*$", re.MULTILINE)
DUMP_TABLE_RE = re.compile(r"^CREATE TABLE `((?:[^`]|``)+)`", re.MULTILINE)


def mysql_option_file(connection: Connection, url: URL) -> str:
    """A ``[client]`` option file making a MariaDB client connect exactly where the driver does."""
    _args, arguments = connection.dialect.create_connect_args(url)
    lines = ["[client]"]
    for key, value in arguments.items():
        if key in MYSQL_IGNORED or value is None:
            continue
        if key == "ssl" and isinstance(value, dict):
            for ssl_key, ssl_value in value.items():
                if ssl_key not in MYSQL_SSL_OPTIONS:
                    raise RollbackError(
                        f"the backup hook cannot pass the URL's ssl parameter {ssl_key!r} to "
                        "mariadb-dump; no backup was written"
                    )
                lines.append(f"{MYSQL_SSL_OPTIONS[ssl_key]}={_option_value(ssl_value)}")
            continue
        if key not in MYSQL_OPTIONS:
            raise RollbackError(
                f"the backup hook cannot pass the URL's connection parameter {key!r} to "
                "mariadb-dump; no backup was written"
            )
        if MYSQL_OPTIONS[key] is not None:
            lines.append(f"{MYSQL_OPTIONS[key]}={_option_value(value)}")
    return "\n".join(lines) + "\n"


def _option_value(value: object) -> str:
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _mysql_dump(connection: Connection, url: URL, temporary: Path) -> None:
    program = shutil.which("mariadb-dump") or shutil.which("mysqldump")
    if program is None:
        raise RollbackError("the backup hook needs mariadb-dump (or mysqldump) on PATH; no backup was written")
    options = temporary.with_name(f"{temporary.name}.cnf")
    descriptor = os.open(options, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(mysql_option_file(connection, url))
        command = [
            program, f"--defaults-extra-file={options}", "--single-transaction", "--routines",
            "--triggers", "--hex-blob", "--no-tablespaces", f"--result-file={temporary}",
            "--", url.database or "",
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False)
    finally:
        options.unlink(missing_ok=True)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RollbackError(
            f"{Path(program).name} of {display_url(url)} failed: {mask(reason, url)}; no backup was written"
        )
    text = temporary.read_text(errors="replace")
    began = not connection.in_transaction()
    try:
        database = connection.exec_driver_sql("SELECT DATABASE()").scalar()
        live = {name for name, kind in connection.exec_driver_sql("SHOW FULL TABLES") if kind == "BASE TABLE"}
    finally:
        if began:
            connection.rollback()
    named = DUMP_DATABASE_RE.search(text)
    dumped = {found.replace("``", "`") for found in DUMP_TABLE_RE.findall(text)}
    if named is None or named.group(1) != database or dumped != live:
        found_text = (
            f"database {named.group(1) if named else None!r}" if named is None or named.group(1) != database
            else _difference(live, dumped)
        )
        raise RollbackError(
            f"{Path(program).name} did not dump the database being migrated ({database!r} of "
            f"{display_url(url)}): the dump holds {found_text}; no backup was written"
        )


def _check_dump(connection: Connection, url: URL, toc: str) -> None:
    """The dump is of the database being migrated: same name, same tables with the same OIDs."""
    began = not connection.in_transaction()
    try:
        database = connection.execute(sa.text("SELECT current_database()")).scalar_one()
        live = {str(oid): f"{schema}.{table}" for schema, table, oid in connection.execute(sa.text(LIVE_TABLES))}
    finally:
        if began:
            connection.rollback()  # a read only: leave the connection as the deploy had it
    named = TOC_DATABASE_RE.search(toc)
    dumped_name = named.group(1).strip() if named else None
    dumped = {
        found.group(1): f"{found.group(2)}.{found.group(3)}"
        for line in toc.splitlines()
        if (found := TOC_TABLE_RE.match(line))
    }
    if dumped_name != database or set(dumped) != set(live):
        if dumped_name != database:
            found_text = f"database {dumped_name!r}"
        else:
            found_text = _difference(set(live.values()), set(dumped.values())) or (
                "tables of the same names with other catalog ids (another server)"
            )
        raise RollbackError(
            f"pg_dump did not dump the database being migrated ({database!r} of "
            f"{display_url(url)}): the dump holds {found_text}; check that every connection setting "
            "of the URL reaches pg_dump (PG* variables of this shell, a service file); "
            "no backup was written"
        )


def _difference(live: set[str], copied: set[str]) -> str:
    missing, extra = sorted(live - copied), sorted(copied - live)
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if extra:
        parts.append(f"extra {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
    return "; ".join(parts)
