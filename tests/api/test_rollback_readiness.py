"""A release keeps serving a database the next release migrated (a rolling deploy, a
rollback), and refuses one behind it or of another lineage: real Alembic migrations,
the next release's built on top of this one's in a folder of its own."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from conduit import create_app, migration_lineage
from conduit.extensions import db
from tests.releases import MIGRATIONS, head_and_parent, release_migrations
from tests.support import app_env, dispose_engines, engine_events

HEAD, PARENT = head_and_parent()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """An empty database of its own (these tests migrate it in ways the others must not
    see): a SQLite file, or under --postgres a database beside TEST_DATABASE_URL's."""
    if not request.config.getoption("postgres"):
        yield f"sqlite:///{tmp_path / 'conduit.sqlite'}"
        return

    server = make_url(os.environ["TEST_DATABASE_URL"]).set(drivername="postgresql+psycopg")
    name = f"{server.database}_rollback_{secrets.token_hex(4)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def migrate(database_url: str, migrations: Path | str = MIGRATIONS, revision="heads") -> None:
    """`flask db upgrade` of the release whose migrations are in `migrations`."""
    app = create_app(env=app_env(database_url, CONDUIT_MIGRATIONS_DIR=str(migrations)))
    with app.app_context():
        upgrade(revision=revision)
    dispose_engines(app)


@pytest.fixture
def this_release(database_url):
    """The app of this release (its own migrations) on the test's database."""
    app = create_app(env=app_env(database_url, CONDUIT_MIGRATIONS_DIR=str(MIGRATIONS)))
    yield app
    dispose_engines(app)


def schema_upgrade(app):
    """`flask schema upgrade` of this release, as its init container runs it."""
    return app.test_cli_runner().invoke(args=["schema", "upgrade"])


def schema_check(app):
    return app.test_cli_runner().invoke(args=["schema", "check"])


def test_this_release_serves_a_database_the_next_release_migrated(
    tmp_path, database_url, this_release
):
    next_release = release_migrations(tmp_path / "next", "0f1e2d3c4b5a", HEAD)
    migrate(database_url, next_release)
    client = this_release.test_client()

    ready = client.get("/readyz")
    assert (ready.status_code, ready.get_json()) == (200, {"status": "ready"})
    # It reads and writes the tables the next release changed.
    user = client.post(
        "/api/users",
        json={"user": {"username": "ann", "email": "ann@example.com", "password": "x" * 12}},
    )
    assert user.status_code == 201, user.get_json()
    auth = {"Authorization": f"Token {user.get_json()['user']['token']}"}
    article = {"title": "Rolled back", "description": "d", "body": "b", "tagList": ["ops"]}
    created = client.post("/api/articles", json={"article": article}, headers=auth)
    assert created.status_code == 201, created.get_json()
    listed = client.get("/api/articles?tag=ops").get_json()
    assert [a["title"] for a in listed["articles"]] == ["Rolled back"]
    assert listed["articlesCount"] == 1

    checked = schema_check(this_release)
    assert (checked.exit_code, checked.output) == (
        0,
        f"database at 0f1e2d3c4b5a, which a later release migrated past this release's "
        f"head ({HEAD})\n",
    )
    # Its init container leaves the schema alone: no downgrade, no error.
    result = schema_upgrade(this_release)
    assert result.exit_code == 0, result.output
    assert result.output == (
        "database at 0f1e2d3c4b5a, which a later release migrated past this release's "
        f"head ({HEAD}): nothing to upgrade\n"
    )
    with this_release.app_context(), db.engine.connect() as connection:
        assert migration_lineage.database_heads(connection) == {"0f1e2d3c4b5a"}
        assert "subtitle" in {c["name"] for c in inspect(connection).get_columns("articles")}


def test_a_database_found_ahead_is_not_read_again_at_each_probe(
    tmp_path, database_url, this_release
):
    migrate(database_url, release_migrations(tmp_path / "next", "0f1e2d3c4b5a", HEAD))
    client = this_release.test_client()
    statements: list[str] = []
    with engine_events(this_release, "before_cursor_execute", lambda *a: statements.append(a[2])):
        assert client.get("/readyz").status_code == 200
        first = len(statements)
        assert client.get("/readyz").status_code == 200
    assert any(migration_lineage.TABLE in s for s in statements[:first])
    assert not any(migration_lineage.TABLE in s for s in statements[first:])
    assert len(statements) - first == 2  # SELECT 1, then alembic_version


def test_a_database_behind_this_release_is_not_ready_until_migrated(database_url, this_release):
    migrate(database_url, revision=PARENT)
    client = this_release.test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["reason"] == (
        f"database at {PARENT}, neither this release's head ({HEAD}) nor a descendant of "
        "it written by a later release: the migrations have not run yet, or another "
        "lineage of migrations wrote this database"
    )
    checked = schema_check(this_release)
    assert checked.exit_code == 1
    assert checked.output == f"Error: {response.get_json()['reason']}\n"
    result = schema_upgrade(this_release)
    assert result.exit_code == 0, result.output
    assert client.get("/readyz").status_code == 200
    assert schema_check(this_release).output == f"database at {HEAD}, this release's head\n"


def test_a_database_of_another_lineage_is_refused(tmp_path, database_url, this_release):
    # Another branch's migration on this release's parent: the database never had HEAD.
    other = release_migrations(tmp_path / "other", "a1b2c3d4e5f6", PARENT, drop=[HEAD])
    migrate(database_url, other)
    response = this_release.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["reason"].startswith(
        f"database at a1b2c3d4e5f6, neither this release's head ({HEAD}) nor a descendant"
    )
    result = schema_upgrade(this_release)
    assert result.exit_code == 1
    assert "Error: database at a1b2c3d4e5f6, neither this release's head" in result.output
    assert "Can't locate revision identified by 'a1b2c3d4e5f6'" in result.output


def test_without_the_recorded_lineage_a_later_head_is_not_trusted(
    tmp_path, database_url, this_release
):
    # As if migrated by a release that wrote no lineage: unknown, so not ready.
    migrate(database_url, release_migrations(tmp_path / "next", "0f1e2d3c4b5a", HEAD))
    with this_release.app_context(), db.engine.begin() as connection:
        connection.execute(text(f"DROP TABLE {migration_lineage.TABLE}"))
    assert this_release.test_client().get("/readyz").status_code == 503


def test_the_lineage_follows_upgrades_and_downgrades(tmp_path, database_url):
    next_release = release_migrations(tmp_path / "next", "0f1e2d3c4b5a", HEAD)
    app = create_app(env=app_env(database_url, CONDUIT_MIGRATIONS_DIR=str(next_release)))
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    chain = [s.revision for s in ScriptDirectory.from_config(config).walk_revisions()]

    def lineage() -> set[str]:
        with db.engine.connect() as connection:
            rows = connection.execute(text(f"SELECT revision FROM {migration_lineage.TABLE}"))
            return {row[0] for row in rows}

    with app.app_context():
        upgrade()
        assert lineage() == {"0f1e2d3c4b5a", *chain}
        downgrade(revision=HEAD)
        assert lineage() == set(chain)
        downgrade(revision="base")
        assert lineage() == set()
    dispose_engines(app)


def test_schema_commands_say_when_the_database_is_unreachable():
    app = create_app(env=app_env("postgresql+psycopg://nobody:x@127.0.0.1:1/none"))
    for command in ("upgrade", "check"):
        result = app.test_cli_runner().invoke(args=["schema", command])
        assert result.exit_code == 1
        [line] = result.output.splitlines()
        assert line.startswith("Error: database unreachable: connection failed")
