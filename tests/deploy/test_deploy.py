"""deploy: order of stages, waits, the monitoring stack (CRDs before the objects that use
them, installed once), the address, the dotenv report, the smoke test, and rollback when
the rollout or the smoke test fails."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from conduit_deploy.errors import SmokeFailed
from conduit_deploy.runner import Result

from .conftest import MONITORING_VALUES_JSON
from .support import RENDERED_SECRETS, ci_environ, tag_environ

CLUSTER = "dev.conduit.k8s.local"
ADDRESS = "203.0.113.7"
URL = f"http://{ADDRESS}/flask/"


# What `helm show crds` prints: the chart's CRD files, each after a `---` line.
STACK_CRDS = (
    "---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
    "metadata:\n  name: podmonitors.monitoring.coreos.com\n"
)


def stack_release(chart: str = "kube-prometheus-stack-88.5.0", status: str = "deployed") -> dict:
    """One release as `helm list --output json` prints it (Helm v4.2.4, pkg/cmd/list.go,
    releaseElement: the revision is a string)."""
    return {
        "name": "kube-prometheus-stack",
        "namespace": "monitoring",
        "revision": "1",
        "updated": "2026-12-01 03:12:45.123456789 +0000 UTC",
        "status": status,
        "chart": chart,
        "app_version": "v0.93.1",
    }


@dataclass
class Cluster:
    """Scripted kubectl and helm answers for one deploy."""

    # The monitoring stack's Helm release (None: not installed) and its values.
    stack: dict | None = None
    stack_values: str = MONITORING_VALUES_JSON
    addresses: list[str] = field(default_factory=lambda: ["", ADDRESS])
    app_rollout_ok: bool = True
    undo_ok: bool = True
    undo_settles: bool = True
    undone: bool = False
    # The app's revision as each query finds it: before this deploy's apply, then at
    # a rollback. A retried deploy of the same release finds the same revision twice.
    revisions: list[str] = field(default_factory=lambda: ["3", "4"])
    workloads: list[dict] = field(default_factory=list)  # before this deploy
    secrets: list[str] = field(default_factory=list)  # part-of=conduit, after it

    def respond(self, args):
        if args[:4] == ("kubectl", "get", "deployments,statefulsets", "--namespace"):
            return Result(args, 0, json.dumps({"items": self.workloads}))
        if args[:3] == ("kubectl", "get", "secrets"):
            items = [{"metadata": {"name": name}} for name in self.secrets]
            return Result(args, 0, json.dumps({"items": items}))
        if args[:3] == ("kubectl", "get", "deployment"):
            return Result(args, 0, self.revisions.pop(0) if self.revisions else "4")
        if args[:2] == ("helm", "list"):
            return Result(args, 0, json.dumps([self.stack] if self.stack else []))
        if args[:3] == ("helm", "get", "values"):
            if self.stack is None:
                return Result(args, 1, "", "Error: release: not found")
            return Result(args, 0, self.stack_values)
        if args[:3] == ("helm", "show", "crds"):
            return Result(args, 0, STACK_CRDS)
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


def apply(source, *, take_over: bool = False) -> tuple[str, ...]:
    return (
        "kubectl",
        "apply",
        "--server-side",
        "--field-manager=conduit-deploy",
        *(["--force-conflicts"] if take_over else []),
        "--filename",
        str(source),
    )


CHART = (
    "kube-prometheus-stack",
    "--repo",
    "https://prometheus-community.github.io/helm-charts",
    "--version",
    "88.5.0",
)
HELM_LIST = (
    "helm", "list", "--namespace", "monitoring", "--filter", "^kube-prometheus-stack$",
    "--output", "json",
)  # fmt: skip
HELM_VALUES = (
    "helm", "get", "values", "kube-prometheus-stack", "--namespace", "monitoring",
    "--output", "json",
)  # fmt: skip
HELM_CRDS = ("helm", "show", "crds", *CHART)
APPLY_CRDS = apply("-", take_over=True)


def helm_upgrade(tmp_path) -> tuple[str, ...]:
    return (
        "helm", "upgrade", "kube-prometheus-stack", *CHART,
        "--install", "--namespace", "monitoring", "--create-namespace", "--skip-crds",
        "--values", str(tmp_path / "out" / "kube-prometheus-stack-values.yaml"),
        "--wait", "--timeout=600s",
    )  # fmt: skip


REVISION = (
    "kubectl",
    "get",
    "deployment",
    "conduit",
    "--namespace",
    "conduit",
    "--ignore-not-found",
    "--output=jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
)
WORKLOADS = (
    "kubectl", "get", "deployments,statefulsets", "--namespace", "conduit", "--output=json",
)  # fmt: skip
SECRETS = (
    "kubectl", "get", "secrets", "--namespace", "conduit",
    "--selector=app.kubernetes.io/part-of=conduit", "--output=json",
)  # fmt: skip
UNDO = (
    "kubectl",
    "rollout",
    "undo",
    "deployment/conduit",
    "--namespace",
    "conduit",
    "--to-revision=3",
)


@pytest.fixture
def cluster():
    return Cluster()


@pytest.fixture
def smoke():
    return Smoke()


@pytest.fixture
def run_deploy(run_command, recorder, fake_render, tmp_path, cluster, smoke, preflight):
    recorder.respond = cluster.respond

    def run(*argv, environ=None):
        return run_command(
            "deploy",
            *argv,
            "--env-file",
            str(tmp_path / "deploy.env"),
            environ=environ,
            render=fake_render,
            smoke=smoke,
            preflight=preflight,
        )

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
        apply("https://example.invalid/ingress-nginx/controller-v1.15.1/deploy.yaml"),
        (
            "kubectl",
            "rollout",
            "status",
            "deployment/ingress-nginx-controller",
            "--namespace",
            "ingress-nginx",
            "--timeout=300s",
        ),
        apply("https://example.invalid/cnpg-1.30.0.yaml"),
        apply("https://example.invalid/barman-cloud/manifest.yaml"),
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
        HELM_LIST,
        HELM_VALUES,
        HELM_CRDS,
        APPLY_CRDS,
        helm_upgrade(tmp_path),
        WORKLOADS,
        apply(stage(tmp_path, "namespace")),
        apply(stage(tmp_path, "secrets")),
        apply(stage(tmp_path, "database")),
        (
            "kubectl",
            "wait",
            "--for=condition=Ready",
            "cluster.postgresql.cnpg.io/conduit-db",
            "--namespace",
            "conduit",
            "--timeout=900s",
        ),
        REVISION,
        apply(stage(tmp_path, "app")),
        (
            "kubectl",
            "rollout",
            "status",
            "deployment/conduit",
            "--namespace",
            "conduit",
            "--timeout=300s",
        ),
        apply(stage(tmp_path, "ingress")),
        apply(tmp_path / "out" / "monitoring.yaml"),
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
        SECRETS,
    ]
    assert smoke.urls == [f"http://{ADDRESS}/flask"]
    assert (tmp_path / "deploy.env").read_text() == f"DYNAMIC_ENVIRONMENT_URL={URL}\n"
    assert f"==> deploy: dev is served at {URL}" in err
    assert "ingress conduit: attempt 1 (0s): no address yet" in err
    assert f"ingress conduit: attempt 2 (10s): address {ADDRESS}" in err


def test_the_stack_crds_come_from_the_pinned_chart_and_precede_every_monitor(
    run_deploy, recorder, tmp_path
):
    code, _, err = run_deploy("dev")
    assert code == 0
    commands = recorder.commands
    # The CRDs helm printed are what kubectl applies (from stdin), before the chart's
    # operator starts and long before the ServiceMonitor, PodMonitor and PrometheusRule.
    (crds_apply,) = [call for call in recorder.calls if call.args == APPLY_CRDS]
    assert crds_apply.stdin == STACK_CRDS
    assert (
        commands.index(HELM_CRDS)
        < commands.index(APPLY_CRDS)
        < commands.index(helm_upgrade(tmp_path))
        < commands.index(apply(tmp_path / "out" / "monitoring.yaml"))
    )
    assert "==> deploy: monitoring stack: install kube-prometheus-stack-88.5.0" in err


def test_a_second_deploy_leaves_a_current_stack_alone(run_deploy, recorder, cluster, tmp_path):
    cluster.stack = stack_release()
    code, _, err = run_deploy("dev")
    assert code == 0
    helm = [c for c in recorder.commands if c[0] == "helm"]
    assert helm == [HELM_LIST, HELM_VALUES]  # read, nothing changed
    assert APPLY_CRDS not in recorder.commands
    assert apply(tmp_path / "out" / "monitoring.yaml") in recorder.commands
    assert (
        "monitoring stack: kube-prometheus-stack-88.5.0 is deployed with the committed values: "
        "nothing to do" in err
    )


@pytest.mark.parametrize(
    ("release", "values"),
    [
        (stack_release(chart="kube-prometheus-stack-87.1.0"), MONITORING_VALUES_JSON),
        (stack_release(status="failed"), MONITORING_VALUES_JSON),
        # Installed by hand with another values file (or edited since): the committed wins.
        (stack_release(), '{"prometheus":{"prometheusSpec":{"retention":"30d"}}}'),
    ],
    ids=["other chart version", "failed release", "other values"],
)
def test_a_stack_that_differs_is_upgraded_crds_first(
    run_deploy, recorder, cluster, tmp_path, release, values
):
    cluster.stack, cluster.stack_values = release, values
    code, _, err = run_deploy("dev")
    assert code == 0
    helm = [c for c in recorder.commands if c[0] == "helm" or c == APPLY_CRDS]
    assert helm == [HELM_LIST, HELM_VALUES, HELM_CRDS, APPLY_CRDS, helm_upgrade(tmp_path)]
    assert "==> deploy: monitoring stack: upgrade kube-prometheus-stack-88.5.0" in err


@pytest.mark.parametrize(
    ("status", "undo"),
    [
        ("pending-install", "helm uninstall kube-prometheus-stack --namespace monitoring"),
        ("pending-upgrade", "helm rollback kube-prometheus-stack --namespace monitoring"),
    ],
)
def test_an_interrupted_helm_run_is_reported_with_its_remedy(
    run_deploy, recorder, cluster, tmp_path, status, undo
):
    cluster.stack = stack_release(status=status)
    code, _, err = run_deploy("dev")
    assert code == 1
    assert f"kube-prometheus-stack in monitoring is {status}: a helm run was interrupted" in err
    assert f"run `{undo}`, then deploy again" in err
    assert HELM_CRDS not in recorder.commands
    assert apply(stage(tmp_path, "app")) not in recorder.commands


def test_an_empty_crd_list_stops_before_the_chart(run_deploy, recorder, cluster, tmp_path):
    original = cluster.respond

    def respond(args):
        if args[:3] == ("helm", "show", "crds"):
            return Result(args, 0, "")
        return original(args)

    recorder.respond = respond
    code, _, err = run_deploy("dev")
    assert code == 1
    assert f"`{' '.join(HELM_CRDS)}` printed no CRDs" in err
    assert helm_upgrade(tmp_path) not in recorder.commands
    assert APPLY_CRDS not in recorder.commands


def test_unreadable_helm_output_is_a_one_line_error(run_deploy, recorder, cluster):
    original = cluster.respond
    recorder.respond = lambda args: (
        Result(args, 0, "NAME  NAMESPACE\n") if args[:2] == ("helm", "list") else original(args)
    )
    code, _, err = run_deploy("dev")
    assert code == 1
    assert "helm list printed no JSON: 'NAME  NAMESPACE'" in err
    assert "Traceback" not in err


def test_without_k8s_monitoring_no_stack_is_installed(run_deploy, recorder, fake_render):
    fake_render.monitoring = False
    code, _, _ = run_deploy("dev")
    assert code == 0
    assert [c for c in recorder.commands if c[0] == "helm"] == []


def test_a_failed_app_rollout_is_rolled_back_and_fails(
    run_deploy, recorder, cluster, smoke, tmp_path
):
    cluster.app_rollout_ok = False
    code, _, err = run_deploy("dev")
    assert code == 1
    after_app = recorder.commands[recorder.commands.index(apply(stage(tmp_path, "app"))) + 1 :]
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
        REVISION,
        UNDO,
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
    assert last.endswith("; deployment/conduit rolled back to revision 3")


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
    assert recorder.commands[-3:] == [
        REVISION,
        UNDO,
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
        "POST /api/articles -> 500; deployment/conduit rolled back to revision 3"
    )


def test_the_environment_url_is_kept_even_when_the_smoke_test_fails(run_deploy, smoke, tmp_path):
    smoke.fail_with = "boom"
    run_deploy("dev")
    assert (tmp_path / "deploy.env").read_text() == f"DYNAMIC_ENVIRONMENT_URL={URL}\n"


def test_the_first_release_cannot_be_rolled_back(run_deploy, recorder, cluster):
    cluster.app_rollout_ok = False
    cluster.revisions = ["", "1"]
    code, _, err = run_deploy("dev")
    assert code == 1
    assert err.strip().endswith(
        "rollback impossible: deployment/conduit is new, no release ran before"
    )
    assert not [c for c in recorder.commands if c[:3] == ("kubectl", "rollout", "undo")]


def test_an_undo_kubectl_refuses_is_reported(run_deploy, cluster):
    cluster.app_rollout_ok = False
    cluster.undo_ok = False
    code, _, err = run_deploy("dev")
    assert code == 1
    assert err.strip().endswith(
        'rollback impossible: error: no rollout history found for deployment "conduit"'
    )


def test_a_retried_deploy_of_the_same_release_does_not_roll_back_further(
    run_deploy, recorder, cluster, smoke
):
    # The apply changed nothing (same commit): the revision before and after is 3.
    # `rollout undo` without --to-revision would go back to the release before it.
    cluster.revisions = ["3", "3"]
    smoke.fail_with = "smoke test failed at 'service ready': not ready within 600s"
    code, _, err = run_deploy("dev")
    assert code == 1
    assert not [c for c in recorder.commands if c[:3] == ("kubectl", "rollout", "undo")]
    assert err.strip().endswith(
        "deployment/conduit still runs revision 3, the release from before this deploy: "
        "nothing to roll back"
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


def test_prod_from_a_release_tag(run_deploy, fake_render, smoke, cluster):
    # The first release: no stable one to judge a canary against (tests/deploy/test_canary.py).
    cluster.revisions = ["", "1"]
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
    assert plan[:2] == [
        "# conduit-deploy preflight dev",
        f"kops export kubecfg --name {CLUSTER} --admin=2h",
    ]
    chart = " ".join(CHART)
    values = tmp_path / "out" / "kube-prometheus-stack-values.yaml"
    start = plan.index("# the monitoring stack's release picks one path: install, upgrade or none")
    assert plan[start + 1 : start + 13] == [
        " ".join(HELM_LIST).replace("^kube-prometheus-stack$", "'^kube-prometheus-stack$'"),
        " ".join(HELM_VALUES),
        "# install, when there is no release of kube-prometheus-stack-88.5.0:",
        f"#   helm show crds {chart}",
        "#   kubectl apply --server-side --field-manager=conduit-deploy --force-conflicts "
        "--filename -  # stdin: the CRDs of kube-prometheus-stack-88.5.0 (helm show crds)",
        f"#   helm upgrade kube-prometheus-stack {chart} --install --namespace monitoring "
        f"--create-namespace --skip-crds --values {values} --wait --timeout=600s",
        "# upgrade, when the release runs another chart or values than "
        f"kube-prometheus-stack-88.5.0 with {values}:",
        f"#   helm show crds {chart}",
        "#   kubectl apply --server-side --field-manager=conduit-deploy --force-conflicts "
        "--filename -  # stdin: the CRDs of kube-prometheus-stack-88.5.0 (helm show crds)",
        f"#   helm upgrade kube-prometheus-stack {chart} --install --namespace monitoring "
        f"--create-namespace --skip-crds --values {values} --wait --timeout=600s",
        "# nothing, when it runs both:",
        # the app's stages follow
        " ".join(WORKLOADS),
    ]
    assert plan[-7:] == [
        "kubectl apply --server-side --field-manager=conduit-deploy "
        f"--filename {tmp_path / 'out' / 'monitoring.yaml'}",
        "# repeated every 10s until it prints an address, for at most 600s:",
        "kubectl get ingress conduit --namespace conduit "
        "'--output=jsonpath={.status.loadBalancer.ingress[0].ip}{.status.loadBalancer.ingress[0].hostname}'",
        f"# write {tmp_path / 'deploy.env'}: DYNAMIC_ENVIRONMENT_URL=http://<ingress-address>/flask/",
        "# conduit-deploy smoke http://<ingress-address>/flask",
        "# delete the generated Secrets used neither by this release nor the one before",
        " ".join(SECRETS),
    ]


def test_an_environment_with_a_managed_database_has_no_database_stage(
    run_deploy, recorder, fake_render, tmp_path
):
    fake_render.managed_database = True
    code, _, err = run_deploy("dev")
    assert code == 0
    assert apply(stage(tmp_path, "database")) not in recorder.commands
    # No database of its own: no operator to install, no Cluster to wait for.
    assert not [c for c in recorder.commands if any("cnpg" in part for part in c)]
    assert f"database: nothing to apply ({stage(tmp_path, 'database')} has no objects)" in err


def pod_using(*secrets: str) -> dict:
    return {
        "kind": "Deployment",
        "spec": {
            "template": {
                "spec": {
                    "imagePullSecrets": [{"name": s} for s in secrets if "registry" in s],
                    "containers": [
                        {"envFrom": [{"secretRef": {"name": s}} for s in secrets if "app" in s]}
                    ],
                }
            }
        },
    }


def test_old_generated_secrets_are_pruned_but_the_previous_releases_kept(
    run_deploy, recorder, cluster
):
    previous = ("conduit-app-pppppppppp", "registry-credentials-qqqqqqqqqq")
    database = {
        "kind": "StatefulSet",
        "spec": {"template": {"spec": {"containers": [{"env": [
            {"valueFrom": {"secretKeyRef": {"name": "postgres-credentials-rrrrrrrrrr"}}}
        ]}]}}},
    }  # fmt: skip
    cluster.workloads = [pod_using(*previous), database]
    cluster.secrets = [
        *RENDERED_SECRETS,
        *previous,
        "postgres-credentials-rrrrrrrrrr",
        "conduit-app-oooooooooo",  # two releases ago
        "registry-credentials-ssssssssss",  # ditto
        "postgres-credentials-tttttttttt",  # replaced long ago
        "conduit-tls",  # not generated: never touched
    ]
    code, _, err = run_deploy("dev")
    assert code == 0
    assert recorder.commands[-1] == (
        "kubectl", "delete", "secret",
        "conduit-app-oooooooooo", "postgres-credentials-tttttttttt",
        "registry-credentials-ssssssssss",
        "--namespace", "conduit", "--ignore-not-found",
    )  # fmt: skip
    assert "pruning 3 old generated Secret(s)" in err


def test_nothing_is_pruned_when_the_deploy_fails(run_deploy, recorder, cluster, smoke):
    cluster.secrets = ["conduit-app-oooooooooo"]
    smoke.fail_with = "boom"
    code, _, _ = run_deploy("dev")
    assert code == 1
    assert SECRETS not in recorder.commands
    assert not [c for c in recorder.commands if c[:3] == ("kubectl", "delete", "secret")]


def test_a_first_deploy_prunes_nothing(run_deploy, recorder):
    code, _, _ = run_deploy("dev")
    assert code == 0
    assert not [c for c in recorder.commands if c[:3] == ("kubectl", "delete", "secret")]
