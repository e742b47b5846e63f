"""Which app owns each table, where its migrations live, and the errors when that is unclear.

Every test builds a real Flask project package (blueprints, Flask-SQLAlchemy models), runs real
``flask db`` commands on it and looks at what they did: the folders migration files land in,
the tables those files create, the tables in the database, exit codes and the error line.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import Result

from tests.projects import ACCOUNTS_MODELS, BLOG_MODELS, Project

CREATE_TABLE_RE = re.compile(r"create_table\(\s*['\"](\w+)['\"]")
DROP_TABLE_RE = re.compile(r"drop_table\(\s*['\"](\w+)['\"]")
OWN_TABLES = {"alembic_version", "rollback_log"}

# -- helpers --------------------------------------------------------------------------------


def make_project(tmp_path: Path, url: str) -> Project:
    return Project(tmp_path, f"proj_{uuid.uuid4().hex[:10]}", url)


def ok(result: Result) -> Result:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 0, result.output
    return result


def one_line_error(result: Result, *fragments: str) -> str:
    """The command failed with exit code 1 and exactly one line, ``Error: ...``."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"uncaught {result.exception!r}: {result.output}"
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def created_tables(path: Path) -> set[str]:
    """Tables the upgrade() of a migration file creates."""
    upgrade = path.read_text().split("def downgrade")[0]
    return set(CREATE_TABLE_RE.findall(upgrade))


def app_tables(folder: Path) -> dict[str, set[str]]:
    """``{file name: tables it creates}`` for every migration in a folder."""
    return {p.name: created_tables(p) for p in sorted(folder.glob("*.py"))}


def app_folders(project: Project) -> set[str]:
    """Folders under the migrations root that hold at least one migration."""
    if not project.migrations.is_dir():
        return set()
    return {p.name for p in project.migrations.iterdir() if p.is_dir() and any(p.glob("*.py"))}


def showmigrations(project: Project, *args: str) -> dict[str, list[str]]:
    """``flask db showmigrations`` parsed: ``{app: [" [X] 0001_initial", ...]}``."""
    result = ok(project.db("showmigrations", *args))
    apps: dict[str, list[str]] = {}
    current = None
    for line in result.output.splitlines():
        if line and not line.startswith(" "):
            current = line.strip()
            apps[current] = []
        elif current is not None:
            apps[current].append(re.sub(r"\s+\(applied .*\)$", "", line))
    return apps


