"""The user's Flask app for one test: their app factory, called with a test config that points
every database (the default one and each Flask-SQLAlchemy bind) at a throwaway database.

The factory receives the config as its one argument, the pattern of Flask's tutorial
(``def create_app(test_config=None)``, applied with ``app.config.update(test_config)`` before
``db.init_app(app)``): Flask-SQLAlchemy makes its engines in ``init_app``, so a URL set on the
app afterwards would never be used. The app the factory returns is checked to really use the
test database, so a test can never migrate the database the app normally runs on.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask
from sqlalchemy.engine import URL, make_url

from ..errors import RollbackError

#: Factory names Flask's ``--app`` looks for when only a module is named.
FACTORY_NAMES = ("create_app", "make_app")

Factory = Callable[[dict[str, Any]], Flask]


def load_factory(spec: str) -> Factory:
    """The factory ``spec`` names, as ``--app``/FLASK_APP does: ``module:create_app`` or
    ``module`` (its ``create_app`` or ``make_app``); a path such as ``src/app.py`` works too."""
    from flask.cli import prepare_import

    module_part, _, name = spec.strip().partition(":")
    if not module_part or "(" in name:
        raise RollbackError(
            f"flask_rollback_app = {spec!r}: expected 'module:factory' (e.g. 'myproject:create_app'); "
            "the plugin calls the factory itself, with the test config"
        )
    import_name = prepare_import(module_part)
    try:
        module = importlib.import_module(import_name)
    except ImportError as exc:
        if exc.name and import_name.startswith(exc.name):
            raise RollbackError(
                f"flask_rollback_app = {spec!r}: cannot import {import_name!r} ({exc}); run pytest "
                "where that module is importable"
            ) from None
        raise
    names = (name,) if name else FACTORY_NAMES
    found = next((getattr(module, n) for n in names if hasattr(module, n)), None)
    if found is None:
        wanted = repr(name) if name else " or ".join(repr(n) for n in FACTORY_NAMES)
        raise RollbackError(f"flask_rollback_app = {spec!r}: module {import_name!r} has no {wanted}")
    if isinstance(found, Flask) or not callable(found):
        raise RollbackError(
            f"flask_rollback_app = {spec!r} is an app object, not a factory: the plugin needs a "
            "factory to give each test its own database; name it (e.g. 'myproject:create_app')"
        )
    return found  # type: ignore[no-any-return]


def make_app(
    factory: Factory,
    database_url: str,
    new_bind_url: Callable[[str], str],
    config: Mapping[str, Any] | None = None,
) -> Flask:
    """Call ``factory`` with ``TESTING``, ``config`` and ``SQLALCHEMY_DATABASE_URI`` set to
    ``database_url``. An app with binds is made a second time, each bind given a URL from
    ``new_bind_url(key)`` (the bind keys are only known from the first app)."""
    _accepts_config(factory)
    test_config: dict[str, Any] = {"TESTING": True, **(config or {}), "SQLALCHEMY_DATABASE_URI": database_url}
    app = factory(dict(test_config))
    binds = app.config.get("SQLALCHEMY_BINDS") or {}
    if binds and "SQLALCHEMY_BINDS" not in (config or {}):
        test_config["SQLALCHEMY_BINDS"] = {
            key: {**entry, "url": new_bind_url(key)} if isinstance(entry, Mapping) else new_bind_url(key)
            for key, entry in binds.items()
        }
        app = factory(dict(test_config))
    _check_uses(app, test_config, factory)
    return app


def _accepts_config(factory: Factory) -> None:
    try:
        parameters = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return  # a builtin or C callable: try it
    positional = [
        p for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    if not positional:
        raise RollbackError(
            f"{_name(factory)} takes no argument, so the plugin cannot give it a test database: "
            "accept a test config (def create_app(test_config=None) ... "
            "app.config.update(test_config or {}) before db.init_app(app)), or override the "
            "flask_rollback_app fixture"
        )


def _check_uses(app: Flask, test_config: Mapping[str, Any], factory: Factory) -> None:
    """The app's engines must point at the test databases, not at the app's usual ones."""
    extension = app.extensions.get("sqlalchemy")
    if extension is None or "rollback" not in app.extensions:
        raise RollbackError(
            f"the app {_name(factory)} makes has no Flask-SQLAlchemy or flask-rollback set up "
            "(db.init_app(app), rollback.init_app(app, db))"
        )
    wanted: dict[str | None, Any] = {None: test_config["SQLALCHEMY_DATABASE_URI"]}
    for key, entry in (test_config.get("SQLALCHEMY_BINDS") or {}).items():
        wanted[key] = entry["url"] if isinstance(entry, Mapping) else entry
    with app.app_context():
        engines = extension.engines
        for key, url in wanted.items():
            engine = engines.get(key)
            if engine is None or _place(engine.url) != _place(make_url(str(url))):
                setting = "SQLALCHEMY_DATABASE_URI" if key is None else f"SQLALCHEMY_BINDS[{key!r}]"
                raise RollbackError(
                    f"{_name(factory)} did not use the test config's {setting}: apply the config "
                    "it is given (app.config.update(test_config)) before db.init_app(app)"
                )


def _place(url: URL) -> tuple[Any, ...]:
    """Where a URL leads (Flask-SQLAlchemy adds driver options to some, e.g. MySQL's charset)."""
    return (url.get_backend_name(), url.host, url.port, url.database)


def _name(factory: Factory) -> str:
    return f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', factory)}"
