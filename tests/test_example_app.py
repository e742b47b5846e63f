"""The shipped example app and its shipped migrations, run as a user would, on SQLite and
PostgreSQL: ``python -m flask --app example_app db ...`` from the repository root with
``DATABASE_URL`` and ``ANALYTICS_DATABASE_URL`` (the analytics bind) pointing at throwaway
databases. Neither folder is modified."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from flask_rollback.errors import EXIT_REFUSED

ROOT = Path(__file__).parents[1]
TABLES = {"users", "posts", "tags", "post_tags", "products", "orders", "order_lines"}
OWN_TABLES = {"alembic_version", "rollback_log"}
#: Heads of the shipped migrations (accounts' initial is below both through depends_on).
BLOG_INITIAL, SHOP_INITIAL = "a86a3d95c5c4", "1bee7f2580b9"
#: The analytics app's initial migration, on its own database (the analytics bind).
ANALYTICS_INITIAL = "f745a18f1d79"


def tree(*folders: str) -> dict[str, str]:
    """Every file under the folders (bytecode caches aside) with its sha256."""
    return {
        str(path.relative_to(ROOT)): hashlib.sha256(path.read_bytes()).hexdigest()
        for folder in folders
        for path in sorted((ROOT / folder).rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


@pytest.fixture
def untouched_example() -> Iterator[None]:
    before = tree("example_app", "migrations")
    yield
    assert tree("example_app", "migrations") == before, "the example app or its migrations changed"


@pytest.fixture
def urls(db_url: str, second_db_url: str) -> tuple[str, str]:
    """The default database and the analytics bind's database."""
    return db_url, second_db_url


