"""WSGI entry point for uWSGI: `module = conduit.wsgi:app`."""

from . import create_app

app = create_app()