def columns(project: Project, table: str) -> set[str]:
    engine = project.engine()
    try:
        return {column["name"] for column in sa.inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def depends_on(path: Path) -> str:
    return next(line for line in path.read_text().splitlines() if line.startswith("depends_on"))


def revision_of(path: Path) -> str:
    return re.search(r"^revision: str = ['\"](\w+)['\"]", path.read_text(), re.M).group(1)


def ensure_root(project: Project) -> None:
    """The migrations root as ``init`` makes it (env.py and the template), made by hand."""
    project.migrations.mkdir(exist_ok=True)
    for template in ("env.py", "script.py.mako"):
        (project.migrations / template).write_text(
            (Path(__file__).parents[1] / "flask_rollback" / "templates" / template).read_text()
        )


def blueprint(project: Project, package: str, name: str, models: str, *, import_models: bool = True) -> None:
    """A blueprint ``name`` created in ``<package>/__init__.py`` with models in ``models.py``."""
    tail = "\nfrom . import models  # noqa: E402,F401\n" if import_models else "\n"
    project.write(
        f"{package}/__init__.py",
        f'from flask import Blueprint\n\nbp = Blueprint("{name}", __name__)\n{tail}',
    )
    if models:
        project.write(f"{package}/models.py", models)


# A Table with FKs into blog only, in blog's models: an association table of one app.
BLOG_WITH_TAGS = BLOG_MODELS + '''

post_tags = db.Table(
    "post_tags",
    db.Column("post_id", db.ForeignKey("posts.id"), primary_key=True),
    db.Column("tag_id", db.ForeignKey("tags.id"), primary_key=True),
)


class Tag(db.Model):
    __tablename__ = "tags"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(db.String(50))
'''

# Models of the app package itself, outside every blueprint.
TOP_LEVEL_MODELS = '''
from sqlalchemy.orm import Mapped, mapped_column
from . import db


class SiteSetting(db.Model):
    __tablename__ = "site_settings"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(db.String(50))


# Outside every blueprint, but every foreign key points into accounts: accounts owns it.
user_follows = db.Table(
    "user_follows",
    db.Column("follower_id", db.ForeignKey("users.id"), primary_key=True),
    db.Column("followed_id", db.ForeignKey("users.id"), primary_key=True),
)
'''


# -- resolution by blueprint, default app, association tables --------------------------------


def test_blueprints_default_app_and_association_tables(tmp_path: Path, db_url: str) -> None:
    project = make_project(tmp_path, db_url)
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.add_blueprint("blog", BLOG_WITH_TAGS)
    project.write("models.py", TOP_LEVEL_MODELS)
    project.set_factory(["accounts", "blog"], extra_modules=["models"])

    ok(project.db("init"))
    ok(project.db("makemigrations"))

    assert app_folders(project) == {"accounts", "blog", "main"}
    assert app_tables(project.migrations / "accounts") == {"0001_initial.py": {"users", "user_follows"}}
    assert app_tables(project.migrations / "blog") == {"0001_initial.py": {"posts", "tags", "post_tags"}}
    assert app_tables(project.migrations / "main") == {"0001_initial.py": {"site_settings"}}
    accounts_rev = revision_of(project.migrations / "accounts" / "0001_initial.py")
    assert accounts_rev in depends_on(project.migrations / "blog" / "0001_initial.py")
    assert "None" in depends_on(project.migrations / "main" / "0001_initial.py")

    ok(project.db("upgrade"))
    assert project.tables() == {
        "users", "user_follows", "posts", "tags", "post_tags", "site_settings", *OWN_TABLES
    }
    assert showmigrations(project) == {
        "accounts": [" [X] 0001_initial"],
        "blog": [" [X] 0001_initial"],
        "main": [" [X] 0001_initial"],
    }
    # Each app can be reverted alone: its tables go, the others stay.
    ok(project.db("downgrade", "main", "zero"))
    assert project.tables() == {"users", "user_follows", "posts", "tags", "post_tags", *OWN_TABLES}


def test_explicit_labels_beat_the_blueprint(tmp_path: Path) -> None:
    project = make_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.add_blueprint("blog", BLOG_MODELS + '''

class Invoice(db.Model):
    """In blog's package, labelled for an app that is no blueprint at all."""
    __tablename__ = "invoices"
    __app_label__ = "billing"
    id: Mapped[int] = mapped_column(primary_key=True)


class Profile(db.Model):
    """In blog's package, labelled for another blueprint."""
    __tablename__ = "profiles"
    __app_label__ = "accounts"
    id: Mapped[int] = mapped_column(primary_key=True)


class Audit(db.Model):
    """Labelled through its table's info."""
    __tablename__ = "audits"
    __table_args__ = {"info": {"app": "billing"}}
    id: Mapped[int] = mapped_column(primary_key=True)

''')
    project.set_factory(["accounts", "blog"])

    ok(project.db("init"))
    ok(project.db("makemigrations"))
    assert app_folders(project) == {"accounts", "blog", "billing"}
    assert app_tables(project.migrations / "billing") == {"0001_initial.py": {"invoices", "audits"}}
    assert app_tables(project.migrations / "accounts") == {"0001_initial.py": {"users", "profiles"}}
    assert app_tables(project.migrations / "blog") == {"0001_initial.py": {"posts"}}
    ok(project.db("upgrade"))
    assert {"invoices", "audits", "profiles", "users", "posts"} <= project.tables()
    assert showmigrations(project)["billing"] == [" [X] 0001_initial"]


def test_table_info_label_on_association_table(tmp_path: Path) -> None:
    """An association table with info={"app": ...} goes there even though its FKs point elsewhere."""
    project = make_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.add_blueprint("blog", BLOG_MODELS + '''

post_likes = db.Table(
    "post_likes",
    db.Column("user_id", db.ForeignKey("users.id"), primary_key=True),
    db.Column("post_id", db.ForeignKey("posts.id"), primary_key=True),
    info={"app": "blog"},
)
''')
    project.set_factory(["accounts", "blog"])
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    assert app_tables(project.migrations / "blog") == {"0001_initial.py": {"posts", "post_likes"}}
    assert app_tables(project.migrations / "accounts") == {"0001_initial.py": {"users"}}
    ok(project.db("upgrade"))
    assert {"users", "posts", "post_likes"} <= project.tables()


def test_nested_packages_longest_prefix_wins(tmp_path: Path) -> None:
    project = make_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    blueprint(project, "shop", "shop", '''
        from sqlalchemy.orm import Mapped, mapped_column
        from .. import db


        class Product(db.Model):
            __tablename__ = "products"
            id: Mapped[int] = mapped_column(primary_key=True)
        ''')
    blueprint(project, "shop/payments", "payments", '''
        from sqlalchemy.orm import Mapped, mapped_column
        from ... import db
        from .providers import stripe  # noqa: F401


        class Payment(db.Model):
            __tablename__ = "payments"
            id: Mapped[int] = mapped_column(primary_key=True)
            product_id: Mapped[int] = mapped_column(db.ForeignKey("products.id"))
        ''')
    project.write("shop/payments/providers/__init__.py", "")
    project.write("shop/payments/providers/stripe.py", '''
        from sqlalchemy.orm import Mapped, mapped_column
        from .... import db


        class StripeCharge(db.Model):
            __tablename__ = "stripe_charges"
            id: Mapped[int] = mapped_column(primary_key=True)
        ''')
    # payments registered first: the longest prefix wins, not the first match.
    project.set_factory(["shop.payments", "shop"])

    ok(project.db("init"))
    ok(project.db("makemigrations"))
    assert app_folders(project) == {"shop", "payments"}
    assert app_tables(project.migrations / "shop") == {"0001_initial.py": {"products"}}
    assert app_tables(project.migrations / "payments") == {
        "0001_initial.py": {"payments", "stripe_charges"}
    }
    shop_rev = revision_of(project.migrations / "shop" / "0001_initial.py")
    assert shop_rev in depends_on(project.migrations / "payments" / "0001_initial.py")
    ok(project.db("upgrade", "payments"))
    assert {"products", "payments", "stripe_charges"} <= project.tables()


def test_blueprint_made_in_views_module_owns_its_package(tmp_path: Path) -> None:
    project = make_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    # proj/blog/views.py makes the blueprint (import name proj.blog.views); models in proj/blog/.
    project.write("blog/__init__.py", "")
    project.write("blog/views.py", '''
        from flask import Blueprint

        bp = Blueprint("blog", __name__)

        from . import models  # noqa: E402,F401
        ''')
    project.write("blog/models.py", BLOG_MODELS)
    # proj/views.py makes a blueprint in the app's own root package: it claims that module only,
    # so proj/models.py stays the default app's ...
    project.write("views.py", '''
        from flask import Blueprint

        bp = Blueprint("site", __name__)

        from . import models  # noqa: E402,F401
        ''')
    project.write("models.py", TOP_LEVEL_MODELS.split("# Outside")[0])
    # ... while the longer accounts package keeps its own models.
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.set_factory(["blog.views", "views", "accounts"])

    ok(project.db("init"))
    ok(project.db("makemigrations"))
    assert app_folders(project) == {"blog", "main", "accounts"}
    assert app_tables(project.migrations / "blog") == {"0001_initial.py": {"posts"}}
    assert app_tables(project.migrations / "main") == {"0001_initial.py": {"site_settings"}}
    assert app_tables(project.migrations / "accounts") == {"0001_initial.py": {"users"}}
    assert not (project.migrations / "site").exists()
    ok(project.db("upgrade"))
    assert {"posts", "site_settings", "users"} <= project.tables()


@pytest.mark.parametrize("how", ["config", "option"])
def test_default_app_label_is_configurable(tmp_path: Path, how: str) -> None:
    project = make_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.write("models.py", TOP_LEVEL_MODELS)
    if how == "config":
        project.set_factory(["accounts"], config={"ROLLBACK_DEFAULT_APP": "core"}, extra_modules=["models"])
    else:
        project.set_factory(["accounts"], extra_modules=["models"])
        init = project.package_dir / "__init__.py"
        init.write_text(init.read_text().replace("rollback = Rollback()", 'rollback = Rollback(default_app="core")'))
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    assert app_folders(project) == {"accounts", "core"}
    assert app_tables(project.migrations / "core") == {"0001_initial.py": {"site_settings"}}
    ok(project.db("upgrade", "core"))
    assert "site_settings" in project.tables()
    assert list(showmigrations(project)) == ["accounts", "core"]


# -- register_app and per-app folders ---------------------------------------------------------


BILLING_MODELS = '''
from sqlalchemy.orm import Mapped, mapped_column
from .. import db


class Invoice(db.Model):
    __tablename__ = "invoices"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(db.ForeignKey("users.id"))
'''


def test_register_app_with_its_own_directory(tmp_path: Path, db_url: str) -> None:
    project = make_project(tmp_path, db_url)
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.write("billing/__init__.py", "from . import models  # noqa: F401\n")
    project.write("billing/models.py", BILLING_MODELS)
    folder = project.package_dir / "billing" / "migrations"
    project.write("apps.py", f'''
        from . import rollback

        rollback.register_app("billing", import_name=__package__ + ".billing", directory={str(folder)!r})
        ''')
    project.set_factory(["accounts"], extra_modules=["billing", "apps"])

    ok(project.db("init"))
    assert folder.is_dir()
    result = ok(project.db("makemigrations"))
    assert str(folder / "0001_initial.py") in result.output
    assert app_tables(folder) == {"0001_initial.py": {"invoices"}}
    assert not (project.migrations / "billing").exists()
    assert not (project.migrations / "main").exists()
    assert app_tables(project.migrations / "accounts") == {"0001_initial.py": {"users"}}

    ok(project.db("upgrade"))
    assert {"users", "invoices"} <= project.tables()
    assert showmigrations(project) == {
        "billing": [" [X] 0001_initial"],
        "accounts": [" [X] 0001_initial"],
    }
    # A second change lands next to the first, numbered after it, and upgrade finds it.
    project.write("billing/models.py", BILLING_MODELS + "    total: Mapped[int] = mapped_column(default=0)\n")
    ok(project.db("makemigrations"))
    assert sorted(p.name for p in folder.glob("*.py")) == ["0001_initial.py", "0002_add_invoices_total.py"]
    ok(project.db("upgrade"))
    assert columns(project, "invoices") == {"id", "user_id", "total"}
    ok(project.db("downgrade", "billing", "zero"))
    assert "invoices" not in project.tables() and "users" in project.tables()


def test_register_app_without_directory_uses_the_root(tmp_path: Path) -> None:
    project = make_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.write("billing/__init__.py", "from . import models  # noqa: F401\n")
    project.write("billing/models.py", BILLING_MODELS)
    project.write("apps.py", '''
        from . import rollback

        rollback.register_app("billing", import_name=__package__ + ".billing")
        ''')
    project.set_factory(["accounts"], extra_modules=["billing", "apps"])
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    assert app_tables(project.migrations / "billing") == {"0001_initial.py": {"invoices"}}
    ok(project.db("upgrade"))
    assert "invoices" in project.tables()


def test_register_app_takes_over_a_nested_blueprint(tmp_path: Path) -> None:
    """A nested blueprint is registered as 'shop.payments' (no valid label): register_app names it."""
    project = make_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    blueprint(project, "shop", "shop", '''
        from sqlalchemy.orm import Mapped, mapped_column
        from .. import db


        class Product(db.Model):
            __tablename__ = "products"
            id: Mapped[int] = mapped_column(primary_key=True)
        ''')
    blueprint(project, "shop/payments", "payments", '''
        from sqlalchemy.orm import Mapped, mapped_column
        from ... import db


        class Payment(db.Model):
            __tablename__ = "payments"
            id: Mapped[int] = mapped_column(primary_key=True)
        ''')
    project.write("shop/__init__.py", '''
        from flask import Blueprint

        from .payments import bp as payments

        bp = Blueprint("shop", __name__)
        bp.register_blueprint(payments)

        from . import models  # noqa: E402,F401
        ''')
    project.write("nest.py", '''
        from . import rollback

        rollback.register_app("payments", import_name=__package__ + ".shop.payments")
        ''')
    project.set_factory(["shop"], extra_modules=["nest"])
    app = project.app()
    assert "shop.payments" in app.blueprints
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    assert app_folders(project) == {"shop", "payments"}
    assert app_tables(project.migrations / "payments") == {"0001_initial.py": {"payments"}}
    assert app_tables(project.migrations / "shop") == {"0001_initial.py": {"products"}}


@pytest.mark.parametrize("where", ["inside_package", "under_root"])
def test_app_directory_override(tmp_path: Path, db_url: str, where: str) -> None:
    project = make_project(tmp_path, db_url)
    if where == "inside_package":
        folder = project.package_dir / "accounts" / "migrations"
    else:  # a folder under the migrations root whose name is not the label
        folder = project.migrations / "users_schema"
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.add_blueprint("blog", BLOG_MODELS)
    project.set_factory(["accounts", "blog"], config={"ROLLBACK_APP_DIRECTORIES": {"accounts": str(folder)}})

    ok(project.db("init"))
    assert folder.is_dir()
    result = ok(project.db("makemigrations"))
    assert str(folder / "0001_initial.py") in result.output
    assert app_tables(folder) == {"0001_initial.py": {"users"}}
    assert not (project.migrations / "accounts").exists()
    assert app_tables(project.migrations / "blog") == {"0001_initial.py": {"posts"}}
    assert revision_of(folder / "0001_initial.py") in depends_on(project.migrations / "blog" / "0001_initial.py")

    ok(project.db("upgrade"))
    assert {"users", "posts"} <= project.tables()
    # The folder is accounts' and nobody else's: no app named after the folder appears.
    assert showmigrations(project) == {
        "accounts": [" [X] 0001_initial"],
        "blog": [" [X] 0001_initial"],
    }
    ok(project.db("downgrade", "blog", "zero"))
    ok(project.db("downgrade", "accounts", "zero"))
    assert not {"users", "posts"} & project.tables()
    ok(project.db("upgrade", "accounts"))
    assert "users" in project.tables() and "posts" not in project.tables()


# -- inheritance and mixins -------------------------------------------------------------------


def test_subclasses_in_another_app_own_only_their_own_table(tmp_path: Path) -> None:
    project = make_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    project.add_blueprint("accounts", '''
        from sqlalchemy.orm import Mapped, mapped_column
        from .. import db


        class User(db.Model):
            __tablename__ = "users"
            id: Mapped[int] = mapped_column(primary_key=True)
            kind: Mapped[str] = mapped_column(db.String(20))
            __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "user"}


        class LegacyUser(db.Model):
            __tablename__ = "legacy_users"
            __app_label__ = "legacy"
            id: Mapped[int] = mapped_column(primary_key=True)
        ''')
    project.add_blueprint("blog", '''
        from sqlalchemy.orm import Mapped, mapped_column
        from .. import db
        from ..accounts.models import LegacyUser, User


        class Author(User):
            """Joined-table inheritance: authors is blog's, users stays accounts'."""
            __tablename__ = "authors"
            id: Mapped[int] = mapped_column(db.ForeignKey("users.id"), primary_key=True)
            __mapper_args__ = {"polymorphic_identity": "author"}


        class Guest(User):
            """Single-table inheritance: no table of its own, claims nothing."""
            __mapper_args__ = {"polymorphic_identity": "guest"}


        class LegacyAuthor(LegacyUser):
            """The parent's __app_label__ names the parent's table, not this one."""
            __tablename__ = "legacy_authors"
            id: Mapped[int] = mapped_column(db.ForeignKey("legacy_users.id"), primary_key=True)


        class BillingMixin:
            __app_label__ = "billing"


        class Receipt(BillingMixin, db.Model):
            """A label from an unmapped mixin counts."""
            __tablename__ = "receipts"
            id: Mapped[int] = mapped_column(primary_key=True)
        ''')
    project.set_factory(["accounts", "blog"])

    ok(project.db("init"))
    ok(project.db("makemigrations"))
    assert app_tables(project.migrations / "accounts") == {"0001_initial.py": {"users"}}
    assert app_tables(project.migrations / "legacy") == {"0001_initial.py": {"legacy_users"}}
    assert app_tables(project.migrations / "blog") == {"0001_initial.py": {"authors", "legacy_authors"}}
    assert app_tables(project.migrations / "billing") == {"0001_initial.py": {"receipts"}}
    ok(project.db("upgrade"))
    assert {"users", "authors", "legacy_users", "legacy_authors", "receipts"} <= project.tables()


# -- which apps exist -------------------------------------------------------------------------


def test_blueprints_without_models_are_not_apps(tmp_path: Path) -> None:
    project = make_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    blueprint(project, "pages", "pages", "", import_models=False)
    # Not even an invalid name matters for a blueprint that owns no models.
    blueprint(project, "api", "my-api", "", import_models=False)
    project.set_factory(["accounts", "pages", "api"])

    result = ok(project.db("init"))
    assert "pages" not in result.output and "my-api" not in result.output
    assert sorted(p.name for p in project.migrations.iterdir() if p.is_dir()) == ["accounts"]
    ok(project.db("makemigrations"))
    assert app_folders(project) == {"accounts"}
    assert list(showmigrations(project)) == ["accounts"]
    ok(project.db("upgrade"))
    assert project.tables() == {"users", *OWN_TABLES}


def test_app_with_migrations_but_no_models_is_still_listed(tmp_path: Path, db_url: str) -> None:
    project = make_project(tmp_path, db_url)
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.add_blueprint("blog", BLOG_MODELS)
    project.set_factory(["accounts", "blog"])
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    ok(project.db("upgrade"))

    # The blog blueprint is gone altogether, models and all.
    project.set_factory(["accounts"])
    assert showmigrations(project) == {
        "accounts": [" [X] 0001_initial"],
        "blog": [" [X] 0001_initial"],
    }
    assert showmigrations(project, "blog") == {"blog": [" [X] 0001_initial"]}
    # makemigrations writes the drop into blog's folder, and upgrade runs it.
    ok(project.db("makemigrations"))
    assert project.files("blog") == ["0001_initial.py", "0002_drop_posts.py"]
    assert DROP_TABLE_RE.findall((project.migrations / "blog" / "0002_drop_posts.py").read_text().split("def downgrade")[0]) == ["posts"]
    assert project.files("accounts") == ["0001_initial.py"]
    ok(project.db("upgrade"))
    assert "posts" not in project.tables() and "users" in project.tables()
    assert showmigrations(project)["blog"] == [" [X] 0001_initial", " [X] 0002_drop_posts"]


def test_app_in_overridden_folder_without_models_is_still_listed(tmp_path: Path) -> None:
    project = make_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    folder = project.package_dir / "blog" / "migrations"
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.add_blueprint("blog", BLOG_MODELS)
    config = {"ROLLBACK_APP_DIRECTORIES": {"blog": str(folder)}}
    project.set_factory(["accounts", "blog"], config=config)
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    ok(project.db("upgrade"))

    project.write("blog/models.py", "")
    assert showmigrations(project) == {
        "accounts": [" [X] 0001_initial"],
        "blog": [" [X] 0001_initial"],
    }
    ok(project.db("makemigrations"))
    assert sorted(p.name for p in folder.glob("*.py")) == ["0001_initial.py", "0002_drop_posts.py"]
    ok(project.db("upgrade"))
    assert "posts" not in project.tables()


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("showmigrations", "nope"),
        ("upgrade", "nope@head"),
        ("upgrade", "nope", "head"),
        ("downgrade", "nope", "zero"),
        ("makemigrations", "nope"),
        ("sqlmigrate", "nope", "0001"),
        ("makemigrations", "--empty", "nope"),
    ],
)
def test_unknown_app_label(tmp_path: Path, args: tuple[str, ...]) -> None:
    project = make_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.add_blueprint("blog", BLOG_MODELS)
    project.set_factory(["accounts", "blog"])
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    before = sorted(project.migrations.rglob("*.py"))
    one_line_error(project.db(*args), "unknown app 'nope'", "known apps: accounts, blog")
    assert sorted(project.migrations.rglob("*.py")) == before
    assert not (project.migrations / "nope").exists()


