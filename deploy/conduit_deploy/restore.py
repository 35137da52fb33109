"""`conduit-deploy restore ENV --to TIME`: a new database Cluster from the backups at
TIME, and the app moved onto it (k8s/README.md, "Restore runbook").

The running Cluster is never touched: the new one gets its own name (so its WAL goes
to its own folder of the bucket) and the old one stays until someone deletes it. The
switch is a kustomize patch on the environment's overlay (rename the Cluster,
bootstrap it from the old one's archive); the command applies it and writes it out, to
be committed so that the next deploy renders the same Cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import yaml

from .cloud import CloudSession, export_kubeconfig
from .console import log
from .deploy import apply_command, cluster_ready_command, rollout_status_command
from .errors import ConfigError, DeployError
from .release import RenderFunction
from .render import Rendered, RenderValues
from .runner import Result, Runner

ORIGIN = "origin"  # the externalClusters entry naming the backups restored from


@dataclass(frozen=True)
class RestoreOptions:
    database_timeout: float = 1800  # download + WAL replay grow with the database
    rollout_timeout: float = 300


def parse_target_time(text: str, now: datetime) -> datetime:
    """An RFC 3339 time with its offset, in the past; returned in UTC."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--to {text!r} is not an RFC 3339 time (2026-11-30T10:42:00Z)") from None
    if moment.tzinfo is None:
        raise ConfigError(f"--to {text!r} has no UTC offset (add Z or +01:00)")
    moment = moment.astimezone(UTC)
    if moment >= now:
        raise ConfigError(f"--to {text!r} is not in the past")
    return moment


def restored_name(source: str, now: datetime) -> str:
    """conduit-db-r202611301200; a restored cluster's own suffix is replaced, not grown."""
    base = re.sub(r"-r\d{12}$", "", source)
    return f"{base}-r{now.strftime('%Y%m%d%H%M')}"


def restore_patches(cluster: dict, schedule: str, target: str, moment: datetime) -> list[dict]:
    """The overlay patches that turn the committed Cluster into the restored one.

    The ScheduledBackup is renamed with it: its cluster reference is immutable
    (postgresql.cnpg.io_scheduledbackups.yaml, "cluster reference is immutable").
    """
    spec = cluster["spec"]
    # A Cluster restored before carries a recovery bootstrap instead of initdb.
    initdb = spec["bootstrap"].get("initdb") or spec["bootstrap"]["recovery"]
    [plugin] = [p for p in spec.get("plugins", []) if p.get("isWALArchiver")]
    recovery = {
        "source": ORIGIN,
        "database": initdb["database"],
        "owner": initdb["owner"],
        "recoveryTarget": {"targetTime": moment.strftime("%Y-%m-%dT%H:%M:%SZ")},
    }
    origin = {
        "name": ORIGIN,
        "plugin": {
            "name": plugin["name"],
            "parameters": {
                "barmanObjectName": plugin["parameters"]["barmanObjectName"],
                # The folder of the bucket the old Cluster archived into.
                "serverName": plugin["parameters"].get("serverName", cluster["metadata"]["name"]),
            },
        },
    }
    operations = [
        {"op": "replace", "path": "/metadata/name", "value": target},
        {"op": "replace", "path": "/spec/bootstrap", "value": {"recovery": recovery}},
        {"op": "add", "path": "/spec/externalClusters", "value": [origin]},
    ]
    rename_schedule = [{"op": "replace", "path": "/metadata/name", "value": f"{target}-nightly"}]
    return [
        {
            "target": {"kind": "Cluster", "name": cluster["metadata"]["name"]},
            "patch": yaml.safe_dump(operations, sort_keys=False),
        },
        {
            "target": {"kind": "ScheduledBackup", "name": schedule},
            "patch": yaml.safe_dump(rename_schedule, sort_keys=False),
        },
    ]


def committed_database(rendered: Rendered) -> tuple[dict, str]:
    """The rendered Cluster and the name of its ScheduledBackup."""
    stage = dict(rendered.stages)["database"]
    objects = [d for d in yaml.safe_load_all(Path(stage).read_text(encoding="utf-8")) if d]
    clusters = [d for d in objects if d.get("kind") == "Cluster"]
    if len(clusters) != 1:
        raise ConfigError(
            "restore needs the environment's CloudNativePG Cluster; the overlay renders "
            f"{len(clusters)} (a managed database is restored by its provider)"
        )
    name = clusters[0]["metadata"]["name"]
    schedules = [
        d["metadata"]["name"]
        for d in objects
        if d.get("kind") == "ScheduledBackup" and d["spec"]["cluster"]["name"] == name
    ]
    if len(schedules) != 1:
        raise ConfigError(f"expected one ScheduledBackup of {name}, found {len(schedules)}")
    return clusters[0], schedules[0]


