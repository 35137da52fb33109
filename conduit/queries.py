"""Read side of the API: whole pages in a constant number of SQL statements.

A page of articles is one statement whatever its size: each row carries the article,
its author, the favorites count, the viewer's favorited/following flags, the article's
tag names (kept on the article by the database: migration b7d41f0c9e25) and the number
of all matches (an uncorrelated subquery the database computes once). Only a page past
the end, which has no row to carry the total, costs a second statement. Rows become
plain dicts for the JSON encoder; no ORM objects are built on this path. Where the
statements run is conduit/reads.py's business.

The token names its user by id and reads never load that user's row; instead every
statement run for a signed-in viewer carries a `viewer_exists` column, so a token whose
user was deleted gets 401 at no extra statement (only an empty result costs one more).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Integer, Select, String, bindparam, exists, false, func, select
from sqlalchemy.orm import aliased

from .auth import user_gone
from .extensions import db
from .models import Article, ArticleTag, ArticleTotal, Comment, Favorite, Follow, Tag, User
from .reads import read


def isoformat(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z, the form the spec's clients parse."""
    if moment.utcoffset():  # naive and UTC values are already in UTC
        moment = moment.astimezone(UTC)
    # isoformat() is several times faster than strftime(); cut off any "+00:00".
    return moment.isoformat(timespec="milliseconds")[:23] + "Z"


# The API's timestamp form, written by PostgreSQL: to_char() costs it less than
# isoformat() costs Python, which showed as the largest leaf in py-spy's profile of
# the article list (40 timestamps a page). MS truncates to milliseconds like isoformat().
_ISO_UTC = 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'


def _timestamp(column, postgresql: bool):
    """The column as the API shows it: text on PostgreSQL, a datetime on SQLite (which
    _iso() then formats)."""
    if not postgresql:
        return column
    return func.to_char(func.timezone("UTC", column), _ISO_UTC).label(column.key)


def _iso(value) -> str:
    return value if isinstance(value, str) else isoformat(value)


def profile_dict(username: str, bio: str | None, image: str | None, following: bool) -> dict:
    return {"username": username, "bio": bio, "image": image, "following": bool(following)}


def _viewer():
    return bindparam("viewer_id", type_=Integer)


def _following(has_viewer: bool, author_id_column):
    if not has_viewer:
        return false()
    return exists().where(Follow.follower_id == _viewer(), Follow.followed_id == author_id_column)


# The viewer's own row under another name, so it never correlates with an author's.
_viewer_user = aliased(User, name="viewer")


def _viewer_columns(has_viewer: bool) -> list:
    """[viewer_exists] for a signed-in viewer, to be checked by _check_viewer()."""
    if not has_viewer:
        return []
    return [exists().where(_viewer_user.id == _viewer()).label("viewer_exists")]


@functools.cache
def _viewer_statement() -> Select:
    return select(_viewer_user.id).where(_viewer_user.id == _viewer())


def _check_viewer(rows: Sequence, viewer_id: int | None, position: int = -1) -> None:
    """401 when the token's user no longer exists; `rows` came with a viewer_exists column
    at `position` (the last one, unless a column was added after _viewer_columns())."""
    if viewer_id is None:
        return
    # Without a row to carry the column, one statement more asks for the user alone.
    if not (rows[0][position] if rows else read(_viewer_statement(), {"viewer_id": viewer_id})):
        raise user_gone()


@dataclass(frozen=True)
class ArticleFilters:
    tag: str | None = None
    author: str | None = None
    favorited: str | None = None
    feed_of: int | None = None  # user id whose followed authors make the feed

    def shape(self) -> tuple[bool, bool, bool, bool]:
        """Which filters are set: the statement depends on that, not on their values."""
        return (
            self.tag is not None,
            self.author is not None,
            self.favorited is not None,
            self.feed_of is not None,
        )

    def params(self) -> dict:
        values = {"tag": self.tag, "author": self.author, "favorited": self.favorited}
        values["feed_of"] = self.feed_of
        return {name: value for name, value in values.items() if value is not None}


def _conditions(tag: bool, author: bool, favorited: bool, feed: bool) -> list:
    conditions = []
    if tag:
        conditions.append(
            Article.id.in_(
                select(ArticleTag.article_id)
                .join(Tag, Tag.id == ArticleTag.tag_id)
                .where(Tag.name == bindparam("tag", type_=String))
            )
        )
    if author:
        author_id = select(User.id).where(User.username == bindparam("author", type_=String))
        conditions.append(Article.author_id == author_id.scalar_subquery())
    if favorited:
        conditions.append(
            Article.id.in_(
                select(Favorite.article_id)
                .join(User, User.id == Favorite.user_id)
                .where(User.username == bindparam("favorited", type_=String))
            )
        )
    if feed:
        conditions.append(
            Article.author_id.in_(
                select(Follow.followed_id).where(
                    Follow.follower_id == bindparam("feed_of", type_=Integer)
                )
            )
        )
    return conditions


