"""Turns a Flask-Migrate (or plain Alembic) migrations folder into flask-rollback's.

Every revision id is kept, so the database's ``alembic_version`` already names the new files:
no stamping, and the whole history can still be downgraded. The history becomes one app's
folder (``0001_<slug>.py`` in history order; the app's branch label added to its root), the
few-line ``env.py`` and our template replace the old ones, and the old folder is renamed to a
backup that is never overwritten.

Everything is read and checked first, and anything that cannot be converted (two heads, a
missing or computed revision, an unparsable file, a database at a revision no file provides)
is refused before a file is written. An ``env.py`` with custom code is converted anyway: a copy
is kept and each thing it did that flask-rollback does not do automatically is named.
"""

from __future__ import annotations

import ast
import configparser
import heapq
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError, coerce_resource_to_filename

from .apps import validate_label
from .autodetect import NUMBER_RE, slugify
from .checks import undeclared_empty_downgrade
from .dataloss import read_only
from .errors import RollbackError
from .loader import (
    TEMPLATES,
    constant_names,
    dotted_name,
    failing_file,
    foreign_layout,
    migration_files,
    module_assignments,
    runs_our_env,
    scan_files,
    validate_revision_id,
)
from .project import Project
from .settings import ALEMBIC_KEYWORD_HINTS, Settings

#: Where a custom env.py is kept, next to the new one (the backup holds the original too).
ENV_COPY = "env.py.orig"
#: ``configure()`` keywords flask-rollback's env.py passes itself, from the app and its settings.
PROVIDED_KEYWORDS = frozenset({"url", "connection", "target_metadata", "literal_binds", "dialect_opts"})
#: ``configure()`` keywords a ``ROLLBACK_*`` setting replaces (keyword = the setting's field).
SETTING_KEYWORDS = frozenset({"compare_type", "compare_server_default", "render_as_batch", "version_table"})
#: Modules the stock Flask-Migrate and Alembic env.py files import.
STOCK_MODULES = frozenset({"__future__", "logging", "alembic", "flask", "sqlalchemy", "asyncio"})


@dataclass(frozen=True)
class AdoptedFile:
    """One migration of the old history and the file it becomes."""

    revision: str
    source: Path
    target: Path
    #: The history's root: the app's branch label was added to its ``branch_labels``.
    labelled: bool


@dataclass(frozen=True)
class EnvNote:
    """Something the old env.py did that flask-rollback does not do automatically."""

    line: int
    what: str
    #: The ``ROLLBACK_*`` setting that replaces it, or why nothing does.
    instead: str


@dataclass
class Adoption:
    """What ``adopt`` did (or, with ``dry_run``, would do)."""

    app: str
    root: Path
    dry_run: bool
    #: "Flask-Migrate" or "Alembic".
    kind: str = ""
    source: Path | None = None
    files: list[AdoptedFile] = field(default_factory=list)
    #: The database's version rows, all provided by the history.
    database_revisions: tuple[str, ...] = ()
    notes: list[EnvNote] = field(default_factory=list)
    #: Where the custom env.py is kept (None: it was the stock one).
    env_copy: Path | None = None
    #: The old folder, renamed.
    backup: Path | None = None
    #: An alembic.ini outside the old folder, moved into the backup.
    moved_ini: Path | None = None
    #: Version locations outside the old folder: read, left where they are, no longer used.
    left_in_place: list[Path] = field(default_factory=list)
    #: Why nothing was done (already adopted), or None.
    nothing_to_do: str | None = None
    #: The old env.py's version table, when it is not the one flask-rollback reads: the
    #: setting to make before anything else sees the history applied.
    version_table: str | None = None
    #: Adopted migrations whose downgrade() is empty, undeclared: reverting them is refused.
    empty_downgrades: list[AdoptedFile] = field(default_factory=list)


@dataclass(frozen=True)
class _Source:
    """Where the old migrations live."""

    kind: str
    folder: Path
    version_dirs: tuple[Path, ...]
    recursive: bool
    ini: Path | None


@dataclass(frozen=True)
class _Old:
    """One old migration file, read without importing it."""

    path: Path
    revision: str
    down_revision: tuple[str, ...]
    depends_on: tuple[str, ...]
    branch_labels: tuple[str, ...]
    message: str


