"""cluster: create, update or upgrade (kops reconcile), kubeconfig first, prune, private
credentials, bounded validation, the cluster-name rule, and the dry run's order."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conduit_deploy.cluster import (
    ClusterPath,
    ClusterState,
    choose_path,
    cluster_spec_version,
    parse_version,
    server_version,
    summarise_validation,
)
from conduit_deploy.errors import ConfigError
from conduit_deploy.runner import Result

from .support import GCP_KEY, ci_environ, plan_steps, tag_environ

CLUSTER = "dev.conduit.k8s.local"
SPEC_VERSION = "1.35.5"  # what FakeRender writes into kops.yaml


@dataclass
class Kops:
    """Scripted answers of kops and kubectl about one cluster."""

    exists: bool = True
    stored: str = SPEC_VERSION
    running: str | None = "v1.35.5"  # None: the API server does not answer
    validations: list[Result] = field(default_factory=list)

    def respond(self, args):
        if args[:3] == ("kops", "get", "cluster"):
            if not self.exists:
                return Result(args, 1, "", f'Error: cluster not found "{args[4]}"\n')
            spec = f"kind: Cluster\nmetadata:\n  name: {args[4]}\nspec:\n"
            return Result(args, 0, spec + f"  kubernetesVersion: {self.stored}\n")
        if args[:2] == ("kubectl", "version"):
            client = {"clientVersion": {"gitVersion": "v1.36.4"}}
            if self.running is None:
                return Result(args, 1, json.dumps(client), "Unable to connect to the server")
            return Result(
                args, 0, json.dumps({**client, "serverVersion": {"gitVersion": self.running}})
            )
        if args[:3] == ("kops", "validate", "cluster") and self.validations:
            return self.validations.pop(0)
        return None


@pytest.fixture
def kops(recorder):
    state = Kops()
    recorder.respond = state.respond
    return state


@pytest.fixture
def run_cluster(run_command, kops, fake_render, preflight):
    def run(*argv, environ=None):
        return run_command(
            "cluster", *argv, environ=environ, render=fake_render, preflight=preflight
        )

    return run


def spec_file(tmp_path):
    return str(tmp_path / "out" / "kops.yaml")


def queries(name=CLUSTER):
    return [
        ("kops", "get", "cluster", "--name", name, "--output", "yaml"),
        ("kops", "export", "kubecfg", "--name", name, "--admin=2h"),
        ("kubectl", "version", "--output=json", "--request-timeout=30s"),
    ]


VALIDATE = ("kops", "validate", "cluster", "--name", CLUSTER, "--output", "json")
UPDATE = ("kops", "update", "cluster", "--name", CLUSTER, "--create-kube-config=false", "--yes")
PRUNE = (*UPDATE[:-1], "--prune", "--yes")
RECONCILE = ("kops", "reconcile", "cluster", "--name", CLUSTER, "--yes")


def test_an_existing_cluster_on_the_same_version_is_updated_then_rolled_and_pruned(
    run_cluster, recorder, tmp_path
):
    code, _, err = run_cluster("dev")
    assert code == 0, err
    assert recorder.commands == [
        *queries(),  # the kubeconfig is exported before anything changes
        ("kops", "replace", "--filename", spec_file(tmp_path), "--force"),
        UPDATE,
        VALIDATE,
        ("kops", "rolling-update", "cluster", "--name", CLUSTER, "--yes"),
        PRUNE,
    ]
    assert f"==> cluster: update {CLUSTER}" in err


def test_a_missing_cluster_is_created_without_touching_an_api_server(
    run_cluster, recorder, kops, tmp_path
):
    kops.exists = False
    code, _, err = run_cluster("dev")
    assert code == 0, err
    assert recorder.commands == [
        ("kops", "get", "cluster", "--name", CLUSTER, "--output", "yaml"),
        ("kops", "replace", "--filename", spec_file(tmp_path), "--force"),
        UPDATE,
        ("kops", "export", "kubecfg", "--name", CLUSTER, "--admin=2h"),
        VALIDATE,
    ]
    assert f"==> cluster: create {CLUSTER}" in err


def test_a_new_kubernetes_version_is_reconciled_not_updated(run_cluster, recorder, kops, tmp_path):
    kops.running = "v1.35.4"
    code, _, err = run_cluster("dev")
    assert code == 0, err
    # kops docs, tutorial/upgrading-kubernetes.md: for 1.31+ `kops reconcile cluster --yes`
    # replaces `update --yes` + `rolling-update --yes` (cli/kops_reconcile_cluster.md).
    assert recorder.commands == [
        *queries(),
        ("kops", "replace", "--filename", spec_file(tmp_path), "--force"),
        RECONCILE,
        VALIDATE,
    ]
    assert f"==> cluster: upgrade {CLUSTER}" in err


def test_without_an_api_server_the_state_stores_version_decides(run_cluster, recorder, kops):
    kops.running = None
    run_cluster("dev")
    assert UPDATE in recorder.commands
    recorder.calls.clear()
    kops.stored = "1.34.9"
    run_cluster("dev")
    assert RECONCILE in recorder.commands


def test_a_downgrade_is_refused_before_anything_changes(run_cluster, recorder, kops):
    kops.running = "v1.36.0"
    code, _, err = run_cluster("dev")
    assert code == 1
    assert recorder.commands == queries()
    assert err.strip().splitlines()[-1] == (
        "conduit-deploy: error: the cluster runs Kubernetes 1.36.0, newer than the spec's "
        "1.35.5: Kubernetes clusters are not downgraded (raise kubernetes_version in "
        "k8s/kops/values/ENV.yaml)"
    )


def test_a_state_store_error_is_not_taken_for_a_missing_cluster(run_cluster, recorder):
    recorder.respond = lambda args: (
        Result(args, 1, "", "Error: error reading state store: googleapi: Error 403: Forbidden")
        if args[1] == "get"
        else None
    )
    code, _, err = run_cluster("dev")
    assert code == 1
    assert [c[1] for c in recorder.commands] == ["get"]
    assert "failed with exit code 1: Error: error reading state store" in err


def test_no_rolling_update_skips_the_roll_and_the_prune_of_an_update(run_cluster, recorder):
    run_cluster("dev", "--no-rolling-update")
    assert [c[1] for c in recorder.commands][-2:] == ["update", "validate"]


def test_the_dry_run_shows_every_path_in_order(run_cluster, recorder, preflight, tmp_path):
    code, _, _ = run_cluster("dev", "--dry-run")
    assert code == 0
    assert (recorder.calls, preflight.calls) == ([], [])
    spec = spec_file(tmp_path)
    plan = plan_steps(recorder.planned)
    validate = [
        "#   # repeated every 30s until it passes, for at most 1500s:",
        f"#   kops validate cluster --name {CLUSTER} --output json",
    ]
    assert plan == [
        "# conduit-deploy preflight dev",
        "# the cluster's state picks one path: create, update or upgrade",
        f"kops get cluster --name {CLUSTER} --output yaml",
        f"kops export kubecfg --name {CLUSTER} --admin=2h",
        "kubectl version --output=json --request-timeout=30s",
        f"# create, when {CLUSTER} is not in the state store:",
        f"#   kops replace --filename {spec} --force",
        f"#   kops update cluster --name {CLUSTER} --create-kube-config=false --yes",
        f"#   kops export kubecfg --name {CLUSTER} --admin=2h",
        *validate,
        "# update, when it runs Kubernetes 1.35.5:",
        f"#   kops replace --filename {spec} --force",
        f"#   kops update cluster --name {CLUSTER} --create-kube-config=false --yes",
        *validate,
        f"#   kops rolling-update cluster --name {CLUSTER} --yes",
        f"#   kops update cluster --name {CLUSTER} --create-kube-config=false --prune --yes",
        "# upgrade, when it runs another version than 1.35.5:",
        f"#   kops replace --filename {spec} --force",
        f"#   kops reconcile cluster --name {CLUSTER} --yes",
        *validate,
    ]


@pytest.mark.parametrize(
    ("state", "path"),
    [
        (ClusterState(exists=False), ClusterPath.CREATE),
        (ClusterState(True, "1.35.5", "v1.35.5"), ClusterPath.UPDATE),
        (ClusterState(True, "1.35.5", "v1.35.5+gke.1"), ClusterPath.UPDATE),
        (ClusterState(True, "1.35.5", None), ClusterPath.UPDATE),
        (ClusterState(True, "1.35.5", "v1.35.4"), ClusterPath.UPGRADE),  # a patch too
        (ClusterState(True, "1.34.9", "v1.34.9"), ClusterPath.UPGRADE),
        # The API server's answer counts, not what a failed run left in the state store.
        (ClusterState(True, "1.35.5", "v1.34.9"), ClusterPath.UPGRADE),
        (ClusterState(True, None, None), ClusterPath.UPGRADE),  # unknown: the safe path
    ],
)
def test_choose_path(state, path):
    assert choose_path(state, "1.35.5") is path


def test_choose_path_refuses_a_downgrade_and_a_spec_without_version():
    with pytest.raises(ConfigError, match="not downgraded"):
        choose_path(ClusterState(True, "1.35.5", "v1.35.6"), "1.35.5")
    with pytest.raises(ConfigError, match="is not a version"):
        choose_path(ClusterState(True, "1.35.5", "v1.35.5"), "latest")


def test_versions_are_read_from_kops_and_kubectl_output():
    assert parse_version("v1.35.5+build") == (1, 35, 5)
    assert parse_version("stable") is None
    assert (
        cluster_spec_version(
            "kind: InstanceGroup\n---\nkind: Cluster\nspec:\n  kubernetesVersion: 1.35.5\n"
        )
        == "1.35.5"
    )
    assert cluster_spec_version("kind: Cluster\nspec: {}\n") is None
    assert cluster_spec_version("{ not yaml") is None
    assert server_version('{"serverVersion": {"gitVersion": "v1.35.5"}}') == "v1.35.5"
    assert server_version('{"clientVersion": {"gitVersion": "v1.36.4"}}') is None
    assert server_version("not json") is None


# --- credentials, validation, environments -----------------------------------------------


def test_kops_gets_state_store_flags_and_a_private_key_file(run_cluster, recorder, kops):
    seen = {}

    def respond(args):
        if args[1] == "replace":
            call = recorder.calls[-1]
            key = Path(call.exported["GOOGLE_APPLICATION_CREDENTIALS"])
            seen["key"] = key
            seen["content"] = json.loads(key.read_text())
            seen["mode"] = stat.S_IMODE(key.stat().st_mode)
            seen["folder_mode"] = stat.S_IMODE(key.parent.stat().st_mode)
            seen["exported"] = dict(call.exported)
        return kops.respond(args)

    recorder.respond = respond
    code, _, _ = run_cluster("dev", environ=ci_environ(KOPS_FEATURE_FLAGS="Karpenter"))
    assert code == 0
    assert seen["content"] == GCP_KEY
    assert (seen["mode"], seen["folder_mode"]) == (0o600, 0o700)
    assert seen["exported"]["KOPS_STATE_STORE"] == "gs://conduit-kops-state"
    assert seen["exported"]["KOPS_FEATURE_FLAGS"] == "Karpenter"
    assert seen["exported"]["KUBECONFIG"].startswith(str(seen["key"].parent))
    assert not seen["key"].exists()  # removed when the command ends


def test_validation_is_polled_with_a_line_per_attempt(run_cluster, recorder, kops, clock):
    failures = {
        "failures": [
            {"type": "Machine", "name": "nodes-b-x1", "message": "machine has not yet joined"},
            {"type": "Pod", "name": "kube-system/coredns", "message": "not ready"},
        ]
    }
    kops.validations = [
        Result((), 1, "", "Error: unexpected error during validation: dial tcp: i/o timeout"),
        Result((), 2, json.dumps(failures)),
        Result((), 0, json.dumps({"failures": []})),
    ]
    code, _, err = run_cluster("dev", "--validate-interval", "30")
    assert code == 0
    progress = [line.strip() for line in err.splitlines() if "attempt" in line]
    assert progress == [
        f"validate {CLUSTER}: attempt 1 (0s): "
        "Error: unexpected error during validation: dial tcp: i/o timeout",
        f"validate {CLUSTER}: attempt 2 (30s): "
        "2 failure(s); first: Machine nodes-b-x1: machine has not yet joined",
        f"validate {CLUSTER}: attempt 3 (60s): cluster is valid",
    ]
    assert clock.sleeps == [30, 30]
    assert recorder.commands[-2][1] == "rolling-update"  # only after validation passed


def test_validation_timeout_is_a_clear_error(run_cluster, recorder, kops, clock):
    kops.validations = [Result((), 1, "", "Validation Failed")] * 10
    code, _, err = run_cluster("dev", "--validate-timeout", "100", "--validate-interval", "30")
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        f"conduit-deploy: error: validate {CLUSTER}: gave up after 90s and 4 attempts "
        "(timeout 100s); last: Validation Failed"
    )
    assert "rolling-update" not in [c[1] for c in recorder.commands]
    assert clock.sleeps == [30, 30, 30]


def test_a_failed_kops_command_stops_the_job(run_cluster, recorder, kops):
    recorder.respond = lambda args: (
        Result(args, 1, "", "error reading cluster: permission denied")
        if args[1] == "update"
        else kops.respond(args)
    )
    code, _, err = run_cluster("dev")
    assert code == 1
    assert [c[1] for c in recorder.commands][-2:] == ["replace", "update"]
    assert "failed with exit code 1: error reading cluster: permission denied" in err


def test_unknown_environment(run_cluster, recorder):
    code, _, err = run_cluster("staging")
    assert (code, recorder.calls) == (1, [])
    assert (
        err == "conduit-deploy: error: unknown environment 'staging' (expected one of: dev, prod)\n"
    )


def test_a_branch_pipeline_cannot_touch_prod(run_cluster, recorder):
    code, _, err = run_cluster("prod")
    assert (code, recorder.calls) == (1, [])
    assert "may deploy to dev, not prod" in err


def test_a_release_tag_pipeline_may_touch_prod(run_cluster, recorder):
    code, _, _ = run_cluster("prod", environ=tag_environ("v1.2.3"))
    assert code == 0
    assert recorder.commands[0][4] == "prod.conduit.k8s.local"


# --- which cluster belongs to which environment ----------------------------------------


def test_prod_never_goes_to_the_dev_cluster(run_cluster, recorder, fake_render):
    # An unscoped K8S_CLUSTER_NAME: the tag pipeline sees dev's value.
    environ = tag_environ("v1.2.3", K8S_CLUSTER_NAME=CLUSTER, K8S_CLUSTER_NAME_CONFIRMED=CLUSTER)
    code, _, err = run_cluster("prod", environ=environ)
    assert (code, recorder.calls, fake_render.received) == (1, [], [])
    assert err == (
        "conduit-deploy: error: `cluster prod` cannot start; CI variables invalid: "
        f"K8S_CLUSTER_NAME '{CLUSTER}' is the dev cluster, not prod's: give the variable one "
        "value per environment scope (dev, prod) "
        "(set them in Settings > CI/CD > Variables, or export them)\n"
    )


def test_a_cluster_named_for_no_environment_needs_its_name_confirmed(run_cluster, recorder):
    environ = ci_environ(K8S_CLUSTER_NAME="conduit.k8s.local")
    code, _, err = run_cluster("dev", environ=environ)
    assert (code, recorder.calls) == (1, [])
    assert "does not start with 'dev.'" in err
    assert "K8S_CLUSTER_NAME_CONFIRMED=conduit.k8s.local in the dev scope" in err
    wrong = {**environ, "K8S_CLUSTER_NAME_CONFIRMED": "other.k8s.local"}
    assert run_cluster("dev", environ=wrong)[0] == 1
    confirmed = {**environ, "K8S_CLUSTER_NAME_CONFIRMED": "conduit.k8s.local"}
    assert run_cluster("dev", environ=confirmed)[0] == 0
    assert recorder.commands[0][4] == "conduit.k8s.local"


def test_missing_variables_fail_before_rendering(run_cluster, recorder, fake_render):
    code, _, err = run_cluster(
        "dev", environ=ci_environ(KOPS_STATE_STORE=None, GCP_CREDENTIAL_FILE=None)
    )
    assert (code, recorder.calls, fake_render.received) == (1, [], [])
    assert (
        "not set: KOPS_STATE_STORE, GCP_PROJECT (or GCP_CREDENTIAL_FILE), "
        "GCP_WORKLOAD_IDENTITY_PROVIDER and GCP_SERVICE_ACCOUNT (or the key, GCP_CREDENTIAL_FILE)"
        in err
    )


def test_summary_of_unparseable_output_is_its_last_line():
    result = Result((), 1, "", "W1 warning\nError: cluster not found\n")
    assert summarise_validation(result) == "Error: cluster not found"
    assert summarise_validation(Result((), 1)) == "exit code 1"


def test_outside_ci_any_environment_is_allowed(run_cluster, recorder, kops):
    environ = {
        **{k: v for k, v in ci_environ().items() if not k.startswith("CI_")},
        "K8S_CLUSTER_NAME": "prod.conduit.k8s.local",
    }

    def respond(args):
        if args[0] == "git":
            return Result(args, 0, "abc1234\n") if "--short" in args else Result(args, 128)
        return kops.respond(args)

    recorder.respond = respond
    code, _, _ = run_cluster("prod", environ=environ)
    assert code == 0
    assert os.path.basename(recorder.commands[-1][0]) == "kops"
