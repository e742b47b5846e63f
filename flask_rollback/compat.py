"""What Flask-Migrate callers import: its module-level functions, with the same names,
parameters and defaults, run on flask-rollback's per-app migrations.

``from flask_rollback import upgrade, stamp`` replaces ``from flask_migrate import upgrade,
stamp``. As with Flask-Migrate, each function works inside an app context on the current app;
``directory`` overrides the migrations root, ``x_arg`` is ``-x`` and ``tag`` is ``--tag``.
Alembic-style revisions (``head``, ``heads``, ``base``, ``-1``, ``+2``, an id or a unique prefix,
``APP@head``, ``REV+N``) and the names output prints (``blog.0002_tags``) become flask-rollback
targets, and every call goes through ``flask_rollback.commands``, so the lock, the data-loss
guard, irreversible steps and cascades are checked exactly as for ``flask db``.

Deliberate differences:

- they return result objects (Flask-Migrate returns None);
- a failure raises ``RollbackError`` (its ``exit_code`` is the CLI's) where Flask-Migrate
  logged the error and called ``sys.exit(1)``;
- a parameter that does not fit one branch per app (``splice``, ``branch_label``,
  ``version_path``, ``multidb``, ``sql`` where nothing runs SQL) raises ``RollbackError`` saying
  what to use instead, rather than being ignored.

``show``, ``heads``, ``branches`` and ``current`` print what Flask-Migrate printed (Alembic's
output) and return what they showed; ``history`` prints what ``flask db history`` prints (per
app, Django names) and returns the migrations in that order.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flask import has_app_context

from . import commands
from .errors import RollbackError
from .wording import plural

if TYPE_CHECKING:
    from .autodetect import NewMigration
    from .commands import CheckReport, RunResult, Status
    from .graph import Migration, MigrationGraph
    from .project import Project

#: Migration folder layouts ``init`` can create, with a one-line synopsis (``list_templates``).
TEMPLATES = {"flask-rollback": "one folder per app, env.py calls into the package"}
#: Flask-Migrate's default single-database template: ``init`` creates our layout in its place.
FLASK_MIGRATE_DEFAULT_TEMPLATE = "flask"
#: Alembic's ``REV+N`` / ``REV-N``: N migrations after / before REV in its app (REV also as
#: ``APP.NAME`` or ``APP@NAME``).
RELATIVE_TO_REVISION_RE = re.compile(
    r"^(?P<revision>\w+(?:[.@]\w+)?)(?P<sign>[+-])(?P<count>\d+)$"
)
HEAD_WORDS = ("head", "heads")

CHOOSE_APP = "choose the app with --app APP (in Python: head='APP@head')"
REFUSED_NEW_MIGRATION = {
    "splice": "every app is one branch and a new migration goes on its app's head; "
    "join two heads with merge (flask db merge APP)",
    "branch_label": "every app is its own branch, labelled with the app's label; "
    f"{CHOOSE_APP}, or declare a new app (a blueprint or rollback.register_app)",
    "version_path": "each app's migrations live in the app's folder (ROLLBACK_APP_DIRECTORIES); "
    f"{CHOOSE_APP}",
    "sql": "creating a migration runs no SQL (Alembic refuses --sql here too); use upgrade "
    "with sql=True (--sql) for the SQL of migrations",
}


# -- arguments shared with the CLI ----------------------------------------------------------


def _refuse(option: str, why: str) -> RollbackError:
    return RollbackError(f"{option} is not supported by flask-rollback: {why}")


def _both_spellings(parameter: str) -> str:
    """``branch_label (--branch-label)``: the message serves Python callers and the CLI."""
    return f"{parameter} (--{parameter.replace('_', '-')})"


def alembic_target(project: Project, revision: str) -> tuple[str, ...]:
    """Alembic's revision argument as target words for flask-rollback's planner.

    Most forms are already targets (``heads``, ``base``, ``-1``, ``+2``, ids, ``APP@head``);
    ``APP@heads`` and ``REV+N`` are rewritten, and ``FROM:TO`` ranges (Alembic's offline form)
    are refused here: they only render SQL (see ``sql_range``).
    """
    if not isinstance(revision, str):
        raise RollbackError(
            f"revision must be one target such as 'heads', 'APP@head' or a revision id, "
            f"not {revision!r}"
        )
    text = revision.strip()
    if ":" in text:
        raise RollbackError(
            f"revision range {text!r} is Alembic's offline form, only for the SQL (--sql, "
            f"sql=True); to run migrations give only the target ({text.rpartition(':')[2] or 'heads'!r})"
        )
    app, at, rest = text.partition("@")
    if at and rest == "heads":
        return (f"{app}@head",)
    relative = RELATIVE_TO_REVISION_RE.match(text)
    if relative and relative["revision"] not in (*HEAD_WORDS, "base"):
        return (_relative_revision(project.graph, **relative.groupdict()),)
    return tuple(text.split())


def sql_range(
    project: Project, revision: str, sql: bool
) -> tuple[tuple[str, ...], list[str] | None]:
    """With ``sql``, Alembic's offline ``FROM:TO``: the target words of TO (empty: the command's
    default) and FROM as the migrations taken as applied (comma-separated, any name form;
    empty or ``base``: an empty database). Anything else: (target words, None), the start
    read from the database."""
    if sql and isinstance(revision, str) and ":" in revision:
        start, _, end = revision.strip().partition(":")
        if ":" in end:
            raise RollbackError(f"revision range {revision!r} has more than one colon; give FROM:TO")
        return alembic_target(project, end), [part for part in start.split(",") if part.strip()]
    return alembic_target(project, revision), None


def _relative_revision(graph: MigrationGraph, revision: str, sign: str, count: str) -> str:
    anchor = graph.find(revision)
    chain = [m.revision for m in graph.of_app(anchor.app)]
    index = chain.index(anchor.revision) + (int(count) if sign == "+" else -int(count))
    if not 0 <= index < len(chain):
        raise RollbackError(
            f"{revision}{sign}{count}: app {anchor.app!r} has {plural(len(chain), 'migration')}; "
            f"{anchor.label} is number {chain.index(anchor.revision) + 1}"
        )
    return chain[index]


def new_migrations(
    project: Project,
    *,
    apps: Sequence[str] = (),
    message: str | None = None,
    autogenerate: bool,
    sql: bool = False,
    head: str = "head",
    splice: bool = False,
    branch_label: str | None = None,
    version_path: str | None = None,
    rev_id: str | None = None,
) -> list[NewMigration]:
    """Flask-Migrate's ``revision``/``migrate`` on per-app branches: ``head='APP@head'`` (or
    ``apps``) chooses the app; Alembic's branch options are refused with what to use instead."""
    given = {"splice": splice, "branch_label": branch_label is not None,
             "version_path": version_path is not None, "sql": sql}
    for option, why in REFUSED_NEW_MIGRATION.items():
        if given[option]:
            raise _refuse(_both_spellings(option), why)
    chosen = list(dict.fromkeys([*apps, *_app_of_head(project, head)]))
    if autogenerate:
        return commands.makemigrations(project, chosen, message=message, rev_id=rev_id)
    if not chosen:
        labels = project.registry.labels
        if len(labels) != 1:
            raise RollbackError(f"several apps ({', '.join(labels)}): {CHOOSE_APP}")
        chosen = labels
    return commands.makemigrations(project, chosen, message=message, empty=True, rev_id=rev_id)


