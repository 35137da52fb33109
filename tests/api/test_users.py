"""Registration, login and the current user."""

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from tests.support import TEST_SECRET


def register_body(**overrides):
    user = {"username": "alice", "email": "alice@example.com", "password": "correct horse"}
    user.update(overrides)
    return {"user": user}


def test_register_returns_the_user_with_a_token(client):
    """Registration answers 201 with every User field; bio and image are null."""
    response = client.post("/api/users", json=register_body())
    assert response.status_code == 201
    user = response.get_json()["user"]
    assert user["username"] == "alice"
    assert user["email"] == "alice@example.com"
    assert user["bio"] is None
    assert user["image"] is None
    assert user["token"].count(".") == 2
    assert "password" not in user


@pytest.mark.parametrize("field", ["username", "email"])
def test_register_rejects_a_taken_username_or_email(client, register, field):
    """A second account with the same username or email is a 422 naming the field."""
    register("alice")
    body = register_body(username="other", email="other@example.com")
    body["user"][field] = "alice" if field == "username" else "alice@example.com"
    response = client.post("/api/users", json=body)
    assert response.status_code == 422
    assert response.get_json()["errors"] == {field: ["has already been taken"]}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"username": None}, "username"),
        ({"email": "not-an-email"}, "email"),
        ({"password": "short"}, "password"),
        ({"password": "x" * 73}, "password"),
        ({"username": "has space"}, "username"),
        ({"username": 42}, "username"),
        ({"email": ["a@b.c"]}, "email"),
        ({"username": "nul\x00byte"}, "username"),
        ({"username": "x" * 65}, "username"),
    ],
)
def test_register_validates_fields(client, change, field):
    """Invalid or wrong-typed fields are a 422 that names the field."""
    body = register_body()
    body["user"].update(change)
    body["user"] = {k: v for k, v in body["user"].items() if v is not None}
    response = client.post("/api/users", json=body)
    assert response.status_code == 422
    assert field in response.get_json()["errors"]


def test_register_missing_fields_are_all_reported(client):
    response = client.post("/api/users", json={"user": {}})
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == {"username", "email", "password"}


def test_login_returns_a_working_token(client, register):
    user = register("alice")
    response = client.post(
        "/api/users/login", json={"user": {"email": user.email, "password": user.password}}
    )
    assert response.status_code == 200
    token = response.get_json()["user"]["token"]
    me = client.get("/api/user", headers={"Authorization": f"Token {token}"})
    assert me.status_code == 200
    assert me.get_json()["user"]["username"] == "alice"


@pytest.mark.parametrize(
    "credentials",
    [
        {"email": "alice@example.com", "password": "wrong password"},
        {"email": "nobody@example.com", "password": "correct horse battery"},
    ],
)
def test_login_with_wrong_credentials_is_401(client, register, credentials):
    register("alice")
    response = client.post("/api/users/login", json={"user": credentials})
    assert response.status_code == 401
    assert response.get_json() == {"errors": {"email or password": ["is invalid"]}}
    # RFC 9110 section 15.5.2: a 401 carries a challenge naming the scheme.
    assert response.headers["WWW-Authenticate"] == "Token"


def test_current_user_echoes_the_token(client, register):
    user = register("alice")
    response = client.get("/api/user", headers=user.headers)
    assert response.status_code == 200
    assert response.get_json()["user"]["token"] == user.token


def test_update_user_changes_only_the_given_fields(client, register):
    user = register("alice")
    response = client.put(
        "/api/user",
        json={"user": {"bio": "I write", "image": "https://example.com/a.png"}},
        headers=user.headers,
    )
    assert response.status_code == 200
    body = response.get_json()["user"]
    assert body["bio"] == "I write"
    assert body["image"] == "https://example.com/a.png"
    assert body["username"] == "alice"
    cleared = client.put("/api/user", json={"user": {"bio": None}}, headers=user.headers)
    assert cleared.get_json()["user"]["bio"] is None