def _postgresql() -> bool:
    return db.engine.dialect.name == "postgresql"


def _tag_names(value: list[str]) -> list[str]:
    # In code point order on every backend (SQLite's array is in link order).
    return sorted(value)


def _article_select(postgresql: bool, has_viewer: bool, include_body: bool) -> Select:
    favorited = (
        exists().where(Favorite.article_id == Article.id, Favorite.user_id == _viewer())
        if has_viewer
        else false()
    )
    columns = [
        Article.id,
        Article.slug,
        Article.title,
        Article.description,
        _timestamp(Article.created_at, postgresql),
        _timestamp(Article.updated_at, postgresql),
        User.username,
        User.bio,
        User.image,
        Article.favorites_count,
        favorited.label("favorited"),
        _following(has_viewer, Article.author_id).label("following"),
        Article.tag_list,
    ]
    if include_body:
        columns.append(Article.body)
    columns += _viewer_columns(has_viewer)
    return select(*columns).join(User, User.id == Article.author_id)


# Statements are built once per shape (backend, anonymous or not, which filters) and
# reused with new parameter values: building one costs more than running it, and a
# reused statement also keeps its cache key (SQLAlchemy's compiled-SQL lookup).


# The shape (ArticleFilters.shape()) of ?tag= alone, which reads tag links, not articles.
_TAG_ALONE = (True, False, False, False)


def _count_statement(shape: tuple, conditions: list) -> Select:
    """The number of articles matching the filters."""
    if not any(shape):
        # Kept by the database as articles come and go; no row yet means none.
        return select(func.coalesce(select(ArticleTotal.articles).scalar_subquery(), 0))
    # A link row stands for one article (primary key) that exists (foreign key): when
    # the tag alone filters, count its links and leave the articles table alone.
    if shape == _TAG_ALONE:
        return (
            select(func.count())
            .select_from(ArticleTag)
            .join(Tag, Tag.id == ArticleTag.tag_id)
            .where(Tag.name == bindparam("tag", type_=String))
        )
    # It reads `articles` on its own: never correlated with a query it is part of.
    return select(func.count()).select_from(Article).where(*conditions).correlate(None)


def _page_bounds(statement: Select) -> Select:
    # Written into the SQL rather than sent as parameters: with `LIMIT $1` PostgreSQL
    # plans every execution afresh (a generic plan cannot know the page is small), with
    # `LIMIT 20` it plans once per prepared statement and reuses the plan.
    return statement.limit(bindparam("limit", type_=Integer, literal_execute=True)).offset(
        bindparam("offset", type_=Integer, literal_execute=True)
    )


def _newest_matching_ids(shape: tuple, conditions: list) -> Select:
    """The ids of the matching articles, newest first (as every list is ordered)."""
    if shape == _TAG_ALONE:
        # Its links carry their article's created_at, and their index
        # (tag_id, article_created_at, article_id) yields them newest first, so the walk
        # stops after the page instead of sorting every link of a popular tag.
        tag_id = select(Tag.id).where(Tag.name == bindparam("tag", type_=String))
        return (
            select(ArticleTag.article_id)
            .where(ArticleTag.tag_id == tag_id.scalar_subquery())
            .order_by(ArticleTag.article_created_at.desc(), ArticleTag.article_id.desc())
        )
    return (
        select(Article.id).where(*conditions).order_by(Article.created_at.desc(), Article.id.desc())
    )


@functools.cache
def _page_statements(postgresql: bool, has_viewer: bool, shape: tuple) -> tuple[Select, Select]:
    """(a page with the total as a column, the total alone) for these filters."""
    conditions = _conditions(*shape)
    newest_first = (Article.created_at.desc(), Article.id.desc())
    count = _count_statement(shape, conditions)
    page = _article_select(postgresql, has_viewer, include_body=False).add_columns(
        count.scalar_subquery().label("total")
    )
    if not conditions:
        # Newest first is a walk of ix_articles_created_at_id that stops after the page.
        page = _page_bounds(page.order_by(*newest_first))
    else:
        # A deferred join: the page's ids first, which the filters and the indexes find
        # without reading article rows, then rows, counts and tags for those ids only
        # (rather than for every match before the sort keeps a page of them).
        page_ids = _page_bounds(_newest_matching_ids(shape, conditions))
        page = page.where(Article.id.in_(page_ids.correlate(None))).order_by(*newest_first)
    return page, count


@functools.cache
def _article_statement(postgresql: bool, has_viewer: bool) -> Select:
    return _article_select(postgresql, has_viewer, include_body=True).where(
        Article.slug == bindparam("slug", type_=String)
    )


def _viewer_params(viewer_id: int | None) -> dict:
    return {} if viewer_id is None else {"viewer_id": viewer_id}


