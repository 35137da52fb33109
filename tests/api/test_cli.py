"""`flask test` and `flask lint` as a developer runs them."""

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from tests.support import ROOT, in_ci

FLASK = [sys.executable, "-m", "flask"]


def run(args, cwd, **env):
    environment = {**os.environ, **env}
    environment.pop("FLASK_APP", None)  # the commands work without an app
    return subprocess.run(
        args, cwd=cwd, env=environment, capture_output=True, text=True, timeout=120
    )


def test_lint_fails_on_findings_and_passes_clean_code(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text("[tool.ruff]\n")
    (tmp_path / "clean.py").write_text('print("ok")\n')
    assert run([*FLASK, "lint"], tmp_path).returncode == 0
    (tmp_path / "dirty.py").write_text("import os\n")
    result = run([*FLASK, "lint"], tmp_path)
    assert result.returncode != 0
    assert "F401" in result.stdout


def test_test_command_fails_when_no_test_runs(tmp_path: Path):
    (tmp_path / "tests").mkdir()
    result = run([*FLASK, "test", "-p", "no:cacheprovider"], tmp_path)
    assert result.returncode == 5  # pytest's "no tests collected" is not a pass


def test_test_command_needs_a_url_for_postgres(tmp_path: Path):
    result = run([*FLASK, "test", "--postgres"], tmp_path, TEST_DATABASE_URL="")
    assert result.returncode != 0
    assert "TEST_DATABASE_URL" in result.stderr


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
    result = run(
        [*FLASK, "test", "--postgres", "-p", "no:cacheprovider", "tests/api/test_tags.py"],
        ROOT,
        TEST_DATABASE_URL=sql_ascii_database_url,
    )
    assert result.returncode == 1
    assert "server stores text as SQL_ASCII; the tests need UTF8" in result.stdout
    assert "Error" not in result.stdout
