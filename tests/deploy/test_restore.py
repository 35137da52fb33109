"""restore: a new Cluster from the backups at a point in time, then the app moved to it.

The real render runs (kubectl kustomize passes through); every other program is
scripted, so the tests see the exact commands and their order. What the cluster
answers is shaped by upstream: the ObjectStore the Barman Cloud plugin reports on is
the committed one with a status that must validate against the plugin's CRD
(plugin-barman-cloud v0.14.0, config/crd/bases/barmancloud.cnpg.io_objectstores.yaml,
status.serverRecoveryWindow), so a misspelt field fails here, not at 3 a.m.
"""

from __future__ import annotations

import base64
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from conduit_deploy.deploy import apply_command
from conduit_deploy.errors import DeployError, RenderError
from conduit_deploy.render import bootstrap_method
from conduit_deploy.restore import (
    Archive,
    archive_of,
    recovery_window,
    restore_patches,
    restored_name,
)
from conduit_deploy.runner import Result, format_command

from tests.deploy.support import (
    OBJECT_STORE_QUERY,
    ScriptedCluster,
    ci_environ,
    manifest_errors,
    object_store,
    plan_steps,
    rendered_objects,
)
from tests.k8s.crd import crd_errors
from tests.k8s.support import K8S, load_all

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
TARGET = "conduit-db-r202611301200"
FIRST_RECOVERABLE = "2026-11-01T03:00:12Z"
LAST_BACKUP = "2026-11-30T03:00:41Z"


def window_of(server: str, first: str = FIRST_RECOVERABLE, last: str = LAST_BACKUP) -> dict:
    return {
        "serverRecoveryWindow": {
            server: {"firstRecoverabilityPoint": first, "lastSuccessfulBackupTime": last}
        }
    }


class Cluster(ScriptedCluster):
    """The scripted cluster, backed up as conduit-db unless told otherwise."""

    def __init__(self, store: dict | None = None, store_error: str = "") -> None:
        super().__init__(store or object_store(window_of("conduit-db")), store_error)

    def __call__(self, args: tuple[str, ...]) -> Result | None:
        if args[:3] == ("kubectl", "get", "cluster.postgresql.cnpg.io/conduit-db"):
            # What the old code read; CloudNativePG 1.30 no longer sets it for plugin
            # backups (postgresql.cnpg.io_clusters.yaml, status.firstRecoverabilityPoint).
            return Result(args, 0, FIRST_RECOVERABLE)
        return super().__call__(args)


@pytest.fixture
def run_restore(run_command, recorder):
    recorder.respond = Cluster()

    def run(*argv: str, environ: dict | None = None) -> tuple[int, str, str]:
        return run_command("restore", "dev", *argv, environ=environ, utc_now=lambda: NOW)

    return run


def cluster_commands(recorder) -> list[tuple[str, ...]]:
    return [c for c in recorder.commands if c[:2] != ("kubectl", "kustomize")]


def changes(recorder) -> list[tuple[str, ...]]:
    return [c for c in recorder.commands if c[:2] in {("kubectl", "scale"), ("kubectl", "apply")}]


def restored_objects(tmp_path: Path, stage: str) -> list[dict]:
    return load_all(tmp_path / "out" / "restore" / stage)


# --- what the fakes may say --------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "field"),
    [
        # The Cluster's deprecated field, where the plugin never writes it.
        ({"firstRecoverabilityPoint": FIRST_RECOVERABLE}, "firstRecoverabilityPoint"),
        # A misspelt window field.
        (
            {"serverRecoveryWindow": {"conduit-db": {"firstRecoverableTime": FIRST_RECOVERABLE}}},
            "firstRecoverableTime",
        ),
        # A window that is not a map per server.
        ({"serverRecoveryWindow": [{"firstRecoverabilityPoint": FIRST_RECOVERABLE}]}, "array"),
    ],
)
def test_an_object_store_status_the_plugin_cannot_publish_is_refused(status, field):
    store = yaml.safe_load((K8S / "base" / "postgres-objectstore.yaml").read_text())
    store["status"] = status
    errors = crd_errors(store)
    assert errors
    assert field in " ".join(errors) or "is not of type 'object'" in " ".join(errors)


