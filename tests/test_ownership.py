"""Which app owns a model, and why (issue 9): blueprints in the Flask app's own root package,
two blueprints claiming one package, association tables across apps, ``flask db apps``,
``flask db rename-app``, and reusable apps (plugins) that ship their own migrations.

Every test builds a real Flask project on disk (``tests/projects.py``), runs real ``flask db``
commands and looks at what they did: folders, migration files, tables, rows, exit codes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import uuid
import zipfile
from pathlib import Path

import pytest
from click.testing import Result

from tests.projects import (
    ACCOUNTS_MODELS,
    BLOG_MODELS,
    Project,
    fingerprint,
    folder_state,
    revision_of,
    write_migration,
)
from tests.test_apps import (
    OWN_TABLES,
    app_folders,
    app_tables,
    blueprint,
    columns,
    depends_on,
    make_project,
    one_line_error,
    showmigrations,
)

MODELS_HEADER = '''
from sqlalchemy.orm import Mapped, mapped_column
from . import db
'''

#: Models of the Flask app's own root package (``proj/models.py``).
ROOT_MODELS = MODELS_HEADER + '''

class User(db.Model):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(db.String(120))


class Setting(db.Model):
    __tablename__ = "settings"
    id: Mapped[int] = mapped_column(primary_key=True)
'''

#: ``proj/cli.py``: a blueprint for commands, with one model of its own in the same module.
CLI_MODULE = '''
from flask import Blueprint
from sqlalchemy.orm import Mapped, mapped_column

from . import db
from . import models  # noqa: F401 - the app's models, imported by the commands

bp = Blueprint("cli", __name__, cli_group="jobs")


class JobRun(db.Model):
    __tablename__ = "job_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
'''

MODULE_BLUEPRINT = '''
from flask import Blueprint

bp = Blueprint("{name}", __name__)
'''


def db(project: Project, *args: str, code: int = 0) -> Result:
    """``flask db ARGS`` in-process; exits with ``code``, never escapes an exception."""
    result = project.db(*args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"flask db {' '.join(args)} raised:\n{result.output}") from result.exception
    assert result.exit_code == code, f"flask db {' '.join(args)} -> {result.exit_code}:\n{result.output}"
    assert "Traceback" not in result.output
    return result


def apps_json(project: Project) -> dict[str, dict]:  # type: ignore[type-arg]
    """``flask db apps --json`` by label."""
    data = json.loads(db(project, "apps", "--json").output)
    return {app["app"]: app for app in data["apps"]}


def rules(app: dict) -> dict[str, str]:  # type: ignore[type-arg]
    return {table["table"]: table["rule"] for table in app["tables"]}


def apps_table(output: str) -> list[dict[str, str]]:
    """``flask db apps`` parsed by the header's column positions; continuation rows (the
    app's next tables) inherit the app's cells."""
    lines = output.rstrip("\n").splitlines()
    header = lines[0]
    names = header.split()
    starts = [header.index(name) for name in names]
    rows = []
    for line in lines[1:]:
        bounds = list(zip(starts, starts[1:] + [None]))
        cells = {name: line[start:end].strip() for name, (start, end) in zip(names, bounds)}
        if not cells["app"]:
            cells.update({k: rows[-1][k] for k in ("app", "source", "folder", "read-only")})
        rows.append(cells)
    return rows


def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


# -- 1. blueprints made in a module of the Flask app's root package ---------------------------------


def test_blueprint_in_a_module_of_the_root_package_leaves_its_models_to_main(
    tmp_path: Path, db_url: str
) -> None:
    """The issue's ``app/cli.py``: its blueprint claims ``proj.cli`` alone; ``proj/models.py``
    goes to the default app, and the model written in ``cli.py`` itself to ``cli``."""
    project = make_project(tmp_path, db_url)
    project.write("models.py", ROOT_MODELS)
    project.write("cli.py", CLI_MODULE)
    project.add_blueprint("accounts", ACCOUNTS_MODELS.replace('"users"', '"profiles"'))
    project.set_factory(["cli", "accounts"])

    db(project, "init")
    db(project, "makemigrations")
    assert app_folders(project) == {"main", "cli", "accounts"}
    assert app_tables(project.migrations / "main") == {"0001_initial.py": {"users", "settings"}}
    assert app_tables(project.migrations / "cli") == {"0001_initial.py": {"job_runs"}}
    assert app_tables(project.migrations / "accounts") == {"0001_initial.py": {"profiles"}}
    db(project, "upgrade")
    assert project.tables() == {"users", "settings", "job_runs", "profiles", *OWN_TABLES}

    apps = apps_json(project)
    assert apps["main"]["source"] == "default" and apps["main"]["claims"] is None
    assert rules(apps["main"]) == {"settings": "default app", "users": "default app"}
    assert apps["cli"]["claims"] == f"module {project.package}.cli"
    assert rules(apps["cli"]) == {"job_runs": "blueprint package"}
    assert apps["accounts"]["claims"] == f"package {project.package}.accounts"
    # main's tables can be reverted alone: nothing of main was given to cli.
    db(project, "downgrade", "main", "zero")
    assert project.tables() == {"job_runs", "profiles", *OWN_TABLES}


def test_seven_module_level_blueprints_claim_nothing_of_the_root_package(tmp_path: Path) -> None:
    """The large app of the issue: seven blueprints in modules of the root package used to
    claim it all, the first one registered silently winning. Now none claims it."""
    project = make_project(tmp_path, sqlite(tmp_path))
    names = ["views", "auth", "api", "admin", "errors", "health", "webhooks"]
    for name in names:
        project.write(f"{name}.py", MODULE_BLUEPRINT.format(name=name))
    project.write("models.py", ROOT_MODELS)
    project.add_blueprint("blog", BLOG_MODELS)
    project.set_factory([*names, "blog"], extra_modules=["models"])

    db(project, "init")
    db(project, "makemigrations")
    assert app_folders(project) == {"main", "blog"}
    assert app_tables(project.migrations / "main") == {"0001_initial.py": {"users", "settings"}}
    assert app_tables(project.migrations / "blog") == {"0001_initial.py": {"posts"}}
    apps = apps_json(project)
    assert list(apps) == ["blog", "main"]
    assert rules(apps["main"]) == {"settings": "default app", "users": "default app"}
    db(project, "upgrade")
    assert project.tables() == {"users", "settings", "posts", *OWN_TABLES}


# -- 2. two blueprints claiming one package -----------------------------------------------------------

BLOG_VIEWS = '''
from flask import Blueprint

bp = Blueprint("blog", __name__)

from . import models  # noqa: E402,F401
'''

BLOG_ADMIN = '''
from flask import Blueprint

bp = Blueprint("blog_admin", __name__, url_prefix="/admin")
'''


def two_blueprints_in_blog(project: Project, models: str = BLOG_MODELS) -> None:
    """``proj/blog/views.py`` and ``proj/blog/admin.py`` each make a blueprint: both claim
    the ``proj.blog`` package."""
    project.write("blog/__init__.py", "")
    project.write("blog/views.py", BLOG_VIEWS)
    project.write("blog/admin.py", BLOG_ADMIN)
    project.write("blog/models.py", models)
    project.add_blueprint("accounts", ACCOUNTS_MODELS)


def test_two_blueprints_claiming_a_package_with_models_is_an_error(tmp_path: Path) -> None:
    project = make_project(tmp_path, sqlite(tmp_path))
    two_blueprints_in_blog(project)
    project.set_factory(["accounts", "blog.views", "blog.admin"])
    package = f"{project.package}.blog"
    for args in (("init",), ("apps",)):
        one_line_error(
            project.db(*args),
            f"blueprint 'blog' (created in {package}.views)",
            f"blueprint 'blog_admin' (created in {package}.admin)",
            f"both claim package {package}, which holds table 'posts' (Post)",
            "__app_label__ = 'blog' on them",
            f"rollback.register_app('blog', import_name='{package}')",
        )
    assert not project.migrations.exists()


@pytest.mark.parametrize("fix", ["app_label", "register_app"])
def test_the_fixes_the_error_names_work(tmp_path: Path, fix: str) -> None:
    project = make_project(tmp_path, sqlite(tmp_path))
    if fix == "app_label":
        two_blueprints_in_blog(project, BLOG_MODELS.replace(
            '__tablename__ = "posts"', '__tablename__ = "posts"\n    __app_label__ = "blog"'
        ))
        project.set_factory(["accounts", "blog.views", "blog.admin"])
    else:
        two_blueprints_in_blog(project)
        project.write("apps.py", '''
            from . import rollback

            rollback.register_app("blog", import_name=__package__ + ".blog")
            ''')
        project.set_factory(["accounts", "blog.views", "blog.admin"], extra_modules=["apps"])
    db(project, "init")
    db(project, "makemigrations")
    assert app_folders(project) == {"accounts", "blog"}
    assert app_tables(project.migrations / "blog") == {"0001_initial.py": {"posts"}}
    expected = {"app_label": "explicit label", "register_app": "registered package"}[fix]
    assert rules(apps_json(project)["blog"]) == {"posts": expected}


def test_two_blueprints_claiming_a_package_without_models_is_fine(tmp_path: Path) -> None:
    """Nothing at stake: the package holds no models, so nobody has to win."""
    project = make_project(tmp_path, sqlite(tmp_path))
    project.write("pages/__init__.py", "")
    project.write("pages/public.py", MODULE_BLUEPRINT.format(name="pages"))
    project.write("pages/private.py", MODULE_BLUEPRINT.format(name="private_pages"))
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.set_factory(["accounts", "pages.public", "pages.private"])
    db(project, "init")
    db(project, "makemigrations")
    assert app_folders(project) == {"accounts"}
    assert list(apps_json(project)) == ["accounts"]


# -- 3. association tables across apps ----------------------------------------------------------------

#: blog defines post_likes (users x posts) at module level ...
BLOG_WITH_LIKES = BLOG_MODELS + '''

post_likes = db.Table(
    "post_likes",
    db.Column("user_id", db.ForeignKey("users.id"), primary_key=True),
    db.Column("post_id", db.ForeignKey("posts.id"), primary_key=True),
)
'''

#: ... and accounts imports it for a relationship: two modules hold it, one assigns it.
ACCOUNTS_WITH_LIKED = ACCOUNTS_MODELS + '''
from ..blog.models import post_likes  # noqa: E402


class Reader(db.Model):
    __tablename__ = "readers"
    id: Mapped[int] = mapped_column(db.ForeignKey("users.id"), primary_key=True)
    liked = db.relationship("Post", secondary=post_likes, viewonly=True)
'''

#: The root package defines a table across both apps: the default app owns that module.
ROOT_FEATURED = MODELS_HEADER + '''

featured = db.Table(
    "featured",
    db.Column("user_id", db.ForeignKey("users.id"), primary_key=True),
    db.Column("post_id", db.ForeignKey("posts.id"), primary_key=True),
)
'''


def test_association_table_across_apps_goes_to_its_defining_module(tmp_path: Path, db_url: str) -> None:
    project = make_project(tmp_path, db_url)
    project.add_blueprint("accounts", ACCOUNTS_WITH_LIKED)
    project.add_blueprint("blog", BLOG_WITH_LIKES)
    project.write("models.py", ROOT_FEATURED)
    project.set_factory(["accounts", "blog"], extra_modules=["models"])

    db(project, "init")
    db(project, "makemigrations")
    assert app_tables(project.migrations / "accounts") == {"0001_initial.py": {"users", "readers"}}
    assert app_tables(project.migrations / "blog") == {"0001_initial.py": {"posts", "post_likes"}}
    assert app_tables(project.migrations / "main") == {"0001_initial.py": {"featured"}}
    accounts = revision_of(project, "accounts", "0001")
    blog = revision_of(project, "blog", "0001")
    assert accounts in depends_on(project.migrations / "blog" / "0001_initial.py")
    main_depends = depends_on(project.migrations / "main" / "0001_initial.py")
    assert accounts in main_depends and blog in main_depends

    apps = apps_json(project)
    likes = next(t for t in apps["blog"]["tables"] if t["table"] == "post_likes")
    assert likes["rule"] == "defining module"
    assert f"defined in {project.package}.blog.models" in likes["reason"]
    featured = apps["main"]["tables"][0]
    assert featured["rule"] == "defining module"
    assert "foreign keys point into apps accounts, blog" in featured["reason"]

    db(project, "upgrade")
    assert {"users", "readers", "posts", "post_likes", "featured"} <= project.tables()
    db(project, "downgrade", "main", "zero")
    assert "featured" not in project.tables() and "post_likes" in project.tables()


# -- 4. flask db apps ---------------------------------------------------------------------------------

#: Every rule at once: explicit labels (class and Table info), a blueprint package, a
#: registered package, a defining module, foreign keys, the default app.
MIXED_BLOG = BLOG_MODELS + '''

class Invoice(db.Model):
    __tablename__ = "invoices"
    __app_label__ = "billing"
    id: Mapped[int] = mapped_column(primary_key=True)


post_tags = db.Table("post_tags", db.Column("post_id", db.ForeignKey("posts.id"), primary_key=True))
audit = db.Table("audit", db.Column("id", db.Integer, primary_key=True), info={"app": "billing"})
'''

MIXED_ROOT = MODELS_HEADER + '''

class Setting(db.Model):
    __tablename__ = "settings"
    id: Mapped[int] = mapped_column(primary_key=True)


follows = db.Table(
    "follows",
    db.Column("follower_id", db.ForeignKey("users.id"), primary_key=True),
    db.Column("followed_id", db.ForeignKey("users.id"), primary_key=True),
)
'''

SHOP_MODELS = '''
from sqlalchemy.orm import Mapped, mapped_column
from .. import db


class Product(db.Model):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
'''


def mixed_project(tmp_path: Path) -> Project:
    project = make_project(tmp_path, sqlite(tmp_path))
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.add_blueprint("blog", MIXED_BLOG)
    project.write("models.py", MIXED_ROOT)
    project.write("shop/__init__.py", "from . import models  # noqa: F401\n")
    project.write("shop/models.py", SHOP_MODELS)
    project.write("apps.py", '''
        from . import rollback

        rollback.register_app("shop", import_name=__package__ + ".shop")
        ''')
    project.set_factory(["accounts", "blog"], extra_modules=["models", "shop", "apps"])
    # An app whose models are gone but whose migrations stay.
    (project.migrations / "legacy").mkdir(parents=True)
    write_migration(
        project, "legacy", "0001_initial.py", "legacy0001", None,
        'op.create_table("old_things", sa.Column("id", sa.Integer, primary_key=True))',
        'op.drop_table("old_things")',
    )
    return project


def test_apps_shows_source_folder_tables_and_the_rule_for_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = mixed_project(tmp_path)
    monkeypatch.chdir(project.root)  # folders are shown relative to where the command runs
    package = project.package
    rows = apps_table(db(project, "apps").output)
    header = db(project, "apps").output.splitlines()[0]
    assert header.split() == ["app", "source", "folder", "read-only", "table", "rule", "why"]
    found = {(row["app"], row["table"]): row for row in rows}
    assert {(app, row["source"], row["folder"], row["read-only"]) for (app, _), row in found.items()} == {
        ("shop", "registered", "migrations/shop", "no"),
        ("accounts", "blueprint", "migrations/accounts", "no"),
        ("blog", "blueprint", "migrations/blog", "no"),
        ("main", "default", "migrations/main", "no"),
        ("billing", "explicit label", "migrations/billing", "no"),
        ("legacy", "folder-only", "migrations/legacy", "no"),
    }
    assert {key: row["rule"] for key, row in found.items()} == {
        ("shop", "products"): "registered package",
        ("accounts", "users"): "blueprint package",
        ("accounts", "follows"): "foreign keys",
        ("blog", "posts"): "blueprint package",
        ("blog", "post_tags"): "defining module",
        ("main", "settings"): "default app",
        ("billing", "audit"): "explicit label",
        ("billing", "invoices"): "explicit label",
        ("legacy", "-"): "",
    }
    assert found[("blog", "posts")]["why"] == (
        f"Post is defined in {package}.blog.models, inside package {package}.blog of blueprint "
        f"'blog' (created in {package}.blog)"
    )
    assert found[("accounts", "follows")]["why"] == (
        f"its foreign keys point into app 'accounts' only; defined in {package}.models, outside "
        "every app's package"
    )
    assert found[("billing", "invoices")]["why"] == "__app_label__ = 'billing' on Invoice"
    # The app's cells are written once, on its first row.
    lines = db(project, "apps").output.splitlines()
    assert sum(line.startswith("accounts ") for line in lines) == 1

    data = json.loads(db(project, "apps", "--json").output)["apps"]
    assert [app["app"] for app in data] == ["accounts", "blog", "shop", "main", "billing", "legacy"]
    shop = data[2]
    assert shop == {
        "app": "shop",
        "bind": None,
        "source": "registered",
        "claims": f"package {package}.shop",
        "folder": "migrations/shop",
        "directory": str((project.migrations / "shop").resolve()),
        "folder_origin": "default",
        "read_only": False,
        "tables": [{
            "table": "products",
            "rule": "registered package",
            "reason": f"Product is defined in {package}.shop.models, inside package {package}.shop of "
                      "register_app('shop')",
        }],
    }
    assert data[-1]["tables"] == [] and data[-1]["source"] == "folder-only"

    # What apps says is what makemigrations does.
    db(project, "init")
    db(project, "upgrade")  # legacy's migration: makemigrations wants the database current
    db(project, "makemigrations")
    for app in data:
        created = set().union(*app_tables(project.migrations / app["app"]).values())
        if app["app"] == "legacy":
            assert created == {"old_things"}
        else:
            assert created == {table["table"] for table in app["tables"]}


def test_apps_outside_the_working_directory_shows_absolute_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = mixed_project(tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    data = json.loads(db(project, "apps", "--json").output)["apps"]
    assert [app["folder"] for app in data] == [
        str((project.migrations / label).resolve())
        for label in ("accounts", "blog", "shop", "main", "billing", "legacy")
    ]


# -- 5. rename-app --------------------------------------------------------------------------------------

BLOG_NULLABLE_TITLE = BLOG_MODELS.replace("title: Mapped[str]", "title: Mapped[str | None]")
BLOG_WITHOUT_TITLE = BLOG_NULLABLE_TITLE.replace(
    "    title: Mapped[str | None] = mapped_column(db.String(200))\n", ""
)
BLOG_WITH_SUBTITLE = BLOG_WITHOUT_TITLE + "    subtitle: Mapped[str | None] = mapped_column(db.String(80))\n"


AUDIT_MODELS = MODELS_HEADER + '''

class Audit(db.Model):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(primary_key=True)
'''


def log_apps(project: Project) -> dict[str, int]:
    return dict(project.query("SELECT app, count(*) FROM rollback_log GROUP BY app"))


def rename_fixture(tmp_path: Path, url: str) -> tuple[Project, str]:
    """accounts + blog applied; blog's 0002 dropped posts.title with --archive; main's hand-written
    0001 depends on the ``blog`` branch; deploy 1 applied blog 0003 and main 0001.
    Returns the project and the archive's name."""
    project = make_project(tmp_path, url)
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.add_blueprint("blog", BLOG_NULLABLE_TITLE)
    project.set_factory(["accounts", "blog"])
    db(project, "init")
    db(project, "makemigrations")
    db(project, "upgrade")
    project.query_write(
        "INSERT INTO users (id, email) VALUES (1, 'ann@example.com')",
        "INSERT INTO posts (id, title, author_id) VALUES (1, 'Hello', 1), (2, 'Again', 1)",
    )
    project.write("blog/models.py", BLOG_WITHOUT_TITLE)
    db(project, "makemigrations")
    archived = db(project, "upgrade", "--archive").output
    (archive,) = re.findall(r"into (\S+) before", archived)

    project.write("blog/models.py", BLOG_WITH_SUBTITLE)
    db(project, "makemigrations")
    # The default app's first migration, written by hand, depends on the blog branch by label.
    project.write("models.py", AUDIT_MODELS)
    project.set_factory(["accounts", "blog"], extra_modules=["models"])
    (project.migrations / "main").mkdir()
    write_migration(
        project, "main", "0001_audit.py", "main0001", None,
        'op.create_table("audit", sa.Column("id", sa.Integer, primary_key=True))',
        'op.drop_table("audit")',
        header=f'branch_labels = ("main",)\ndepends_on = ("blog", "{revision_of(project, "accounts", "0001")}")',
    )
    db(project, "deploy", "--label", "v1")
    return project, archive


