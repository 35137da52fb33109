"""Fixtures of the image tier: throwaway PostgreSQL databases on TEST_DATABASE_URL."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from tests.image.pg import connect
from tests.support import in_ci


@pytest.fixture
def postgres_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL", "")
    if not url.startswith(("postgresql", "postgres:")):
        message = "TEST_DATABASE_URL (a PostgreSQL URL) is not set; .ci/run sets it"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture
def fresh_database(postgres_url: str) -> Iterator[str]:
    """A new, empty database next to TEST_DATABASE_URL's (its role needs CREATEDB).

    Yields its SQLAlchemy URL; the database is dropped afterwards, even with
    processes still connected.
    """
    name = f"conduit_image_{secrets.token_hex(4)}"
    with connect(postgres_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with connect(postgres_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
