"""Look up what a path names, answer 404 when it does not exist, 403 when the current
user may not change it. Every view that takes a slug, a username or a comment id goes
through here, so the answers are the same everywhere.
"""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import select

from ..errors import forbidden, not_found
from ..extensions import db
from ..models import Article, Comment, User
from . import params

T = TypeVar("T")


def found(value: T | None, what: str) -> T:
    """`value`, or 404 naming `what` when the query found nothing."""
    if value is None:
        raise not_found(what)
    return value


# Lock order, everywhere: the article's row first, then its children (favorites,
# comments, tag links). Deleting an article locks its row and then cascades to the
# children; the favorites-count trigger updates the row after a favorite is written. A
# writer that touched a favorite before the row could deadlock with a delete
# (issue 26), so every writer below an article takes the row's lock before anything else.
# PostgreSQL row lock modes (docs, "Row-Level Locks"): FOR NO KEY UPDATE is the lock the
# trigger's UPDATE takes anyway; FOR KEY SHARE is the lock a new child's foreign key
# check takes; FOR UPDATE (the author's update or delete) conflicts with both. SQLite
# has one writer at a time and no row locks: SQLAlchemy renders no FOR clause there.
KEY_SHARE = {"key_share": True, "read": True}  # adding a comment
NO_KEY_UPDATE = {"key_share": True}  # writing a favorite (the trigger updates the count)


def article_id(slug: str, lock: dict | None = None) -> int:
    """The id of the article at `slug` (comments and favorites need no more of it), its
    row locked in the mode `lock` names (KEY_SHARE or NO_KEY_UPDATE) for a write."""
    key = params.path_key(slug, "article")
    statement = select(Article.id).where(Article.slug == key)
    if lock is not None:
        statement = statement.with_for_update(**lock)
    return found(db.session.execute(statement).scalar(), "article")


def owned_article(slug: str, user: User) -> Article:
    """The article at `slug`, which `user` must have written, locked for its update or delete."""
    key = params.path_key(slug, "article")
    article = found(
        db.session.execute(select(Article).where(Article.slug == key).with_for_update()).scalar(),
        "article",
    )
    if article.author_id != user.id:
        raise forbidden("article", "only the author may change this article")
    return article


def owned_comment_id(slug: str, comment_id: str, user: User) -> int:
    """The id of comment `comment_id` on the article at `slug`, which `user` must have written."""
    on_article = article_id(slug, KEY_SHARE)
    number = params.path_id(comment_id, "comment")
    author_id = db.session.execute(
        select(Comment.author_id).where(Comment.id == number, Comment.article_id == on_article)
    ).scalar()
    if found(author_id, "comment") != user.id:
        raise forbidden("comment", "only the author may delete this comment")
    return number


def user_id(username: str) -> int:
    """The id of the user whose profile is at `username`."""
    key = params.path_key(username, "profile")
    return found(
        db.session.execute(select(User.id).where(User.username == key)).scalar(), "profile"
    )