def test_update_password_changes_the_login(client, register):
    user = register("alice")
    client.put("/api/user", json={"user": {"password": "a new password"}}, headers=user.headers)
    old = client.post(
        "/api/users/login", json={"user": {"email": user.email, "password": user.password}}
    )
    new = client.post(
        "/api/users/login", json={"user": {"email": user.email, "password": "a new password"}}
    )
    assert old.status_code == 401
    assert new.status_code == 200


def test_update_to_a_taken_username_is_422_and_changes_nothing(client, register):
    alice = register("alice")
    register("bob")
    response = client.put(
        "/api/user", json={"user": {"username": "bob", "bio": "new bio"}}, headers=alice.headers
    )
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"username": ["has already been taken"]}
    me = client.get("/api/user", headers=alice.headers).get_json()["user"]
    assert (me["username"], me["bio"]) == ("alice", None)


def test_update_keeping_own_username_is_allowed(client, register):
    alice = register("alice")
    response = client.put("/api/user", json={"user": {"username": "alice"}}, headers=alice.headers)
    assert response.status_code == 200


def test_update_with_no_fields_is_422(client, register):
    alice = register("alice")
    response = client.put("/api/user", json={"user": {}}, headers=alice.headers)
    assert response.status_code == 422


INVALID = 'Token error="invalid_token", error_description="token is invalid"'
EXPIRED = 'Token error="invalid_token", error_description="token has expired"'


