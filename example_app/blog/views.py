"""HTTP routes of the blog app."""

from typing import Any

from flask import request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from example_app import db
from example_app.accounts.models import User
from example_app.blog import bp
from example_app.blog.models import Post, Tag


def post_json(post: Post) -> dict[str, Any]:
    """Serialise a post, with its tag names, for JSON responses."""
    return {
        "id": post.id,
        "title": post.title,
        "body": post.body,
        "author_id": post.author_id,
        "created_at": post.created_at.isoformat(),
        "tags": sorted(tag.name for tag in post.tags),
    }


@bp.get("/posts")
def list_posts() -> ResponseReturnValue:
    """List all posts with their tags."""
    posts = db.session.scalars(select(Post).options(selectinload(Post.tags)).order_by(Post.id))
    return [post_json(post) for post in posts]


@bp.post("/posts")
def create_post() -> ResponseReturnValue:
    """Create a post from ``{"title", "body", "author_id", "tags": [names]}``; unknown tags are created."""
    data = request.get_json()
    if not isinstance(data, dict):
        return {"error": "expected a JSON object"}, 400
    title, body, author_id = data.get("title"), data.get("body"), data.get("author_id")
    tag_names = data.get("tags", [])
    if not isinstance(title, str) or not title or not isinstance(body, str):
        return {"error": "title and body are required"}, 400
    if not isinstance(tag_names, list) or not all(isinstance(name, str) for name in tag_names):
        return {"error": "tags must be a list of names"}, 400
    if not isinstance(author_id, int) or db.session.get(User, author_id) is None:
        return {"error": "unknown author_id"}, 400
    tags = []
    for name in dict.fromkeys(tag_names):
        tag = db.session.scalar(select(Tag).filter_by(name=name)) or Tag(name=name)
        tags.append(tag)
    post = Post(title=title, body=body, author_id=author_id, tags=tags)
    db.session.add(post)
    db.session.commit()
    return post_json(post), 201
