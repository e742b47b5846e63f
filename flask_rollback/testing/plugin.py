"""The pytest plugin: the ``migrator`` fixture and the ready-made checks (``--flask-rollback``).

Installed through the ``pytest11`` entry point, so it is active in every pytest run where
flask-rollback is installed: it only adds options and fixtures until one is used, and imports
flask-rollback's machinery only then.

Configuration (pytest.ini / pyproject.toml ``[tool.pytest.ini_options]``, or the command line):

- ``flask_rollback_app`` (``--flask-rollback-app``): the app factory, ``module:create_app``;
  it is called with a test config mapping (see factory.py);
- ``flask_rollback_url`` (``--flask-rollback-url``): a database server to make a throwaway
  database on for each test (the role needs CREATEDB); default: a SQLite file per test.

Fixtures a conftest.py may override: ``flask_rollback_app`` (the Flask app a test migrates),
``flask_rollback_database_url`` (the default bind's fresh database), ``flask_rollback_config``
(more config for the factory). The ready-made checks are not inside a test folder: overrides
meant for them go in the conftest.py at the root of the project (next to pytest.ini).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from flask import Flask

    from .migrator import Migrator

#: The node id the ready-made checks are collected under.
CHECKS_NODE = "flask-rollback"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flask-rollback", "flask-rollback: testing migrations")
    group.addoption(
        "--flask-rollback", action="store_true", dest="flask_rollback_checks", default=None,
        help="also run flask-rollback's ready-made migration checks, one test each",
    )
    group.addoption(
        "--flask-rollback-app", dest="flask_rollback_app", metavar="MODULE:FACTORY",
        help="the app factory the migrator and the checks call (overrides the ini option)",
    )
    group.addoption(
        "--flask-rollback-url", dest="flask_rollback_url", metavar="URL",
        help="a database server to make each test's throwaway database on (overrides the ini "
        "option); default: a SQLite file per test",
    )
    parser.addini(
        "flask_rollback_app",
        "the app factory, as for --app/FLASK_APP (myproject:create_app); it is called with a "
        "test config mapping",
    )
    parser.addini(
        "flask_rollback_url",
        "a database server URL to make each test's throwaway database on (the role needs "
        "CREATEDB); default: a SQLite file per test",
    )
    parser.addini(
        "flask_rollback_checks", "run the ready-made migration checks without --flask-rollback",
        type="bool", default=False,
    )


def _setting(config: pytest.Config, name: str) -> Any:
    """The command line's value, else the ini file's."""
    value = config.getoption(name)
    return value if value is not None else config.getini(name)


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def flask_rollback_config() -> dict[str, Any]:
    """More config for the app factory (e.g. ``ROLLBACK_DIRECTORY``); override it to add some."""
    return {}


@pytest.fixture
def flask_rollback_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database for this test: a SQLite file under ``tmp_path``, or, with
    ``flask_rollback_url``, a new database on that server, dropped afterwards."""
    server = _setting(request.config, "flask_rollback_url")
    if not server:
        yield f"sqlite:///{tmp_path / 'flask_rollback.db'}"
        return
    from sqlalchemy.engine import make_url

    from ..scratch import scratch_database

    with scratch_database(make_url(server), "grant CREATEDB to the role of flask_rollback_url") as url:
        yield url.render_as_string(hide_password=False)


@pytest.fixture
def flask_rollback_app(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    flask_rollback_database_url: str,
    flask_rollback_config: dict[str, Any],
) -> Iterator[Flask]:
    """The app of ``flask_rollback_app`` (ini option), its databases fresh for this test. Each
    Flask-SQLAlchemy bind gets a database of its own: a SQLite file beside the default one, or
    a new database on the default database's server."""
    from sqlalchemy.engine import make_url

    from ..scratch import scratch_database
    from .factory import load_factory, make_app

    spec = _setting(request.config, "flask_rollback_app")
    if not spec:
        pytest.fail(
            "flask-rollback: set flask_rollback_app = module:create_app in pytest.ini (or pass "
            "--flask-rollback-app), or override the flask_rollback_app fixture",
            pytrace=False,
        )
    default = make_url(flask_rollback_database_url)
    with ExitStack() as stack:

        def bind_url(key: str) -> str:
            if default.get_backend_name() == "sqlite":
                return f"sqlite:///{tmp_path / f'flask_rollback_bind_{key}.db'}"
            url = stack.enter_context(scratch_database(default, "grant CREATEDB to the role"))
            return url.render_as_string(hide_password=False)

        yield make_app(load_factory(spec), flask_rollback_database_url, bind_url, flask_rollback_config)


@pytest.fixture
def migrator(flask_rollback_app: Flask) -> Iterator[Migrator]:
    """Moves this test's database between migration states: ``migrator.apply("blog", "0002")``,
    ``migrator.table("posts")`` (reflected at that state), ``migrator.insert``/``rows``."""
    from .migrator import Migrator

    found = Migrator(flask_rollback_app)
    try:
        yield found
    finally:
        found.close()


# -- one line for flask-rollback's errors ---------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """In a test using the plugin's fixtures, a RollbackError it does not catch (an unknown
    app or revision given to the migrator, a refused move) is reported as its one line, where
    the test called it. Other tests' reports are left alone."""
    report = yield
    excinfo = call.excinfo
    if (
        excinfo is None or report.passed
        or "flask_rollback_app" not in getattr(item, "fixturenames", ())
        or not type(excinfo.value).__module__.startswith("flask_rollback.")
    ):
        return report
    from ..errors import RollbackError

    if isinstance(excinfo.value, RollbackError):
        path = getattr(item, "path", None)
        lines = [entry.lineno + 1 for entry in excinfo.traceback if path is not None and entry.path == path]
        where = f"{item.location[0]}:{lines[-1]}: " if lines else ""
        report.longrepr = f"{where}flask-rollback: {excinfo.value.message}"
    return report


# -- the ready-made checks ------------------------------------------------------------------


class FlaskRollbackChecks(pytest.Collector):
    """The ready-made checks, one test each (``flask-rollback::up-down-up``)."""

    def collect(self) -> list[pytest.Item]:
        from .checks import CHECKS

        return [
            pytest.Function.from_parent(self, name=name, callobj=_check_function(name))
            for name in CHECKS
        ]


def _check_function(name: str) -> Any:
    """A test function running check ``name`` on the app made by the fixtures."""

    def check(flask_rollback_app: Flask) -> None:
        from ..commands import get_project
        from .checks import CHECKS, CannotCheck

        chosen = CHECKS[name]
        try:
            problems = chosen.run(get_project(flask_rollback_app))
        except CannotCheck as exc:
            pytest.skip(f"{name}: {exc}")
        if problems:
            listed = "\n".join(f"  {line}" for line in problems)
            pytest.fail(f"flask-rollback {name}: {chosen.title} -- failed:\n{listed}", pytrace=False)

    check.__name__ = f"flask_rollback_{name.replace('-', '_')}"
    check.__doc__ = f"flask-rollback's ready-made check: {name}."
    return check


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """With ``--flask-rollback`` (or ``flask_rollback_checks = true``), the checks join the
    collected tests (before ``-k``/``-m`` select among them)."""
    if not (config.getoption("flask_rollback_checks") or config.getini("flask_rollback_checks")):
        return
    if any(item.nodeid.startswith(f"{CHECKS_NODE}::") for item in items):
        return
    checks = FlaskRollbackChecks.from_parent(session, name=CHECKS_NODE, nodeid=CHECKS_NODE)
    items.extend(session.genitems(checks))  # collected as any collector is: reported, counted
