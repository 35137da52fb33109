"""Token authentication: `Authorization: Token <jwt>`.

The token carries the user id; views that only need the id (lists, flags) never touch
the users table for it, and `current_user()` loads the row once per request when a view
needs it. Routes where login is optional ask `viewer_id()`, which reads a token that does
not verify as no token; routes that need login ask `required_viewer_id()` or
`current_user()`, which answer 401.
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime, timedelta

import bcrypt
import jwt
from flask import Response, after_this_request, current_app, g, request

from .errors import APIError, unauthorized
from .extensions import db
from .models import MAX_ROW_ID, User
from .validation import parse_integer

ALGORITHM = "HS256"
SCHEMES = ("token", "bearer")  # the spec says Token; Bearer is what other clients send


def hash_password(password: str) -> str:
    rounds = current_app.config["BCRYPT_LOG_ROUNDS"]
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


def check_password(password: str, password_hash: str | None) -> bool:
    if password_hash is None:
        # Spend the same time as a real check, so response time does not reveal which
        # emails are registered.
        bcrypt.checkpw(password.encode(), _dummy_hash())
        return False
    return bcrypt.checkpw(password.encode(), password_hash.encode())


@functools.cache
def _dummy_hash_for(rounds: int) -> bytes:
    return bcrypt.hashpw(b"not a password", bcrypt.gensalt(rounds))


def _dummy_hash() -> bytes:
    return _dummy_hash_for(current_app.config["BCRYPT_LOG_ROUNDS"])


def create_token(user_id: int) -> str:
    now = datetime.now(UTC)
    lifetime = timedelta(seconds=current_app.config["JWT_ACCESS_TOKEN_EXPIRES"])
    claims = {"sub": str(user_id), "iat": now, "exp": now + lifetime}
    return jwt.encode(claims, current_app.config["JWT_SECRET"], algorithm=ALGORITHM)


def _token_from_request() -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() not in SCHEMES or not token.strip():
        raise unauthorized("Authorization header must be 'Token <jwt>'")
    return token.strip()


class TokenRejected(Exception):
    """A token that does not verify: expired, wrongly signed, malformed, or a subject that
    names no possible user. Its message says which, for the client."""


def _decode(token: str) -> int:
    user_id, expires = _verified(token, current_app.config["JWT_SECRET"])
    if expires <= time.time():  # as PyJWT judges `exp`, with no leeway
        raise TokenRejected("token has expired")
    return user_id


# A worker sees the same tokens again and again, and verifying one (base64, JSON, the
# HMAC, the claims) was a large share of a signed-in list request's CPU (bench/HISTORY.md,
# third round).
# What a token says cannot change, so a verified one is remembered by the process,
# keyed by the secret too; only its expiry is judged again at each use. Failures are not
# remembered (lru_cache does not keep exceptions).
@functools.lru_cache(maxsize=1024)
def _verified(token: str, secret: str) -> tuple[int, int]:
    """(user id, expiry as a Unix time) of a token signed with `secret`."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]}
        )
    except jwt.ExpiredSignatureError:
        raise TokenRejected("token has expired") from None
    except jwt.InvalidTokenError:
        raise TokenRejected("token is invalid") from None
    # Signed by us, but checked like any input: the subject names a row that can exist.
    subject = claims["sub"]
    user_id = parse_integer(subject) if isinstance(subject, str) else None
    if user_id is None or not 1 <= user_id <= MAX_ROW_ID:
        raise TokenRejected("token is invalid")
    return user_id, int(claims["exp"])  # PyJWT has checked that int() takes it


def _authenticate() -> int | None:
    """The token's user id, None without a token; once per request.

    A malformed Authorization header is 401 on every route. A token that does not
    verify leaves the id None and its reason in g.token_rejected, for the caller to judge.
    """
    if "viewer_id" not in g:
        token = _token_from_request()
        g.token = token
        g.token_rejected = None
        try:
            g.viewer_id = None if token is None else _decode(token)
        except TokenRejected as rejected:
            g.viewer_id = None
            g.token_rejected = str(rejected)
    return g.viewer_id


def _invalid_token_challenge(reason: str) -> dict[str, str]:
    # RFC 6750 section 3's challenge, under the scheme this API uses.
    return {"WWW-Authenticate": f'Token error="invalid_token", error_description="{reason}"'}


def viewer_id() -> int | None:
    """The viewer's id on a route where login is optional, None when anonymous.

    A token that does not verify (expired, signed with a rotated CONDUIT_SECRET,
    malformed) counts as no token: the answer is the anonymous one, with an
    `invalid_token` challenge so the client can tell and drop its token. A client that
    kept a stale token still shows public pages (conduit/README.md).
    """
    user_id = _authenticate()
    reason = g.token_rejected
    if reason is not None and not g.get("token_challenge_added"):
        g.token_challenge_added = True

        @after_this_request
        def challenge(response: Response) -> Response:
            response.headers.update(_invalid_token_challenge(reason))
            return response

    return user_id


def user_gone() -> APIError:
    """A valid token whose user was deleted since: the same 401 on every endpoint."""
    return unauthorized("user no longer exists")


def required_viewer_id() -> int:
    """The viewer's id on a route that needs login; 401 without a token that verifies."""
    user_id = _authenticate()
    if g.token_rejected is not None:
        raise APIError(
            401, {"token": [g.token_rejected]}, _invalid_token_challenge(g.token_rejected)
        )
    if user_id is None:
        raise unauthorized("authentication required")
    return user_id


def current_user() -> User:
    """The authenticated user's row; 401 if the token's user no longer exists."""
    if "current_user" not in g:
        user = db.session.get(User, required_viewer_id())
        if user is None:
            raise user_gone()
        g.current_user = user
    return g.current_user
