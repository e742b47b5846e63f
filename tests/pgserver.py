"""A throwaway PostgreSQL 15 cluster for the test suite."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from tests.servers import DatabaseServer, free_port

FALLBACK_BINDIR = "/usr/lib/postgresql/15/bin"
REQUIRED_PROGRAMS = ("initdb", "pg_ctl", "postgres")
START_TIMEOUT = 30  # seconds, passed to pg_ctl -t


def unavailable(reason: str) -> NoReturn:
    """A program the tests need is missing: a failure under CI (which installs it), else a skip."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


class PostgresServerError(RuntimeError):
    """A PostgreSQL command failed; the message carries the server log tail."""


def find_postgres_bin() -> str | None:
    """Return the directory holding initdb, pg_ctl and postgres, or None."""
    candidates = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    candidates.append(FALLBACK_BINDIR)
    for bindir in candidates:
        if all(os.access(os.path.join(bindir, p), os.X_OK) for p in REQUIRED_PROGRAMS):
            return bindir
    return None



class PostgresServer(DatabaseServer):
    """One PostgreSQL cluster in a temp dir, listening on 127.0.0.1:port."""

    user = "rollback"
    password = "s3cret-pw"

    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        self.port = 0
        self.tmpdir: Path | None = None
        self._as_postgres = os.geteuid() == 0

    @property
    def log_file(self) -> Path:
        assert self.tmpdir is not None, "server was not started"
        return self.tmpdir / "server.log"

    def start(self) -> None:
        """Create a fresh cluster and start it."""
        self.tmpdir = Path(tempfile.mkdtemp(prefix="flask-rollback-pg-"))
        self.port = free_port()
        pwfile = self.tmpdir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as_postgres:
            shutil.chown(self.tmpdir, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            self.user,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        pwfile.unlink()
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.tmpdir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "100",
        }
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        self.start_server_only()

    def start_server_only(self) -> None:
        """Start the postmaster on the existing data dir and port."""
        self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(START_TIMEOUT),
        )

    def stop_server_only(self) -> None:
        """Stop the postmaster (fast shutdown), keeping the data dir."""
        self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30")

    def restart(self) -> None:
        """Stop and start the server on the same data dir and port."""
        self.stop_server_only()
        self.start_server_only()

    def stop(self) -> None:
        """Stop the server if running and remove the temp dir; safe to call anytime."""
        if self.tmpdir is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            try:
                self.stop_server_only()
            except PostgresServerError:
                self._run(
                    "pg_ctl", "stop", "-D", str(self.data_dir), "-m", "immediate", "-w", check=False
                )
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        self.tmpdir = None

    def url(self, dbname: str) -> str:
        """SQLAlchemy URL for a database on this server."""
        return (
            f"postgresql+psycopg://{self.user}:{quote(self.password, safe='')}"
            f"@127.0.0.1:{self.port}/{dbname}"
        )

    def connect(self, dbname: str = "postgres", password: str | None = None) -> psycopg.Connection:
        """Open an autocommit psycopg connection as the superuser."""
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            password=self.password if password is None else password,
            dbname=dbname,
            autocommit=True,
            connect_timeout=10,
        )

    def create_database(self, name: str) -> None:
        """Create an empty database."""
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting any sessions still using it."""
        with self.connect() as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of the server log, for error messages."""
        try:
            text = self.log_file.read_text(errors="replace") if self.tmpdir else ""
        except OSError:
            text = ""
        if not text:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        """Run a PostgreSQL program, as the postgres OS user when we are root."""
        cmd = [os.path.join(self.bindir, program), *args]
        if self._as_postgres:
            if shutil.which("runuser"):
                cmd = ["runuser", "-u", "postgres", "--", *cmd]
            else:
                cmd = ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(cmd)]
        try:
            result = subprocess.run(
                cmd,
                cwd=self.tmpdir,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=START_TIMEOUT + 30,
            )
        except subprocess.TimeoutExpired as exc:
            if not check:
                return
            raise PostgresServerError(
                f"{program} timed out after {exc.timeout}s\n--- server log ---\n{self.log_tail()}"
            ) from exc
        if check and result.returncode != 0:
            raise PostgresServerError(
                f"{' '.join(cmd)} exited with {result.returncode}\n"
                f"--- stdout ---\n{result.stdout}--- stderr ---\n{result.stderr}"
                f"--- server log ---\n{self.log_tail()}"
            )
