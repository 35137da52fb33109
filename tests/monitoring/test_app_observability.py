"""Metrics, request ids and JSON logs of the app itself (Flask test client, one process)."""

from __future__ import annotations

import json
import re

import pytest
from flask import Flask, jsonify
from sqlalchemy.engine import make_url

from conduit import create_app
from conduit.observability.metrics import METRICS_PATH
from tests.monitoring.support import request_totals, samples, series
from tests.support import app_env


def scrape(client) -> dict:
    response = client.get(METRICS_PATH)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return samples(response.get_data(as_text=True))


def gauge(app: Flask, name: str, **labels: str) -> float:
    """The current value of a gauge, read from the app's own registry."""
    found = samples(app.test_client().get(METRICS_PATH).get_data(as_text=True))
    (value,) = series(found, name, **labels).values()
    return value


def access_lines(text: str) -> list[dict]:
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [r for r in records if r["logger"] == "conduit.access"]


# --- metrics ----------------------------------------------------------------------


def test_requests_are_counted_by_route_template_method_and_status(client, register, create_article):
    alice = register("alice")
    article = create_article(alice, title="Counting things")
    client.get(f"/api/articles/{article['slug']}")
    client.get("/api/articles/another-slug")
    client.get("/api/profiles/alice")
    client.get("/no/such/thing")
    client.post("/api/users/login", json={"user": {"email": "x"}})

    totals = request_totals(scrape(client))
    assert totals[("/api/articles/<slug>", "GET", "200")] == 1
    assert totals[("/api/articles/<slug>", "GET", "404")] == 1
    assert totals[("/api/profiles/<username>", "GET", "200")] == 1
    assert totals[("/api/users", "POST", "201")] == 1
    assert totals[("/api/articles", "POST", "201")] == 1
    assert totals[("<unmatched>", "GET", "404")] == 1
    assert totals[("/api/users/login", "POST", "422")] == 1
    assert not [route for route, _, _ in totals if article["slug"] in route or "alice" in route]


def test_unknown_methods_share_one_label_value(client):
    client.open("/api/tags", method="PROPFIND")
    client.open("/api/tags", method="BREW")
    totals = request_totals(scrape(client))
    assert totals[("<unmatched>", "OTHER", "405")] == 2
    assert not [method for _, method, _ in totals if method in {"PROPFIND", "BREW"}]


def test_metrics_endpoint_counts_neither_itself_nor_its_time_in_flight(client):
    scrape(client)
    found = scrape(client)
    assert not [key for key in request_totals(found) if key[0] == METRICS_PATH]
    assert series(found, "conduit_http_requests_in_flight") == {frozenset(): 0.0}


def test_latency_histogram_observes_each_request(client):
    for _ in range(3):
        client.get("/healthz")
    found = scrape(client)
    labels = {"route": "/healthz", "method": "GET", "status": "200"}
    (count,) = series(found, "conduit_http_request_duration_seconds_count", **labels).values()
    (total,) = series(found, "conduit_http_request_duration_seconds_sum", **labels).values()
    buckets = series(found, "conduit_http_request_duration_seconds_bucket", **labels)
    assert count == 3
    assert 0 < total < 3 * 10
    assert buckets[frozenset({**labels, "le": "+Inf"}.items())] == 3
    by_le = {dict(k)["le"]: v for k, v in buckets.items()}
    assert by_le["0.005"] <= by_le["0.1"] <= by_le["10.0"] <= by_le["+Inf"]


def test_in_flight_counts_the_request_being_answered(app):
    seen = {}

    @app.get("/test-in-flight")
    def in_flight():
        seen["during"] = gauge(app, "conduit_http_requests_in_flight")
        return jsonify(ok=True)

    client = app.test_client()
    assert client.get("/test-in-flight").status_code == 200
    assert seen["during"] == 1.0
    assert gauge(app, "conduit_http_requests_in_flight") == 0.0


def test_pool_gauges_follow_checked_out_connections(app):
    from conduit.extensions import db

    seen = {}

    @app.get("/test-pool")
    def pool():
        with db.engine.connect() as first, db.engine.connect() as second:
            assert first is not second
            seen["in_use"] = gauge(app, "conduit_db_pool_connections", state="in_use")
        seen["after"] = gauge(app, "conduit_db_pool_connections", state="in_use")
        return jsonify(ok=True)

    client = app.test_client()
    client.get("/test-pool")
    assert seen == {"in_use": 2.0, "after": 0.0}
    assert gauge(app, "conduit_db_pool_connections", state="idle") == 2.0
    assert gauge(app, "conduit_db_pool_max_connections") > 0


