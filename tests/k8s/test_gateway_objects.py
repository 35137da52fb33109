"""The edge objects: valid for their pinned CRDs, and consistent with each other.

Gateway API v1.6.1 (GatewayClass, Gateway, HTTPRoute), Envoy Gateway v1.9.0
(ClientTrafficPolicy, BackendTrafficPolicy) and cert-manager v1.19.5 (Issuer,
Certificate) schemas come from tests/upstream.toml through tests/k8s/crd.py; every rule
used here has a negative case.
What the schemas cannot say (the HTTPS listener, its certificate and the routes naming
one host; the canary hook) is checked below.
"""

from __future__ import annotations

import copy

import pytest

from tests.k8s.crd import crd_errors
from tests.k8s.support import K8S, SAMPLE_PROD_HOST, RenderedEnv, load_all

EDGE_KINDS = ("Gateway", "HTTPRoute", "ClientTrafficPolicy", "BackendTrafficPolicy")
PROD_KINDS = ("Issuer", "Certificate")


def gateway_class() -> dict:
    [found] = load_all(K8S / "cluster" / "gatewayclass.yaml")
    return found


def test_the_gateway_class_is_valid_and_run_by_envoy_gateway(env: RenderedEnv):
    klass = gateway_class()
    assert crd_errors(klass) == []
    assert klass["spec"]["controllerName"] == "gateway.envoyproxy.io/gatewayclass-controller"
    assert env.one("Gateway")["spec"]["gatewayClassName"] == klass["metadata"]["name"]
    # The deploy applies this very file after installing Envoy Gateway.
    assert env.rendered.gateway_class_file == K8S / "cluster" / "gatewayclass.yaml"


@pytest.mark.parametrize("kind", EDGE_KINDS)
def test_edge_objects_are_valid_for_their_crds(env, kind):
    for obj in env.find(kind):
        assert crd_errors(obj) == []


@pytest.mark.parametrize("kind", PROD_KINDS)
def test_prod_certificate_objects_are_valid_for_their_crds(rendered_envs, kind):
    assert crd_errors(rendered_envs["prod"].one(kind)) == []


def _broken(obj: dict, path: list, value: object) -> dict:
    obj = copy.deepcopy(obj)
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return obj


# Each case breaks one rule of a CRD; the comment names the rule's place.
NEGATIVE_CASES = [
    # gateway.networking.k8s.io_httproutes.yaml, matches[].path.type: enum Exact,
    # PathPrefix, RegularExpression
    (
        "HTTPRoute",
        ["spec", "rules", 0, "matches", 0, "path", "type"],
        "Prefix",
        "rules.0.matches.0.path.type",
    ),
    # ...filters[].urlRewrite.path.type: enum ReplaceFullPath, ReplacePrefixMatch
    (
        "HTTPRoute",
        ["spec", "rules", 0, "filters", 0, "urlRewrite", "path", "type"],
        "ReplacePrefix",
        "urlRewrite.path.type",
    ),
    # ...backendRefs[].weight: maximum 1000000
    ("HTTPRoute", ["spec", "rules", 0, "backendRefs", 0, "weight"], 1000001, "weight"),
    # ...rules: maxItems 16
    ("HTTPRoute", ["spec", "rules"], [{"name": f"r{i}"} for i in range(17)], "spec.rules"),
    # gateway.networking.k8s.io_gateways.yaml, listeners[].port: minimum 1
    ("Gateway", ["spec", "listeners", 0, "port"], 0, "listeners.0.port"),
    # ...listeners[].name: the SectionName pattern (lower-case DNS label)
    ("Gateway", ["spec", "listeners", 0, "name"], "HTTP_Plain", "listeners.0.name"),
    # A misspelt field (strict field validation of kubectl apply)
    ("Gateway", ["spec", "gatewayClass"], "envoy-gateway", "gatewayClass"),
    # gateway.envoyproxy.io_clienttrafficpolicies.yaml, path.escapedSlashesAction: enum
    (
        "ClientTrafficPolicy",
        ["spec", "path", "escapedSlashesAction"],
        "Reject",
        "path.escapedSlashesAction",
    ),
    # gateway.envoyproxy.io_backendtrafficpolicies.yaml, requestBuffer.limit: the
    # pattern ^[1-9]+[0-9]*([EPTGMK]i|[EPTGMk])?$ (no zero, no fraction)
    ("BackendTrafficPolicy", ["spec", "requestBuffer", "limit"], "0.5Mi", "requestBuffer.limit"),
]


