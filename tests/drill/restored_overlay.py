"""The drill's last step: the restore it rehearsed, committed as the runbook says.

From the drill's own backup catalog and target time: the recovery window the Barman
Cloud plugin would publish for it, `conduit-deploy restore dev --to T` against that
(kubectl kustomize runs for real; the cluster's commands are scripted: there is no
Kubernetes here), the patch it writes appended to a copy of the overlay as
k8s/README.md ("Restore runbook", step 3) says, and a second render of the overlay,
validated against the pinned CRDs and Kubernetes' schemas.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

from conduit_deploy.cli import Context, main
from conduit_deploy.restore import restored_name
from conduit_deploy.runner import Result, Runner

from tests.deploy.support import (
    ScriptedCluster,
    ci_environ,
    manifest_errors,
    object_store,
    rendered_objects,
)
from tests.k8s.support import K8S


def plugin_window(listing: dict) -> dict:
    """The window the plugin publishes for a `barman-cloud-backup-list --format json`.

    First recoverability point: the end of the oldest completed backup; last successful
    backup: the end of the newest (cloudnative-pg/barman-cloud, pkg/catalog/catalog.go,
    FirstRecoverabilityPoint and LatestBackupInfo). Barman's JSON gives each end as
    `end_time_iso` (barman 3.19.1, barman/infofile.py, BackupInfo.to_json); the status
    holds Kubernetes times, RFC 3339 to the second.
    """
    ends = sorted(
        datetime.fromisoformat(backup["end_time_iso"]).astimezone(UTC)
        for backup in listing["backups_list"]
        if backup.get("status") == "DONE"
    )
    assert ends, f"no completed backup in {listing}"
    return {
        "firstRecoverabilityPoint": ends[0].strftime("%Y-%m-%dT%H:%M:%SZ"),
        "lastSuccessfulBackupTime": ends[-1].strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def assert_restored_overlay_renders(listing: dict, target: str, server: str) -> None:
    """Restore dev to `target` (a PostgreSQL timestamp) from `server`'s backups, commit the
    patch, render again: the Cluster is the restored one and every object is valid."""
    moment = datetime.fromisoformat(target).astimezone(UTC)
    now = datetime.now(UTC)
    store = object_store({"serverRecoveryWindow": {server: plugin_window(listing)}})
    cluster = ScriptedCluster(store)

    def runner(dry_run: bool, clock) -> Runner:
        return Runner(
            dry_run=dry_run,
            which=lambda name: f"/scripted/{name}",
            echo=lambda line: None,
            executor=lambda call: cluster(call.args) or Result(call.args, 0),
            clock=clock,
        )

    with tempfile.TemporaryDirectory(prefix="drill-overlay-") as scratch:
        root = Path(scratch)
        shutil.copytree(K8S, root / "k8s", ignore=shutil.ignore_patterns("monitoring"))
        context = Context(environ=ci_environ(), runner_factory=runner, utc_now=lambda: now)
        with mock.patch.dict(os.environ, {"CONDUIT_REPO_ROOT": str(root)}):
            restore = ["restore", "dev", "--to", moment.isoformat(), "--out", str(root / "out")]
            assert main(restore, context) == 0
            patch = (root / "out" / "restore" / "overlay-patch.yaml").read_text()
            with (root / "k8s" / "overlays" / "dev" / "kustomization.yaml").open("a") as file:
                file.write(patch)
            assert main(["render", "dev", "--out", str(root / "again")], context) == 0
        objects = rendered_objects(root / "again")
        assert manifest_errors(objects, root / "again") == []
    [restored] = [o for o in objects if o["kind"] == "Cluster"]
    assert restored["metadata"]["name"] == restored_name("conduit-db", now)
    recovery = restored["spec"]["bootstrap"]["recovery"]
    assert datetime.fromisoformat(recovery["recoveryTarget"]["targetTime"]) == moment
    [origin] = restored["spec"]["externalClusters"]
    assert origin["plugin"]["parameters"]["serverName"] == server
