"""HTTP routes of the accounts app."""

from typing import Any

from flask import request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from example_app import db
from example_app.accounts import bp
from example_app.accounts.models import User


def user_json(user: User) -> dict[str, Any]:
    """Serialise a user for JSON responses."""
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "created_at": user.created_at.isoformat(),
    }


@bp.get("/")
def list_users() -> ResponseReturnValue:
    """List all users."""
    users = db.session.scalars(select(User).order_by(User.id))
    return [user_json(user) for user in users]


@bp.post("/")
def create_user() -> ResponseReturnValue:
    """Create a user from a JSON body ``{"email": ..., "name": ...}``."""
    data = request.get_json()
    if not isinstance(data, dict):
        return {"error": "expected a JSON object"}, 400
    email = data.get("email")
    if not isinstance(email, str) or not email:
        return {"error": "email is required"}, 400
    if db.session.scalar(select(User).filter_by(email=email)) is not None:
        return {"error": "email already registered"}, 409
    user = User(email=email, name=data.get("name"))
    db.session.add(user)
    db.session.commit()
    return user_json(user), 201