def get_field_command(resource: str, namespace: str, jsonpath: str) -> list[str]:
    """`kubectl get` of one field of one object, printed bare."""
    return ["kubectl", "get", resource, "--namespace", namespace, f"--output=jsonpath={jsonpath}"]


def scale_command(deployment: str, namespace: str, replicas: str) -> list[str]:
    return [
        "kubectl",
        "scale",
        f"deployment/{deployment}",
        "--namespace",
        namespace,
        f"--replicas={replicas}",
    ]


@dataclass(frozen=True)
class Restorer:
    """One restore of one environment, from values already checked by the CLI."""

    values: RenderValues
    current: Rendered  # the environment as committed
    render: RenderFunction
    out_dir: Path
    runner: Runner
    options: RestoreOptions

    def run(self, session: CloudSession, moment: datetime, now: datetime) -> str:
        cluster, schedule = committed_database(self.current)
        source = cluster["metadata"]["name"]
        target = restored_name(source, now)
        patches = restore_patches(cluster, schedule, target, moment)
        restored = self.render(
            replace(self.values, overlay_patches=tuple(patches)),
            self.out_dir / "restore",
            self.runner,
        )
        namespace, app = restored.namespace, restored.app_deployment
        stages = dict(restored.stages)
        log(f"==> restore: {self.values.environment}: {source} as of {moment:%Y-%m-%dT%H:%M:%SZ}")
        log(f"==> restore: into a new Cluster {target}; {source} is left as it is")
        export_kubeconfig(session, self.runner)

        self.runner.when(
            get_field_command(
                f"cluster.postgresql.cnpg.io/{source}",
                namespace,
                "{.status.firstRecoverabilityPoint}",
            ),
            lambda result: self._recoverable(result, moment, source),
            f"{moment:%Y-%m-%dT%H:%M:%SZ} is after {source}'s first recoverability point",
        )
        previous = self.runner.run(
            get_field_command(f"deployment/{app}", namespace, "{.spec.replicas}"), capture=True
        )
        replicas = previous.stdout.strip() or "<as before>"
        log(f"==> restore: stopping the app's writes (deployment/{app} had {replicas} replicas)")
        self.runner.run(scale_command(app, namespace, "0"))

        log(f"==> restore: creating {target} from the backups")
        self.runner.run(apply_command(stages["secrets"]))
        self.runner.run(apply_command(stages["database"]))
        self.runner.run(cluster_ready_command(target, namespace, self.options.database_timeout))

        log(f"==> restore: moving the app to {target}-rw")
        # The scale to zero above made `kubectl` the owner of the replica count.
        self.runner.run(apply_command(stages["app"], take_over=True))
        self.runner.run(scale_command(app, namespace, replicas))
        self.runner.run(
            rollout_status_command("deployment", app, namespace, self.options.rollout_timeout)
        )
        patch_file = self.out_dir / "restore" / "overlay-patch.yaml"
        self.runner.step(
            f"write {patch_file}: the patches to commit under `patches:` of "
            f"k8s/overlays/{self.values.environment}/kustomization.yaml",
            lambda: patch_file.write_text(yaml.safe_dump(patches, sort_keys=False)),
            planned=None,
        )
        self.runner.outcome(
            f"==> restore: the app runs on {target}. Commit {patch_file}'s patches to "
            f"k8s/overlays/{self.values.environment}/kustomization.yaml before the next "
            f"deploy, check the data, then `kubectl -n {namespace} delete cluster {source}`"
        )
        return target

    def _recoverable(self, result: Result, moment: datetime, source: str) -> bool:
        if not result.ok:
            raise DeployError(f"cannot read cluster {source}: {result.stderr.strip()}")
        first = result.stdout.strip()
        if not first:
            raise DeployError(f"cluster {source} reports no recoverability point: no backup yet")
        earliest = datetime.fromisoformat(first.replace("Z", "+00:00"))
        if moment < earliest:
            raise DeployError(
                f"{moment:%Y-%m-%dT%H:%M:%SZ} is before {source}'s oldest backup ({first})"
            )
        return True
