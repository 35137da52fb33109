"""The Ingress path and rewrite, run by real nginx in front of a backend that echoes.

nginx gets the configuration tests/k8s/nginx_conf.py derives from the Ingress (the
rendered one of each environment, and k8s/base), the same one the image test uses in
front of the container. The backend answers every request with the path it received,
so each case shows what the app would see.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.k8s import nginx_conf
from tests.k8s.support import K8S


class EchoHandler(BaseHTTPRequestHandler):
    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.dumps(
            {
                "path": self.path,
                "method": self.command,
                "host": self.headers.get("Host"),
                "forwarded_for": self.headers.get("X-Forwarded-For"),
                "body_bytes": len(self.rfile.read(length)) if length else 0,
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _echo

    def log_message(self, format, *args):  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def backend() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def ingress_sources(rendered_envs) -> dict[str, Path]:
    return {
        "base": K8S / "base",
        **{env: dict(r.rendered.stages)["ingress"] for env, r in rendered_envs.items()},
    }


@pytest.fixture(scope="module", params=["base", "dev", "prod"])
def proxy(request, rendered_envs, backend, tmp_path_factory) -> Iterator[int]:
    """nginx routing like ingress-nginx for one Ingress source; yields its port."""
    source = ingress_sources(rendered_envs)[request.param]
    prefix = tmp_path_factory.mktemp(f"nginx-{request.param}")
    with nginx_conf.serve(source, f"127.0.0.1:{backend}", prefix) as base_url:
        yield int(base_url.rsplit(":", 1)[1])


def get(
    port: int, path: str, method: str = "GET", body: bytes | None = None
) -> tuple[int, dict | None]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        payload = response.read()
        is_json = response.getheader("Content-Type") == "application/json"
        return response.status, json.loads(payload) if is_json else None
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("public_path", "app_path"),
    [
        ("/flask/api/articles", "/api/articles"),
        (
            "/flask/api/articles/how-to-train-your-dragon/comments",
            "/api/articles/how-to-train-your-dragon/comments",
        ),
        ("/flask", "/"),
        ("/flask/", "/"),
        ("/flask/api/articles?limit=5&offset=10", "/api/articles?limit=5&offset=10"),
        ("/flask?tag=dragons", "/?tag=dragons"),
        ("/flask/readyz", "/readyz"),
    ],
)
def test_api_under_flask_reaches_the_app_without_the_prefix(proxy, public_path, app_path):
    status, echoed = get(proxy, public_path)
    assert status == 200
    assert echoed["path"] == app_path


@pytest.mark.parametrize(
    "public_path", ["/flaskx", "/flaskx/api/articles", "/api/articles", "/", "/other/flask/api"]
)
def test_paths_outside_the_prefix_get_the_default_backend(proxy, public_path):
    status, echoed = get(proxy, public_path)
    assert status == 404
    assert echoed is None, "the request must not reach the app"


def test_methods_and_bodies_pass_through(proxy):
    status, echoed = get(proxy, "/flask/api/users", method="POST", body=b'{"user": {}}')
    assert status == 200
    assert (echoed["method"], echoed["path"], echoed["body_bytes"]) == ("POST", "/api/users", 12)
    assert echoed["forwarded_for"] == "127.0.0.1"


def test_bodies_above_the_ingress_limit_are_refused(proxy):
    status, echoed = get(proxy, "/flask/api/articles", method="POST", body=b"x" * (1024 * 1024 + 1))
    assert status == 413
    assert echoed is None


def test_translation_follows_ingress_nginx(tmp_path):
    """The generated locations are the ones ingress-nginx's template writes."""
    [ingress] = nginx_conf.load_ingresses(K8S / "base")
    conf = nginx_conf.render_conf([ingress], "127.0.0.1:1", "127.0.0.1:2", tmp_path)
    assert 'location ~* "^/flask(/|$)(.*)" {' in conf
    assert 'rewrite "(?i)/flask(/|$)(.*)" /$2 break;' in conf
    assert 'location ~* "^/" {' in conf


def test_generator_refuses_a_source_without_an_ingress(tmp_path):
    (tmp_path / "service.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n")
    with pytest.raises(nginx_conf.IngressError, match="no Ingress object"):
        nginx_conf.load_ingresses(tmp_path)