def _app_of_head(project: Project, head: str) -> list[str]:
    """The app a new migration goes into: ``APP@head``, or an id that is an app's head."""
    text = head.strip()
    if text in HEAD_WORDS:
        return []
    app, at, rest = text.partition("@")
    if at:
        project.registry.get(app)
        if rest in HEAD_WORDS:
            return [app]
    migration = project.graph.find(rest if at else text, app if at else None)
    if migration.revision not in project.graph.app_heads(migration.app):
        raise _refuse(
            f"head={head!r} (not a head)",
            f"a new migration goes on its app's head; use head='{migration.app}@head'",
        )
    return [migration.app]


def app_to_merge(project: Project, revisions: str | Sequence[str]) -> str:
    """Flask-Migrate's merge revisions as the one app whose heads flask-rollback merges:
    nothing or ``heads`` (the one app with several heads), ``APP``, or exactly an app's heads."""
    words = revisions.split() if isinstance(revisions, str) else list(revisions)
    graph = project.graph
    if not words or words in (["head"], ["heads"]):
        forked = [label for label in project.registry.labels if len(graph.app_heads(label)) > 1]
        if len(forked) == 1:
            return forked[0]
        if not forked:
            raise RollbackError("no app has more than one head; nothing to merge")
        raise RollbackError(
            f"apps {', '.join(forked)} each have several heads; merge one app at a time "
            "(flask db merge APP, merge(revisions='APP'))"
        )
    if len(words) == 1:
        label = words[0].removesuffix("@heads").removesuffix("@head")
        if label in project.registry:
            return label
    found = [graph.find(word) for word in words]
    apps = {migration.app for migration in found}
    if len(apps) == 1:
        (app,) = apps
        if {migration.revision for migration in found} == set(graph.app_heads(app)):
            return app
    raise RollbackError(
        f"{' '.join(words)} are not the heads of one app; flask-rollback merges all heads of "
        "one app: give the app (flask db merge APP, merge(revisions='APP'))"
    )


