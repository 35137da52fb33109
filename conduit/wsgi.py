"""WSGI entry point for uWSGI: `module = conduit.wsgi:app`."""

from . import create_app

# Workers serve requests only: no `flask db`, so Alembic stays out of their memory.
app = create_app(migrations=False)
