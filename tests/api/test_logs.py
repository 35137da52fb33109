"""Log formats: JSON lines in production and tests, one plain line per request in
development (`make run`), with the development server's own request line dropped."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import urllib.request

import pytest
from werkzeug.serving import make_server

from conduit import create_app
from conduit.observability.logs import DropServerRequestLines, JsonFormatter
from conduit.settings import ConfigError, load_settings
from tests.support import app_env


def serve_one_request(app, path: str) -> None:
    """One request through Werkzeug's development server, as `flask run` serves it."""
    server = make_server("127.0.0.1", 0, app, threaded=False)
    thread = threading.Thread(target=server.handle_request)
    thread.start()
    with contextlib.suppress(urllib.error.HTTPError):
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=10).read()
    thread.join(timeout=10)
    server.server_close()


@pytest.mark.parametrize(("path", "status"), [("/api/tags", 200), ("/api/nothing", 404)])
def test_development_logs_one_plain_line_per_request(database_url, capsys, path, status):
    app = create_app(env=app_env(database_url, CONDUIT_ENV="development"))
    serve_one_request(app, path)
    output = capsys.readouterr().out
    lines = [line for line in output.splitlines() if path in line]
    assert len(lines) == 1, output
    assert re.fullmatch(rf"\d\d:\d\d:\d\d INFO    GET {path} {status} \d+\.\d ms", lines[0])
    assert "\x1b" not in output


def test_production_logs_json_lines(database_url, capsys):
    app = create_app(env=app_env(database_url, LOG_FORMAT="json"))
    serve_one_request(app, "/api/tags")
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    access = [r for r in records if r["logger"] == "conduit.access"]
    assert [r["path"] for r in access] == ["/api/tags"]
    assert all(r["logger"] != "werkzeug" or "/api/tags" not in r["message"] for r in records)


def test_colour_codes_never_reach_a_json_message():
    record = logging.LogRecord(
        "werkzeug", logging.INFO, "", 0, "\x1b[33mPress CTRL+C\x1b[0m", (), None
    )
    assert json.loads(JsonFormatter().format(record))["message"] == "Press CTRL+C"


def test_only_the_servers_request_line_is_dropped():
    # werkzeug/serving.py: WSGIRequestHandler.log() prefixes address and date to the
    # format '"%s" %s %s' of log_request(); other server messages pass.
    request_line = logging.LogRecord(
        "werkzeug",
        logging.INFO,
        "",
        0,
        '127.0.0.1 - - [date] "%s" %s %s',
        ("GET / HTTP/1.1", "200", "-"),
        None,
    )
    banner = logging.LogRecord("werkzeug", logging.INFO, "", 0, " * Running on %s", ("x",), None)
    ours = logging.LogRecord(
        "conduit.access", logging.INFO, "", 0, '"%s" %s %s', ("a", "b", "c"), None
    )
    keep = DropServerRequestLines().filter
    assert not keep(request_line)
    assert keep(banner)
    assert keep(ours)


@pytest.mark.parametrize(
    ("environment", "expected"),
    [("development", "text"), ("production", "json"), ("testing", "json")],
)
def test_log_format_follows_the_environment(tmp_path, environment, expected):
    env = {"CONDUIT_ENV": environment, "CONDUIT_SECRET": "k" * 40}
    assert load_settings(tmp_path, env)["LOG_FORMAT"] == expected
    assert load_settings(tmp_path, {**env, "LOG_FORMAT": "TEXT"})["LOG_FORMAT"] == "text"


def test_an_unknown_log_format_is_named(tmp_path):
    with pytest.raises(ConfigError, match="LOG_FORMAT must be one of json, text, got 'xml'"):
        load_settings(tmp_path, {"CONDUIT_ENV": "development", "LOG_FORMAT": "xml"})


def access_records(output: str) -> list[dict]:
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [r for r in records if r["logger"] == "conduit.access"]


def test_the_access_line_carries_the_request_in_one_json_record(database_url, capsys):
    app = create_app(env=app_env(database_url, LOG_FORMAT="json"))
    capsys.readouterr()
    response = app.test_client().get("/api/articles/no-such", headers={"X-Request-ID": "r-1"})
    (line,) = access_records(capsys.readouterr().out)
    assert line["level"] == "INFO"
    assert line["message"] == "GET /api/articles/no-such 404"
    assert {k: line[k] for k in ("method", "route", "path", "status", "request_id")} == {
        "method": "GET",
        "route": "/api/articles/<slug>",
        "path": "/api/articles/no-such",
        "status": 404,
        "request_id": "r-1",
    }
    assert response.headers["X-Request-ID"] == "r-1"
    assert line["duration_ms"] >= 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["time"])


def test_the_access_line_follows_the_log_level(database_url, capsys):
    app = create_app(env=app_env(database_url, LOG_LEVEL="WARNING"))
    capsys.readouterr()
    app.test_client().get("/api/tags")
    logging.getLogger("conduit.test").warning("still written")
    output = capsys.readouterr().out
    assert access_records(output) == []
    assert "still written" in output


def test_a_hostile_path_cannot_break_or_colour_the_line(database_url, capsys):
    path = '/api/profiles/a"b%1B[31mred\\'
    for log_format in ("json", "text"):
        app = create_app(env=app_env(database_url, LOG_FORMAT=log_format))
        capsys.readouterr()
        app.test_client().get(path)
        output = capsys.readouterr().out
        assert "\x1b" not in output
        if log_format == "json":
            (line,) = access_records(output)
            assert line["path"] == '/api/profiles/a"b\x1b[31mred\\'  # kept, escaped as JSON
        else:
            # The colour sequence goes as a whole, as from any other record.
            assert re.search(r'INFO    GET /api/profiles/a"bred\\ 404 \d+\.\d ms', output)


def test_lines_written_by_many_threads_stay_whole(database_url, capsys):
    app = create_app(env=app_env(database_url, LOG_FORMAT="json"))
    capsys.readouterr()

    def requests():
        client = app.test_client()
        for _ in range(50):
            client.get("/healthz")

    threads = [threading.Thread(target=requests) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(access_records(capsys.readouterr().out)) == 400  # every line parses
