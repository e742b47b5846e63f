"""Files that commands write: generated migrations that always parse, written whole or not at
all, private files and folders that no planted symlink can redirect, and the lock that keeps
two ``makemigrations`` from writing two heads into one app.

Every file lands by renaming (or hard-linking) a finished temporary file of the same folder, so
a reader never sees half a file and a crash leaves no broken migration behind.
"""

from __future__ import annotations

import fcntl
import os
import re
import stat
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import EXIT_COULD_NOT_RUN, RollbackError
from .wording import shown_path

Announce = Callable[[str], None]
POLL_SECONDS = 0.1
#: Characters a Python source file cannot hold verbatim inside a string (NUL is refused by the
#: compiler, a lone CR or form feed would change the line structure a reader sees).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
#: Name of the lock file in the migrations root while a command writes migrations.
WRITE_LOCK_NAME = ".makemigrations.lock"


def docstring_text(message: str) -> str:
    """``message`` as it can sit between the triple quotes of a module docstring and read back
    unchanged: backslashes doubled, a quote that could close the docstring escaped, control
    characters as escapes. ``a \"\"\" b`` stays readable and the file still parses."""
    text = message.replace("\\", "\\\\")
    text = _CONTROL_RE.sub(lambda found: f"\\x{ord(found.group()):02x}", text)
    # A quote followed by another quote, or the last character, could end the docstring.
    return re.sub(r'"(?="|$)', r'\\"', text)


def check_python(code: str, path: Path | str) -> None:
    """Refuse to write a generated file that does not compile (a custom ``script.py.mako``
    that puts the message where it breaks the syntax, say): one line naming the place."""
    try:
        compile(code, str(path), "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        raise invalid_file(Path(path).name, exc) from None


def invalid_file(name: str, exc: BaseException) -> RollbackError:
    """The one line for a generated file that does not compile or load; nothing was written."""
    where = f" on line {exc.lineno}" if isinstance(exc, SyntaxError) and exc.lineno else ""
    reason = exc.msg if isinstance(exc, SyntaxError) else f"{type(exc).__name__}: {exc}"
    return RollbackError(
        f"the generated file {name} is not valid Python ({reason}{where}); nothing was written; "
        "check the message (-m) and the template script.py.mako"
    )


@contextmanager
def generated_files(folder: Path) -> Iterator[None]:
    """Alembic loads each file it generates (into ``folder``, a staging folder): one that does
    not compile or run becomes ``invalid_file``'s line instead of a traceback."""
    try:
        yield
    except RollbackError:
        raise
    except Exception as exc:
        inside = str(folder) + os.sep
        source = exc.filename if isinstance(exc, SyntaxError) and exc.filename else None
        if source is None:
            frames = [frame.filename for frame in traceback.extract_tb(exc.__traceback__)]
            source = next((name for name in reversed(frames) if name.startswith(inside)), None)
        if source is None or not source.startswith(inside):
            raise
        raise invalid_file(Path(source).name, exc) from None


def write_new(path: Path, content: str | bytes, mode: int = 0o644) -> None:
    """Create ``path`` with ``content``, never over an existing file or through a symlink:
    written to a temporary name in the same folder, synced, then linked into place."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    temporary = _temporary_name(path)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        try:
            os.fchmod(descriptor, mode)  # the umask would narrow it, never widen it
            os.write(descriptor, data)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.link(temporary, path)  # fails if the name exists: never over a file
    finally:
        os.unlink(temporary)


def publish(temporary: Path, path: Path) -> None:
    """Give a finished file of the same folder its final name, never over an existing file."""
    try:
        os.link(temporary, path)
    finally:
        os.unlink(temporary)


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{time.monotonic_ns()}.tmp")


@contextmanager
def writing_migrations(root: Path, timeout: float, announce: Announce | None = None) -> Iterator[None]:
    """Hold ``<root>/.makemigrations.lock`` while new migrations are planned and written, so
    a second ``makemigrations`` (or ``merge``) waits and then plans on top of the first one's
    files instead of giving an app a second head. The file is opened with ``O_NOFOLLOW``, 0600,
    never truncated, and removed on release (a waiter that locked the removed file tries again)."""
    if not root.is_dir():
        yield  # no migrations root: the command fails on its own, there is nothing to guard
        return
    path = root / WRITE_LOCK_NAME
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise RollbackError(
                f"cannot open the lock file {path}: {exc.strerror or exc} (a symlink is refused)",
                EXIT_COULD_NOT_RUN,
            ) from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(descriptor)
            if time.monotonic() >= deadline:
                raise RollbackError(
                    f"another command is writing migrations into {shown_path(root)} ({holder}); waited "
                    f"{timeout:g}s; run it again when that one is done",
                    EXIT_COULD_NOT_RUN,
                ) from None
            if announce is not None and not announced:
                announce(f"Waiting for another command writing migrations into {shown_path(root)} ({holder})...")
                announced = True
            time.sleep(POLL_SECONDS)
            continue
        try:
            current = os.lstat(path)
        except FileNotFoundError:
            current = None
        mine = os.fstat(descriptor)
        if current is None or (current.st_ino, current.st_dev) != (mine.st_ino, mine.st_dev):
            os.close(descriptor)  # the holder removed it as we locked: lock the new one
            continue
        break
    try:
        if stat.S_ISREG(mine.st_mode) and mine.st_nlink == 1 and mine.st_uid == os.geteuid():
            os.ftruncate(descriptor, 0)  # our own file, no link to another: safe to rewrite
            os.pwrite(descriptor, f"pid {os.getpid()}".encode(), 0)
        yield
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.close(descriptor)
