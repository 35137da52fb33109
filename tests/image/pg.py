"""PostgreSQL helpers of the image tier."""

from __future__ import annotations

import psycopg
from sqlalchemy.engine import make_url


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (postgresql+psycopg://...) as the plain libpq URL psycopg takes."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def connect(url: str, **kwargs) -> psycopg.Connection:
    return psycopg.connect(libpq_url(url), **kwargs)