def test_unknown_app_label_from_a_real_shell(tmp_path: Path) -> None:
    project = make_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.set_factory(["accounts"])
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    done = project.run("upgrade", "nope@head")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == ["Error: unknown app 'nope'; known apps: accounts"]
    assert "users" not in project.tables()


INVALID_LABEL_CASES = {
    "class_label": (
        {"blog": BLOG_MODELS.replace('__tablename__ = "posts"', '__tablename__ = "posts"\n    __app_label__ = "../evil"')},
        "invalid app label '../evil'",
    ),
    "table_info": (
        {"blog": BLOG_MODELS + '\n\nextra = db.Table("extra", db.Column("id", db.Integer, primary_key=True), info={"app": "a.b"})\n'},
        "invalid app label 'a.b'",
    ),
    "blueprint_name": ({"my-blog": BLOG_MODELS}, "invalid app label 'my-blog'"),
}


@pytest.mark.parametrize("case", list(INVALID_LABEL_CASES))
@pytest.mark.parametrize("command", ["init", "makemigrations", "showmigrations", "upgrade"])
def test_invalid_label(tmp_path: Path, case: str, command: str) -> None:
    blog_models, expected = INVALID_LABEL_CASES[case]
    project = make_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    ((name, models),) = blog_models.items()
    blueprint(project, "blog", name, models)
    project.set_factory(["accounts", "blog"])
    if command != "init":  # a migrations root to work in, made by hand: init itself fails
        ensure_root(project)
    one_line_error(project.db(command), expected, "Python identifier")
    assert not (tmp_path / "evil").exists()
    assert app_folders(project) == set()
    assert project.tables() <= OWN_TABLES


