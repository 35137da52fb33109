"""Registration, login and the current user."""

from __future__ import annotations

from flask import Blueprint, g
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from ..auth import check_password, create_token, current_user, hash_password
from ..errors import invalid, unauthorized
from ..extensions import db
from ..identity import username_skeleton
from ..models import User
from ..schemas import LoginSchema, RegisterSchema, UserUpdateSchema, load_body

blueprint = Blueprint("users", __name__)


def user_response(user: User, token: str | None = None) -> dict:
    return {
        "user": {
            "email": user.email,
            "token": token or create_token(user.id),
            "username": user.username,
            "bio": user.bio,
            "image": user.image,
        }
    }


def same_email(email: str):
    """Emails compare without case (Jake@Example.com is jake@example.com), by the
    database's lower() on both sides, so PostgreSQL and SQLite each agree with themselves."""
    return func.lower(User.email) == func.lower(email)


def _ensure_unique(username: str | None, email: str | None, exclude_id: int | None = None):
    """422 naming each field already taken by another user: the same username without
    case, a look-alike (the same skeleton, conduit/identity.py), or the same email
    without case."""
    taken = {}
    if username is not None:
        # lower() too: the previous release's rows may have no skeleton yet.
        taken["username"] = or_(
            func.lower(User.username) == func.lower(username),
            User.username_skeleton == username_skeleton(username),
        )
    if email is not None:
        taken["email"] = same_email(email)
    if not taken:
        return
    query = select(
        User.username.label("existing"), *(clause.label(field) for field, clause in taken.items())
    ).where(or_(*taken.values()))
    if exclude_id is not None:
        query = query.where(User.id != exclude_id)
    errors: dict[str, list[str]] = {}
    for row in db.session.execute(query).mappings():
        if row.get("email"):
            errors["email"] = ["has already been taken"]
        if row.get("username"):
            same = row["existing"].casefold() == username.casefold()
            message = "has already been taken" if same else "looks like an existing username"
            errors.setdefault("username", []).append(message)
    if errors:
        errors = {field: sorted(set(messages)) for field, messages in errors.items()}
        raise invalid(errors)


def _commit_unless_taken(username: str | None, email: str | None, exclude_id: int | None = None):
    """Commit; when a concurrent request took the username or email first (the unique
    indexes refused this one), the same 422 as if it had come earlier."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        _ensure_unique(username, email, exclude_id)
        raise  # not a uniqueness the users' fields explain: the 409 of conduit/errors.py


@blueprint.post("/users")
def register():
    data = load_body("user", RegisterSchema())
    _ensure_unique(data["username"], data["email"])
    user = User(
        username=data["username"],
        email=data["email"],
        password_hash=hash_password(data["password"]),
    )
    db.session.add(user)
    _commit_unless_taken(data["username"], data["email"])
    return user_response(user), 201


@blueprint.post("/users/login")
def login():
    data = load_body("user", LoginSchema())
    # Accounts made before emails compared without case may differ only by case: the
    # exact spelling wins, then the oldest account.
    user = db.session.execute(
        select(User)
        .where(same_email(data["email"]))
        .order_by((User.email == data["email"]).desc(), User.id)
        .limit(1)
    ).scalar()
    if not check_password(data["password"], user.password_hash if user else None):
        raise unauthorized("is invalid", field="email or password")
    return user_response(user)


@blueprint.get("/user")
def get_current_user():
    return user_response(current_user(), g.get("token"))


@blueprint.put("/user")
def update_current_user():
    user = current_user()
    data = load_body("user", UserUpdateSchema())
    _ensure_unique(data.get("username"), data.get("email"), exclude_id=user.id)
    if "password" in data:
        user.password_hash = hash_password(data.pop("password"))
    for field, value in data.items():
        setattr(user, field, value)
    _commit_unless_taken(data.get("username"), data.get("email"), exclude_id=user.id)
    return user_response(user)
