"""A corpus of bad input, across every command, each refused cleanly (issue 3, item 4).

One parametrised test runs every case and asserts, for each:

- a non-zero exit code;
- exactly one output line starting ``Error:``, and it names the problem (a fragment per case);
- no ``Traceback`` anywhere in the output;
- the database unchanged: SQLite, the sha256 of the file's bytes (or "still absent");
  PostgreSQL, a checksum of the schema, the version table, the applied log, the deploy records
  and every table's row count;
- the migrations folder unchanged (nothing written, renamed or removed);
- no database password in the output.

Most cases run as a real ``python -m flask db`` subprocess on SQLite, so the output checked is
exactly what a user sees; cases marked in-process run through Flask's CLI runner, where an
escaping exception is turned into a traceback in the output (and fails the case). Cases that
only read share one prepared project per backend; cases that need a broken file, another config
or a changed database work on a copy of it (``fork``).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import socket
import subprocess
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from flask_rollback.lock import ADVISORY_CLASS, _advisory_key
from tests.projects import ACCOUNTS_MODELS, BLOG_MODELS, BLUEPRINT, Project, folder_state, new_project
from tests.test_bad_input import POSTS_UP, USERS_UP, write_migration

#: The password of the URLs in the PostgreSQL connection cases: it must never be printed.
SECRET = "hunter2-secret"


# -- the shared project ------------------------------------------------------------------------
#
# accounts: 0001_initial (abc111), 0002_add_name (acc444)            both applied
# blog:     0001_initial (abc222, depends on abc111)                  applied
#           0002_add_post_body (def333)                               pending
#
# 'abc' is an ambiguous revision prefix (abc111, abc222), '0001' an ambiguous name.


def build_project(root: Path, url: str) -> Project:
    """The shared project on ``url``, with a few rows."""
    project = new_project(root, url)
    # The models match the migrations once all are applied (a deploy checks for drift).
    name = "    name: Mapped[str | None] = mapped_column(db.String(50))\n"
    body = "    body: Mapped[str | None] = mapped_column(db.Text)\n"
    project.write("accounts/models.py", ACCOUNTS_MODELS + name)
    project.write("blog/models.py", BLOG_MODELS + body)
    result = project.db("init")
    assert result.exit_code == 0, result.output
    write_migration(
        project, "accounts", "0001_initial.py", "abc111", branch_labels=("accounts",),
        upgrade=USERS_UP, downgrade='op.drop_table("users")',
    )
    write_migration(
        project, "accounts", "0002_add_name.py", "acc444", down_revision="abc111",
        upgrade='op.add_column("users", sa.Column("name", sa.String(50), nullable=True))',
        downgrade='op.drop_column("users", "name")',
    )
    write_migration(
        project, "blog", "0001_initial.py", "abc222", branch_labels=("blog",),
        depends_on="abc111", upgrade=POSTS_UP, downgrade='op.drop_table("posts")',
    )
    write_migration(
        project, "blog", "0002_add_post_body.py", "def333", down_revision="abc222",
        upgrade='op.add_column("posts", sa.Column("body", sa.Text, nullable=True))',
        downgrade='op.drop_column("posts", "body")',
    )
    for target in ("abc222", "accounts"):
        result = project.db("upgrade", target)
        assert result.exit_code == 0, result.output
    project.query_write(
        "INSERT INTO users (id, email) VALUES (1, 'a@x.org')",
        "INSERT INTO users (id, email) VALUES (2, 'b@x.org')",
        "INSERT INTO posts (id, title, author_id) VALUES (1, 'hello', 1)",
    )
    return project


@pytest.fixture(scope="module")
def sqlite_base(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("corpus_sqlite")
    return build_project(root, f"sqlite:///{root / 'test.db'}")


@pytest.fixture(scope="module")
def pg_base(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """The shared project on PostgreSQL, plus deploy records: deploy 1 (def333) rolled back,
    deploy 2 (def333 again) applied."""
    root = tmp_path_factory.mktemp("corpus_pg")
    name = f"test_{uuid.uuid4().hex[:16]}"
    pg_server.create_database(name)
    try:
        project = build_project(root, pg_server.url(name))
        for args in (("deploy",), ("rollback", "--yes"), ("deploy",)):
            result = project.db(*args)
            assert result.exit_code == 0, result.output
        yield project
    finally:
        pg_server.drop_database(name)


# -- observing ---------------------------------------------------------------------------------


def snapshot(url: str) -> Any:
    """SQLite: the file's sha256, or 'absent'. PostgreSQL: a checksum of the schema (columns,
    keys, indexes, constraints), the version table, the applied log, the deploy records and the
    row count of every table."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path((parsed.database or "").removeprefix("file:").partition("?")[0])
        if not path.is_file():
            return "absent"
        return hashlib.sha256(path.read_bytes()).hexdigest()
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            state: dict[str, Any] = {}
            for table in sorted(inspector.get_table_names()):
                state[table] = [
                    [(c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                     for c in inspector.get_columns(table)],
                    inspector.get_pk_constraint(table),
                    sorted(map(repr, inspector.get_foreign_keys(table))),
                    sorted(map(repr, inspector.get_indexes(table))),
                    sorted(map(repr, inspector.get_unique_constraints(table))),
                    connection.exec_driver_sql(f'SELECT count(*) FROM "{table}"').scalar(),
                ]
            own = {
                "alembic_version": "SELECT version_num FROM alembic_version ORDER BY 1",
                "rollback_log": "SELECT id, app, revision, direction FROM rollback_log ORDER BY id",
                "rollback_deploys": "SELECT id, status, rolled_back_at FROM rollback_deploys ORDER BY id",
                "rollback_lock": "SELECT * FROM rollback_lock",
            }
            for table, query in own.items():
                if table in state:
                    state[f"rows of {table}"] = [tuple(r) for r in connection.exec_driver_sql(query)]
            return hashlib.sha256(repr(state).encode()).hexdigest()
    finally:
        engine.dispose()



def run_subprocess(project: Project, args: tuple[str, ...]) -> tuple[int, str]:
    result = project.run(*args)
    return result.returncode, result.stdout + result.stderr


def run_in_process(project: Project, args: tuple[str, ...]) -> tuple[int, str]:
    """Through Flask's CLI runner; an escaping exception shows up as a traceback."""
    result = project.db(*args)
    output = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        output += "".join(traceback.format_exception(result.exception))
    return result.exit_code, output


# -- preparing a case --------------------------------------------------------------------------


@dataclass
class Target:
    """What a case runs on: the project (its URL may be a bad one), the URL of the database that
    must stay unchanged, values for placeholders in args and fragments, and extra checks."""

    project: Project
    watch: str
    values: dict[str, str] = field(default_factory=dict)
    after: list[Callable[[], None]] = field(default_factory=list)


@dataclass
class Context:
    base: Project
    tmp_path: Path
    request: pytest.FixtureRequest

    def target(self, project: Project | None = None, watch: str | None = None) -> Target:
        project = project or self.base
        return Target(project, watch or project.url, {"root": str(project.root)})

    def fork(self, config: dict[str, Any] | None = None, url: str | None = None) -> Project:
        """A copy of the base project under tmp_path: a new package name (so it can be imported
        in-process next to the base), its migrations and, on SQLite, its database file."""
        base = self.base
        root = self.tmp_path / "fork"
        package = f"proj_{uuid.uuid4().hex[:10]}"
        shutil.copytree(base.root, root, ignore=shutil.ignore_patterns("__pycache__", base.package))
        shutil.copytree(base.package_dir, root / package, ignore=shutil.ignore_patterns("__pycache__"))
        if url is None:
            url = base.url
            if url.startswith("sqlite"):
                url = f"sqlite:///{root / 'test.db'}"
        project = Project(root, package, url)
        if config:
            project.set_factory(["accounts", "blog"], config)
        return project

    def fresh(self, blueprint_names: dict[str, str] | None = None,
              config: dict[str, Any] | None = None, extra: dict[str, str] | None = None) -> Project:
        """A new project, never initialised and without a database: only its code.
        ``blueprint_names`` renames blueprints ({package: name}); ``extra`` adds modules that
        the factory imports before ``init_app``."""
        project = new_project(self.tmp_path, f"sqlite:///{self.tmp_path / 'fresh.db'}")
        for package, name in (blueprint_names or {}).items():
            project.write(f"{package}/__init__.py", BLUEPRINT.format(name=name))
        for module, code in (extra or {}).items():
            project.write(f"{module}.py", code)
        project.set_factory(["accounts", "blog"], config, extra_modules=list(extra or {}))
        return project

    def finally_(self, callback: Callable[[], None]) -> None:
        self.request.addfinalizer(callback)


def broken_file(name: str, content: str | bytes, app: str = "blog") -> Callable[[Context], Target]:
    """A fork with one more (garbled) file in ``app``'s folder."""

    def setup(ctx: Context) -> Target:
        project = ctx.fork()
        path = project.migrations / app / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        target = ctx.target(project)
        target.values["file"] = str(path)
        return target

    return setup


def edited_file(name: str, app: str, old: str, new: str) -> Callable[[Context], Target]:
    """A fork with one line of an existing migration file changed."""

    def setup(ctx: Context) -> Target:
        project = ctx.fork()
        path = project.migrations / app / name
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))
        return ctx.target(project)

    return setup