def adopt(
    project: Project, app: str | None = None, *, source: Path | None = None, dry_run: bool = False
) -> Adoption:
    """Convert the Flask-Migrate/Alembic folder at ``source`` (default: the migrations root) into
    app ``app``'s history (default: the default app), keeping every revision id."""
    label = validate_label(app or project.settings.default_app)
    root = project.root
    result = Adoption(app=label, root=root, dry_run=dry_run)
    in_root = source is None or _same(source, root)
    ours = (root / "env.py").is_file() and runs_our_env(root / "env.py")
    if in_root and ours and not (root / "alembic.ini").is_file() and migration_files(root / "versions"):
        return _adopt_leftovers(project, result)
    if in_root and ours and not foreign_layout(root):
        result.nothing_to_do = f"{root} is already a flask-rollback migrations folder"
        return result
    if in_root and not root.exists():
        raise RollbackError(
            f"no migrations folder at {root}: nothing to adopt; give the Flask-Migrate folder or "
            "alembic.ini with --from"
        )
    found = _locate(source or root)
    result.kind, result.source = found.kind, found.folder
    in_place = _same(found.folder, root)
    if not in_place and root.exists() and foreign_layout(root):
        raise _cannot(
            found.folder,
            f"the migrations root {root} is itself a Flask-Migrate or Alembic folder; adopt it "
            "first ('flask db adopt' without --from)",
        )
    olds = [_read_old(path, found.folder) for path in _old_files(found)]
    order = _history(olds, found.folder)
    target_dir = _app_directory(project, label)
    existing = _existing_revisions(project, in_place)
    if olds and all(old.revision in existing for old in olds):
        result.nothing_to_do = (
            f"every revision of {found.folder} is already in {root}; it was adopted before"
        )
        return result
    _check_target(project, found, olds, existing, target_dir, in_place)
    env = found.folder / "env.py"
    ours = not env.is_file() or runs_our_env(env)
    notes, version_table = ([], None) if ours else _read_env(env, project.settings)
    result.notes = notes
    if version_table and version_table != project.settings.version_table:
        result.version_table = version_table
    result.database_revisions = _database_revisions(
        project, version_table or project.settings.version_table
    )
    provided = {old.revision for old in olds}
    unknown = [rev for rev in result.database_revisions if rev not in provided]
    if unknown:
        raise _cannot(
            found.folder,
            f"the database is at revision {', '.join(unknown)}, which no file of the history "
            "provides; restore that migration file (or check SQLALCHEMY_DATABASE_URI) first",
        )
    _check_labels(order, label, found.folder)
    result.files = _targets(order, label, target_dir)
    contents = {item.revision: _converted(item, label) for item in result.files}
    result.empty_downgrades = [
        item for item in result.files if undeclared_empty_downgrade(contents[item.revision])
    ]
    _check_loads(result.files, contents, found.folder)
    suffix = "flask-migrate-backup" if found.kind == "Flask-Migrate" else "alembic-backup"
    result.backup = _free_name(found.folder.with_name(f"{found.folder.name}.{suffix}"))
    if notes:
        result.env_copy = root / ENV_COPY if in_place else _free_name(root / ENV_COPY)
    if found.ini is not None and not _inside(found.ini, found.folder):
        result.moved_ini = result.backup / _free_name(found.folder / found.ini.name).name
    result.left_in_place = [d for d in found.version_dirs if d.is_dir() and not _inside(d, found.folder)]
    if not dry_run:
        _write(result, found, contents, in_place)
    return result


