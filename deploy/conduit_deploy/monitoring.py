"""The cluster's monitoring stack: kube-prometheus-stack (the Prometheus operator,
Prometheus, Alertmanager, Grafana, kube-state-metrics, node-exporter), pinned here.

The deploy installs it before the app and applies k8s/monitoring (ServiceMonitor,
PodMonitor, PrometheusRule) after it, so the CRDs exist before the objects that need them.

Helm installs a chart's CRDs on the first install only and never upgrades them; the
chart's UPGRADE.md asks for `kubectl apply --server-side` of the new CRDs before each
upgrade. So the deploy applies them itself, from the same pinned chart (`helm show crds`
prints the CRDs of the chart and of its subcharts, here the `crds` subchart: Helm v4.2.4,
pkg/chart/v2/chart.go, CRDObjects), and Helm runs with --skip-crds.

A second deploy changes nothing: when the release is deployed at the pinned chart version
with the committed values, neither the CRDs nor the chart are applied again.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

from .errors import DeployError
from .runner import Runner

# kube-prometheus-stack 88.5.0 (prometheus-community/helm-charts, tag
# kube-prometheus-stack-88.5.0, Chart.yaml: appVersion v0.93.1 of the operator,
# kubeVersion >=1.25.0-0). Its values are k8s/monitoring/kube-prometheus-stack-values.yaml.
STACK_CHART = "kube-prometheus-stack"
STACK_CHART_VERSION = "88.5.0"
STACK_REPOSITORY = "https://prometheus-community.github.io/helm-charts"
STACK_RELEASE = "kube-prometheus-stack"
# k8s/monitoring's NetworkPolicies admit Prometheus from this namespace.
STACK_NAMESPACE = "monitoring"
# `helm list` shows a release's chart as <name>-<version> (Helm v4.2.4, pkg/cmd/list.go).
STACK_CHART_REFERENCE = f"{STACK_CHART}-{STACK_CHART_VERSION}"


class StackPath(Enum):
    INSTALL = "install"
    UPGRADE = "upgrade"
    CURRENT = "unchanged"


def _chart() -> list[str]:
    return [STACK_CHART, "--repo", STACK_REPOSITORY, "--version", STACK_CHART_VERSION]


def crds_command() -> list[str]:
    return ["helm", "show", "crds", *_chart()]


def release_command() -> list[str]:
    """The release's latest revision, whatever its status: Helm 4 lists every status
    unless told otherwise (and has no --all any more: pkg/cmd/list.go, SetStateMask)."""
    return [
        "helm", "list", "--namespace", STACK_NAMESPACE,
        "--filter", f"^{STACK_RELEASE}$", "--output", "json",
    ]  # fmt: skip


def values_command() -> list[str]:
    """The values the release was installed with (what --values gave, not the defaults)."""
    return [
        "helm", "get", "values", STACK_RELEASE, "--namespace", STACK_NAMESPACE, "--output", "json",
    ]  # fmt: skip


def upgrade_command(values_file: str, timeout: float) -> list[str]:
    """Install or upgrade the release; --wait: until its workloads are ready."""
    return [
        "helm", "upgrade", STACK_RELEASE, *_chart(),
        "--install", "--namespace", STACK_NAMESPACE, "--create-namespace",
        "--skip-crds", "--values", values_file,
        "--wait", f"--timeout={timeout:g}s",
    ]  # fmt: skip


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        raise DeployError(f"{what} printed no JSON: {text.strip()[:200]!r}") from None


def stack_path(runner: Runner, values: dict) -> StackPath:
    """What the cluster's release needs: an install, an upgrade, or nothing.

    A dry run answers nothing: it reads as a cluster without the release.
    """
    listed = runner.run(release_command(), capture=True)
    # Without the release, `helm get values` fails ("release: not found"): that is no error.
    given = runner.run(values_command(), capture=True, check=False)
    releases = _json(listed.stdout, "helm list") or []
    release = next((r for r in releases if r.get("name") == STACK_RELEASE), None)
    if release is None:
        return StackPath.INSTALL
    status = release.get("status", "")
    if status.startswith("pending-"):
        # Helm refuses to touch it ("another operation ... is in progress"): a helm run
        # was cut off. Statuses: Helm v4.2.4, pkg/release/common/status.go.
        undo = (
            f"helm uninstall {STACK_RELEASE} --namespace {STACK_NAMESPACE}"
            if status == "pending-install"
            else f"helm rollback {STACK_RELEASE} --namespace {STACK_NAMESPACE}"
        )
        raise DeployError(
            f"the Helm release {STACK_RELEASE} in {STACK_NAMESPACE} is {status}: a helm run "
            f"was interrupted. Check no deploy is running, run `{undo}`, then deploy again"
        )
    if release.get("chart") != STACK_CHART_REFERENCE or status != "deployed":
        return StackPath.UPGRADE
    installed = _json(given.stdout, "helm get values") if given.ok else None
    return StackPath.CURRENT if installed == values else StackPath.UPGRADE


def describe(path: StackPath) -> str:
    if path is StackPath.CURRENT:
        return (
            f"==> deploy: monitoring stack: {STACK_CHART_REFERENCE} is deployed with the "
            "committed values: nothing to do"
        )
    return f"==> deploy: monitoring stack: {path.value} {STACK_CHART_REFERENCE}"
