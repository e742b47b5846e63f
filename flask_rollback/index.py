"""The revision index: each migration file's header, read once and kept beside the files.

Commands that only read the graph (heads, current, showmigrations, check, history, the planner)
need each file's revision, down_revision, branch_labels, depends_on and irreversible marker,
never its code. Those are read with ``ast`` (never executed) and cached per app folder in
``__pycache__/flask_rollback_index.json`` (where Python keeps its own bytecode, so git ignores it),
keyed by file name, size, mtime and ctime, with the file's sha256. A file whose stat changed is
read again (and re-parsed only when its hash changed); a file changed within the timestamp
resolution of the last index write ("racily clean", as git calls it) is always re-hashed. An index
that is unreadable, corrupt or from another format is ignored and rewritten; a folder that cannot
be written (an installed package, a read-only checkout) is simply read without one.

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
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import RollbackError

INDEX_NAME = "flask_rollback_index.json"
CACHE_DIR = "__pycache__"
#: Bumped whenever an entry's layout or meaning changes: an index of another format is rebuilt.
FORMAT = 1
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
HEADER_NAMES = ("revision", "down_revision", "branch_labels", "depends_on", "irreversible")
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
    """What a migration file declares at module level: its place in the graph."""

    path: Path
    revision: str
    down_revision: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    branch_labels: tuple[str, ...] = ()
    #: The ``irreversible = "why"`` marker (a rollback barrier), None when absent.
    irreversible: Any = None
    #: The Create Date line of the docstring, as Alembic's template writes it.
    created: str | None = None
    #: The module, once imported (at once when the header is computed, else when a step runs).
    module: ModuleType | None = field(default=None, repr=False, compare=False)
    #: The file's sha256 as the index read it (what the schema snapshot's digest is made of).
    sha256: str | None = field(default=None, repr=False, compare=False)

    def graph_key(self) -> tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """What places the migration in the graph."""
        return self.revision, self.down_revision, self.depends_on, self.branch_labels


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
            f"migration file {path} has a syntax error{line}: {reason}; fix or remove it"
        ) from None
    assignments = module_assignments(tree)
    values = {name: node.value for name, node in assignments.items()}
    value = values.get("revision")
    if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
        if "revision" in values or _rebinds_header(tree, assignments):
            return None  # computed: importing the file tells
        raise RollbackError(f"migration file {path} declares no revision = '...'; fix or remove it")
    try:
        revision = validate_revision_id(value.value)
    except RollbackError as exc:
        raise RollbackError(f"migration file {path}: {exc.message}; fix or remove it") from None
    if _rebinds_header(tree, assignments):
        return None
    if "down_revision" not in values:
        raise RollbackError(
            f"migration file {path} declares no down_revision (None for an app's first "
            "migration); fix or remove it"
        )
    names = {key: constant_names(values.get(key)) for key in ("down_revision", "depends_on", "branch_labels")}
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
        path=path,
        revision=revision,
        down_revision=names["down_revision"],  # type: ignore[arg-type]
        depends_on=names["depends_on"],  # type: ignore[arg-type]
        branch_labels=names["branch_labels"],  # type: ignore[arg-type]
        irreversible=irreversible.value if irreversible is not None else None,  # type: ignore[union-attr]
        created=created["date"].strip() if created else None,
    )


def _rebinds_header(tree: ast.Module, assignments: dict[str, ast.Assign | ast.AnnAssign]) -> bool:
    """Could a header name end up other than its last plain module-level assignment says?
    (assigned inside an ``if``/``try``/loop, by ``global`` in a function, unpacked, augmented,
    imported with ``*``, or through ``globals()`` and the like)."""
    plain = {
        id(node.targets[0] if isinstance(node, ast.Assign) else node.target)
        for node in tree.body
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        and (not isinstance(node, ast.Assign) or len(node.targets) == 1)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in HEADER_NAMES and isinstance(node.ctx, (ast.Store, ast.Del)):
            if id(node) not in plain:
                return True
        elif isinstance(node, ast.Global) and set(node.names) & set(HEADER_NAMES):
            return True
        elif isinstance(node, ast.ImportFrom) and any(alias.name == "*" for alias in node.names):
            return True
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and any(
            (alias.asname or alias.name) in HEADER_NAMES for alias in node.names
        ):
            return True
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _GLOBAL_WRITERS:
            return True
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in HEADER_NAMES:
            return True
    return False


def import_migration(path: Path) -> ModuleType:
    """Import one migration file as Alembic does; a failure is one line naming the file."""
    from alembic.util import load_python_file

    try:
        return load_python_file(path.parent, path.name)
    except Exception as exc:
        where = failing_file(exc, [path]) or f"migration file {path}"
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
            return f"migration file {path} (line {frame.lineno})"
    return None


def imported_header(path: Path, module: ModuleType) -> Declared:
    """The header as the imported module holds it (for files whose header is computed)."""
    from alembic.util import to_tuple

    revision = getattr(module, "revision", None)
    if not isinstance(revision, str):
        raise RollbackError(f"migration file {path} declares no revision = '...'; fix or remove it")
    try:
        validate_revision_id(revision)
    except RollbackError as exc:
        raise RollbackError(f"migration file {path}: {exc.message}; fix or remove it") from None
    if not hasattr(module, "down_revision"):
        raise RollbackError(
            f"migration file {path} declares no down_revision (None for an app's first "
            "migration); fix or remove it"
        )
    found = {}
    for name in ("down_revision", "depends_on", "branch_labels"):
        value = to_tuple(getattr(module, name, None), default=())
        if not all(isinstance(item, str) for item in value):
            raise RollbackError(f"migration file {path}: {name} must be revision ids or labels; fix it")
        found[name] = tuple(value)
    doc = (module.__doc__ or "").strip()
    created = CREATE_DATE_RE.search(doc)
    return Declared(
        path=path, revision=revision, irreversible=getattr(module, "irreversible", None),
        created=created["date"].strip() if created else None, module=module, **found,
    )


# -- the index file ---------------------------------------------------------------------------

#: An entry: [size, mtime_ns, ctime_ns, sha256, revision, down_revision, depends_on,
#: branch_labels, irreversible, created]; a computed header: [size, mtime_ns, ctime_ns, sha256].
Entry = list


def read_folder(folder: Path) -> list[Declared]:
    """Every migration file of an app folder, its header from the index where it is current."""
    try:
        entries = sorted(
            (entry for entry in os.scandir(folder) if MIGRATION_FILE_RE.match(entry.name)),
            key=lambda entry: entry.name,
        )
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise RollbackError(f"cannot read migrations folder {folder}: {exc.strerror}") from None
    started = time.time_ns()
    cached, written = _load(folder)
    fresh: dict[str, Entry] = {}
    found: list[Declared] = []
    dirty = False
    for entry in entries:
        try:
            if not entry.is_file():
                continue
            info = entry.stat()
        except OSError:
            continue
        path = folder / entry.name
        key = [info.st_size, info.st_mtime_ns, info.st_ctime_ns]
        old = cached.get(entry.name)
        racy = old is not None and max(old[1], old[2]) >= written - RACY_NS
        if old is not None and old[:3] == key and not racy:
            fresh[entry.name] = old
            found.append(_declared(path, old))
            continue
        source = _read(path)
        digest = hashlib.sha256(source).hexdigest()
        if old is not None and old[3] == digest and len(source) == old[0]:
            new = key + old[3:]  # touched, checked out again: same bytes, same header
            if old[:3] != key or max(key[1], key[2]) < started - RACY_NS:
                dirty = True  # no longer racy once written again
        else:
            declared = parse(path, source)
            new = key + [digest] + (_entry(declared) if declared is not None else [])
            dirty = True
        fresh[entry.name] = new
        found.append(_declared(path, new))
    if dirty or set(cached) != set(fresh):
        _store(folder, fresh, started)
    return found


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise RollbackError(f"cannot read migration file {path}: {exc.strerror}") from None


def _entry(declared: Declared) -> list[Any]:
    return [
        declared.revision, list(declared.down_revision), list(declared.depends_on),
        list(declared.branch_labels), declared.irreversible, declared.created,
    ]


def _declared(path: Path, entry: Entry) -> Declared:
    if len(entry) == 4:  # computed header: the module says
        declared = imported_header(path, import_migration(path))
        declared.sha256 = entry[3]
        return declared
    revision, down, depends, labels, irreversible, created = entry[4:]
    return Declared(
        path, revision, tuple(down), tuple(depends), tuple(labels), irreversible, created,
        sha256=entry[3],
    )


def _valid(entry: object) -> bool:
    """An entry of the right shape (anything else in a hand-edited or damaged index is dropped)."""
    if not isinstance(entry, list) or len(entry) not in (4, 10):
        return False
    if not all(type(v) is int for v in entry[:3]) or not isinstance(entry[3], str):
        return False
    if len(entry) == 4:
        return True
    revision, down, depends, labels, irreversible, created = entry[4:]
    return (
        isinstance(revision, str) and bool(REVISION_RE.match(revision))
        and all(isinstance(v, list) and all(isinstance(s, str) for s in v) for v in (down, depends, labels))
        and (irreversible is None or isinstance(irreversible, (str, bool, int)))
        and (created is None or isinstance(created, str))
    )


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


def _load(folder: Path) -> tuple[dict[str, Entry], int]:
    """The cached entries and when they were written; nothing when absent, unreadable or not ours."""
    if os.open not in os.supports_dir_fd:
        return {}, 0
    directory = _open_cache(folder, create=False)
    if directory is None:
        return {}, 0
    try:
        fd = os.open(INDEX_NAME, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0), dir_fd=directory)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return {}, 0
            data = json.loads(handle.read())
    except (OSError, ValueError):
        return {}, 0
    finally:
        os.close(directory)
    if not (
        isinstance(data, dict) and data.get("format") == FORMAT and type(data.get("written")) is int
        and isinstance(data.get("files"), dict)
    ):
        return {}, 0
    return {name: e for name, e in data["files"].items() if _valid(e)}, data["written"]


def _store(folder: Path, files: dict[str, Entry], written: int) -> None:
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
        with os.fdopen(fd, "w") as handle:
            json.dump({"format": FORMAT, "written": written, "files": files}, handle, separators=(",", ":"))
        os.replace(temporary, INDEX_NAME, src_dir_fd=directory, dst_dir_fd=directory)
    except OSError:
        try:
            os.unlink(temporary, dir_fd=directory)
        except OSError:
            pass
    finally:
        os.close(directory)