# --- the restore --------------------------------------------------------------------


def test_restore_creates_a_new_cluster_then_moves_the_app(run_restore, recorder, tmp_path):
    code, _, err = run_restore("--to", "2026-11-30T10:42:00Z")
    assert code == 0, err
    restore = tmp_path / "out" / "restore"
    assert cluster_commands(recorder) == [
        ("kops", "export", "kubecfg", "--name", "dev.conduit.k8s.local", "--admin=2h"),
        OBJECT_STORE_QUERY,
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
    # The operator sees the window the time was checked against.
    assert WINDOW_LINE in err.splitlines()

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
        {"kind": "Cluster", "labelSelector": "app.kubernetes.io/component=database"},
    ]


def test_fractions_of_a_second_of_the_target_are_kept(run_restore, tmp_path):
    code, _, err = run_restore("--to", "2026-11-30T11:42:00.250000+01:00")
    assert code == 0, err
    [cluster] = [
        o for o in restored_objects(tmp_path, "03-database.yaml") if o["kind"] == "Cluster"
    ]
    target = cluster["spec"]["bootstrap"]["recovery"]["recoveryTarget"]
    assert target == {"targetTime": "2026-11-30T10:42:00.250000Z"}


def test_dry_run_prints_every_step_and_touches_no_cluster(run_restore, recorder, tmp_path):
    code, _, _ = run_restore("--to", "2026-11-30T10:42:00Z", "--dry-run")
    assert code == 0
    assert cluster_commands(recorder) == []
    steps = plan_steps(recorder.planned)
    assert steps[0] == "kops export kubecfg --name dev.conduit.k8s.local --admin=2h"
    check = steps.index(
        "# only if 2026-11-30T10:42:00Z is inside conduit-db's recovery window (ObjectStore "
        "conduit-backups, status.serverRecoveryWindow.conduit-db):"
    )
    assert steps[check + 1] == format_command(OBJECT_STORE_QUERY)
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


WINDOW_LINE = (
    f"==> restore: conduit-db can be restored to any time from {FIRST_RECOVERABLE} until "
    f"its last archived WAL (last base backup: {LAST_BACKUP})"
)


def test_the_window_alone_is_printed_and_nothing_changes(run_restore, recorder):
    code, _, err = run_restore("--window")
    assert code == 0, err
    assert cluster_commands(recorder) == [
        ("kops", "export", "kubecfg", "--name", "dev.conduit.k8s.local", "--admin=2h"),
        OBJECT_STORE_QUERY,
    ]
    assert WINDOW_LINE in err.splitlines()


def test_the_window_of_a_dry_run_is_the_commands_that_read_it(run_restore, recorder):
    code, _, _ = run_restore("--window", "--dry-run")
    assert code == 0
    assert cluster_commands(recorder) == []
    steps = plan_steps(recorder.planned)
    assert steps == [
        "kops export kubecfg --name dev.conduit.k8s.local --admin=2h",
        format_command(OBJECT_STORE_QUERY),
    ]


def test_no_window_yet_is_an_error_for_window_too(run_command, recorder):
    recorder.respond = Cluster(object_store(None))
    code, _, err = run_command("restore", "dev", "--window", utc_now=lambda: NOW)
    assert code == 1
    assert "error: no backup of conduit-db to restore from" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "one of the arguments --to --window is required"),
        (("--to", "2026-11-30T10:42:00Z", "--window"), "argument --window: not allowed"),
    ],
)
def test_restore_takes_a_time_or_the_window(run_restore, recorder, capsys, argv, message):
    with pytest.raises(SystemExit) as exited:
        run_restore(*argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert recorder.commands == []


def test_a_time_before_the_oldest_backup_stops_before_any_change(run_restore, recorder):
    code, _, err = run_restore("--to", "2026-10-01T00:00:00Z")
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "conduit-deploy: error: 2026-10-01T00:00:00Z is before the oldest point conduit-db "
        f"can be restored to ({FIRST_RECOVERABLE}): choose a --to time from then on"
    )
    assert changes(recorder) == []


