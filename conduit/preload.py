"""Imported by uWSGI's master before it forks the workers (`shared-import` in
docker/uwsgi.ini), so that every worker shares one copy of the libraries' pages.

With lazy-apps each worker builds its own app after fork() (connection pools and
metric files must not be shared), and until now it also imported everything the app
needs that the master had not: the database driver, the ORM, the API's modules, JWT
with `cryptography`, bcrypt, marshmallow. Importing them here has no side effect that
a process could share by mistake: no connection, thread, file or metric is created
by an import. What stays per worker is what create_app() builds.

Before that, the master checks the settings (conduit/settings.py) once: a wrong
variable stops uWSGI with its one-line message and exit status 1 before any worker
starts, instead of a traceback from every worker.

gc.freeze() then moves everything loaded so far out of the garbage collector's reach,
so that its passes in the workers do not write to (and so copy) the shared pages
(the gc module's documentation recommends it before fork()).
"""

from __future__ import annotations

import gc
import importlib
import os
from pathlib import Path

from flask import Flask

from .settings import ConfigError, load_settings, normalise_database_url

# The app's own modules pull in the rest: Flask's, the ORM's, JWT, bcrypt, marshmallow.
APP_MODULES = ("conduit.api", "conduit.health", "conduit.errors", "conduit.queries")
# SQLAlchemy imports a dialect's driver only when an engine is created.
DRIVERS = {"postgresql+psycopg": ("psycopg", "sqlalchemy.dialects.postgresql.psycopg")}


def check_settings() -> None:
    """The settings create_app() will read in each worker, judged once here."""
    # The instance folder as the app's own Flask object finds it (the development key
    # and the default SQLite file live there); a Flask object costs no resource.
    instance_path = Path(Flask("conduit", instance_relative_config=True).instance_path)
    try:
        load_settings(instance_path)
    except ConfigError as error:
        error.exit()


def preload(database_url: str) -> None:
    modules = list(APP_MODULES)
    scheme = normalise_database_url(database_url).split(":", 1)[0]
    modules += DRIVERS.get(scheme, ())
    for name in modules:
        importlib.import_module(name)
    gc.freeze()


check_settings()
preload(os.environ.get("DATABASE_URL", ""))
