"""restore: a new Cluster from the backups at a point in time, then the app moved to it.

The real render runs (kubectl kustomize passes through); every other program is
scripted, so the tests see the exact commands and their order.
"""

from __future__ import annotations

import base64
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from conduit_deploy.deploy import apply_command
from conduit_deploy.restore import restored_name
from conduit_deploy.runner import Result, find_program, format_command

from tests.deploy.support import plan_steps
from tests.k8s.crd import crd_errors

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
TARGET = "conduit-db-r202611301200"
FIRST_RECOVERABLE = "2026-11-01T03:00:12Z"


def kustomize_for_real(args: tuple[str, ...]) -> Result | None:
    if args[:2] == ("kubectl", "kustomize"):
        done = subprocess.run(
            [find_program("kubectl"), *args[1:]], capture_output=True, text=True, check=False
        )
        return Result(args, done.returncode, done.stdout, done.stderr)
    if args[:3] == ("kubectl", "get", "cluster.postgresql.cnpg.io/conduit-db"):
        return Result(args, 0, FIRST_RECOVERABLE)
    if args[:3] == ("kubectl", "get", "deployment/conduit"):
        return Result(args, 0, "1")
    return None


@pytest.fixture
def run_restore(run_command, recorder):
    recorder.respond = kustomize_for_real

    def run(*argv: str) -> tuple[int, str, str]:
        return run_command("restore", "dev", *argv, utc_now=lambda: NOW)

    return run


def cluster_commands(recorder) -> list[tuple[str, ...]]:
    return [c for c in recorder.commands if c[:2] != ("kubectl", "kustomize")]


def restored_objects(tmp_path: Path, stage: str) -> list[dict]:
    path = tmp_path / "out" / "restore" / stage
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_restore_creates_a_new_cluster_then_moves_the_app(run_restore, recorder, tmp_path):
    code, _, err = run_restore("--to", "2026-11-30T10:42:00Z")
    assert code == 0, err
    restore = tmp_path / "out" / "restore"
    assert cluster_commands(recorder) == [
        ("kops", "export", "kubecfg", "--name", "dev.conduit.k8s.local", "--admin=2h"),
        (
            "kubectl",
            "get",
            "cluster.postgresql.cnpg.io/conduit-db",
            "--namespace",
            "conduit",
            "--output=jsonpath={.status.firstRecoverabilityPoint}",
        ),
        (
            "kubectl",
            "get",
            "deployment/conduit",
            "--namespace",
            "conduit",
            "--output=jsonpath={.spec.replicas}",
        ),
        ("kubectl", "scale", "deployment/conduit", "--namespace", "conduit", "--replicas=0"),
        tuple(apply_command(restore / "02-secrets.yaml")),
        tuple(apply_command(restore / "03-database.yaml")),
        (
            "kubectl",
            "wait",
            "--for=condition=Ready",
            f"cluster.postgresql.cnpg.io/{TARGET}",
            "--namespace",
            "conduit",
            "--timeout=1800s",
        ),
        tuple(apply_command(restore / "04-app.yaml", take_over=True)),
        ("kubectl", "scale", "deployment/conduit", "--namespace", "conduit", "--replicas=1"),
        (
            "kubectl",
            "rollout",
            "status",
            "deployment/conduit",
            "--namespace",
            "conduit",
            "--timeout=300s",
        ),
    ]

    database = restored_objects(tmp_path, "03-database.yaml")
    [cluster] = [o for o in database if o["kind"] == "Cluster"]
    [schedule] = [o for o in database if o["kind"] == "ScheduledBackup"]
    assert cluster["metadata"]["name"] == TARGET
    assert cluster["spec"]["bootstrap"] == {
        "recovery": {
            "source": "origin",
            "database": "conduit",
            "owner": "conduit",
            "recoveryTarget": {"targetTime": "2026-11-30T10:42:00Z"},
        }
    }
    [origin] = cluster["spec"]["externalClusters"]
    # It reads the old cluster's folder of the bucket and archives into its own.
    assert origin["plugin"]["parameters"] == {
        "barmanObjectName": "conduit-backups",
        "serverName": "conduit-db",
    }
    assert "serverName" not in cluster["spec"]["plugins"][0]["parameters"]
    # A new ScheduledBackup: the old one's cluster reference is immutable.
    assert schedule["metadata"]["name"] == f"{TARGET}-nightly"
    assert schedule["spec"]["cluster"]["name"] == TARGET
    assert crd_errors(cluster) == []
    assert crd_errors(schedule) == []

    [app_secret] = [
        o
        for o in restored_objects(tmp_path, "02-secrets.yaml")
        if "DATABASE_URL" in o.get("data", {})
    ]
    url = base64.b64decode(app_secret["data"]["DATABASE_URL"]).decode()
    assert f"@{TARGET}-rw:5432/conduit" in url

    # The patches to commit, so that the next deploy renders this same Cluster.
    patches = yaml.safe_load((restore / "overlay-patch.yaml").read_text())
    assert [p["target"] for p in patches] == [
        {"kind": "Cluster", "name": "conduit-db"},
        {"kind": "ScheduledBackup", "name": "conduit-db-nightly"},
    ]


