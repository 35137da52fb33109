"""Comments on an article."""

from __future__ import annotations

from flask import Blueprint
from sqlalchemy import delete

from ..auth import current_user, viewer_id
from ..extensions import db
from ..models import Comment, utcnow
from ..queries import get_comment, list_comments
from ..schemas import CommentSchema, load_body
from . import lookup, params

blueprint = Blueprint("comments", __name__)


@blueprint.get("/articles/<slug>/comments")
def comments(slug: str):
    found = list_comments(params.path_key(slug, "article"), viewer_id())
    return {"comments": lookup.found(found, "article")}


@blueprint.post("/articles/<slug>/comments")
def add_comment(slug: str):
    user = current_user()
    data = load_body("comment", CommentSchema())
    article_id = lookup.article_id(slug, lookup.KEY_SHARE)
    now = utcnow()
    comment = Comment(
        body=data["body"], article_id=article_id, author_id=user.id, created_at=now, updated_at=now
    )
    db.session.add(comment)
    db.session.flush()
    response = {"comment": get_comment(comment.id, user.id)}
    db.session.commit()
    return response


@blueprint.delete("/articles/<slug>/comments/<comment_id>")
def delete_comment(slug: str, comment_id: str):
    number = lookup.owned_comment_id(slug, comment_id, current_user())
    db.session.execute(delete(Comment).where(Comment.id == number))
    db.session.commit()
    return "", 204
