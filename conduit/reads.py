"""Where the statements of read-only requests run.

GET and HEAD requests never write (HTTP says they are safe and this API keeps to it).
On PostgreSQL their statements run on a connection pool of their own, whose connections
are in autocommit from the moment they open, and on the driver's cursor:

* Autocommit: each statement is its own transaction, which under READ COMMITTED is what
  it sees anyway, so PostgreSQL is spared a BEGIN and a ROLLBACK per request. Because the
  whole pool is in autocommit, nothing switches a connection's isolation level at
  checkout and back at checkin, and nothing is rolled back on return.
* A connection per thread: under uWSGI, whose threads live as long as their worker, a
  thread keeps its read connection from one request to the next instead of taking it
  from the pool and giving it back each time (bench/HISTORY.md, third round).
  Before a request's first read it is checked as the pool checks at checkout (closed by
  the server? conduit/dbpool.py), and it is replaced when an error invalidated it or
  when it is older than the pool's recycle age. Elsewhere (the development server
  starts a thread per request) a request takes one from the pool and gives it back.
* The driver's cursor: each statement is built and compiled by SQLAlchemy once, then
  run by psycopg directly. SQLAlchemy's execution path (the statement's cache key, the
  execution context, the result object and the cursor.description it reads) cost more
  than a one-row query itself. Errors are translated as SQLAlchemy would, so the app's
  error handlers (503 for an unavailable database or a cancelled statement) and the
  pool's handling of lost connections are the same on both paths.

Everything else reads through the ORM session's connection: requests that write (their
reads belong to their transaction), reads after the session has begun, and SQLite,
the development database, where none of this would be measurable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence

from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy import Connection, Executable, create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import Compiled

from .dbpool import closed_by_server, drop_closed_connections
from .extensions import db

# Requests that never write.
READ_ONLY_METHODS = frozenset({"GET", "HEAD"})

_EXTENSION = "conduit_reads"
_REQUEST_CONNECTION = "_conduit_read_connection"


class ReadPool:
    """The read-only requests' engine (None on SQLite), their connections and their
    compiled statements."""

    def __init__(self, engine: Engine | None, per_thread: bool, recycle: float | None):
        self.engine = engine
        self.per_thread = per_thread
        self._recycle = recycle
        self._held = threading.local()
        # Every thread's kept connection, so that dispose() can close them: checked out
        # for good, they are out of the engine's reach.
        self._kept: set[Connection] = set()
        self._kept_lock = threading.Lock()
        self._compiled: dict[Executable, Compiled] = {}
        # Called with each SQL string run here (conduit/sqlcount.py, tests).
        self.statement_listeners: list[Callable[[str], None]] = []

    def acquire(self) -> Connection:
        """A connection for this request's reads."""
        # A Connection rather than a bare pooled connection: SQLAlchemy reports a failure
        # to connect as it does for every engine (DBAPIError, the handle_error event).
        if not self.per_thread:
            return self.engine.connect()
        connection = getattr(self._held, "connection", None)
        if connection is not None:
            if self._usable(connection):
                return connection
            self._forget(connection)
            connection.close()  # an invalidated one is discarded, not pooled
        connection = self.engine.connect()
        self._held.connection = connection
        self._held.since = time.monotonic()
        with self._kept_lock:
            self._kept.add(connection)
        return connection

    def _forget(self, connection: Connection) -> None:
        with self._kept_lock:
            self._kept.discard(connection)

    def release(self, connection: Connection) -> None:
        """The end of the request: back to the pool, unless the thread keeps it."""
        if not self.per_thread:
            connection.close()

    def dispose(self) -> None:
        """Close every connection of the pool, the threads' kept ones too: for when no
        request runs any more (a test's app going away)."""
        with self._kept_lock:
            kept, self._kept = self._kept, set()
        for connection in kept:
            connection.close()
        if self.engine is not None:
            self.engine.dispose()

    def _usable(self, connection: Connection) -> bool:
        if connection.invalidated or connection.closed:
            return False
        if self._recycle is not None and time.monotonic() - self._held.since > self._recycle:
            return False
        if closed_by_server(connection.connection.dbapi_connection):
            connection.invalidate()
            return False
        return True

    def compiled(self, statement: Executable) -> Compiled:
        # Statements are module-level constants (queries.py builds one per shape), so
        # this holds a few dozen entries; a race only compiles one twice.
        compiled = self._compiled.get(statement)
        if compiled is None:
            compiled = statement.compile(dialect=self.engine.dialect)
            self._compiled[statement] = compiled
        return compiled


