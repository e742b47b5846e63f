"""App ownership: which app owns what and why (``apps``), and renaming an app (``rename-app``)."""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..apps import (
    EXPLICIT_LABEL,
    FOLDER_DEFAULT,
    SOURCE_BLUEPRINT,
    SOURCE_DEFAULT,
    SOURCE_PLUGIN,
    SOURCE_REGISTERED,
    App,
    AppRegistry,
    Ownership,
    validate_label,
)
from ..errors import RollbackError
from ..loader import MIGRATION_FILE_RE, constant_names, module_assignments
from ..lock import Announce
from ..project import Project
from ..rename import (
    Declaration,
    FileChanges,
    LabelCounts,
    LabelEdit,
    LabelRecords,
    declarations,
    mentions,
    only_bytecode,
    relabel_source,
)
from ..wording import plural, shown_path
from .context import open_database

# -- apps -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppOverview:
    """One app as ``flask db apps`` shows it: where it comes from, its folder, its tables and
    the rule that gave it each table."""

    label: str
    source: str
    directory: Path
    read_only: bool
    folder_origin: str
    claims: str | None
    tables: tuple[Ownership, ...]
    #: The bind its tables live on (None: the default bind).
    bind: str | None = None


def apps(project: Project) -> list[AppOverview]:
    """Every app in the order commands use, with the ownership of each of its tables."""
    registry = project.registry
    return [
        AppOverview(
            label=app.label,
            source=app.source,
            directory=app.directory,
            read_only=app.read_only,
            folder_origin=app.folder_origin,
            claims=app.claims,
            tables=tuple(registry.ownership[table] for table in app.tables),
            bind=app.bind,
        )
        for app in registry
    ]


# -- rename-app -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenameResult:
    """What ``rename-app`` changed (or, with ``dry_run``, would change)."""

    old: str
    new: str
    folder: Path
    #: Where the folder moved; None when it stays (it is not the default ``<root>/<old>``).
    moved_to: Path | None
    #: Rewritten migration files (at their final place) and the fields that changed.
    rewritten: tuple[tuple[Path, tuple[str, ...]], ...]
    records: LabelCounts
    dry_run: bool


@dataclass(frozen=True)
class _MigrationFile:
    path: Path
    app: App
    source: bytes
    declared: tuple[Declaration, ...]

    def names(self, field: str) -> tuple[str, ...]:
        return tuple(n for d in self.declared if d.field == field for n in d.names or ())


def rename_app(
    project: Project,
    old: str,
    new: str,
    *,
    dry_run: bool = False,
    lock_timeout: float | None = None,
    announce: Announce | None = None,
) -> RenameResult:
    """Rename app ``old`` to ``new``: its folder (when it is the default ``<root>/<old>``),
    the branch label in its files, ``depends_on`` naming it in other apps' files, and the
    database's records of the label, in one transaction under the migration lock.

    The code must already give the app's tables to ``new`` (blueprint name, ``__app_label__``):
    otherwise the result would not match it, and nothing is changed."""
    validate_label(old)
    validate_label(new, "new app label")
    if old == new:
        raise RollbackError(f"app {old!r} is already called {new!r}; nothing to rename")
    project.graph  # noqa: B018 - every migration file loads: only a consistent project is renamed
    registry = project.registry
    files = _migration_files(registry)
    records = LabelRecords(project.settings)
    if _renamed_in_files(registry, files, old, new):
        return _relabel_database(project, files, records, old, new, dry_run, lock_timeout, announce)
    folder, owner = _folder_of(registry, files, old, new)
    _check_new_in_files(registry, files, new, folder)
    target = _target(project, registry, old, new, owner)
    _check_old(registry, files, old, new, folder, owner)
    edits = _edits(files, old, new)
    rewritten = tuple(sorted((_final_path(edit.path, folder, target), edit.fields) for edit in edits))
    with open_database(
        project, lock=not dry_run, lock_timeout=lock_timeout, announce=announce
    ) as (connection, _planner):
        taken = records.count(connection, new)
        if taken.total:
            raise RollbackError(
                f"app label {new!r} is in use: the database has {_describe(taken)} of an app "
                f"called {new!r}; choose another name"
            )
        counts = records.count(connection, old)
        connection.rollback()
        result = RenameResult(old, new, folder, target, rewritten, counts, dry_run)
        if dry_run:
            return result
        changes = FileChanges(edits, folder, target)
        try:
            with connection.begin():
                records.relabel(connection, old, new, _checksums(edits))
                changes.apply()
        except BaseException:
            changes.undo()
            raise
    return result


