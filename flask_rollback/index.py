"""The revision index: each migration file's header, read once and kept beside the files.

Commands that only read the graph (heads, current, showmigrations, check, history, graph, the
planner) need each file's revision, down_revision, branch_labels, depends_on, irreversible marker
and (for a squash) the revisions it replaces, never its code. Those are read with ``ast`` (never executed) and cached per app folder in
``__pycache__/flask_rollback_index.json`` (where Python keeps its own bytecode, so git ignores it),
keyed by file name, size, mtime and ctime, with the file's sha256. A file whose stat changed is
read again (and re-parsed only when its hash changed); a file changed within the timestamp
resolution of the last index write ("racily clean", as git calls it) is always re-hashed. An index
that is unreadable, corrupt (its body no longer matches the sha256 its head holds) or from another
format is ignored and rewritten; a folder that cannot be written (an installed package, a
read-only checkout) is simply read without one. An intact index is trusted as Python trusts the
bytecode beside it in ``__pycache__``: whoever can write there can write the migrations too.
Within one process the last index of each folder is also kept in memory, and reused under the
same check (every file stat'ed again, nothing racy), so a test suite upgrading a database per
test decodes each folder's index, and makes its headers, once.

A header computed at run time (``revision = make_id()``) cannot be read statically: that one file
is imported, every time, and never cached.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import secrets
import stat
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import RollbackError
from .wording import shown_path

INDEX_NAME = "flask_rollback_index.json"
CACHE_DIR = "__pycache__"
#: Bumped whenever the layout or meaning changes: an index of another format is rebuilt.
FORMAT = 3
#: Files whose mtime or ctime is this close to (or after) the index's write time may have been
#: changed again within the same timestamp tick: their content is re-hashed on every read.
RACY_NS = 2_000_000_000
#: The files Alembic loads from a version location (its own rule), so every one is checked.
MIGRATION_FILE_RE = re.compile(r"^(?!\.#|__init__).*\.py$")
REVISION_RE = re.compile(r"^[0-9A-Za-z_]{1,64}$")
#: The creation time Alembic's template writes into a migration's docstring.
CREATE_DATE_RE = re.compile(r"^Create Date:[ \t]*(?P<date>\S.*)$", re.MULTILINE)
#: Module-level names the index reads; anything assigning them other than as one plain
#: ``name = constant`` statement makes the file "dynamic" (imported to be read).
HEADER_NAMES = ("revision", "down_revision", "branch_labels", "depends_on", "irreversible", "replaces")
#: Calls that can set module globals behind ``ast``'s back.
_GLOBAL_WRITERS = frozenset({"globals", "vars", "locals", "exec", "eval", "setattr", "__import__"})


def validate_revision_id(revision: str) -> str:
    """Revision ids end up in SQL and file names: restrict them before they are used."""
    if not REVISION_RE.match(revision):
        raise RollbackError(
            f"invalid revision {revision!r}: revision ids are letters, digits and underscores"
        )
    return revision


@dataclass(slots=True)
class Declared:
    """What a migration file declares at module level: its place in the graph (the folder is
    shared by every file of an app: a history of 10,000 files keeps no path per file)."""

    #: The app folder holding the file, and the file's name in it.
    directory: Path
    filename: str
    revision: str
    down_revision: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    branch_labels: tuple[str, ...] = ()
    #: The ``irreversible = "why"`` marker (a rollback barrier), None when absent.
    irreversible: Any = None
    #: The Create Date line of the docstring, as Alembic's template writes it.
    created: str | None = None
    #: A squash's ``replaces``: the revisions it stands for (squash.py).
    replaces: tuple[str, ...] = ()
    #: The graph key the file itself declares, when a squash changed down_revision or
    #: depends_on in memory (squash.py); None when the file says what the graph holds.
    file_key: tuple[Any, ...] | None = field(default=None, repr=False, compare=False)
    #: The module of a file whose header is computed at run time, imported to read it (a file
    #: read statically is imported by its Alembic Script, per run: scripts.py).
    module: ModuleType | None = field(default=None, repr=False, compare=False)
    #: The file's sha256 as the index read it (what the schema snapshot's digest is made of).
    sha256: str | None = field(default=None, repr=False, compare=False)

    @property
    def path(self) -> Path:
        return self.directory / self.filename

    def graph_key(self) -> tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """What places the migration in the graph."""
        return self.revision, self.down_revision, self.depends_on, self.branch_labels, self.replaces

    def declared_key(self) -> tuple[Any, ...]:
        """The graph key as the file writes it (what importing it must give back)."""
        return self.file_key if self.file_key is not None else self.graph_key()


def migration_files(folder: Path) -> list[Path]:
    """The files Alembic would load from ``folder``, in name order."""
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.iterdir()) if MIGRATION_FILE_RE.match(p.name) and p.is_file()]


# -- reading one file -------------------------------------------------------------------------


def module_assignments(tree: ast.Module) -> dict[str, ast.Assign | ast.AnnAssign]:
    """Module-level ``name = ...`` (or ``name: type = ...``) statements by name; the last wins."""
    found: dict[str, ast.Assign | ast.AnnAssign] = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        for target in targets:
            if isinstance(target, ast.Name):
                found[target.id] = node  # type: ignore[assignment]
    return found


def constant_names(node: ast.expr | None) -> tuple[str, ...] | None:
    """A constant None, string, or tuple/list of strings as a tuple; None if computed."""
    if node is None or (isinstance(node, ast.Constant) and node.value is None):
        return ()
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return (node.value,)
    if isinstance(node, (ast.Tuple, ast.List)) and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts
    ):
        return tuple(e.value for e in node.elts)  # type: ignore[attr-defined]
    return None


def parse(path: Path, source: bytes) -> Declared | None:
    """The header of a migration file read statically; None when a value is computed (the file
    must then be imported to know it). Syntax errors and a missing or invalid revision are
    reported by file name."""
    try:
        tree = ast.parse(source, filename=str(path))
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes, before Python 3.11.4
        lineno = getattr(exc, "lineno", None)
        line = f" at line {lineno}" if lineno else ""
        reason = getattr(exc, "msg", None) or str(exc)
        raise RollbackError(
            f"migration file {shown_path(path)} has a syntax error{line}: {reason}; fix or remove it"
        ) from None
    assignments = module_assignments(tree)
    values = {name: node.value for name, node in assignments.items()}
    value = values.get("revision")
    if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
        if "revision" in values or _rebinds_header(tree, assignments):
            return None  # computed: importing the file tells
        raise RollbackError(
            f"migration file {shown_path(path)} declares no revision = '...'; fix or remove it"
        )
    try:
        revision = validate_revision_id(value.value)
    except RollbackError as exc:
        raise RollbackError(f"migration file {shown_path(path)}: {exc.message}; fix or remove it") from None
    if _rebinds_header(tree, assignments):
        return None
    if "down_revision" not in values:
        raise RollbackError(
            f"migration file {shown_path(path)} declares no down_revision (None for an app's first "
            "migration); fix or remove it"
        )
    names = {
        key: constant_names(values.get(key))
        for key in ("down_revision", "depends_on", "branch_labels", "replaces")
    }
    irreversible = values.get("irreversible")
    if any(found is None for found in names.values()) or not (
        irreversible is None or (
            isinstance(irreversible, ast.Constant) and isinstance(irreversible.value, (str, bool, int))
        )
    ):
        return None
    doc = ast.get_docstring(tree, clean=False) or ""
    created = CREATE_DATE_RE.search(doc.strip())
    return Declared(
        directory=path.parent,
        filename=path.name,
        revision=revision,
        down_revision=names["down_revision"],  # type: ignore[arg-type]
        depends_on=names["depends_on"],  # type: ignore[arg-type]
        branch_labels=names["branch_labels"],  # type: ignore[arg-type]
        irreversible=irreversible.value if irreversible is not None else None,  # type: ignore[union-attr]
        created=created["date"].strip() if created else None,
        replaces=names["replaces"],  # type: ignore[arg-type]
    )


def docstring(path: Path) -> str | None:
    """The module's docstring (``module.__doc__``) read without running the file; None when the
    file may set ``__doc__`` itself (then only importing it tells)."""
    source = _read(path)
    try:
        tree = ast.parse(source, filename=str(path))
    except (SyntaxError, ValueError):
        return None
    assignments = module_assignments(tree)
    if "__doc__" in assignments or _rebinds_header(tree, assignments, ("__doc__",)):
        return None
    return ast.get_docstring(tree, clean=False) or ""


def _rebinds_header(
    tree: ast.Module,
    assignments: dict[str, ast.Assign | ast.AnnAssign],
    names: tuple[str, ...] = HEADER_NAMES,
) -> bool:
    """Could one of ``names`` end up other than its last plain module-level assignment says?
    (assigned inside an ``if``/``try``/loop, by ``global`` in a function, unpacked, augmented,
    imported with ``*``, or through ``globals()`` and the like)."""
    plain = {
        id(node.targets[0] if isinstance(node, ast.Assign) else node.target)
        for node in tree.body
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        and (not isinstance(node, ast.Assign) or len(node.targets) == 1)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in names and isinstance(node.ctx, (ast.Store, ast.Del)):
            if id(node) not in plain:
                return True
        elif isinstance(node, ast.Global) and set(node.names) & set(names):
            return True
        elif isinstance(node, ast.ImportFrom) and any(alias.name == "*" for alias in node.names):
            return True
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and any(
            (alias.asname or alias.name) in names for alias in node.names
        ):
            return True
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _GLOBAL_WRITERS:
            return True
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in names:
            return True
    return False


def import_migration(path: Path) -> ModuleType:
    """Import one migration file as Alembic does; a failure is one line naming the file."""
    from alembic.util import load_python_file

    try:
        return load_python_file(path.parent, path.name)
    except Exception as exc:
        where = failing_file(exc, [path]) or f"migration file {shown_path(path)}"
        raise RollbackError(
            f"{where} failed to import: {type(exc).__name__}: {exc}; fix or remove it"
        ) from None


def failing_file(exc: BaseException, files: Iterable[Path]) -> str | None:
    """Name the migration file (and line) an import-time exception came from, or None when
    no migration file is on the traceback."""
    known = {os.path.realpath(path): path for path in files}
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = known.get(os.path.realpath(frame.filename))
        if path is not None:
            return f"migration file {shown_path(path)} (line {frame.lineno})"
    return None


def imported_header(path: Path, module: ModuleType) -> Declared:
    """The header as the imported module holds it (for files whose header is computed)."""
    from alembic.util import to_tuple

    revision = getattr(module, "revision", None)
    if not isinstance(revision, str):
        raise RollbackError(
            f"migration file {shown_path(path)} declares no revision = '...'; fix or remove it"
        )
    try:
        validate_revision_id(revision)
    except RollbackError as exc:
        raise RollbackError(f"migration file {shown_path(path)}: {exc.message}; fix or remove it") from None
    if not hasattr(module, "down_revision"):
        raise RollbackError(
            f"migration file {shown_path(path)} declares no down_revision (None for an app's first "
            "migration); fix or remove it"
        )
    found = {}
    for name in ("down_revision", "depends_on", "branch_labels", "replaces"):
        value = to_tuple(getattr(module, name, None), default=())
        if not all(isinstance(item, str) for item in value):
            raise RollbackError(
                f"migration file {shown_path(path)}: {name} must be revision ids or labels; fix it"
            )
        found[name] = tuple(value)
    doc = (module.__doc__ or "").strip()
    created = CREATE_DATE_RE.search(doc)
    return Declared(
        directory=path.parent, filename=path.name, revision=revision, irreversible=getattr(module, "irreversible", None),
        created=created["date"].strip() if created else None, module=module, **found,
    )


# -- the index file ---------------------------------------------------------------------------
#
# One JSON document per app folder, in two lines: a head ``{"format", "written", "body_sha256"}``
# and a body whose sha256 the head holds (a body that was cut short, edited by hand or damaged
# does not match, and the whole index is rebuilt). The body is columnar, one list per field with
# an item per file, so a history of 10,000 files decodes into a few lists of strings rather
# than into objects per file:
#
#   files          the file names, sorted;
#   stat           size, mtime_ns, ctime_ns of each file, flat (three per file);
#   sha256         the files' sha256 digests, hex, concatenated (64 characters per file);
#   revision       the revision id; null for a header computed at run time (the other
#                  header fields are null too: the file is imported to know them);
#   down_revision, depends_on, branch_labels
#                  null (none), a string (one) or a list of strings;
#   irreversible   the marker's value, or null;
#   created        the Create Date of the docstring, or null;
#   replaces       a squash's replaced revisions: null (none) or a list of strings.

#: The columns that hold a file's header, in Declared's order.
HEADER_COLUMNS = (
    "revision", "down_revision", "depends_on", "branch_labels", "irreversible", "created", "replaces",
)
DIGEST_LENGTH = 64
#: A file's header as the index stores it: one item of each header column.
Header = tuple


@dataclass(slots=True)
class _Index:
    """One folder's index as read from disk, or as it is written."""

    written: int
    files: list[str]
    stat: list[int]
    sha256: str
    #: The header columns, each a list with an item per file.
    columns: list[list[Any]]
    #: The folder (as spelt) and the headers made for it, kept when no header is computed at run
    #: time: a repeat read of an unchanged folder returns the very same list (loader.scan and
    #: the graph build on that to reuse what they made from it).
    made: tuple[Path, list[Declared]] | None = None

    def entries(self) -> dict[str, tuple[list[int], str, Header]]:
        """name → (size/mtime/ctime, sha256, header): for a folder where something changed."""
        return {
            name: (
                self.stat[3 * i:3 * i + 3],
                self.sha256[DIGEST_LENGTH * i:DIGEST_LENGTH * (i + 1)],
                header,
            )
            for i, (name, header) in enumerate(zip(self.files, zip(*self.columns)))
        }

    def declared(self, folder: Path) -> list[Declared]:
        """The files' headers; one computed at run time is read by importing that file, every
        time (such a folder's headers are never kept)."""
        if self.made is not None and self.made[0] == folder:
            return self.made[1]
        found: list[Declared] = []
        computed = False
        #: A parent is an earlier revision of the same folder: its one string is shared.
        revisions: dict[str, str] = {}
        rows = zip(self.files, *self.columns)
        for i, (name, revision, down, depends, labels, irreversible, created, replaces) in enumerate(rows):
            sha256 = self.sha256[DIGEST_LENGTH * i:DIGEST_LENGTH * (i + 1)]
            if revision is None:
                path = folder / name
                declared = imported_header(path, import_migration(path))
                declared.sha256 = sha256
                found.append(declared)
                computed = True
                continue
            revisions[revision] = revision
            parents = (revisions.get(down, down),) if type(down) is str else _names(down)
            found.append(Declared(
                folder, name, revision, parents, _names(depends), _names(labels), irreversible, created,
                _names(replaces), sha256=sha256,
            ))
        if not computed:
            self.made = (folder, found)
        return found


