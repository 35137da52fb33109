"""PostgreSQL helpers of the image and Postman tiers."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from tests.support import in_ci


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (postgresql+psycopg://...) as the plain libpq URL psycopg takes."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def connect(url: str, **kwargs) -> psycopg.Connection:
    return psycopg.connect(libpq_url(url), **kwargs)


def shared_server_url() -> str:
    """TEST_DATABASE_URL, the shared server's; skips (fails in CI) when it is not set."""
    url = os.environ.get("TEST_DATABASE_URL", "")
    if not url.startswith(("postgresql", "postgres:")):
        message = "TEST_DATABASE_URL (a PostgreSQL URL) is not set; .ci/run sets it"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return url


@contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new, empty database on server_url's server (its role needs CREATEDB).

    Yields its SQLAlchemy URL; the database is dropped afterwards, even with
    processes still connected.
    """
    name = f"{prefix}_{secrets.token_hex(4)}"
    with connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with connect(server_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
