"""Profiles, following and unfollowing."""

from __future__ import annotations

from flask import Blueprint
from sqlalchemy import delete

from ..auth import current_user, viewer_id
from ..errors import unprocessable
from ..extensions import db
from ..models import Follow, insert_ignoring_duplicates
from ..queries import get_profile
from . import lookup
from .params import path_key

blueprint = Blueprint("profiles", __name__)


def _profile_response(username: str, viewer: int | None):
    return {"profile": lookup.found(get_profile(username, viewer), "profile")}


@blueprint.get("/profiles/<username>")
def profile(username: str):
    return _profile_response(path_key(username, "profile"), viewer_id())


@blueprint.post("/profiles/<username>/follow")
def follow(username: str):
    follower = current_user().id
    followed = lookup.user_id(username)
    if followed == follower:
        raise unprocessable("profile", "you cannot follow yourself")
    insert_ignoring_duplicates(Follow, [{"follower_id": follower, "followed_id": followed}])
    response = _profile_response(username, follower)
    db.session.commit()
    return response


@blueprint.delete("/profiles/<username>/follow")
def unfollow(username: str):
    follower = current_user().id
    followed = lookup.user_id(username)
    db.session.execute(
        delete(Follow).where(Follow.follower_id == follower, Follow.followed_id == followed)
    )
    response = _profile_response(username, follower)
    db.session.commit()
    return response