def read_folder(folder: Path) -> list[Declared]:
    """Every migration file of an app folder, its header from the index where it is current.

    Every file is stat'ed; when names, sizes and times all match the index and none of them is
    racily close to when the index was written, the headers are taken as stored. Otherwise each
    file is looked at on its own: a file whose size and times match (and are not racy) keeps
    its entry, any other is read and hashed, and parsed again when its hash changed."""
    names, stats = _scan(folder)
    started = time.time_ns()
    where = os.path.abspath(folder)
    cached = _read_in_process.get(where)
    if not (cached is not None and _is_current(cached, names, stats)):
        cached = _load(folder)
    if cached is not None and _is_current(cached, names, stats):
        _read_in_process[where] = cached
        return cached.declared(folder)
    old = cached.entries() if cached is not None else {}
    written = cached.written if cached is not None else 0
    digests: list[str] = []
    headers: list[Header] = []
    dirty = cached is not None and cached.files != names
    for i, name in enumerate(names):
        key = stats[3 * i:3 * i + 3]
        old_key, old_digest, old_header = old.get(name, (None, "", ()))
        if old_key == key and _newest(key) < written - RACY_NS:
            digests.append(old_digest)
            headers.append(old_header)
            continue
        path = folder / name
        source = _read(path)
        digest = hashlib.sha256(source).hexdigest()
        if old_key is not None and old_digest == digest and old_key[0] == len(source):
            header = old_header  # touched, checked out again: same bytes, same header
            if old_key != key or _newest(key) < started - RACY_NS:
                dirty = True  # new times, or no longer racy once written again
        else:
            header = _header(parse(path, source))
            dirty = True
        digests.append(digest)
        headers.append(header)
    columns = [list(column) for column in zip(*headers)] or [[] for _ in HEADER_COLUMNS]
    index = _Index(started, names, stats, "".join(digests), columns)
    if dirty:
        _store(folder, index)
    _read_in_process[where] = index
    return index.declared(folder)


