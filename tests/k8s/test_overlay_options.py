"""The optional changes k8s/README.md documents render, validate and behave.

Each test applies the README's overlay changes to a copy of k8s/ and renders it, so
the documentation cannot drift from what kustomize and render() accept.
"""

from __future__ import annotations

import base64

import yaml
from conduit_deploy.render import render
from sqlalchemy.engine import make_url

from tests.k8s import nginx_conf
from tests.k8s.support import load_all, sample_values
from tests.k8s.test_schemas import schema_errors

KUBERNETES_VERSION = "1.35.5"

MANAGED_DATABASE_PATCHES = [
    {
        "patch": "$patch: delete\napiVersion: apps/v1\nkind: StatefulSet\n"
        "metadata: {name: postgres}\n"
    },
    {
        "patch": "$patch: delete\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
        "metadata: {name: postgres-from-api}\n"
    },
    {
        "target": {"kind": "Service", "name": "postgres"},
        "patch": "- op: remove\n  path: /spec/selector\n",
    },
]
MANAGED_DATABASE_ENDPOINTS = """\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: postgres-managed
  labels:
    kubernetes.io/service-name: postgres
    app.kubernetes.io/component: database
addressType: IPv4
ports: [{name: postgres, port: 5432, protocol: TCP}]
endpoints: [{addresses: ["10.20.0.5"]}]
"""
INGRESS_HOST_PATCH = """\
- op: add
  path: /spec/rules/0/host
  value: conduit.example.org
- op: add
  path: /spec/tls
  value:
    - hosts: [conduit.example.org]
      secretName: conduit-tls
"""


def edit_overlay(root, environment, *, patches=(), resources=(), files=None):
    overlay = root / "k8s" / "overlays" / environment
    for name, text in (files or {}).items():
        (overlay / name).write_text(text)
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    kustomization.setdefault("patches", []).extend(patches)
    kustomization.setdefault("resources", []).extend(resources)
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))


def test_managed_database_replaces_the_statefulset(repo_copy, tmp_path):
    edit_overlay(
        repo_copy,
        "prod",
        patches=MANAGED_DATABASE_PATCHES,
        resources=["database-endpoints.yaml"],
        files={"database-endpoints.yaml": MANAGED_DATABASE_ENDPOINTS},
    )
    values = sample_values("prod")
    rendered = render(values, tmp_path)
    stages = {name: load_all(path) for name, path in rendered.stages}
    objects = [o for stage in stages.values() for o in stage]

    assert rendered.database_statefulset == ""
    assert [o for o in objects if o["kind"] == "StatefulSet"] == []
    database = {(o["kind"], o["metadata"]["name"]): o for o in stages["database"]}
    service = database[("Service", "postgres")]
    assert "selector" not in service["spec"]
    endpoints = database[("EndpointSlice", "postgres-managed")]
    assert endpoints["metadata"]["labels"]["kubernetes.io/service-name"] == "postgres"
    assert endpoints["metadata"]["namespace"] == rendered.namespace
    # DATABASE_URL still names the Service, which now leads to the managed instance.
    app_secret = next(o for o in stages["secrets"] if "DATABASE_URL" in o["data"])
    url = make_url(base64.b64decode(app_secret["data"]["DATABASE_URL"]).decode())
    assert url.host == service["metadata"]["name"]
    assert schema_errors(objects, KUBERNETES_VERSION) == []


def test_host_and_tls_on_the_ingress(repo_copy, tmp_path):
    edit_overlay(
        repo_copy,
        "prod",
        patches=[{"path": "ingress-host.yaml", "target": {"kind": "Ingress", "name": "conduit"}}],
        files={"ingress-host.yaml": INGRESS_HOST_PATCH},
    )
    rendered = render(sample_values("prod"), tmp_path)
    [ingress] = load_all(dict(rendered.stages)["ingress"])
    assert ingress["spec"]["rules"][0]["host"] == "conduit.example.org"
    assert ingress["spec"]["tls"] == [
        {"hosts": ["conduit.example.org"], "secretName": "conduit-tls"}
    ]
    assert schema_errors([ingress], KUBERNETES_VERSION) == []
    # The rewrite moves to the host's server; other hosts get the default backend.
    conf = nginx_conf.render_conf([ingress], "127.0.0.1:1", "127.0.0.1:2", tmp_path)
    assert "server_name conduit.example.org;" in conf
    assert conf.count('rewrite "(?i)/flask/(api(?:/.*)?|healthz|readyz)$" /$1 break;') == 1
