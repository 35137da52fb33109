"""Every request body is read to its end before the worker closes its connection.

A handler may answer before it reads the body: a 401 for a missing token, a 503 while
the database is down. uWSGI's worker then closes its socket to the HTTP router with the
body still unread (proto/base.c: a plain close()), and the router, which sees either
ECONNRESET from that socket or a body it has not finished forwarding
(plugins/http/http.c, hr_instance_read), drops the client's kept-alive connection after
the response, which said nothing about closing it. A client that sends its next request
on that connection before the FIN arrives gets a TCP reset. Reading the rest of a body
within MAX_CONTENT_LENGTH keeps the connection usable; a larger body gets its 413 without
being read, and losing that connection is the price of not reading it.
"""

from __future__ import annotations

from contextlib import suppress

from flask import Flask, request
from werkzeug.exceptions import ClientDisconnected


def _read_the_rest(_error: BaseException | None) -> None:
    length = request.content_length
    if not length:
        return
    limit = request.max_content_length
    if limit is not None and length > limit:
        return
    # A client that went away has no connection left to keep.
    with suppress(ClientDisconnected, OSError):
        request.stream.exhaust()  # nothing left if the handler read the body


def read_unread_bodies(app: Flask) -> None:
    app.teardown_request(_read_the_rest)