def _adopt_leftovers(project: Project, result: Adoption) -> Adoption:
    """Files written in Flask-Migrate's ``versions/`` on a branch made before the switch (and
    merged after it) continue the adopted history: each moves into the app folder holding its
    down_revision, numbered after that app's files, its revision id kept."""
    folder = project.root / "versions"
    result.kind, result.source = "leftover Flask-Migrate", folder
    olds = [_read_old(path, folder) for path in migration_files(folder)]
    known: dict[str, Path] = {}
    for app in project.resolve_registry():
        if not _same(app.directory, folder):  # versions/ itself looks like an app folder
            for path in migration_files(app.directory):
                known[_read_old(path, app.directory).revision] = path
    for old in olds:
        if old.revision in known:
            raise _cannot(
                folder,
                f"{old.path} has revision {old.revision}, which {known[old.revision]} already "
                "has; delete the leftover copy",
            )
    places: dict[str, Path] = {}
    waiting = list(olds)
    while waiting:
        placed = [old for old in waiting if old.down_revision and all(
            parent in known or parent in places for parent in old.down_revision)]
        if not placed:
            old = waiting[0]
            missing = [p for p in old.down_revision if p not in known and p not in places]
            why = f"down_revision {', '.join(missing)}, which no file provides" if missing else "no down_revision"
            raise _cannot(folder, f"{old.path} has {why}; it cannot continue any app's history")
        for old in sorted(placed, key=lambda item: item.path.name):
            folders = {
                places.get(parent) or known[parent].parent for parent in old.down_revision
            }
            if len(folders) > 1:
                raise _cannot(
                    folder,
                    f"{old.path} merges the histories of {', '.join(sorted(map(str, folders)))}; "
                    "merges across apps are written with depends_on, move it by hand",
                )
            target_dir = folders.pop()
            numbers = [int(m.group(1)) for p in target_dir.glob("*.py") if (m := NUMBER_RE.match(p.name))]
            numbers += [int(item.target.name[:4]) for item in result.files if item.target.parent == target_dir]
            stem = old.path.stem
            after = stem.split(old.revision, 1)[1] if old.revision in stem else ""
            slug = slugify(after) or slugify(old.message) or "auto"
            target = target_dir / f"{max(numbers, default=0) + 1:04d}_{slug}.py"
            result.files.append(AdoptedFile(old.revision, old.path, target, labelled=False))
            places[old.revision] = target_dir
            waiting.remove(old)
    result.database_revisions = _database_revisions(project, project.settings.version_table)
    if not result.dry_run:
        for item in result.files:
            os.rename(item.source, item.target)
        shutil.rmtree(folder / "__pycache__", ignore_errors=True)
        if not any(folder.iterdir()):
            folder.rmdir()
    return result


# -- where the old migrations are -------------------------------------------------------------


def _locate(path: Path) -> _Source:
    """A Flask-Migrate folder (env.py, versions/, alembic.ini without script_location), or an
    alembic.ini (or the folder holding one) naming its script folder."""
    if not path.exists():
        raise RollbackError(f"{path} does not exist; nothing to adopt")
    if path.is_file():
        return _from_ini(path)
    if (path / "alembic.ini").is_file():
        return _from_ini(path / "alembic.ini")
    if (path / "env.py").is_file() or (path / "versions").is_dir():
        return _Source("Flask-Migrate", path, (path / "versions",), False, None)
    raise RollbackError(
        f"{path} holds no Flask-Migrate or Alembic migrations (no alembic.ini, env.py or "
        "versions/ folder); nothing to adopt"
    )


def _from_ini(ini: Path) -> _Source:
    """Alembic reads the ini (script_location, version_locations, their separators) as it
    would for its own commands; Flask-Migrate's has no script_location: its own folder."""
    config = Config(str(ini))
    saved_path = list(sys.path)  # from_config applies prepend_sys_path
    try:
        location = config.get_main_option("script_location")
        if location is None:
            config.set_main_option("script_location", str(ini.parent).replace("%", "%%"))
        with warnings.catch_warnings():  # the legacy version_locations separator warns
            warnings.simplefilter("ignore")
            script = ScriptDirectory.from_config(config)
    except (configparser.Error, CommandError, ValueError) as exc:
        raise RollbackError(f"cannot read {ini}: {exc}; nothing to adopt") from None
    finally:
        sys.path[:] = saved_path
    dirs = tuple(
        Path(coerce_resource_to_filename(str(location)))
        for location in script.version_locations or ()
    ) or (Path(script.dir) / "versions",)
    kind = "Flask-Migrate" if location is None else "Alembic"
    return _Source(kind, Path(script.dir), dirs, script.recursive_version_locations, ini)


def _old_files(found: _Source) -> list[Path]:
    """The files Alembic would load from the version locations."""
    files: list[Path] = []
    for folder in found.version_dirs:
        files += migration_files(folder)
        if found.recursive and folder.is_dir():
            files += [
                path for sub in sorted(folder.rglob("*"))
                if sub.is_dir() and "__pycache__" not in sub.parts
                for path in migration_files(sub)
            ]
    return files


# -- reading and checking the history ---------------------------------------------------------


