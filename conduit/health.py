"""Liveness and readiness for the orchestrator, outside the API and its auth."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app
from sqlalchemy import text

from . import migration_heads
from .extensions import db

log = logging.getLogger(__name__)
blueprint = Blueprint("health", __name__)


def _expected_heads() -> set[str]:
    """Heads of the migrations shipped with this build, read once per process."""
    heads = current_app.extensions.get("conduit_migration_heads")
    if heads is None:
        heads = migration_heads.expected(current_app.config["MIGRATIONS_DIR"])
        current_app.extensions["conduit_migration_heads"] = heads
    return heads


@blueprint.get("/healthz")
def healthz():
    """The process serves requests; says nothing about the database."""
    return {"status": "ok"}


@blueprint.get("/readyz")
def readyz():
    """Ready when the database answers and its schema is at the migrations' head."""
    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            try:
                rows = connection.execute(text("SELECT version_num FROM alembic_version"))
                applied = {row[0] for row in rows}
            except Exception:
                applied = set()
    except Exception as error:  # any failure here means "not ready", never a 500
        log.warning("not ready: database unreachable: %s", error)
        return {"status": "unavailable", "reason": "database unreachable"}, 503
    expected = _expected_heads()
    if applied != expected:
        reason = f"migrations not at head (database {sorted(applied)}, code {sorted(expected)})"
        return {"status": "unavailable", "reason": reason}, 503
    return {"status": "ready"}
