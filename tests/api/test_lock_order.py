"""Writers below an article lock its row first, so a delete cannot deadlock with them
(issue 26), and a conflict PostgreSQL resolves by aborting one side is answered 409.

PostgreSQL only: SQLite runs one writer at a time and has no row locks.
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

from conduit.extensions import db

pytestmark = pytest.mark.postgres


@pytest.fixture
def postgres_app(app, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("row locks are PostgreSQL's: run with pytest --postgres")
    return app


def waiting_on_locks(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar()


def until(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the requests never queued on the article's row"
        time.sleep(0.02)


def in_thread(app, answers: dict, name: str, method: str, path: str, headers) -> threading.Thread:
    def send():
        answers[name] = getattr(app.test_client(), method)(path, headers=headers)

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def test_a_delete_queued_before_an_unfavourite_does_not_deadlock(
    postgres_app, register, create_article
):
    app = postgres_app
    author, reader = register("author"), register("reader")
    slug = create_article(author, title="contested")["slug"]
    client = app.test_client()
    assert client.post(f"/api/articles/{slug}/favorite", headers=reader.headers).status_code == 200
    with app.app_context():
        engine = db.engine
    answers: dict = {}
    # A third transaction (another reader's favorite, say) holds the article's row while
    # the delete queues for it, then the unfavourite. Before the fix the unfavourite took
    # its favorite's row first: the delete, granted the article, waited for that favorite
    # and the unfavourite for the article, and PostgreSQL aborted one of them.
    with engine.connect() as holder:
        holder.execute(
            text("SELECT 1 FROM articles WHERE slug = :slug FOR NO KEY UPDATE"), {"slug": slug}
        )
        deleting = in_thread(
            app, answers, "delete", "delete", f"/api/articles/{slug}", author.headers
        )
        until(lambda: waiting_on_locks(engine) == 1)
        unfavouriting = in_thread(
            app, answers, "unfavourite", "delete", f"/api/articles/{slug}/favorite", reader.headers
        )
        until(lambda: waiting_on_locks(engine) == 2)
        holder.commit()
    deleting.join(timeout=30)
    unfavouriting.join(timeout=30)
    assert answers["delete"].status_code == 204, answers["delete"].get_json()
    # The unfavourite waited for the delete and found no article.
    assert answers["unfavourite"].status_code == 404, answers["unfavourite"].get_json()


@pytest.mark.parametrize(
    ("sqlstate", "logged"), [("40P01", "deadlock detected"), ("40001", "serialization failure")]
)
def test_a_retryable_conflict_is_a_409_that_says_retry(postgres_app, caplog, sqlstate, logged):
    app = postgres_app

    # The server raises the error itself, so the driver classifies it as it would a real one.
    @app.get("/api/test-conflict")
    def conflict():
        db.session.execute(
            text(f"DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '{sqlstate}'; END $$")
        )

    response = app.test_client().get("/api/test-conflict")
    assert response.status_code == 409
    assert response.get_json() == {
        "errors": {"body": ["a concurrent change to the same data won; retry this request"]}
    }
    assert "unavailable" not in response.get_data(as_text=True)
    assert logged in caplog.text
    assert "unavailable" not in caplog.text
