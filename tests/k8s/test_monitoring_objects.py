"""Structural checks of the Prometheus-operator objects in k8s/monitoring, if any.

ServiceMonitor and PrometheusRule are custom resources: kubernetes-validate has no
schema for them, so what matters is checked here against the rendered app objects.
"""

from __future__ import annotations

import pytest

from tests.k8s.support import RenderedEnv, labels_match, load_all

MONITORING_GROUP = "monitoring.coreos.com/v1"


def monitoring_objects(env: RenderedEnv) -> list[dict]:
    if env.rendered.monitoring_file is None:
        pytest.skip("k8s/monitoring has no kustomization.yaml yet")
    return load_all(env.rendered.monitoring_file)


def custom(env: RenderedEnv, kind: str) -> list[dict]:
    return [o for o in monitoring_objects(env) if o["kind"] == kind]


def test_custom_resources_use_the_operator_api(env):
    for obj in monitoring_objects(env):
        if obj["kind"] in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
            assert obj["apiVersion"] == MONITORING_GROUP, obj["kind"]


def test_service_monitors_scrape_a_named_port_of_the_api_service(env):
    monitors = custom(env, "ServiceMonitor")
    if not monitors:
        pytest.skip("no ServiceMonitor in k8s/monitoring")
    for monitor in monitors:
        spec = monitor["spec"]
        namespaces = spec.get("namespaceSelector", {}).get("matchNames") or [
            monitor["metadata"].get("namespace")
        ]
        services = [
            s
            for s in env.find("Service")
            if s["metadata"]["namespace"] in namespaces
            and labels_match(spec["selector"], s["metadata"]["labels"])
        ]
        assert services, f"ServiceMonitor {monitor['metadata']['name']} selects no Service"
        for endpoint in spec["endpoints"]:
            assert any(
                endpoint.get("port") in {p.get("name") for p in s["spec"]["ports"]}
                for s in services
            ), f"port {endpoint.get('port')!r} is not a named port of the selected Service"


def test_prometheus_may_reach_what_it_scrapes(env):
    """The namespace denies ingress by default: scraping needs its own NetworkPolicy."""
    if not custom(env, "ServiceMonitor"):
        pytest.skip("no ServiceMonitor in k8s/monitoring")
    policies = [
        p
        for p in env.find("NetworkPolicy") + custom(env, "NetworkPolicy")
        if p["spec"]["podSelector"] and p["metadata"]["name"] != "conduit-from-gateway"
    ]
    api_labels = env.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert any(labels_match(p["spec"]["podSelector"], api_labels) for p in policies), (
        "no NetworkPolicy lets Prometheus reach the API pods"
    )


def test_prometheus_rules_are_well_formed(env):
    rules = custom(env, "PrometheusRule")
    if not rules:
        pytest.skip("no PrometheusRule in k8s/monitoring")
    for rule_object in rules:
        groups = rule_object["spec"]["groups"]
        assert groups
        for group in groups:
            assert group["name"]
            assert group["rules"]
            for rule in group["rules"]:
                assert ("alert" in rule) != ("record" in rule), rule
                assert str(rule["expr"]).strip()
                if "alert" in rule:
                    assert rule.get("labels", {}).get("severity"), rule["alert"]


def test_pod_monitors_scrape_the_rendered_database_and_prometheus_may_reach_it(env):
    """In each environment as rendered (an overlay may patch the Cluster): the PodMonitor
    selects its instance pods, and a policy opens their exporter port to Prometheus."""
    monitors = custom(env, "PodMonitor")
    if not monitors:
        pytest.skip("no PodMonitor in k8s/monitoring")
    cluster = env.one("Cluster")
    # What CloudNativePG 1.30.0 puts on an instance pod besides inheritedMetadata
    # (pkg/utils/labels_annotations.go) and names its exporter's port (pkg/specs/pods.go).
    pod_labels = {
        **cluster["spec"]["inheritedMetadata"]["labels"],
        "cnpg.io/cluster": cluster["metadata"]["name"],
        "cnpg.io/podRole": "instance",
    }
    for monitor in monitors:
        assert labels_match(monitor["spec"]["selector"], pod_labels)
        assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["metrics"]
    opened = [
        port["port"]
        for policy in custom(env, "NetworkPolicy")
        if labels_match(policy["spec"]["podSelector"], pod_labels)
        for rule in policy["spec"]["ingress"]
        for port in rule.get("ports", [])
    ]
    assert "metrics" in opened, "no NetworkPolicy lets Prometheus reach the PostgreSQL exporter"
