"""PostgreSQL's limits on one request's work (settings._postgresql_limits).

A statement cancelled by statement_timeout or lock_timeout answers its own client with
a JSON 503, and the app goes on serving other requests meanwhile.
"""

from __future__ import annotations

import sys
import threading
import time
import types

import pytest
from sqlalchemy import create_engine, text

from conduit import create_app
from conduit.settings import ConfigError, load_settings
from tests.support import app_env, dispose_engines

GOOD_SECRET = "k" * 40
POSTGRES = "postgresql://u:p@db:5432/conduit"


def options(tmp_path, **env: str) -> str:
    settings = load_settings(
        tmp_path,
        {"CONDUIT_ENV": "production", "CONDUIT_SECRET": GOOD_SECRET, "DATABASE_URL": POSTGRES}
        | env,
    )
    return settings["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]["options"]


def test_every_postgresql_session_gets_the_limits(tmp_path):
    assert options(tmp_path) == (
        "-c statement_timeout=10s -c lock_timeout=5s -c idle_in_transaction_session_timeout=15s"
    )
    assert "statement_timeout=3s" in options(tmp_path, DB_STATEMENT_TIMEOUT="3")


@pytest.fixture
def under_uwsgi(monkeypatch):
    """What `import uwsgi` gives inside a worker: the options as bytes."""

    def with_harakiri(value: bytes | list[bytes]) -> None:
        monkeypatch.setitem(sys.modules, "uwsgi", types.SimpleNamespace(opt={"harakiri": value}))

    return with_harakiri


@pytest.mark.parametrize(("statement", "harakiri"), [("30", b"30"), ("31", [b"60", b"30"])])
def test_statement_timeout_must_stay_below_harakiri(tmp_path, under_uwsgi, statement, harakiri):
    under_uwsgi(harakiri)
    with pytest.raises(ConfigError, match=r"DB_STATEMENT_TIMEOUT \(\d+ s\) must be below"):
        options(tmp_path, DB_STATEMENT_TIMEOUT=statement)


def test_statement_timeout_below_harakiri_is_accepted(tmp_path, under_uwsgi):
    under_uwsgi(b"30")
    assert "statement_timeout=29s" in options(tmp_path, DB_STATEMENT_TIMEOUT="29")


@pytest.mark.parametrize(
    "value", ["0", "-1", "ten", "1.5"], ids=["zero", "negative", "word", "fraction"]
)
def test_invalid_limits_are_named(tmp_path, value):
    with pytest.raises(ConfigError, match="DB_LOCK_TIMEOUT"):
        options(tmp_path, DB_LOCK_TIMEOUT=value)


# --- against the server ----------------------------------------------------------


@pytest.fixture
def locked_article(database_url, register, create_article):
    """An article whose row another session holds locked (SELECT ... FOR UPDATE)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's limits: run with pytest --postgres")
    slug = create_article(register("alice"), title="Locked")["slug"]
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    connection = engine.connect()
    transaction = connection.begin()
    connection.execute(text("SELECT id FROM articles WHERE slug = :s FOR UPDATE"), {"s": slug})
    yield slug
    transaction.rollback()
    connection.close()
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize(
    "limits",
    [
        {"DB_LOCK_TIMEOUT": "1", "DB_STATEMENT_TIMEOUT": "20"},  # lock_timeout fires
        {"DB_LOCK_TIMEOUT": "20", "DB_STATEMENT_TIMEOUT": "1"},  # statement_timeout fires
    ],
    ids=["lock_timeout", "statement_timeout"],
)
def test_a_blocked_request_answers_503_and_others_are_served(
    database_url, register, locked_article, limits
):
    app = create_app(env=app_env(database_url, **limits))
    client = app.test_client()
    login = client.post(
        "/api/users/login",
        json={"user": {"email": "alice@example.com", "password": "correct horse battery"}},
    )
    headers = {"Authorization": f"Token {login.get_json()['user']['token']}"}
    answers = {}

    def blocked_update() -> None:
        answers["update"] = app.test_client().put(
            f"/api/articles/{locked_article}",
            json={"article": {"body": "new body"}},
            headers=headers,
        )

    started = time.monotonic()
    update = threading.Thread(target=blocked_update)
    update.start()
    # While the update waits for the lock, reads (and the article itself) are served.
    read = client.get(f"/api/articles/{locked_article}")
    assert read.status_code == 200
    assert time.monotonic() - started < 1
    update.join(timeout=30)
    response = answers["update"]
    assert response.status_code == 503
    assert response.get_json() == {
        "errors": {"database": ["the request took too long, please retry"]}
    }
    assert response.headers["Retry-After"] == "1"
    assert 1 <= time.monotonic() - started < 10
    # Nothing was written, and the connection the cancelled statement used works again.
    assert client.get(f"/api/articles/{locked_article}").get_json()["article"]["body"] == "the body"
    dispose_engines(app)
