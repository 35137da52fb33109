"""`conduit-deploy restore ENV --to TIME`: a new database Cluster from the backups at
TIME, and the app moved onto it (k8s/README.md, "Restore runbook").

The running Cluster is never touched: the new one gets its own name (so its WAL goes
to its own folder of the bucket) and the old one stays until someone deletes it. The
switch is a kustomize patch on the environment's overlay (rename the Cluster,
bootstrap it from the old one's archive); the command applies it and writes it out, to
be committed so that the next deploy renders the same Cluster.

Which times can be restored is what the Barman Cloud plugin publishes in the
ObjectStore's status, per server (folder of the bucket): CloudNativePG 1.30 leaves the
Cluster's own `status.firstRecoverabilityPoint` empty for plugin backups
(postgresql.cnpg.io_clusters.yaml: "Deprecated: the field is not set for backup plugins").
"""

from __future__ import annotations

import json
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
from .render import COMPONENT_LABEL, Rendered, RenderValues, one_line, repo_root
from .runner import Result, Runner

ORIGIN = "origin"  # the externalClusters entry naming the backups restored from


@dataclass(frozen=True)
class RestoreOptions:
    database_timeout: float = 1800  # download + WAL replay grow with the database
    rollout_timeout: float = 300


NOT_RFC3339 = "is not an RFC 3339 time"
NO_OFFSET = "has no UTC offset"


def rfc3339(text: str) -> datetime:
    """An RFC 3339 time with its offset, in UTC; the ValueError says what is wrong."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(NOT_RFC3339) from None
    if moment.tzinfo is None:
        raise ValueError(NO_OFFSET)
    return moment.astimezone(UTC)


def parse_target_time(text: str, now: datetime) -> datetime:
    """An RFC 3339 time with its offset, in the past; returned in UTC."""
    try:
        moment = rfc3339(text)
    except ValueError as problem:
        hint = {NOT_RFC3339: "2026-11-30T10:42:00Z", NO_OFFSET: "add Z or +01:00"}[str(problem)]
        raise ConfigError(f"--to {text!r} {problem} ({hint})") from None
    if moment >= now:
        raise ConfigError(f"--to {text!r} is not in the past")
    return moment


def _utc(moment: datetime) -> str:
    """RFC 3339 in UTC, to the second, or the microsecond when the time has them (a
    target between two commits of the same second must not lose the first)."""
    text = moment.astimezone(UTC).replace(tzinfo=None).isoformat()
    return f"{text}Z"


def restored_name(source: str, now: datetime) -> str:
    """conduit-db-r202611301200; a restored cluster's own suffix is replaced, not grown."""
    base = re.sub(r"-r\d{12}$", "", source)
    return f"{base}-r{now.strftime('%Y%m%d%H%M')}"


@dataclass(frozen=True)
class Archive:
    """Where a Cluster's backups are: an ObjectStore, and the server (folder) in it."""

    object_store: str
    server: str


def archive_of(cluster: dict) -> Archive:
    """The archive the Cluster's WAL archiver plugin writes to.

    The server name is the plugin parameter serverName, else the Cluster's name
    (plugin-barman-cloud v0.14.0, internal/cnpgi/operator/config/config.go,
    NewFromCluster; web/docs/parameters.md: the ObjectStore's own serverName is unused).
    """
    archivers = [p for p in cluster["spec"].get("plugins", []) if p.get("isWALArchiver")]
    if len(archivers) != 1:
        raise ConfigError(
            f"Cluster {cluster['metadata']['name']} has {len(archivers)} WAL archiver plugins; "
            "a restore reads the backups of exactly one"
        )
    parameters = archivers[0].get("parameters") or {}
    return Archive(
        object_store=parameters["barmanObjectName"],
        server=parameters.get("serverName") or cluster["metadata"]["name"],
    )