def _cannot(folder: Path, why: str) -> RollbackError:
    return RollbackError(f"cannot adopt {folder}: {why}; nothing was written")


def _read_old(path: Path, folder: Path) -> _Old:
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes, before Python 3.11.4
        lineno = getattr(exc, "lineno", None)
        line = f" at line {lineno}" if lineno else ""
        raise _cannot(folder, f"{path} cannot be parsed{line}: {getattr(exc, 'msg', None) or exc}") from None
    values = {name: node.value for name, node in module_assignments(tree).items()}
    revision = values.get("revision")
    if "revision" not in values:
        raise _cannot(folder, f"{path} declares no revision")
    if not (isinstance(revision, ast.Constant) and isinstance(revision.value, str)):
        raise _cannot(
            folder, f"{path} computes its revision id at runtime; write it as a string constant"
        )
    try:
        validate_revision_id(revision.value)
    except RollbackError as exc:
        raise _cannot(folder, f"{path}: {exc.message}") from None
    if "down_revision" not in values:
        raise _cannot(
            folder, f"{path} declares no down_revision (None for the first migration); add it"
        )
    declared: dict[str, tuple[str, ...]] = {}
    for name in ("down_revision", "depends_on", "branch_labels"):
        names = constant_names(values.get(name))
        if names is None:
            raise _cannot(folder, f"{path} computes its {name} at runtime; write it as constants")
        declared[name] = names
    upgrade = next(
        (node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "upgrade"),
        None,
    )
    if upgrade is not None and len(upgrade.args.args) > len(upgrade.args.defaults):
        raise _cannot(
            folder,
            f"{path}: upgrade() takes arguments ({upgrade.args.args[0].arg}): a multi-database "
            "history; flask-rollback migrates the default database only",
        )
    docstring = (ast.get_docstring(tree) or "").strip()
    return _Old(
        path=path,
        revision=revision.value,
        down_revision=declared["down_revision"],
        depends_on=declared["depends_on"],
        branch_labels=declared["branch_labels"],
        message=docstring.splitlines()[0] if docstring else "",
    )


def _history(olds: list[_Old], folder: Path) -> list[_Old]:
    """The migrations parents first; refused unless it is one history with a single head."""
    by_id: dict[str, _Old] = {}
    for old in olds:
        if old.revision in by_id:
            raise _cannot(
                folder,
                f"revision id {old.revision!r} is used by two files: {by_id[old.revision].path} "
                f"and {old.path}",
            )
        by_id[old.revision] = old
    carriers = {label: old.revision for old in olds for label in old.branch_labels}
    for old in olds:
        for parent in old.down_revision:
            if parent not in by_id:
                raise _cannot(
                    folder,
                    f"{old.path} has down_revision {parent!r}, which no file provides; restore "
                    "the missing migration first",
                )
        for dependency in old.depends_on:
            if dependency not in by_id and dependency not in carriers:
                raise _cannot(
                    folder, f"{old.path} depends on {dependency!r}, which no file provides"
                )
    children = {parent for old in olds for parent in old.down_revision}
    heads = [old for old in olds if old.revision not in children]
    if len(heads) > 1:
        listed = ", ".join(f"{old.revision} ({old.path.name})" for old in heads)
        raise _cannot(
            folder,
            f"the history has {len(heads)} heads: {listed}; merge them first (a migration with "
            "down_revision = (both ids) and empty upgrade/downgrade, or Flask-Migrate's "
            "'flask db merge heads' before switching), then adopt",
        )
    needs = {
        old.revision: set(old.down_revision) | {carriers.get(d, d) for d in old.depends_on}
        for old in olds
    }
    ready = [(old.path.name, old.revision) for old in olds if not needs[old.revision]]
    heapq.heapify(ready)
    order: list[_Old] = []
    while ready:
        revision = heapq.heappop(ready)[1]
        order.append(by_id[revision])
        for child, waiting in needs.items():
            if revision in waiting:
                waiting.discard(revision)
                if not waiting:
                    heapq.heappush(ready, (by_id[child].path.name, child))
    if len(order) != len(olds):
        stuck = sorted(old.path.name for old in olds if old not in order)
        raise _cannot(folder, f"its migrations depend on each other in a cycle: {', '.join(stuck)}")
    return order


