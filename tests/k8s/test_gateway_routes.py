"""The Gateway's routes, run by a real Envoy in front of a backend that echoes.

Envoy gets the configuration tests/k8s/envoy_conf.py derives from the Gateway, the
HTTPRoutes and the ClientTrafficPolicy as Envoy Gateway v1.9.0 would (the rendered
ones of each environment, and k8s/base), the same one the Postman and image tiers put
in front of the app. The backend answers every request with the path it received, so
each case shows what the app would see. prod is reached over HTTPS with its host name
(a certificate from a test CA stands in for Let's Encrypt's).
"""

from __future__ import annotations

import contextlib
import copy
import http.client
import json
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme

from tests.k8s import envoy_conf
from tests.k8s.support import K8S, SAMPLE_PROD_HOST, load_all


class EchoHandler(BaseHTTPRequestHandler):
    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.dumps(
            {
                "path": self.path,
                "method": self.command,
                "host": self.headers.get("Host"),
                "forwarded_for": self.headers.get("X-Forwarded-For"),
                "request_id": self.headers.get("X-Request-ID"),
                "body_bytes": len(self.rfile.read(length)) if length else 0,
                "server": self.server.server_address[1],
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


def echo_server() -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def backend() -> Iterator[int]:
    server = echo_server()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_files(ca, tmp_path_factory) -> envoy_conf.TlsFiles:
    """The certificate cert-manager would put in Secret conduit-tls, from a test CA."""
    folder = tmp_path_factory.mktemp("tls")
    issued = ca.issue_cert(SAMPLE_PROD_HOST)
    issued.cert_chain_pems[0].write_to_path(folder / "tls.crt")
    for pem in issued.cert_chain_pems[1:]:
        pem.write_to_path(folder / "tls.crt", append=True)
    issued.private_key_pem.write_to_path(folder / "tls.key")
    return envoy_conf.TlsFiles(folder / "tls.crt", folder / "tls.key")


def edge_objects(source: str, rendered_envs) -> list[dict]:
    if source == "base":
        return envoy_conf.load_objects(K8S / "base")
    # The namespace too: its labels decide which routes the Gateway's listeners admit.
    stages = dict(rendered_envs[source].rendered.stages)
    return [*load_all(stages["namespace"]), *load_all(stages["ingress"])]


@dataclass
class Client:
    """Sends raw request lines (no client-side path normalisation) the way a user of
    one environment does: prod over HTTPS with its host name, the others to the address."""

    edge: envoy_conf.Edge
    context: ssl.SSLContext | None = None
    host: str | None = None

    @property
    def listener(self) -> str:
        return "https" if self.context else "http"

    def connection(self, listener: str | None = None) -> http.client.HTTPConnection:
        listener = listener or self.listener
        port = self.edge.port(listener)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        if listener == "https":
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            connection.sock = self.context.wrap_socket(raw, server_hostname=self.host)
        return connection

    def send(
        self,
        path: str,
        method: str = "GET",
        body: bytes | None = None,
        *,
        listener: str | None = None,
        host: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict | None, http.client.HTTPResponse]:
        connection = self.connection(listener)
        try:
            sent = {"Host": host or self.host} if (host or self.host) else {}
            connection.request(method, path, body=body, headers={**sent, **(headers or {})})
            response = connection.getresponse()
            payload = response.read()
            is_json = response.getheader("Content-Type") == "application/json"
            return response.status, json.loads(payload) if is_json else None, response
        finally:
            connection.close()


@pytest.fixture(scope="module", params=["base", "dev", "prod"])
def edge(request, rendered_envs, backend, ca, tls_files, tmp_path_factory) -> Iterator[Client]:
    """Envoy routing like Envoy Gateway for one environment's objects."""
    objects = edge_objects(request.param, rendered_envs)
    workdir = tmp_path_factory.mktemp(f"envoy-{request.param}")
    with envoy_conf.serve(objects, f"127.0.0.1:{backend}", workdir, tls_files) as running:
        if "https" in running.urls:
            context = ssl.create_default_context()
            ca.configure_trust(context)
            yield Client(running, context, SAMPLE_PROD_HOST)
        else:
            yield Client(running)


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
        ("/flask/api/", "/api/"),
        ("/flask/api/profiles/jake.o_k-1", "/api/profiles/jake.o_k-1"),
        ("/flask/readyz", "/readyz"),
        ("/flask/healthz", "/healthz"),
    ],
)
def test_api_under_flask_reaches_the_app_without_the_prefix(edge, public_path, app_path):
    status, echoed, _ = edge.send(public_path)
    assert status == 200
    assert echoed["path"] == app_path


