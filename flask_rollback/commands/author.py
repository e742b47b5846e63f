"""Writing migrations: init, makemigrations (autogenerate split by app), empty revisions, merge,
squashmigrations (adopting a Flask-Migrate folder: ``adoption.py``)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from alembic import command as alembic_command
from alembic import util as alembic_util
from alembic.autogenerate import RevisionContext
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection

from ..autodetect import (
    NUMBER_RE,
    AppSplitter,
    NewMigration,
    cycles_expected,
    next_filename,
    revision_id,
)
from ..errors import EXIT_COULD_NOT_RUN, EXIT_DATABASE_BEHIND, RollbackError
from ..files import (
    Announce,
    check_python,
    docstring_text,
    generated_files,
    write_new,
    writing_migrations,
)
from ..graph import Migration, MigrationGraph, gc_paused
from ..index import Declared
from ..interrupts import Interrupted
from ..loader import TEMPLATES, validate_revision_id
from ..project import COMPARISONS, Comparison, Project
from ..questioner import NonInteractiveQuestioner, Questioner
from ..scripts import load_scripts
from ..snapshot import Generated, generate
from ..wording import plural
from ..squash import read_original, render, squash_revision
from .context import open_database
from .inspect import squash_leftovers

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
    database: Comparison = "scratch",
    lock_timeout: float | None = None,
    announce: Announce | None = None,
    on_written: Callable[[list[NewMigration]], None] | None = None,
) -> list[NewMigration]:
    """Autogenerate one migration per changed app; returns what was (or would be) written,
    each with its whole file (``code``) and the path it has (or would have).

    ``database="scratch"`` compares the models with the schema the migrations build on a scratch
    database, so the live one may be behind, ahead, empty or unreachable; ``"live"`` compares
    with the live database, which must be at its heads. ``rev_id`` (Flask-Migrate's
    ``--rev-id``) names the new migration, so only one may be written.
    ``questioner`` answers what autogenerate cannot know (renames, values for existing rows);
    by default no one is asked (no rename, a NOT NULL column without default is an error).
    ``dry_run`` asks what the real run would (it shows that file); ``check`` asks and refuses
    nothing: it reports what Alembic compared.

    A run that writes holds the migrations folder's lock (files.py) from reading the history to
    writing the files: a second one waits (up to ``lock_timeout``, default ROLLBACK_LOCK_TIMEOUT)
    and then plans on top of the first one's files, so an app never gets two heads this way.
    Every file is compiled before any is written; the message may hold any text.
    ``on_written`` is called with the new migrations once their files are written, before the
    schema snapshot is brought up to date (which may replay every migration): a command shows
    what it created first.
    """
    write = not (dry_run or check)
    if not write:
        return _makemigrations(project, apps, message, empty, dry_run, check, rev_id, questioner, database)
    timeout = project.settings.lock_timeout if lock_timeout is None else lock_timeout
    with writing_migrations(project.root, timeout, announce):
        project.reload()  # another run may have written files while this one waited
        return _makemigrations(
            project, apps, message, empty, dry_run, check, rev_id, questioner, database, announce,
            on_written,
        )


def _update_snapshot(project: Project, announce: Announce | None) -> None:
    """New migrations were written: bring the bind's schema snapshot up to date (from the
    previous one, when it is current for its heads, plus the new migrations; else by replaying
    every migration). A failure leaves the migrations written and the old snapshot stale, which
    upgrade ignores and check reports; the line says so."""
    if not project.settings.snapshots:
        return
    say = announce or (lambda line: None)
    try:
        made = generate(project)
    except Interrupted as exc:
        exc.outcome[:] = [
            "the new migrations were written; the schema snapshot was not updated (run "
            "'flask db snapshot')"
        ]
        raise
    except RollbackError as exc:
        say(f"Warning: the schema snapshot was not updated: {exc.message}; run 'flask db snapshot'")
        return
    if made.changed:
        say(f"Updated the schema snapshot {made.path} ({made.how}).")


def snapshot(project: Project, *, incremental: bool = False) -> Generated:
    """Make the schema snapshot of ``project``'s bind for its backend (``flask db snapshot``):
    by default every migration replayed on a scratch database; ``incremental`` starts from the
    previous snapshot when it is current for its heads."""
    timeout = project.settings.lock_timeout
    with writing_migrations(project.root, timeout):
        return generate(project, incremental=incremental)


def _makemigrations(
    project: Project, apps: Sequence[str], message: str | None, empty: bool, dry_run: bool,
    check: bool, rev_id: str | None, questioner: Questioner | None, database: Comparison,
    announce: Announce | None = None, on_written: Callable[[list[NewMigration]], None] | None = None,
) -> list[NewMigration]:
    if database not in COMPARISONS:
        raise RollbackError(
            f"--database is one of {', '.join(COMPARISONS)}, not {database!r}", EXIT_COULD_NOT_RUN
        )
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
            raise RollbackError("--empty needs the apps to create a migration for (e.g. --empty blog)")
        if rev_id and len(apps) > 1:
            raise RollbackError(f"--rev-id names one migration, not one per app ({', '.join(apps)})")
        planned = [_empty_revision(project, label, message, rev_id) for label in apps]
    else:
        asked = Questioner() if check else (questioner or NonInteractiveQuestioner())
        planned = _autogenerate(project, apps, message, rev_id, database, asked)
    _place(project, planned)
    for new in planned:
        if new.path is not None:
            check_python(new.code, new.path)
    if write and planned:
        _write(planned)
        project.reload()
        if on_written is not None:
            on_written(planned)
        if any(new.path is not None for new in planned):
            _update_snapshot(project, announce)
    return planned


@contextmanager
def _comparison(project: Project, database: Comparison) -> Iterator[Connection]:
    """The connection autogenerate compares the models with."""
    if database == "scratch":
        # The scratch database (and the rehearsal machinery): only when compared with.
        from ..rehearsal import migrations_schema

        with migrations_schema(project) as connection:
            yield connection
        return
    with open_database(project) as (connection, planner):
        pending = set(project.graph.migrations) - planner.applied
        if pending:
            raise RollbackError(
                f"the database is behind: {plural(len(pending), 'migration')} {'is' if len(pending) == 1 else 'are'} not applied; run "
                "'flask db upgrade' first, or leave out --database live to compare with the "
                "schema the migrations build on a scratch database",
                EXIT_DATABASE_BEHIND,
            )
        yield connection


@contextmanager
def _staging(project: Project) -> Iterator[dict[str, Path]]:
    """A temporary folder per app where Alembic writes new files: a dry run reads them and
    leaves the app folders untouched, a real run writes them there under their Django names."""
    with tempfile.TemporaryDirectory(prefix="rollback_makemigrations_") as folder:
        staging = {label: Path(folder, label) for label in project.registry.labels}
        for path in staging.values():
            path.mkdir()
        yield staging


def _staging_root(staging: dict[str, Path]) -> Path:
    return next(iter(staging.values())).parent


def _autogenerate(
    project: Project, apps: Sequence[str], message: str | None, rev_id: str | None,
    database: Comparison, questioner: Questioner,
) -> list[NewMigration]:
    with _comparison(project, database) as connection, _staging(project) as staging:
        splitter = AppSplitter(
            project.graph, apps, message, staging, connection.dialect.name, rev_id,
            questioner=questioner,
        )
        try:
            with cycles_expected(), generated_files(_staging_root(staging)):
                scripts = _revision_autogenerate(
                    project, project.authoring_config(staging, connection), message, splitter
                )
        except CommandError as exc:
            raise RollbackError(f"autogenerate failed: {exc}") from None
        staged = {script.revision: Path(script.path) for script in scripts}
        for new in splitter.planned:
            if not new.read_only:
                new.code = staged[new.revision].read_text(encoding="utf-8")
    return splitter.planned


def _revision_autogenerate(
    project: Project, config: Config, message: str | None, splitter: AppSplitter
) -> list[Script]:
    """Alembic's ``revision --autogenerate`` (``command.revision``), run over the scripts of the
    revision index: Alembic's command would first read every migration into a ScriptDirectory of
    its own, importing each module, only to see that the database is at its heads. The
    comparison itself is Alembic's, with Python's cycle collector paused: it builds a model of
    every table, and each full collection would walk all of them (and the app) again."""
    script = load_scripts(config, project.declared)
    arguments = {
        "message": message, "autogenerate": True, "sql": False, "head": "head", "splice": False,
        "branch_label": None, "version_path": None, "rev_id": None, "depends_on": None,
    }
    revision_context = RevisionContext(config, script, arguments, process_revision_directives=splitter)

    def retrieve_migrations(rev, context):  # type: ignore[no-untyped-def]
        revision_context.run_autogenerate(rev, context)
        return []

    with gc_paused(), EnvironmentContext(
        config, script, fn=retrieve_migrations, as_sql=False,
        template_args=revision_context.template_args, revision_context=revision_context,
    ):
        script.run_env()
    return [generated for generated in revision_context.generate_scripts() if generated is not None]


def _check_new_revision_id(project: Project, rev_id: str | None) -> None:
    """A chosen revision id ends up in SQL and file names, and must name one migration only."""
    if rev_id is None:
        return
    validate_revision_id(rev_id)
    existing = project.graph.migrations.get(rev_id)
    if existing is not None:
        raise RollbackError(f"revision id {rev_id!r} is already used by {existing.label}")


def _empty_revision(
    project: Project, label: str, message: str | None, rev_id: str | None = None
) -> NewMigration:
    heads = project.graph.app_heads(label)
    parent = heads[0] if heads else None
    message = message or ("initial" if parent is None else "custom")
    revision = rev_id or revision_id(label, parent, (), message, "")
    with _staging(project) as staging, generated_files(_staging_root(staging)):
        script = alembic_command.revision(
            project.authoring_config(staging, None),
            message=docstring_text(message),
            head=parent or "base",
            branch_label=None if parent else label,
            version_path=str(staging[label]),
            rev_id=revision,
        )
        (script,) = _as_list(script)
        code = Path(script.path).read_text(encoding="utf-8")
    return NewMigration(app=label, revision=revision, message=message, code=code)


def _place(project: Project, planned: list[NewMigration]) -> None:
    """Give each new migration its path (the next numbers of its app's folder, in order) and
    name its dependencies as the output names migrations, the new ones included."""
    taken: dict[str, int] = {}
    names = {revision: migration.label for revision, migration in project.graph.migrations.items()}
    for new in planned:
        if new.read_only:
            continue
        folder = project.registry.get(new.app).directory
        new.path = next_filename(folder, new.message, taken.get(new.app, 0))
        taken[new.app] = taken.get(new.app, 0) + 1
        names[new.revision] = f"{new.app}.{new.path.stem}"
    for new in planned:
        new.depends_on_names = [names.get(revision, revision) for revision in new.depends_on]


def _write(planned: list[NewMigration]) -> None:
    """Write the files exactly as generated (and as a dry run shows them), never over a file,
    each complete or not at all (a temporary file renamed into place); all of them or, when one
    cannot be written, none."""
    written: list[Path] = []
    for new in planned:
        if new.path is None:
            continue
        try:
            new.path.parent.mkdir(parents=True, exist_ok=True)
            write_new(new.path, new.code)
            written.append(new.path)
        except OSError as exc:
            for path in written:
                path.unlink(missing_ok=True)
            raise RollbackError(f"cannot write {new.path}: {exc.strerror or exc}; nothing was written") from None


def merge(
    project: Project, app: str, message: str | None = None, rev_id: str | None = None,
    lock_timeout: float | None = None, announce: Announce | None = None,
) -> NewMigration:
    """Join an app's heads into one (two developers each added a migration). The file is made
    in a staging folder, compiled, then written under its Django name, under the folder's lock."""
    timeout = project.settings.lock_timeout if lock_timeout is None else lock_timeout
    with writing_migrations(project.root, timeout, announce):
        project.reload()
        project.registry.writable(app)
        _check_new_revision_id(project, rev_id)
        heads = project.graph.app_heads(app)
        if len(heads) < 2:
            raise RollbackError(f"app {app!r} has a single head; nothing to merge")
        message = message or "merge"
        with _staging(project) as staging, generated_files(_staging_root(staging)):
            config = project.authoring_config(staging, None)
            script = ScriptDirectory.from_config(config).generate_revision(
                rev_id or alembic_util.rev_id(), docstring_text(message), refresh=True,
                head=heads, version_path=str(staging[app]), config=config,
            )
            assert script is not None
            code = Path(script.path).read_text(encoding="utf-8")
        new = NewMigration(app=app, revision=script.revision, message=message, code=code)
        _place(project, [new])
        assert new.path is not None
        check_python(code, new.path)
        _write([new])
        project.reload()
        bind = project.all_apps.get(app).bind
        _update_snapshot(project.of_bind(bind), announce)
    return new


def _as_list(scripts):  # type: ignore[no-untyped-def]
    if scripts is None:
        return []
    return scripts if isinstance(scripts, list) else [scripts]





# -- squashing ------------------------------------------------------------------------------


@dataclass
class Squash:
    """A squash written (or the originals of one deleted, ``deleted``)."""

    app: str
    revision: str
    path: Path
    #: The replaced migrations, as output names them (``blog.0002_add_tags``).
    replaces: list[str]
    deleted: list[Path] = field(default_factory=list)


def squashmigrations(
    project: Project, app: str, start: str, end: str, *, delete_originals: bool = False,
    lock_timeout: float | None = None, announce: Announce | None = None,
    on_written: Callable[[Squash], None] | None = None,
) -> Squash:
    """Django's ``squashmigrations APP FROM TO``: one migration in APP's folder replacing the
    linear run FROM..TO of APP's own migrations (squash.py says how databases that applied the
    originals and fresh ones both work). ``delete_originals``: delete the files of the squash
    whose range FROM..TO is, once the database applied them all. Refusals write nothing.
    ``on_written`` is told of the squash as soon as its file is written, before the schema
    snapshot is brought up to date (as for ``makemigrations``)."""
    timeout = project.settings.lock_timeout if lock_timeout is None else lock_timeout
    with writing_migrations(project.root, timeout, announce):
        project.reload()
        folder = project.registry.writable(app).directory
        if delete_originals:
            return _delete_originals(project, app, start, end)
        graph = project.graph
        chain = _squash_range(graph, _range_end(graph, app, start), _range_end(graph, app, end))
        first, last = chain[0], chain[-1]
        originals = [read_original(m.label, m.path) for m in chain]
        ids = [m.revision for m in chain]
        inside = set(ids)
        depends = [rev for m in chain for rev in m.dependencies if rev not in inside]
        revision = squash_revision(app, ids)
        if revision in graph.migrations:
            raise RollbackError(f"a migration with the squash's revision id {revision} exists already; nothing was written")
        number = NUMBER_RE.match(first.name)
        path = folder / f"{number.group(1) if number else first.name}_squashed_{last.name}.py"
        if path.exists():
            raise RollbackError(f"{path} exists already; nothing was written")
        code = render(
            title=docstring_text(f"squashed {first.name} to {last.name}"),
            revision=revision,
            down_revision=first.parents,
            branch_labels=project.declared[first.revision].branch_labels,
            depends_on=tuple(dict.fromkeys(depends)),
            originals=originals,
            replaces=ids,
        )
        check_python(code, path)
        try:
            write_new(path, code)
        except OSError as exc:
            raise RollbackError(f"cannot write {path}: {exc.strerror or exc}; nothing was written") from None
        squash = Squash(app, revision, path, [m.label for m in chain])
        if on_written is not None:
            on_written(squash)
        project.reload()
        bind = project.all_apps.get(app).bind
        _update_snapshot(project.of_bind(bind), announce)
    return squash


def _range_end(graph: MigrationGraph, app: str, text: str) -> Migration:
    """FROM or TO: a migration of ``app`` in any form commands take; one of another app is
    refused, naming it."""
    try:
        return graph.find(text, app)
    except RollbackError as exc:
        try:
            other = graph.find(text)
        except RollbackError:
            raise RollbackError(f"{exc.message}; nothing was written") from None
        raise RollbackError(
            f"{other.label} is a migration of app {other.app!r}, not {app!r}: a squash replaces "
            f"migrations of one app; nothing was written"
        ) from None


def _squash_range(graph: MigrationGraph, first: Migration, last: Migration) -> list[Migration]:
    """FROM..TO in order, refused (naming the migration) unless it is a linear run that others
    stand on only at its end."""
    if first.revision == last.revision:
        raise RollbackError(f"FROM and TO are both {first.label}: nothing to squash; nothing was written")
    if first.revision not in graph.closure([last.revision]):
        where = "comes after" if last.revision in graph.closure([first.revision]) else "is not below"
        raise RollbackError(f"FROM {first.label} {where} TO {last.label}; nothing was written")
    chain = [last]
    while chain[-1].revision != first.revision:
        if not chain[-1].parents:
            raise RollbackError(
                f"FROM {first.label} is not on the line of migrations below TO {last.label}; "
                "nothing was written"
            )
        if len(chain[-1].parents) != 1:
            raise RollbackError(
                f"{chain[-1].label} is a merge point: a squash replaces a linear run of migrations; "
                "squash the part before or after it; nothing was written"
            )
        chain.append(graph.migrations[chain[-1].parents[0]])
    chain.reverse()
    if len(first.parents) > 1:
        raise RollbackError(
            f"{first.label} is a merge point: a squash replaces a linear run of migrations; "
            "start after it; nothing was written"
        )
    inner = {m.revision for m in chain[:-1]}
    members = {m.revision for m in chain}
    for migration in chain:
        if migration.replaces:
            raise RollbackError(
                f"{migration.label} is a squash itself: delete its originals first "
                "('flask db check' says when), then squash a range after it; nothing was written"
            )
    for other in graph.migrations.values():
        if other.revision in members:
            continue
        if inner.intersection(other.parents):
            parent = graph.migrations[next(iter(inner.intersection(other.parents)))]
            raise RollbackError(
                f"{parent.label} is a branch point ({other.label} also builds on it): a squash "
                "replaces a linear run of migrations; nothing was written"
            )
        if inner.intersection(other.dependencies):
            needed = graph.migrations[next(iter(inner.intersection(other.dependencies)))]
            raise RollbackError(
                f"{other.label} depends on {needed.label}, inside the range: only the range's last "
                "migration may be depended on (end the squash at it); nothing was written"
            )
    return chain


def _delete_originals(project: Project, app: str, start: str, end: str) -> Squash:
    """Delete the original files of the squash replacing FROM..TO, once every database known
    here applied them all (``check`` says the same)."""
    graph = project.graph
    hidden = {rev: item for rev, item in project.hidden_migrations.items() if not item.replaces}
    ends = [_original(hidden, app, text, project) for text in (start, end)]
    squash = next(
        (m for m in graph.migrations.values() if m.replaces and (m.replaces[0], m.replaces[-1]) == tuple(ends)),
        None,
    )
    if squash is None:
        raise RollbackError(
            f"no squash replaces exactly {start}..{end} of app {app!r}: squash them first "
            "('flask db squashmigrations APP FROM TO'); nothing was deleted"
        )
    with open_database(project) as (connection, planner):
        leftovers = squash_leftovers(project, connection, planner.applied)
    leftover = next((found for found in leftovers if found.path == squash.path), None)
    if leftover is None:
        raise RollbackError(f"the originals of {squash.label} are deleted already; nothing to do")
    if leftover.keep_because is not None:
        raise RollbackError(f"{leftover.advice()}; nothing was deleted")
    for path in leftover.originals:
        path.unlink()
    project.reload()
    return Squash(app, squash.revision, squash.path, [f"{app}.{p.stem}" for p in leftover.originals], leftover.originals)


def _original(hidden: dict[str, Declared], app: str, text: str, project: Project) -> str:
    """The revision of an original file hidden behind a squash, named by revision id, name,
    ``APP.NAME`` or a unique prefix of either."""
    folder = project.registry.get(app).directory.resolve()
    text = text.removeprefix(f"{app}.").removeprefix(f"{app}@")
    pool = [item for item in hidden.values() if item.directory.resolve() == folder]
    exact = [item for item in pool if text in (item.revision, item.filename[:-3])]
    matches = exact or [
        item for item in pool if item.revision.startswith(text) or item.filename.startswith(text)
    ]
    if len(matches) != 1:
        what = "no" if not matches else "more than one"
        raise RollbackError(
            f"{what} original migration of app {app!r} behind a squash matches {text!r}; "
            "nothing was deleted"
        )
    return matches[0].revision