def merge_heads(
    project: Project,
    revisions: str | Sequence[str],
    message: str | None = None,
    branch_label: str | None = None,
    rev_id: str | None = None,
) -> NewMigration:
    """Flask-Migrate's merge: the heads of the one app ``revisions`` names (see app_to_merge)."""
    if branch_label is not None:
        raise _refuse(_both_spellings("branch_label"), REFUSED_NEW_MIGRATION["branch_label"])
    return commands.merge(project, app_to_merge(project, revisions), message, rev_id)


def create_layout(
    project: Project, multidb: bool = False, template: str | None = None, package: bool = False
) -> list[Path]:
    """Flask-Migrate's init options: ``package`` adds ``__init__.py`` files (root and app
    folders); other layouts are refused, since there is one env.py, in the package."""
    if multidb:
        raise _refuse(
            _both_spellings("multidb"), "binds need no layout of their own: each app's migrations "
            "run on the bind of its models, with a version table per bind "
            "(docs/apps-and-ownership.md: 'Several databases (binds)')"
        )
    if template not in (None, FLASK_MIGRATE_DEFAULT_TEMPLATE, *TEMPLATES):
        raise _refuse(
            f"template {template!r}",
            f"its one layout ({', '.join(TEMPLATES)}: a few-line env.py calling into the "
            "package) replaces Flask-Migrate's templates; leave the template out",
        )
    created = commands.init(project)
    if package:
        for folder in [project.root, *(app.directory for app in project.registry)]:
            marker = folder / "__init__.py"
            if not marker.exists():
                marker.touch()
                created.append(marker)
    return created


def migrations_named(project: Project, symbol: str) -> list[Migration]:
    """What ``show``/``edit`` mean by a revision: ``current``, ``head(s)``, ``APP`` or
    ``APP@head`` (the app's head), or one migration as every other command takes it
    (``blog.0002``, ``blog 0002``, ``blog@0002_tags``, an id or a unique prefix)."""
    graph = project.graph
    words = symbol.split()
    app, at, rest = symbol.strip().partition("@")
    if words == ["current"]:
        revisions = [rev for app_status in commands.status(project).apps for rev in app_status.current]
        if not revisions:
            raise RollbackError("no migration is applied: there is no current revision")
    elif len(words) == 1 and words[0] in HEAD_WORDS:
        revisions = graph.heads()
    elif len(words) == 1 and (words[0] in project.registry or (at and rest in HEAD_WORDS)):
        label = words[0] if words[0] in project.registry else app
        project.registry.get(label)
        revisions = graph.app_heads(label)
        if not revisions:
            raise RollbackError(f"app {label!r} has no migrations")
    else:
        revisions = [graph.named(words).revision]
    return [graph.migrations[rev] for rev in revisions]


