"""Alembic entry point. The logic lives in flask_rollback, so upgrading it fixes every project."""

from flask_rollback.env import run_env

run_env()