def restore_patches(cluster: dict, schedule: str, target: str, moment: datetime) -> list[dict]:
    """The overlay patches that turn the committed Cluster into the restored one.

    Three entries, so that the last can be dropped once the new Cluster has backups of
    its own (k8s/README.md): the Cluster's new name, the ScheduledBackup's (its cluster
    reference is immutable: postgresql.cnpg.io_scheduledbackups.yaml, "cluster
    reference is immutable"), and the recovery bootstrap. Render sets DB_USER as the
    owner of whichever bootstrap the Cluster declares, this one included.
    """
    spec = cluster["spec"]
    [current] = spec["bootstrap"].values()  # initdb, or recovery after an earlier restore
    archive = archive_of(cluster)
    [index] = [i for i, p in enumerate(spec["plugins"]) if p.get("isWALArchiver")]
    recovery = {
        "source": ORIGIN,
        "database": current["database"],
        "owner": current["owner"],
        "recoveryTarget": {"targetTime": _utc(moment)},
    }
    origin = {
        "name": ORIGIN,
        "plugin": {
            "name": spec["plugins"][index]["name"],
            # The folder of the bucket the old Cluster archived into.
            "parameters": {"barmanObjectName": archive.object_store, "serverName": archive.server},
        },
    }
    rename_cluster = [{"op": "replace", "path": "/metadata/name", "value": target}]
    if "serverName" in (spec["plugins"][index].get("parameters") or {}):
        # A fixed server name would have the new Cluster archive into the old one's folder.
        rename_cluster.append(
            {
                "op": "replace",
                "path": f"/spec/plugins/{index}/parameters/serverName",
                "value": target,
            }
        )
    rename_schedule = [{"op": "replace", "path": "/metadata/name", "value": f"{target}-nightly"}]
    bootstrap = [
        {"op": "replace", "path": "/spec/bootstrap", "value": {"recovery": recovery}},
        {"op": "add", "path": "/spec/externalClusters", "value": [origin]},
    ]
    return [
        {
            "target": {"kind": "Cluster", "name": cluster["metadata"]["name"]},
            "patch": yaml.safe_dump(rename_cluster, sort_keys=False),
        },
        {
            "target": {"kind": "ScheduledBackup", "name": schedule},
            "patch": yaml.safe_dump(rename_schedule, sort_keys=False),
        },
        {
            # By label, whatever the Cluster's name is by then.
            "target": {"kind": "Cluster", "labelSelector": f"{COMPONENT_LABEL}=database"},
            "patch": yaml.safe_dump(bootstrap, sort_keys=False),
        },
    ]


class _BlockStrings(yaml.SafeDumper):
    """Multi-line strings (the patches) as literal blocks: readable, editable."""


_BlockStrings.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None
    ),
)


def overlay_patch_text(entries: list[tuple[list[str], dict]], header: list[str]) -> str:
    """The patches to append to the overlay's `patches:` list, indented as its items are
    (two spaces), each under its comment lines, all under the header's."""
    text = "".join(f"# {line}".rstrip() + "\n" for line in header)
    for comment, patch in entries:
        body = yaml.dump([patch], Dumper=_BlockStrings, sort_keys=False, width=1000)
        text += "".join(f"  # {line}".rstrip() + "\n" for line in comment)
        text += "".join(f"  {line}" if line.strip() else line for line in body.splitlines(True))
    return text


def appends_cleanly(kustomization: str, addition: str) -> bool:
    """Whether `cat addition >> kustomization` adds exactly the entries to `patches:`:
    true when the file ends with its patches list (as k8s/overlays/* do)."""
    try:
        before = yaml.safe_load(kustomization)
        after = yaml.safe_load(kustomization + addition)
        entries = yaml.safe_load(addition)
    except yaml.YAMLError:
        return False
    if not (isinstance(before, dict) and isinstance(after, dict) and isinstance(entries, list)):
        return False
    expected = {**before, "patches": [*(before.get("patches") or []), *entries]}
    return kustomization.endswith("\n") and "patches" in before and after == expected


@dataclass(frozen=True)
class RecoveryWindow:
    first: datetime  # the earliest time the server can be restored to
    last_backup: datetime | None  # the newest base backup; WAL reaches further


def _timestamp(text: str, what: str) -> datetime:
    try:
        return rfc3339(text)
    except ValueError as problem:
        raise DeployError(f"{what} {text!r} {problem}") from None


def recovery_window(result: Result, archive: Archive, namespace: str) -> RecoveryWindow:
    """The server's window from `kubectl get objectstore -o json`.

    Field names: plugin-barman-cloud v0.14.0, barmancloud.cnpg.io_objectstores.yaml,
    status.serverRecoveryWindow.<server>.{firstRecoverabilityPoint,
    lastSuccessfulBackupTime}, keyed by the server name archive_of() gives.
    """
    store = f"ObjectStore {archive.object_store}"
    if not result.ok:
        raise DeployError(
            f"cannot read {store} in namespace {namespace} (is the Barman Cloud plugin "
            f"installed and the environment deployed?): {one_line(result.stderr)}"
        )
    try:
        status = json.loads(result.stdout).get("status") or {}
    except (ValueError, AttributeError):
        raise DeployError(f"kubectl printed no JSON for {store}") from None
    windows = status.get("serverRecoveryWindow") or {}
    window = windows.get(archive.server) or {}
    if not window.get("firstRecoverabilityPoint"):
        others = ", ".join(sorted(windows)) or "none"
        raise DeployError(
            f"no backup of {archive.server} to restore from: {store} reports no recovery "
            f"window for it (servers it has one for: {others}); its first base backup may "
            f"still be running or failing: kubectl -n {namespace} get backups"
        )
    last = window.get("lastSuccessfulBackupTime")
    return RecoveryWindow(
        first=_timestamp(window["firstRecoverabilityPoint"], "firstRecoverabilityPoint"),
        last_backup=_timestamp(last, "lastSuccessfulBackupTime") if last else None,
    )


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