@pytest.mark.parametrize(
    ("status", "servers"),
    [
        # The Cluster was just created: the plugin has published nothing yet.
        (None, "none"),
        ({}, "none"),
        # Only another server's window (an earlier Cluster in the same bucket).
        (window_of("conduit-db-r202611011200"), "conduit-db-r202611011200"),
    ],
)
def test_without_a_window_for_the_server_nothing_changes(run_command, recorder, status, servers):
    recorder.respond = Cluster(object_store(status))
    code, _, err = run_command(
        "restore", "dev", "--to", "2026-11-30T10:42:00Z", utc_now=lambda: NOW
    )
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "conduit-deploy: error: no backup of conduit-db to restore from: ObjectStore "
        f"conduit-backups reports no recovery window for it (servers it has one for: {servers}); "
        "its first base backup may still be running or failing: kubectl -n conduit get backups"
    )
    assert changes(recorder) == []


def test_the_clusters_deprecated_field_is_not_enough(run_command, recorder):
    """The fake the old tests used: the Cluster reports a first recoverability point
    (Cluster above answers that query), the plugin's ObjectStore has no window."""
    recorder.respond = Cluster(object_store(None))
    code, _, err = run_command(
        "restore", "dev", "--to", "2026-11-30T10:42:00Z", utc_now=lambda: NOW
    )
    assert code == 1
    assert "no backup of conduit-db to restore from" in err
    asked = [
        c
        for c in recorder.commands
        if c[:3] == ("kubectl", "get", "cluster.postgresql.cnpg.io/conduit-db")
    ]
    assert asked == []
    assert changes(recorder) == []


def test_an_unreadable_object_store_is_one_line_and_changes_nothing(run_command, recorder):
    recorder.respond = Cluster(
        store_error=(
            "Error from server (NotFound): "
            'objectstores.barmancloud.cnpg.io "conduit-backups" not found\n'
        )
    )
    code, _, err = run_command(
        "restore", "dev", "--to", "2026-11-30T10:42:00Z", utc_now=lambda: NOW
    )
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "conduit-deploy: error: cannot read ObjectStore conduit-backups in namespace conduit "
        "(is the Barman Cloud plugin installed and the environment deployed?): Error from "
        'server (NotFound): objectstores.barmancloud.cnpg.io "conduit-backups" not found'
    )
    assert changes(recorder) == []


def test_a_cluster_that_never_gets_ready_leaves_the_way_back_printed(run_command, recorder):
    scripted = Cluster()

    def respond(args: tuple[str, ...]) -> Result | None:
        if args[:2] == ("kubectl", "wait"):
            return Result(args, 1, "", "error: timed out waiting for the condition")
        return scripted(args)

    recorder.respond = respond
    code, _, err = run_command(
        "restore", "dev", "--to", "2026-11-30T10:42:00Z", utc_now=lambda: NOW
    )
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        f"conduit-deploy: error: {TARGET} is not Ready after 1800s; the app is stopped and "
        "still points at conduit-db, untouched. To serve from it again: kubectl -n conduit "
        "scale deployment/conduit --replicas=1. Why: kubectl -n conduit describe "
        f"cluster.postgresql.cnpg.io/{TARGET}; kubectl -n conduit logs -l "
        f"cnpg.io/cluster={TARGET} --all-containers"
    )
    # The app's stage was not applied: it still reads the old Cluster's Secret.
    assert not [c for c in recorder.commands if "04-app.yaml" in " ".join(c)]


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


# --- which server's window ----------------------------------------------------------


def cluster_with(parameters: dict) -> dict:
    plugin = {
        "name": "barman-cloud.cloudnative-pg.io",
        "isWALArchiver": True,
        "parameters": parameters,
    }
    return {"metadata": {"name": "conduit-db"}, "spec": {"plugins": [plugin]}}


def test_the_server_is_the_plugins_server_name_else_the_clusters_name():
    # plugin-barman-cloud v0.14.0, internal/cnpgi/operator/config/config.go, NewFromCluster.
    assert archive_of(cluster_with({"barmanObjectName": "conduit-backups"})) == Archive(
        "conduit-backups", "conduit-db"
    )
    assert archive_of(
        cluster_with({"barmanObjectName": "conduit-backups", "serverName": "conduit-db-v2"})
    ) == Archive("conduit-backups", "conduit-db-v2")


