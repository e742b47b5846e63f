"""A throwaway MariaDB server for the test suite: its own data dir, port and socket, no service."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import pymysql

from tests.servers import DatabaseServer, free_port

#: Where Debian's mariadb-server puts the programs (mariadbd is not on a user's PATH).
SEARCH_PATH = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")
START_TIMEOUT = 60  # seconds until the server must accept connections


class MariaDBServerError(RuntimeError):
    """A MariaDB program failed; the message carries the error log tail."""


def find_mariadb() -> tuple[str, str] | None:
    """(mariadb-install-db, mariadbd), or None when MariaDB is not installed."""
    found = []
    for names in (("mariadb-install-db", "mysql_install_db"), ("mariadbd", "mysqld")):
        program = None
        for name in names:
            program = shutil.which(name) or next(
                (os.path.join(d, name) for d in SEARCH_PATH if os.access(os.path.join(d, name), os.X_OK)),
                None,
            )
            if program:
                break
        if program is None:
            return None
        found.append(program)
    return found[0], found[1]



class MariaDBServer(DatabaseServer):
    """One MariaDB server in a temp dir, listening on 127.0.0.1:port and its own socket."""

    user = "rollback"
    password = "s3cret-pw"

    def __init__(self, install_db: str, mariadbd: str) -> None:
        self.install_db = install_db
        self.mariadbd = mariadbd
        self.port = 0
        self.tmpdir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        # mariadbd refuses to run as root unless told to; we never switch to another OS user.
        self._user_args = ["--user=root"] if os.geteuid() == 0 else []

    @property
    def socket_path(self) -> Path:
        assert self.tmpdir is not None, "server was not started"
        return self.tmpdir / "mariadb.sock"

    @property
    def log_file(self) -> Path:
        assert self.tmpdir is not None, "server was not started"
        return self.tmpdir / "error.log"

    def start(self) -> None:
        """Create a fresh data dir, start the server and create the test user."""
        # Always under /tmp: a test's private TMPDIR would make the socket path longer than
        # the 108 bytes a Unix socket name may have.
        base = "/tmp" if os.path.isdir("/tmp") else None
        self.tmpdir = Path(tempfile.mkdtemp(prefix="flask-rollback-mariadb-", dir=base))
        self.port = free_port()
        # Two workers bootstrapping at the same moment now and then see "Installation of system
        # tables failed": a fresh data dir and a second try get past it.
        for attempt in range(3):
            shutil.rmtree(self.data_dir, ignore_errors=True)
            result = subprocess.run(
                [
                    self.install_db, "--no-defaults", f"--datadir={self.data_dir}", "--skip-test-db",
                    "--auth-root-authentication-method=normal", "--skip-name-resolve",
                    *self._user_args,
                ],
                check=False, cwd=self.tmpdir, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                timeout=START_TIMEOUT,
            )
            if result.returncode == 0:
                break
            time.sleep(0.5 + attempt)
        else:
            raise MariaDBServerError(
                f"mariadb-install-db exited with {result.returncode}\n"
                f"--- stdout ---\n{result.stdout}--- stderr ---\n{result.stderr}"
            )
        self.start_server_only()
        with self.connect_root() as conn, conn.cursor() as cursor:
            cursor.execute(f"CREATE USER '{self.user}'@'%' IDENTIFIED BY '{self.password}'")
            cursor.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{self.user}'@'%' WITH GRANT OPTION")

    def start_server_only(self) -> None:
        """Start mariadbd on the existing data dir and port; wait until it answers."""
        # Its own directory for temporary tables: /tmp is shared with whatever else runs here.
        temporary = self.data_dir.parent / "tmp"
        temporary.mkdir(exist_ok=True)
        self.process = subprocess.Popen(
            [
                self.mariadbd, "--no-defaults", f"--datadir={self.data_dir}",
                f"--tmpdir={temporary}",
                f"--socket={self.socket_path}", f"--port={self.port}", "--bind-address=127.0.0.1",
                f"--pid-file={self.tmpdir}/mariadbd.pid", f"--log-error={self.log_file}",
                "--skip-name-resolve", "--skip-log-bin", "--max-connections=200",
                "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=32M",
                "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0",
                "--sync-binlog=0", "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_unicode_ci",
                *self._user_args,
            ],
            cwd=self.tmpdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise MariaDBServerError(
                    f"mariadbd exited with {self.process.returncode}\n--- error log ---\n{self.log_tail()}"
                )
            try:
                self.connect_root().close()
                return
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline:
                    raise MariaDBServerError(
                        f"mariadbd did not answer within {START_TIMEOUT}s\n"
                        f"--- error log ---\n{self.log_tail()}"
                    ) from None
                time.sleep(0.1)

    def stop_server_only(self, kill: bool = False) -> None:
        """Stop mariadbd (SIGTERM: a clean shutdown; SIGKILL with ``kill``), keeping the data dir."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def restart(self) -> None:
        """Stop and start the server on the same data dir and port."""
        self.stop_server_only()
        self.start_server_only()

    def stop(self) -> None:
        """Stop the server if running and remove the temp dir; safe to call anytime."""
        if self.tmpdir is None:
            return
        self.stop_server_only()
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        self.tmpdir = None

    def url(self, dbname: str) -> str:
        """SQLAlchemy URL for a database on this server."""
        return (
            f"mysql+pymysql://{self.user}:{quote(self.password, safe='')}"
            f"@127.0.0.1:{self.port}/{dbname}?charset=utf8mb4"
        )

    def connect_root(self) -> pymysql.connections.Connection:
        """An autocommit connection as root over the server's socket."""
        return pymysql.connect(
            unix_socket=str(self.socket_path), user="root", autocommit=True, connect_timeout=5
        )

    def connect(self, dbname: str | None = None) -> pymysql.connections.Connection:
        """An autocommit connection as the test user over TCP."""
        return pymysql.connect(
            host="127.0.0.1", port=self.port, user=self.user, password=self.password,
            database=dbname, autocommit=True, connect_timeout=10,
        )

    def create_database(self, name: str) -> None:
        """Create an empty database."""
        with self.connect() as conn, conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}`")

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting any sessions still using it."""
        with self.connect() as conn, conn.cursor() as cursor:
            cursor.execute(
                "SELECT id FROM information_schema.PROCESSLIST WHERE db = %s AND id <> CONNECTION_ID()",
                (name,),
            )
            for (session,) in cursor.fetchall():
                try:
                    cursor.execute(f"KILL {int(session)}")
                except pymysql.err.OperationalError:
                    pass  # gone already
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of the error log, for error messages."""
        try:
            text = self.log_file.read_text(errors="replace") if self.tmpdir else ""
        except OSError:
            text = ""
        if not text:
            return "(no error log)"
        return "\n".join(text.splitlines()[-lines:])