def test_rename_app_end_to_end(tmp_path: Path, db_url: str) -> None:
    project, archive = rename_fixture(tmp_path, db_url)
    revisions = {number: revision_of(project, "blog", number) for number in ("0001", "0002", "0003")}
    versions = project.query("SELECT version_num FROM alembic_version ORDER BY 1")
    logged = log_apps(project)
    assert logged["blog"] == 3

    # The code still names blog: renaming now would leave posts in an app without migrations.
    before = (fingerprint(project), folder_state(project))
    one_line_error(
        project.db("rename-app", "blog", "journal"),
        "the code still gives app 'blog' table posts",
        "rename blueprint 'blog' to 'journal' or set __app_label__ = 'journal' on its models",
    )
    assert (fingerprint(project), folder_state(project)) == before

    # The blueprint is renamed; until rename-app runs, blog is only a folder.
    blueprint(project, "blog", "journal", BLOG_WITH_SUBTITLE)
    apps = apps_json(project)
    assert apps["blog"]["source"] == "folder-only" and apps["blog"]["tables"] == []
    assert rules(apps["journal"]) == {"posts": "blueprint package"}

    dry = db(project, "rename-app", "blog", "journal", "--dry-run").output.splitlines()
    assert dry == [
        f"Would move {project.migrations / 'blog'} to {project.migrations / 'journal'}",
        f"Would rewrite branch_labels in {project.migrations / 'journal' / '0001_initial.py'}",
        f"Would rewrite depends_on in {project.migrations / 'main' / '0001_audit.py'}",
        "Would relabel 3 applied-log rows, 1 archive, 1 deploy record",
    ]
    assert (fingerprint(project), folder_state(project)) == before

    done = db(project, "rename-app", "blog", "journal").output.splitlines()
    assert done[-1] == "Renamed app 'blog' to 'journal'; revision ids are unchanged."
    assert not (project.migrations / "blog").exists()
    assert project.files("journal") == [
        "0001_initial.py", "0002_remove_posts_title.py", "0003_add_posts_subtitle.py"
    ]
    assert {number: revision_of(project, "journal", number) for number in revisions} == revisions
    assert "branch_labels: str | Sequence[str] | None = ('journal',)" in (
        project.migrations / "journal" / "0001_initial.py"
    ).read_text()
    assert 'depends_on = ("journal", ' in (project.migrations / "main" / "0001_audit.py").read_text()
    assert project.query("SELECT version_num FROM alembic_version ORDER BY 1") == versions
    assert log_apps(project) == {"journal": logged["blog"], "accounts": logged["accounts"], "main": 1}
    assert project.query("SELECT app, migration FROM rollback_archives") == [
        ("journal", "journal.0002_remove_posts_title")
    ]
    ((before_heads, after_heads),) = project.query("SELECT heads_before, heads_after FROM rollback_deploys")
    assert set(json.loads(before_heads)) == set(json.loads(after_heads)) == {"accounts", "journal", "main"}
    assert json.loads(after_heads)["journal"] == [revisions["0003"]]

    assert showmigrations(project) == {
        "accounts": [" [X] 0001_initial"],
        "journal": [" [X] 0001_initial", " [X] 0002_remove_posts_title", " [X] 0003_add_posts_subtitle"],
        "main": [" [X] 0001_audit"],
    }
    assert " journal.0002_remove_posts_title " in db(project, "archives").output
    # The deploy is rolled back under the new label ...
    assert db(project, "rollback", "--yes", "-q").output.strip() == "Rolled back deploy 1: reverted 2 migrations."
    assert "subtitle" not in columns(project, "posts") and "audit" not in project.tables()
    # ... a downgrade by the new label brings the archived column back, and restore fills it.
    db(project, "downgrade", "journal")
    db(project, "restore", archive)
    assert project.query("SELECT id, title FROM posts ORDER BY id") == [(1, "Hello"), (2, "Again")]
    assert showmigrations(project)["journal"] == [
        " [X] 0001_initial", " [ ] 0002_remove_posts_title", " [ ] 0003_add_posts_subtitle"
    ]
    # New migrations of the renamed app land in its folder, on its branch.
    db(project, "upgrade", "--allow-data-loss")
    project.write("blog/models.py", BLOG_WITH_SUBTITLE + "    views: Mapped[int | None] = mapped_column()\n")
    db(project, "makemigrations")
    assert project.files("journal")[-1] == "0004_add_posts_views.py"
    db(project, "upgrade")
    assert log_apps(project).get("blog") is None


