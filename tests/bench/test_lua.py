"""The wrk scripts against a recording HTTP server on 127.0.0.1 (one second each)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench import wrk
from tests.support import require_program

LOAD = wrk.Load(threads=2, connections=4, duration_s=1, timeout_s=2)


@pytest.fixture
def server():
    """Answers 201 to everything, and 404 to /missing; keeps what it was sent."""
    received: list[tuple[str, str, dict, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self):
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            received.append((self.command, self.path, dict(self.headers), body))
            status = 404 if self.path == "/missing" else 201
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", received
    httpd.shutdown()
    httpd.server_close()


def test_every_article_create_has_a_new_title_and_the_callers_token(server):
    url, received = server
    result, _ = wrk.run(
        require_program("wrk"),
        f"{url}/api/articles",
        "create_article.lua",
        LOAD,
        {"Authorization": "Token abc"},
        {"BENCH_NONCE": "n1"},
    )
    assert result.requests > 10
    assert result.non_2xx == 0
    titles = []
    for method, path, headers, body in received:
        assert (method, path) == ("POST", "/api/articles")
        assert headers["Authorization"] == "Token abc"
        assert headers["Content-Type"] == "application/json"
        article = json.loads(body)["article"]
        assert set(article) == {"title", "description", "body", "tagList"}
        titles.append(article["title"])
    assert len(set(titles)) == len(titles)
    assert all(" n1 " in title for title in titles)


def test_login_sends_the_credentials_as_json(server):
    url, received = server
    env = {"BENCH_EMAIL": 'a"b@example.com', "BENCH_PASSWORD": "p\\w"}
    wrk.run(require_program("wrk"), f"{url}/api/users/login", "login.lua", LOAD, None, env)
    method, _, headers, body = received[0]
    assert (method, headers["Content-Type"]) == ("POST", "application/json")
    assert json.loads(body) == {"user": {"email": 'a"b@example.com', "password": "p\\w"}}


def test_error_replies_are_counted(server):
    url, _ = server
    result, output = wrk.run(require_program("wrk"), f"{url}/missing", "get.lua", LOAD)
    assert result.requests > 0
    assert result.non_2xx == result.requests
    assert result.cpu_s > 0  # wrk's own CPU time, measured around the run
    assert "Latency Distribution" in output  # --latency: wrk's own report is kept too
