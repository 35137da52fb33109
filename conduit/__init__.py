"""Conduit: the RealWorld API in Flask."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from . import cors, fault_injection, reads
from .dbpool import drop_closed_connections
from .extensions import db
from .jsonprovider import OrjsonProvider
from .observability import configure_logging, register_observability
from .request_body import read_unread_bodies
from .settings import load_settings


def create_app(
    settings: Mapping | None = None,
    env: Mapping[str, str] | None = None,
    *,
    migrations: bool = True,
) -> Flask:
    """Build the app from the environment (or `env`), then apply `settings` overrides.

    `migrations=False` leaves out Flask-Migrate (`flask db`), so that Alembic is never
    imported: the WSGI entry point serves without it.
    """
    app = Flask(__name__, instance_relative_config=True, static_folder=None)
    app.json = OrjsonProvider(app)
    # Werkzeug answers "/api/articles/" and "/api//articles" with an HTML redirect; an
    # API answers JSON: a trailing slash is the same resource, a doubled one is a 404.
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False
    app.config.from_mapping(load_settings(Path(app.instance_path), env))
    if settings:
        app.config.from_mapping(settings)

    register_logging(app)
    register_extensions(app)
    read_unread_bodies(app)
    if migrations:
        register_migrations(app)
    register_observability(app)
    register_fault_injection(app, env)
    if app.config["SQL_STATEMENTS_HEADER"]:
        from . import sqlcount

        sqlcount.init_app(app)
    register_blueprints(app)
    register_error_handlers(app)
    return app


def register_fault_injection(app: Flask, env: Mapping[str, str] | None) -> None:
    """Test-only faults (conduit/fault_injection.py); refused in production."""
    faults = fault_injection.from_env(os.environ if env is None else env, app.config["CONDUIT_ENV"])
    if faults is not None:
        fault_injection.install(app, faults)


def register_logging(app: Flask) -> None:
    """Every logger to stdout, as JSON or text lines (see conduit/observability/logs.py)."""
    configure_logging(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])


def register_extensions(app: Flask) -> None:
    db.init_app(app)
    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "postgresql":
        drop_closed_connections(engine)
    reads.init_app(app, engine)
    cors.init_app(app)


def register_migrations(app: Flask) -> None:
    from flask_migrate import Migrate

    from .identity import users_cli
    from .migration_lineage import schema_cli

    Migrate(app, db, directory=app.config["MIGRATIONS_DIR"])
    app.cli.add_command(schema_cli)
    app.cli.add_command(users_cli)


def register_blueprints(app: Flask) -> None:
    from .api import api
    from .health import blueprint as health

    app.register_blueprint(api)
    app.register_blueprint(health)


def register_error_handlers(app: Flask) -> None:
    from .errors import register_error_handlers as register

    register(app)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """SQLite enforces foreign keys (and so ON DELETE CASCADE) only when asked, per connection."""
    # By module name: importing sqlite3 would cost every PostgreSQL worker its memory.
    if type(dbapi_connection).__module__ == "sqlite3":
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()
