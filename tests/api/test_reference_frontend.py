"""The requests of the reference frontend, gothinkster/react-redux-realworld-example-app
(commit ee72eba, read with the `search` tool), and what its users need from the answers.

Its shapes, from the source:
- src/agent.js: every request goes through superagent with
  `req.set('authorization', `Token ${token}`)` once a token is stored; a body is a plain
  object, which superagent sends as JSON (Content-Type: application/json). The home
  page lists `/articles?limit=10&offset=0`, or `/articles/feed?limit=10&offset=0` with a
  token; `Articles.update` sends `{article: omitSlug(article)}` to `/articles/<slug>`.
- src/components/Editor.js sends `{title, description, body, tagList}`, and
  src/reducers/editor.js's ADD_TAG appends the tag input on every Enter, so pressing it
  on an empty input adds "" to tagList. The tag pills have no way to remove "" either.
- src/components/App.js sends the stored token with every request from page load on: a
  token that expired or was signed with a rotated CONDUIT_SECRET stays in localStorage.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from tests.support import TEST_SECRET

INVALID_TOKEN = 'Token error="invalid_token"'


def agent_headers(token: str | None) -> dict[str, str]:
    """What agent.js's tokenPlugin adds (superagent keeps the name's lower case)."""
    return {"authorization": f"Token {token}"} if token else {}


def editor_article(tags: list[str], title: str = "How to train your dragon") -> dict:
    return {
        "article": {
            "title": title,
            "description": "Ever wonder how?",
            "body": "You have to believe",
            "tagList": tags,
        }
    }


# --- blank tags ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "tags", [["real", ""], ["real", "", ""], ["", "real"], ["real", "   "], ["real", " \u00a0"]]
)
def test_blank_tags_from_the_editor_are_dropped(client, register, tags):
    alice = register("alice")
    response = client.post(
        "/api/articles", json=editor_article(tags), headers=agent_headers(alice.token)
    )
    assert response.status_code == 201, response.get_json()
    article = response.get_json()["article"]
    assert article["tagList"] == ["real"]
    assert client.get("/api/tags").get_json() == {"tags": ["real"]}
    stored = client.get(f"/api/articles/{article['slug']}").get_json()["article"]
    assert stored["tagList"] == ["real"]


def test_an_update_from_the_editor_drops_blank_tags(client, register, create_article):
    alice = register("alice")
    slug = create_article(alice, tags=["old"])["slug"]
    # Articles.update: omitSlug() sets slug to undefined, which JSON leaves out.
    response = client.put(
        f"/api/articles/{slug}",
        json=editor_article(["old", "", "new"]),
        headers=agent_headers(alice.token),
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["article"]["tagList"] == ["new", "old"]


def test_only_blank_tags_leave_the_article_without_tags(client, register):
    alice = register("alice")
    response = client.post(
        "/api/articles", json=editor_article(["", " "]), headers=agent_headers(alice.token)
    )
    assert response.status_code == 201
    assert response.get_json()["article"]["tagList"] == []


@pytest.mark.parametrize(
    ("tags", "field"),
    [(["real", "\t"], "tagList[1]"), (["real", 5], "tagList[1]"), (["x" * 65], "tagList[0]")],
)
def test_tags_that_are_not_blank_text_are_still_refused(client, register, tags, field):
    alice = register("alice")
    response = client.post(
        "/api/articles", json=editor_article(tags), headers=agent_headers(alice.token)
    )
    assert response.status_code == 422
    assert field in response.get_json()["errors"]


def test_twenty_tags_besides_blank_ones_are_accepted(client, register):
    alice = register("alice")
    tags = [f"t{i:02}" for i in range(20)] + ["", ""]
    response = client.post(
        "/api/articles", json=editor_article(tags), headers=agent_headers(alice.token)
    )
    assert response.status_code == 201
    assert len(response.get_json()["article"]["tagList"]) == 20


# --- a token that no longer verifies -------------------------------------------------


def expired_token(user_id: int = 1) -> str:
    past = datetime.now(UTC) - timedelta(days=8)
    claims = {"sub": str(user_id), "iat": past, "exp": past + timedelta(days=7)}
    return jwt.encode(claims, TEST_SECRET, algorithm="HS256")


def token_of_another_secret(user_id: int = 1) -> str:
    """Signed with the secret before a CONDUIT_SECRET rotation."""
    now = datetime.now(UTC)
    claims = {"sub": str(user_id), "iat": now, "exp": now + timedelta(days=7)}
    return jwt.encode(claims, "the-secret-before-rotation-" + "x" * 20, algorithm="HS256")


STALE_TOKENS = {
    "expired": (expired_token, "token has expired"),
    "rotated-secret": (token_of_another_secret, "token is invalid"),
    "malformed": (lambda user_id=1: "not.a.jwt", "token is invalid"),
}


@pytest.fixture(params=sorted(STALE_TOKENS))
def stale(request, register):
    """(alice, a stale token of hers, the reason the API gives)."""
    alice = register("alice")
    make, reason = STALE_TOKENS[request.param]
    return alice, make(), reason


# The reads agent.js makes where the spec's openapi.yml sets no `security`: login optional.
PUBLIC_READS = [
    "/api/articles?limit=10&offset=0",
    "/api/articles?tag=dragons&limit=10&offset=0",
    "/api/articles?author=bob&limit=5&offset=0",
    "/api/articles?favorited=bob&limit=5&offset=0",
    "/api/articles/{slug}",
    "/api/articles/{slug}/comments",
    "/api/profiles/bob",
    "/api/tags",
]


@pytest.mark.parametrize("path", PUBLIC_READS)
def test_public_reads_with_a_stale_token_answer_as_to_no_one(
    client, register, create_article, stale, path
):
    alice, token, reason = stale
    bob = register("bob")
    slug = create_article(bob, tags=["dragons"])["slug"]
    client.post(
        f"/api/articles/{slug}/comments",
        json={"comment": {"body": "Nice"}},
        headers=agent_headers(bob.token),
    )
    # What the token's user would see differs from the anonymous answer: favorited and
    # following are true for her (the stale tokens name her id).
    client.post(f"/api/articles/{slug}/favorite", headers=agent_headers(alice.token))
    client.post("/api/profiles/bob/follow", headers=agent_headers(alice.token))
    assert client.get(f"/api/articles/{slug}", headers=agent_headers(alice.token)).get_json()[
        "article"
    ]["favorited"]
    url = path.format(slug=slug)
    anonymous = client.get(url)
    response = client.get(url, headers=agent_headers(token))
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == anonymous.get_json()
    if path != "/api/tags":  # the tag cloud never reads the token
        assert response.headers["WWW-Authenticate"] == (
            f'{INVALID_TOKEN}, error_description="{reason}"'
        )
    assert "WWW-Authenticate" not in anonymous.headers


def test_a_stale_token_on_a_missing_article_is_still_404(client, stale):
    _, token, _ = stale
    response = client.get("/api/articles/no-such-article", headers=agent_headers(token))
    assert response.status_code == 404
    assert response.headers["WWW-Authenticate"].startswith(INVALID_TOKEN)


def test_a_browser_script_can_read_the_challenge(client, stale):
    _, token, _ = stale
    origin = "http://localhost:4100"  # the frontend's dev server (its package.json)
    response = client.get(
        "/api/articles?limit=10&offset=0", headers={**agent_headers(token), "Origin": origin}
    )
    exposed = {h.strip() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert "WWW-Authenticate" in exposed


# The requests agent.js makes that need login (`security: Token` in openapi.yml).
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/user", None),
        ("GET", "/api/articles/feed?limit=10&offset=0", None),
        ("POST", "/api/articles", editor_article(["real", ""])),
        ("POST", "/api/profiles/alice/follow", None),
        ("POST", "/api/articles/{slug}/favorite", None),
        ("POST", "/api/articles/{slug}/comments", {"comment": {"body": "Nice"}}),
        ("DELETE", "/api/articles/{slug}", None),
    ],
)
def test_routes_that_need_login_refuse_a_stale_token(
    client, create_article, stale, method, path, body
):
    alice, token, reason = stale
    slug = create_article(alice)["slug"]
    response = client.open(
        path.format(slug=slug), method=method, json=body, headers=agent_headers(token)
    )
    assert response.status_code == 401
    assert response.get_json() == {"errors": {"token": [reason]}}
    assert response.headers["WWW-Authenticate"] == (
        f'{INVALID_TOKEN}, error_description="{reason}"'
    )
    assert client.get(f"/api/articles/{slug}").status_code == 200  # nothing was deleted


def test_a_malformed_authorization_header_is_still_401_on_public_reads(client):
    # Not a stale token but a client that sends something else than the spec's scheme.
    response = client.get("/api/articles", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Token"


def test_a_valid_token_still_personalises_public_reads(client, register, create_article):
    alice, bob = register("alice"), register("bob")
    slug = create_article(bob)["slug"]
    client.post(f"/api/articles/{slug}/favorite", headers=agent_headers(alice.token))
    response = client.get("/api/articles?limit=10&offset=0", headers=agent_headers(alice.token))
    assert response.get_json()["articles"][0]["favorited"] is True
    assert "WWW-Authenticate" not in response.headers
