"""Validate custom resources against the openAPIV3Schema of their pinned CRD.

The CRD files come from tests/upstream.toml (groups `cnpg`, `barman_cloud`,
`gateway_api`, `envoy_gateway` and `cert_manager`), so the rules are upstream's own.
Two things the API server adds on top of the schema are applied here too:

* unknown fields are errors: `kubectl apply` validates with --validate=strict by
  default (server-side field validation, Kubernetes >= 1.27), which rejects a field
  the structural schema would otherwise prune, unless the schema sets
  `x-kubernetes-preserve-unknown-fields`;
* an object whose kind has no pinned CRD is an error, never a silent pass.

Not evaluated: the CRDs' CEL rules (`x-kubernetes-validations`), which need a CEL
engine; they guard immutability on update and a few cross-field rules.
"""

from __future__ import annotations

import copy
from functools import cache

import jsonschema
import yaml

from tests import upstream

# (API group, kind) -> (tests/upstream.toml group, file)
CRDS = {
    ("postgresql.cnpg.io", "Cluster"): (
        "cnpg",
        "config/crd/bases/postgresql.cnpg.io_clusters.yaml",
    ),
    ("postgresql.cnpg.io", "ScheduledBackup"): (
        "cnpg",
        "config/crd/bases/postgresql.cnpg.io_scheduledbackups.yaml",
    ),
    ("postgresql.cnpg.io", "Backup"): (
        "cnpg",
        "config/crd/bases/postgresql.cnpg.io_backups.yaml",
    ),
    ("barmancloud.cnpg.io", "ObjectStore"): (
        "barman_cloud",
        "config/crd/bases/barmancloud.cnpg.io_objectstores.yaml",
    ),
    ("gateway.networking.k8s.io", "GatewayClass"): (
        "gateway_api",
        "config/crd/standard/gateway.networking.k8s.io_gatewayclasses.yaml",
    ),
    ("gateway.networking.k8s.io", "Gateway"): (
        "gateway_api",
        "config/crd/standard/gateway.networking.k8s.io_gateways.yaml",
    ),
    ("gateway.networking.k8s.io", "HTTPRoute"): (
        "gateway_api",
        "config/crd/standard/gateway.networking.k8s.io_httproutes.yaml",
    ),
    ("gateway.envoyproxy.io", "ClientTrafficPolicy"): (
        "envoy_gateway",
        "charts/gateway-helm/charts/crds/crds/generated/"
        "gateway.envoyproxy.io_clienttrafficpolicies.yaml",
    ),
    ("gateway.envoyproxy.io", "BackendTrafficPolicy"): (
        "envoy_gateway",
        "charts/gateway-helm/charts/crds/crds/generated/"
        "gateway.envoyproxy.io_backendtrafficpolicies.yaml",
    ),
    ("cert-manager.io", "Issuer"): ("cert_manager", "deploy/crds/cert-manager.io_issuers.yaml"),
    ("cert-manager.io", "Certificate"): (
        "cert_manager",
        "deploy/crds/cert-manager.io_certificates.yaml",
    ),
}


def _closed(schema: object) -> object:
    """The schema with every object that lists its properties refusing others."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: _closed(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


@cache
def schema_for(api_version: str, kind: str) -> dict | None:
    """The closed openAPIV3Schema of apiVersion/kind, or None when no CRD is pinned."""
    group, _, version = api_version.rpartition("/")
    pinned = CRDS.get((group, kind))
    if pinned is None:
        return None
    crd = yaml.safe_load(upstream.require(*pinned).read_text())
    for served in crd["spec"]["versions"]:
        if served["name"] == version and served.get("served", False):
            return _closed(copy.deepcopy(served["schema"]["openAPIV3Schema"]))
    return None


def crd_errors(obj: dict) -> list[str]:
    """One line per schema violation of obj; a kind without a pinned CRD is one too."""
    where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')} ({obj.get('apiVersion')})"
    schema = schema_for(obj.get("apiVersion", ""), obj.get("kind", ""))
    if schema is None:
        return [f"{where}: no pinned CRD schema (add it to CRDS and tests/upstream.toml)"]
    validator = jsonschema.Draft4Validator(schema)
    return [
        f"{where}: {'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path)))
    ]
