"""Articles: list, feed, create, read, update, delete, favorite."""

from __future__ import annotations

import secrets
from functools import cache

from flask import Blueprint, current_app
from slugify import slugify
from sqlalchemy import delete, select

from ..auth import current_user, required_viewer_id, viewer_id
from ..errors import APIError
from ..extensions import db
from ..models import (
    Article,
    ArticleTag,
    Favorite,
    Tag,
    insert_ignoring_duplicates,
    insert_unless_taken,
    utcnow,
)
from ..queries import ArticleFilters, get_article, list_articles
from ..schemas import ArticleCreateSchema, ArticleUpdateSchema, dedupe, load_body
from . import lookup, params

blueprint = Blueprint("articles", __name__)


@blueprint.get("/articles")
def articles():
    limit, offset = params.page()
    filters = ArticleFilters(
        tag=params.text_arg("tag"),
        author=params.text_arg("author"),
        favorited=params.text_arg("favorited"),
    )
    page, total = list_articles(filters, viewer_id(), limit, offset)
    return {"articles": page, "articlesCount": total}


@blueprint.get("/articles/feed")
def feed():
    limit, offset = params.page()
    viewer = required_viewer_id()
    page, total = list_articles(ArticleFilters(feed_of=viewer), viewer, limit, offset)
    return {"articles": page, "articlesCount": total}


ARTICLES_PREFIX = "/api/articles/"
# A slug taken between our check and our insert (a concurrent create of the same title)
# is retried with a random suffix; 2**32 suffixes make a third collision implausible.
SLUG_ATTEMPTS = 3


@cache
def _route_words(rules: tuple[str, ...]) -> frozenset[str]:
    """The fixed path segments right under /api/articles/ ("feed"): no slug may be one."""
    segments = (rule.removeprefix(ARTICLES_PREFIX).split("/")[0] for rule in rules)
    return frozenset(s for s in segments if s and not s.startswith("<"))


def _is_free(candidate: str, article_id: int | None) -> bool:
    rules = tuple(
        r.rule for r in current_app.url_map.iter_rules() if r.rule.startswith(ARTICLES_PREFIX)
    )
    if candidate in _route_words(rules):
        return False
    owner = db.session.execute(select(Article.id).where(Article.slug == candidate)).scalar()
    return owner is None or owner == article_id


def _unique_slug(title: str, article_id: int | None = None, suffixed: bool = False) -> str:
    """The title's slug, or the slug with a random suffix when another article or a route
    has it (or when `suffixed`: the plain one was just taken concurrently)."""
    base = slugify(title, max_length=200, word_boundary=True) or "article"
    candidate = f"{base}-{secrets.token_hex(4)}" if suffixed else base
    while not _is_free(candidate, article_id):
        candidate = f"{base}-{secrets.token_hex(4)}"
    return candidate


def _set_tags(article_id: int, tags: list[str]) -> None:
    db.session.execute(delete(ArticleTag).where(ArticleTag.article_id == article_id))
    if not tags:
        return
    insert_ignoring_duplicates(Tag, [{"name": name} for name in tags])
    ids = dict(db.session.execute(select(Tag.name, Tag.id).where(Tag.name.in_(tags))).all())
    db.session.execute(
        ArticleTag.__table__.insert(),
        [{"article_id": article_id, "tag_id": ids[name]} for name in tags],
    )


def _article_response(slug: str, viewer: int | None) -> dict:
    return {"article": lookup.found(get_article(slug, viewer), "article")}


@blueprint.post("/articles")
def create_article():
    user = current_user()
    data = load_body("article", ArticleCreateSchema())
    now = utcnow()
    row = {
        "title": data["title"],
        "description": data["description"],
        "body": data["body"],
        "author_id": user.id,
        "created_at": now,
        "updated_at": now,
    }
    for attempt in range(SLUG_ATTEMPTS):
        slug = _unique_slug(data["title"], suffixed=attempt > 0)
        new_id = insert_unless_taken(Article, {**row, "slug": slug}, unique="slug")
        if new_id is not None:
            break
    else:
        raise APIError(409, {"body": ["could not choose a free slug; retry this request"]})
    _set_tags(new_id, dedupe(data["tagList"]))
    response = _article_response(slug, user.id)
    db.session.commit()
    return response, 201


@blueprint.get("/articles/<slug>")
def article(slug: str):
    return _article_response(params.path_key(slug, "article"), viewer_id())


@blueprint.put("/articles/<slug>")
def update_article(slug: str):
    article = lookup.owned_article(slug, current_user())
    data = load_body("article", ArticleUpdateSchema())
    if "title" in data and data["title"] != article.title:
        article.slug = _unique_slug(data["title"], article.id)
    for field in ("title", "description", "body"):
        if field in data:
            setattr(article, field, data[field])
    if "tagList" in data:
        _set_tags(article.id, dedupe(data["tagList"]))
    article.updated_at = utcnow()
    db.session.flush()
    response = _article_response(article.slug, article.author_id)
    db.session.commit()
    return response


@blueprint.delete("/articles/<slug>")
def delete_article(slug: str):
    article = lookup.owned_article(slug, current_user())
    # Comments, favorites and tag links go with it (ON DELETE CASCADE).
    db.session.execute(delete(Article).where(Article.id == article.id))
    db.session.commit()
    return "", 204


@blueprint.post("/articles/<slug>/favorite")
def favorite(slug: str):
    user = current_user()
    article_id = lookup.article_id(slug, lookup.NO_KEY_UPDATE)
    insert_ignoring_duplicates(Favorite, [{"user_id": user.id, "article_id": article_id}])
    response = _article_response(slug, user.id)
    db.session.commit()
    return response


@blueprint.delete("/articles/<slug>/favorite")
def unfavorite(slug: str):
    user = current_user()
    article_id = lookup.article_id(slug, lookup.NO_KEY_UPDATE)
    db.session.execute(
        delete(Favorite).where(Favorite.user_id == user.id, Favorite.article_id == article_id)
    )
    response = _article_response(slug, user.id)
    db.session.commit()
    return response