def _article_dict(row, include_body: bool) -> dict:
    # By position, in _article_select's column order: unpacking costs half as much as
    # reading the columns by name, which shows on a page of 20.
    (_, slug, title, description, created, updated, username, bio, image) = row[:9]
    (favorites_count, favorited, following, tag_list) = row[9:13]
    article = {
        "slug": slug,
        "title": title,
        "description": description,
        "tagList": _tag_names(tag_list),
        "createdAt": _iso(created),
        "updatedAt": _iso(updated),
        "favorited": bool(favorited),
        "favoritesCount": favorites_count,
        "author": profile_dict(username, bio, image, following),
    }
    if include_body:
        article["body"] = row[13]
    return article


def list_articles(
    filters: ArticleFilters, viewer_id: int | None, limit: int, offset: int
) -> tuple[list[dict], int]:
    """One page of articles, newest first, and the number of all matches."""
    page, count = _page_statements(_postgresql(), viewer_id is not None, filters.shape())
    params = filters.params()
    values = {**params, **_viewer_params(viewer_id), "limit": limit, "offset": offset}
    rows = read(page, values)
    _check_viewer(rows, viewer_id, position=-2)  # the total comes after it
    if rows:
        total = rows[0][-1]  # the last column
    elif offset == 0:
        total = 0  # the same snapshot found no match at all
    else:
        total = read(count, params)[0][0]  # a page past the end
    return [_article_dict(row, include_body=False) for row in rows], total


def get_article(slug: str, viewer_id: int | None) -> dict | None:
    statement = _article_statement(_postgresql(), viewer_id is not None)
    rows = read(statement, {"slug": slug, **_viewer_params(viewer_id)})
    _check_viewer(rows, viewer_id)
    return _article_dict(rows[0], include_body=True) if rows else None


@functools.cache
def _profile_statement(has_viewer: bool) -> Select:
    following = _following(has_viewer, User.id).label("following")
    columns = [User.username, User.bio, User.image, following, *_viewer_columns(has_viewer)]
    return select(*columns).where(User.username == bindparam("username", type_=String))


def get_profile(username: str, viewer_id: int | None) -> dict | None:
    rows = read(
        _profile_statement(viewer_id is not None),
        {"username": username, **_viewer_params(viewer_id)},
    )
    _check_viewer(rows, viewer_id)
    if not rows:
        return None
    return profile_dict(*rows[0][:4])


def _comment_columns(postgresql: bool, has_viewer: bool) -> Select:
    return select(
        Comment.id,
        Comment.body,
        _timestamp(Comment.created_at, postgresql),
        _timestamp(Comment.updated_at, postgresql),
        User.username,
        User.bio,
        User.image,
        _following(has_viewer, Comment.author_id).label("following"),
        *_viewer_columns(has_viewer),
    )


@functools.cache
def _comments_statement(postgresql: bool, has_viewer: bool) -> Select:
    """The comments of the article at :slug, newest first. Outer joins from the article
    tell "no comments" (one row of NULLs) from "no article" (no row) in one statement."""
    return (
        _comment_columns(postgresql, has_viewer)
        .select_from(Article)
        .outerjoin(Comment, Comment.article_id == Article.id)
        .outerjoin(User, User.id == Comment.author_id)
        .where(Article.slug == bindparam("slug", type_=String))
        .order_by(Comment.created_at.desc(), Comment.id.desc())
    )


@functools.cache
def _comment_statement(postgresql: bool, has_viewer: bool) -> Select:
    return (
        _comment_columns(postgresql, has_viewer)
        .join(User, User.id == Comment.author_id)
        .where(Comment.id == bindparam("id", type_=Integer))
    )


def _comment_dict(row) -> dict:
    # By position, in _comment_columns' order.
    comment_id, body, created, updated, username, bio, image, following = row[:8]
    return {
        "id": comment_id,
        "createdAt": _iso(created),
        "updatedAt": _iso(updated),
        "body": body,
        "author": profile_dict(username, bio, image, following),
    }


def list_comments(slug: str, viewer_id: int | None) -> list[dict] | None:
    """All comments of the article at `slug`, newest first, in one statement; None when
    there is no such article."""
    rows = read(
        _comments_statement(_postgresql(), viewer_id is not None),
        {"slug": slug, **_viewer_params(viewer_id)},
    )
    _check_viewer(rows, viewer_id)
    if not rows:
        return None
    # One row of NULLs stands for an article without comments (see _comments_statement).
    return [_comment_dict(row) for row in rows if row[0] is not None]


def get_comment(comment_id: int, viewer_id: int | None) -> dict:
    (row,) = read(
        _comment_statement(_postgresql(), viewer_id is not None),
        {"id": comment_id, **_viewer_params(viewer_id)},
    )
    return _comment_dict(row)


@functools.cache
def _tags_statement() -> Select:
    uses = func.count(ArticleTag.article_id)
    return (
        select(Tag.name)
        .join(ArticleTag, ArticleTag.tag_id == Tag.id)
        .group_by(Tag.id, Tag.name)
        .order_by(uses.desc(), Tag.name)
    )


def all_tags() -> list[str]:
    """Tags in use, most used first (what a tag cloud shows), then by name."""
    return [name for (name,) in read(_tags_statement(), {})]
