"""The ``flask db`` group: options, the current project, one-line errors and exit codes,
and the options several commands share."""

from __future__ import annotations

import json
import signal
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import click
import sqlalchemy as sa
from flask import current_app, has_app_context
from flask.cli import AppGroup

from .. import commands
from ..database import display_url, mask
from ..errors import DataLossError, RollbackError
from ..interrupts import Interrupted, signals_raise
from ..plan import RELATIVE_RE
from ..project import COMPARISONS, Project
from .output import RED, YELLOW, end_open_line, paint, print_risks


class RollbackGroup(AppGroup):
    """Turns RollbackError (and database errors) into one line and an exit code; SIGTERM and
    Ctrl-C unwind the command (see interrupts.py) and end as one line too."""

    def invoke(self, ctx: click.Context) -> Any:
        with signals_raise():
            return self._invoke(ctx)

    def _invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:  # Interrupted, or Ctrl-C before the handler was set
            interrupted = exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT)
            _fail(ctx, interrupted.summary(), interrupted.exit_code, exc)
        except RollbackError as exc:
            end_open_line(ctx)
            if isinstance(exc, DataLossError):
                print_risks(exc.report, err=True)
            if ctx.meta.get(JSON_MODE):  # a script reading stdout gets an answer too
                emit_json(_error_json(exc))
            _fail(ctx, exc.message, exc.exit_code, exc)
        except sa.exc.SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            _fail(ctx, f"database error: {_mask(ctx, reason)}", 1, exc)


def _error_json(exc: RollbackError) -> dict[str, Any]:
    """What ``--json`` prints when the command fails: the line, the exit code and, for a
    refusal, the data at risk."""
    data: dict[str, Any] = {"ok": False, "error": exc.message, "exit_code": exc.exit_code}
    if isinstance(exc, DataLossError):
        data["data_at_risk"] = [
            {"migration": risk.step.migration.label, "direction": risk.step.direction,
             "app": risk.step.app, "object": risk.object, "lost": risk.amount,
             "operation": risk.operation.reason}
            for risk in exc.report.risks
        ]
    return data


def _fail(ctx: click.Context, message: str, code: int, exc: BaseException) -> None:
    end_open_line(ctx)
    if ctx.meta.get("rollback.verbose"):
        traceback.print_exception(exc)
    click.echo(f"{paint('Error:', RED, err=True)} {message}", err=True)
    ctx.exit(code)


def _mask(ctx: click.Context, text: str) -> str:
    """Hide the password; the project is remembered because the app context may be gone."""
    project: Project | None = ctx.meta.get("rollback.project")
    if project is not None:
        try:  # each bind's URL, once the apps (and so the binds) are known
            for view in project.views() if "all_apps" in project.__dict__ else [project]:
                text = mask(text, view.url)
        except RollbackError:  # no database configured: no password to hide
            pass
        return text
    if has_app_context():
        uri = current_app.config.get("SQLALCHEMY_DATABASE_URI")
        if uri:
            return mask(text, sa.engine.make_url(uri))
    return text


