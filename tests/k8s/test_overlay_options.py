"""The optional changes k8s/README.md documents render, validate and behave.

Each test applies the README's overlay changes to a copy of k8s/ and renders it, so
the documentation cannot drift from what kustomize and render() accept.
"""

from __future__ import annotations

import yaml
from conduit_deploy.render import render

from tests.k8s.support import load_all, sample_values
from tests.k8s.test_schemas import schema_errors

KUBERNETES_VERSION = "1.35.5"

# Every CloudNativePG object goes; a Service with the operator's read-write name (the
# host in DATABASE_URL) leads to the managed instance instead.
MANAGED_DATABASE_PATCHES = [
    {"patch": f"$patch: delete\napiVersion: {api}\nkind: {kind}\nmetadata: {{name: {name}}}\n"}
    for api, kind, name in [
        ("postgresql.cnpg.io/v1", "Cluster", "conduit-db"),
        ("postgresql.cnpg.io/v1", "ScheduledBackup", "conduit-db-nightly"),
        ("barmancloud.cnpg.io/v1", "ObjectStore", "conduit-backups"),
        ("networking.k8s.io/v1", "NetworkPolicy", "postgres-ingress"),
    ]
]
MANAGED_DATABASE_SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: conduit-db-rw
  labels:
    app.kubernetes.io/component: database
spec:
  ports: [{name: postgres, port: 5432, protocol: TCP, targetPort: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: conduit-db-managed
  labels:
    kubernetes.io/service-name: conduit-db-rw
    app.kubernetes.io/component: database
addressType: IPv4
ports: [{name: postgres, port: 5432, protocol: TCP}]
endpoints: [{addresses: ["10.20.0.5"]}]
"""


def edit_overlay(root, environment, *, patches=(), resources=(), files=None):
    overlay = root / "k8s" / "overlays" / environment
    for name, text in (files or {}).items():
        (overlay / name).write_text(text)
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    kustomization.setdefault("patches", []).extend(patches)
    kustomization.setdefault("resources", []).extend(resources)
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))


def test_managed_database_replaces_the_cloudnativepg_cluster(repo_copy, tmp_path):
    edit_overlay(
        repo_copy,
        "prod",
        patches=MANAGED_DATABASE_PATCHES,
        resources=["database-managed.yaml"],
        files={"database-managed.yaml": MANAGED_DATABASE_SERVICE},
    )
    rendered = render(sample_values("prod"), tmp_path)
    stages = {name: load_all(path) for name, path in rendered.stages}
    objects = [o for stage in stages.values() for o in stage]

    assert not [o for o in objects if o["apiVersion"].split("/")[0].endswith("cnpg.io")]
    database = {(o["kind"], o["metadata"]["name"]): o for o in stages["database"]}
    service = database[("Service", "conduit-db-rw")]
    assert "selector" not in service["spec"]
    endpoints = database[("EndpointSlice", "conduit-db-managed")]
    assert endpoints["metadata"]["labels"]["kubernetes.io/service-name"] == "conduit-db-rw"
    assert endpoints["metadata"]["namespace"] == rendered.namespace
    assert schema_errors(objects, KUBERNETES_VERSION) == []
