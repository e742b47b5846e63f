"""The accounts app: users, which the blog and shop apps reference."""

from flask import Blueprint

bp = Blueprint("accounts", __name__, url_prefix="/accounts")

from example_app.accounts import models, views  # noqa: E402,F401  (register models and routes)
