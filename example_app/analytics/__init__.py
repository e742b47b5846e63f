"""The analytics app: page views, kept in a database of their own (the ``analytics`` bind)."""

from flask import Blueprint

bp = Blueprint("analytics", __name__, url_prefix="/analytics")

from example_app.analytics import models, views  # noqa: E402,F401  (register models and routes)