def test_rename_app_keeps_checksums_and_relabels_another_environments_database(tmp_path: Path) -> None:
    """The applied files rename-app rewrote are not "edited after they ran"; a second database
    (staging, a teammate's) gets the renamed files with a deploy and only its records renamed."""
    project, _archive = rename_fixture(tmp_path, sqlite(tmp_path))
    staging = tmp_path / "staging.sqlite"
    shutil.copyfile(tmp_path / "db.sqlite", staging)
    blueprint(project, "blog", "journal", BLOG_WITH_SUBTITLE)
    db(project, "rename-app", "blog", "journal")
    checked = db(project, "predeploy").output
    assert "edited" not in checked

    project.url = f"sqlite:///{staging}"
    assert "edited after they ran" in db(project, "predeploy", code=1).output  # until relabelled
    folders = folder_state(project)
    dry = db(project, "rename-app", "blog", "journal", "--dry-run").output
    assert dry.splitlines() == ["Would relabel 3 applied-log rows, 1 archive, 1 deploy record"]
    done = db(project, "rename-app", "blog", "journal").output.splitlines()
    assert done == [
        "Relabelled 3 applied-log rows, 1 archive, 1 deploy record",
        "Renamed app 'blog' to 'journal'; revision ids are unchanged.",
    ]
    assert folder_state(project) == folders  # the files were already renamed
    assert log_apps(project).get("blog") is None
    assert showmigrations(project)["journal"] == [
        " [X] 0001_initial", " [X] 0002_remove_posts_title", " [X] 0003_add_posts_subtitle"
    ]
    assert "edited" not in db(project, "predeploy").output
    before = (fingerprint(project), folder_state(project))
    one_line_error(
        project.db("rename-app", "blog", "journal"),
        "the migrations already say 'journal' and this database has no record of 'blog'; nothing to rename",
    )
    assert (fingerprint(project), folder_state(project)) == before