def with_config(**config: Any) -> Callable[[Context], Target]:
    return lambda ctx: ctx.target(ctx.fork(config=config))


def fresh_project(**kwargs: Any) -> Callable[[Context], Target]:
    return lambda ctx: ctx.target(ctx.fresh(**kwargs))


def missing_migrations_folder(ctx: Context) -> Target:
    return ctx.target(ctx.fresh())


def duplicate_revision(ctx: Context) -> Target:
    project = ctx.fork()
    shutil.copyfile(
        project.migrations / "accounts" / "0002_add_name.py",
        project.migrations / "blog" / "0003_copy.py",
    )
    return ctx.target(project)


def database_in_missing_folder(ctx: Context) -> Target:
    database = ctx.tmp_path / "no" / "such" / "folder" / "test.db"
    target = ctx.target(ctx.fork(url=f"sqlite:///{database}"))
    target.values["database"] = str(database)

    def still_missing() -> None:
        assert not (ctx.tmp_path / "no").exists(), "the missing folder was created"

    target.after.append(still_missing)
    return target


def read_only_database(ctx: Context) -> Target:
    """The database file and its folder read-only. chmod does not stop root (the tests run as
    root in CI): there, the immutable attribute (``chattr +i``, which binds root too) when the
    filesystem and capabilities allow it, else SQLite's own read-only open mode."""
    project = ctx.fork()
    database = project.root / "test.db"
    folder = project.root
    if os.geteuid() != 0:
        database.chmod(0o444)
        folder.chmod(0o555)

        def restore() -> None:
            folder.chmod(0o755)
            database.chmod(0o644)

        ctx.finally_(restore)
    else:
        def chattr(flag: str, path: Path) -> bool:
            try:
                return subprocess.run(
                    ["chattr", flag, str(path)], capture_output=True, timeout=10
                ).returncode == 0
            except (OSError, subprocess.SubprocessError):
                return False

        def release() -> None:
            chattr("-i", folder)
            chattr("-i", database)

        ctx.finally_(release)
        immutable = chattr("+i", database) and chattr("+i", folder)
        if immutable:
            try:
                os.close(os.open(database, os.O_WRONLY))
                immutable = False  # the attribute did not take: not read-only after all
            except PermissionError:
                pass
        if not immutable:
            release()
            project = Project(
                project.root, project.package, f"sqlite:///file:{database}?mode=ro&uri=true"
            )
    return ctx.target(project)


