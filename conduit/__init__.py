"""Conduit: the RealWorld API in Flask."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from .extensions import cors, db, migrate
from .jsonprovider import OrjsonProvider
from .observability import configure_logging, register_observability
from .settings import load_settings


def create_app(settings: Mapping | None = None, env: Mapping[str, str] | None = None) -> Flask:
    """Build the app from the environment (or `env`), then apply `settings` overrides."""
    app = Flask(__name__, instance_relative_config=True, static_folder=None)
    app.json = OrjsonProvider(app)
    app.config.from_mapping(load_settings(Path(app.instance_path), env))
    if settings:
        app.config.from_mapping(settings)

    register_logging(app)
    register_extensions(app)
    register_observability(app)
    if app.config["SQL_STATEMENTS_HEADER"]:
        from . import sqlcount

        sqlcount.init_app(app)
    register_blueprints(app)
    register_error_handlers(app)
    register_commands(app)
    return app


def register_logging(app: Flask) -> None:
    """JSON lines on stdout for every logger (see conduit/observability/logs.py)."""
    configure_logging(app.config.get("LOG_LEVEL", "INFO"))


def register_extensions(app: Flask) -> None:
    db.init_app(app)
    migrate.init_app(app, db, directory=app.config["MIGRATIONS_DIR"])
    cors.init_app(
        app,
        resources={r"/api/*": {"origins": app.config["CORS_ORIGINS"]}},
        allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        expose_headers=["X-Request-ID"],
        max_age=600,
    )


def register_blueprints(app: Flask) -> None:
    from .api import api
    from .health import blueprint as health

    app.register_blueprint(api)
    app.register_blueprint(health)


def register_error_handlers(app: Flask) -> None:
    from .errors import register_error_handlers as register

    register(app)


def register_commands(app: Flask) -> None:
    """Commands that need the app; `flask test` and `flask lint` are entry points."""
    from .seed import seed_command

    app.cli.add_command(seed_command)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """SQLite enforces foreign keys (and so ON DELETE CASCADE) only when asked, per connection."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()
