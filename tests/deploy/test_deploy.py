"""deploy: order of stages, waits, the monitoring stack (CRDs before the objects that use
them, installed once), the address, the dotenv report, the smoke test, and rollback when
the rollout or the smoke test fails."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conduit_deploy.errors import SmokeFailed
from conduit_deploy.runner import Result

from .conftest import EDGE_MANIFEST, MONITORING_VALUES_JSON
from .support import (
    IMAGE_DIGEST,
    RENDERED_SECRETS,
    ci_environ,
    plan_steps,
    release_environ,
    tag_environ,
)

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
    # The args of kops' cert-manager controller (its Deployment in kube-system).
    cert_manager_args: list[str] = field(
        default_factory=lambda: ["--v=2", "--cluster-resource-namespace=$(POD_NAMESPACE)"]
    )
    certificate_ready: bool = True

    def respond(self, args):
        if args[:4] == ("kubectl", "get", "deployment", "cert-manager"):
            return Result(args, 0, json.dumps(self.cert_manager_args))
        if args[:3] == ("kubectl", "patch", "deployment"):
            self.cert_manager_args.append(json.loads(args[-1].split("=", 1)[1])[0]["value"])
        waits_for_certificate = args[:3] == ("kubectl", "wait", "--for=condition=Ready") and (
            args[3].startswith("certificate")
        )
        if waits_for_certificate and not self.certificate_ready:
            return Result(args, 1, "", "error: timed out waiting for the condition")
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
        if args[:3] == ("kubectl", "get", "gateway"):
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
GATEWAY_ADDRESS = (
    "kubectl", "get", "gateway", "conduit", "--namespace", "conduit",
    "--output=jsonpath={.status.addresses[0].value}",
)  # fmt: skip
# ingress-nginx's leftovers and the old Ingress, deleted after a passed smoke test.
RETIRE = [
    ("kubectl", "delete", "validatingwebhookconfiguration", "ingress-nginx-admission",
     "--ignore-not-found", "--timeout=300s"),
    ("kubectl", "delete", "ingress", "conduit", "--namespace", "conduit",
     "--ignore-not-found", "--timeout=300s"),
    ("kubectl", "delete", "networkpolicy", "conduit-from-ingress", "--namespace", "conduit",
     "--ignore-not-found", "--timeout=300s"),
    ("kubectl", "delete", "namespace", "ingress-nginx", "--ignore-not-found", "--timeout=300s"),
    ("kubectl", "delete", "clusterrolebinding", "ingress-nginx", "--ignore-not-found",
     "--timeout=300s"),
    ("kubectl", "delete", "clusterrolebinding", "ingress-nginx-admission", "--ignore-not-found",
     "--timeout=300s"),
    ("kubectl", "delete", "clusterrole", "ingress-nginx", "--ignore-not-found",
     "--timeout=300s"),
    ("kubectl", "delete", "clusterrole", "ingress-nginx-admission", "--ignore-not-found",
     "--timeout=300s"),
    ("kubectl", "delete", "ingressclass", "nginx", "--ignore-not-found", "--timeout=300s"),
]  # fmt: skip
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
def run_deploy(run_command, recorder, fake_render, tmp_path, cluster, smoke, preflight, downloads):
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
    assert recorder.commands == [
        ("kops", "export", "kubecfg", "--name", CLUSTER, "--admin=2h"),
        apply(tmp_path / "out" / "envoy-gateway-install.yaml"),
        (
            "kubectl",
            "rollout",
            "status",
            "deployment/envoy-gateway",
            "--namespace",
            "envoy-gateway-system",
            "--timeout=300s",
        ),
        apply(Path("k8s/cluster/gatewayclass.yaml")),
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
        apply(stage(tmp_path, "app"), take_over=True),
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
        GATEWAY_ADDRESS,
        GATEWAY_ADDRESS,
        *RETIRE,
        SECRETS,
    ]
    assert smoke.urls == [f"http://{ADDRESS}/flask"]
    assert (tmp_path / "deploy.env").read_text() == f"DYNAMIC_ENVIRONMENT_URL={URL}\n"
    assert f"==> deploy: dev is served at {URL}" in err
    assert "gateway conduit: attempt 1 (0s): no address yet" in err
    assert f"gateway conduit: attempt 2 (10s): address {ADDRESS}" in err
    assert (tmp_path / "out" / "envoy-gateway-install.yaml").read_bytes() == EDGE_MANIFEST


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
    app_applied = recorder.commands.index(apply(stage(tmp_path, "app"), take_over=True))
    after_app = recorder.commands[app_applied + 1 :]
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


def test_no_gateway_address_in_time(run_deploy, cluster, smoke):
    cluster.addresses = [""] * 1000
    code, _, err = run_deploy("dev", "--address-timeout", "60")
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "conduit-deploy: error: gateway conduit: gave up after 60s and 7 attempts (timeout 60s); "
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
    code, _, _ = run_deploy("prod", environ=release_environ("v1.2.3"))
    assert code == 0
    assert fake_render.received[0].image == f"docker.io/team/conduit@{IMAGE_DIGEST}"
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
    plan = plan_steps(recorder.planned)
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
    assert plan[-17:] == [
        "kubectl apply --server-side --field-manager=conduit-deploy "
        f"--filename {tmp_path / 'out' / 'monitoring.yaml'}",
        "# repeated every 10s until it prints an address, for at most 600s:",
        "kubectl get gateway conduit --namespace conduit "
        "'--output=jsonpath={.status.addresses[0].value}'",
        f"# write {tmp_path / 'deploy.env'}: DYNAMIC_ENVIRONMENT_URL=http://<gateway-address>/flask/",
        "# conduit-deploy smoke http://<gateway-address>/flask",
        "# delete the retired ingress-nginx controller and the old Ingress",
        *[" ".join(command) for command in RETIRE],
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


# --- the edge: Envoy Gateway, prod's certificate, ingress-nginx's retirement -----------

HOST = "conduit.example.org"
CERT_MANAGER_ARGS = (
    "kubectl", "get", "deployment", "cert-manager", "--namespace", "kube-system",
    "--output=jsonpath={.spec.template.spec.containers[0].args}",
)  # fmt: skip
ENABLE_GATEWAY_API = (
    "kubectl", "patch", "deployment", "cert-manager", "--namespace", "kube-system",
    "--type=json",
    '--patch=[{"op": "add", "path": "/spec/template/spec/containers/0/args/-", '
    '"value": "--enable-gateway-api"}]',
)  # fmt: skip
CERTIFICATE_READY = (
    "kubectl", "wait", "--for=condition=Ready", "certificate.cert-manager.io/conduit-tls",
    "--namespace", "conduit", "--timeout=600s",
)  # fmt: skip


def test_prod_waits_for_its_certificate_and_is_served_over_https(
    run_deploy, cluster, recorder, fake_render, smoke, tmp_path
):
    cluster.revisions = ["", "1"]  # prod's first release: no canary (test_canary.py)
    fake_render.public_host = HOST
    code, _, err = run_deploy("prod", environ=release_environ("v1.2.3"))
    assert code == 0
    commands = recorder.commands
    # cert-manager learns Gateway API once, before the Certificate is applied...
    assert commands.index(ENABLE_GATEWAY_API) < commands.index(apply(stage(tmp_path, "ingress")))
    assert commands[commands.index(ENABLE_GATEWAY_API) - 1] == CERT_MANAGER_ARGS
    # ...and the smoke test waits for the certificate.
    assert commands.index(GATEWAY_ADDRESS) < commands.index(CERTIFICATE_READY)
    assert smoke.urls == [f"https://{HOST}/flask"]
    assert (
        tmp_path / "deploy.env"
    ).read_text() == f"DYNAMIC_ENVIRONMENT_URL=https://{HOST}/flask/\n"
    assert f"{HOST} must resolve to {ADDRESS}" in err


def test_cert_manager_already_on_gateway_api_is_left_alone(
    run_deploy, recorder, fake_render, cluster
):
    cluster.revisions = ["", "1"]  # prod's first release: no canary (test_canary.py)
    fake_render.public_host = HOST
    cluster.cert_manager_args.append("--enable-gateway-api")
    code, _, _ = run_deploy("prod", environ=release_environ("v1.2.3"))
    assert code == 0
    assert CERT_MANAGER_ARGS in recorder.commands
    assert not [c for c in recorder.commands if c[:2] == ("kubectl", "patch")]


def test_dev_leaves_cert_manager_alone_and_waits_for_no_certificate(run_deploy, recorder):
    code, _, _ = run_deploy("dev")
    assert code == 0
    assert CERT_MANAGER_ARGS not in recorder.commands
    assert CERTIFICATE_READY not in recorder.commands


def test_no_certificate_in_time_fails_before_the_smoke_test(
    run_deploy, recorder, fake_render, cluster, smoke
):
    cluster.revisions = ["", "1"]  # prod's first release: no canary (test_canary.py)
    fake_render.public_host = HOST
    cluster.certificate_ready = False
    code, _, err = run_deploy(
        "prod", "--certificate-timeout", "900", environ=release_environ("v1.2.3")
    )
    assert (*CERTIFICATE_READY[:-1], "--timeout=900s") in recorder.commands
    assert code == 1
    assert smoke.urls == []
    assert f"no certificate for {HOST}" in err
    assert f"does {HOST} resolve to the Gateway's address?" in err
    # The edge that could not be proven stays beside the old one.
    assert RETIRE[0] not in recorder.commands


def test_a_manifest_that_does_not_match_its_digest_stops_the_deploy(
    run_deploy, recorder, downloads, tmp_path
):
    downloads.payload = b"kind: Example  # a tampered or moved release asset\n"
    code, _, err = run_deploy("dev")
    assert code == 1
    assert "does not match its recorded SHA-256" in err
    assert downloads.urls == ["https://example.invalid/gateway/v1.9.0/install.yaml"]
    # Nothing was applied, and nothing half-written is left to apply by hand.
    assert not [c for c in recorder.commands if c[:2] == ("kubectl", "apply")]
    assert not (tmp_path / "out" / "envoy-gateway-install.yaml").exists()


def test_a_digest_the_operator_checked_overrides_the_recorded_one(
    run_deploy, recorder, downloads, tmp_path
):
    # A re-published asset whose new digest the operator verified from GitHub.
    downloads.payload = b"kind: Example  # the asset as GitHub serves it now\n"
    checked = hashlib.sha256(downloads.payload).hexdigest()
    code, _, err = run_deploy("dev", environ=ci_environ(ENVOY_GATEWAY_SHA256=checked))
    assert code == 0, err
    assert (tmp_path / "out" / "envoy-gateway-install.yaml").read_bytes() == downloads.payload
    # And it is a pin, not a bypass: another payload still stops the deploy.
    code, _, err = run_deploy("dev", environ=ci_environ(ENVOY_GATEWAY_SHA256="0" * 64))
    assert code == 1
    assert "SHA-256" in err


def test_ingress_nginx_stays_until_the_gateway_passed_the_smoke_test(run_deploy, recorder, smoke):
    smoke.fail_with = "smoke test failed at 'service ready': not ready within 600s"
    code, _, _ = run_deploy("dev")
    assert code == 1
    assert not [c for c in recorder.commands if c[:2] == ("kubectl", "delete")]


def test_retiring_ingress_nginx_twice_is_harmless(run_deploy, recorder):
    """A second deploy deletes nothing new: every delete ignores what is gone."""
    for _ in range(2):
        assert run_deploy("dev")[0] == 0
    deletes = [c for c in recorder.commands if c[:2] == ("kubectl", "delete")]
    assert deletes == RETIRE * 2
    assert all("--ignore-not-found" in c for c in deletes)