@pytest.mark.parametrize(
    "public_path",
    [
        "/flaskx", "/flaskx/api/articles", "/api/articles", "/", "/other/flask/api",
        "/flask", "/flask/", "/flask/apix", "/flask/readyzz", "/flask/API/articles",
        "/Flask/api/articles",
    ],
)  # fmt: skip
def test_paths_outside_the_public_api_get_the_gateways_404(edge, public_path):
    status, echoed, _ = edge.send(public_path)
    assert status == 404
    assert echoed is None, "the request must not reach the app"


# Spellings of the metrics path a client might try. Envoy normalises the path before it
# routes (RFC 3986 dot segments; merged slashes; encoded slashes refused), and the
# prefixes are case-sensitive and whole-segment, so none may reach the app as
# anything that resolves to /metrics.
METRICS_TRICKS = [
    "/flask/metrics", "/flask/metrics/", "/flask/Metrics", "/flask/METRICS",
    "/flask/metrics?format=prometheus", "/flask//metrics", "/flask///metrics",
    "/flask/./metrics", "/flask/api/../metrics", "/flask/api/./../metrics",
    "/flask/api/%2e%2e/metrics", "/flask/api/%2E%2E/metrics", "/flask/%2fmetrics",
    "/flask/%2Fmetrics", "/flask/api%2f..%2fmetrics", "/flask/%6detrics",
    "/flask/%6Detrics", "/flask/api/..%2fmetrics", "/flask/readyz/../metrics",
    "/flask/healthz/..%2Fmetrics", "/flask/api//..//metrics", "/flask/api/;/../metrics",
    "/flask/api/%252e%252e/metrics", "/flask/api/articles/../../metrics", "/metrics",
    "//flask/metrics", "/flask/api/%5c..%5cmetrics", "/flask/api\\..\\metrics",
    "/flask/api/%2e%2e%2fmetrics", "/flask/api/..;/metrics", "/flask/api/../api/../metrics",
]  # fmt: skip


