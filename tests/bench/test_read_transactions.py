"""Read-only requests run their reads in autocommit; writes keep their transaction."""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from tests.support import engine_events


@contextmanager
def isolation_levels(app):
    """The isolation level option of the connection that runs each statement."""
    levels: list[str] = []

    def record(conn, *_args):
        levels.append(conn.get_execution_options().get("isolation_level", "default"))

    with engine_events(app, "before_cursor_execute", record):
        yield levels


@pytest.fixture
def article(register, create_article):
    author = register("author")
    return author, create_article(author, title="Read me", tags=["t"])


@pytest.mark.parametrize(
    "path",
    [
        "/api/articles",
        "/api/articles?tag=t",
        "/api/articles/read-me",
        "/api/articles/read-me/comments",
        "/api/profiles/author",
        "/api/tags",
    ],
)
def test_reads_of_a_get_request_run_in_autocommit(app, client, article, path):
    with isolation_levels(app) as levels:
        assert client.get(path).status_code == 200
    assert levels
    assert set(levels) == {"AUTOCOMMIT"}


def test_a_write_request_keeps_its_transaction_after_reads_in_autocommit(app, client, article):
    author, _ = article
    client.get("/api/articles")  # the pooled connection served a read-only request
    with isolation_levels(app) as levels:
        response = client.post(
            "/api/articles",
            json={"article": {"title": "Two", "description": "d", "body": "b", "tagList": ["x"]}},
            headers=author.headers,
        )
    assert response.status_code == 201
    assert len(levels) > 1
    assert "AUTOCOMMIT" not in levels
