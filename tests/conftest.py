"""Fixtures for every tier: an app on a fresh database per test, a client, users.

The database backend is SQLite unless CONDUIT_TEST_BACKEND=postgres (set by
`flask test --postgres`), which runs the same tests against TEST_DATABASE_URL.
The schema is built by the migrations, not by create_all(), so every run also
exercises them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from conduit import create_app, reads
from conduit.extensions import db
from tests.support import app_env, dispose_engines, engine_events

BACKEND = os.environ.get("CONDUIT_TEST_BACKEND", "sqlite")
# Tiers that take a whole machine (Docker, a container per run; PostgreSQL servers of
# their own) or programs of their own (uWSGI, newman, the scanners) run only when named on the
# command line, as noxfile.py does; `pytest tests` leaves them out.
WHOLE_MACHINE_TIERS = {
    Path(__file__).parent / "freshmachine",
    Path(__file__).parent / "image" / "test_image.py",
    Path(__file__).parent / "postman",
    Path(__file__).parent / "drill",
    Path(__file__).parent / "security",
}


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path not in WHOLE_MACHINE_TIERS:
        return None
    named = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    return not any(arg == collection_path or collection_path in arg.parents for arg in named)


def check_utf8(url: str) -> None:
    """Stop the run in one line unless the server stores text as UTF8.

    Asked through psycopg itself: on a SQL_ASCII server text arrives as bytes, which
    SQLAlchemy cannot even connect with.
    """
    import psycopg

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as connection:
        encoding = connection.execute("SHOW server_encoding").fetchone()[0]
    if isinstance(encoding, bytes):
        encoding = encoding.decode("ascii")
    if encoding != "UTF8":
        pytest.exit(
            f"TEST_DATABASE_URL's server stores text as {encoding}; the tests need UTF8 "
            "(.ci/start-postgres.sh creates a UTF8 cluster)",
            returncode=1,
        )


def reset_postgres_schema(url: str) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    if BACKEND == "postgres":
        url = os.environ.get("TEST_DATABASE_URL")
        if not url:
            pytest.fail("CONDUIT_TEST_BACKEND=postgres needs TEST_DATABASE_URL")
        check_utf8(url)
        reset_postgres_schema(url)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'conduit.sqlite'}"
    migrated = create_app(env=app_env(url))
    with migrated.app_context():
        upgrade()
        db.engine.dispose()
    return url


@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
    app = create_app(env=app_env(database_url))
    yield app
    with app.app_context():
        tables = [t.name for t in reversed(db.metadata.sorted_tables)]
        with db.engine.begin() as connection:
            if db.engine.dialect.name == "postgresql":
                connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            else:
                for table in tables:
                    connection.execute(text(f"DELETE FROM {table}"))
    dispose_engines(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@dataclass
class User:
    username: str
    email: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}


@pytest.fixture
def register(client: FlaskClient):
    """register("alice") -> User with a valid token."""

    def register(username: str, password: str = "correct horse battery") -> User:
        email = f"{username}@example.com"
        response = client.post(
            "/api/users",
            json={"user": {"username": username, "email": email, "password": password}},
        )
        assert response.status_code == 201, response.get_json()
        return User(username, email, password, response.get_json()["user"]["token"])

    return register


@pytest.fixture
def create_article(client: FlaskClient):
    """create_article(user, title=..., tags=[...]) -> the article JSON."""

    def create_article(user: User, title: str = "A title", tags=(), **fields) -> dict:
        article = {"title": title, "description": "about it", "body": "the body", **fields}
        if tags:
            article["tagList"] = list(tags)
        response = client.post("/api/articles", json={"article": article}, headers=user.headers)
        assert response.status_code == 201, response.get_json()
        return response.get_json()["article"]

    return create_article


@pytest.fixture
def count_statements(app: Flask):
    """with count_statements() as statements: ... -> statements holds the SQL run."""

    @contextmanager
    def counting() -> Iterator[list[str]]:
        statements: list[str] = []

        def record(conn, cursor, statement, parameters, context, executemany):
            statements.append(statement)

        # Read-only requests on PostgreSQL run on the read path's cursor (conduit/reads.py).
        reads.add_statement_listener(app, statements.append)
        try:
            with engine_events(app, "before_cursor_execute", record):
                yield statements
        finally:
            reads.remove_statement_listener(app, statements.append)

    return counting
