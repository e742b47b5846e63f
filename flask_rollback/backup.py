"""The ready-made before-deploy hook: a backup of the database into ``ROLLBACK_BACKUP_DIR``.

SQLite: the sqlite3 online backup API (consistent while others write). PostgreSQL: ``pg_dump``
in custom format, the password passed through the environment, never on the command line.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy.engine import URL

from .database import display_url, mask
from .errors import RollbackError


def backup_database(url: URL, directory: str) -> Path:
    """Write a backup file and return its path."""
    folder = Path(directory)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RollbackError(
            f"cannot create the backup folder {folder} (ROLLBACK_BACKUP_DIR): {exc.strerror or exc}"
        ) from None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    backend = url.get_backend_name()
    if backend == "sqlite":
        target = folder / f"{Path(url.database or 'memory').stem}-{stamp}.sqlite3"
        try:
            source = sqlite3.connect(url.database or ":memory:")
            try:
                destination = sqlite3.connect(target)
                try:
                    with destination:
                        source.backup(destination)
                finally:
                    destination.close()
            finally:
                source.close()
        except (OSError, sqlite3.Error) as exc:
            target.unlink(missing_ok=True)
            raise RollbackError(f"the SQLite backup to {target} failed: {exc}") from None
        return target
    if backend == "postgresql":
        pg_dump = shutil.which("pg_dump")
        if pg_dump is None:
            raise RollbackError("the backup hook needs pg_dump on PATH (PostgreSQL client tools)")
        target = folder / f"{url.database}-{stamp}.dump"
        env = {**os.environ, "PGPASSWORD": str(url.password or "")}
        command = [
            pg_dump, "--format=custom", f"--file={target}",
            f"--host={url.host or 'localhost'}", f"--port={url.port or 5432}",
            f"--username={url.username or ''}", str(url.database),
        ]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RollbackError(f"pg_dump of {display_url(url)} failed: {mask(reason, url)}")
        return target
    raise RollbackError(f"the backup hook supports SQLite and PostgreSQL, not {backend}")
