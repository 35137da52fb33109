"""Articles: list, feed, create, read, update, delete, favorite."""

from __future__ import annotations

import secrets

from flask import Blueprint
from slugify import slugify
from sqlalchemy import delete, select

from ..auth import current_user, required_viewer_id, viewer_id
from ..extensions import db
from ..models import Article, ArticleTag, Favorite, Tag, insert_ignoring_duplicates, utcnow
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


def _unique_slug(title: str, article_id: int | None = None) -> str:
    """The title's slug, or the slug with a random suffix when another article has it."""
    base = slugify(title, max_length=200, word_boundary=True) or "article"
    candidate = base
    while True:
        owner = db.session.execute(select(Article.id).where(Article.slug == candidate)).scalar()
        if owner is None or owner == article_id:
            return candidate
        candidate = f"{base}-{secrets.token_hex(4)}"


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
    article = Article(
        slug=_unique_slug(data["title"]),
        title=data["title"],
        description=data["description"],
        body=data["body"],
        author_id=user.id,
        created_at=now,
        updated_at=now,
    )
    db.session.add(article)
    db.session.flush()
    _set_tags(article.id, dedupe(data["tagList"]))
    response = _article_response(article.slug, user.id)
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
    article_id = lookup.article_id(slug)
    insert_ignoring_duplicates(Favorite, [{"user_id": user.id, "article_id": article_id}])
    response = _article_response(slug, user.id)
    db.session.commit()
    return response


@blueprint.delete("/articles/<slug>/favorite")
def unfavorite(slug: str):
    user = current_user()
    article_id = lookup.article_id(slug)
    db.session.execute(
        delete(Favorite).where(Favorite.user_id == user.id, Favorite.article_id == article_id)
    )
    response = _article_response(slug, user.id)
    db.session.commit()
    return response
