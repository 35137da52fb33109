"""deploy prod as a canary (conduit_deploy.canary): the steps, their judgement by
Prometheus, promotion and every way of aborting, with the recording runner and the fake
clock. The analysis' queries themselves run on a real Prometheus in
tests/monitoring/test_canary_analysis.py."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from conduit_deploy.runner import Result

from .conftest import FakeRender
from .support import IMAGE_DIGEST, release_environ, tag_environ
from .test_deploy import Cluster, Smoke
from .test_pipeline import PIPELINE, GitLabLoader

NAMESPACE = "conduit"
STABLE_HASH = "5d8f7c9b4"
# What render makes of the release: pinned by the digest pack recorded.
IMAGE = f"docker.io/team/conduit@{IMAGE_DIGEST}"
LABELS = {"app.kubernetes.io/name": "conduit", "app.kubernetes.io/component": "api"}

# The app and ingress stages as render() writes them (k8s/base; the route as the
# Gateway API edge has it: one rule per public prefix, the stable Service weighted 100).
APP_STAGE = [
    {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "conduit-config-7h2m9k", "labels": LABELS},
        "data": {"CONDUIT_ENV": "production"},
    },
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "conduit", "labels": LABELS},
        "spec": {
            "selector": dict(LABELS),
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    },
    {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "conduit",
            "labels": {**LABELS, "app.kubernetes.io/version": "v1.2.3"},
        },
        "spec": {
            "selector": {"matchLabels": dict(LABELS)},
            "template": {
                "metadata": {"labels": {**LABELS, "app.kubernetes.io/version": "v1.2.3"}},
                "spec": {"containers": [{"name": "conduit", "image": IMAGE}]},
            },
        },
    },
]


def rule(name: str, prefix: str) -> dict:
    return {
        "name": name,
        "matches": [{"path": {"type": "PathPrefix", "value": f"/flask/{prefix}"}}],
        "filters": [
            {
                "type": "URLRewrite",
                "urlRewrite": {
                    "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": f"/{prefix}"}
                },
            }
        ],
        "backendRefs": [{"name": "conduit", "port": 80, "weight": 100}],
    }


INGRESS_STAGE = [
    {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "conduit"},
        "spec": {"gatewayClassName": "envoy-gateway", "listeners": []},
    },
    {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "conduit"},
        "spec": {
            "parentRefs": [{"name": "conduit", "sectionName": "http"}],
            "rules": [rule("api", "api"), rule("healthz", "healthz"), rule("readyz", "readyz")],
        },
    },
]


@dataclass
class CanaryRender(FakeRender):
    def __call__(self, values, out_dir, runner):
        rendered = super().__call__(values, out_dir, runner)
        stages = dict(rendered.stages)
        stages["app"].write_text(yaml.safe_dump_all(APP_STAGE))
        stages["ingress"].write_text(yaml.safe_dump_all(INGRESS_STAGE))
        return rendered


def vector(value: float | None) -> str:
    """An instant-query answer (Prometheus HTTP API, querying.md "Instant queries")."""
    result = [] if value is None else [{"metric": {}, "value": [1764930000.123, str(value)]}]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}})


@dataclass
class Figures:
    requests: float
    errors: float | None
    p99: float


HEALTHY = Figures(requests=200, errors=None, p99=0.045)
STABLE = Figures(requests=4000, errors=4, p99=0.050)


@dataclass
class Prod(Cluster):
    """A prod cluster running revision 3 of the app on 2 pods, with its Prometheus."""

    canary: Figures = field(default_factory=lambda: HEALTHY)
    stable: Figures = field(default_factory=lambda: STABLE)
    prometheus_down: bool = False
    # (clock time from which it is set, value) of the decision annotation.
    decision: tuple[float, str] | None = None
    canary_exists: bool = True
    clock: object = None
    queries: list[str] = field(default_factory=list)
    applied: dict[str, list[dict]] = field(default_factory=dict)

    def respond(self, args):
        if args[:3] == ("kubectl", "get", "--raw"):
            return self.prometheus(args)
        if args[:3] == ("kubectl", "get", "replicasets"):
            return Result(
                args,
                0,
                json.dumps(
                    {
                        "items": [
                            self.replica_set("2", "6b7c8d9f0"),
                            self.replica_set("3", STABLE_HASH),
                        ]
                    }
                ),
            )
        if (
            args[:4] == ("kubectl", "get", "deployment", "conduit")
            and "{.spec.replicas}" in args[-1]
        ):
            return Result(args, 0, "2")
        if args[:4] == ("kubectl", "get", "deployment", "conduit-canary"):
            if self.decision and self.clock.current >= self.decision[0]:
                return Result(args, 0, self.decision[1])
            return Result(args, 0, "")
        if args[:2] == ("kubectl", "annotate") and not self.canary_exists:
            return Result(
                args, 1, "",
                'Error from server (NotFound): deployments.apps "conduit-canary" not found',
            )  # fmt: skip
        if (
            args[:2] == ("kubectl", "apply")
            and args[-1].startswith("/")
            and args[-1].endswith(".yaml")
        ):
            with open(args[-1], encoding="utf-8") as file:
                self.applied[args[-1].rsplit("/", 1)[-1]] = [
                    doc for doc in yaml.safe_load_all(file) if doc
                ]
        return super().respond(args)

    @staticmethod
    def replica_set(revision: str, pod_hash: str) -> dict:
        """A ReplicaSet as the Deployment controller writes it (apps/v1)."""
        return {
            "metadata": {
                "name": f"conduit-{pod_hash}",
                "labels": {**LABELS, "pod-template-hash": pod_hash},
                "annotations": {"deployment.kubernetes.io/revision": revision},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": "conduit", "controller": True}],
            }
        }  # fmt: skip

    def prometheus(self, args):
        if self.prometheus_down:
            return Result(
                args, 1, "",
                'Error from server (ServiceUnavailable): no endpoints available for service '
                '"kube-prometheus-stack-prometheus"',
            )  # fmt: skip
        url = urlsplit(args[3])
        assert url.path == (
            "/api/v1/namespaces/monitoring/services/kube-prometheus-stack-prometheus:http-web"
            "/proxy/api/v1/query"
        )
        (expr,) = parse_qs(url.query)["query"]
        self.queries.append(expr)
        figures = self.canary if 'job="conduit-canary"' in expr else self.stable
        if expr.startswith("histogram_quantile"):
            return Result(args, 0, vector(figures.p99))
        if 'status=~"5.."' in expr:
            return Result(args, 0, vector(figures.errors))
        return Result(args, 0, vector(figures.requests))


@pytest.fixture
def prod(clock):
    # The Gateway has its address already: the only waits are the canary's.
    return Prod(clock=clock, addresses=["203.0.113.7"])


@pytest.fixture
def deploy_prod(run_command, recorder, tmp_path, prod, preflight, downloads):
    recorder.respond = prod.respond
    smoke = Smoke()

    def run(*argv, **environ):
        return run_command(
            "deploy", "prod", *argv, "--env-file", str(tmp_path / "deploy.env"),
            environ=release_environ("v1.2.3", **environ),
            render=CanaryRender(), smoke=smoke, preflight=preflight,
        )  # fmt: skip

    def with_render(render, *argv):
        return run_command(
            "deploy", "prod", *argv, "--env-file", str(tmp_path / "deploy.env"),
            environ=release_environ("v1.2.3"), render=render, smoke=smoke, preflight=preflight,
        )  # fmt: skip

    run.smoke = smoke
    run.with_render = with_render
    return run


def applied_files(recorder) -> list[str]:
    return [
        c[-1].rsplit("/", 1)[-1]
        for c in recorder.commands
        if c[:2] == ("kubectl", "apply") and c[-1] != "-"
    ]


def canary_commands(recorder) -> list[tuple[str, ...]]:
    """What the canary changed in the cluster: its applies, scales, deletes, rollouts."""

    def kept(c: tuple[str, ...]) -> bool:
        if c[1] == "apply":
            name = c[-1].rsplit("/", 1)[-1]
            return "canary" in name or name == "04-app.yaml"
        changes = c[1] in ("scale", "delete") or c[1:3] == ("rollout", "status")
        return changes and "deployment/conduit" in " ".join(c)

    return [
        c if c[1] != "apply" else ("kubectl", "apply", c[-1].rsplit("/", 1)[-1])
        for c in recorder.commands
        if kept(c)
    ]


def backends(route: dict) -> list[list[tuple[str, int]]]:
    return [
        [(ref["name"], ref["weight"]) for ref in r["backendRefs"]] for r in route["spec"]["rules"]
    ]


ROLLOUT = ("kubectl", "rollout", "status")


def test_a_good_canary_goes_through_every_step_then_is_promoted(deploy_prod, recorder, prod, clock):
    code, _, err = deploy_prod()
    assert code == 0, err
    scale = ("kubectl", "scale", "deployment/conduit-canary", "--namespace", NAMESPACE)
    canary_wait = (
        *ROLLOUT,
        "deployment/conduit-canary",
        "--namespace",
        NAMESPACE,
        "--timeout=300s",
    )
    assert canary_commands(recorder) == [
        ("kubectl", "apply", "canary-start.yaml"),
        canary_wait,
        (*scale, "--replicas=1"), canary_wait, ("kubectl", "apply", "canary-route-5.yaml"),
        (*scale, "--replicas=1"), canary_wait, ("kubectl", "apply", "canary-route-25.yaml"),
        # 50 %: as many canary pods as stable ones, so each pod carries the same load.
        (*scale, "--replicas=2"), canary_wait, ("kubectl", "apply", "canary-route-50.yaml"),
        # Promotion: the rendered app stage (the stable Deployment rolls, the stable
        # Service is unpinned), then the route to the stable Service alone.
        ("kubectl", "apply", "04-app.yaml"),
        (*ROLLOUT, "deployment/conduit", "--namespace", NAMESPACE, "--timeout=300s"),
        ("kubectl", "apply", "canary-route-0.yaml"),
        ("kubectl", "delete", "deployment/conduit-canary", "service/conduit-canary",
         "--namespace", NAMESPACE, "--ignore-not-found"),
    ]  # fmt: skip
    # Each step held 300 s, looking for a decision by hand every 10 s.
    assert clock.sleeps == [10.0] * 90
    assert len(prod.queries) == 3 * 6
    assert "canary at 50 % passed: canary 200 requests, 5xx 0.00 %, p99 45 ms" in err
    assert err.rfind("is live in prod") > err.rfind("promoting")


def test_the_canary_is_the_new_release_beside_the_untouched_stable_one(deploy_prod, prod):
    deploy_prod()
    service, config_map, deployment, canary_service = prod.applied["canary-start.yaml"]
    # The stable Service keeps only the stable pods, whose selector also matches the canary's.
    assert (service["metadata"]["name"], service["spec"]["selector"]) == (
        "conduit", {**LABELS, "pod-template-hash": STABLE_HASH},
    )  # fmt: skip
    assert config_map["kind"] == "ConfigMap"  # the new release's settings, a new name
    assert deployment["metadata"]["name"] == "conduit-canary"
    assert deployment["spec"]["selector"]["matchLabels"] == {**LABELS, "track": "canary"}
    assert deployment["spec"]["template"]["metadata"]["labels"]["track"] == "canary"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    assert deployment["spec"]["replicas"] == 1
    # Scraped by the ServiceMonitor (same labels) as job="conduit-canary".
    assert canary_service["metadata"] == {"name": "conduit-canary", "labels": LABELS}
    assert canary_service["spec"]["selector"] == {**LABELS, "track": "canary"}


def test_the_route_moves_the_canarys_share_in_every_rule(deploy_prod, prod):
    deploy_prod()
    for weight in (5, 25, 50):
        (route,) = prod.applied[f"canary-route-{weight}.yaml"]
        assert backends(route) == [[("conduit", 100 - weight), ("conduit-canary", weight)]] * 3
        assert route["spec"]["parentRefs"] == INGRESS_STAGE[1]["spec"]["parentRefs"]
    (route,) = prod.applied["canary-route-0.yaml"]
    assert route == INGRESS_STAGE[1]


def test_a_failing_canary_is_aborted_with_the_numbers(deploy_prod, recorder, prod):
    prod.canary = Figures(requests=200, errors=20, p99=0.045)
    code, _, err = deploy_prod()
    assert code == 1
    assert (
        "canary aborted: fail at 5 %: 5xx ratio: canary 10.00 % (20 of 200) > stable 0.10 % "
        "(4 of 4000) + 1.00 %; conduit serves the previous release"
    ) in err
    assert canary_commands(recorder)[-3:] == [
        ("kubectl", "apply", "canary-route-0.yaml"),
        ("kubectl", "apply", "canary-abort.yaml"),
        ("kubectl", "delete", "deployment/conduit-canary", "service/conduit-canary",
         "--namespace", NAMESPACE, "--ignore-not-found"),
    ]  # fmt: skip
    (route,) = prod.applied["canary-route-0.yaml"]
    assert backends(route) == [[("conduit", 100)]] * 3
    assert prod.applied["canary-abort.yaml"] == [APP_STAGE[1]]  # unpinned
    assert "04-app.yaml" not in applied_files(recorder)  # the stable release never changed
    assert not any(c[1:3] == ("rollout", "undo") for c in recorder.commands)


def test_a_slow_canary_is_aborted(deploy_prod, prod):
    prod.canary = Figures(requests=200, errors=None, p99=0.400)
    code, _, err = deploy_prod()
    assert code == 1
    assert "fail at 5 %: p99 latency: canary 400 ms > stable 50 ms + 100 ms" in err


def test_a_canary_without_enough_traffic_aborts_as_inconclusive(deploy_prod, prod):
    prod.canary = Figures(requests=12, errors=None, p99=0.045)
    code, _, err = deploy_prod()
    assert code == 1
    assert "inconclusive at 5 %: the canary served 12 requests in 300s, fewer than the 50" in err


def test_a_query_without_data_is_inconclusive(deploy_prod, prod):
    prod.stable = Figures(requests=None, errors=None, p99=0.05)
    code, _, err = deploy_prod()
    assert code == 1
    assert (
        "inconclusive at 5 %: no data for conduit: "
        'sum(increase(conduit_http_requests_total{job="conduit"' in err
    )


def test_prometheus_unreachable_aborts(deploy_prod, recorder, prod):
    prod.prometheus_down = True
    code, _, err = deploy_prod()
    assert code == 1
    assert (
        "inconclusive at 5 %: cannot reach Prometheus (monitoring/kube-prometheus-stack-"
        "prometheus): Error from server (ServiceUnavailable): no endpoints available"
    ) in err
    assert applied_files(recorder)[-2:] == ["canary-route-0.yaml", "canary-abort.yaml"]


def test_abort_by_hand_stops_the_steps(deploy_prod, recorder, prod, clock):
    # Set during the second step (the first ends 300 s after the start).
    prod.decision = (clock.current + 400, "abort")
    code, _, err = deploy_prod()
    assert code == 1
    assert "canary aborted: stopped by hand at 25 % (abort:prod)" in err
    assert "canary-route-50.yaml" not in applied_files(recorder)
    assert applied_files(recorder)[-2:] == ["canary-route-0.yaml", "canary-abort.yaml"]


def test_promote_by_hand_skips_the_remaining_steps(deploy_prod, recorder, prod, clock):
    prod.decision = (clock.current + 30, "promote")
    code, _, err = deploy_prod()
    assert code == 0, err
    assert "promoted by hand at 5 % (promote:prod)" in err
    assert prod.queries == []  # not judged
    assert applied_files(recorder)[-3:] == [
        "canary-route-5.yaml",
        "04-app.yaml",
        "canary-route-0.yaml",
    ]
    assert clock.sleeps == [10.0] * 3


def test_a_canary_that_never_becomes_ready_is_removed(deploy_prod, recorder, prod):
    respond = prod.respond

    def not_ready(args):
        if args[:4] == (*ROLLOUT, "deployment/conduit-canary"):
            return Result(
                args, 1, "", 'error: deployment "conduit-canary" exceeded its progress deadline'
            )
        return respond(args)

    recorder.respond = not_ready
    code, _, err = deploy_prod()
    assert code == 1
    assert "canary aborted: the canary did not become ready" in err
    assert applied_files(recorder)[-2:] == ["canary-route-0.yaml", "canary-abort.yaml"]


def test_a_failed_smoke_test_removes_the_canary_without_touching_the_stable_release(
    deploy_prod, recorder, prod
):
    deploy_prod.smoke.fail_with = "GET /flask/api/articles answered 502"
    code, _, err = deploy_prod()
    assert code == 1
    assert "canary aborted: GET /flask/api/articles answered 502" in err
    assert not any(c[1:3] == ("rollout", "undo") for c in recorder.commands)


def test_the_first_release_rolls_out_directly(deploy_prod, recorder, prod):
    prod.revisions = ["", "1"]
    code, _, err = deploy_prod()
    assert code == 0, err
    assert not any("canary" in " ".join(c) for c in recorder.commands)
    assert "the first release, rolled out directly" in err


def test_steps_and_thresholds_come_from_ci_variables(deploy_prod, prod, clock):
    code, _, err = deploy_prod(
        CANARY_STEPS="10,100", CANARY_STEP_SECONDS="120", CANARY_MAX_5XX_INCREASE="0.5",
        CANARY_MAX_P99_INCREASE_MS="20", CANARY_MIN_REQUESTS="500",
    )  # fmt: skip
    assert code == 1
    assert sum(clock.sleeps) == 120
    assert "inconclusive at 10 %: the canary served 200 requests in 120s, fewer than the 500" in err
    assert all("[120s]" in expr for expr in prod.queries)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CANARY_STEPS", "25,5,100", "weights must increase"),
        ("CANARY_STEPS", "5,25", "the last weight must be 100 (promotion)"),
        ("CANARY_STEPS", "five", "weights in percent"),
        ("CANARY_STEPS", "0,100", "between 1 and 100"),
        ("CANARY_STEP_SECONDS", "30", "at least 60"),
        ("CANARY_MAX_5XX_INCREASE", "-1", "percentage points"),
        ("CANARY_MAX_P99_INCREASE_MS", "fast", "milliseconds"),
        ("CANARY_MIN_REQUESTS", "0", "1 or more"),
    ],
)
def test_bad_canary_variables_stop_the_deploy_before_it_starts(
    deploy_prod, recorder, name, value, message
):
    code, _, err = deploy_prod(**{name: value})
    assert (code, recorder.calls) == (1, [])
    assert f"invalid: {name} " in err
    assert message in err


def test_the_dry_run_prints_the_canary_plan(deploy_prod, recorder, clock):
    code, _, _ = deploy_prod("--dry-run")
    out = "\n".join(recorder.planned)
    assert code == 0
    assert recorder.calls == []
    assert clock.sleeps == []
    for line in (
        "# the app stage picks one path: a canary or a direct rollout",
        "# a canary, when deployment/conduit runs a release:",
        "# 25 %: 1 canary pod(s) (ceil(stable replicas x 25 / 75), at least 1)",
        "# hold 300s; every 10s, a decision by hand (promote:prod, abort:prod):",
        "# judge 50 % over the last 300s: the canary served >= 50 requests, its 5xx ratio "
        "<= stable + 1 points, its p99 <= stable + 100 ms; else abort:",
    ):
        assert line in out.splitlines()
    assert "kubectl get --raw '/api/v1/namespaces/monitoring/services/" in out
    assert out.index("canary-route-50.yaml") < out.index("04-app.yaml", out.index("judge 50 %"))


def test_dev_keeps_its_direct_rollout(run_command, recorder, tmp_path, preflight, downloads):
    prod = Prod()
    recorder.respond = prod.respond
    code, _, err = run_command(
        "deploy", "dev", "--env-file", str(tmp_path / "deploy.env"),
        render=CanaryRender(), smoke=Smoke(), preflight=preflight,
    )  # fmt: skip
    assert code == 0, err
    assert not any("canary" in " ".join(c) for c in recorder.commands)


@pytest.mark.parametrize("decision", ["promote", "abort"])
def test_canary_command_tells_the_running_deploy(run_command, recorder, prod, decision):
    recorder.respond = prod.respond
    code, _, err = run_command("canary", decision, "prod", environ=tag_environ("v1.2.3"),
                               render=CanaryRender())  # fmt: skip
    assert code == 0, err
    assert recorder.commands[-1] == (
        "kubectl", "annotate", "deployment", "conduit-canary", "--namespace", NAMESPACE,
        "--overwrite", f"conduit-deploy/canary-decision={decision}",
    )  # fmt: skip


def test_canary_command_without_a_canary_says_so(run_command, recorder, prod):
    prod.canary_exists = False
    recorder.respond = prod.respond
    code, _, err = run_command("canary", "abort", "prod", environ=tag_environ("v1.2.3"),
                               render=CanaryRender())  # fmt: skip
    assert code == 1
    assert "no canary is running: deployment/conduit-canary does not exist" in err


def test_the_decision_jobs_run_the_canary_command_outside_the_prod_lock():
    """deploy:prod holds resource_group prod for the whole release: a job in it would
    wait for the deploy it is meant to steer."""
    pipeline = yaml.load(PIPELINE.read_text(), Loader=GitLabLoader)  # noqa: S506 - SafeLoader subclass
    template = pipeline[".canary_decision"]
    assert "resource_group" not in template
    assert "resource_group" not in pipeline[".kube"]
    assert template["environment"]["name"] == "prod"
    assert template["script"] == [
        'conduit-deploy canary "$CANARY_DECISION" "$TARGET_ENVIRONMENT" '
        "${CONDUIT_DEPLOY_DRY_RUN:+--dry-run}"
    ]
    for job, decision in (("promote:prod", "promote"), ("abort:prod", "abort")):
        assert pipeline[job] == {
            "extends": ".canary_decision",
            "variables": {"CANARY_DECISION": decision},
        }


def test_without_an_httproute_to_the_app_no_canary_starts(deploy_prod, recorder, tmp_path):
    class IngressOnly(CanaryRender):
        def __call__(self, values, out_dir, runner):
            rendered = super().__call__(values, out_dir, runner)
            dict(rendered.stages)["ingress"].write_text(yaml.safe_dump_all(INGRESS_STAGE[:1]))
            return rendered

    code, _, err = deploy_prod.with_render(IngressOnly())
    assert code == 1
    assert "has no HTTPRoute that sends to Service conduit" in err
    assert not any("canary" in " ".join(c) for c in recorder.commands)