def _check_labels(order: list[_Old], label: str, folder: Path) -> None:
    """Alembic allows a branch label on one revision only."""
    for old in order[1:]:
        if label in old.branch_labels:
            raise _cannot(
                folder,
                f"{old.path} already carries the branch label {label!r}; adopt into another app "
                "with --app",
            )


def _app_directory(project: Project, label: str) -> Path:
    registry = project.resolve_registry()
    if label in registry:
        return registry.get(label).directory
    return Path(project.settings.app_directories.get(label) or project.root / label)


def _existing_revisions(project: Project, in_place: bool) -> set[str]:
    """Revision ids already in flask-rollback app folders (none when the root is the old folder)."""
    if in_place or not project.root.is_dir():
        return set()
    return set(scan_files(project.resolve_registry()))


def _check_target(
    project: Project,
    found: _Source,
    olds: list[_Old],
    existing: set[str],
    target_dir: Path,
    in_place: bool,
) -> None:
    """The new files have a place of their own: nothing there is lost or mixed in."""
    root = project.root
    if in_place:
        history = {folder.resolve() for folder in found.version_dirs}
        others = sorted(
            str(sub) for sub in root.iterdir()
            if sub.is_dir() and sub.resolve() not in history and migration_files(sub)
        )
        if others:
            raise _cannot(
                found.folder,
                f"{', '.join(others)} also {'holds' if len(others) == 1 else 'hold'} migration "
                "files, outside the history; move "
                "them aside first",
            )
    else:
        taken = sorted(old.revision for old in olds if old.revision in existing)
        if taken:
            these = "revision {} is" if len(taken) == 1 else "revisions {} are"
            raise _cannot(found.folder, f"{these.format(', '.join(taken))} already in {root}")
    if (not in_place or not _inside(target_dir, root)) and migration_files(target_dir):
        raise _cannot(
            found.folder,
            f"app {target_dir.name!r} already has migrations in {target_dir}; adopt into another "
            "app with --app",
        )


def _database_revisions(project: Project, version_table: str) -> tuple[str, ...]:
    """The version rows, read without writing (a missing SQLite file is not created)."""
    url = project.url
    if url.get_backend_name() == "sqlite":
        database = url.database
        if not database or database == ":memory:" or not Path(database).is_file():
            return ()
    with project.connect() as connection, read_only(connection):
        if not sa.inspect(connection).has_table(version_table):
            return ()
        table = sa.table(version_table, sa.column("version_num"))
        return tuple(connection.execute(sa.select(table.c.version_num)).scalars())


# -- the old env.py ---------------------------------------------------------------------------


def _read_env(env: Path, settings: Settings) -> tuple[list[EnvNote], str | None]:
    """What the old env.py did that flask-rollback does not do automatically, compared with
    the stock Flask-Migrate/Alembic env.py; and the version table it named, if any."""
    text = env.read_text(encoding="utf-8", errors="replace")
    try:
        tree = ast.parse(text, filename=str(env))
    except SyntaxError as exc:
        return [EnvNote(exc.lineno or 0, "env.py cannot be parsed", "kept for you to read")], None
    functions = {
        node.name: node for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    keywords, notes = _configure_keywords(tree, text)
    version_table = None
    for name, value, line in keywords:
        shown = f"{name}={_segment(text, value)}"
        if name in PROVIDED_KEYWORDS:
            continue
        if name == "process_revision_directives" and _skips_empty_autogenerate(value, functions):
            continue
        if name not in SETTING_KEYWORDS:
            hint = ALEMBIC_KEYWORD_HINTS.get(name, "flask-rollback does not do this")
            notes.append(EnvNote(line, shown, f"not carried over (no ROLLBACK_* setting): {hint}"))
            continue
        setting = f"ROLLBACK_{name.upper()}"
        try:
            literal = ast.literal_eval(value)
        except ValueError:
            notes.append(EnvNote(line, shown, f"computed: not carried over; {setting} takes a value"))
            continue
        if name == "version_table":
            version_table = literal
        if getattr(settings, name) != literal:
            where = " (the database's version rows are there)" if name == "version_table" else ""
            notes.append(EnvNote(line, shown, f"set {setting} = {literal!r}{where}"))
    for node in ast.walk(tree):
        notes += _other_note(node, text)
    unique = {(note.what, note.instead): note for note in notes}
    return sorted(unique.values(), key=lambda note: note.line), version_table


def _configure_keywords(
    tree: ast.Module, text: str
) -> tuple[list[tuple[str, ast.expr, int]], list[EnvNote]]:
    """Keywords of every ``context.configure(...)``, including those of a dict spread into it
    with ``**name`` (Flask-Migrate's ``conf_args``, and keys assigned to it)."""
    keywords: list[tuple[str, ast.expr, int]] = []
    notes: list[EnvNote] = []
    spread: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and dotted_name(node.func).endswith("context.configure")):
            continue
        for keyword in node.keywords:
            if keyword.arg is not None:
                keywords.append((keyword.arg, keyword.value, keyword.value.lineno))
            elif isinstance(keyword.value, ast.Name):
                spread.add(keyword.value.id)
            elif not dotted_name(keyword.value).endswith("configure_args"):  # Migrate(...)'s
                notes.append(EnvNote(
                    keyword.value.lineno, f"**{_segment(text, keyword.value)}",
                    "extra configure() arguments: not carried over",
                ))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            if (
                isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name)
                and target.value.id in spread and isinstance(target.slice, ast.Constant)
                and isinstance(target.slice.value, str)
            ):
                keywords.append((target.slice.value, node.value, node.lineno))
            elif isinstance(target, ast.Name) and target.id in spread and isinstance(node.value, ast.Dict):
                keywords += [
                    (key.value, value, value.lineno)
                    for key, value in zip(node.value.keys, node.value.values)
                    if isinstance(key, ast.Constant) and isinstance(key.value, str)
                ]
    return keywords, notes


