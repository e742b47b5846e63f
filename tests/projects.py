"""Real throwaway Flask projects on disk for the tests: a package with blueprints and models,
its own migrations folder, and helpers to run ``flask db`` on it in-process or as a subprocess.

Each test gets a uniquely named package, so models can be edited between commands and the
package re-imported, exactly as a developer edits code between two ``flask db`` runs.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from click.testing import Result
from flask import Flask

FACTORY = '''
import os
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase
from flask_rollback import NAMING_CONVENTION, Rollback


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
rollback = Rollback()


def create_app(test_config=None):
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["TEST_DATABASE_URL"]
    app.config["ROLLBACK_DIRECTORY"] = os.environ["TEST_MIGRATIONS"]
    # Tests replay migrations unless they ask for schema snapshots (tests/test_snapshot.py).
    app.config["ROLLBACK_SNAPSHOTS"] = False
    for key, value in CONFIG.items():
        app.config[key] = value
    app.config.update(test_config or {})  # the pytest plugin's test databases
    db.init_app(app)
    for name in BLUEPRINTS:
        module = __import__(f"{__name__}.{name}", fromlist=["bp"])
        app.register_blueprint(module.bp)
    for module_name in EXTRA_MODULES:
        __import__(f"{__name__}.{module_name}")
    rollback.init_app(app, db)
    return app
'''

def flask_migrate_factory(models: bool = True, naming_convention: dict[str, str] | None = None) -> str:
    """The ``__init__.py`` of a Flask-Migrate app (``Migrate`` in an app factory; the database
    URL and the migrations folder from TEST_DATABASE_URL and TEST_MIGRATIONS): what the adopt
    tests convert and the benches time flask-rollback against. ``models`` imports the package's
    models.py; ``naming_convention`` declares the models on a base whose MetaData has it (the
    same schema names as flask-rollback's projects)."""
    base, model_class = "", ""
    if naming_convention is not None:
        base = (
            "from sqlalchemy import MetaData\nfrom sqlalchemy.orm import DeclarativeBase\n\n\n"
            "class Base(DeclarativeBase):\n"
            f"    metadata = MetaData(naming_convention={naming_convention!r})\n\n"
        )
        model_class = "model_class=Base"
    imported = "    from . import models  # noqa: F401\n" if models else ""
    return (
        "\nimport os\nfrom flask import Flask\nfrom flask_sqlalchemy import SQLAlchemy\n"
        f"from flask_migrate import Migrate\n{base}\ndb = SQLAlchemy({model_class})\n"
        "migrate = Migrate()\n\n\ndef create_app():\n    app = Flask(__name__)\n"
        '    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["TEST_DATABASE_URL"]\n'
        f"    db.init_app(app)\n{imported}"
        '    migrate.init_app(app, db, directory=os.environ["TEST_MIGRATIONS"])\n    return app\n'
    )


BLUEPRINT = '''
from flask import Blueprint

bp = Blueprint("{name}", __name__)

from . import models  # noqa: E402,F401
'''

#: The issue's example: accounts.User, blog.Post -> users.id.
ACCOUNTS_MODELS = '''
from sqlalchemy.orm import Mapped, mapped_column
from .. import db


class User(db.Model):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(db.String(120), unique=True)
'''

BLOG_MODELS = '''
from sqlalchemy.orm import Mapped, mapped_column
from .. import db


class Post(db.Model):
    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(db.String(200))
    author_id: Mapped[int] = mapped_column(db.ForeignKey("users.id"))
'''


@dataclass
class Project:
    """A project package under ``root`` named ``package``, using database ``url``."""

    root: Path
    package: str
    url: str

    @property
    def package_dir(self) -> Path:
        return self.root / self.package

    @property
    def migrations(self) -> Path:
        return self.root / "migrations"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "TEST_DATABASE_URL": self.url,
            "TEST_MIGRATIONS": str(self.migrations),
            "FLASK_APP": self.package,
            "PYTHONPATH": os.pathsep.join([str(self.root), str(Path(__file__).parents[1])]),
        }

    def write(self, relative: str, text: str) -> Path:
        """Write a file of the package (e.g. ``blog/models.py``)."""
        path = self.package_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    def set_factory(
        self,
        blueprints: list[str],
        config: dict[str, object] | None = None,
        extra_modules: list[str] | None = None,
    ) -> None:
        self.write(
            "__init__.py",
            FACTORY
            + f"\nBLUEPRINTS = {blueprints!r}\nCONFIG = {config or {}!r}\n"
            + f"EXTRA_MODULES = {extra_modules or []!r}\n",
        )

    def add_blueprint(self, name: str, models: str) -> None:
        self.write(f"{name}/__init__.py", BLUEPRINT.format(name=name))
        self.write(f"{name}/models.py", models)

    def app(self) -> Flask:
        """A fresh app from a fresh import of the package (models may have changed)."""
        for name in [m for m in sys.modules if m == self.package or m.startswith(self.package + ".")]:
            del sys.modules[name]
        importlib.invalidate_caches()
        if str(self.root) not in sys.path:
            sys.path.insert(0, str(self.root))
        saved = {k: os.environ.get(k) for k in ("TEST_DATABASE_URL", "TEST_MIGRATIONS")}
        os.environ["TEST_DATABASE_URL"] = self.url
        os.environ["TEST_MIGRATIONS"] = str(self.migrations)
        try:
            return importlib.import_module(self.package).create_app()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def db(self, *args: str) -> Result:
        """``flask db ARGS`` in-process through Flask's CLI runner, on a fresh app."""
        app = self.app()
        return app.test_cli_runner().invoke(args=["db", *args])

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``flask db ARGS`` as a real subprocess (what a user types)."""
        return subprocess.run(
            [sys.executable, "-m", "flask", "db", *args],
            cwd=self.root, env=self.env(), capture_output=True, text=True, timeout=timeout,
        )

    def engine(self) -> sa.Engine:
        return sa.create_engine(self.url, poolclass=sa.pool.NullPool)

    def tables(self) -> set[str]:
        engine = self.engine()
        try:
            return set(sa.inspect(engine).get_table_names())
        finally:
            engine.dispose()

    def query(self, sql: str) -> list[tuple]:  # type: ignore[type-arg]
        engine = self.engine()
        try:
            with engine.connect() as connection:
                return [tuple(row) for row in connection.exec_driver_sql(sql)]
        finally:
            engine.dispose()

    def query_write(self, *statements: str) -> None:
        """Run statements in one committed transaction."""
        engine = self.engine()
        try:
            with engine.begin() as connection:
                for statement in statements:
                    connection.exec_driver_sql(statement)
        finally:
            engine.dispose()

    def files(self, app: str) -> list[str]:
        return sorted(p.name for p in (self.migrations / app).glob("*.py"))


def new_project(tmp_path: Path, url: str, with_blog: bool = True) -> Project:
    """The issue's example project: accounts (User) and blog (Post -> users.id)."""
    project = Project(tmp_path, f"proj_{uuid.uuid4().hex[:10]}", url)
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    blueprints = ["accounts"]
    if with_blog:
        project.add_blueprint("blog", BLOG_MODELS)
        blueprints.append("blog")
    project.set_factory(blueprints)
    return project


