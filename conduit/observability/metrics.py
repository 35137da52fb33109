"""The app's Prometheus metrics and the /metrics endpoint.

Every name starts with ``conduit_``. HTTP metrics are labelled by the Flask route
template (``/api/articles/<slug>``), never the raw path, so a crawler cannot create
a series per URL; requests that match no route share ``route="<unmatched>"``, and
methods outside the standard set share ``method="OTHER"``.

/metrics itself is not counted: Prometheus records every scrape's duration and
outcome on its side (``scrape_duration_seconds``, ``up``), and leaving it out keeps
the request rates and the in-flight gauge about the traffic the API serves.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Sequence

from flask import Flask, Response
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import QueuePool

from . import multiprocess

METRICS_PATH = "/metrics"
UNMATCHED_ROUTE = "<unmatched>"
OTHER_METHOD = "OTHER"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# From 5 ms (a cached read) to 10 s; password hashing puts sign-up and login near 0.25 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HTTP_LABELS = ("route", "method", "status")
# How old a worker's pool gauges may be when another worker answers the scrape.
PUBLISH_INTERVAL_SECONDS = 1.0

# Counters would otherwise carry a `_created` series each, which nobody queries.
disable_created_metrics()


class Metrics:
    """The metric objects of one app, and the cheap calls the request path makes."""

    def __init__(self, registry: CollectorRegistry):
        self.requests = Counter(
            "conduit_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            HTTP_LABELS,
            registry=registry,
        )
        self.duration = Histogram(
            "conduit_http_request_duration_seconds",
            "Time to answer an HTTP request in the app, by route template, method and status.",
            HTTP_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        # live*: a worker that exits takes its share with it (see multiprocess.py).
        self.in_flight = Gauge(
            "conduit_http_requests_in_flight",
            "HTTP requests being answered right now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.pool_connections = Gauge(
            "conduit_db_pool_connections",
            "Database connections held by the pool: in_use (checked out) or idle.",
            ("state",),
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.pool_max = Gauge(
            "conduit_db_pool_max_connections",
            "Most connections the pool opens (pool size plus overflow).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        # Labelled by backend so that it has no value before the first attempt: 0 would
        # claim an outage that nobody observed.
        self.database_up = Gauge(
            "conduit_database_up",
            "1 if the last attempt to get a database connection succeeded, 0 if it failed.",
            ("backend",),
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.build_info = Gauge(
            "conduit_build_info",
            "Always 1; the labels name the running release.",
            ("version", "revision"),
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._children: dict[tuple[str, str, str], tuple] = {}

    def observe_request(self, route: str, method: str, status: str, seconds: float) -> None:
        key = (route, method if method in KNOWN_METHODS else OTHER_METHOD, status)
        children = self._children.get(key)
        if children is None:
            # labels() takes a lock and builds a tuple; do it once per label set.
            children = self._children.setdefault(
                key, (self.requests.labels(*key), self.duration.labels(*key))
            )
        children[0].inc()
        children[1].observe(seconds)


class PoolInstrumentation:
    """Connection counts of the ORM session's pool, which every write uses, and whether
    the database answers (from every engine of the app). The read-only requests' pool
    (conduit/reads.py) is not counted: under uWSGI each worker thread keeps one of its
    connections, so its count would only ever be the number of threads.

    The pools' events keep the counts (exact, where reading pool.checkedout() could be
    off while a connection is on its way back to the queue); the gauges are written
    when /metrics is scraped and, where several workers share the metric files, once
    a second by a thread of each worker. Writing them at every checkout and checkin
    cost more than that (bench/HISTORY.md, third round), and a gauge is only ever read
    by a scrape.
    """

    def __init__(self, metrics: Metrics, engine: Engine, others: Sequence[Engine] = ()):
        self._metrics = metrics
        self._backend = engine.dialect.name
        self._lock = threading.Lock()
        self._in_use = 0
        self._open = 0
        self._database_up: int | None = None
        self._in_use_gauge = metrics.pool_connections.labels("in_use")
        self._idle_gauge = metrics.pool_connections.labels("idle")
        self.publish()
        pool = engine.pool
        if isinstance(pool, QueuePool):
            metrics.pool_max.set(pool.size() + max(pool._max_overflow, 0))  # no accessor
        event.listen(pool, "connect", self._connected)
        event.listen(pool, "close", self._closed)
        event.listen(pool, "checkout", self._checked_out)
        event.listen(pool, "checkin", self._checked_in)
        # A detached connection leaves the pool for good, still in the caller's hands.
        event.listen(pool, "detach", self._detached)
        for each in (engine, *others):
            event.listen(each, "handle_error", self._error)
            event.listen(each.pool, "checkout", self._database_answered)
        if multiprocess.configured_directory() is not None:
            # Another worker may answer the scrape: keep this one's share current.
            threading.Thread(
                target=self._publish_every, name="conduit-pool-metrics", daemon=True
            ).start()

    def publish(self) -> None:
        with self._lock:
            in_use, opened = self._in_use, self._open
        self._in_use_gauge.set(in_use)
        # An invalidated connection is closed while still checked out: never below 0.
        self._idle_gauge.set(max(opened - in_use, 0))

    def _publish_every(self, seconds: float = PUBLISH_INTERVAL_SECONDS) -> None:
        while True:
            time.sleep(seconds)
            self.publish()

    def _database_is(self, up: int) -> None:
        # Written when it changes; the child is made on first use: until then the
        # series has no value at all.
        if self._database_up != up:
            self._database_up = up
            self._metrics.database_up.labels(self._backend).set(up)

    def _change(self, in_use: int, opened: int) -> None:
        with self._lock:
            self._in_use += in_use
            self._open += opened

    def _connected(self, _dbapi_connection, _record) -> None:
        self._change(0, 1)

    def _closed(self, _dbapi_connection, _record) -> None:
        self._change(0, -1)

    def _checked_out(self, _dbapi_connection, _record, _proxy) -> None:
        self._change(1, 0)

    def _database_answered(self, _dbapi_connection, _record, _proxy) -> None:
        # Checkout comes after the closed-connection check (conduit/dbpool.py).
        self._database_is(1)

    def _checked_in(self, _dbapi_connection, _record) -> None:
        self._change(-1, 0)

    def _detached(self, _dbapi_connection, _record) -> None:
        self._change(-1, -1)

    def _error(self, context) -> None:
        # No connection in the context: opening one failed (refused, DNS, auth, timeout).
        # (A pre-ping, were one configured, is retried with a fresh connection, which
        # reports itself.)
        if context.connection is None and not context.is_pre_ping:
            self._database_is(0)


def create_registry() -> tuple[CollectorRegistry, CollectorRegistry]:
    """(registry the metrics are created in, registry /metrics exposes).

    Without PROMETHEUS_MULTIPROC_DIR they are one in-process registry. With it, values
    live in the directory's files and /metrics exposes a collector over all of them.
    """
    registry = CollectorRegistry(auto_describe=True)
    path = multiprocess.configured_directory()
    if path is None:
        return registry, registry
    multiprocess.check_directory(path)
    exposed = CollectorRegistry()
    exposed.register(multiprocess.LockedMultiProcessCollector(path))
    _retire_this_worker_at_exit(path)
    return registry, exposed


_retire_registered = False


def _retire_this_worker_at_exit(path: str) -> None:
    global _retire_registered
    if not _retire_registered:
        _retire_registered = True
        atexit.register(lambda: multiprocess.retire_processes(path, [os.getpid()]))


def metrics_view(exposed: CollectorRegistry, pools: PoolInstrumentation):
    path = multiprocess.configured_directory()

    def metrics():
        pools.publish()
        if path is not None:
            # Workers killed without running atexit (harakiri, OOM) are folded here.
            multiprocess.retire_exited_processes(path)
        return Response(
            generate_latest(exposed),
            headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4, "Cache-Control": "no-store"},
        )

    return metrics


def register_metrics(app: Flask, engines: Sequence[Engine]) -> Metrics:
    """Metrics of the app; `engines`: the session's first, then any other."""
    registry, exposed = create_registry()
    metrics = Metrics(registry)
    metrics.build_info.labels(app.config["CONDUIT_VERSION"], app.config["CONDUIT_REVISION"]).set(1)
    pools = PoolInstrumentation(metrics, engines[0], engines[1:])
    app.add_url_rule(METRICS_PATH, "metrics", metrics_view(exposed, pools), methods=["GET"])
    return metrics