def refuse_stamp_sql(sql: bool) -> None:
    if sql:
        raise _refuse(
            "sql (--sql) with stamp",
            "a stamp also writes the applied log, so there is no SQL script for it; stamp the "
            "database itself",
        )


def head_revisions(graph: MigrationGraph, resolve_dependencies: bool = False) -> list[str]:
    """Every app's heads; with ``resolve_dependencies`` (Alembic's option: ``depends_on``
    counts as a parent) only those no other migration stands on."""
    if resolve_dependencies:
        return list(graph.stored_heads(set(graph.migrations)))
    return graph.heads()


# -- Flask-Migrate's functions --------------------------------------------------------------


def _project(
    directory: str | os.PathLike[str] | None,
    x_arg: str | Sequence[str] | None = None,
    tag: str | None = None,
) -> Project:
    """The current app's project, with ``-x`` and ``--tag`` for its migrations."""
    if not has_app_context():
        raise RollbackError(
            "flask_rollback's Flask-Migrate functions work on the current app: call them "
            "inside 'with app.app_context():'"
        )
    project = commands.get_project(directory=None if directory is None else os.fspath(directory))
    if x_arg is not None:
        project.x_args = [x_arg] if isinstance(x_arg, str) else list(x_arg)
    project.tag = tag
    return project


def _with_sql_printed(result: RunResult) -> RunResult:
    """``sql=True`` printed the SQL to stdout with Flask-Migrate; it is also ``result.sql``."""
    if result.sql is not None:
        sys.stdout.write(result.sql)
    return result


def list_templates() -> dict[str, str]:
    """Print and return the migration folder layouts (there is one)."""
    for name, synopsis in TEMPLATES.items():
        print(f"{name} - {synopsis}")
    return dict(TEMPLATES)


def init(
    directory: str | None = None,
    multidb: bool = False,
    template: str | None = None,
    package: bool = False,
) -> list[Path]:
    """Create the migrations folder and one folder per app; returns the paths created."""
    return create_layout(_project(directory), multidb, template, package)


def revision(
    directory: str | None = None,
    message: str | None = None,
    autogenerate: bool = False,
    sql: bool = False,
    head: str = "head",
    splice: bool = False,
    branch_label: str | None = None,
    version_path: str | None = None,
    rev_id: str | None = None,
) -> list[NewMigration]:
    """A new migration: empty in the app ``head='APP@head'`` names (needed with several apps),
    or autogenerated per changed app."""
    return new_migrations(
        _project(directory), message=message, autogenerate=autogenerate, sql=sql, head=head,
        splice=splice, branch_label=branch_label, version_path=version_path, rev_id=rev_id,
    )


def migrate(
    directory: str | None = None,
    message: str | None = None,
    sql: bool = False,
    head: str = "head",
    splice: bool = False,
    branch_label: str | None = None,
    version_path: str | None = None,
    rev_id: str | None = None,
    x_arg: str | Sequence[str] | None = None,
) -> list[NewMigration]:
    """Autogenerate one migration per changed app (``makemigrations``); [] when nothing changed."""
    return new_migrations(
        _project(directory, x_arg), message=message, autogenerate=True, sql=sql, head=head,
        splice=splice, branch_label=branch_label, version_path=version_path, rev_id=rev_id,
    )


def edit(directory: str | None = None, revision: str = "current") -> list[Migration]:
    """Open the migration(s) in $EDITOR (Alembic's edit); returns them."""
    return _each_named(directory, revision, "edit")


def merge(
    directory: str | None = None,
    revisions: str | Sequence[str] = "",
    message: str | None = None,
    branch_label: str | None = None,
    rev_id: str | None = None,
) -> NewMigration:
    """Join the heads of one app (``revisions``: '' / 'heads', 'APP' or exactly its heads)."""
    return merge_heads(_project(directory), revisions, message, branch_label, rev_id)


