"""An nginx.conf that routes like ingress-nginx would for the project's Ingress.

The CI cannot run a cluster, but it can run nginx. This module reads the Ingress
object (from a rendered manifest or from k8s/base) and translates its paths and
annotations the way the ingress-nginx controller's template does:

* when an Ingress uses `use-regex` or `rewrite-target`, every path of the server
  becomes a case-insensitive regex location anchored at the start:
  ``location ~* "^<path>"``;
* with `rewrite-target`, the location rewrites before proxying:
  ``rewrite "(?i)<path>" <target> break;`` (nginx keeps the query string);
* `proxy-body-size` becomes ``client_max_body_size`` (ingress-nginx's default: 1m);
* requests no rule matches get the controller's default backend: 404.

`serve()` runs nginx with that configuration in front of a backend, so the image and
Postman tiers and tests/k8s/test_ingress_rewrite.py put the same routing in front of
the app that the cluster will:

    with nginx_conf.serve(K8S / "base", "127.0.0.1:8000", tmp_path) as base_url:
        requests.get(f"{base_url}/flask/api/tags")

Everything nginx writes (pid, logs) lives under the prefix. Responses and request
bodies are never buffered to temporary files, so the worker processes (which run as
`nobody` when nginx is started as root) need no write access anywhere.
"""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support import free_port, require_program, stop_process, wait_until

ANNOTATION = "nginx.ingress.kubernetes.io/"
DEFAULT_BODY_SIZE = "1m"  # ingress-nginx's proxy-body-size default


class IngressError(Exception):
    """The Ingress cannot be translated; the message names the problem."""


@dataclass(frozen=True)
class Route:
    host: str  # "" for rules without a host
    path: str
    path_type: str
    rewrite_target: str
    use_regex: bool
    body_size: str

    @property
    def regex(self) -> bool:
        # ingress-nginx: any rewrite or use-regex in a server turns its paths into regexes.
        return self.use_regex or bool(self.rewrite_target)


def load_ingresses(source: Path) -> list[dict]:
    """Ingress objects from a YAML file (multi-document) or every YAML file of a directory."""
    if source.is_dir():
        files = sorted([*source.glob("*.yaml"), *source.glob("*.yml")])
    elif source.is_file():
        files = [source]
    else:
        raise IngressError(f"{source} does not exist")
    found = []
    for file in files:
        try:
            documents = list(yaml.safe_load_all(file.read_text()))
        except yaml.YAMLError as exc:
            raise IngressError(f"{file} is not valid YAML: {exc}") from exc
        found += [d for d in documents if isinstance(d, dict) and d.get("kind") == "Ingress"]
    if not found:
        raise IngressError(f"no Ingress object in {source}")
    return found


def routes_of(ingress: dict) -> list[Route]:
    annotations = ingress.get("metadata", {}).get("annotations") or {}
    spec = ingress.get("spec") or {}
    if spec.get("ingressClassName") != "nginx":
        raise IngressError("the Ingress does not use ingressClassName: nginx")
    rewrite_target = annotations.get(ANNOTATION + "rewrite-target", "")
    use_regex = annotations.get(ANNOTATION + "use-regex", "false").lower() == "true"
    body_size = annotations.get(ANNOTATION + "proxy-body-size", DEFAULT_BODY_SIZE)
    if not re.fullmatch(r"[0-9]+[kKmMgG]?", body_size):
        raise IngressError(f"unsupported proxy-body-size {body_size!r}")
    routes = []
    for rule in spec.get("rules") or []:
        for item in (rule.get("http") or {}).get("paths") or []:
            path = item.get("path", "/")
            if '"' in path or "\n" in path:
                raise IngressError(f"path {path!r} cannot be quoted for nginx")
            routes.append(
                Route(
                    host=rule.get("host", ""),
                    path=path,
                    path_type=item.get("pathType", "ImplementationSpecific"),
                    rewrite_target=rewrite_target,
                    use_regex=use_regex,
                    body_size=body_size,
                )
            )
    if not routes:
        raise IngressError("the Ingress has no HTTP paths")
    return routes