def _checksums(edits: list[LabelEdit]) -> dict[str, tuple[str, str]]:
    """``{revision: (sha256 before, sha256 after)}`` of the rewritten files."""
    found = {}
    for edit in edits:
        node = module_assignments(ast.parse(edit.after)).get("revision")
        revision = constant_names(node.value if node is not None else None)
        if revision:
            found[revision[0]] = (_sha256(edit.before), _sha256(edit.after))
    return found


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _renamed_in_files(registry: AppRegistry, files: list[_MigrationFile], old: str, new: str) -> bool:
    """The files already say ``new`` and nothing says ``old`` (they were renamed elsewhere and
    deployed here): only this database's records are left to rename."""
    return (
        old not in registry and new in registry
        and not any(old in f.names("branch_labels") for f in files)
        and any(new in f.names("branch_labels") for f in files)
    )


def _relabel_database(
    project: Project, files: list[_MigrationFile], records: LabelRecords, old: str, new: str,
    dry_run: bool, lock_timeout: float | None, announce: Announce | None,
) -> RenameResult:
    """Another environment's database: the renamed files arrived with a deploy; relabel its
    records and move the checksums of the files the rename rewrote (recognised by undoing the
    rename on them: only a file whose recorded checksum is exactly its pre-rename content)."""
    checksums = {}
    for item in files:
        before, fields = relabel_source(item.source, new, old)
        if fields:
            checksums.update(_checksums([LabelEdit(item.path, fields, before, item.source)]))
    folder = project.registry.get(new).directory
    with open_database(
        project, lock=not dry_run, lock_timeout=lock_timeout, announce=announce
    ) as (connection, _planner):
        counts = records.count(connection, old)
        connection.rollback()
        if not counts.total:
            raise RollbackError(
                f"the migrations already say {new!r} and this database has no record of {old!r}; "
                "nothing to rename"
            )
        result = RenameResult(old, new, folder, None, (), counts, dry_run)
        if not dry_run:
            with connection.begin():
                records.relabel(connection, old, new, checksums)
    return result


def _describe(counts: LabelCounts) -> str:
    """The records that name a label, e.g. ``3 applied-log rows, 1 archive``."""
    parts = [
        plural(counts.log_rows, "applied-log row") if counts.log_rows else "",
        plural(counts.archives, "archive") if counts.archives else "",
        plural(counts.deploys, "deploy record") if counts.deploys else "",
    ]
    return ", ".join(part for part in parts if part)


def _migration_files(registry: AppRegistry) -> list[_MigrationFile]:
    found = []
    for app in registry:
        if not app.directory.is_dir():
            continue
        for path in sorted(app.directory.iterdir()):
            if MIGRATION_FILE_RE.match(path.name) and path.is_file():
                source = path.read_bytes()
                found.append(_MigrationFile(path, app, source, tuple(declarations(source))))
    return found


def _folder_of(
    registry: AppRegistry, files: list[_MigrationFile], old: str, new: str
) -> tuple[Path, App]:
    """The folder holding ``old``'s migrations and the app the project maps it to now: ``old``
    itself, or ``new`` when the code already gives that folder to ``new`` (a configured or
    shipped folder) and only the branch label is left to rename."""
    if old in registry:
        app = registry.get(old)
        return app.directory, app
    roots = [f for f in files if old in f.names("branch_labels")]
    if not roots:
        registry.get(old)  # the unknown-app error, with the known apps
    owner = roots[0].app
    if owner.label != new:
        raise RollbackError(
            f"branch label {old!r} is declared in {shown_path(roots[0].path)}, a migration of app "
            f"{owner.label!r}; run 'flask db rename-app {old} {owner.label}' to match them"
        )
    return owner.directory, owner


