"""Every request body is read to its end before the worker closes its connection.

A handler may answer before it reads the body: a 401 for a missing token, a 503 while
the database is down. uWSGI's worker then closes its socket to the HTTP router with the
body still unread (proto/base.c: a plain close()), and the router, which sees either
ECONNRESET from that socket or a body it has not finished forwarding
(plugins/http/http.c, hr_instance_read), drops the client's kept-alive connection after
the response, which said nothing about closing it. A client that sends its next request
on that connection before the FIN arrives gets a TCP reset. Reading the rest of a body
within MAX_CONTENT_LENGTH keeps the connection usable.

A body over the limit gets its 413 without the app reading it, but a client that sends
its body without waiting for `Expect: 100-continue` (Python's urllib, `curl -H
'Expect:'`) has already sent it: closed with those bytes unread, the connection ends in
a TCP reset, and the client never sees the 413 (issue 26). Up to DISCARD_FACTOR times
the limit is therefore read and thrown away, in small pieces, so that the answer
arrives; a larger declared length is refused unread (a 2 GiB upload is not read to
answer it), and the reset is then the price of not reading it.
"""

from __future__ import annotations

from contextlib import suppress

from flask import Flask, request
from werkzeug.exceptions import ClientDisconnected

DISCARD_FACTOR = 4
_PIECE = 64 * 1024


def _discard(length: int) -> None:
    """Read and drop `length` bytes of the raw body (past Werkzeug's limit check)."""
    stream = request.environ["wsgi.input"]
    while length > 0:
        piece = stream.read(min(length, _PIECE))
        if not piece:
            return
        length -= len(piece)


def _read_the_rest(_error: BaseException | None) -> None:
    length = request.content_length
    if not length:
        return
    limit = request.max_content_length
    if limit is not None and length > limit:
        if length <= DISCARD_FACTOR * limit:
            with suppress(OSError, ValueError):
                _discard(length)
        return
    # A client that went away has no connection left to keep.
    with suppress(ClientDisconnected, OSError):
        request.stream.exhaust()  # nothing left if the handler read the body


def read_unread_bodies(app: Flask) -> None:
    app.teardown_request(_read_the_rest)
