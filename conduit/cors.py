"""Cross-origin requests to the API (the CORS protocol of the Fetch standard,
https://fetch.spec.whatwg.org/#http-cors-protocol).

One policy, fixed at start-up: the origins of CORS_ORIGINS (or any origin), no
credentials (tokens travel in the Authorization header, never in cookies), the
request headers a client sends (Authorization, Content-Type, X-Request-ID), and
X-Request-ID and WWW-Authenticate exposed to scripts. Only paths under /api/ take part.

This replaced flask-cors (6.0), which does the same for this policy but works its
generic options out again on every response (path patterns, option merging, a
header MultiDict, debug records), a measurable share of a single article served by
uWSGI (bench/HISTORY.md, fourth round). Here the headers are built once.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask, Response, request

API_PREFIX = "/api/"
ALLOWED_HEADERS = ("Authorization", "Content-Type", "X-Request-ID")
# WWW-Authenticate: a public read answered anonymously says why (conduit/auth.py).
EXPOSED_HEADERS = ("X-Request-ID", "WWW-Authenticate")
# What the API's routes answer to; a preflight for any other method is refused by the browser.
ALLOWED_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE")
# How long a browser may reuse a preflight's answer, in seconds.
PREFLIGHT_MAX_AGE = 600


class CrossOrigin:
    """Adds the CORS headers to the API's responses (an after_request hook)."""

    def __init__(self, origins: Iterable[str]):
        origins = tuple(origins)
        self.any_origin = "*" in origins
        # Origins are compared as browsers serialise them: scheme and host in lower case.
        self.origins = frozenset(origin.lower() for origin in origins if origin != "*")
        self.exposed = ", ".join(EXPOSED_HEADERS)
        self.preflight = [
            ("Access-Control-Allow-Methods", ", ".join(ALLOWED_METHODS)),
            ("Access-Control-Allow-Headers", ", ".join(ALLOWED_HEADERS)),
            ("Access-Control-Max-Age", str(PREFLIGHT_MAX_AGE)),
        ]

    def init_app(self, app: Flask) -> None:
        app.after_request(self.add_headers)

    def add_headers(self, response: Response) -> Response:
        environ = request.environ
        if not environ.get("PATH_INFO", "").startswith(API_PREFIX):
            return response
        headers = response.headers
        origin = environ.get("HTTP_ORIGIN")
        if self.any_origin:
            # The same answer for every origin, and for requests without one: a shared
            # cache can keep it without Vary.
            allowed = "*"
        else:
            # The answer depends on the Origin header: caches must key on it.
            response.vary.add("Origin")
            if origin is None or origin.lower() not in self.origins:
                return response
            allowed = origin
        headers["Access-Control-Allow-Origin"] = allowed
        headers["Access-Control-Expose-Headers"] = self.exposed
        if (
            origin is not None
            and environ.get("REQUEST_METHOD") == "OPTIONS"
            and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ
        ):
            headers.extend(self.preflight)
        return response


def init_app(app: Flask) -> None:
    CrossOrigin(app.config["CORS_ORIGINS"]).init_app(app)
