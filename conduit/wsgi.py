"""WSGI entry point for uWSGI: `module = conduit.wsgi:app`."""

from . import create_app
from .settings import ConfigError

try:
    # Workers serve requests only: no `flask db`, so Alembic stays out of their memory.
    app = create_app(migrations=False)
except ConfigError as error:
    # Under uWSGI the master has judged the settings already (conduit/preload.py); other
    # WSGI servers import this module directly.
    error.exit()
