"""/metrics is for Prometheus inside the cluster, not for the internet.

tests/k8s/test_gateway_routes.py proves with a real Envoy that no public path reaches
the app's /metrics. This module proves the other half: with the rendered
NetworkPolicies (default deny, then allow lists), Prometheus in the `monitoring`
namespace may still open the API pods' metrics port, the ServiceMonitor scrapes the
path the app serves, and nothing else but the Gateway's Envoy proxies gets in.
"""

from __future__ import annotations

import pytest
from conduit_deploy.render import ENVOY_GATEWAY_NAMESPACE

from conduit.observability.metrics import METRICS_PATH
from tests.k8s.support import RenderedEnv, labels_match, load_all

PROMETHEUS_NAMESPACE = "monitoring"
# Labels the Prometheus operator gives the pods of a Prometheus (kube-prometheus-stack).
PROMETHEUS_POD = {"app.kubernetes.io/name": "prometheus", "prometheus": "kube-prometheus"}
# The labels Envoy Gateway v1.9.0 gives the Envoy pods of Gateway conduit/conduit
# (internal/infrastructure/kubernetes/proxy/resource.go EnvoyAppLabel, plus the owning
# Gateway's labels of internal/gatewayapi/translator.go).
ENVOY_PROXY_POD = {
    "app.kubernetes.io/name": "envoy",
    "app.kubernetes.io/component": "proxy",
    "app.kubernetes.io/managed-by": "envoy-gateway",
    "gateway.envoyproxy.io/owning-gateway-namespace": "conduit",
    "gateway.envoyproxy.io/owning-gateway-name": "conduit",
}


def monitoring(env: RenderedEnv) -> list[dict]:
    if env.rendered.monitoring_file is None:
        pytest.fail("k8s/monitoring renders nothing: Prometheus would scrape nothing")
    return load_all(env.rendered.monitoring_file)


def api_pod(env: RenderedEnv) -> tuple[dict, dict[str, int]]:
    """The API pods' labels and their named container ports."""
    [deployment] = [
        d
        for d in env.find("Deployment")
        if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "api"
    ]
    template = deployment["spec"]["template"]
    ports = {
        p["name"]: p["containerPort"]
        for c in template["spec"]["containers"]
        for p in c.get("ports", [])
        if "name" in p
    }
    return template["metadata"]["labels"], ports


def may_connect(
    policies: list[dict],
    *,
    namespace: str,
    pod: dict,
    target_labels: dict,
    target_ports: dict[str, int],
    port: int,
) -> bool:
    """NetworkPolicy semantics for ingress to the target pods (namespace-local policies).

    A pod selected by no Ingress policy accepts everything; once selected, a connection
    needs one rule whose peers and ports both match. namespaceSelector and podSelector
    in one peer must both match; a peer with only a podSelector means the policy's own
    namespace, which is never the source's here.
    """
    selecting = [
        p
        for p in policies
        if "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
        and labels_match(p["spec"]["podSelector"], target_labels)
    ]
    if not selecting:
        return True
    namespace_labels = {"kubernetes.io/metadata.name": namespace}
    for policy in selecting:
        for rule in policy["spec"].get("ingress") or []:
            peers = rule.get("from")
            peer_ok = peers is None or any(
                "namespaceSelector" in peer
                and labels_match(peer["namespaceSelector"], namespace_labels)
                and labels_match(peer.get("podSelector", {}), pod)
                for peer in peers
            )
            ports = rule.get("ports")
            port_ok = ports is None or any(
                target_ports.get(p["port"], p["port"]) == port and p.get("protocol", "TCP") == "TCP"
                for p in ports
            )
            if peer_ok and port_ok:
                return True
    return False


def metrics_port(env: RenderedEnv) -> int:
    """The container port the ServiceMonitor scrapes, through the Service it selects."""
    [monitor] = [o for o in monitoring(env) if o["kind"] == "ServiceMonitor"]
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["path"] == METRICS_PATH
    [service] = [
        s
        for s in env.find("Service")
        if labels_match(monitor["spec"]["selector"], s["metadata"]["labels"])
    ]
    [service_port] = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    labels, ports = api_pod(env)
    assert labels_match(service["spec"]["selector"], labels)
    target = service_port["targetPort"]
    return ports[target] if isinstance(target, str) else target


def all_policies(env: RenderedEnv) -> list[dict]:
    return env.find("NetworkPolicy") + [o for o in monitoring(env) if o["kind"] == "NetworkPolicy"]


def connect(env: RenderedEnv, namespace: str, pod: dict) -> bool:
    labels, ports = api_pod(env)
    return may_connect(
        all_policies(env),
        namespace=namespace,
        pod=pod,
        target_labels=labels,
        target_ports=ports,
        port=metrics_port(env),
    )


def test_prometheus_scrapes_the_app_metrics_path_on_a_served_port(env):
    _, ports = api_pod(env)
    assert metrics_port(env) in ports.values()


def test_prometheus_may_open_the_metrics_port(env):
    assert connect(env, PROMETHEUS_NAMESPACE, PROMETHEUS_POD)


@pytest.mark.parametrize(
    ("namespace", "pod"),
    [
        ("default", {"app": "curl"}),
        (PROMETHEUS_NAMESPACE, {"app.kubernetes.io/name": "grafana"}),
        ("other", PROMETHEUS_POD),
        ("conduit-neighbour", {"app.kubernetes.io/name": "conduit"}),
        # Another Gateway's proxies, and the Envoy Gateway controller itself.
        (
            ENVOY_GATEWAY_NAMESPACE,
            {**ENVOY_PROXY_POD, "gateway.envoyproxy.io/owning-gateway-name": "other"},
        ),
        (ENVOY_GATEWAY_NAMESPACE, {"control-plane": "envoy-gateway"}),
    ],
)
def test_other_pods_may_not(env, namespace, pod):
    assert not connect(env, namespace, pod)


def test_the_gateway_reaches_the_port_but_routes_no_metrics_path(env):
    # The proxies must reach the API port to serve the API; what they forward is limited
    # by the HTTPRoute's prefixes, which test_gateway_routes.py runs through real Envoy.
    assert connect(env, ENVOY_GATEWAY_NAMESPACE, ENVOY_PROXY_POD)
    prefixes = [
        match["path"]["value"]
        for route in env.find("HTTPRoute")
        for rule in route["spec"]["rules"]
        for match in rule.get("matches", [])
    ]
    assert prefixes == ["/flask/api", "/flask/healthz", "/flask/readyz"]


def test_the_evaluator_denies_without_an_allowing_rule():
    deny = {"spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    kwargs = {"namespace": "monitoring", "pod": PROMETHEUS_POD, "target_ports": {"http": 8000}}
    assert may_connect([], target_labels={"a": "b"}, port=8000, **kwargs)
    assert not may_connect([deny], target_labels={"a": "b"}, port=8000, **kwargs)
