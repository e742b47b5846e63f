"""HTTP routes of the analytics app."""

from typing import Any

from flask import request
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from example_app import db
from example_app.analytics import bp
from example_app.analytics.models import PageView


def view_json(view: PageView) -> dict[str, Any]:
    """Serialise a page view for JSON responses."""
    return {
        "id": view.id,
        "path": view.path,
        "user_id": view.user_id,
        "viewed_at": view.viewed_at.isoformat(),
    }


@bp.post("/views")
def record_view() -> ResponseReturnValue:
    """Record a page view from a JSON body ``{"path": ..., "user_id": ...}``."""
    data = request.get_json()
    if not isinstance(data, dict):
        return {"error": "expected a JSON object"}, 400
    path = data.get("path")
    if not isinstance(path, str) or not path:
        return {"error": "path is required"}, 400
    user_id = data.get("user_id")
    if user_id is not None and not isinstance(user_id, int):
        return {"error": "user_id must be an integer"}, 400
    view = PageView(path=path, user_id=user_id)
    db.session.add(view)
    db.session.commit()
    return view_json(view), 201


@bp.get("/views")
def count_views() -> ResponseReturnValue:
    """Views per path, most viewed first."""
    rows = db.session.execute(
        select(PageView.path, func.count()).group_by(PageView.path).order_by(func.count().desc(), PageView.path)
    )
    return [{"path": path, "views": count} for path, count in rows]