def object_store_command(name: str, namespace: str) -> list[str]:
    return [
        "kubectl",
        "get",
        f"objectstore.barmancloud.cnpg.io/{name}",
        "--namespace",
        namespace,
        "--output=json",
    ]


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
        archive = archive_of(cluster)
        target = restored_name(source, now)
        patches = restore_patches(cluster, schedule, target, moment)
        restored = self.render(
            replace(self.values, overlay_patches=tuple(patches)),
            self.out_dir / "restore",
            self.runner,
        )
        namespace, app = restored.namespace, restored.app_deployment
        stages = dict(restored.stages)
        environment = self.values.environment
        log(f"==> restore: {environment}: {source} as of {_utc(moment)}")
        log(f"==> restore: into a new Cluster {target}; {source} is left as it is")
        export_kubeconfig(session, self.runner)

        self.runner.when(
            object_store_command(archive.object_store, namespace),
            lambda result: self._recoverable(result, archive, namespace, moment),
            f"{_utc(moment)} is inside {archive.server}'s recovery window "
            f"(ObjectStore {archive.object_store}, status.serverRecoveryWindow.{archive.server})",
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
        ready = self.runner.run(
            cluster_ready_command(target, namespace, self.options.database_timeout), check=False
        )
        if not ready.ok:
            # Nothing points at the new Cluster yet: the old one serves again as it was.
            raise DeployError(
                f"{target} is not Ready after {self.options.database_timeout:g}s; the app is "
                f"stopped and still points at {source}, untouched. To serve from it again: "
                f"kubectl -n {namespace} scale deployment/{app} --replicas={replicas}. "
                f"Why: kubectl -n {namespace} describe cluster.postgresql.cnpg.io/{target}; "
                f"kubectl -n {namespace} logs -l cnpg.io/cluster={target} --all-containers"
            )

        log(f"==> restore: moving the app to {target}-rw")
        # The scale to zero above made `kubectl` the owner of the replica count.
        self.runner.run(apply_command(stages["app"], take_over=True))
        self.runner.run(scale_command(app, namespace, replicas))
        self.runner.run(
            rollout_status_command("deployment", app, namespace, self.options.rollout_timeout)
        )
        patch_file = self.out_dir / "restore" / "overlay-patch.yaml"
        kustomization = repo_root() / "k8s" / "overlays" / environment / "kustomization.yaml"
        rename_cluster, rename_schedule, bootstrap = patches
        text = overlay_patch_text(
            [
                ([], rename_cluster),
                ([], rename_schedule),
                (
                    [
                        f"The recovery bootstrap: once {target} has a base backup of its own",
                        f"(kubectl -n {namespace} get backups), delete this entry and deploy.",
                    ],
                    bootstrap,
                ),
            ],
            [
                f"conduit-deploy restore {environment} --to {_utc(moment)} (run {_utc(now)}):",
                f"{target} is {source} restored from its backups. Append these entries",
                f"to `patches:` of k8s/overlays/{environment}/kustomization.yaml and commit",
                'them before the next deploy (k8s/README.md, "Restore runbook").',
            ],
        )
        self.runner.step(
            f"write {patch_file}: the patches to commit under `patches:` of "
            f"k8s/overlays/{environment}/kustomization.yaml",
            lambda: patch_file.write_text(text),
            planned=None,
        )
        if kustomization.is_file() and appends_cleanly(kustomization.read_text(), text):
            commit = f"`cat {patch_file} >> {kustomization}`"
        else:
            commit = f"add the entries of {patch_file} under `patches:` of {kustomization}"
        self.runner.outcome(
            f"==> restore: the app runs on {target}. Now {commit}, commit it before the next "
            f"deploy, check the data, then `kubectl -n {namespace} delete cluster {source}`"
        )
        return target

    def show_window(self, session: CloudSession) -> RecoveryWindow | None:
        """Print which times the committed Cluster can be restored to; change nothing."""
        cluster, _ = committed_database(self.current)
        archive = archive_of(cluster)
        export_kubeconfig(session, self.runner)
        query = object_store_command(archive.object_store, self.current.namespace)
        result = self.runner.run(query, capture=True, check=False)
        if self.runner.dry_run:
            return None
        return self._window(result, archive, self.current.namespace)

    def _window(self, result: Result, archive: Archive, namespace: str) -> RecoveryWindow:
        window = recovery_window(result, archive, namespace)
        last = _utc(window.last_backup) if window.last_backup else "none"
        log(
            f"==> restore: {archive.server} can be restored to any time from "
            f"{_utc(window.first)} until its last archived WAL (last base backup: {last})"
        )
        return window

    def _recoverable(
        self, result: Result, archive: Archive, namespace: str, moment: datetime
    ) -> bool:
        window = self._window(result, archive, namespace)
        if moment < window.first:
            raise DeployError(
                f"{_utc(moment)} is before the oldest point {archive.server} can be restored to "
                f"({_utc(window.first)}): choose a --to time from then on"
            )
        return True
