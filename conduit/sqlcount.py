"""SQL statements per request, reported in the X-SQL-Statements response header.

For the load benchmark and for developers checking a query change: it shows from the
outside that a page of articles costs the same few statements whatever its size. Off
by default (SQL_STATEMENTS_HEADER, env CONDUIT_SQL_STATEMENTS_HEADER=1); when off,
create_app() does not call init_app(), so no listener or hook exists and it costs nothing.

Every statement the app sends counts: through SQLAlchemy (each batch of an executemany
too) or on the read path's cursor (conduit/reads.py). (The pool checks connections
without a statement: conduit/dbpool.py.)
"""

from __future__ import annotations

from flask import Flask, Response, g, has_request_context
from sqlalchemy import event

from . import reads
from .extensions import db

HEADER = "X-SQL-Statements"


def _count(*_args) -> None:
    # Statements outside a request (CLI commands, startup) are nobody's to report.
    if has_request_context():
        g.sql_statements = g.get("sql_statements", 0) + 1


def _report(response: Response) -> Response:
    response.headers[HEADER] = str(g.get("sql_statements", 0))
    return response


def init_app(app: Flask) -> None:
    # Statements of read-only requests bypass SQLAlchemy's execution events (reads.py).
    reads.add_statement_listener(app, _count)
    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", _count)
    app.after_request(_report)
