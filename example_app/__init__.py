"""Example multi-blueprint app showing flask-rollback's per-blueprint migrations."""

import os
from typing import Any

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from flask_rollback import Rollback


class Base(DeclarativeBase):
    """Declarative base whose constraint names are deterministic, as SQLite batch migrations need."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


db = SQLAlchemy(model_class=Base)
rollback = Rollback()


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: databases, the accounts/blog/shop/analytics blueprints and flask-rollback.

    accounts, blog and shop live in the default database (DATABASE_URL); analytics in a
    database of its own, the ``analytics`` bind (ANALYTICS_DATABASE_URL)."""
    app = Flask(__name__)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ.get(
        "DATABASE_URL", "sqlite:///" + os.path.join(app.instance_path, "example.db")
    )
    app.config["SQLALCHEMY_BINDS"] = {
        "analytics": os.environ.get(
            "ANALYTICS_DATABASE_URL", "sqlite:///" + os.path.join(app.instance_path, "analytics.db")
        ),
    }
    if config:
        app.config.update(config)

    db.init_app(app)

    from example_app.accounts import bp as accounts_bp
    from example_app.analytics import bp as analytics_bp
    from example_app.blog import bp as blog_bp
    from example_app.shop import bp as shop_bp

    app.register_blueprint(accounts_bp)
    app.register_blueprint(blog_bp)
    app.register_blueprint(shop_bp)
    app.register_blueprint(analytics_bp)

    rollback.init_app(app, db)
    return app
