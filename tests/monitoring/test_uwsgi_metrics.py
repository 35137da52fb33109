"""Under uWSGI with several workers, /metrics counts every request exactly once.

The server runs docker/uwsgi.ini as the image does (prometheus_client's multiprocess
mode, the master emptying the directory at start). Requests go out concurrently so
that both workers serve them; the scrape, answered by one worker, must add up all.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from tests.monitoring.support import exposed_names, request_totals, series
from tests.monitoring.test_dashboard import metric_names, substituted
from tests.monitoring.test_dashboard import queries as dashboard_queries

# (method, path, JSON body, route label, expected status, how many)
BURST = [
    ("GET", "/healthz", None, "/healthz", 200, 40),
    ("GET", "/api/articles", None, "/api/articles", 200, 25),
    ("GET", "/api/tags", None, "/api/tags", 200, 10),
    ("GET", "/api/articles/no-such-article", None, "/api/articles/<slug>", 404, 12),
    ("GET", "/no/such/route", None, "<unmatched>", 404, 7),
    ("POST", "/api/users", {"user": {"username": ""}}, "/api/users", 422, 9),
    ("GET", "/api/user", None, "/api/user", 401, 5),
    ("DELETE", "/healthz", None, "<unmatched>", 405, 3),
]


MAX_BURSTS = 5


def send(base_url: str, method: str, path: str, body) -> int:
    return requests.request(method, base_url + path, json=body, timeout=10).status_code


def send_burst(base_url: str, burst=BURST, concurrency: int = 8) -> Counter:
    """Send every request of `burst` concurrently; returns what was sent, by label set."""
    jobs = [(m, p, b, route, status) for m, p, b, route, status, n in burst for _ in range(n)]
    with ThreadPoolExecutor(concurrency) as pool:
        statuses = list(pool.map(lambda job: send(base_url, *job[:3]), jobs))
    sent = Counter()
    for (method, path, _body, route, expected), status in zip(jobs, statuses, strict=True):
        assert status == expected, f"{method} {path} answered {status}, expected {expected}"
        sent[(route, method, str(status))] += 1
    return sent


def write_stale_counter(directory, pid: int, value: float) -> None:
    """A counter file as a previous run would have left it."""
    directory.mkdir(parents=True, exist_ok=True)
    stale = MmapedDict(str(directory / f"counter_{pid}.db"))
    key = mmap_key(
        "conduit_http_requests",
        "conduit_http_requests_total",
        ["route", "method", "status"],
        ["/healthz", "GET", "200"],
        "stale",
    )
    stale.write_value(key, value, 0.0)
    stale.close()


def test_totals_equal_the_requests_sent_per_route_method_and_status(uwsgi_factory, tmp_path):
    # Left by a previous run; pid 1 always runs, so only the master's clean-up removes it.
    write_stale_counter(tmp_path / "prometheus", 1, 1000)
    server = uwsgi_factory(processes=2, threads=4)

    # Which worker takes a request is uWSGI's choice: on a busy machine a slow client can
    # leave one worker enough for a whole burst. Send bursts (a bounded number) until both
    # have served, so the totals below really add up several workers' files.
    sent = Counter()
    for _ in range(MAX_BURSTS):
        sent += send_burst(server.url)
        counting_workers = {p.stem for p in server.metrics_dir.glob("counter_*.db")}
        if len(counting_workers) >= 2:
            break
    assert len(counting_workers) >= 2, f"one worker served {MAX_BURSTS} bursts: {counting_workers}"
    found = server.scrape()
    assert request_totals(found) == sent + server.startup_requests
    # The histogram counts the same requests, in its +Inf bucket and its _count.
    assert request_totals(found, "conduit_http_request_duration_seconds_count") == (
        sent + server.startup_requests
    )
    inf_buckets = series(found, "conduit_http_request_duration_seconds_bucket", le="+Inf")
    assert sum(inf_buckets.values()) == sum((sent + server.startup_requests).values())
    assert series(found, "conduit_http_requests_in_flight") == {frozenset(): 0.0}
    # The scrapes themselves are not counted.
    assert not [key for key in request_totals(found) if key[0] == "/metrics"]
    assert request_totals(server.scrape()) == sent + server.startup_requests


def test_dashboard_queries_name_metrics_the_production_server_exposes(uwsgi_factory):
    server = uwsgi_factory(processes=2, threads=4)
    send_burst(server.url, BURST[:4])  # /api/articles touches the database
    exposed = exposed_names(server.get("/metrics").text)
    for title, expr in dashboard_queries():
        unknown = metric_names(substituted(expr)) - exposed
        assert not unknown, f"{title}: {sorted(unknown)} not exposed under uWSGI"


def test_totals_survive_recycled_and_killed_workers(uwsgi_factory):
    # Recycle each worker every 15 requests (the image: 5000), from its first second on,
    # without uWSGI's pause against respawn loops.
    server = uwsgi_factory(
        processes=2,
        threads=2,
        extra_args=(
            *("--max-requests", "15", "--max-requests-delta", "0"),
            *("--min-worker-lifetime", "0", "--forkbomb-delay", "0"),
        ),
    )
    burst = [(*request[:5], max(request[5] // 2, 1)) for request in BURST]
    first_half = send_burst(server.url, burst, concurrency=4)

    # A worker killed outright runs no exit hook: the next scrape must fold its files.
    victim = min(server.worker_pids())
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while victim in server.worker_pids() or len(server.worker_pids()) < 2:
        assert time.monotonic() < deadline, "uWSGI did not replace the killed worker"
        time.sleep(0.1)
    second_half = send_burst(server.url, burst, concurrency=4)

    recycled = re.findall(r"The work of process \d+ is done", server.log_path.read_text())
    assert len(recycled) >= 4, "workers were not recycled"
    found = server.scrape()
    assert request_totals(found) == first_half + second_half + server.startup_requests
    assert series(found, "conduit_http_requests_in_flight") == {frozenset(): 0.0}

    # Only running workers keep files of their own; everything else is in the archives.
    running = server.worker_pids()
    left = {
        int(match.group(1))
        for path in server.metrics_dir.iterdir()
        if (match := re.search(r"_(\d+)\.db$", path.name))
    }
    assert left <= running, f"files of exited workers remain: {sorted(left - running)}"
    assert victim not in left
    assert (server.metrics_dir / "counter_archive.db").exists()


def test_request_id_of_the_response_is_in_the_access_log_line(uwsgi_factory):
    server = uwsgi_factory(processes=2, threads=4)
    given = server.get("/api/articles", headers={"X-Request-ID": "client-chosen-id.42"})
    generated = server.get("/api/tags")
    refused = server.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})

    assert given.headers["X-Request-ID"] == "client-chosen-id.42"
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["X-Request-ID"])
    assert re.fullmatch(r"[0-9a-f]{32}", refused.headers["X-Request-ID"])

    expected = {
        given.headers["X-Request-ID"]: ("/api/articles", 200),
        generated.headers["X-Request-ID"]: ("/api/tags", 200),
        refused.headers["X-Request-ID"]: ("/healthz", 200),
    }
    deadline = time.monotonic() + 10  # the master writes the workers' output out
    while True:
        access = [r for r in server.json_logs() if r.get("logger") == "conduit.access"]
        by_id = {}
        for record in access:
            by_id.setdefault(record["request_id"], []).append(record)
        if all(request_id in by_id for request_id in expected) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for request_id, (path, status) in expected.items():
        assert len(by_id.get(request_id, [])) == 1, f"one access line for {request_id}"
        record = by_id[request_id][0]
        assert (record["path"], record["status"], record["method"]) == (path, status, "GET")
        assert record["route"] == path
        assert record["level"] == "INFO"
        assert isinstance(record["duration_ms"], float)
        assert record["duration_ms"] >= 0