def read_only_uri(ctx: Context) -> Target:
    project = ctx.fork()
    return ctx.target(
        Project(project.root, project.package, f"sqlite:///file:{project.root / 'test.db'}?mode=ro&uri=true")
    )


def sqlite_lock_held(ctx: Context) -> Target:
    """Another process holds the migration lock (the OS lock beside the database file)."""
    path = Path(sa.engine.make_url(ctx.base.url).database + ".rollback-lock")
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, b"otherhost/4242 since 2026-01-01 00:00:00 UTC", 0)

    def release() -> None:
        os.ftruncate(descriptor, 0)
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)

    ctx.finally_(release)
    return ctx.target()


def table_lock_left(ctx: Context) -> Target:
    """A lock-table row left by a crashed run (ROLLBACK_LOCK = "table")."""
    project = ctx.fork(config={"ROLLBACK_LOCK": "table"})
    project.query_write(
        "CREATE TABLE rollback_lock (id INTEGER PRIMARY KEY, holder VARCHAR(255) NOT NULL)",
        "INSERT INTO rollback_lock (id, holder) VALUES (1, 'crashed/4343 since then')",
    )
    return ctx.target(project)


def database_at_unknown_revision(ctx: Context) -> Target:
    project = ctx.fork()
    project.query_write("UPDATE alembic_version SET version_num = 'gone999' WHERE version_num = 'acc444'")
    return ctx.target(project)