def test_the_app_serves_metrics_at_the_path_the_gateway_hides(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert b"# TYPE" in response.data


@pytest.mark.parametrize("public_path", METRICS_TRICKS)
def test_metrics_are_not_reachable_through_the_gateway(edge, client, public_path):
    try:
        status, echoed, _ = edge.send(public_path)
    except http.client.InvalidURL:
        pytest.skip("http.client refuses to send this request line")
    if echoed is None:
        assert status in (400, 404), f"{public_path} -> {status}"
        return
    # Envoy passed it on as an API path (say /api/;/metrics): the app, which resolves
    # no dot segments, must answer that path with a 404, not with metrics.
    response = client.get(echoed["path"])
    assert response.status_code == 404, f"{public_path} reached the app as {echoed['path']}"
    assert b"# TYPE" not in response.data


def test_encoded_slashes_are_refused(edge):
    status, echoed, _ = edge.send("/flask/api/articles%2Fx")
    assert (status, echoed) == (400, None)


def test_methods_and_bodies_pass_through(edge):
    status, echoed, _ = edge.send("/flask/api/users", method="POST", body=b'{"user": {}}')
    assert status == 200
    assert (echoed["method"], echoed["path"], echoed["body_bytes"]) == ("POST", "/api/users", 12)
    # use_remote_address: Envoy writes the connection's peer (the client, or the load
    # balancer's address as the node sees it).
    assert echoed["forwarded_for"]
    assert "," not in echoed["forwarded_for"]


def test_every_request_reaches_the_app_with_a_fresh_request_id(edge):
    """The app logs it (k8s/monitoring/README.md); a client's own is not trusted."""
    _, echoed, _ = edge.send("/flask/api/tags", headers={"X-Request-ID": "client-made"})
    assert re.fullmatch(r"[0-9a-f-]{36}", echoed["request_id"]), echoed["request_id"]


def test_bodies_above_the_limit_are_refused_at_the_gateway(edge):
    status, echoed, _ = edge.send(
        "/flask/api/articles", method="POST", body=b"x" * (1024 * 1024 + 1)
    )
    assert (status, echoed) == (413, None)
    status, echoed, _ = edge.send("/flask/api/articles", method="POST", body=b"x" * (1024 * 1024))
    assert (status, echoed["body_bytes"]) == (200, 1024 * 1024)


def test_a_chunked_body_reaches_the_app_whole_with_its_length(edge):
    # The buffer filter receives the chunked body whole and forwards it with a
    # Content-Length, which uWSGI's router needs (it passes no chunked body to a WSGI app).
    status, echoed, _ = edge.send(
        "/flask/api/articles", method="POST", body=iter([b"x" * 1000, b"y" * 24])
    )
    assert (status, echoed["body_bytes"]) == (200, 1024)


def test_an_oversized_request_head_gets_431_at_the_gateway(edge):
    # Envoy's max_request_headers_kb, 60 KiB by default (Envoy Gateway v1.9.0 never sets
    # it): uWSGI's router would close a head over its 32 KiB buffer unanswered.
    status, _, _ = edge.send("/flask/api/user", headers={"Authorization": "Token " + "x" * 70000})
    assert status == 431


def test_a_request_head_that_never_ends_gets_408_at_the_gateway(edge):
    # requestHeadersReceivedTimeout (5 s, k8s/base/clienttrafficpolicy.yaml): a slow
    # client's connection is answered and closed by Envoy instead of staying open; the
    # client waits at most 12 s here (without the timeout: until Envoy's 1 h idle limit).
    connection = edge.connection()
    if connection.sock is None:  # plain HTTP; HTTPS comes connected
        connection.connect()
    connection.sock.settimeout(12)
    connection.sock.sendall(b"GET /flask/api/tags HTTP/1.1\r\nHost: example.com\r\nX-Slow: ")
    answer = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := connection.sock.recv(4096):
            answer += chunk
    connection.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]


# --- prod: HTTPS on its host name ---------------------------------------------------


@pytest.fixture(scope="module")
def prod(rendered_envs, backend, ca, tls_files, tmp_path_factory) -> Iterator[Client]:
    objects = edge_objects("prod", rendered_envs)
    workdir = tmp_path_factory.mktemp("envoy-prod-only")
    with envoy_conf.serve(objects, f"127.0.0.1:{backend}", workdir, tls_files) as running:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        yield Client(running, context, SAMPLE_PROD_HOST)


def test_prod_redirects_plain_http_to_https(prod):
    status, echoed, response = prod.send("/flask/api/articles?limit=5", listener="http")
    assert (status, echoed) == (301, None)
    assert response.getheader("Location") == (
        f"https://{SAMPLE_PROD_HOST}/flask/api/articles?limit=5"
    )


def test_prod_serves_only_its_host_name(prod):
    # Plain HTTP to the bare address: no route for it (not even the redirect).
    status, echoed, _ = prod.send("/flask/api/articles", listener="http", host="203.0.113.7")
    assert (status, echoed) == (404, None)
    # HTTPS for another name: Envoy has no filter chain for that SNI.
    other = Client(prod.edge, prod.context, "other.example.org")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        other.send("/flask/api/articles")


def test_prod_certificate_is_verified_for_the_host(prod, tmp_path):
    # A client that trusts only the system roots refuses the test CA's certificate:
    # what the smoke test checks against Let's Encrypt's chain in the cluster.
    strict = Client(prod.edge, ssl.create_default_context(), SAMPLE_PROD_HOST)
    with pytest.raises(ssl.SSLCertVerificationError):
        strict.send("/flask/api/articles")