def test_a_fixed_server_name_moves_to_the_new_clusters_own_folder():
    cluster = cluster_with({"barmanObjectName": "conduit-backups", "serverName": "conduit-db-v2"})
    cluster["spec"]["bootstrap"] = {"initdb": {"database": "conduit", "owner": "conduit"}}
    moment = datetime(2026, 11, 30, 10, 42, tzinfo=UTC)
    rename, _, bootstrap = restore_patches(cluster, "conduit-db-nightly", TARGET, moment)
    assert yaml.safe_load(rename["patch"])[-1] == {
        "op": "replace",
        "path": "/spec/plugins/0/parameters/serverName",
        "value": TARGET,
    }
    # ... while the backups are read from the old one.
    [origin] = yaml.safe_load(bootstrap["patch"])[1]["value"]
    assert origin["plugin"]["parameters"]["serverName"] == "conduit-db-v2"


def test_the_window_read_is_the_servers_not_the_clusters():
    archive = archive_of(
        cluster_with({"barmanObjectName": "conduit-backups", "serverName": "conduit-db-v2"})
    )
    # The Cluster's name has a window; the server it archives as has none.
    answer = Result(OBJECT_STORE_QUERY, 0, json.dumps(object_store(window_of("conduit-db"))))
    with pytest.raises(DeployError, match="no backup of conduit-db-v2 to restore from"):
        recovery_window(answer, archive, "conduit")
    moved = object_store(window_of("conduit-db-v2"))
    window = recovery_window(Result(OBJECT_STORE_QUERY, 0, json.dumps(moved)), archive, "conduit")
    assert window.first == datetime(2026, 11, 1, 3, 0, 12, tzinfo=UTC)
    assert window.last_backup == datetime(2026, 11, 30, 3, 0, 41, tzinfo=UTC)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("", "kubectl printed no JSON for ObjectStore conduit-backups"),
        (
            # Not the plugin's format (date-time): a clear error rather than a traceback.
            json.dumps(window_of("conduit-db", first="1 Nov 2026")),
            "firstRecoverabilityPoint '1 Nov 2026' is not an RFC 3339 time",
        ),
    ],
)
def test_an_answer_it_cannot_read_is_one_clear_error(answer, message):
    archive = Archive("conduit-backups", "conduit-db")
    wrapped = answer and json.dumps({"status": json.loads(answer)})
    with pytest.raises(DeployError) as raised:
        recovery_window(Result(OBJECT_STORE_QUERY, 0, wrapped), archive, "conduit")
    assert str(raised.value) == message


def test_restoring_a_restored_cluster_does_not_grow_its_name():
    assert restored_name("conduit-db", NOW) == TARGET
    assert restored_name("conduit-db-r202611011200", NOW) == TARGET


# --- the runbook, followed: restore, commit, deploy again, go back -------------------


@pytest.fixture
def checkout(tmp_path, monkeypatch) -> Path:
    """A copy of k8s/ to commit into; render reads it via CONDUIT_REPO_ROOT."""
    root = tmp_path / "repo"
    shutil.copytree(K8S, root / "k8s")
    monkeypatch.setenv("CONDUIT_REPO_ROOT", str(root))
    return root


def rendered(tmp_path: Path) -> list[dict]:
    return rendered_objects(tmp_path / "out")


def all_errors(objects: list[dict], tmp_path: Path) -> list[str]:
    return manifest_errors(objects, tmp_path / "out")


def one(objects: list[dict], kind: str) -> dict:
    [found] = [o for o in objects if o["kind"] == kind]
    return found


