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

A chunked body (`Transfer-Encoding: chunked`, no Content-Length) reaches a uWSGI
worker only as the raw chunk stream (`http-chunked-input` in docker/uwsgi.ini), which
`wsgi.input` does not return: uWSGI's Python module decodes it with
`uwsgi.chunked_read()` (core/chunked.c and plugins/python/uwsgi_pymodule.c of
unbit/uwsgi 2.0.30). ChunkedBodies reads it there, before Flask sees the request,
within MAX_CONTENT_LENGTH and CHUNKED_BODY_DEADLINE_S, and hands the app an ordinary
body with its Content-Length. Servers that decode chunked bodies themselves
(Werkzeug's, gunicorn, granian) set `wsgi.input_terminated` and are left alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from io import BytesIO

from flask import Flask, request
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from .errors import APIError

DISCARD_FACTOR = 4
_PIECE = 64 * 1024
# The whole chunked body must arrive within this many seconds of the first read: a
# client trickling chunks holds a worker thread no longer than that.
CHUNKED_BODY_DEADLINE_S = 10
_BODY_ERROR = "conduit.body_error"

# read_chunk(timeout_s) -> the next decoded chunk, b"" at the end; OSError when the
# stream is malformed, cut off or silent for timeout_s.
ChunkReader = Callable[[int], bytes]


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


def read_chunked(
    read_chunk: ChunkReader, limit: int, deadline_s: float = CHUNKED_BODY_DEADLINE_S
) -> bytes:
    """The decoded body, or APIError 400/408/413 (RequestEntityTooLarge)."""
    too_slow = APIError(408, {"body": ["the chunked body did not arrive in time"]})
    started = time.monotonic()
    body = bytearray()
    received = 0
    while True:
        remaining = deadline_s - (time.monotonic() - started)
        if remaining <= 0:
            raise too_slow
        try:
            chunk = read_chunk(max(1, math.ceil(remaining)))
        except OSError:
            if received > limit:  # the 413 stands: the rest was only read for its sake
                break
            if time.monotonic() - started >= deadline_s:
                raise too_slow from None
            raise APIError(400, {"body": ["malformed or incomplete chunked body"]}) from None
        if not chunk:
            break
        received += len(chunk)
        if received <= limit:
            body += chunk
        elif received > DISCARD_FACTOR * limit:
            break
        # Past the limit the rest is read and dropped, as for a declared length, so
        # that a client still sending sees the 413 rather than a reset.
    if received > limit:
        raise RequestEntityTooLarge()
    return bytes(body)


def _uwsgi_chunk_reader() -> ChunkReader | None:
    try:
        import uwsgi  # only inside a uWSGI worker
    except ImportError:
        return None
    return uwsgi.chunked_read


class ChunkedBodies:
    """WSGI middleware: a chunked body under uWSGI becomes a body with a length."""

    def __init__(self, app: Flask, read_chunk: ChunkReader | None = None) -> None:
        self.wsgi_app = app.wsgi_app
        self.limit = app.config["MAX_CONTENT_LENGTH"]
        self.read_chunk = read_chunk or _uwsgi_chunk_reader()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        chunked = environ.get("HTTP_TRANSFER_ENCODING", "").strip().lower() == "chunked"
        if chunked and self.read_chunk and "wsgi.input_terminated" not in environ:
            try:
                body = read_chunked(self.read_chunk, self.limit)
            except (APIError, RequestEntityTooLarge) as error:
                body = b""
                environ[_BODY_ERROR] = error  # answered by the app, as JSON
            del environ["HTTP_TRANSFER_ENCODING"]
            environ["CONTENT_LENGTH"] = str(len(body))
            environ["wsgi.input"] = BytesIO(body)
        return self.wsgi_app(environ, start_response)


def _refuse_a_bad_body() -> None:
    error = request.environ.get(_BODY_ERROR)
    if error is not None:
        raise error


def read_unread_bodies(app: Flask) -> None:
    app.wsgi_app = ChunkedBodies(app)
    app.before_request(_refuse_a_bad_body)
    app.teardown_request(_read_the_rest)