def _check_old(
    registry: AppRegistry, files: list[_MigrationFile], old: str, new: str, folder: Path, owner: App
) -> None:
    """Refuse what the rename cannot make consistent: an installed package's folder, no
    migrations, code that still names ``old``, a file it cannot rewrite."""
    if owner.read_only:
        raise RollbackError(
            f"app {owner.label!r} is read-only: its migrations ship with an installed package "
            f"({shown_path(folder)}); it cannot be renamed here"
        )
    if not any(f.app.label == owner.label for f in files):
        raise RollbackError(
            f"app {old!r} has no migrations, so there is nothing to rename; change its label in "
            f"the code ({_code_fix(registry, owner, new)})"
        )
    if owner.label == old:
        if owner.tables:
            ownership = registry.ownership[owner.tables[0]]
            listed = ", ".join(owner.tables)
            raise RollbackError(
                f"the code still gives app {old!r} {'table' if len(owner.tables) == 1 else 'tables'} {listed} ({ownership.reason}); "
                f"{_code_fix(registry, owner, new)} first, then run rename-app again"
            )
        if owner.source == SOURCE_REGISTERED:  # a blueprint that owns no table declares nothing
            raise RollbackError(
                f"the code still declares app {old!r} ({owner.source}); "
                f"{_code_fix(registry, owner, new)} first, then run rename-app again"
            )
        if owner.folder_origin != FOLDER_DEFAULT:
            raise RollbackError(
                f"the migrations of {old!r} live in {shown_path(folder)}, which {owner.folder_origin} gives "
                f"to {old!r}; give that folder to {new!r} there first, then run rename-app again"
            )
    for item in files:
        for declared in item.declared:
            if declared.names is None and mentions(declared.source, old):
                raise RollbackError(
                    f"migration file {shown_path(item.path)} computes {declared.field}, which mentions "
                    f"{old!r}; rename it there by hand (or make it a plain string), then run "
                    "rename-app again"
                )
        references = [n for f in ("branch_labels", "depends_on") for n in item.names(f)]
        if item.app.read_only and any(n == old or n.startswith(old + "@") for n in references):
            raise RollbackError(
                f"migration file {shown_path(item.path)} of read-only app {item.app.label!r} names {old!r} "
                "and cannot be rewritten; it cannot be renamed here"
            )


def _code_fix(registry: AppRegistry, app: App, new: str) -> str:
    """What to change in the code so that ``app``'s tables belong to ``new``."""
    old = app.label
    if app.source in (SOURCE_BLUEPRINT, SOURCE_PLUGIN) and new not in registry:
        fix = f"rename blueprint {old!r} to {new!r} or set __app_label__ = {new!r} on its models"
    elif app.source in (SOURCE_BLUEPRINT, SOURCE_PLUGIN):
        fix = f"set __app_label__ = {new!r} on the models of blueprint {old!r}"
    elif app.source == SOURCE_REGISTERED:
        fix = f"change register_app({old!r}, ...) to register_app({new!r}, ...)"
    elif app.source == SOURCE_DEFAULT:
        fix = f"set ROLLBACK_DEFAULT_APP = {new!r}"
    else:
        fix = f"change __app_label__ = {old!r} (or info={{'app': {old!r}}}) to {new!r}"
    explicit = any(registry.ownership[t].rule == EXPLICIT_LABEL for t in app.tables)
    if explicit and app.source != SOURCE_REGISTERED and "__app_label__" not in fix:
        fix += f", and change __app_label__ = {old!r} to {new!r}"
    return fix


def _check_new_in_files(registry: AppRegistry, files: list[_MigrationFile], new: str, folder: Path) -> None:
    for item in files:
        if new in item.names("branch_labels"):
            raise RollbackError(
                f"app label {new!r} is in use: {shown_path(item.path)} declares branch label {new!r}; "
                "choose another name"
            )
    if new in registry:
        app = registry.get(new)
        if app.directory.resolve() != folder.resolve() and any(f.app.label == new for f in files):
            raise RollbackError(
                f"app label {new!r} is in use: app {new!r} already has migrations in "
                f"{shown_path(app.directory)}; choose another name"
            )


def _target(project: Project, registry: AppRegistry, old: str, new: str, owner: App) -> Path | None:
    """Where ``old``'s default folder moves: ``new``'s folder (default ``<root>/<new>``)."""
    if owner.label != old:
        return None
    target = registry.get(new).directory if new in registry else project.root / new
    if target.exists() and not only_bytecode(target):
        raise RollbackError(
            f"app label {new!r} is in use: {target} already exists; choose another name "
            "(or remove that folder)"
        )
    return target


def _edits(files: list[_MigrationFile], old: str, new: str) -> list[LabelEdit]:
    edits = []
    for item in files:
        after, fields = relabel_source(item.source, old, new)
        if fields:
            edits.append(LabelEdit(item.path, fields, item.source, after))
    return edits


def _final_path(path: Path, folder: Path, target: Path | None) -> Path:
    if target is not None and path.parent == folder:
        return target / path.name
    return path
