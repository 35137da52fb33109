"""deploy: order of stages, waits, monitoring only with its CRDs, the address, the
dotenv report, the smoke test, and rollback when the rollout or the smoke test fails."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from conduit_deploy.cli import Context, main
from conduit_deploy.errors import SmokeFailed
from conduit_deploy.runner import Result

from .support import ci_environ, tag_environ

CLUSTER = "dev.conduit.k8s.local"
ADDRESS = "203.0.113.7"
URL = f"http://{ADDRESS}/flask/"


@dataclass
class Cluster:
    """Scripted kubectl answers for one deploy."""

    crd: bool = True
    addresses: list[str] = field(default_factory=lambda: ["", ADDRESS])
    app_rollout_ok: bool = True
    undo_ok: bool = True
    undo_settles: bool = True
    undone: bool = False

    def respond(self, args):
        if args[:3] == ("kubectl", "get", "crd"):
            found = "customresourcedefinition.apiextensions.k8s.io/" + args[3]
            return Result(args, 0, found + "\n" if self.crd else "")
        if args[:3] == ("kubectl", "get", "ingress"):
            return Result(args, 0, self.addresses.pop(0) if self.addresses else ADDRESS)
        if args[:4] == ("kubectl", "rollout", "status", "deployment/conduit"):
            settled = self.undo_settles if self.undone else self.app_rollout_ok
            if not settled:
                return Result(
                    args, 1, "", 'error: deployment "conduit" exceeded its progress deadline'
                )
        if args[:3] == ("kubectl", "rollout", "undo"):
            self.undone = self.undo_ok
            if not self.undo_ok:
                return Result(
                    args, 1, "", 'error: no rollout history found for deployment "conduit"'
                )
        return None


@dataclass
class Smoke:
    fail_with: str | None = None
    urls: list = field(default_factory=list)

    def __call__(self, url, options):
        self.urls.append(url)
        if self.fail_with:
            raise SmokeFailed(self.fail_with)


@pytest.fixture
def cluster():
    return Cluster()


@pytest.fixture
def smoke():
    return Smoke()


@pytest.fixture
def run_deploy(recorder, fake_render, clock, capsys, tmp_path, cluster, smoke):
    recorder.respond = cluster.respond

    def run(*argv, environ=None):
        ctx = Context(
            environ=environ or ci_environ(),
            runner_factory=recorder.runner,
            render=fake_render,
            smoke=smoke,
            clock=clock,
        )
        code = main(
            [
                "deploy",
                *argv,
                "--out",
                str(tmp_path / "out"),
                "--env-file",
                str(tmp_path / "deploy.env"),
            ],
            ctx,
        )
        out, err = capsys.readouterr()
        return code, out, err

    return run


def stage(tmp_path, name):
    index = ("namespace", "secrets", "database", "app", "ingress").index(name) + 1
    return str(tmp_path / "out" / f"{index:02d}-{name}.yaml")


def test_everything_in_order(run_deploy, recorder, tmp_path, smoke):
    code, _, err = run_deploy("dev")
    assert code == 0
    ingress = "{.status.loadBalancer.ingress[0].ip}{.status.loadBalancer.ingress[0].hostname}"
    assert recorder.commands == [
        ("kops", "export", "kubecfg", "--name", CLUSTER, "--admin=2h"),
        (
            "kubectl",
            "apply",
            "--filename",
            "https://example.invalid/ingress-nginx/controller-v1.15.1/deploy.yaml",
        ),
        (
            "kubectl",
            "rollout",
            "status",
            "deployment/ingress-nginx-controller",
            "--namespace",
            "ingress-nginx",
            "--timeout=300s",
        ),
        (
            "kubectl",
            "apply",
            "--server-side",
            "--filename",
            "https://example.invalid/cnpg-1.30.0.yaml",
        ),
        ("kubectl", "apply", "--filename", "https://example.invalid/barman-cloud/manifest.yaml"),
        (
            "kubectl",
            "rollout",
            "status",
            "deployment/cnpg-controller-manager",
            "--namespace",
            "cnpg-system",
            "--timeout=300s",
        ),
        (
            "kubectl",
            "rollout",
            "status",
            "deployment/barman-cloud",
            "--namespace",
            "cnpg-system",
            "--timeout=300s",
        ),
        ("kubectl", "apply", "--filename", stage(tmp_path, "namespace")),
        ("kubectl", "apply", "--filename", stage(tmp_path, "secrets")),
        ("kubectl", "apply", "--filename", stage(tmp_path, "database")),
        (
            "kubectl",
            "wait",
            "--for=condition=Ready",
            "cluster.postgresql.cnpg.io/conduit-db",
            "--namespace",
            "conduit",
            "--timeout=900s",
        ),
        ("kubectl", "apply", "--filename", stage(tmp_path, "app")),
        (
            "kubectl",
            "rollout",
            "status",
            "deployment/conduit",
            "--namespace",
            "conduit",
            "--timeout=300s",
        ),
        ("kubectl", "apply", "--filename", stage(tmp_path, "ingress")),
        (
            "kubectl",
            "get",
            "crd",
            "servicemonitors.monitoring.coreos.com",
            "--ignore-not-found",
            "--output",
            "name",
        ),
        ("kubectl", "apply", "--filename", str(tmp_path / "out" / "monitoring.yaml")),
        (
            "kubectl",
            "get",
            "ingress",
            "conduit",
            "--namespace",
            "conduit",
            f"--output=jsonpath={ingress}",
        ),
        (
            "kubectl",
            "get",
            "ingress",
            "conduit",
            "--namespace",
            "conduit",
            f"--output=jsonpath={ingress}",
        ),
    ]
    assert smoke.urls == [f"http://{ADDRESS}/flask"]
    assert (tmp_path / "deploy.env").read_text() == f"DYNAMIC_ENVIRONMENT_URL={URL}\n"
    assert f"==> deploy: dev is served at {URL}" in err
    assert "ingress conduit: attempt 1 (0s): no address yet" in err
    assert f"ingress conduit: attempt 2 (10s): address {ADDRESS}" in err


def test_monitoring_is_skipped_without_the_prometheus_operator(
    run_deploy, recorder, cluster, tmp_path
):
    cluster.crd = False
    code, _, err = run_deploy("dev")
    assert code == 0
    assert (
        "kubectl",
        "apply",
        "--filename",
        str(tmp_path / "out" / "monitoring.yaml"),
    ) not in recorder.commands
    assert "monitoring skipped: the cluster has no servicemonitors.monitoring.coreos.com" in err


def test_a_failed_app_rollout_is_rolled_back_and_fails(
    run_deploy, recorder, cluster, smoke, tmp_path
):
    cluster.app_rollout_ok = False
    code, _, err = run_deploy("dev")
    assert code == 1
    after_app = recorder.commands[
        recorder.commands.index(("kubectl", "apply", "--filename", stage(tmp_path, "app"))) + 1 :
    ]
    assert after_app == [
        (
            "kubectl",
            "rollout",
            "status",
            "deployment/conduit",
            "--namespace",
            "conduit",
            "--timeout=300s",
        ),
        ("kubectl", "rollout", "undo", "deployment/conduit", "--namespace", "conduit"),
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
    assert smoke.urls == []
    last = err.strip().splitlines()[-1]
    assert last.startswith(
        "conduit-deploy: error: the rollout of docker.io/team/conduit:01234567 did not finish"
    )
    assert "exceeded its progress deadline" in last
    assert last.endswith("; deployment/conduit rolled back")


def test_a_rollback_that_does_not_settle_says_so(run_deploy, cluster):
    cluster.app_rollout_ok = False
    cluster.undo_settles = False
    code, _, err = run_deploy("dev")
    assert code == 1
    assert err.strip().endswith("deployment/conduit rollback started but did not finish in time")


def test_a_failed_smoke_test_rolls_back_and_fails(run_deploy, recorder, smoke):
    smoke.fail_with = "smoke test failed at 'create an article': POST /api/articles -> 500"
    code, _, err = run_deploy("dev")
    assert code == 1
    assert recorder.commands[-2:] == [
        ("kubectl", "rollout", "undo", "deployment/conduit", "--namespace", "conduit"),
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
    assert err.strip().splitlines()[-1] == (
        "conduit-deploy: error: smoke test failed at 'create an article': "
        "POST /api/articles -> 500; deployment/conduit rolled back"
    )


def test_the_environment_url_is_kept_even_when_the_smoke_test_fails(run_deploy, smoke, tmp_path):
    smoke.fail_with = "boom"
    run_deploy("dev")
    assert (tmp_path / "deploy.env").read_text() == f"DYNAMIC_ENVIRONMENT_URL={URL}\n"


def test_the_first_release_cannot_be_rolled_back(run_deploy, cluster):
    cluster.app_rollout_ok = False
    cluster.undo_ok = False
    code, _, err = run_deploy("dev")
    assert code == 1
    assert err.strip().endswith(
        'rollback impossible: error: no rollout history found for deployment "conduit"'
    )


def test_no_ingress_address_in_time(run_deploy, cluster, smoke):
    cluster.addresses = [""] * 1000
    code, _, err = run_deploy("dev", "--address-timeout", "60")
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "conduit-deploy: error: ingress conduit: gave up after 60s and 7 attempts (timeout 60s); "
        "last: no address yet"
    )
    assert smoke.urls == []


def test_timeouts_are_passed_to_kubectl(run_deploy, recorder):
    run_deploy("dev", "--rollout-timeout", "120")
    waits = [c for c in recorder.commands if c[1:3] == ("rollout", "status")]
    assert {c[-1] for c in waits} == {"--timeout=120s"}


def test_prod_from_a_release_tag(run_deploy, fake_render, smoke):
    code, _, _ = run_deploy("prod", environ=tag_environ("v1.2.3"))
    assert code == 0
    assert fake_render.received[0].image == "docker.io/team/conduit:v1.2.3"
    assert fake_render.received[0].environment == "prod"


@pytest.mark.parametrize(
    ("environ", "allowed"),
    [
        (tag_environ("nightly"), "no environment"),
        (ci_environ(CI_PIPELINE_SOURCE="schedule"), "no environment"),
        (ci_environ(), "dev"),
    ],
)
def test_prod_is_refused_outside_release_pipelines(run_deploy, recorder, environ, allowed):
    code, _, err = run_deploy("prod", environ=environ)
    assert (code, recorder.calls) == (1, [])
    assert f"may deploy to {allowed}, not prod" in err


def test_dry_run_prints_every_step(run_deploy, recorder, smoke, tmp_path):
    code, _, _ = run_deploy("dev", "--dry-run")
    assert code == 0
    assert (recorder.calls, smoke.urls) == ([], [])
    assert not (tmp_path / "deploy.env").exists()
    plan = [line for line in recorder.planned if not line.startswith("export ")]
    assert plan[0] == f"kops export kubecfg --name {CLUSTER} --admin=2h"
    assert plan[-7:] == [
        "# only if servicemonitors.monitoring.coreos.com exists (prometheus-operator):",
        "kubectl get crd servicemonitors.monitoring.coreos.com --ignore-not-found --output name",
        f"kubectl apply --filename {tmp_path / 'out' / 'monitoring.yaml'}",
        "# repeated every 10s until it prints an address, for at most 600s:",
        "kubectl get ingress conduit --namespace conduit "
        "'--output=jsonpath={.status.loadBalancer.ingress[0].ip}{.status.loadBalancer.ingress[0].hostname}'",
        f"# write {tmp_path / 'deploy.env'}: DYNAMIC_ENVIRONMENT_URL=http://<ingress-address>/flask/",
        "# conduit-deploy smoke http://<ingress-address>/flask",
    ]


def test_an_environment_with_a_managed_database_has_no_database_stage(
    run_deploy, recorder, fake_render, tmp_path
):
    fake_render.managed_database = True
    code, _, err = run_deploy("dev")
    assert code == 0
    assert ("kubectl", "apply", "--filename", stage(tmp_path, "database")) not in recorder.commands
    # No database of its own: no operator to install, no Cluster to wait for.
    assert not [c for c in recorder.commands if any("cnpg" in part for part in c)]
    assert f"database: nothing to apply ({stage(tmp_path, 'database')} has no objects)" in err