CHAIN_MIGRATION = '''"""step {number}"""

import time

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = {parent!r}
branch_labels = {labels!r}
depends_on = None


def upgrade() -> None:
    op.create_table("t{number:04d}", sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", sa.String(20)))
    op.bulk_insert(sa.table("t{number:04d}", sa.column("id"), sa.column("v")), [{{"id": i + 1, "v": "x"}} for i in range({rows})])
    time.sleep({sleep})


def downgrade() -> None:
    op.drop_table("t{number:04d}")
'''


def server_database(bind: sa.Connection) -> str:
    """For migrations in tests: the name of the database a server backend runs them on (a
    rehearsal's scratch copy has its own), on PostgreSQL and MariaDB alike."""
    if bind.dialect.name == "mysql":
        return str(bind.exec_driver_sql("SELECT DATABASE()").scalar())
    return str(bind.exec_driver_sql("SELECT current_database()").scalar())


def sleep_on_server(bind: sa.Connection, seconds: float) -> None:
    """For migrations in tests: a statement that sleeps inside the server (what a signal must
    cancel there): pg_sleep on PostgreSQL, SLEEP() on MariaDB."""
    function = "SLEEP" if bind.dialect.name == "mysql" else "pg_sleep"
    bind.exec_driver_sql(f"SELECT {function}({seconds})").all()