def flask_db(urls: tuple[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FLASK_APP", "ROLLBACK_DIRECTORY")}
    env.update(DATABASE_URL=urls[0], ANALYTICS_DATABASE_URL=urls[1], PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "example_app", "db", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output, output
    return output


def state(url: str) -> tuple[set[str], list[str], dict[str, int]]:
    """(tables, version rows, row count per table)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            tables = set(sa.inspect(connection).get_table_names())
            versions = sorted(
                connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()
            ) if "alembic_version" in tables else []
            quote = connection.dialect.identifier_preparer.quote_identifier
            counts = {
                table: connection.exec_driver_sql(f"SELECT count(*) FROM {quote(table)}").scalar()
                for table in sorted(tables)
            }
            return tables, versions, counts
    finally:
        engine.dispose()


def exercise_routes(urls: tuple[str, str]) -> None:
    """Create a user, a post with tags, an order and page views through the app's own routes."""
    from example_app import create_app, db
    from example_app.shop.models import Product

    app = create_app({
        "SQLALCHEMY_DATABASE_URI": urls[0], "SQLALCHEMY_BINDS": {"analytics": urls[1]},
        "TESTING": True,
    })
    try:
        client = app.test_client()
        response = client.post("/accounts/", json={"email": "ann@example.org", "name": "Ann"})
        assert response.status_code == 201, response.get_data(as_text=True)
        user = response.get_json()
        assert user["email"] == "ann@example.org" and user["created_at"]
        assert client.post("/accounts/", json={"email": "ann@example.org"}).status_code == 409

        response = client.post(
            "/blog/posts",
            json={"title": "Hello", "body": "First post", "author_id": user["id"],
                  "tags": ["sql", "flask", "sql"]},
        )
        assert response.status_code == 201, response.get_data(as_text=True)
        assert response.get_json()["tags"] == ["flask", "sql"]
        posts = client.get("/blog/posts").get_json()
        assert [(p["title"], p["author_id"], p["tags"]) for p in posts] == [
            ("Hello", user["id"], ["flask", "sql"])
        ]

        with app.app_context():
            db.session.add_all([
                Product(sku="MUG-1", name="Mug", price_cents=1250),
                Product(sku="TEE-1", name="T-shirt", price_cents=2000),
            ])
            db.session.commit()
        products = {p["sku"]: p["id"] for p in client.get("/shop/products").get_json()}
        response = client.post(
            "/shop/orders",
            json={"user_id": user["id"],
                  "lines": [{"product_id": products["MUG-1"], "quantity": 2},
                            {"product_id": products["TEE-1"]}]},
        )
        assert response.status_code == 201, response.get_data(as_text=True)
        order = response.get_json()
        assert order["total_cents"] == 2 * 1250 + 2000
        assert sorted((line["product_id"], line["quantity"]) for line in order["lines"]) == sorted(
            [(products["MUG-1"], 2), (products["TEE-1"], 1)]
        )

        for path in ("/blog/posts", "/shop/products", "/blog/posts"):
            response = client.post("/analytics/views", json={"path": path, "user_id": user["id"]})
            assert response.status_code == 201, response.get_data(as_text=True)
        assert client.get("/analytics/views").get_json() == [
            {"path": "/blog/posts", "views": 2}, {"path": "/shop/products", "views": 1}
        ]
    finally:
        with app.app_context():
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()


def test_example_app_end_to_end(urls: tuple[str, str], untouched_example: None) -> None:
    db_url, analytics_url = urls
    # apps shows each app's bind.
    rows = [line.split()[:2] for line in ok(flask_db(urls, "apps")).splitlines()]
    assert [row for row in rows if row and row[0] in ("app", "accounts", "blog", "shop", "analytics")] == [
        ["app", "bind"], ["accounts", "default"], ["blog", "default"], ["shop", "default"],
        ["analytics", "analytics"],
    ]

    # upgrade creates the seven tables of the three apps in the default database, and the
    # analytics app's table in its own, each database with its own version table and log.
    # On SQLite both empty databases are built from the shipped schema snapshots in one step;
    # PostgreSQL has none shipped, so its migrations run.
    output = ok(flask_db(urls, "upgrade"))
    if db_url.startswith("sqlite"):
        assert ("Built the database from the schema snapshot migrations/schema-snapshots/sqlite.sql: "
                "3 migrations recorded as applied") in output, output
        assert "schema-snapshots/analytics.sqlite.sql: 1 migration recorded as applied" in output
    else:
        assert "Applied 3 migrations (accounts 1, blog 1, shop 1)" in output
        assert "Applied 1 migration (analytics 1)" in output
    assert output.index("Bind 'default'") < output.index("Bind 'analytics'")
    tables, versions, _ = state(db_url)
    assert tables == TABLES | OWN_TABLES
    assert versions == sorted([BLOG_INITIAL, SHOP_INITIAL])
    tables, versions, _ = state(analytics_url)
    assert tables == {"page_views"} | OWN_TABLES
    assert versions == [ANALYTICS_INITIAL]

    # The shipped migrations match the models, on both binds.
    output = ok(flask_db(urls, "check"))
    assert output.count("No problems") == 2

    exercise_routes(urls)
    before = state(db_url)
    assert before[2]["users"] == 1 and before[2]["post_tags"] == 2 and before[2]["order_lines"] == 2
    analytics_before = state(analytics_url)
    assert analytics_before[2]["page_views"] == 3

    # accounts cannot go to zero alone: blog and shop depend on it.
    result = flask_db(urls, "downgrade", "accounts", "zero")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    for fragment in ("blog.0001_initial", "shop.0001_initial", "--cascade"):
        assert fragment in errors[0], errors[0]
    assert state(db_url) == before

    # The tables hold rows: the cascade is refused until data loss is accepted.
    result = flask_db(urls, "downgrade", "accounts", "zero", "--cascade")
    assert result.returncode == EXIT_REFUSED and "Data at risk:" in result.stderr, result.stderr
    assert "  order_lines  2 rows  " in result.stderr and "  users        1 row   " in result.stderr
    assert state(db_url) == before

    # --cascade --allow-data-loss reverts all three apps, dependents first.
    output = ok(flask_db(urls, "downgrade", "accounts", "zero", "--cascade", "--allow-data-loss"))
    assert "Reverted 3 migrations" in output
    tables, versions, _ = state(db_url)
    assert tables == OWN_TABLES
    assert versions == []
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            log = list(connection.exec_driver_sql(
                "SELECT app, direction FROM rollback_log ORDER BY id"
            ))
    finally:
        engine.dispose()
    assert sorted(log[:3]) == [("accounts", "up"), ("blog", "up"), ("shop", "up")]
    assert log[0] == ("accounts", "up")
    assert sorted(log[3:]) == [("accounts", "down"), ("blog", "down"), ("shop", "down")]
    assert log[-1] == ("accounts", "down")
    # The analytics bind was not touched by reverting apps of the default bind.
    assert state(analytics_url) == analytics_before
