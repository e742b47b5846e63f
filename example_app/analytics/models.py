"""Models owned by the analytics app, on the ``analytics`` bind (SQLALCHEMY_BINDS).

``user_id`` is a plain column: users live in the default database, and no database can
enforce a foreign key into another one."""

from datetime import datetime

from sqlalchemy import Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from example_app import db


class PageView(db.Model):
    """One page seen by a user (or by nobody signed in)."""

    __bind_key__ = "analytics"
    __tablename__ = "page_views"

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String(255), index=True)
    user_id: Mapped[int | None] = mapped_column(Integer)
    viewed_at: Mapped[datetime] = mapped_column(server_default=func.now())