@pytest.mark.parametrize(("kind", "path", "value", "where"), NEGATIVE_CASES)
def test_the_edge_schemas_refuse_a_broken_object(rendered_envs, kind, path, value, where):
    obj = rendered_envs["dev"].find(kind)[0]
    errors = crd_errors(_broken(obj, path, value))
    assert errors, f"{kind} with {where} = {value!r} passed"
    assert any(where in error for error in errors), errors


PROD_NEGATIVE_CASES = [
    # cert-manager.io_certificates.yaml, privateKey.algorithm: enum RSA, ECDSA, Ed25519
    ("Certificate", ["spec", "privateKey", "algorithm"], "EC", "privateKey.algorithm"),
    # ...spec: required issuerRef, secretName
    ("Certificate", ["spec", "secretName"], None, "secretName"),
    # cert-manager.io_issuers.yaml, acme: required privateKeySecretRef, server
    ("Issuer", ["spec", "acme", "server"], None, "server"),
    # A misspelt solver field (strict field validation)
    (
        "Issuer",
        ["spec", "acme", "solvers", 0, "http01", "gatewayHTTPRoutes"],
        {},
        "gatewayHTTPRoutes",
    ),
]


@pytest.mark.parametrize(("kind", "path", "value", "where"), PROD_NEGATIVE_CASES)
def test_the_certificate_schemas_refuse_a_broken_object(rendered_envs, kind, path, value, where):
    obj = rendered_envs["prod"].one(kind)
    broken = _broken(obj, path, value)
    if value is None:
        target = broken
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    errors = crd_errors(broken)
    assert errors, f"{kind} without a valid {where} passed"
    assert any(where in error for error in errors), errors


def test_an_unpinned_kind_is_an_error():
    [error] = crd_errors({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "TLSRoute"})
    assert "no pinned CRD schema" in error


# --- consistency --------------------------------------------------------------------


def test_prod_serves_https_for_its_host_with_the_issued_certificate(rendered_envs):
    prod = rendered_envs["prod"]
    listeners = {item["name"]: item for item in prod.one("Gateway")["spec"]["listeners"]}
    https = listeners["https"]
    assert (https["protocol"], https["port"], https["hostname"]) == (
        "HTTPS",
        443,
        SAMPLE_PROD_HOST,
    )
    certificate = prod.one("Certificate")
    [secret_ref] = https["tls"]["certificateRefs"]
    assert secret_ref["name"] == certificate["spec"]["secretName"]
    assert certificate["spec"]["dnsNames"] == [SAMPLE_PROD_HOST]
    issuer = prod.one("Issuer")
    assert certificate["spec"]["issuerRef"] == {
        "group": "cert-manager.io",
        "kind": "Issuer",
        "name": issuer["metadata"]["name"],
    }
    # Let's Encrypt's production directory; HTTP-01 through the Gateway's plain listener.
    assert issuer["spec"]["acme"]["server"] == "https://acme-v02.api.letsencrypt.org/directory"
    [solver] = issuer["spec"]["acme"]["solvers"]
    [parent] = solver["http01"]["gatewayHTTPRoute"]["parentRefs"]
    assert (parent["name"], parent["sectionName"]) == ("conduit", "http")
    assert listeners["http"]["protocol"] == "HTTP"


def test_prod_routes_the_api_over_https_only_and_redirects_http(rendered_envs):
    prod = rendered_envs["prod"]
    api = prod.one("HTTPRoute", "conduit")
    assert [p["sectionName"] for p in api["spec"]["parentRefs"]] == ["https"]
    assert api["spec"]["hostnames"] == [SAMPLE_PROD_HOST]
    redirect = prod.one("HTTPRoute", "conduit-https-redirect")
    assert [p["sectionName"] for p in redirect["spec"]["parentRefs"]] == ["http"]
    assert redirect["spec"]["hostnames"] == [SAMPLE_PROD_HOST]
    [rule] = redirect["spec"]["rules"]
    assert rule["filters"] == [
        {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}
    ]


def test_dev_serves_plain_http_on_the_bare_address(rendered_envs):
    dev = rendered_envs["dev"]
    [listener] = dev.one("Gateway")["spec"]["listeners"]
    assert (listener["protocol"], listener.get("hostname")) == ("HTTP", None)
    assert "hostnames" not in dev.one("HTTPRoute", "conduit")["spec"]
    assert dev.find("Certificate") == dev.find("Issuer") == []


def test_every_rule_shares_one_list_of_backends_with_an_explicit_stable_weight(env):
    """The canary hook: a canary writes one list of weighted backends into every rule."""
    rules = env.one("HTTPRoute", "conduit")["spec"]["rules"]
    backends = [rule["backendRefs"] for rule in rules]
    assert all(b == backends[0] for b in backends)
    [stable] = backends[0]
    assert (stable["name"], stable["weight"]) == ("conduit", 100)
