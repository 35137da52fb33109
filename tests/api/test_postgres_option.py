"""`pytest --postgres`: the database tests against the server at TEST_DATABASE_URL."""

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from tests.support import ROOT, in_ci


def pytest_run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_postgres_without_a_url_stops_in_one_line():
    result = pytest_run("--postgres", "tests/api/test_tags.py", TEST_DATABASE_URL="")
    assert result.returncode == 4  # pytest's usage error
    assert result.stderr.strip() == "ERROR: --postgres needs TEST_DATABASE_URL (a PostgreSQL URL)"


@pytest.fixture
def sql_ascii_database_url() -> Iterator[str]:
    """A database beside TEST_DATABASE_URL's whose text encoding is SQL_ASCII."""
    url = os.environ.get("TEST_DATABASE_URL", "")
    if not url.startswith("postgres"):
        message = "TEST_DATABASE_URL (a PostgreSQL URL) is not set; .ci/run sets it"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    name = f"conduit_ascii_{secrets.token_hex(4)}"
    admin_url = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL(
                "CREATE DATABASE {} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' "
                "TEMPLATE template0"
            ).format(sql.Identifier(name))
        )
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def test_postgres_run_stops_in_one_line_on_a_server_that_is_not_utf8(sql_ascii_database_url):
    # A cluster made under the POSIX locale stores SQL_ASCII: the suite used to fail in
    # hundreds of errors there.
    result = pytest_run(
        "--postgres", "tests/api/test_tags.py", TEST_DATABASE_URL=sql_ascii_database_url
    )
    assert result.returncode == 1
    assert "server stores text as SQL_ASCII; the tests need UTF8" in result.stdout
    assert "Error" not in result.stdout
