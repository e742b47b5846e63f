"""A throwaway PgBouncer in transaction pooling mode in front of the test PostgreSQL server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from tests.pgserver import PostgresServer
from tests.servers import free_port

FALLBACK_PGBOUNCER = "/usr/sbin/pgbouncer"
START_TIMEOUT = 20  # seconds until PgBouncer accepts connections


def find_pgbouncer() -> str | None:
    """The pgbouncer program (Debian's package puts it in /usr/sbin), or None."""
    found = shutil.which("pgbouncer")
    if found:
        return found
    return FALLBACK_PGBOUNCER if os.access(FALLBACK_PGBOUNCER, os.X_OK) else None


class PgBouncer:
    """PgBouncer on 127.0.0.1:port, pool_mode = transaction, every database of ``server``."""

    def __init__(self, program: str, server: PostgresServer) -> None:
        self.program = program
        self.server = server
        self.port = 0
        self.tmpdir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.tmpdir = Path(tempfile.mkdtemp(prefix="flask-rollback-pgbouncer-"))
        self.port = free_port()
        users = self.tmpdir / "users.txt"
        users.write_text(f'"{self.server.user}" "{self.server.password}"\n')
        config = self.tmpdir / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.server.port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = scram-sha-256\n"
            f"auth_file = {users}\n"
            "pool_mode = transaction\n"
            "default_pool_size = 20\n"
            "max_client_conn = 200\n"
            f"logfile = {self.tmpdir / 'pgbouncer.log'}\n"
            "server_reset_query =\n"
        )
        command = [self.program, str(config)]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            for path in (self.tmpdir, users, config):
                shutil.chown(path, "postgres", "postgres")
            os.chmod(users, 0o600)
            command = ["runuser", "-u", "postgres", "--", *command]
        # Its own process group: as root, runuser stands between us and PgBouncer and does not
        # pass SIGINT on, so stop() signals the group (else PgBouncer outlives the tests).
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"pgbouncer did not listen within {START_TIMEOUT}s:\n{self.log_tail()}")

    def url(self, dbname: str) -> str:
        """SQLAlchemy URL of a database through the pooler."""
        return (
            f"postgresql+psycopg://{self.server.user}:{quote(self.server.password, safe='')}"
            f"@127.0.0.1:{self.port}/{dbname}"
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.tmpdir / "pgbouncer.log").read_text(errors="replace") if self.tmpdir else ""
        except OSError:
            text = ""
        return "\n".join(text.splitlines()[-lines:]) or "(no pgbouncer log)"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            group = self.process.pid  # the session leader: the group's id
            os.killpg(group, signal.SIGINT)  # PgBouncer: SIGINT is a safe shutdown
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(group, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