def init_app(app: Flask, session_engine: Engine) -> None:
    """Create the read pool beside Flask-SQLAlchemy's engine, with its options
    (PostgreSQL only)."""
    engine = None
    options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    if session_engine.dialect.name == "postgresql":
        engine = create_engine(
            session_engine.url,
            **options,
            isolation_level="AUTOCOMMIT",
            # Autocommit leaves no transaction to roll back when a connection returns.
            pool_reset_on_return=None,
        )
        drop_closed_connections(engine)
    app.extensions[_EXTENSION] = ReadPool(
        engine,
        per_thread=app.config["DB_READ_CONNECTION_PER_THREAD"],
        recycle=options.get("pool_recycle"),  # DB_POOL_RECYCLE, as the pools have it
    )
    app.teardown_request(_release)


def pool(app: Flask) -> ReadPool:
    """The app's read pool (init_app made it)."""
    return app.extensions[_EXTENSION]


def engines(app: Flask) -> list[Engine]:
    """The app's engines: Flask-SQLAlchemy's and, on PostgreSQL, the read pool's."""
    with app.app_context():
        found = [db.engine]
    reads = pool(app).engine
    if reads is not None:
        found.append(reads)
    return found


def add_statement_listener(app: Flask, listener: Callable[[str], None]) -> None:
    pool(app).statement_listeners.append(listener)


def _request_connection(pool: ReadPool) -> Connection | None:
    """This request's read connection, checked out on first use; None when the request
    must read through the session."""
    connection = g.get(_REQUEST_CONNECTION)
    if connection is not None:
        return connection
    if (
        pool.engine is None
        or not has_request_context()
        or request.method not in READ_ONLY_METHODS
        # Only a session this request has used can be in a transaction: asking the
        # registry first spares a request that never touches it a Session and its close.
        or (db.session.registry.has() and db.session().in_transaction())
    ):
        return None
    connection = pool.acquire()
    setattr(g, _REQUEST_CONNECTION, connection)
    return connection


def _release(_error=None) -> None:
    """teardown_request: the request's read connection, if any, back to its pool."""
    connection = g.pop(_REQUEST_CONNECTION, None)
    if connection is not None:
        pool(current_app).release(connection)


def read(statement: Executable, params: Mapping) -> Sequence[Sequence]:
    """Every row of a SELECT, as tuples in the statement's column order."""
    read_pool = pool(current_app)
    connection = _request_connection(read_pool)
    if connection is None:
        return db.session.connection().execute(statement, params).all()
    expanded = read_pool.compiled(statement).construct_expanded_state(params)
    sql, parameters = expanded.statement, expanded.parameters
    for listener in read_pool.statement_listeners:
        listener(sql)
    driver_connection = connection.connection.driver_connection
    try:
        with driver_connection.cursor() as cursor:
            cursor.execute(sql, parameters)
            return cursor.fetchall()
    except connection.dialect.loaded_dbapi.Error as error:
        raise _translated(connection, error, sql, parameters) from error


def _translated(connection: Connection, error: Exception, sql: str, parameters) -> DBAPIError:
    """The error as SQLAlchemy's execution path raises it; a lost connection is
    invalidated, so the pool replaces it instead of handing it out again."""
    dialect = connection.dialect
    lost = dialect.is_disconnect(error, connection.connection.dbapi_connection, None)
    if lost:
        connection.invalidate(error)
    return DBAPIError.instance(
        sql,
        parameters,
        error,
        dialect.loaded_dbapi.Error,
        connection_invalidated=lost,
        dialect=dialect,
    )