def test_invalid_register_app_label_from_a_real_shell(tmp_path: Path) -> None:
    project = make_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.write("apps.py", '''
        from . import rollback

        rollback.register_app("a/b", import_name=__package__ + ".accounts")
        ''')
    project.set_factory(["accounts"], extra_modules=["apps"])
    # The factory runs fine (no traceback while the app is created) ...
    assert "accounts" in project.app().blueprints
    # ... and every flask db command says what is wrong in one line.
    done = project.run("init")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: invalid app label 'a/b'"), done.stderr
    ensure_root(project)
    for args in (("makemigrations",), ("upgrade",)):
        one_line_error(project.db(*args), "invalid app label 'a/b'", "Python identifier")
    assert app_folders(project) == set()
    assert not (tmp_path / "a").exists()


def test_invalid_default_app_label(tmp_path: Path) -> None:
    project = make_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.set_factory(["accounts"], config={"ROLLBACK_DEFAULT_APP": "my app"})
    one_line_error(project.db("init"), "invalid default app label 'my app'")
    assert app_folders(project) == set()


CLAIMED_TWICE = {
    # Two classes mapped to the same Table, each with its own explicit label.
    "two_class_labels": ('''
        class UserView(db.Model):
            __table__ = User.__table__
            __app_label__ = "blog"
        ''', "'accounts'", "'blog'"),
    # The same, without labels: each class lives in another blueprint's package.
    "two_packages": ('''
        class UserView(db.Model):
            __table__ = User.__table__
        ''', "'accounts'", "'blog'"),
    # The class says one app, its table's info another.
    "class_label_vs_table_info": ('''
        class Note(db.Model):
            __tablename__ = "notes"
            __app_label__ = "blog"
            __table_args__ = {"info": {"app": "accounts"}}
            id: Mapped[int] = mapped_column(primary_key=True)
        ''', "'blog'", "'accounts'"),
}