#: The last index read or built per folder (absolute path) in this process: a repeat read
#: (a test suite creating an app and upgrading per test) skips reading and decoding the file.
#: Used under exactly the check the index file is: every file stat'ed again, names, sizes and
#: times equal, none racily close to when the index was made. Never changed once stored, but
#: for keeping the headers it gives (``_Index.made``), which are never changed either.
_read_in_process: dict[str, _Index] = {}


def _is_current(index: _Index, names: list[str], stats: list[int]) -> bool:
    """``index`` holds the folder's files as they are: the same names, sizes and times, and
    none changed within the timestamp resolution of when it was made."""
    return index.files == names and index.stat == stats and _newest(stats) < index.written - RACY_NS


def _scan(folder: Path) -> tuple[list[str], list[int]]:
    """The migration files of a folder, sorted by name, and their size, mtime and ctime (flat)."""
    try:
        with os.scandir(folder) as found:
            entries = [entry for entry in found if MIGRATION_FILE_RE.match(entry.name)]
        entries.sort(key=attrgetter("name"))
    except (FileNotFoundError, NotADirectoryError):
        return [], []
    except OSError as exc:
        raise RollbackError(f"cannot read migrations folder {shown_path(folder)}: {exc.strerror}") from None
    names: list[str] = []
    stats: list[int] = []
    for entry in entries:
        try:
            if not entry.is_file():
                continue
            info = entry.stat()
        except OSError:  # gone since the folder was listed
            continue
        names.append(entry.name)
        stats += (info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    return names, stats


def _newest(stats: list[int]) -> int:
    """The latest mtime or ctime among flat size/mtime/ctime triples (0 for none)."""
    return max(max(stats[1::3], default=0), max(stats[2::3], default=0))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise RollbackError(f"cannot read migration file {shown_path(path)}: {exc.strerror}") from None


def _header(declared: Declared | None) -> Header:
    """The header as the index stores it; all nulls for one computed at run time."""
    if declared is None:
        return (None,) * len(HEADER_COLUMNS)
    return (
        declared.revision, _stored_names(declared.down_revision), _stored_names(declared.depends_on),
        _stored_names(declared.branch_labels), declared.irreversible, declared.created,
        _stored_names(declared.replaces),
    )


def _stored_names(names: tuple[str, ...]) -> str | list[str] | None:
    return None if not names else names[0] if len(names) == 1 else list(names)


def _names(stored: str | list[str] | None) -> tuple[str, ...]:
    return () if stored is None else (stored,) if type(stored) is str else tuple(stored)


def _open_cache(folder: Path, create: bool) -> int | None:
    """A descriptor of ``folder/__pycache__``, never through a symlink; None when absent or not a
    plain directory (then there is no index)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
    cache = folder / CACHE_DIR
    try:
        return os.open(cache, flags)
    except FileNotFoundError:
        if not create:
            return None
    except OSError:
        return None
    try:
        os.mkdir(cache)
        return os.open(cache, flags)
    except OSError:
        return None


def _load(folder: Path) -> _Index | None:
    """The folder's index; None when absent, unreadable, damaged or not of this format."""
    if os.open not in os.supports_dir_fd:
        return None
    directory = _open_cache(folder, create=False)
    if directory is None:
        return None
    try:
        fd = os.open(INDEX_NAME, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0), dir_fd=directory)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return None
            data = handle.read()
    except OSError:
        return None
    finally:
        os.close(directory)
    return _decode(data)


