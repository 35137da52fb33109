"""Fixtures serving the app under uWSGI; the helpers live in tests/monitoring/support.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.monitoring.support import UwsgiServer, migrate, start_uwsgi


@pytest.fixture(scope="module")
def sqlite_database(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('uwsgi-db') / 'conduit.sqlite'}"
    migrate(url)
    return url


@pytest.fixture
def uwsgi_factory(tmp_path, sqlite_database) -> Iterator:
    """uwsgi_factory(**options) -> a started UwsgiServer, stopped after the test."""
    servers: list[UwsgiServer] = []

    def factory(**options) -> UwsgiServer:
        server = start_uwsgi(tmp_path, sqlite_database, **options)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()