def location_block(route: Route, upstream: str) -> str:
    if route.regex:
        match = f'~* "^{route.path}"'
    elif route.path_type == "Exact":
        match = f"= {route.path}"
    else:
        match = route.path
    rewrite = ""
    if route.rewrite_target and route.rewrite_target != route.path:
        rewrite = f'            rewrite "(?i){route.path}" {route.rewrite_target} break;\n'
    return (
        f"        location {match} {{\n"
        f"            client_max_body_size {route.body_size};\n"
        f"            client_body_buffer_size {route.body_size};\n"
        f"{rewrite}"
        f"            proxy_pass http://{upstream};\n"
        f"        }}\n"
    )


def default_location(regex: bool) -> str:
    match = '~* "^/"' if regex else "/"
    return f"        location {match} {{\n            return 404;\n        }}\n"


def server_block(listen: str, host: str, routes: list[Route], upstream: str, default: bool) -> str:
    # ingress-nginx orders locations longest path first; nginx tries regexes in order.
    ordered = sorted(routes, key=lambda r: len(r.path), reverse=True)
    regex = any(r.regex for r in routes)
    locations = "".join(location_block(r, upstream) for r in ordered)
    return (
        "    server {\n"
        f"        listen {listen}{' default_server' if default else ''};\n"
        f"        server_name {host or '_'};\n"
        f"{locations}"
        f"{default_location(regex)}"
        "    }\n"
    )


def render_conf(ingresses: list[dict], listen: str, upstream: str, prefix: Path) -> str:
    routes = [route for ingress in ingresses for route in routes_of(ingress)]
    hosts: dict[str, list[Route]] = {}
    for route in routes:
        hosts.setdefault(route.host, []).append(route)
    servers = [server_block(listen, "", hosts.pop("", []), upstream, default=True)]
    servers += [
        server_block(listen, host, rs, upstream, default=False) for host, rs in hosts.items()
    ]
    prefix = prefix.resolve()
    return f"""# Generated by tests/k8s/nginx_conf.py from the Ingress; ingress-nginx routing.
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;

events {{
    worker_connections 256;
}}

http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body_temp;
    proxy_temp_path {prefix}/proxy_temp;
    fastcgi_temp_path {prefix}/fastcgi_temp;
    uwsgi_temp_path {prefix}/uwsgi_temp;
    scgi_temp_path {prefix}/scgi_temp;
    # Never spill to disk (see the module docstring).
    proxy_max_temp_file_size 0;

    # The headers ingress-nginx sets towards the backend.
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_set_header X-Request-ID $request_id;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Host $host;
    proxy_set_header X-Forwarded-Port $server_port;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_connect_timeout 5s;
    proxy_read_timeout 60s;
    proxy_send_timeout 60s;

{"".join(servers)}}}
"""


@contextmanager
def serve(ingress: Path | list[dict], upstream: str, prefix: Path) -> Iterator[str]:
    """nginx routing to `upstream` (HOST:PORT) like ingress-nginx for `ingress`.

    `ingress` is a manifest or directory holding the Ingress, or the objects themselves;
    `prefix` gets the configuration and nginx's logs. Yields nginx's base URL; nginx is
    stopped afterwards, whatever happened.
    """
    nginx = require_program("nginx")
    ingresses = load_ingresses(ingress) if isinstance(ingress, Path) else ingress
    port = free_port()
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(render_conf(ingresses, f"127.0.0.1:{port}", upstream, prefix))
    error_log = prefix / "error.log"
    process = subprocess.Popen(
        [nginx, "-p", str(prefix), "-e", str(error_log), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def listening() -> bool:
            if process.poll() is not None:
                pytest.fail(f"nginx exited with {process.returncode}{log_tail()}", pytrace=False)
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True

        def log_tail() -> str:
            lines = error_log.read_text(errors="replace").splitlines() if error_log.exists() else []
            return "; nginx's error.log ends:\n" + "\n".join(lines[-20:])

        wait_until(listening, f"nginx did not listen on 127.0.0.1:{port}", 15, log_tail)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)
