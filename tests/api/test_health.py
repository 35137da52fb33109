"""Liveness and readiness."""

import os
import sys
from pathlib import Path

from conduit import create_app, migration_heads
from tests.support import app_env

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def test_healthz_needs_no_database(tmp_path):
    app = create_app(env=app_env(f"sqlite:///{tmp_path}/missing-dir/x.sqlite"))
    response = app.test_client().get("/healthz")
    assert (response.status_code, response.get_json()) == (200, {"status": "ok"})


def test_ready_when_migrated(client):
    response = client.get("/readyz")
    assert (response.status_code, response.get_json()) == (200, {"status": "ready"})


def test_not_ready_before_migrations(tmp_path):
    app = create_app(env=app_env(f"sqlite:///{tmp_path}/empty.sqlite"))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["reason"].startswith("database not migrated yet (this release needs ")


def test_not_ready_when_the_database_is_unreachable():
    app = create_app(env=app_env("postgresql+psycopg://nobody:x@127.0.0.1:1/none"))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "reason": "database unreachable"}


def test_api_errors_when_the_database_is_unreachable_are_json_503():
    app = create_app(env=app_env("postgresql+psycopg://nobody:x@127.0.0.1:1/none"))
    response = app.test_client().get("/api/articles")
    assert response.status_code == 503
    assert response.get_json() == {
        "errors": {"database": ["temporarily unavailable, please retry"]}
    }
    assert response.headers["Retry-After"] == "1"


def test_health_endpoints_ignore_tokens(client):
    headers = {"Authorization": "Token garbage"}
    assert client.get("/healthz", headers=headers).status_code == 200
    assert client.get("/readyz", headers=headers).status_code == 200


def test_migration_heads_are_read_by_an_interpreter_outside_the_virtualenv(monkeypatch):
    # uWSGI sets sys.executable to the resolved interpreter binary (its log says
    # "detected binary path: /usr/bin/python3.11"), which is not the virtualenv's: the
    # master's child process must still find this package and Alembic.
    monkeypatch.setattr(sys, "executable", os.path.realpath(sys.executable))
    monkeypatch.delenv(migration_heads.ENV_VAR, raising=False)
    migration_heads.publish(str(MIGRATIONS))
    published = set(os.environ[migration_heads.ENV_VAR].split(","))
    assert published == migration_heads.read(str(MIGRATIONS))
    assert published  # at least one head: the comparison above is not of two empty sets