def _token(secret=TEST_SECRET, **claims):
    now = datetime.now(UTC)
    payload = {"sub": "1", "iat": now, "exp": now + timedelta(hours=1), **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


@pytest.mark.parametrize(
    ("header", "challenge"),
    [
        ("Token", "Token"),
        ("Token ", "Token"),
        ("Basic dXNlcjpwYXNz", "Token"),
        ("Token not.a.jwt", INVALID),
        (f"Token {_token(secret='another-secret-of-sufficient-length!!')}", INVALID),
        (f"Token {_token(exp=datetime.now(UTC) - timedelta(seconds=5))}", EXPIRED),
        (f"Token {_token(sub='not-a-number')}", INVALID),
        ("Token " + jwt.encode({"sub": "1"}, TEST_SECRET, algorithm="HS256"), INVALID),  # no exp
    ],
    ids=["no-token", "blank", "basic", "garbage", "wrong-key", "expired", "bad-sub", "no-exp"],
)
def test_bad_tokens_are_401(client, register, header, challenge):
    """Missing, malformed, expired or wrongly signed tokens: 401 with a JSON reason; a
    token that does not verify gets RFC 6750's invalid_token challenge."""
    register("alice")
    response = client.get("/api/user", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == challenge
    assert "token" in response.get_json()["errors"]


def test_token_of_a_deleted_user_is_401(app, client, register):
    from conduit.extensions import db
    from conduit.models import User

    alice = register("alice")
    with app.app_context():
        db.session.execute(db.delete(User))
        db.session.commit()
    assert client.get("/api/user", headers=alice.headers).status_code == 401


def test_bearer_scheme_is_accepted(client, register):
    alice = register("alice")
    response = client.get("/api/user", headers={"Authorization": f"Bearer {alice.token}"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/user"),
        ("put", "/api/user"),
        ("get", "/api/articles/feed"),
        ("post", "/api/articles"),
        ("put", "/api/articles/some-slug"),
        ("delete", "/api/articles/some-slug"),
        ("post", "/api/articles/some-slug/favorite"),
        ("delete", "/api/articles/some-slug/favorite"),
        ("post", "/api/articles/some-slug/comments"),
        ("delete", "/api/articles/some-slug/comments/1"),
        ("post", "/api/profiles/someone/follow"),
        ("delete", "/api/profiles/someone/follow"),
    ],
)
def test_login_required(client, method, path):
    """Every endpoint that acts as a user answers 401 without a token."""
    response = getattr(client, method)(path, json={})
    assert response.status_code == 401
    assert response.is_json


def test_a_token_that_passed_once_still_expires(client, register, monkeypatch):
    """Verified tokens are remembered per process (conduit/auth.py); the expiry is not."""
    from conduit import auth

    alice = register("alice")
    assert client.get("/api/user", headers=alice.headers).status_code == 200
    expires = jwt.decode(alice.token, options={"verify_signature": False})["exp"]
    monkeypatch.setattr(auth.time, "time", lambda: expires + 1)
    response = client.get("/api/user", headers=alice.headers)
    assert response.status_code == 401
    assert response.get_json() == {"errors": {"token": ["token has expired"]}}


def test_a_token_that_passed_under_one_secret_fails_under_another(client, register, database_url):
    from conduit import create_app
    from tests.support import app_env, dispose_engines

    alice = register("alice")
    assert client.get("/api/user", headers=alice.headers).status_code == 200
    other = create_app(env=app_env(database_url, CONDUIT_SECRET="x" * 48))
    try:
        response = other.test_client().get("/api/user", headers=alice.headers)
        assert response.status_code == 401
    finally:
        dispose_engines(other)


@pytest.mark.parametrize(
    "image",
    [
        "javascript:alert(1)",
        "data:image/svg+xml,<svg onload=alert(1)>",
        "file:///etc/passwd",
        "ftp://example.com/a.png",
        "//example.com/a.png",
        "a.png",
    ],
)
def test_a_profile_image_is_an_http_or_https_url(client, register, image):
    user = register("alice")
    response = client.put("/api/user", json={"user": {"image": image}}, headers=user.headers)
    assert response.status_code == 422
    assert response.get_json() == {"errors": {"image": ["must be an http or https URL"]}}
    assert client.get("/api/user", headers=user.headers).get_json()["user"]["image"] is None


@pytest.mark.parametrize("image", ["http://localhost:8080/a.png", "https://example.com/a.png", ""])
def test_web_urls_and_empty_images_are_kept(client, register, image):
    user = register("alice")
    response = client.put("/api/user", json={"user": {"image": image}}, headers=user.headers)
    assert response.status_code == 200
    assert response.get_json()["user"]["image"] == image


def test_an_email_differing_only_by_case_is_taken(client, register):
    register("jake")  # jake@example.com
    response = client.post(
        "/api/users",
        json={"user": {"username": "other", "email": "Jake@EXAMPLE.com", "password": "x" * 8}},
    )
    assert response.status_code == 422
    assert response.get_json() == {"errors": {"email": ["has already been taken"]}}
    other = register("other")
    moved = client.put(
        "/api/user", json={"user": {"email": "JAKE@example.com"}}, headers=other.headers
    )
    assert moved.status_code == 422
    assert moved.get_json() == {"errors": {"email": ["has already been taken"]}}


def test_login_matches_the_email_without_case(client, register):
    jake = register("jake")
    response = client.post(
        "/api/users/login",
        json={"user": {"email": "JAKE@Example.COM", "password": jake.password}},
    )
    assert response.status_code == 200
    assert response.get_json()["user"]["username"] == "jake"


@pytest.mark.parametrize(
    "look_alike",
    [
        "Jake",
        "JAKE",
        "\uff4a\uff41\uff4b\uff45",  # "jake" in full-width letters
    ],
)
def test_a_username_differing_by_case_or_width_is_refused(client, register, look_alike):
    register("jake")
    response = client.post(
        "/api/users",
        json={"user": {"username": look_alike, "email": "x@example.com", "password": "x" * 8}},
    )
    assert response.status_code == 422
    assert list(response.get_json()["errors"]) == ["username"]


def test_the_kelvin_sign_is_refused(client):
    response = client.post(
        "/api/users",
        json={"user": {"username": "\u212aate", "email": "k@example.com", "password": "x" * 8}},
    )
    assert response.status_code == 422
    assert response.get_json() == {
        "errors": {"username": ["must not contain full-width or compatibility characters"]}
    }
