"""Profiles, following and unfollowing."""

from __future__ import annotations

from flask import Blueprint
from sqlalchemy import delete, select

from ..auth import current_user, viewer_id
from ..errors import not_found, unprocessable
from ..extensions import db
from ..models import Follow, User, insert_ignoring_duplicates
from ..queries import get_profile
from .params import path_key

blueprint = Blueprint("profiles", __name__)


def _profile_response(username: str, viewer: int | None):
    profile = get_profile(username, viewer)
    if profile is None:
        raise not_found("profile")
    return {"profile": profile}


def _user_id(username: str) -> int:
    user_id = db.session.execute(select(User.id).where(User.username == username)).scalar()
    if user_id is None:
        raise not_found("profile")
    return user_id


@blueprint.get("/profiles/<username>")
def profile(username: str):
    return _profile_response(path_key(username, "profile"), viewer_id())


@blueprint.post("/profiles/<username>/follow")
def follow(username: str):
    follower = current_user().id
    followed = _user_id(path_key(username, "profile"))
    if followed == follower:
        raise unprocessable("profile", "you cannot follow yourself")
    insert_ignoring_duplicates(Follow, [{"follower_id": follower, "followed_id": followed}])
    response = _profile_response(username, follower)
    db.session.commit()
    return response


@blueprint.delete("/profiles/<username>/follow")
def unfollow(username: str):
    follower = current_user().id
    followed = _user_id(path_key(username, "profile"))
    db.session.execute(
        delete(Follow).where(Follow.follower_id == follower, Follow.followed_id == followed)
    )
    response = _profile_response(username, follower)
    db.session.commit()
    return response
