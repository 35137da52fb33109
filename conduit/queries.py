"""Read side of the API: whole pages in a constant number of SQL statements.

A page of articles is one statement whatever its size: each row carries the article,
its author, the favorites count, the viewer's favorited/following flags, the article's
tags (aggregated in the database) and the number of all matches (an uncorrelated
subquery the database computes once). Only a page past the end, which has no row to
carry the total, costs a second statement. Rows become plain dicts for the JSON
encoder; no ORM objects are built on this path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from sqlalchemy import Select, exists, false, func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by

from .extensions import db
from .models import Article, ArticleTag, Comment, Favorite, Follow, Tag, User


def isoformat(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z, the form the spec's clients parse."""
    if moment.utcoffset():  # naive and UTC values are already in UTC
        moment = moment.astimezone(UTC)
    # isoformat() is several times faster than strftime(); cut off any "+00:00".
    return moment.isoformat(timespec="milliseconds")[:23] + "Z"


def profile_dict(username: str, bio: str | None, image: str | None, following: bool) -> dict:
    return {"username": username, "bio": bio, "image": image, "following": bool(following)}


def _following(viewer_id: int | None, author_id_column):
    if viewer_id is None:
        return false()
    return exists().where(Follow.follower_id == viewer_id, Follow.followed_id == author_id_column)


@dataclass(frozen=True)
class ArticleFilters:
    tag: str | None = None
    author: str | None = None
    favorited: str | None = None
    feed_of: int | None = None  # user id whose followed authors make the feed

    def conditions(self) -> list:
        conditions = []
        if self.tag is not None:
            conditions.append(
                Article.id.in_(
                    select(ArticleTag.article_id)
                    .join(Tag, Tag.id == ArticleTag.tag_id)
                    .where(Tag.name == self.tag)
                )
            )
        if self.author is not None:
            conditions.append(
                Article.author_id
                == select(User.id).where(User.username == self.author).scalar_subquery()
            )
        if self.favorited is not None:
            conditions.append(
                Article.id.in_(
                    select(Favorite.article_id)
                    .join(User, User.id == Favorite.user_id)
                    .where(User.username == self.favorited)
                )
            )
        if self.feed_of is not None:
            conditions.append(
                Article.author_id.in_(
                    select(Follow.followed_id).where(Follow.follower_id == self.feed_of)
                )
            )
        return conditions


def _postgresql() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def _tag_list(postgresql: bool):
    """The article's tag names as one column: a sorted array on PostgreSQL; a JSON array
    on SQLite, which cannot order inside an aggregate (see _tag_names)."""
    if postgresql:
        names = func.array_agg(aggregate_order_by(Tag.name, Tag.name))
    else:
        names = func.json_group_array(Tag.name)
    return (
        select(names)
        .select_from(ArticleTag)
        .join(Tag, Tag.id == ArticleTag.tag_id)
        .where(ArticleTag.article_id == Article.id)
        .correlate(Article)
        .scalar_subquery()
    )


def _tag_names(value) -> list[str]:
    if value is None:  # array_agg over no rows
        return []
    if isinstance(value, str):  # SQLite's JSON; its default collation sorts like Python
        return sorted(orjson.loads(value))
    return value


def _article_select(viewer_id: int | None, include_body: bool) -> Select:
    favorites_count = (
        select(func.count())
        .where(Favorite.article_id == Article.id)
        .correlate(Article)
        .scalar_subquery()
    )
    favorited = (
        false()
        if viewer_id is None
        else exists().where(Favorite.article_id == Article.id, Favorite.user_id == viewer_id)
    )
    columns = [
        Article.id,
        Article.slug,
        Article.title,
        Article.description,
        Article.created_at,
        Article.updated_at,
        User.username,
        User.bio,
        User.image,
        favorites_count.label("favorites_count"),
        favorited.label("favorited"),
        _following(viewer_id, Article.author_id).label("following"),
        _tag_list(_postgresql()).label("tag_list"),
    ]
    if include_body:
        columns.append(Article.body)
    return select(*columns).join(User, User.id == Article.author_id)


def _article_dict(row, include_body: bool) -> dict:
    article = {
        "slug": row.slug,
        "title": row.title,
        "description": row.description,
        "tagList": _tag_names(row.tag_list),
        "createdAt": isoformat(row.created_at),
        "updatedAt": isoformat(row.updated_at),
        "favorited": bool(row.favorited),
        "favoritesCount": row.favorites_count,
        "author": profile_dict(row.username, row.bio, row.image, row.following),
    }
    if include_body:
        article["body"] = row.body
    return article


def list_articles(
    filters: ArticleFilters, viewer_id: int | None, limit: int, offset: int
) -> tuple[list[dict], int]:
    """One page of articles, newest first, and the number of all matches."""
    conditions = filters.conditions()
    count = select(func.count()).select_from(Article).where(*conditions)
    rows = db.session.execute(
        _article_select(viewer_id, include_body=False)
        .add_columns(count.scalar_subquery().label("total"))
        .where(*conditions)
        .order_by(Article.created_at.desc(), Article.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    if rows:
        total = rows[0].total
    elif offset == 0:
        total = 0  # the same snapshot found no match at all
    else:
        total = db.session.execute(count).scalar_one()  # a page past the end
    return [_article_dict(row, include_body=False) for row in rows], total


def get_article(slug: str, viewer_id: int | None) -> dict | None:
    row = db.session.execute(
        _article_select(viewer_id, include_body=True).where(Article.slug == slug)
    ).one_or_none()
    if row is None:
        return None
    return _article_dict(row, include_body=True)


def get_profile(username: str, viewer_id: int | None) -> dict | None:
    row = db.session.execute(
        select(
            User.username, User.bio, User.image, _following(viewer_id, User.id).label("f")
        ).where(User.username == username)
    ).one_or_none()
    return None if row is None else profile_dict(row.username, row.bio, row.image, row.f)


def _comment_select(viewer_id: int | None) -> Select:
    return select(
        Comment.id,
        Comment.body,
        Comment.created_at,
        Comment.updated_at,
        User.username,
        User.bio,
        User.image,
        _following(viewer_id, Comment.author_id).label("following"),
    ).join(User, User.id == Comment.author_id)


def _comment_dict(row) -> dict:
    return {
        "id": row.id,
        "createdAt": isoformat(row.created_at),
        "updatedAt": isoformat(row.updated_at),
        "body": row.body,
        "author": profile_dict(row.username, row.bio, row.image, row.following),
    }


def list_comments(article_id: int, viewer_id: int | None) -> list[dict]:
    """All comments of an article, newest first, in one statement."""
    rows = db.session.execute(
        _comment_select(viewer_id)
        .where(Comment.article_id == article_id)
        .order_by(Comment.created_at.desc(), Comment.id.desc())
    )
    return [_comment_dict(row) for row in rows]


def get_comment(comment_id: int, viewer_id: int | None) -> dict:
    row = db.session.execute(_comment_select(viewer_id).where(Comment.id == comment_id)).one()
    return _comment_dict(row)


def all_tags() -> list[str]:
    """Tags in use, most used first (what a tag cloud shows), then by name."""
    uses = func.count(ArticleTag.article_id)
    rows = db.session.execute(
        select(Tag.name)
        .join(ArticleTag, ArticleTag.tag_id == Tag.id)
        .group_by(Tag.id, Tag.name)
        .order_by(uses.desc(), Tag.name)
    )
    return list(rows.scalars())