def _decode(data: bytes) -> _Index | None:
    """The index in ``data``, or None unless it is of this format and its body is intact."""
    first, _, body = data.partition(b"\n")
    try:
        head = json.loads(first)
        if not (
            isinstance(head, dict) and head.get("format") == FORMAT
            and type(head.get("written")) is int
            and head.get("body_sha256") == hashlib.sha256(body).hexdigest()
        ):
            return None
        body_columns = json.loads(body)
        index = _Index(
            head["written"], body_columns["files"], body_columns["stat"], body_columns["sha256"],
            [body_columns[name] for name in HEADER_COLUMNS],
        )
    except (ValueError, TypeError, KeyError):
        return None
    count = len(index.files) if isinstance(index.files, list) else -1
    if not (
        isinstance(index.stat, list) and len(index.stat) == 3 * count
        and isinstance(index.sha256, str) and len(index.sha256) == DIGEST_LENGTH * count
        and all(isinstance(column, list) and len(column) == count for column in index.columns)
    ):
        return None
    return index


def _encode(index: _Index) -> bytes:
    body = json.dumps(
        {"files": index.files, "stat": index.stat, "sha256": index.sha256,
         **dict(zip(HEADER_COLUMNS, index.columns))},
        separators=(",", ":"),
    ).encode()
    head = {"format": FORMAT, "written": index.written, "body_sha256": hashlib.sha256(body).hexdigest()}
    return json.dumps(head, separators=(",", ":")).encode() + b"\n" + body


def _store(folder: Path, index: _Index) -> None:
    """Write the index atomically (a private temporary file, then a rename); a folder that cannot
    be written keeps no index, silently."""
    if os.open not in os.supports_dir_fd:
        return
    directory = _open_cache(folder, create=True)
    if directory is None:
        return
    temporary = f".{INDEX_NAME}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(
            temporary,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
            0o600,
            dir_fd=directory,
        )
        with os.fdopen(fd, "wb") as handle:
            handle.write(_encode(index))
        os.replace(temporary, INDEX_NAME, src_dir_fd=directory, dst_dir_fd=directory)
    except OSError:
        try:
            os.unlink(temporary, dir_fd=directory)
        except OSError:
            pass
    finally:
        os.close(directory)
