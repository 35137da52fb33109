"""Connections the database server has closed are dropped before use, without a round trip.

SQLAlchemy's `pool_pre_ping` sends `SELECT 1` before every checkout: for a request that
reads once, that doubles the round trips and PostgreSQL's work. When PostgreSQL closes a
connection (a restart, pg_terminate_backend, idle_in_transaction_session_timeout) it
sends an error message and closes the socket, so an idle pooled connection whose socket
has become readable is one the server has given up. The check is a poll of the socket
with no timeout; such a connection is discarded and the pool hands out another (a
DisconnectionError from a checkout listener, SQLAlchemy's documented custom
"pessimistic" disconnect handling). A server that vanished without closing anything
still fails the request's first statement, as it would have failed the ping: the
request answers 503 and the pool drops every connection older than the failure.
"""

from __future__ import annotations

import select

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError


def closed_by_server(dbapi_connection) -> bool:
    if dbapi_connection.closed or dbapi_connection.broken:
        return True
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    # An idle connection gets nothing from a server that still serves it (this app
    # never LISTENs): anything readable is a goodbye or end of file.
    return bool(poller.poll(0))


def _check(dbapi_connection, _record, _proxy) -> None:
    if closed_by_server(dbapi_connection):
        raise DisconnectionError("the database server closed this connection")


def drop_closed_connections(engine: Engine) -> None:
    """Install the check on a PostgreSQL engine, ahead of every other checkout listener."""
    event.listen(engine, "checkout", _check, insert=True)
