"""The per-process cache of GET /api/tags: on in production, and how stale it can be."""

from __future__ import annotations

from pathlib import Path

import pytest

from conduit import create_app
from conduit.api import tags as tags_view
from conduit.extensions import db
from conduit.settings import PRODUCTION_TAGS_CACHE_SECONDS, load_settings
from tests.support import app_env

SECRET = "s" * 40


@pytest.mark.parametrize(
    ("env", "seconds"),
    [
        ({"CONDUIT_ENV": "production", "CONDUIT_SECRET": SECRET}, PRODUCTION_TAGS_CACHE_SECONDS),
        ({"CONDUIT_ENV": "production", "CONDUIT_SECRET": SECRET, "TAGS_CACHE_SECONDS": "0"}, 0),
        ({"CONDUIT_ENV": "development"}, 0),
        ({"CONDUIT_ENV": "testing"}, 0),
    ],
)
def test_the_cache_is_on_in_production_only_unless_set(env, seconds, tmp_path: Path):
    assert load_settings(tmp_path, env)["TAGS_CACHE_SECONDS"] == seconds


@pytest.fixture
def clock(monkeypatch):
    """A monotonic clock the test moves by hand."""
    now = [1000.0]
    monkeypatch.setattr(tags_view.time, "monotonic", lambda: now[0])
    tags_view._cache.clear()
    yield now
    tags_view._cache.clear()


def test_a_new_tag_shows_up_once_the_cached_list_expires(
    database_url, clock, register, create_article
):
    app = create_app(env=app_env(database_url, TAGS_CACHE_SECONDS="5"))
    client = app.test_client()
    author = register("writer")
    create_article(author, title="first", tags=["old"])

    assert client.get("/api/tags").get_json() == {"tags": ["old"]}
    create_article(author, title="second", tags=["new"])
    clock[0] += 4.9
    assert client.get("/api/tags").get_json() == {"tags": ["old"]}  # at most 5 s late
    clock[0] += 0.1
    assert sorted(client.get("/api/tags").get_json()["tags"]) == ["new", "old"]
    with app.app_context():
        db.engine.dispose()