def upgrade(
    directory: str | None = None,
    revision: str = "head",
    sql: bool = False,
    tag: str | None = None,
    x_arg: str | Sequence[str] | None = None,
) -> RunResult:
    """Apply migrations up to ``revision`` (default every app's head), under the lock; a plan
    that would destroy data raises (use ``flask_rollback.commands.upgrade`` for
    ``archive``/``allow_data_loss``/``replay``). ``sql=True`` prints the SQL and runs nothing.
    An empty database is built from the current schema snapshot, one line on stderr says so."""
    project = _project(directory, x_arg, tag)
    target, start = sql_range(project, revision, sql)
    result = commands.upgrade(project, target, sql=sql, start=start)
    if result.snapshot is not None:
        print(result.snapshot.line, file=sys.stderr)
    return _with_sql_printed(result)


def downgrade(
    directory: str | None = None,
    revision: str = "-1",
    sql: bool = False,
    tag: str | None = None,
    x_arg: str | Sequence[str] | None = None,
) -> RunResult:
    """Revert down to ``revision`` (default the most recently applied migration); refused
    before anything runs for irreversible steps, other apps' dependents and data loss."""
    project = _project(directory, x_arg, tag)
    target, start = sql_range(project, revision, sql)
    return _with_sql_printed(commands.downgrade(project, target, sql=sql, start=start))


def show(directory: str | None = None, revision: str = "head") -> list[Migration]:
    """Print the migration(s) (Alembic's show; ``head`` shows every app's head)."""
    return _each_named(directory, revision, "show")


def _each_named(directory: str | None, revision: str, verb: str) -> list[Migration]:
    """Alembic's ``verb`` (show, edit) for each migration ``revision`` names, in any spelling."""
    project = _project(directory)
    chosen = migrations_named(project, revision)
    for migration in chosen:
        commands.alembic_verb(project, verb, migration.revision)
    return chosen


def history(
    directory: str | None = None,
    rev_range: str | None = None,
    verbose: bool = False,
    indicate_current: bool = False,
) -> list[Migration]:
    """Print every app's migrations, newest first (``flask db history``); ``rev_range``
    ('[start]:[end]') stays within one app. Returns them in the order printed."""
    shown = commands.history(_project(directory), rev_range=rev_range, indicate_current=indicate_current)
    for line in shown.lines(verbose):
        print(line)
    return shown.migrations


def heads(
    directory: str | None = None, verbose: bool = False, resolve_dependencies: bool = False
) -> list[Migration]:
    """Print and return every app's head migration(s)."""
    project = _project(directory)
    commands.alembic_verb(
        project, "heads", verbose=verbose, resolve_dependencies=resolve_dependencies
    )
    graph = project.graph
    return [graph.migrations[rev] for rev in head_revisions(graph, resolve_dependencies)]


def branches(directory: str | None = None, verbose: bool = False) -> list[Migration]:
    """Print and return the branch points (an app's migration with two children: merge it)."""
    project = _project(directory)
    commands.alembic_verb(project, "branches", verbose=verbose)
    return [
        project.graph.migrations[script.revision]
        for script in project.script.walk_revisions()
        if script.is_branch_point
    ]


def current(directory: str | None = None, verbose: bool = False) -> Status:
    """Print the database's revisions; returns every app's status (``app.current``)."""
    project = _project(directory)
    commands.alembic_verb(project, "current", verbose=verbose)
    return commands.status(project)


def stamp(
    directory: str | None = None,
    revision: str = "head",
    sql: bool = False,
    tag: str | None = None,
    purge: bool = False,
) -> RunResult:
    """Record ``revision`` as applied without running migrations (log rows marked fake).

    ``tag`` is accepted for migrations, but a stamp runs none, so nothing reads it."""
    refuse_stamp_sql(sql)
    project = _project(directory, tag=tag)
    return commands.stamp(project, alembic_target(project, revision), purge=purge)


def check(directory: str | None = None) -> CheckReport:
    """Raise ``RollbackError`` (``exit_code`` 3, 4 or 5) when an app has several heads, the
    database is behind or the models differ from the migrations (Flask-Migrate exited 1)."""
    report = commands.check(_project(directory))
    if report.problems:
        raise RollbackError("; ".join(message for _, message in report.problems), report.exit_code)
    return report


__all__ = [
    "branches", "check", "current", "downgrade", "edit", "heads", "history", "init",
    "list_templates", "merge", "migrate", "revision", "show", "stamp", "upgrade",
]
