"""Models owned by the blog app; posts point across apps at accounts' users."""

from datetime import datetime

from sqlalchemy import Column, ForeignKey, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from example_app import db

post_tags = db.Table(
    "post_tags",
    Column("post_id", ForeignKey("posts.id"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id"), primary_key=True),
)


class Tag(db.Model):
    """A label that can be attached to many posts."""

    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


class Post(db.Model):
    """A blog post by a user."""

    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    tags: Mapped[list[Tag]] = relationship(secondary=post_tags)