def test_acme_challenges_are_answered_over_http_despite_the_redirect(
    rendered_envs, backend, tls_files, tmp_path
):
    """cert-manager's solver route (v1.19.5 pkg/issuer/acme/http/httproute.go
    generateHTTPRouteSpec: an Exact path match on the Issuer's parentRefs, for the
    challenged name) wins over the redirect's match-everything prefix."""
    issuer = rendered_envs["prod"].one("Issuer")
    [solver] = issuer["spec"]["acme"]["solvers"]
    token = "0123456789abcdef"
    challenge_route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        # cert-manager creates it in the Issuer's namespace.
        "metadata": {
            "name": "cm-acme-http-solver-x1y2z",
            "namespace": issuer["metadata"]["namespace"],
        },
        "spec": {
            "parentRefs": copy.deepcopy(solver["http01"]["gatewayHTTPRoute"]["parentRefs"]),
            "hostnames": [SAMPLE_PROD_HOST],
            "rules": [
                {
                    "matches": [
                        {"path": {"type": "Exact", "value": f"/.well-known/acme-challenge/{token}"}}
                    ],
                    "backendRefs": [{"name": "cm-acme-http-solver-x1y2z", "port": 8089}],
                }
            ],
        },
    }
    solver_server = echo_server()
    try:
        objects = [*edge_objects("prod", rendered_envs), challenge_route]
        upstreams = {
            "conduit": f"127.0.0.1:{backend}",
            "cm-acme-http-solver-x1y2z": f"127.0.0.1:{solver_server.server_address[1]}",
        }
        with envoy_conf.serve(objects, upstreams, tmp_path, tls_files) as running:
            plain = Client(running, host=SAMPLE_PROD_HOST)
            status, echoed, _ = plain.send(f"/.well-known/acme-challenge/{token}")
            assert status == 200
            assert echoed["server"] == solver_server.server_address[1]
            assert echoed["path"] == f"/.well-known/acme-challenge/{token}"
            # Any other path on plain HTTP is still redirected.
            status, _, _ = plain.send("/.well-known/acme-challenge/other")
            assert status == 301
    finally:
        solver_server.shutdown()
        solver_server.server_close()


def test_a_canary_backend_added_to_every_rule_takes_the_traffic_its_weight_gives(
    rendered_envs, backend, tmp_path
):
    """The canary hook (k8s/README.md): the same weighted list in every rule. Weight 0
    for the stable Service sends every request, of every rule, to the canary."""
    objects = copy.deepcopy(edge_objects("dev", rendered_envs))
    route = next(o for o in objects if o["kind"] == "HTTPRoute")
    for rule in route["spec"]["rules"]:
        rule["backendRefs"] = [
            {"name": "conduit", "port": 80, "weight": 0},
            {"name": "conduit-canary", "port": 80, "weight": 100},
        ]
    canary = echo_server()
    try:
        upstreams = {
            "conduit": f"127.0.0.1:{backend}",
            "conduit-canary": f"127.0.0.1:{canary.server_address[1]}",
        }
        with envoy_conf.serve(objects, upstreams, tmp_path) as running:
            client = Client(running)
            for path in ["/flask/api/tags", "/flask/healthz", "/flask/readyz"] * 5:
                status, echoed, _ = client.send(path)
                assert (status, echoed["server"]) == (200, canary.server_address[1])
    finally:
        canary.shutdown()
        canary.server_close()


# --- the translation itself ---------------------------------------------------------


