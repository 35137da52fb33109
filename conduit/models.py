"""Database models (SQLAlchemy 2 typed declarative).

Relationships are deliberately few: the API reads lists through explicit queries
(conduit/queries.py) that load a whole page in a constant number of statements, so
lazy-loading attributes would only invite per-row queries.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    FetchedValue,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column, validates

from .extensions import db
from .identity import username_skeleton


def utcnow() -> datetime:
    return datetime.now(UTC)


Timestamp = DateTime(timezone=True)
# Every id column is an Integer: 32-bit signed on PostgreSQL. A number above this (from
# a path or a token) names no row, and sent as a parameter it would fail the statement.
MAX_ROW_ID = 2**31 - 1


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(128))
    bio: Mapped[str | None] = mapped_column(Text)
    image: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)
    # The username as a reader sees it (conduit/identity.py), set whenever the username
    # is. Nullable only for the previous release's inserts during a rollout (migration
    # f2b8d4c6a913); unique, so look-alikes lose even a race.
    username_skeleton: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("uq_users_username_skeleton", "username_skeleton", unique=True),
        # The database's lower(), as the app compares emails (conduit/api/users.py).
        Index("uq_users_lower_email", func.lower(email), unique=True),
    )

    @validates("username")
    def _keep_skeleton(self, _key: str, username: str) -> str:
        self.username_skeleton = username_skeleton(username)
        return username


class Follow(db.Model):
    __tablename__ = "follows"

    follower_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    # The feed filters by follower (the primary key's first column); profiles look up
    # by the followed user, hence the second index.
    followed_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class Article(db.Model):
    __tablename__ = "articles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(300), unique=True)
    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    # The names of its tags, kept equal to article_tags by triggers (see the migration
    # b7d41f0c9e25): written by the database, never by the app. Sorted on PostgreSQL;
    # SQLite's JSON array is sorted when read.
    tag_list: Mapped[list[str]] = mapped_column(
        ARRAY(String(64)).with_variant(JSON(), "sqlite"), server_default=FetchedValue()
    )
    # How many users favorited it, kept by triggers on favorites (migration e4a7c2d9b158):
    # written by the database, never by the app.
    favorites_count: Mapped[int] = mapped_column(Integer, server_default=FetchedValue())

    __table_args__ = (
        # Every list is "newest first", globally or per author (the feed and ?author=);
        # with the id in the index a page's ids are found without reading rows.
        Index("ix_articles_created_at_id", "created_at", "id"),
        Index("ix_articles_author_id_created_at_id", "author_id", "created_at", "id"),
    )


class ArticleTotal(db.Model):
    """How many articles exist: one row, kept by triggers on `articles` (migration
    c5e2a9d7f310), written by the database, never by the app. A page of the whole list
    reads it instead of counting every article; a missing row means 0."""

    __tablename__ = "article_totals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    articles: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)


class Tag(db.Model):
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)


class ArticleTag(db.Model):
    """A tag on an article. tagList is returned sorted by name (the conformance suite
    expects that order), so no position is stored."""

    __tablename__ = "article_tags"

    article_id: Mapped[int] = mapped_column(
        ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True)
    # The article's created_at, copied by a trigger (migration d8f3b6a1c402), never by
    # the app: a page of ?tag= is then a walk of the index below in the lists' order.
    article_created_at: Mapped[datetime | None] = mapped_column(
        Timestamp, server_default=FetchedValue()
    )

    __table_args__ = (
        Index(
            "ix_article_tags_tag_id_article_created_at_article_id",
            "tag_id",
            "article_created_at",
            "article_id",
        ),
    )


class Favorite(db.Model):
    __tablename__ = "favorites"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    # An article's favorites by article (its deletion's cascade, the migration's backfill):
    # the primary key only helps per user.
    article_id: Mapped[int] = mapped_column(
        ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class Comment(db.Model):
    __tablename__ = "comments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[str] = mapped_column(Text)
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)

    __table_args__ = (Index("ix_comments_article_id_created_at", "article_id", "created_at"),)


def _insert(model: type[db.Model]):
    """The dialect's INSERT, which has ON CONFLICT (PostgreSQL and SQLite alike)."""
    if db.engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(model)


def insert_ignoring_duplicates(model: type[db.Model], rows: list[dict]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING on PostgreSQL and SQLite alike.

    Following, favoriting and tagging are idempotent, and two concurrent requests doing
    the same must not fail on the primary key.
    """
    if not rows:
        return
    db.session.execute(_insert(model).on_conflict_do_nothing(), rows)


def insert_unless_taken(model: type[db.Model], row: dict, unique: str) -> int | None:
    """The new row's id, or None when another row (committed meanwhile too) holds its
    `unique` column. No exception and no savepoint: the transaction goes on either way
    (pysqlite's SAVEPOINT outside a transaction would commit on release)."""
    statement = (
        _insert(model).values(row).on_conflict_do_nothing(index_elements=[unique])
    ).returning(model.id)
    return db.session.execute(statement).scalar()
