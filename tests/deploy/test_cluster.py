"""cluster: kops replace/update, private credentials, bounded validation, rolling update."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from conduit_deploy.cli import Context, main
from conduit_deploy.cluster import summarise_validation
from conduit_deploy.runner import Result

from .support import GCP_KEY, ci_environ, tag_environ

CLUSTER = "dev.conduit.k8s.local"


@pytest.fixture
def run_cluster(recorder, fake_render, clock, capsys, tmp_path):
    def run(*argv, environ=None):
        ctx = Context(
            environ=environ or ci_environ(),
            runner_factory=recorder.runner,
            render=fake_render,
            clock=clock,
        )
        code = main(["cluster", *argv, "--out", str(tmp_path / "out")], ctx)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_commands_in_order(run_cluster, recorder, tmp_path):
    code, _, _ = run_cluster("dev")
    assert code == 0
    assert recorder.commands == [
        ("kops", "replace", "--filename", str(tmp_path / "out" / "kops.yaml"), "--force"),
        ("kops", "update", "cluster", "--name", CLUSTER, "--yes"),
        ("kops", "export", "kubecfg", "--name", CLUSTER, "--admin=2h"),
        ("kops", "validate", "cluster", "--name", CLUSTER, "--output", "json"),
        ("kops", "rolling-update", "cluster", "--name", CLUSTER, "--yes"),
    ]


def test_render_receives_the_values_of_this_build(run_cluster, fake_render):
    run_cluster("dev")
    values = fake_render.received[0]
    assert (values.environment, values.image, values.version) == (
        "dev",
        "docker.io/team/conduit:01234567",
        "01234567",
    )
    assert (values.cluster_name, values.kops_state_store, values.gcp_project) == (
        CLUSTER,
        "gs://conduit-kops-state",
        "conduit-dev-123",
    )


def test_kops_gets_state_store_flags_and_a_private_key_file(run_cluster, recorder):
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
        return None

    recorder.respond = respond
    code, _, _ = run_cluster("dev", environ=ci_environ(KOPS_FEATURE_FLAGS="Karpenter"))
    assert code == 0
    assert seen["content"] == GCP_KEY
    assert (seen["mode"], seen["folder_mode"]) == (0o600, 0o700)
    assert seen["exported"]["KOPS_STATE_STORE"] == "gs://conduit-kops-state"
    assert seen["exported"]["KOPS_FEATURE_FLAGS"] == "Karpenter"
    assert seen["exported"]["KUBECONFIG"].startswith(str(seen["key"].parent))
    assert not seen["key"].exists()  # removed when the command ends


def test_validation_is_polled_with_a_line_per_attempt(run_cluster, recorder, clock):
    answers = iter(
        [
            Result((), 1, "", "Error: unexpected error during validation: dial tcp: i/o timeout"),
            Result(
                (),
                2,
                json.dumps(
                    {
                        "failures": [
                            {
                                "type": "Machine",
                                "name": "nodes-b-x1",
                                "message": "machine has not yet joined",
                            },
                            {"type": "Pod", "name": "kube-system/coredns", "message": "not ready"},
                        ]
                    }
                ),
            ),
            Result((), 0, json.dumps({"failures": []})),
        ]
    )

    recorder.respond = lambda args: next(answers) if args[1] == "validate" else None
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
    assert recorder.commands[-1][1] == "rolling-update"  # only after validation passed


def test_validation_timeout_is_a_clear_error(run_cluster, recorder, clock):
    recorder.respond = lambda args: (
        Result(args, 1, "", "Validation Failed") if args[1] == "validate" else None
    )
    code, _, err = run_cluster("dev", "--validate-timeout", "100", "--validate-interval", "30")
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        f"conduit-deploy: error: validate {CLUSTER}: gave up after 90s and 4 attempts "
        "(timeout 100s); last: Validation Failed"
    )
    assert "rolling-update" not in [c[1] for c in recorder.commands]
    assert clock.sleeps == [30, 30, 30]


def test_no_rolling_update_flag(run_cluster, recorder):
    run_cluster("dev", "--no-rolling-update")
    assert "rolling-update" not in [c[1] for c in recorder.commands]


def test_a_failed_kops_command_stops_the_job(run_cluster, recorder):
    recorder.respond = lambda args: (
        Result(args, 1, "", "error reading cluster: permission denied")
        if args[1] == "update"
        else None
    )
    code, _, err = run_cluster("dev")
    assert code == 1
    assert [c[1] for c in recorder.commands] == ["replace", "update"]
    assert "failed with exit code 1: error reading cluster: permission denied" in err


def test_dry_run_prints_the_plan(run_cluster, recorder, tmp_path):
    code, _, _ = run_cluster("dev", "--dry-run")
    assert code == 0
    assert recorder.calls == []
    plan = recorder.planned
    assert plan[0].startswith("export GOOGLE_APPLICATION_CREDENTIALS=")
    assert plan[1] == "export KOPS_STATE_STORE=gs://conduit-kops-state"
    assert plan[3:] == [
        f"kops replace --filename {tmp_path / 'out' / 'kops.yaml'} --force",
        f"kops update cluster --name {CLUSTER} --yes",
        f"kops export kubecfg --name {CLUSTER} --admin=2h",
        "# repeated every 30s until it passes, for at most 1500s:",
        f"kops validate cluster --name {CLUSTER} --output json",
        f"kops rolling-update cluster --name {CLUSTER} --yes",
    ]


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
    code, _, _ = run_cluster(
        "prod", environ=tag_environ("v1.2.3", K8S_CLUSTER_NAME="prod.k8s.local")
    )
    assert code == 0
    assert recorder.commands[1] == (
        "kops",
        "update",
        "cluster",
        "--name",
        "prod.k8s.local",
        "--yes",
    )


def test_missing_variables_fail_before_rendering(run_cluster, recorder, fake_render):
    code, _, err = run_cluster(
        "dev", environ=ci_environ(KOPS_STATE_STORE=None, GCP_CREDENTIAL_FILE=None)
    )
    assert (code, recorder.calls, fake_render.received) == (1, [], [])
    assert (
        "not set: KOPS_STATE_STORE, GCP_CREDENTIAL_FILE, GCP_PROJECT (or GCP_CREDENTIAL_FILE)"
        in err
    )


def test_summary_of_unparseable_output_is_its_last_line():
    result = Result((), 1, "", "W1 warning\nError: cluster not found\n")
    assert summarise_validation(result) == "Error: cluster not found"
    assert summarise_validation(Result((), 1)) == "exit code 1"


def test_outside_ci_any_environment_is_allowed(run_cluster, recorder, monkeypatch):
    environ = {k: v for k, v in ci_environ().items() if not k.startswith("CI_")}

    def respond(args):
        if args[0] == "git":
            return Result(args, 0, "abc1234\n") if "--short" in args else Result(args, 128)
        return None

    recorder.respond = respond
    code, _, _ = run_cluster("prod", environ=environ)
    assert code == 0
    assert os.path.basename(recorder.commands[-1][0]) == "kops"
