"""The server chooses slugs: never a route word, never a 409 for a title taken meanwhile."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from conduit.extensions import db


@pytest.mark.parametrize("title", ["Feed", "feed", "FEED!"])
def test_an_article_titled_like_a_route_word_is_readable_by_its_slug(
    client, register, create_article, title
):
    author = register("author")
    slug = create_article(author, title=title)["slug"]
    assert slug != "feed"
    assert slug.startswith("feed-")
    response = client.get(f"/api/articles/{slug}")
    assert response.status_code == 200
    assert response.get_json()["article"]["title"] == title


def test_an_ordinary_title_keeps_its_plain_slug(client, register, create_article):
    assert create_article(register("author"), title="Feeding cats")["slug"] == "feeding-cats"


@pytest.mark.postgres
def test_a_title_taken_by_a_concurrent_create_gets_a_suffixed_slug(
    app, database_url, client, register, create_article
):
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite runs one writer at a time: run with pytest --postgres")
    author = register("author")
    with app.app_context():
        engine = db.engine
    answers = {}
    # Another create, not yet committed, holds the slug: ours passes the check for a free
    # slug, then waits on the unique index and loses when that one commits.
    with engine.connect() as other:
        other.execute(
            text(
                "INSERT INTO articles (slug, title, description, body, author_id,"
                " created_at, updated_at) SELECT 'same-title', 'Same title', 'd', 'b', id,"
                " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM users WHERE username = 'author'"
            )
        )

        def create():
            answers["create"] = app.test_client().post(
                "/api/articles",
                json={"article": {"title": "Same title", "description": "d", "body": "b"}},
                headers=author.headers,
            )

        creating = threading.Thread(target=create)
        creating.start()
        creating.join(timeout=1)
        assert creating.is_alive()  # queued on the unique index
        other.commit()
        creating.join(timeout=30)
    assert answers["create"].status_code == 201, answers["create"].get_json()
    slug = answers["create"].get_json()["article"]["slug"]
    assert slug.startswith("same-title-")
    assert client.get(f"/api/articles/{slug}").status_code == 200
