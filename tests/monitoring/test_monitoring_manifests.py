"""k8s/monitoring builds, and its objects agree with the app's manifests and metrics."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml
from conduit_deploy import monitoring

from tests.support import require_program

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "k8s" / "monitoring"
BASE = REPO / "k8s" / "base"
DASHBOARD = MONITORING / "dashboards" / "conduit-api.json"
VALUES = MONITORING / "kube-prometheus-stack-values.yaml"
README = MONITORING / "README.md"


def kubectl() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    return str(beside) if beside.is_file() else require_program("kubectl")


@functools.cache
def _build(directory: Path) -> str:
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def built_objects(directory: Path = MONITORING) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(_build(directory)) if doc]


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    (found,) = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    return found


# The exporter's container port on every instance pod, and the labels CloudNativePG
# 1.30.0 gives an instance pod on top of the Cluster's inheritedMetadata
# (pkg/specs/pods.go: port "metrics", 9187; pkg/utils/labels_annotations.go:
# cnpg.io/cluster, cnpg.io/podRole "instance"; poolers are "pooler").
CNPG_METRICS_PORT = "metrics"


def instance_pod_labels(cluster: dict, pod_role: str = "instance") -> dict:
    return {
        **cluster["spec"]["inheritedMetadata"]["labels"],
        "cnpg.io/cluster": cluster["metadata"]["name"],
        "cnpg.io/podRole": pod_role,
    }


def labels_match(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def test_every_object_lives_in_the_app_namespace_and_is_labelled():
    namespace = yaml.safe_load((BASE / "kustomization.yaml").read_text())["namespace"]
    for obj in built_objects():
        assert obj["metadata"]["namespace"] == namespace, obj["kind"]
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "conduit"
        assert labels["app.kubernetes.io/component"] == "monitoring"


def test_service_monitor_scrapes_metrics_on_the_api_service_port():
    monitor = one(built_objects(), "ServiceMonitor")
    services = [o for o in built_objects(BASE) if o["kind"] == "Service"]
    (api,) = [
        s for s in services if labels_match(monitor["spec"]["selector"], s["metadata"]["labels"])
    ]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in api["spec"]["ports"]}
    # Prometheus names the job after the Service: the rules and the dashboard use it.
    assert api["metadata"]["name"] == "conduit"


def test_rules_and_dashboard_select_the_jobs_the_monitors_make():
    rule = one(built_objects(), "PrometheusRule")
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    dashboard = json.loads(DASHBOARD.read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    jobs = {job for expr in exprs for job in re.findall(r'job="([^"]*)"', expr)}
    # A PodMonitor's job is the value of its pods' jobLabel label (prometheus-operator
    # v0.93, pkg/prometheus/promcfg.go; <namespace>/<name> without one).
    monitor = one(built_objects(), "PodMonitor")
    cluster = one(built_objects(BASE), "Cluster")
    postgres_job = instance_pod_labels(cluster)[monitor["spec"]["jobLabel"]]
    assert jobs == {"conduit", postgres_job}


def test_pod_monitor_scrapes_the_exporter_of_every_postgres_instance_only():
    monitor = one(built_objects(), "PodMonitor")
    cluster = one(built_objects(BASE), "Cluster")
    selector = monitor["spec"]["selector"]
    assert labels_match(selector, instance_pod_labels(cluster))
    # Not a PgBouncer pooler's pods, and not tied to the Cluster's name (a restore
    # renames it: k8s/README.md).
    assert not labels_match(selector, instance_pod_labels(cluster, pod_role="pooler"))
    assert "cnpg.io/cluster" not in selector["matchLabels"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == CNPG_METRICS_PORT
    assert endpoint["path"] == "/metrics"
    # Plain HTTP unless the Cluster enables TLS on the metrics port (monitoring.md).
    assert not cluster["spec"].get("monitoring", {}).get("tls", {}).get("enabled")
    assert endpoint["scheme"] == "http"
    # The operator-made PodMonitor is deprecated in 1.30: this one replaces it.
    assert not cluster["spec"].get("monitoring", {}).get("enablePodMonitor")


def prometheus_peer_only(rule: dict) -> None:
    (peer,) = rule["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}


def test_prometheus_may_scrape_the_api_pods_and_nothing_more():
    policy = one(built_objects(), "NetworkPolicy", "conduit-from-prometheus")
    deployment = one(built_objects(BASE), "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    container_ports = {
        p["name"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c["ports"]
    }
    assert labels_match(policy["spec"]["podSelector"], pod_labels)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert [p["port"] for p in rule["ports"]] == ["http"]
    assert "http" in container_ports
    prometheus_peer_only(rule)


def test_prometheus_may_scrape_the_postgres_exporter_and_nothing_more():
    # k8s/base denies ingress to the namespace and opens PostgreSQL to the app, the
    # other instances and the operator only.
    policy = one(built_objects(), "NetworkPolicy", "postgres-from-prometheus")
    cluster = one(built_objects(BASE), "Cluster")
    assert labels_match(policy["spec"]["podSelector"], instance_pod_labels(cluster))
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": CNPG_METRICS_PORT}]
    prometheus_peer_only(rule)


def test_dashboard_config_map_is_what_the_grafana_sidecar_loads():
    config_map = one(built_objects(), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    # A fixed name: a hashed one would leave the previous dashboard behind on apply.
    assert config_map["metadata"]["name"] == "conduit-grafana-dashboard"
    (content,) = config_map["data"].values()
    assert json.loads(content) == json.loads(DASHBOARD.read_text())
    # kubectl apply keeps a copy in an annotation limited to 256 KiB.
    assert len(content.encode()) < 200 * 1024


def test_stack_values_match_what_the_manifests_rely_on():
    values = yaml.safe_load(VALUES.read_text())
    spec = values["prometheus"]["prometheusSpec"]
    # Our ServiceMonitor, PodMonitor and PrometheusRule carry no Helm release label.
    assert spec["serviceMonitorSelectorNilUsesHelmValues"] is False
    assert spec["podMonitorSelectorNilUsesHelmValues"] is False
    assert spec["ruleSelectorNilUsesHelmValues"] is False
    # Receivers live in a Secret made by hand: the deploy's helm upgrade never drops them.
    alertmanager = values["alertmanager"]["alertmanagerSpec"]
    assert alertmanager["useExistingSecret"] is True
    assert alertmanager["configSecret"] in README.read_text()
    dashboards = values["grafana"]["sidecar"]["dashboards"]
    config_map = one(built_objects(), "ConfigMap")
    assert config_map["metadata"]["labels"][dashboards["label"]] == dashboards["labelValue"]
    assert dashboards["searchNamespace"] == "ALL"  # the ConfigMap is in the app's namespace


def test_readme_and_values_name_the_chart_version_the_deploy_installs():
    # The one pin is conduit_deploy.monitoring; the docs and the values file follow it.
    version = monitoring.STACK_CHART_VERSION
    assert f"kube-prometheus-stack {version}" in VALUES.read_text()
    assert f"kube-prometheus-stack {version}" in README.read_text()
    assert f"`{monitoring.STACK_NAMESPACE}`" in README.read_text()
    # The NetworkPolicies admit Prometheus from the namespace the stack is installed in.
    for policy in (o for o in built_objects() if o["kind"] == "NetworkPolicy"):
        for rule in policy["spec"]["ingress"]:
            for peer in rule["from"]:
                assert peer["namespaceSelector"]["matchLabels"] == {
                    "kubernetes.io/metadata.name": monitoring.STACK_NAMESPACE
                }