def write_chain(project: Project, app: str, count: int, rows: int = 20, sleep: float = 0.0) -> list[str]:
    """``count`` hand-written migrations in ``app``, each creating table tNNNN with ``rows`` rows;
    returns their revision ids in order. Ids are ``<app>NNNN`` so tests can name them."""
    folder = project.migrations / app
    folder.mkdir(parents=True, exist_ok=True)
    revisions = []
    for number in range(1, count + 1):
        revision = f"{app}{number:04d}"
        (folder / f"{number:04d}_step.py").write_text(
            CHAIN_MIGRATION.format(
                number=number,
                revision=revision,
                parent=revisions[-1] if revisions else None,
                labels=(app,) if number == 1 else None,
                rows=rows,
                sleep=sleep,
            )
        )
        revisions.append(revision)
    return revisions


def revision_of(project: Project, app: str, number: str) -> str:
    """The revision id of ``migrations/APP/NUMBER_*.py``."""
    (path,) = (project.migrations / app).glob(f"{number}_*.py")
    match = re.search(r"^revision(?::[^=]*)? = ['\"](\w+)['\"]", path.read_text(), re.M)
    assert match, path
    return match.group(1)


def write_migration(
    project: Project,
    app: str,
    filename: str,
    revision: str,
    down_revision: str | None,
    upgrade: str,
    downgrade: str = "pass",
    header: str = "",
) -> Path:
    """A hand-written migration file in ``migrations/APP``; ``header`` adds module-level lines."""
    body = lambda code: textwrap.indent(textwrap.dedent(code).strip(), "    ")  # noqa: E731
    path = project.migrations / app / filename
    path.write_text(
        f'"""{filename}"""\n\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
        f"revision = {revision!r}\ndown_revision = {down_revision!r}\n"
        f"branch_labels = None\ndepends_on = None\n{header}\n\n"
        f"def upgrade():\n{body(upgrade)}\n\n\ndef downgrade():\n{body(downgrade)}\n"
    )
    return path


def folder_state(project: Project) -> dict[str, str]:
    """Every file under the migrations folder and its content hash (nothing written or renamed)."""
    if not project.migrations.exists():
        return {}
    return {
        str(path.relative_to(project.migrations)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(project.migrations.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def fingerprint(project: Project) -> str:
    """Everything a refused command must leave alone. SQLite: the database file's bytes.
    PostgreSQL: schema (columns, constraints, indexes, sequences), version table and all rows."""
    if project.url.startswith("sqlite"):
        return hashlib.sha256(Path(project.url.removeprefix("sqlite:///")).read_bytes()).hexdigest()
    engine = project.engine()
    if project.url.startswith("mysql"):
        return _mysql_fingerprint(engine)
    try:
        with engine.connect() as connection:
            parts: list[Any] = []
            for sql in (
                "SELECT table_name, column_name, ordinal_position, data_type, "
                "character_maximum_length, is_nullable, column_default "
                "FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2",
                "SELECT table_name, constraint_name, constraint_type "
                "FROM information_schema.table_constraints WHERE table_schema = 'public' ORDER BY 1, 2",
                "SELECT tablename, indexname, indexdef FROM pg_indexes "
                "WHERE schemaname = 'public' ORDER BY 1, 2",
                "SELECT sequencename, last_value FROM pg_sequences ORDER BY 1",
            ):
                parts.append([tuple(row) for row in connection.exec_driver_sql(sql)])
            for table in sorted(sa.inspect(connection).get_table_names()):
                rows = connection.exec_driver_sql(f'SELECT * FROM "{table}"')
                parts.append((table, sorted(repr(tuple(row)) for row in rows)))
            return hashlib.sha256(repr(parts).encode()).hexdigest()
    finally:
        engine.dispose()


def _mysql_fingerprint(engine: sa.Engine) -> str:
    """MariaDB: every table's SHOW CREATE TABLE (columns, keys, indexes, AUTO_INCREMENT) and rows."""
    try:
        with engine.connect() as connection:
            parts: list[Any] = []
            for table in sorted(sa.inspect(connection).get_table_names()):
                parts.append(connection.exec_driver_sql(f"SHOW CREATE TABLE `{table}`").one()[1])
                rows = connection.exec_driver_sql(f"SELECT * FROM `{table}`")
                parts.append((table, sorted(repr(tuple(row)) for row in rows)))
            return hashlib.sha256(repr(parts).encode()).hexdigest()
    finally:
        engine.dispose()