def test_dry_run_prints_every_step_and_touches_no_cluster(run_restore, recorder, tmp_path):
    code, _, _ = run_restore("--to", "2026-11-30T10:42:00Z", "--dry-run")
    assert code == 0
    assert cluster_commands(recorder) == []
    steps = plan_steps(recorder.planned)
    assert steps[0] == "kops export kubecfg --name dev.conduit.k8s.local --admin=2h"
    assert (
        "# only if 2026-11-30T10:42:00Z is after conduit-db's first recoverability point:" in steps
    )
    assert "kubectl scale deployment/conduit --namespace conduit --replicas=0" in steps
    assert (
        f"kubectl wait --for=condition=Ready cluster.postgresql.cnpg.io/{TARGET} "
        "--namespace conduit --timeout=1800s"
    ) in steps
    assert steps.index("kubectl scale deployment/conduit --namespace conduit --replicas=0") < (
        steps.index(
            format_command(
                apply_command(tmp_path / "out" / "restore" / "04-app.yaml", take_over=True)
            )
        )
    )
    assert steps[-1].startswith(f"# write {tmp_path / 'out' / 'restore' / 'overlay-patch.yaml'}")
    assert not (tmp_path / "out" / "restore" / "overlay-patch.yaml").exists()


def test_a_time_before_the_oldest_backup_stops_before_any_change(run_restore, recorder):
    code, _, err = run_restore("--to", "2026-10-01T00:00:00Z")
    assert code == 1
    assert err.strip().endswith(
        f"2026-10-01T00:00:00Z is before conduit-db's oldest backup ({FIRST_RECOVERABLE})"
    )
    assert not [
        c for c in recorder.commands if c[:2] in {("kubectl", "scale"), ("kubectl", "apply")}
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yesterday", "--to 'yesterday' is not an RFC 3339 time (2026-11-30T10:42:00Z)"),
        ("2026-11-30T10:42:00", "--to '2026-11-30T10:42:00' has no UTC offset (add Z or +01:00)"),
        ("2026-12-01T00:00:00Z", "--to '2026-12-01T00:00:00Z' is not in the past"),
    ],
)
def test_a_bad_time_is_refused_with_one_line(run_restore, recorder, value, message):
    code, _, err = run_restore("--to", value)
    assert code == 1
    assert err.strip() == f"conduit-deploy: error: {message}"
    assert recorder.commands == []


def test_restoring_a_restored_cluster_does_not_grow_its_name():
    assert restored_name("conduit-db", NOW) == TARGET
    assert restored_name("conduit-db-r202611011200", NOW) == TARGET
