"""Writing migrations: init, adopt (a Flask-Migrate folder, see ``adopt.py``), makemigrations
(autogenerate split by app), empty revisions, merge."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from alembic import command as alembic_command
from alembic.util import CommandError

from ..adopt import Adoption, adopt  # noqa: F401 - the Python API's adopt is the library's
from ..autodetect import AppSplitter, NewMigration, django_filename
from ..errors import RollbackError
from ..loader import TEMPLATES, check_layout, validate_revision_id
from ..project import Project
from ..questioner import NonInteractiveQuestioner, Questioner
from .context import open_database

# -- setting up -----------------------------------------------------------------------------


def init(project: Project) -> list[Path]:
    """Create the migrations root (a few-line env.py, the template) and one folder per app."""
    root = project.root
    apps = list(project.registry)  # label errors and a Flask-Migrate folder, before anything
    if (root / "env.py").exists():
        raise RollbackError(f"{root} is already initialised; delete it first to start over")
    created: list[Path] = []
    try:
        root.mkdir(parents=True, exist_ok=True)
        for name in ("env.py", "script.py.mako"):
            shutil.copyfile(TEMPLATES / name, root / name)
            created.append(root / name)
        for app in apps:
            if not app.directory.exists() and not app.read_only:
                app.directory.mkdir(parents=True)
                created.append(app.directory)
    except OSError as exc:
        raise RollbackError(f"cannot create {exc.filename}: {exc.strerror}") from None
    return created


def _ensure_app_folders(project: Project) -> None:
    check_layout(project.root)
    for app in project.registry:
        if not app.read_only:
            app.directory.mkdir(parents=True, exist_ok=True)

# -- writing migrations ---------------------------------------------------------------------


def makemigrations(
    project: Project,
    apps: Sequence[str] = (),
    *,
    message: str | None = None,
    empty: bool = False,
    dry_run: bool = False,
    check: bool = False,
    rev_id: str | None = None,
    questioner: Questioner | None = None,
) -> list[NewMigration]:
    """Autogenerate one migration per changed app; returns what was (or would be) written.

    ``rev_id`` (Flask-Migrate's ``--rev-id``) names the new migration, so only one app may change.
    ``questioner`` answers what autogenerate cannot know (renames, values for existing rows);
    by default no one is asked (no rename, a NOT NULL column without default is an error).
    ``dry_run`` and ``check`` ask nothing and refuse nothing: they report what Alembic compared.
    """
    registry = project.registry
    write = not (dry_run or check)
    for label in apps:
        if write:
            registry.writable(label)  # an installed package's folder is never written
        else:
            registry.get(label)
    graph = project.graph
    _check_new_revision_id(project, rev_id)
    for label in apps or registry.labels:
        heads = graph.app_heads(label)
        if len(heads) > 1:
            raise RollbackError(
                f"app {label!r} has {len(heads)} heads ({', '.join(heads)}); "
                f"run 'flask db merge {label}' first"
            )
    if empty:
        if not apps:
            raise RollbackError("--empty needs the app(s) to create a migration for")
        if rev_id and len(apps) > 1:
            raise RollbackError(f"--rev-id names one migration, not one per app ({', '.join(apps)})")
        return [_empty_revision(project, label, message, write, rev_id) for label in apps]
    with open_database(project) as (_connection, planner):
        pending = set(graph.migrations) - planner.applied
    if pending:
        raise RollbackError(
            f"the database is behind: {len(pending)} migration(s) are not applied; "
            "run 'flask db upgrade' first"
        )
    if write:
        _ensure_app_folders(project)
    asked = (questioner or NonInteractiveQuestioner()) if write else Questioner()
    splitter = AppSplitter(graph, apps, message, write, rev_id, questioner=asked)
    try:
        scripts = alembic_command.revision(
            project.quiet_config, message=message, autogenerate=True,
            process_revision_directives=splitter,
        )
    except CommandError as exc:
        raise RollbackError(f"autogenerate failed: {exc}") from None
    if write:
        written = {s.revision: Path(s.path) for s in _as_list(scripts)}
        for new in splitter.planned:
            if not new.read_only:
                new.path = _rename(written[new.revision], new.message)
        project.reload()
    return splitter.planned


def _check_new_revision_id(project: Project, rev_id: str | None) -> None:
    """A chosen revision id ends up in SQL and file names, and must name one migration only."""
    if rev_id is None:
        return
    validate_revision_id(rev_id)
    existing = project.graph.migrations.get(rev_id)
    if existing is not None:
        raise RollbackError(f"revision id {rev_id!r} is already used by {existing.label}")


def _empty_revision(
    project: Project, label: str, message: str | None, write: bool, rev_id: str | None = None
) -> NewMigration:
    existing = project.graph.of_app(label)
    message = message or ("initial" if not existing else "custom")
    new = NewMigration(app=label, revision=rev_id or "", message=message)
    if not write:
        return new
    _ensure_app_folders(project)
    script = alembic_command.revision(
        project.quiet_config,
        message=message,
        head=f"{label}@head" if existing else "base",
        branch_label=None if existing else label,
        version_path=str(project.registry.get(label).directory),
        rev_id=rev_id,
    )
    (script,) = _as_list(script)
    new.revision = script.revision
    new.path = _rename(Path(script.path), message)
    project.reload()
    return new


def merge(
    project: Project, app: str, message: str | None = None, rev_id: str | None = None
) -> NewMigration:
    """Join an app's heads into one (two developers each added a migration)."""
    project.registry.writable(app)
    _check_new_revision_id(project, rev_id)
    heads = project.graph.app_heads(app)
    if len(heads) < 2:
        raise RollbackError(f"app {app!r} has a single head; nothing to merge")
    message = message or "merge"
    script = alembic_command.merge(
        project.quiet_config, revisions=heads, message=message, rev_id=rev_id
    )
    (script,) = _as_list(script)
    path = _rename(Path(script.path), message)
    project.reload()
    return NewMigration(app=app, revision=script.revision, message=message, path=path)


def _as_list(scripts):  # type: ignore[no-untyped-def]
    if scripts is None:
        return []
    return scripts if isinstance(scripts, list) else [scripts]


def _rename(path: Path, message: str) -> Path:
    target = django_filename(path, message)
    path.rename(target)
    return target