@pytest.mark.parametrize("case", list(CLAIMED_TWICE))
def test_table_claimed_by_two_apps(tmp_path: Path, case: str) -> None:
    code, first, second = CLAIMED_TWICE[case]
    project = make_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.add_blueprint("blog", BLOG_MODELS + "\nfrom ..accounts.models import User\n\n" + code.replace("\n        ", "\n"))
    project.set_factory(["accounts", "blog"])
    table = "notes" if case == "class_label_vs_table_info" else "users"
    line = one_line_error(project.db("init"), f"table {table!r} is claimed by two apps", first, second)
    assert "__app_label__" in line  # says how to fix it
    assert app_folders(project) == set()


def test_association_table_into_two_apps_without_a_defining_module_needs_a_label(
    tmp_path: Path, db_url: str
) -> None:
    """Made inline (only the relationship holds it), no module defines it: its foreign keys
    into two apps cannot decide, so the error says how to fix it."""
    project = make_project(tmp_path, db_url)
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    project.add_blueprint("blog", BLOG_MODELS)
    project.set_factory(["accounts", "blog"])
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    ok(project.db("upgrade"))

    likes = '''

Post.likers = db.relationship("User", secondary=db.Table(
    "post_likes",
    db.Column("user_id", db.ForeignKey("users.id"), primary_key=True),
    db.Column("post_id", db.ForeignKey("posts.id"), primary_key=True),
))
'''
    project.add_blueprint("blog", BLOG_MODELS + likes)
    for args in (("makemigrations",), ("upgrade",), ("showmigrations",), ("apps",)):
        one_line_error(
            project.db(*args),
            "cannot decide the app of table 'post_likes'",
            "apps accounts, blog",
            "no loaded module holds it at module level",
            "info={'app': LABEL}",
        )
    assert project.files("blog") == ["0001_initial.py"]
    assert project.files("accounts") == ["0001_initial.py"]
    assert "post_likes" not in project.tables()

    # The fix the message names works: the table goes where info says, after both apps.
    project.add_blueprint("blog", BLOG_MODELS + likes.replace("\n))\n", '\n    info={"app": "blog"},\n))\n'))
    ok(project.db("makemigrations"))
    assert project.files("accounts") == ["0001_initial.py"]
    assert app_tables(project.migrations / "blog") == {
        "0001_initial.py": {"posts"},
        "0002_create_post_likes.py": {"post_likes"},
    }
    accounts_rev = revision_of(project.migrations / "accounts" / "0001_initial.py")
    assert accounts_rev in depends_on(project.migrations / "blog" / "0002_create_post_likes.py")
    ok(project.db("upgrade"))
    assert {"users", "posts", "post_likes"} <= project.tables()


def test_failed_init_leaves_nothing_behind(tmp_path: Path) -> None:
    """init resolves the apps before writing: after an error, fixing the models and re-running
    init must work, not fail with 'already initialised'."""
    project = make_project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    project.add_blueprint("accounts", ACCOUNTS_MODELS)
    blueprint(project, "blog", "my-blog", BLOG_MODELS)
    project.set_factory(["accounts", "blog"])
    one_line_error(project.db("init"), "invalid app label 'my-blog'")
    assert not project.migrations.exists()

    blueprint(project, "blog", "blog", BLOG_MODELS)
    ok(project.db("init"))
    ok(project.db("makemigrations"))
    assert app_folders(project) == {"accounts", "blog"}
