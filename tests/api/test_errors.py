"""Bad input of every kind gets a JSON error, never a 500 or an HTML page."""

import json

import pytest


def test_malformed_json_is_422(client, register):
    response = client.post("/api/users", data=b'{"user": {', content_type="application/json")
    assert response.status_code == 422
    assert "body" in response.get_json()["errors"]


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"user=alice", "application/x-www-form-urlencoded"),
        (b'{"user": {}}', "text/plain"),
        (b"", None),
    ],
)
def test_non_json_body_is_422(client, data, content_type):
    response = client.post("/api/users", data=data, content_type=content_type)
    assert response.status_code == 422
    assert response.is_json


@pytest.mark.parametrize("body", [[], "user", 5, None, {"usr": {}}, {"user": []}, {"user": "x"}])
def test_wrong_envelope_is_422(client, body):
    response = client.post("/api/users", json=body)
    assert response.status_code == 422
    assert response.get_json()["errors"]


def test_invalid_utf8_and_lone_surrogates_are_422(client):
    for raw in (b'{"user": {"username": "\xff"}}', b'{"user": {"username": "\\ud800"}}'):
        response = client.post("/api/users", data=raw, content_type="application/json")
        assert response.status_code == 422, raw


def test_body_over_the_limit_is_413(app, client, register):
    alice = register("alice")
    big = "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    response = client.post(
        "/api/articles",
        json={"article": {"title": "t", "description": "d", "body": big}},
        headers=alice.headers,
    )
    assert response.status_code == 413
    assert response.is_json
    assert client.get("/api/articles").get_json()["articlesCount"] == 0


def test_unknown_route_and_method_are_json(client):
    missing = client.get("/api/nothing-here")
    assert (missing.status_code, missing.is_json) == (404, True)
    wrong_method = client.patch("/api/articles")
    assert (wrong_method.status_code, wrong_method.is_json) == (405, True)
    assert "Allow" in wrong_method.headers


def test_a_failed_request_writes_nothing(client, register, monkeypatch):
    """An error after the first write rolls the whole request back."""
    from conduit.api import articles

    alice = register("alice")

    def explode(*args, **kwargs):
        raise RuntimeError("failure after the insert")

    monkeypatch.setattr(articles, "_article_response", explode)
    response = client.post(
        "/api/articles",
        json={"article": {"title": "t", "description": "d", "body": "b", "tagList": ["t"]}},
        headers=alice.headers,
    )
    assert response.status_code == 500
    assert response.get_json() == {"errors": {"body": ["internal server error"]}}
    monkeypatch.undo()
    assert client.get("/api/articles").get_json()["articlesCount"] == 0
    assert client.get("/api/tags").get_json()["tags"] == []


HOSTILE_VALUES = [None, True, 0, -1, 1e308, 2**70, "", "\x00", "💥" * 50, [], {}, [{"a": 1}]]


@pytest.mark.parametrize("value", HOSTILE_VALUES)
@pytest.mark.parametrize(
    ("method", "path", "envelope", "field"),
    [
        ("post", "/api/users", "user", "username"),
        ("post", "/api/users", "user", "email"),
        ("post", "/api/users/login", "user", "email"),
        ("put", "/api/user", "user", "image"),
        ("post", "/api/articles", "article", "title"),
        ("post", "/api/articles", "article", "tagList"),
        ("put", "/api/articles/{slug}", "article", "body"),
        ("post", "/api/articles/{slug}/comments", "comment", "body"),
    ],
)
def test_hostile_field_values_never_500(
    client, register, create_article, method, path, envelope, field, value
):
    alice = register("alice")
    slug = create_article(alice)["slug"]
    valid = {
        "user": {"username": "bob", "email": "bob@example.com", "password": "long enough"},
        "article": {"title": "t", "description": "d", "body": "b"},
        "comment": {"body": "b"},
    }[envelope]
    response = getattr(client, method)(
        path.format(slug=slug),
        # Encoded here: the app's own encoder refuses integers beyond 64 bits.
        data=json.dumps({envelope: {**valid, field: value}}),
        content_type="application/json",
        headers=alice.headers,
    )
    assert response.status_code < 500
    assert response.is_json


@pytest.mark.parametrize("path", ["/api", "/api/"])
def test_the_api_root_lists_the_routes(client, path):
    """`make run` prints http://127.0.0.1:5000/api: it answers, and names every route."""
    response = client.get(path)
    assert response.status_code == 200
    index = response.get_json()
    assert index["spec"] == "RealWorld Conduit API 1.1.0"
    endpoints = set(index["endpoints"])
    # Every operation of the spec's openapi.yml, written as it writes its paths.
    for route in (
        "POST /api/users/login",
        "GET /api/articles/feed",
        "DELETE /api/articles/{slug}/comments/{comment_id}",
        "GET /api/profiles/{username}",
    ):
        assert route in endpoints
    assert len(endpoints) == 19  # the spec's 19 operations, nothing else (no /healthz)
    assert client.post("/api/").status_code == 405
