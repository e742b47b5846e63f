"""The shop app: products, and orders placed by users."""

from flask import Blueprint

bp = Blueprint("shop", __name__, url_prefix="/shop")

from example_app.shop import models, views  # noqa: E402,F401  (register models and routes)
