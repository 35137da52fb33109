"""Pooled connections the database server closed (a restart, a terminated backend) are
dropped at checkout without a round trip (conduit/dbpool.py): no request fails once the
server is back."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from conduit import dbpool, reads
from tests.support import terminate_other_backends


@pytest.fixture
def postgres_app(app, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("connections closed by PostgreSQL: run with pytest --postgres")
    return app


@pytest.mark.postgres
def test_a_connection_the_server_closed_is_replaced_before_use(postgres_app, database_url):
    client = postgres_app.test_client()
    assert client.get("/api/articles").status_code == 200  # the pool now holds a connection
    assert terminate_other_backends(database_url) >= 1
    for path in ("/api/articles", "/api/tags", "/readyz"):
        assert client.get(path).status_code == 200, path


@pytest.mark.postgres
def test_without_the_check_the_first_request_fails(postgres_app, database_url):
    # The negative case: the check is what saves that request.
    for engine in reads.engines(postgres_app):  # the session's pool and the reads' pool
        event.remove(engine, "checkout", dbpool._check)
    client = postgres_app.test_client()
    assert client.get("/api/articles").status_code == 200
    terminate_other_backends(database_url)
    response = client.get("/api/articles")
    assert response.status_code == 503
    assert response.get_json() == {
        "errors": {"database": ["temporarily unavailable, please retry"]}
    }
    assert client.get("/api/articles").status_code == 200  # the pool recovers by itself
