"""Observability of the API: Prometheus metrics, JSON access logs, request ids.

``register_observability(app)`` wraps the app's WSGI callable in
``RequestObserver``, which for every request

* takes the request id from X-Request-ID (or makes one) and returns it in the
  response header;
* counts the request and times it into the latency histogram, labelled with the
  route template Flask matched (recorded by a before_request hook), the method and
  the status, and keeps the in-flight gauge;
* writes one access line (``logs.AccessLog``): method, route, path, status,
  duration_ms, request_id, remote_addr.

It is a WSGI middleware rather than Flask hooks so that the timing covers all of
Flask's work (routing, error handlers, the database session's teardown) and the
in-flight gauge is decremented even when something inside Flask fails. The work per
request is a few dictionary look-ups, two metric updates and one line written.
"""

from __future__ import annotations

import time

from flask import Flask, request

from .. import reads
from .logs import AccessLog, configure_logging
from .metrics import METRICS_PATH, UNMATCHED_ROUTE, Metrics, register_metrics
from .requestid import REQUEST_ID_ENVIRON_KEY, REQUEST_ID_HEADER, request_id_from

__all__ = ["RequestObserver", "configure_logging", "register_observability"]

ROUTE_ENVIRON_KEY = "conduit.route"


class RequestObserver:
    """WSGI middleware: request id, HTTP metrics and the access log line."""

    def __init__(self, wsgi_app, metrics: Metrics, access_log: AccessLog):
        self.wsgi_app = wsgi_app
        self.metrics = metrics
        self.access_log = access_log

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        environ[REQUEST_ID_ENVIRON_KEY] = request_id
        counted = environ.get("PATH_INFO") != METRICS_PATH
        status = "500"  # what the server answers if the app raises

        def start_response_with_id(status_line, headers, exc_info=None):
            nonlocal status
            status = status_line[:3]
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(status_line, headers, exc_info)

        if counted:
            self.metrics.in_flight.inc()
        try:
            return self.wsgi_app(environ, start_response_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = environ.get(ROUTE_ENVIRON_KEY, UNMATCHED_ROUTE)
            method = environ.get("REQUEST_METHOD", "")
            if counted:
                self.metrics.in_flight.dec()
                self.metrics.observe_request(route, method, status, seconds)
            self.access_log.write(
                {
                    "method": method,
                    "route": route,
                    "path": environ.get("PATH_INFO", ""),
                    "status": int(status),
                    "duration_ms": round(seconds * 1000, 3),
                    "request_id": request_id,
                    "remote_addr": environ.get("REMOTE_ADDR"),
                }
            )


def _record_route() -> None:
    """before_request: the route template Flask matched, for the middleware's labels."""
    rule = request.url_rule
    if rule is not None:
        request.environ[ROUTE_ENVIRON_KEY] = rule.rule


def register_observability(app: Flask) -> None:
    """Metrics, request ids and access logs; call after the database is set up."""
    metrics = register_metrics(app, reads.engines(app))
    app.extensions["conduit_metrics"] = metrics
    # First in line, so no other hook can answer before the route is recorded.
    app.before_request_funcs.setdefault(None, []).insert(0, _record_route)
    app.wsgi_app = RequestObserver(app.wsgi_app, metrics, AccessLog(app.config["LOG_FORMAT"]))