def two_heads(ctx: Context) -> Target:
    project = ctx.fork()
    write_migration(project, "blog", "0003_other_branch.py", "bad555", down_revision="abc222")
    return ctx.target(project)


def irreversible_applied(ctx: Context) -> Target:
    """blog 0003 applied, and its downgrade() is empty while its upgrade() is not."""
    project = ctx.fork()
    write_migration(
        project, "blog", "0003_audit.py", "irr777", down_revision="def333",
        upgrade='op.create_table("audit", sa.Column("id", sa.Integer, primary_key=True))',
        downgrade="pass",
    )
    result = project.db("upgrade")
    assert result.exit_code == 0, result.output
    return ctx.target(project)


def register_app_label(label: str) -> Callable[[Context], Target]:
    code = (
        "from . import rollback\n\n"
        f"rollback.register_app({label!r}, import_name=__package__ + '.accounts')\n"
    )
    return fresh_project(extra={"billing": code})


def migrations_root_under_a_file(ctx: Context) -> Target:
    project = ctx.fork()
    afile = project.root / "notes.txt"
    afile.write_text("not a folder\n")
    target = ctx.target(project)

    def still_a_file() -> None:
        assert afile.read_text() == "not a folder\n"

    target.after.append(still_a_file)
    return target


# -- PostgreSQL --------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pg_url(ctx: Context, **parts: Any) -> str:
    return sa.engine.make_url(ctx.base.url).set(**parts).render_as_string(hide_password=False)


def pg_wrong_password(ctx: Context) -> Target:
    url = pg_url(ctx, password=SECRET)
    return ctx.target(Project(ctx.base.root, ctx.base.package, url), watch=ctx.base.url)


def pg_unreachable(ctx: Context) -> Target:
    port = _closed_port()
    url = pg_url(ctx, password=SECRET, port=port)
    target = ctx.target(Project(ctx.base.root, ctx.base.package, url), watch=ctx.base.url)
    target.values["port"] = str(port)
    return target


def pg_missing_database(ctx: Context) -> Target:
    name = f"missing_{uuid.uuid4().hex[:8]}"
    project = ctx.fork(url=pg_url(ctx, database=name))
    target = ctx.target(project, watch=ctx.base.url)
    target.values["name"] = name

    def not_created() -> None:
        engine = sa.create_engine(ctx.base.url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as connection:
                found = connection.execute(
                    sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
                ).first()
        finally:
            engine.dispose()
        assert found is None, f"database {name} was created"

    target.after.append(not_created)
    return target


def pg_lock_held(ctx: Context) -> Target:
    """Another session holds the migration lock (the advisory lock of the version table)."""
    parsed = sa.engine.make_url(ctx.base.url)
    holder = psycopg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, password=parsed.password,
        dbname=parsed.database, autocommit=True,
    )
    ctx.finally_(holder.close)
    holder.execute("SELECT pg_advisory_lock(%s, %s)", (ADVISORY_CLASS, _advisory_key("alembic_version")))
    return ctx.target()