def _skips_empty_autogenerate(value: ast.expr, functions: Mapping[str, ast.AST]) -> bool:
    """Flask-Migrate's own hook only drops an autogenerated script without changes, which
    makemigrations does too."""
    function = functions.get(value.id) if isinstance(value, ast.Name) else None
    if function is None:
        return False
    for node in ast.walk(function):
        if isinstance(node, ast.Call):
            name = dotted_name(node.func)
            if name != "getattr" and not name.endswith((".is_empty", ".info")):
                return False
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if not all(
                isinstance(t, ast.Name) or (isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name))
                for t in targets
            ):
                return False
    return True


def _other_note(node: ast.AST, text: str) -> list[EnvNote]:
    """SQL run around the migrations, Alembic options set, modules imported."""
    if isinstance(node, ast.Call):
        name = dotted_name(node.func)
        if name.endswith((".execute", ".exec_driver_sql")):
            return [EnvNote(node.lineno, _segment(text, node),
                            "runs SQL around every migration run: not carried over; put it in a migration")]
        if name.endswith(".set_main_option") and node.args:
            option = node.args[0]
            if not (isinstance(option, ast.Constant) and option.value == "sqlalchemy.url"):
                return [EnvNote(node.lineno, _segment(text, node),
                                "sets an Alembic option: not carried over")]
        return []
    modules = (
        [alias.name for alias in node.names] if isinstance(node, ast.Import)
        else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
        else []
    )
    return [
        EnvNote(node.lineno, f"import {module}",  # type: ignore[attr-defined]
                "flask-rollback's env.py imports nothing of yours; import it from the app if "
                "the models need it")
        for module in modules
        if module.split(".")[0] not in STOCK_MODULES | sys.stdlib_module_names
    ]


def _segment(text: str, node: ast.AST) -> str:
    """The node's source on one line, shortened."""
    source = " ".join((ast.get_source_segment(text, node) or "").split())
    return source if len(source) <= 70 else source[:67] + "..."


# -- the new files ----------------------------------------------------------------------------


def _targets(order: list[_Old], label: str, target_dir: Path) -> list[AdoptedFile]:
    """``0001_<slug>.py`` in history order: the slug after the revision id in the old name,
    else the docstring's first line."""
    files = []
    for number, old in enumerate(order, 1):
        stem = old.path.stem
        after = stem.split(old.revision, 1)[1] if old.revision in stem else ""
        slug = slugify(after) or slugify(old.message) or "auto"
        files.append(
            AdoptedFile(
                revision=old.revision,
                source=old.path,
                target=target_dir / f"{number:04d}_{slug}.py",
                labelled=number == 1 and label not in old.branch_labels,
            )
        )
    return files


