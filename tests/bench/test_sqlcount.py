"""X-SQL-Statements: statements per request, only when the benchmark asks for it."""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from conduit import create_app
from conduit.settings import ConfigError
from tests.support import app_env, dispose_engines, engine_events

HEADER = "X-SQL-Statements"


@pytest.fixture
def counting_app(database_url):
    app = create_app(env=app_env(database_url, CONDUIT_SQL_STATEMENTS_HEADER="1"))
    yield app
    dispose_engines(app)


@contextmanager
def statements_sent(app, database_url):
    """The statements that reach the database driver, counted independently: by
    SQLAlchemy's events on SQLite; on PostgreSQL at psycopg's cursor, where the read
    path's statements (conduit/reads.py) pass too."""
    sent: list[str] = []
    if database_url.startswith("postgresql"):
        import psycopg

        with pytest.MonkeyPatch.context() as patch:
            execute = psycopg.Cursor.execute

            def counted(cursor, query, *args, **kwargs):
                sent.append(query)
                return execute(cursor, query, *args, **kwargs)

            patch.setattr(psycopg.Cursor, "execute", counted)
            yield sent
        return

    def record(_conn, _cursor, statement, *_args):
        sent.append(statement)

    with engine_events(app, "after_cursor_execute", record):
        yield sent


def test_the_header_is_off_by_default(client):
    assert HEADER not in client.get("/api/articles").headers
    assert HEADER not in client.get("/healthz").headers


def test_the_header_counts_what_the_app_sends_to_the_database(
    counting_app, database_url, register, create_article
):
    counting_client = counting_app.test_client()
    author = register("author")
    for n in range(3):
        create_article(author, title=f"post {n}", tags=["a", "b"])

    # A pool's first connection runs SQLAlchemy's own setup queries; not a request's.
    counting_client.get("/api/articles?limit=20")
    with statements_sent(counting_app, database_url) as statements:
        response = counting_client.get("/api/articles?limit=20")
    assert response.status_code == 200
    assert len(response.get_json()["articles"]) == 3
    assert response.headers[HEADER] == str(len(statements))
    assert int(response.headers[HEADER]) >= 1

    assert counting_client.get("/healthz").headers[HEADER] == "0"
    # Errors are reported too: the lookup of a missing article is one statement.
    missing = counting_client.get("/api/articles/no-such-article")
    assert (missing.status_code, missing.headers[HEADER]) == (404, "1")


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_an_unclear_switch_is_refused(value, tmp_path):
    with pytest.raises(ConfigError, match="CONDUIT_SQL_STATEMENTS_HEADER"):
        create_app(
            env=app_env(f"sqlite:///{tmp_path / 'x.sqlite'}", CONDUIT_SQL_STATEMENTS_HEADER=value)
        )
