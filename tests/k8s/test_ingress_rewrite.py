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

PUBLIC_PATH = "/flask/(api(?:/.*)?|healthz|readyz)$"


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
        ("/flask/api/articles?limit=5&offset=10", "/api/articles?limit=5&offset=10"),
        ("/flask/api/tags", "/api/tags"),
        ("/flask/api", "/api"),
        ("/flask/readyz", "/readyz"),
        ("/flask/healthz", "/healthz"),
    ],
)
def test_api_under_flask_reaches_the_app_without_the_prefix(proxy, public_path, app_path):
    status, echoed = get(proxy, public_path)
    assert status == 200
    assert echoed["path"] == app_path


@pytest.mark.parametrize(
    "public_path",
    [
        "/flaskx", "/flaskx/api/articles", "/api/articles", "/", "/other/flask/api",
        "/flask", "/flask/", "/flask/apix", "/flask/readyzz",
    ],
)  # fmt: skip
def test_paths_outside_the_public_api_get_the_default_backend(proxy, public_path):
    status, echoed = get(proxy, public_path)
    assert status == 404
    assert echoed is None, "the request must not reach the app"


# Spellings of the metrics path a client might try; nginx normalises the path before it
# matches locations and rewrites (merge_slashes, dot segments, %XX), so none may reach
# the app as anything that resolves to /metrics.
METRICS_TRICKS = [
    "/flask/metrics", "/flask/metrics/", "/flask/Metrics", "/flask/METRICS",
    "/flask/metrics?format=prometheus", "/flask//metrics", "/flask///metrics",
    "/flask/./metrics", "/flask/api/../metrics", "/flask/api/./../metrics",
    "/flask/api/%2e%2e/metrics", "/flask/api/%2E%2E/metrics", "/flask/%2fmetrics",
    "/flask/%2Fmetrics", "/flask/api%2f..%2fmetrics", "/flask/%6detrics",
    "/flask/api/..%2fmetrics", "/flask/readyz/../metrics", "/flask/healthz/..%2Fmetrics",
    "/flask/api//..//metrics", "/flask/api/;/../metrics", "/flask/api/%252e%252e/metrics",
    "/flask/api/articles/../../metrics", "/metrics", "//flask/metrics",
]  # fmt: skip


def test_the_app_serves_metrics_at_the_path_the_ingress_hides(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert b"# TYPE" in response.data


@pytest.mark.parametrize("public_path", METRICS_TRICKS)
def test_metrics_are_not_reachable_through_the_ingress(proxy, request, public_path):
    status, echoed = get(proxy, public_path)
    if echoed is None:
        assert status in (400, 404), f"{public_path} -> {status}"
        return
    # nginx passed it on as an API path (say /api/;/../metrics): the app, which
    # resolves no dot segments, must answer that path with a 404, not with metrics.
    response = request.getfixturevalue("client").get(echoed["path"])
    assert response.status_code == 404, f"{public_path} reached the app as {echoed['path']}"
    assert b"# TYPE" not in response.data


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
    assert f'location ~* "^{PUBLIC_PATH}" {{' in conf
    assert f'rewrite "(?i){PUBLIC_PATH}" /$1 break;' in conf
    assert 'location ~* "^/" {' in conf


def test_generator_refuses_a_source_without_an_ingress(tmp_path):
    (tmp_path / "service.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n")
    with pytest.raises(nginx_conf.IngressError, match="no Ingress object"):
        nginx_conf.load_ingresses(tmp_path)
