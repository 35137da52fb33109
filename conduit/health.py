"""Liveness and readiness for the orchestrator, outside the API and its auth."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app
from sqlalchemy import text

from . import migration_heads, migration_lineage
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
    """Ready when the database answers and this release can serve its schema: at the
    migrations' head, or past it by a later release's migrations (migration_lineage.py)."""
    # Database heads found to descend from this release's: their lineage is not read again.
    descendants = current_app.extensions.setdefault("conduit_descendant_heads", set())
    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            verdict = migration_lineage.check(connection, _expected_heads(), descendants)
    except Exception as error:  # any failure here means "not ready", never a 500
        log.warning("not ready: database unreachable: %s", error)
        return {"status": "unavailable", "reason": "database unreachable"}, 503
    if not verdict.serves:
        return {"status": "unavailable", "reason": verdict.describe()}, 503
    if verdict.compatibility is migration_lineage.Compatibility.AHEAD:
        descendants.add(verdict.database_heads)
    return {"status": "ready"}
