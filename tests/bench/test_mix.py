"""bench/mix.py, the memory goal's mix: real API requests of every kind, all of which
must succeed, in the proportions it states."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from bench import BenchError, mix
from conduit.extensions import db
from conduit.models import Article, Tag, User
from tests.bench.test_seed import PASSWORD, SMALL_ARGS, seed


@pytest.fixture
def reader(app, client) -> mix.Reader:
    """A seeded user, signed in, and an article and a tag of the seeded data."""
    assert seed(app, *SMALL_ARGS, "--seed", "3", "--password", PASSWORD).exit_code == 0
    with app.app_context():
        email = db.session.scalars(select(User.email).order_by(User.id)).first()
        slug = db.session.scalars(select(Article.slug).order_by(Article.id)).first()
        tag = db.session.scalars(select(Tag.name).order_by(Tag.id)).first()
    answer = client.post("/api/users/login", json={"user": {"email": email, "password": PASSWORD}})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return mix.Reader(email, PASSWORD, answer.get_json()["user"]["token"], slug, tag)


def sender(client, log: list | None = None) -> mix.Send:
    def send(method, path, headers, body):
        if log is not None:
            log.append((method, path.split("?")[0]))
        answer = client.open(path, method=method, headers=headers, json=body)
        return answer.status_code, answer.get_data()

    return send


def test_the_shares_are_of_a_hundred():
    assert sum(mix.MIX.values()) == 100
    assert all(share > 0 for share in mix.MIX.values())


def favorites(client, slug: str) -> int:
    return client.get(f"/api/articles/{slug}").get_json()["article"]["favoritesCount"]


def test_every_kind_is_sent_in_its_share_and_every_request_succeeds(app, client, reader):
    favorites_before = favorites(client, reader.slug)
    log: list = []
    sent = mix.run(sender(client, log), reader, requests=200)

    # Two rounds of a hundred: each kind exactly twice its share, after one request
    # that looks up the article's author.
    assert sent == {kind: 2 * share for kind, share in mix.MIX.items()}
    assert len(log) == 201
    assert ("POST", "/api/articles") in log
    assert ("POST", "/api/users/login") in log
    assert ("GET", "/metrics") in log
    assert ("DELETE", f"/api/articles/{reader.slug}/favorite") in log
    # What the writes left: the new articles, with the tag they were given, and the
    # favorite undone (as many unfavorites as favorites).
    listed = client.get(f"/api/articles?tag={reader.tag}&limit=100").get_json()["articles"]
    created = [a for a in listed if a["title"].startswith("Memory mix mix ")]
    assert len(created) == 2 * mix.MIX["article create"]
    assert favorites(client, reader.slug) == favorites_before
    signed_in = {"Authorization": f"Token {reader.token}"}
    assert not client.get(f"/api/articles/{reader.slug}", headers=signed_in).get_json()["article"][
        "favorited"
    ]


def test_the_same_interleaving_in_every_run(app, client, reader):
    first: list = []
    second: list = []
    mix.run(sender(client, first), reader, requests=120, nonce="one")
    mix.run(sender(client, second), reader, requests=120, nonce="two")
    assert first == second


def test_a_request_that_fails_stops_the_mix_and_is_named(reader):
    def send(method, path, headers, body):
        if path.startswith("/api/articles/") and method == "GET":
            author = {"article": {"author": {"username": "someone"}}}
            return 200, json.dumps(author).encode()
        return (503, b'{"errors": {"database": ["busy"]}}') if path == "/api/tags" else (200, b"{}")

    with pytest.raises(BenchError, match=r"GET /api/tags answered 503: .*busy"):
        mix.run(send, reader, requests=100)


def test_an_article_that_cannot_be_read_stops_the_mix_before_it_starts(reader):
    sent = []

    def send(method, path, headers, body):
        sent.append(path)
        return 404, b'{"errors": {"article": ["not found"]}}'

    with pytest.raises(BenchError, match="article to read answered 404"):
        mix.run(send, reader, requests=100)
    assert sent == [f"/api/articles/{reader.slug}"]