# -- the corpus --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """``flask db ARGS`` on what ``setup`` prepares (default: the shared project), refused with
    an ``Error:`` line containing every fragment. ``{root}``, ``{file}``, ``{port}`` and
    ``{name}`` in args and fragments are filled in from the prepared target; in fragments
    ``{file}`` is the path as the error shows it: relative to the directory the command ran in
    when inside it."""

    args: tuple[str, ...]
    fragments: tuple[str, ...]
    setup: Callable[[Context], Target] | None = None
    backend: str = "sqlite"
    in_process: bool = False


def case(
    id: str, args: str | tuple[str, ...], *fragments: str,
    setup: Callable[[Context], Target] | None = None,
    backend: str = "sqlite", in_process: bool = False,
) -> Any:
    words = tuple(args.split()) if isinstance(args, str) else args
    return pytest.param(Case(words, fragments, setup, backend, in_process), id=id)


CASES = [
    # -- init ------------------------------------------------------------------------------------
    case("init-already-initialised", "init", "is already initialised", "delete it first"),
    case("init-blueprint-name-with-slash", "init", "invalid app label 'blog/posts'",
         setup=fresh_project(blueprint_names={"blog": "blog/posts"})),
    case("init-register-app-dotdot-label", "init", "invalid app label '../billing'",
         setup=register_app_label("../billing")),
    case("init-invalid-default-app", "init", "invalid default app label 'main app'",
         setup=fresh_project(config={"ROLLBACK_DEFAULT_APP": "main app"}), in_process=True),
    case("init-migrations-root-under-a-file", ("-d", "{root}/notes.txt/migrations", "init"),
         "the migrations folder notes.txt/migrations is inside notes.txt, which is a file",
         setup=migrations_root_under_a_file),
    # -- makemigrations, migrate, revision, merge -------------------------------------------------
    case("makemigrations-live-database-behind", "makemigrations --database live",
         "the database is behind", "1 migration is not applied", in_process=True),
    case("makemigrations-check-live-database-behind", "makemigrations --check --database live",
         "the database is behind", "leave out --database live", in_process=True),
    case("makemigrations-empty-without-app", "makemigrations --empty", "--empty needs the apps to create a migration for", in_process=True),
    case("makemigrations-app-with-two-heads", "makemigrations", "app 'blog' has 2 heads",
         "flask db merge blog", setup=two_heads, in_process=True),
    case("migrate-app-with-path-separator", "migrate --app blog/../accounts",
         "invalid app label 'blog/../accounts'"),
    case("revision-several-apps-no-app", "revision -m note", "several apps (accounts, blog)",
         "--app"),
    case("merge-single-head", "merge blog", "app 'blog' has a single head", in_process=True),
    # -- upgrade: target syntax ----------------------------------------------------------------------
    case("upgrade-double-at", "upgrade blog@@", "no migration in app 'blog' matches '@'"),
    case("upgrade-plus-not-a-number", "upgrade blog@+x", "no migration in app 'blog' matches '+x'"),
    case("upgrade-at-without-app", "upgrade @-1", "invalid app label ''"),
    case("upgrade-app-at-nothing", "upgrade blog@", "bad target 'blog@'", in_process=True),
    case("upgrade-word-after-heads", "upgrade heads extra", "unexpected 'extra' after 'heads'", in_process=True),
    case("upgrade-lock-timeout-not-a-number", "upgrade --lock-timeout soon",
         "'soon' is not a valid float"),
    case("upgrade-negative-lock-timeout", "upgrade --lock-timeout -1", "lock timeout",
         "zero or more", "-1"),
    case("deploy-nan-lock-timeout", "deploy --lock-timeout nan", "lock timeout", "nan", in_process=True),
    # -- upgrade: what the target names ----------------------------------------------------------------
    case("upgrade-unknown-app", "upgrade nope@head", "unknown app 'nope'", "accounts, blog"),
    case("upgrade-ambiguous-prefix", "upgrade abc", "'abc' is ambiguous", "abc111", "abc222"),
    case("upgrade-more-than-pending", "upgrade blog@+5", "only 1 pending migration, not 5", in_process=True),
    case("upgrade-to-an-older-revision", "upgrade accounts@abc111", "is below app 'accounts'",
         "flask db downgrade accounts@abc111"),
    case("upgrade-minus-one", "upgrade -1", "goes down", in_process=True),
    # -- downgrade ------------------------------------------------------------------------------------
    case("downgrade-to-a-newer-revision", "downgrade blog@def333",
         "blog.0002_add_post_body is not applied"),
    case("downgrade-plus-one", "downgrade +1", "goes up", in_process=True),
    case("downgrade-unknown-revision", "downgrade zz999", "no app or migration matches 'zz999'"),
    case("downgrade-would-cascade", "downgrade accounts zero", "blog.0001_initial", "--cascade"),
    case("downgrade-irreversible-step", "downgrade blog@-1", "cannot downgrade",
         "blog.0003_audit", setup=irreversible_applied, in_process=True),
    # -- stamp -----------------------------------------------------------------------------------------
    case("stamp-without-target", "stamp", "stamp needs a target"),
    # -- looking -------------------------------------------------------------------------------------------
    case("showmigrations-dotted-label", "showmigrations blog.posts", "invalid app label 'blog.posts'", in_process=True),
    case("sqlmigrate-unknown-revision", "sqlmigrate blog zz999",
         "no migration in app 'blog' matches 'zz999'"),
    case("sqlmigrate-revision-of-another-app", "sqlmigrate accounts abc222",
         "no migration in app 'accounts' matches 'abc222'", in_process=True),
    case("show-ambiguous-name", "show 0001", "'0001' is ambiguous", "accounts.0001_initial",
         "blog.0001_initial"),
    case("edit-unknown-revision", "edit zz999", "no app or migration matches 'zz999'", in_process=True),
    case("history-unknown-range", "history -r zz111:yy222", "no app or migration matches 'zz111'"),
    # -- the lock --------------------------------------------------------------------------------------
    case("unlock-sqlite-held", "unlock --yes", "the migration lock is held by otherhost/4242",
         "stop that process", setup=sqlite_lock_held),
    case("unlock-needs-yes", "unlock", "unlock needs confirmation: re-run with --yes",
         setup=table_lock_left, in_process=True),
    case("upgrade-lock-held", "upgrade --lock-timeout 0", "could not take the migration lock within 0s",
         "otherhost/4242", setup=sqlite_lock_held),
    # -- deploys and rollback ------------------------------------------------------------------------
    case("rollback-without-deploys", "rollback --yes", "there is no deploy to roll back"),
    case("rollback-unknown-deploy", "rollback 42 --yes", "no deploy with id 42", in_process=True),
    # -- a broken migrations folder -------------------------------------------------------------------
    case("upgrade-missing-migrations-folder", "upgrade", "no migrations folder at migrations (",  # relative to cwd
         "flask db init", setup=missing_migrations_folder),
    case("upgrade-file-with-syntax-error", "upgrade", "migration file {file} has a syntax error at line 3",
         setup=broken_file("0003_broken.py", "revision = 'bad555'\ndown_revision = 'def333'\ndef upgrade(:\n")),
    case("showmigrations-file-without-revision", "showmigrations", "migration file {file} declares no revision",
         setup=broken_file("0003_broken.py", "down_revision = 'def333'\n\ndef upgrade():\n    pass\n"), in_process=True),
    case("current-revision-id-with-path", "current", "migration file {file}:", "invalid revision '../../evil'",
         setup=broken_file("0003_broken.py", "revision = '../../evil'\ndown_revision = 'def333'\n"), in_process=True),
    case("upgrade-down-revision-nowhere", "upgrade", "migration file migrations/blog/0003_broken.py has down_revision 'nowhere999'",
         setup=broken_file("0003_broken.py", "revision = 'bad555'\ndown_revision = 'nowhere999'\n")),
    case("check-depends-on-nowhere", "check", "migration file migrations/blog/0003_broken.py depends on 'nowhere999'",
         setup=broken_file("0003_broken.py",
                           "revision = 'bad555'\ndown_revision = 'def333'\ndepends_on = 'nowhere999'\n")),
    case("heads-file-with-null-bytes", "heads", "migration file {file} has a syntax error", "null bytes",
         setup=broken_file("0003_broken.py", b"revision = 'bad555'\x00\n"), in_process=True),
    # Only the migrations a command runs or renders are imported: the broken one is named.
    case("sqlmigrate-file-raising-on-import", "sqlmigrate blog bad555", "migration file {file} (line 3)",
         "failed to import: RuntimeError: half-written",
         setup=broken_file("0003_broken.py",
                           "revision = 'bad555'\ndown_revision = 'def333'\nraise RuntimeError('half-written')\n"), in_process=True),
    case("heads-down-revision-in-another-app", "heads", "migration {file} has down_revision 'abc111' from app 'accounts'",
         setup=broken_file("0003_broken.py", "revision = 'bad555'\ndown_revision = 'abc111'\n"), in_process=True),
    case("check-duplicate-revision-ids", "check", "revision id 'acc444' is used by two files",
         "two files: migrations/accounts/0002_add_name.py and migrations/blog/0003_copy.py",
         setup=duplicate_revision),
    case("deploy-depends-on-cycle", "deploy", "cycle", "abc111", "def333",
         setup=edited_file("0001_initial.py", "accounts", "depends_on = None", "depends_on = 'def333'")),
    case("upgrade-database-at-unknown-revision", "upgrade", "migrated by newer code than this: it is at gone999",
         "deploy the code that has this migration (the release that applied it)", setup=database_at_unknown_revision, in_process=True),
    # -- the database ----------------------------------------------------------------------------------
    case("predeploy-database-in-missing-folder", "predeploy", "cannot connect to the database",
         "{database}", setup=database_in_missing_folder),
    case("upgrade-read-only-database", "upgrade", "readonly database", setup=read_only_database),
    case("stamp-read-only-uri", "stamp heads", "database error", "readonly database",
         setup=read_only_uri),
    # -- configuration -----------------------------------------------------------------------------------
    case("config-lock-timeout-typo", "upgrade", "unknown config key ROLLBACK_LOCK_TIMOUT",
         "did you mean ROLLBACK_LOCK_TIMEOUT?", setup=with_config(ROLLBACK_LOCK_TIMOUT=5)),
    case("config-deploy-table-typo", "deploys", "unknown config key ROLLBACK_DEPLOYS_TABLE",
         "did you mean ROLLBACK_DEPLOY_TABLE?", setup=with_config(ROLLBACK_DEPLOYS_TABLE="d"), in_process=True),
    case("config-negative-lock-timeout", "deploy", "ROLLBACK_LOCK_TIMEOUT", "zero or more", "-5",
         setup=with_config(ROLLBACK_LOCK_TIMEOUT=-5)),
    case("config-lock-timeout-not-a-number", "downgrade", "ROLLBACK_LOCK_TIMEOUT", "'soon'",
         setup=with_config(ROLLBACK_LOCK_TIMEOUT="soon"), in_process=True),
    case("config-lock-mode-typo", "unlock", "ROLLBACK_LOCK must be 'auto' or 'table', not 'tables'",
         setup=with_config(ROLLBACK_LOCK="tables"), in_process=True),
    case("config-app-directories-not-a-dict", "showmigrations", "ROLLBACK_APP_DIRECTORIES must be a dict",
         setup=with_config(ROLLBACK_APP_DIRECTORIES="migrations/blog")),
    case("config-app-directories-dotdot-label", "upgrade", "ROLLBACK_APP_DIRECTORIES",
         "invalid app label '../evil'", setup=with_config(ROLLBACK_APP_DIRECTORIES={"../evil": "evil"}), in_process=True),
    case("config-app-directories-unknown-label", "makemigrations", "ROLLBACK_APP_DIRECTORIES",
         "'acounts'", "did you mean 'accounts'?",
         setup=with_config(ROLLBACK_APP_DIRECTORIES={"acounts": "acc"}), in_process=True),
    case("config-directory-not-a-path", "current", "ROLLBACK_DIRECTORY must be a folder path, not 5",
         setup=with_config(ROLLBACK_DIRECTORY=5), in_process=True),
    case("config-empty-version-table", "current", "ROLLBACK_VERSION_TABLE must be a table name",
         setup=with_config(ROLLBACK_VERSION_TABLE=""), in_process=True),
    case("config-version-table-is-an-app-table", "current", "database error", "users.version_num",
         setup=with_config(ROLLBACK_VERSION_TABLE="users"), in_process=True),
    # -- PostgreSQL ----------------------------------------------------------------------------------------
    case("pg-wrong-password", "upgrade", "cannot connect", "password authentication failed",
         setup=pg_wrong_password, backend="postgresql"),
    case("pg-unreachable-port", "deploy", "cannot connect", "127.0.0.1:{port}",
         setup=pg_unreachable, backend="postgresql"),
    case("pg-missing-database", "showmigrations", "cannot connect", 'database "{name}" does not exist',
         setup=pg_missing_database, backend="postgresql", in_process=True),
    case("pg-lock-held", "deploy --lock-timeout 0", "could not take the migration lock within 0s",
         setup=pg_lock_held, backend="postgresql", in_process=True),
    case("pg-rollback-needs-confirmation", "rollback", "rollback needs confirmation", "--yes",
         backend="postgresql", in_process=True),
    case("pg-rollback-deploy-already-rolled-back", "rollback 1 --yes", "deploy 1 was already rolled back",
         backend="postgresql", in_process=True),
    case("pg-config-statement-timeout", "upgrade", "ROLLBACK_PG_STATEMENT_TIMEOUT", "'ten minutes'",
         setup=with_config(ROLLBACK_PG_STATEMENT_TIMEOUT="ten minutes"), backend="postgresql", in_process=True),
]


def fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_cleanly(case: Case, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    base = request.getfixturevalue("pg_base" if case.backend == "postgresql" else "sqlite_base")
    context = Context(base, tmp_path, request)
    target = case.setup(context) if case.setup else context.target()
    project = target.project
    args = tuple(fill(word, target.values) for word in case.args)
    ran_in = Path.cwd() if case.in_process else project.root
    shown = {
        key: os.path.relpath(value, ran_in) if key == "file" and Path(value).is_relative_to(ran_in) else value
        for key, value in target.values.items()
    }
    fragments = [fill(fragment, shown) for fragment in case.fragments]

    before, files_before = snapshot(target.watch), folder_state(project)
    code, output = (run_in_process if case.in_process else run_subprocess)(project, args)
    shown = f"flask db {' '.join(args)} ->  exit {code}\n{output}"

    assert code != 0, shown
    assert "Traceback" not in output, shown
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, shown
    for fragment in fragments:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
    for password in {SECRET, sa.engine.make_url(project.url).password, sa.engine.make_url(target.watch).password}:
        if password:
            assert password not in output, f"the password was printed:\n{shown}"
    assert snapshot(target.watch) == before, f"{shown}\nthe database changed"
    assert folder_state(project) == files_before, f"{shown}\nthe migrations folder changed"
    for check in target.after:
        check()
