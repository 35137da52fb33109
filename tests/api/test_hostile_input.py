"""Input a hostile or unlucky client sends: each bug found by probing (issue 14) as a
regression test, then properties over query parameters, path segments, bodies and
tokens that hold for any input Hypothesis generates: never a 5xx, always JSON.

The app and database are shared by the examples of one property (Hypothesis runs many
inside one test), which is what a server sees too; nothing here depends on the data.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import TEST_SECRET

# Function-scoped fixtures (the app, a registered user) are shared by the examples on
# purpose; no deadline, as PostgreSQL and a busy machine make timing uneven.
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

LIST_PATHS = ("/api/articles", "/api/articles/feed")


def token(sub, secret: str = TEST_SECRET) -> str:
    now = datetime.now(UTC)
    return jwt.encode(
        {"sub": sub, "iat": now, "exp": now + timedelta(hours=1)}, secret, algorithm="HS256"
    )


def assert_json_client_answer(response) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)
    assert response.is_json, response.get_data(as_text=True)
    if response.status_code >= 400:
        assert isinstance(response.get_json()["errors"], dict)


# --- the bugs found by probing ---------------------------------------------------


@pytest.mark.parametrize("path", LIST_PATHS)
@pytest.mark.parametrize(
    "query",
    ["limit=--5", "offset=--1", "limit=-", "offset=+1", "limit=1_0", "limit= 5", "offset=5%0A"],
)
def test_malformed_integers_are_422(client, register, path, query):
    alice = register("alice")
    response = client.get(f"{path}?{query}", headers=alice.headers)
    assert response.status_code == 422
    name = query.partition("=")[0]
    assert response.get_json()["errors"][name] == ["must be an integer"]


@pytest.mark.parametrize("username", ["jake\n", "jake\r", "ja\x7fke", "jake\t", "\njake"])
def test_usernames_match_the_whole_pattern(client, register, username):
    register("jake")
    response = client.post(
        "/api/users",
        json={"user": {"username": username, "email": "j2@example.com", "password": "12345678"}},
    )
    assert response.status_code == 422
    assert "username" in response.get_json()["errors"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/articles/", 200),
        ("/api/tags/", 200),
        ("/api//articles", 404),
        ("/api/articles//", 404),
    ],
)
def test_slashes_get_json_not_a_redirect(client, path, status):
    response = client.get(path)
    assert response.status_code == status
    assert response.is_json


@pytest.mark.parametrize("path", ["/api/profiles/jake%0A", "/api/profiles/jake%7F"])
def test_look_alike_profile_paths_are_404(client, register, path):
    register("jake")
    assert client.get(path).status_code == 404


@pytest.mark.parametrize("tag", ["\x7f", "py\x00thon", "a\nb", "\x85", "tab\there"])
def test_tags_refuse_control_characters(client, register, tag):
    alice = register("alice")
    article = {"title": "t", "description": "d", "body": "b", "tagList": [tag]}
    response = client.post("/api/articles", json={"article": article}, headers=alice.headers)
    assert response.status_code == 422
    assert response.get_json()["errors"]["tagList[0]"] == ["must not contain control characters"]


def test_multiline_fields_keep_line_breaks_and_tabs(client, register):
    alice = register("alice")
    article = {"title": "t", "description": "one\ntwo", "body": "a\r\n\tb", "tagList": []}
    response = client.post("/api/articles", json={"article": article}, headers=alice.headers)
    assert response.status_code == 201
    assert response.get_json()["article"]["body"] == "a\r\n\tb"
    article["body"] = "bell\x07"
    response = client.post("/api/articles", json={"article": article}, headers=alice.headers)
    assert response.status_code == 422


@pytest.mark.parametrize(
    "sub", ["2147483648", "-1", "0", "99999999999999999999999", "1e3", " 1", "\uff11"]
)
@pytest.mark.parametrize("path", ["/api/user", "/api/articles/feed"])
def test_token_subject_outside_the_id_range_is_401(client, register, path, sub):
    register("alice")
    response = client.get(path, headers={"Authorization": f"Token {token(sub)}"})
    assert response.status_code == 401
    assert response.get_json()["errors"]["token"] == ["token is invalid"]


@pytest.mark.parametrize(
    "sub", ["2147483648", "-1", "0", "99999999999999999999999", "1e3", " 1", "\uff11"]
)
def test_token_subject_outside_the_id_range_reads_anonymously(client, register, sub):
    register("alice")
    response = client.get("/api/articles", headers={"Authorization": f"Token {token(sub)}"})
    assert response.status_code == 200
    assert response.headers["WWW-Authenticate"].startswith('Token error="invalid_token"')


@pytest.mark.parametrize(
    "path",
    [
        "/api/user",
        "/api/articles",
        "/api/articles/feed",
        "/api/articles/{slug}",
        "/api/articles/no-such-article",
        "/api/articles/{slug}/comments",
        "/api/profiles/bob",
        "/api/profiles/nobody",
    ],
)
def test_token_of_a_deleted_user_is_401_everywhere(app, client, register, create_article, path):
    from conduit.extensions import db
    from conduit.models import User

    alice, bob = register("alice"), register("bob")
    slug = create_article(bob)["slug"]
    client.post("/api/profiles/bob/follow", headers=alice.headers)
    with app.app_context():
        db.session.execute(db.delete(User).where(User.username == "alice"))
        db.session.commit()
    response = client.get(path.format(slug=slug), headers=alice.headers)
    assert response.status_code == 401
    assert response.get_json()["errors"]["token"] == ["user no longer exists"]
    assert response.headers["WWW-Authenticate"] == "Token"


# --- properties: any input ---------------------------------------------------------


@pytest.fixture
def alice(register):
    """One user for all the examples of a property."""
    return register("alice")


@pytest.fixture
def article(alice, create_article):
    """The article at /api/articles/a-title, written by alice."""
    return create_article(alice, title="A title")


# Text as clients may send it: any code point but lone surrogates (no valid UTF-8 holds
# them), with control characters, digits and signs made likely.
any_text = st.text(
    st.one_of(
        st.characters(exclude_categories=["Cs"]),
        st.sampled_from("-+0123456789 \x00\n\x7f%./"),
    ),
    max_size=40,
)
# Near misses of an integer: signs, blanks, non-ASCII digits, too many digits.
integerish = st.from_regex(r"[-+ ]{0,3}[0-9\u0660-\u0669\uff11]{0,22}[\n .e]?", fullmatch=True)
query_names = st.sampled_from(["limit", "offset", "tag", "author", "favorited"])


@PROPERTY
@given(
    path=st.sampled_from(LIST_PATHS),
    params=st.lists(st.tuples(query_names, integerish | any_text), max_size=4),
    signed_in=st.booleans(),
)
def test_list_query_parameters_never_fail(client, alice, path, params, signed_in):
    headers = alice.headers if signed_in else {}
    query = "&".join(f"{name}={quote(value, safe='')}" for name, value in params)
    assert_json_client_answer(client.get(f"{path}?{query}", headers=headers))


@PROPERTY
@given(
    template=st.sampled_from(
        [
            ("get", "/api/articles/{}"),
            ("get", "/api/articles/{}/comments"),
            ("get", "/api/profiles/{}"),
            ("post", "/api/profiles/{}/follow"),
            ("delete", "/api/articles/{}/favorite"),
            ("delete", "/api/articles/{}"),
            ("delete", "/api/articles/a-title/comments/{}"),
        ]
    ),
    segment=(integerish | any_text).filter(lambda text: text not in ("", ".", "..")),
)
def test_path_segments_never_fail(client, alice, template, segment):
    method, path = template
    response = getattr(client, method)(path.format(quote(segment, safe="")), headers=alice.headers)
    assert_json_client_answer(response)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(any_text, children, max_size=3)
    ),
    max_leaves=8,
)
BODY_FIELDS = {
    "user": ["username", "email", "password", "bio", "image"],
    "article": ["title", "description", "body", "tagList"],
    "comment": ["body"],
}


@PROPERTY
@given(
    endpoint=st.sampled_from(
        [
            ("post", "/api/users", "user"),
            ("post", "/api/users/login", "user"),
            ("put", "/api/user", "user"),
            ("post", "/api/articles", "article"),
            ("put", "/api/articles/a-title", "article"),
            ("post", "/api/articles/a-title/comments", "comment"),
        ]
    ),
    data=st.data(),
)
def test_bodies_never_fail(client, alice, article, endpoint, data):
    method, path, envelope = endpoint
    fields = st.fixed_dictionaries({}, optional=dict.fromkeys(BODY_FIELDS[envelope], json_values))
    body = data.draw(
        st.one_of(
            st.fixed_dictionaries({envelope: fields}),
            st.fixed_dictionaries({envelope: json_values}),
            json_values,
        )
    )
    response = getattr(client, method)(
        path,
        # Encoded here: the app's own encoder refuses integers beyond 64 bits.
        data=json.dumps(body),
        content_type="application/json",
        headers=alice.headers,
    )
    assert_json_client_answer(response)


@PROPERTY
@given(
    raw=st.binary(max_size=200),
    content_type=st.sampled_from(["application/json", "text/plain"]),
)
def test_raw_bytes_never_fail(client, raw, content_type):
    response = client.post("/api/users", data=raw, content_type=content_type)
    assert_json_client_answer(response)


@PROPERTY
@given(
    sub=st.one_of(
        st.integers().map(str), st.integers(), any_text, st.none(), st.lists(st.integers())
    ),
    path=st.sampled_from(["/api/user", *LIST_PATHS, "/api/profiles/alice"]),
)
def test_any_signed_token_subject_is_401_or_served(client, alice, sub, path):
    response = client.get(path, headers={"Authorization": f"Token {token(sub)}"})
    assert_json_client_answer(response)
    assert response.status_code in (200, 401)