def test_the_committed_restore_composes_with_every_later_deploy(
    run_command, recorder, tmp_path, checkout
):
    """k8s/README.md, "Restore runbook", step by step with the real kustomize."""
    recorder.respond = Cluster()
    environ = ci_environ(DB_USER="app_owner")  # not the name the manifests carry
    kustomization = checkout / "k8s" / "overlays" / "dev" / "kustomization.yaml"
    patch_file = tmp_path / "out" / "restore" / "overlay-patch.yaml"

    def render() -> list[dict]:
        code, _, err = run_command("render", "dev", environ=environ)
        assert code == 0, err
        objects = rendered(tmp_path)
        assert all_errors(objects, tmp_path) == []
        return objects

    before = one(render(), "Cluster")
    assert before["spec"]["bootstrap"]["initdb"]["owner"] == "app_owner"

    def restore(*extra: str) -> str:
        code, _, err = run_command(
            "restore",
            "dev",
            "--to",
            "2026-11-30T10:42:00Z",
            *extra,
            environ=environ,
            utc_now=lambda: NOW,
        )
        assert code == 0, err
        return err

    restore("--dry-run")
    assert changes(recorder) == []
    said = restore()
    # The exact command it prints, run as the runbook says.
    assert f"`cat {patch_file} >> {kustomization}`" in said
    with kustomization.open("a") as handle:
        handle.write(patch_file.read_text())

    # Every later deploy renders the restored Cluster, valid, with DB_USER as its owner.
    after = render()
    cluster = one(after, "Cluster")
    assert cluster["metadata"]["name"] == TARGET
    assert cluster["spec"]["bootstrap"]["recovery"]["owner"] == "app_owner"
    assert cluster["spec"]["bootstrap"]["recovery"]["recoveryTarget"] == {
        "targetTime": "2026-11-30T10:42:00Z"
    }
    assert cluster["spec"]["managed"]["roles"][0]["name"] == "app_owner"
    assert one(after, "ScheduledBackup")["spec"]["cluster"]["name"] == TARGET
    # ... the same objects the restore applied.
    restored = load_all(tmp_path / "out" / "restore" / "03-database.yaml")
    assert cluster == one(restored, "Cluster")

    # Back to a normal bootstrap: the last entry (recovery + externalClusters) removed.
    text = kustomization.read_text()
    last_entry = text.rindex("  # The recovery bootstrap:")
    kustomization.write_text(text[:last_entry])
    settled = one(render(), "Cluster")
    assert settled["metadata"]["name"] == TARGET
    assert list(settled["spec"]["bootstrap"]) == ["initdb"]
    assert settled["spec"]["bootstrap"]["initdb"]["owner"] == "app_owner"
    assert "externalClusters" not in settled["spec"]


def test_a_restore_of_the_restored_cluster_composes_too(run_command, recorder, tmp_path, checkout):
    """Two restores, each committed as the runbook says: the second reads the first's
    folder of the bucket."""
    kustomization = checkout / "k8s" / "overlays" / "dev" / "kustomization.yaml"
    earlier = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    first = restored_name("conduit-db", earlier)
    for now, server, to in [
        (earlier, "conduit-db", "2026-11-20T11:00:00Z"),
        (NOW, first, "2026-11-30T10:42:00Z"),
    ]:
        recorder.respond = Cluster(object_store(window_of(server)))
        code, _, err = run_command("restore", "dev", "--to", to, utc_now=lambda now=now: now)
        assert code == 0, err
        with kustomization.open("a") as handle:
            handle.write((tmp_path / "out" / "restore" / "overlay-patch.yaml").read_text())
    code, _, err = run_command("render", "dev")
    assert code == 0, err
    objects = rendered(tmp_path)
    cluster = one(objects, "Cluster")
    assert cluster["metadata"]["name"] == TARGET
    [origin] = cluster["spec"]["externalClusters"]
    assert origin["plugin"]["parameters"]["serverName"] == first
    assert one(objects, "ScheduledBackup")["metadata"]["name"] == f"{TARGET}-nightly"
    assert all_errors(objects, tmp_path) == []


@pytest.mark.parametrize("bootstrap", [{}, {"initdb": {}, "recovery": {}}])
def test_a_cluster_without_exactly_one_bootstrap_is_refused(bootstrap):
    cluster = {"metadata": {"name": "conduit-db"}, "spec": {"bootstrap": bootstrap}}
    with pytest.raises(RenderError, match="must declare one bootstrap method"):
        bootstrap_method(cluster)