REFUSALS = {
    "in_use_by_an_app": (("blog", "accounts"), "app label 'accounts' is in use: ", "declares branch label 'accounts'"),
    "in_use_as_a_folder": (("blog", "spare"), "app label 'spare' is in use: ", "spare already exists"),
    "invalid_new_label": (("blog", "my-journal"), "invalid new app label 'my-journal'"),
    "unknown_old_label": (("nope", "journal"), "unknown app 'nope'; known apps: accounts, blog, main"),
    "same_label": (("blog", "blog"), "app 'blog' is already called 'blog'"),
    "code_still_names_it": (("blog", "journal"), "the code still gives app 'blog' table posts"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_rename_app_refusals_change_nothing(tmp_path: Path, db_url: str, case: str) -> None:
    args, *expected = REFUSALS[case]
    project, _archive = rename_fixture(tmp_path, db_url)
    (project.migrations / "spare").mkdir()
    (project.migrations / "spare" / "notes.txt").write_text("not a migration\n")
    before = (fingerprint(project), folder_state(project))
    for dry_run in ((), ("--dry-run",)):
        one_line_error(project.db("rename-app", *args, *dry_run), *expected)
    assert (fingerprint(project), folder_state(project)) == before


def test_rename_app_refuses_a_label_the_database_still_knows(tmp_path: Path, db_url: str) -> None:
    """An app whose folder is gone but whose rows remain still holds its label."""
    project, _archive = rename_fixture(tmp_path, db_url)
    user = "`user`" if db_url.startswith("mysql") else '"user"'
    project.query_write("INSERT INTO rollback_log (app, revision, name, direction, fake, started_at, "
                        f"finished_at, duration_ms, sha256, host, {user}) SELECT 'journal', revision, name, "
                        f"direction, fake, started_at, finished_at, duration_ms, sha256, host, {user} "
                        "FROM rollback_log WHERE app = 'accounts'")
    blueprint(project, "blog", "journal", BLOG_WITH_SUBTITLE)
    before = (fingerprint(project), folder_state(project))
    one_line_error(
        project.db("rename-app", "blog", "journal"),
        "app label 'journal' is in use: the database has 1 applied-log row of an app called 'journal'",
    )
    assert (fingerprint(project), folder_state(project)) == before


def test_rename_app_of_a_configured_folder_renames_the_branch_in_place(tmp_path: Path) -> None:
    """The folder is not ``<root>/<label>``: it stays, once the config gives it to the new name."""
    project = make_project(tmp_path, sqlite(tmp_path))
    folder = project.package_dir / "blog" / "migrations_store"
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.add_blueprint("blog", BLOG_MODELS)
    project.set_factory(["accounts", "blog"], config={"ROLLBACK_APP_DIRECTORIES": {"blog": str(folder)}})
    db(project, "init")
    db(project, "makemigrations")
    db(project, "upgrade")

    blueprint(project, "blog", "journal", BLOG_MODELS)
    one_line_error(
        project.db("rename-app", "blog", "journal"),
        f"the migrations of 'blog' live in {folder}, which ROLLBACK_APP_DIRECTORIES gives to 'blog'",
    )
    project.set_factory(["accounts", "blog"], config={"ROLLBACK_APP_DIRECTORIES": {"journal": str(folder)}})
    output = db(project, "rename-app", "blog", "journal").output
    assert "Would move" not in output and "Moved" not in output
    assert sorted(p.name for p in folder.glob("*.py")) == ["0001_initial.py"]
    assert "('journal',)" in (folder / "0001_initial.py").read_text()
    assert showmigrations(project) == {"accounts": [" [X] 0001_initial"], "journal": [" [X] 0001_initial"]}
    project.write("blog/models.py", BLOG_MODELS + "    views: Mapped[int | None] = mapped_column()\n")
    db(project, "makemigrations")
    assert sorted(p.name for p in folder.glob("*.py")) == ["0001_initial.py", "0002_add_posts_views.py"]
    db(project, "upgrade")


# -- 6. reusable apps: packages that ship their migrations ---------------------------------------------

PLUGIN_INIT = '''
"""A reusable payments app: a blueprint, models on the host's db, and its own migrations."""
from flask import Blueprint

bp = Blueprint("payments", __name__)


def init_app(app, db):
    from .models import define_models

    app.extensions["payments"] = define_models(db)
    app.register_blueprint(bp)
'''

PLUGIN_MODELS = '''
import sqlalchemy as sa


def define_models(db):
    class Payment(db.Model):
        __tablename__ = "payments"
        id = sa.Column(sa.Integer, primary_key=True)
        amount = sa.Column(sa.Integer, nullable=False)
{extra}
    return Payment
'''

PLUGIN_MIGRATION = '''"""payments: initial"""
import sqlalchemy as sa
from alembic import op

revision = "pay0001"
down_revision = None
branch_labels = ("payments",)
depends_on = None


def upgrade():
    op.create_table(
        "payments",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("amount", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_payments"),
    )


def downgrade():
    op.drop_table("payments")
'''


def plugin_files(name: str, extra_column: bool = False) -> dict[str, str]:
    extra = "        fee = sa.Column(sa.Integer)\n" if extra_column else ""
    return {
        f"{name}/__init__.py": PLUGIN_INIT,
        f"{name}/models.py": PLUGIN_MODELS.format(extra=extra),
        f"{name}/migrations/__init__.py": "",
        f"{name}/migrations/0001_initial.py": PLUGIN_MIGRATION,
    }


def write_plugin(where: Path, name: str, extra_column: bool = False) -> Path:
    for relative, text in plugin_files(name, extra_column).items():
        path = where / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return where / name


def build_wheel(folder: Path, name: str) -> Path:
    """A real wheel of the plugin (pip installs it like any package from an index)."""
    dist = f"{name}-1.0.dist-info"
    files = {relative: text.encode() for relative, text in plugin_files(name).items()}
    files[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode()
    files[f"{dist}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"

    def digest(data: bytes) -> str:
        return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = "".join(f"{path},{digest(data)},{len(data)}\n" for path, data in files.items())
    wheel = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
        archive.writestr(f"{dist}/RECORD", record + f"{dist}/RECORD,,\n")
    return wheel


def plugin_project(tmp_path: Path, url: str, plugin: str) -> Project:
    """A project (accounts) whose factory sets the installed plugin up; no register_app."""
    project = make_project(tmp_path / "project", url)
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.set_factory(["accounts"])
    init = project.package_dir / "__init__.py"
    init.write_text(init.read_text().replace(
        "    rollback.init_app(app, db)",
        f"    import {plugin}\n    {plugin}.init_app(app, db)\n    rollback.init_app(app, db)",
    ))
    return project


def forget(module: str) -> None:
    """Drop an imported package (its files changed, as after ``pip install -U``)."""
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        del sys.modules[name]


def files_under(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts
    }


def check_plugin_is_used_read_only(project: Project, plugin: str, folder: Path) -> None:
    """Picked up with no configuration, migrated, listed, and never written to."""
    shipped = files_under(folder)
    created = db(project, "init").output
    assert str(folder) not in created and not (project.migrations / "payments").exists()
    db(project, "upgrade")  # the plugin's own migration, as shipped
    assert "payments" in project.tables()
    db(project, "makemigrations")  # the project's app; the plugin's models match its migrations
    assert project.files("accounts") == ["0001_initial.py"]
    assert files_under(folder) == shipped
    db(project, "upgrade")
    assert showmigrations(project) == {"accounts": [" [X] 0001_initial"], "payments": [" [X] 0001_initial"]}
    payments = apps_json(project)["payments"]
    assert payments["source"] == "plugin" and payments["read_only"] is True
    assert payments["directory"] == str(folder.resolve())
    assert payments["folder_origin"].startswith(f"shipped with package {plugin} (")
    assert rules(payments) == {"payments": "blueprint package"}

    # A newer version of the plugin whose models differ from the migrations it ships.
    write_plugin(folder.parent.parent, plugin, extra_column=True)
    forget(plugin)
    shipped = files_under(folder)
    output = db(project, "makemigrations").output
    assert output.strip() == (
        "Not written: app 'payments' is read-only (its migrations ship with an installed package) "
        "and its models differ from them (AddColumn payments.fee); upgrade the package"
    )
    assert files_under(folder) == shipped
    for args in (
        ("makemigrations", "payments"),
        ("makemigrations", "--empty", "payments"),
        ("revision", "--app", "payments"),
        ("merge", "payments"),
    ):
        one_line_error(project.db(*args), "app 'payments' is read-only", "upgrade the package")
    one_line_error(project.db("rename-app", "payments", "pay"), "app 'payments' is read-only")
    assert db(project, "check", code=3).output.strip() == (
        "models of app 'payments' differ from its migrations shipped with its installed package "
        "(upgrade the package): AddColumn payments.fee"
    )
    assert files_under(folder) == shipped
    db(project, "downgrade", "payments", "zero")
    assert "payments" not in project.tables()


def test_plugin_outside_the_project_is_picked_up_and_read_only(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed by copying into a directory on sys.path outside the project root."""
    plugin = f"plugin_{uuid.uuid4().hex[:8]}"
    libraries = tmp_path / "libraries"
    folder = write_plugin(libraries, plugin) / "migrations"
    monkeypatch.syspath_prepend(str(libraries))
    project = plugin_project(tmp_path, db_url, plugin)
    try:
        check_plugin_is_used_read_only(project, plugin, folder)
        assert "(outside the project)" in apps_json(project)["payments"]["folder_origin"]
    finally:
        forget(plugin)


@pytest.mark.parametrize("target", ["outside_the_project", "inside_the_project"])
def test_plugin_installed_with_pip_target(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    """A real ``pip install --target DIR``: even inside the project folder, files a
    distribution installed are not the project's to edit."""
    plugin = f"plugin_{uuid.uuid4().hex[:8]}"
    project = plugin_project(tmp_path, db_url, plugin)
    site = tmp_path / "site" if target == "outside_the_project" else project.root / "vendor"
    wheel = build_wheel(tmp_path, plugin)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
         "--target", str(site), str(wheel)],
        check=True, capture_output=True, text=True,
    )
    folder = site / plugin / "migrations"
    monkeypatch.syspath_prepend(str(site))
    try:
        # As a user types it: a real flask process, the package found through PYTHONPATH.
        env = {**project.env(), "PYTHONPATH": os.pathsep.join([str(site), project.env()["PYTHONPATH"]])}
        shown = subprocess.run(
            [sys.executable, "-m", "flask", "db", "apps", "--json"],
            cwd=project.root, env=env, capture_output=True, text=True, timeout=120, check=False,
        )
        assert shown.returncode == 0, shown.stderr
        payments = {a["app"]: a for a in json.loads(shown.stdout)["apps"]}["payments"]
        assert payments["source"] == "plugin"
        assert payments["folder_origin"] == f"shipped with package {plugin} (installed by {plugin} 1.0)"
        check_plugin_is_used_read_only(project, plugin, folder)
    finally:
        forget(plugin)


def test_blueprint_package_with_its_own_migrations_folder_writes_there(tmp_path: Path, db_url: str) -> None:
    """A reusable app inside the project (not installed): its folder is used and written."""
    project = make_project(tmp_path, db_url)
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.add_blueprint("blog", BLOG_MODELS)
    project.set_factory(["accounts", "blog"])
    folder = project.package_dir / "blog" / "migrations"
    db(project, "init")
    db(project, "makemigrations")
    # blog had no folder of its own yet: its first migration went to the default place. Moved
    # into the package, the folder goes with the package from now on, with no configuration.
    (project.migrations / "blog").rename(folder)
    apps = apps_json(project)
    assert apps["blog"]["directory"] == str(folder.resolve())
    assert apps["blog"]["folder_origin"] == f"shipped with package {project.package}.blog"
    assert apps["blog"]["read_only"] is False and apps["blog"]["source"] == "blueprint"
    db(project, "upgrade")
    project.write("blog/models.py", BLOG_MODELS + "    views: Mapped[int | None] = mapped_column()\n")
    db(project, "makemigrations")
    assert sorted(p.name for p in folder.glob("*.py")) == ["0001_initial.py", "0002_add_posts_views.py"]
    assert not (project.migrations / "blog").exists()
    db(project, "upgrade")
    assert showmigrations(project)["blog"] == [" [X] 0001_initial", " [X] 0002_add_posts_views"]