def _converted(item: AdoptedFile, label: str) -> bytes:
    """The file's bytes; the root gets the app's branch label added to ``branch_labels``."""
    data = item.source.read_bytes()
    if not item.labelled:
        return data
    tree = ast.parse(data)
    starts = [0]
    for line in data.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    assignments = module_assignments(tree)
    node = assignments.get("branch_labels")
    if node is not None and node.value is not None:
        labels = (*(constant_names(node.value) or ()), label)
        start = starts[node.value.lineno - 1] + node.value.col_offset
        end = starts[node.value.end_lineno - 1] + node.value.end_col_offset  # type: ignore[operator]
        return data[:start] + repr(labels).encode() + data[end:]
    anchor = assignments["down_revision"]
    end = starts[anchor.end_lineno]  # type: ignore[index]
    newline = b"\r\n" if b"\r\n" in data else b"\n"
    before = data[:end] if data[:end].endswith(newline) else data[:end] + newline
    return before + f"branch_labels = {(label,)!r}".encode() + newline + data[end:]


def _check_loads(files: list[AdoptedFile], contents: dict[str, bytes], folder: Path) -> None:
    """Alembic reads the converted history (every file imported) in a scratch folder, so a
    file that fails there is refused before anything is written."""
    with tempfile.TemporaryDirectory(prefix="flask-rollback-adopt-") as scratch:
        app_dir = Path(scratch) / "app"
        app_dir.mkdir()
        written = {}
        for item in files:
            path = app_dir / item.target.name
            path.write_bytes(contents[item.revision])
            written[path] = item.source
        script = ScriptDirectory(scratch, version_locations=[str(app_dir)])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                script.revision_map.heads  # noqa: B018 - forces loading every file
            except (CommandError, RevisionError, Warning) as exc:
                raise _cannot(folder, f"Alembic cannot read the converted history: {exc}") from None
            except Exception as exc:  # a migration module failed at import time
                where = failing_file(exc, written) or "a migration file"
                for path, source in written.items():
                    where = where.replace(str(path), str(source))
                raise _cannot(folder, f"{where} failed to import: {type(exc).__name__}: {exc}") from None


def _write(result: Adoption, found: _Source, contents: dict[str, bytes], in_place: bool) -> None:
    """New root first (built aside, then renamed in), then the old folder becomes the backup."""
    root = result.root
    assert result.backup is not None
    root.parent.mkdir(parents=True, exist_ok=True)
    env = found.folder / "env.py"
    staged = [item for item in result.files if _inside(item.target, root)]
    outside = [item for item in result.files if item not in staged]
    if in_place or not root.exists():
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.adopting-", dir=root.parent))
        try:
            _fill_root(staging, result, env, staged, contents, root)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise RollbackError(f"cannot write {exc.filename}: {exc.strerror}; nothing was changed") from None
        if in_place:
            os.rename(root, result.backup)
        try:
            os.rename(staging, root)
        except OSError as exc:
            if in_place:
                os.rename(result.backup, root)
            shutil.rmtree(staging, ignore_errors=True)
            raise RollbackError(f"cannot rename {staging} to {root}: {exc.strerror}; nothing was changed") from None
    else:
        _fill_root(root, result, env, staged, contents, root)
    for item in outside:
        item.target.parent.mkdir(parents=True, exist_ok=True)
        item.target.write_bytes(contents[item.revision])
    if not in_place:
        os.rename(found.folder, result.backup)
    if result.moved_ini is not None and found.ini is not None:
        os.rename(found.ini, result.moved_ini)


def _fill_root(
    folder: Path, result: Adoption, env: Path, files: list[AdoptedFile],
    contents: dict[str, bytes], root: Path,
) -> None:
    """flask-rollback's env.py and template (where missing), the custom env.py's copy, and the
    app's files, into ``folder`` (the root, or where it is built before being renamed in)."""
    for name in ("env.py", "script.py.mako"):
        if not (folder / name).exists():
            shutil.copyfile(TEMPLATES / name, folder / name)
    if result.env_copy is not None:
        shutil.copyfile(env, folder / result.env_copy.name)
    for item in files:
        path = folder / item.target.resolve().relative_to(root.resolve())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(contents[item.revision])


# -- paths ------------------------------------------------------------------------------------


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _free_name(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3``...: a backup never overwrites anything."""
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.name}-{number}")
    return candidate
