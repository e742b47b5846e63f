"""The blog app: posts written by users, and their tags."""

from flask import Blueprint

bp = Blueprint("blog", __name__, url_prefix="/blog")

from example_app.blog import models, views  # noqa: E402,F401  (register models and routes)
