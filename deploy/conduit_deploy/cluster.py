"""The Cluster stage: create, update or upgrade the kops cluster, then wait for it.

deploy/README.md says what each path does and why; this module decides which path a
cluster takes (pure functions over what kops and the API server report) and the commands.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from .cloud import CloudSession, export_kubeconfig
from .console import log
from .errors import CommandFailed, ConfigError
from .runner import Result, Runner, format_command, tail

_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class ClusterOptions:
    # A new GCE cluster takes about 10 minutes to validate; prod has three control planes.
    validate_timeout: float = 1500
    validate_interval: float = 30
    rolling_update: bool = True  # on the update path; an upgrade always rolls


class ClusterPath(enum.Enum):
    CREATE = "create"  # no such cluster in the state store
    UPDATE = "update"  # same Kubernetes version: update, then roll what changed
    UPGRADE = "upgrade"  # another Kubernetes version: kops reconcile cluster


@dataclass(frozen=True)
class ClusterState:
    """What the state store and the API server say before anything changes."""

    exists: bool
    stored_version: str | None = None  # spec.kubernetesVersion in the state store
    running_version: str | None = None  # the API server's, when it answers


# --- commands ---------------------------------------------------------------------------


def get_cluster_command(cluster: str) -> list[str]:
    return ["kops", "get", "cluster", "--name", cluster, "--output", "yaml"]


def server_version_command() -> list[str]:
    return ["kubectl", "version", "--output=json", "--request-timeout=30s"]


def replace_command(kops_file: Path) -> list[str]:
    return ["kops", "replace", "--filename", str(kops_file), "--force"]


def update_command(cluster: str, *, prune: bool = False) -> list[str]:
    # The stage exports its own short-lived admin kubeconfig (cloud.export_kubeconfig);
    # kops update would otherwise write one of its own over it (docs/cli/kops_update_cluster.md).
    return [
        "kops",
        "update",
        "cluster",
        "--name",
        cluster,
        "--create-kube-config=false",
        *(["--prune"] if prune else []),
        "--yes",
    ]


def reconcile_command(cluster: str) -> list[str]:
    return ["kops", "reconcile", "cluster", "--name", cluster, "--yes"]


def validate_command(cluster: str) -> list[str]:
    return ["kops", "validate", "cluster", "--name", cluster, "--output", "json"]


def rolling_update_command(cluster: str) -> list[str]:
    return ["kops", "rolling-update", "cluster", "--name", cluster, "--yes"]


# --- decisions --------------------------------------------------------------------------


def parse_version(text: str | None) -> tuple[int, int, int] | None:
    """(major, minor, patch) of "1.35.5", "v1.35.5" or "v1.35.5+build"; None otherwise."""
    match = _VERSION.match(text or "")
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def cluster_spec_version(documents_text: str) -> str | None:
    """spec.kubernetesVersion of the Cluster among YAML documents (a kops spec file, or
    `kops get cluster --output yaml`)."""
    try:
        documents = list(yaml.safe_load_all(documents_text))
    except yaml.YAMLError:
        return None
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == "Cluster":
            version = (document.get("spec") or {}).get("kubernetesVersion")
            return str(version) if version else None
    return None


def server_version(kubectl_json: str) -> str | None:
    """serverVersion.gitVersion of `kubectl version --output=json`."""
    try:
        answer = json.loads(kubectl_json)
    except ValueError:
        return None
    server = answer.get("serverVersion") if isinstance(answer, dict) else None
    return server.get("gitVersion") if isinstance(server, dict) else None


def choose_path(state: ClusterState, desired: str) -> ClusterPath:
    """Create a missing cluster; upgrade (reconcile) when the Kubernetes version changes;
    otherwise update. The running API server's version counts; the state store's stands
    in when the API server does not answer. Unknown counts as a change: reconciling is
    safe either way, updating first is not (kops docs, tutorial/upgrading-kubernetes.md)."""
    if not state.exists:
        return ClusterPath.CREATE
    wanted = parse_version(desired)
    if wanted is None:
        raise ConfigError(f"the kops spec's kubernetesVersion {desired!r} is not a version")
    current = parse_version(state.running_version) or parse_version(state.stored_version)
    if current is None or current < wanted:
        return ClusterPath.UPGRADE
    if current > wanted:
        shown = ".".join(map(str, current))
        raise ConfigError(
            f"the cluster runs Kubernetes {shown}, newer than the spec's {desired}: "
            "Kubernetes clusters are not downgraded (raise kubernetes_version in "
            "k8s/kops/values/ENV.yaml)"
        )
    return ClusterPath.UPDATE


def summarise_validation(result: Result) -> str:
    """One line from `kops validate cluster -o json`: valid, or the first failure."""
    if result.ok:
        return "cluster is valid"
    try:
        failures = json.loads(result.stdout).get("failures") or []
    except (ValueError, AttributeError):
        failures = []
    if failures:
        first = failures[0]
        what = " ".join(str(first.get(key, "")) for key in ("type", "name")).strip()
        return f"{len(failures)} failure(s); first: {what}: {first.get('message', '')}".strip()
    # Before the API server answers, kops prints an error instead of a report.
    return tail(result.stderr or result.stdout, 1) or f"exit code {result.returncode}"


# --- the stage --------------------------------------------------------------------------


def read_state(session: CloudSession, runner: Runner) -> ClusterState:
    """Ask the state store, then (kubeconfig exported first) the API server."""
    name = session.cluster_name
    found = runner.run(get_cluster_command(name), capture=True, check=False)
    if not found.ok:
        # kops' message for a named cluster that is not in the state store
        # (cmd/kops/get_cluster.go, filterClustersByName); anything else is a real error.
        if f'cluster not found "{name}"' in found.stderr:
            return ClusterState(exists=False)
        raise CommandFailed(format_command(found.args), found.returncode, tail(found.stderr))
    # Before anything changes the cluster: `kops update` compares the running control
    # plane's version with the spec through this kubeconfig.
    export_kubeconfig(session, runner)
    answer = runner.run(server_version_command(), capture=True, check=False)
    running = server_version(answer.stdout) if answer.ok else None
    return ClusterState(True, cluster_spec_version(found.stdout), running)


def wait_until_valid(session: CloudSession, runner: Runner, options: ClusterOptions) -> None:
    def read(result: Result) -> tuple[bool | None, str]:
        return (True if result.ok else None), summarise_validation(result)

    runner.poll(
        validate_command(session.cluster_name),
        read,
        what=f"validate {session.cluster_name}",
        until="it passes",
        timeout=options.validate_timeout,
        interval=options.validate_interval,
        planned=True,
    )


def run_cluster(
    environment: str,
    kops_file: Path,
    session: CloudSession,
    runner: Runner,
    options: ClusterOptions,
) -> None:
    name = session.cluster_name
    desired = cluster_spec_version(kops_file.read_text(encoding="utf-8"))
    if desired is None:
        raise ConfigError(f"{kops_file} has no Cluster with spec.kubernetesVersion")

    def create() -> None:
        runner.run(replace_command(kops_file))
        runner.run(update_command(name))
        export_kubeconfig(session, runner)
        wait_until_valid(session, runner, options)

    def update() -> None:
        runner.run(replace_command(kops_file))
        runner.run(update_command(name))
        wait_until_valid(session, runner, options)
        if not options.rolling_update:
            log("==> cluster: rolling update skipped (--no-rolling-update)")
            return
        # Replaces only the instance groups kops marks NeedsUpdate; nothing when none are.
        runner.run(rolling_update_command(name))
        # Old revisions of cloud resources the rolled nodes no longer use.
        runner.run(update_command(name, prune=True))

    def upgrade() -> None:
        runner.run(replace_command(kops_file))
        # Control plane first, then nodes, then prune: never a kubelet newer than the
        # API server (kops docs, tutorial/upgrading-kubernetes.md; cli/kops_reconcile_cluster.md).
        runner.run(reconcile_command(name))
        wait_until_valid(session, runner, options)

    log(f"==> cluster: {name} ({environment}) to Kubernetes {desired} from {kops_file}")
    runner.note("the cluster's state picks one path: create, update or upgrade")
    runner.choose(
        lambda: choose_path(read_state(session, runner), desired),
        {
            ClusterPath.CREATE: (f"create, when {name} is not in the state store", create),
            ClusterPath.UPDATE: (f"update, when it runs Kubernetes {desired}", update),
            ClusterPath.UPGRADE: (f"upgrade, when it runs another version than {desired}", upgrade),
        },
        describe=lambda chosen: f"==> cluster: {chosen.value} {name}",
    )
    runner.outcome(f"==> cluster: {name} is ready for {environment}")