def test_database_up_reports_the_last_connection_attempt(client, database_url):
    found = scrape(client)
    assert series(found, "conduit_database_up") == {}, "no value before any attempt"
    client.get("/api/tags")
    # Labelled with the backend the suite runs on (SQLite, or PostgreSQL under --postgres).
    backend = make_url(database_url).get_backend_name()
    assert backend in {"sqlite", "postgresql"}
    assert series(scrape(client), "conduit_database_up") == {frozenset({("backend", backend)}): 1.0}

    # Nothing listens on port 9 of this host: every connection attempt is refused.
    unreachable = create_app(
        env=app_env("postgresql://conduit:conduit@127.0.0.1:9/conduit", DB_POOL_TIMEOUT="1")
    )
    down = unreachable.test_client()
    assert down.get("/readyz").status_code == 503
    assert series(scrape(down), "conduit_database_up") == {
        frozenset({("backend", "postgresql")}): 0.0
    }


def test_build_info_names_version_and_revision(database_url):
    app = create_app(env=app_env(database_url, CONDUIT_VERSION="1.2.3", CONDUIT_REVISION="abc1234"))
    found = scrape(app.test_client())
    assert series(found, "conduit_build_info") == {
        frozenset({("version", "1.2.3"), ("revision", "abc1234")}): 1.0
    }


def test_apps_keep_separate_counts(database_url):
    first = create_app(env=app_env(database_url)).test_client()
    second = create_app(env=app_env(database_url)).test_client()
    first.get("/healthz")
    assert request_totals(scrape(second))[("/healthz", "GET", "200")] == 0


# --- request ids and logs -----------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    ["0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "req_42.retry:1", "b64+/=id", "x" * 128],
)
def test_a_sane_request_id_is_kept(client, capsys, given):
    response = client.get("/api/tags", headers={"X-Request-ID": given})
    assert response.headers["X-Request-ID"] == given
    (line,) = access_lines(capsys.readouterr().out)
    assert line["request_id"] == given


@pytest.mark.parametrize(
    "given", ["", "x" * 129, "has space", "semi;colon", "new\nline", "ünïcode", "<script>"]
)
def test_an_unusable_request_id_is_replaced(client, capsys, given):
    # Straight into the WSGI environ: the test client refuses to send some of these.
    response = client.get("/api/tags", environ_overrides={"HTTP_X_REQUEST_ID": given})
    generated = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    (line,) = access_lines(capsys.readouterr().out)
    assert line["request_id"] == generated


def test_each_request_gets_its_own_generated_id(client):
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(5)}
    assert len(ids) == 5


def test_the_request_id_header_is_readable_by_browsers(client):
    response = client.get("/api/tags", headers={"Origin": "https://example.com"})
    assert "X-Request-ID" in response.headers["Access-Control-Expose-Headers"]


def test_access_line_describes_the_request(client, capsys):
    response = client.get("/api/articles/missing-article?limit=5", headers={"X-Request-ID": "r-1"})
    assert response.status_code == 404
    (line,) = access_lines(capsys.readouterr().out)
    assert line["method"] == "GET"
    assert line["route"] == "/api/articles/<slug>"
    assert line["path"] == "/api/articles/missing-article"  # no query string: it may hold secrets
    assert line["status"] == 404
    assert line["request_id"] == "r-1"
    assert line["level"] == "INFO"
    assert line["message"] == "GET /api/articles/missing-article 404"
    assert isinstance(line["duration_ms"], float)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["time"])


def test_an_error_is_one_json_line_with_its_traceback_and_request_id(app, capsys):
    @app.get("/test-boom")
    def boom():
        raise RuntimeError("the boom under test")

    response = app.test_client().get("/test-boom", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "boom-1"

    out = capsys.readouterr().out
    records = [json.loads(line) for line in out.splitlines()]  # every line is JSON
    (error,) = [r for r in records if r["level"] == "ERROR"]
    assert error["logger"] == "conduit.errors"
    assert error["request_id"] == "boom-1"
    assert error["exception"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: the boom under test" in error["exception"]
    assert 'in boom\n    raise RuntimeError("the boom under test")' in error["exception"]
    (access,) = [r for r in records if r["logger"] == "conduit.access"]
    assert (access["status"], access["request_id"]) == (500, "boom-1")


def test_any_extra_value_still_gives_one_json_line():
    import logging

    from conduit.observability.logs import JsonFormatter

    class Opaque:
        def __str__(self) -> str:
            return "opaque thing"

    record = logging.getLogger("conduit.test").makeRecord(
        "conduit.test",
        logging.WARNING,
        __file__,
        1,
        "count %d",
        (3,),
        None,
        extra={"thing": Opaque(), "by_id": {1: "one"}, "huge": 2**70, "text": "line\nbreak"},
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert json.loads(line) == {
        "time": json.loads(line)["time"],
        "level": "WARNING",
        "logger": "conduit.test",
        "message": "count 3",
        "thing": "opaque thing",
        "by_id": {"1": "one"},
        "huge": 2**70,
        "text": "line\nbreak",
    }
