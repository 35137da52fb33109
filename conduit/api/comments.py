"""Comments on an article."""

from __future__ import annotations

from flask import Blueprint
from sqlalchemy import delete, select

from ..auth import current_user, viewer_id
from ..errors import forbidden, not_found
from ..extensions import db
from ..models import Comment, utcnow
from ..queries import get_comment, list_comments
from ..schemas import CommentSchema, load_body
from . import params
from .articles import article_id_or_404

blueprint = Blueprint("comments", __name__)


@blueprint.get("/articles/<slug>/comments")
def comments(slug: str):
    viewer = viewer_id()
    found = list_comments(params.path_key(slug, "article"), viewer)
    if found is None:
        raise not_found("article")
    return {"comments": found}


@blueprint.post("/articles/<slug>/comments")
def add_comment(slug: str):
    user = current_user()
    article_id = article_id_or_404(slug)
    data = load_body("comment", CommentSchema())
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
    user = current_user()
    article_id = article_id_or_404(slug)
    number = params.path_id(comment_id, "comment")
    author_id = db.session.execute(
        select(Comment.author_id).where(Comment.id == number, Comment.article_id == article_id)
    ).scalar()
    if author_id is None:
        raise not_found("comment")
    if author_id != user.id:
        raise forbidden("comment", "only the author may delete this comment")
    db.session.execute(delete(Comment).where(Comment.id == number))
    db.session.commit()
    return "", 204