def _print_versions(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``flask db --version``: this package's version and those of what it runs on (what a bug
    report needs)."""
    if not value or ctx.resilient_parsing:
        return
    from importlib.metadata import version

    from .. import __version__

    click.echo(f"flask-rollback {__version__}")
    for name, dist in (("Alembic", "alembic"), ("SQLAlchemy", "sqlalchemy"), ("Flask", "flask")):
        click.echo(f"{name} {version(dist)}")
    ctx.exit()


@click.group(cls=RollbackGroup)
@click.option(
    "--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_versions,
    help="Show the versions of flask-rollback, Alembic, SQLAlchemy and Flask, then exit.",
)
@click.option("-d", "--directory", default=None, help="Migrations root (default: ROLLBACK_DIRECTORY or 'migrations').")
@click.option("-x", "--x-arg", multiple=True, help="Extra argument for migrations (context.get_x_argument()).")
@click.option("--verbose", is_flag=True, help="Show tracebacks on errors.")
@click.pass_context
def db_group(ctx: click.Context, directory: str | None, x_arg: tuple[str, ...], verbose: bool) -> None:
    """Per-app database migrations with safe rollbacks (flask-rollback)."""
    ctx.meta["rollback.verbose"] = verbose
    ctx.meta["rollback.directory"] = directory
    ctx.meta["rollback.x"] = list(x_arg)


def current_project() -> Project:
    ctx = click.get_current_context()
    project = commands.get_project(directory=ctx.meta.get("rollback.directory"))
    project.x_args = ctx.meta.get("rollback.x") or []
    project.tag = ctx.meta.get("rollback.tag")
    ctx.meta["rollback.project"] = project
    return project


def echo_lines(lines: Iterable[str]) -> None:
    """Print lines in one write (a history of 10,000 migrations is 10,000 lines); none: nothing."""
    lines = list(lines)
    if lines:
        click.echo("\n".join(lines))


def emit_json(data: Any) -> None:
    """One JSON document on stdout per command: an error after it adds none."""
    click.echo(json.dumps(data, indent=2, default=str))
    click.get_current_context().meta[JSON_MODE] = False


def _check_target(ctx: click.Context, _param: click.Parameter, words: tuple[str, ...]) -> tuple[str, ...]:
    """``-N`` is a target (``flask db downgrade -2``), not an option; other dashes still are."""
    for word in words:
        if word.startswith("-") and not RELATIVE_RE.match(word):
            raise click.NoSuchOption(word, ctx=ctx)
    return words


#: Targets may be ``-N``: these commands let unknown "options" through to _check_target.
TARGET_SETTINGS = {"ignore_unknown_options": True}
target_argument = click.argument("target", nargs=-1, callback=_check_target)
lock_timeout_option = click.option(
    "--lock-timeout", type=float, default=None,
    help="Seconds to wait for the migration lock (default ROLLBACK_LOCK_TIMEOUT, 300).",
)
allow_data_loss_option = click.option(
    "--allow-data-loss", is_flag=True,
    help="Run steps that destroy existing data (refused by default).",
)
quiet_option = click.option(
    "-q", "--quiet", is_flag=True, help="Print only the summary, not a line per migration.",
)
archive_option = click.option(
    "--archive/--no-archive", default=None,
    help="Copy what destructive steps remove into archive tables first (default ROLLBACK_ARCHIVE).",
)


def _remember(key: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    """An option callback that leaves a given value in ``ctx.meta`` for current_project()."""

    def store(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        if value:
            ctx.meta[key] = list(value) if isinstance(value, tuple) else value

    return store


# Flask-Migrate also takes -d and -x after the command name (``flask db upgrade -d DIR``);
# given there, they win over the group's, as in Flask-Migrate.
directory_option = click.option(
    "-d", "--directory", expose_value=False, callback=_remember("rollback.directory"),
    help="Migrations root (overrides the group's -d).",
)
x_arg_option = click.option(
    "-x", "--x-arg", multiple=True, expose_value=False, callback=_remember("rollback.x"),
    help="Extra argument for migrations (context.get_x_argument()); replaces the group's -x.",
)
#: ``ctx.meta`` key: the command was asked for ``--json`` (errors are printed as JSON too).
JSON_MODE = "rollback.json"
json_option = click.option(
    "--json", "as_json", is_flag=True, callback=lambda ctx, _param, value: (
        ctx.meta.__setitem__(JSON_MODE, value) or value),
    help="Print JSON (also when the command fails).",
)
database_option = click.option(
    "--database", type=click.Choice(COMPARISONS), default="scratch", show_default=True,
    help="Compare the models with the schema the migrations build on a scratch database, or "
    "with the live database (which must be at its heads).",
)
tag_option = click.option(
    "--tag", expose_value=False, callback=_remember("rollback.tag"),
    help="Arbitrary tag for migrations to read (context.get_tag_argument()).",
)


def announce(message: str) -> None:
    """A line from the library while it works (waiting for a lock, a warning), on stderr."""
    if message.startswith("Warning:"):
        message = paint("Warning:", YELLOW, err=True) + message[len("Warning:"):]
    click.echo(message, err=True)



# -- binds ------------------------------------------------------------------------------------

#: ``ctx.meta`` key: the binds ``--bind`` named.
BINDS = "rollback.binds"
bind_option = click.option(
    "--bind", multiple=True, expose_value=False, callback=_remember(BINDS), metavar="KEY",
    help="Only this bind: a SQLALCHEMY_BINDS key, or 'default' (repeatable; default: every bind).",
)
T = TypeVar("T")


def bind_views(project: Project, apps: Sequence[str] = ()) -> list[Project]:
    """The binds a command visits, each as its own project: those ``--bind`` names, else the
    binds of the apps ``apps`` names (app labels, or target words naming a migration), else
    every bind holding apps. A project with one bind visits itself."""
    names = click.get_current_context().meta.get(BINDS)
    views = project.views(names)
    if names or len(views) < 2 or not apps:
        return views
    keys = {_bind_of_word(project, word) for word in apps}
    if ... in keys:
        return views
    return [view for view in views if view.bind in keys]


def _bind_of_word(project: Project, word: str) -> Any:
    """The bind of the app a target word names; ``...`` for words naming every app."""
    if word in ("heads", "head", "base") or RELATIVE_RE.match(word):
        return ...
    registry = project.all_apps
    if word in registry:
        return registry.get(word).bind
    label, _rest = project.graph.split_reference(word)
    label = label if label is not None else project.graph.find(word).app
    return registry.get(label).bind


def bind_flag(view: Project) -> str:
    """`` --bind KEY`` for a command printed for the user to run, when the project has
    several binds (commands like ``restore`` and ``rollback ID`` then need it)."""
    return f" --bind {view.bind_label}" if view.several_binds else ""


def each_bind(
    views: Sequence[Project], action: Callable[[Project], T], *, heading: bool = True, sql: bool = False
) -> list[T]:
    """Run ``action`` on each bind in turn (each under its own lock, if it takes one). With
    several binds, a heading names each one (a SQL comment when the output is SQL, so it can
    still be piped into the database), and an error names the bind it happened on and the
    binds already done (they stay as they are)."""
    several = len(views) > 1 or any(view.several_binds for view in views)
    results: list[T] = []
    done: list[str] = []
    for view in views:
        try:
            if several and heading:
                click.echo(f"{'-- ' if sql else ''}Bind {view.bind_label!r} ({display_url(view.url)}):")
            results.append(action(view))
        except RollbackError as exc:
            if several:
                after = (
                    f"; bind {', '.join(repr(name) for name in done)} finished before it and "
                    "stays as it is" if done else ""
                )
                exc.message = f"bind {view.bind_label!r}: {exc.message}{after}"
                exc.args = (exc.message,)
            raise
        done.append(view.bind_label)
    return results


def by_bind(views: Sequence[Project], documents: Sequence[Any]) -> Any:
    """One JSON document: as it was with one bind, ``{bind: document}`` with several."""
    if len(views) == 1 and not views[0].several_binds:
        return documents[0]
    return {"binds": {view.bind_label: doc for view, doc in zip(views, documents)}}