def test_translation_follows_envoy_gateway(backend):
    """The routes and listener settings are the ones Envoy Gateway's translator emits
    (route.go buildPathMatch / buildXdsURLRewriteAction, listener.go)."""
    objects = envoy_conf.load_objects(K8S / "base")
    config = envoy_conf.bootstrap(objects, {"conduit": f"127.0.0.1:{backend}"}, {"http": 1})
    [listener] = config["static_resources"]["listeners"]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert (manager["normalize_path"], manager["merge_slashes"]) == (True, True)
    assert manager["path_with_escaped_slashes_action"] == "REJECT_REQUEST"
    [host] = manager["route_config"]["virtual_hosts"]
    assert host["domains"] == ["*"]
    routes = {r["match"]["path_separated_prefix"]: r["route"] for r in host["routes"]}
    assert {prefix: route["prefix_rewrite"] for prefix, route in routes.items()} == {
        "/flask/api": "/api",
        "/flask/healthz": "/healthz",
        "/flask/readyz": "/readyz",
    }
    assert routes["/flask/api"]["weighted_clusters"] == {
        "clusters": [{"name": "backend/conduit", "weight": 100}]
    }
    # The BackendTrafficPolicy: a 1 MiB buffer per route, a 60 s upstream idle timeout.
    [buffer, router] = manager["http_filters"]
    assert (buffer["name"], buffer["disabled"]) == ("envoy.filters.http.buffer", True)
    assert router["name"] == "envoy.filters.http.router"
    for route in host["routes"]:
        per_route = route["typed_per_filter_config"]["envoy.filters.http.buffer"]
        assert per_route["buffer"] == {"max_request_bytes": 1024 * 1024}
    [cluster] = config["static_resources"]["clusters"]
    options = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert options["common_http_protocol_options"] == {"idle_timeout": "60s"}


def test_a_replacement_of_slash_becomes_envoy_gateways_regex_rewrite():
    rule = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/flask"}}],
        "filters": [
            {
                "type": "URLRewrite",
                "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
            }
        ],
        "backendRefs": [{"name": "conduit", "port": 80}],
    }
    action = envoy_conf._action(rule, rule["matches"][0], {"conduit": "backend/conduit"})
    assert action["route"]["regex_rewrite"] == {
        "pattern": {"regex": r"^/flask\/*"},
        "substitution": "/",
    }


def _base_with(change) -> list[dict]:
    objects = copy.deepcopy(envoy_conf.load_objects(K8S / "base"))
    change(objects)
    return objects


def _route(objects):
    return next(o for o in objects if o["kind"] == "HTTPRoute")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda o: _route(o)["spec"]["rules"][0]["matches"][0].update(
                headers=[{"name": "x-canary", "value": "1"}]
            ),
            "matches other than on the path",
        ),
        (
            lambda o: _route(o)["spec"]["rules"][0]["filters"].append(
                {"type": "RequestHeaderModifier", "requestHeaderModifier": {}}
            ),
            "filters not translated",
        ),
        (
            lambda o: next(x for x in o if x["kind"] == "Gateway")["spec"]["listeners"][0].update(
                protocol="TCP"
            ),
            "listener protocol TCP",
        ),
        (
            lambda o: next(x for x in o if x["kind"] == "ClientTrafficPolicy")["spec"].update(
                timeout={"http": {"idleTimeout": "5s"}}
            ),
            "ClientTrafficPolicy fields not translated",
        ),
        (
            lambda o: next(x for x in o if x["kind"] == "BackendTrafficPolicy")["spec"].update(
                retry={"numRetries": 2}
            ),
            "BackendTrafficPolicy fields not translated",
        ),
        (
            lambda o: o.remove(_route(o)),
            "no HTTPRoute object",
        ),
    ],
)
def test_the_generator_refuses_what_it_does_not_translate(change, message):
    with pytest.raises(envoy_conf.EnvoyConfError, match=message):
        envoy_conf.bootstrap(_base_with(change), {"conduit": "127.0.0.1:1"}, {"http": 1})


def test_the_generator_refuses_a_source_without_a_gateway(tmp_path: Path):
    (tmp_path / "service.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n")
    with pytest.raises(envoy_conf.EnvoyConfError, match="expected one Gateway"):
        envoy_conf.bootstrap(tmp_path, {"conduit": "127.0.0.1:1"}, {"http": 1})
