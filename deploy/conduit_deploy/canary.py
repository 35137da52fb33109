"""Prod releases as canaries: the new version beside the stable one, traffic moved to it
in steps by HTTPRoute weights, each step judged by Prometheus (conduit_deploy.analysis).

The objects, all derived from the rendered app and ingress stages:

* the canary Deployment `<app>-canary`: the rendered Deployment (new image, config,
  Secrets; its init container runs the migrations, which the expand/contract rule of
  migrations/README.md keeps compatible with the stable release) with the pod label
  `track: canary` in its selector, so it never owns the stable pods;
* the canary Service `<app>-canary`, selecting those pods; it keeps the stable Service's
  labels, so the ServiceMonitor scrapes it, as job="<app>-canary";
* the stable Service, pinned while the canary runs to the stable ReplicaSet's
  pod-template-hash (the label the Deployment controller puts on each ReplicaSet's
  pods), so that it never sends traffic to canary pods, which its selector alone also
  matches (Argo Rollouts pins its Services the same way);
* the HTTPRoute, each rule's backendRefs [stable: 100 - w, canary: w]. Gateway API
  v1.6 (apis/v1/shared_types.go, BackendRef.Weight): a backend gets weight / sum of
  the weights of its rule. Written by server-side apply under the deploy's field
  manager, as the whole rendered route: the next deploy's apply resets it.

A person stops or ends the steps with `conduit-deploy canary abort|promote ENV`, which
annotates the canary Deployment; the running deploy reads the annotation every tick.

Promotion: the rendered app stage is applied as it is (the stable Deployment rolls to the
new image, the stable Service unpinned), then the route goes back to the stable Service
alone and the canary is deleted. Any failure before: weight 0, canary deleted, job red.
"""

from __future__ import annotations

import copy
import enum
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import analysis, monitoring
from .analysis import Outcome, PrometheusError, Selection, Thresholds, Verdict
from .console import log
from .errors import CommandFailed, DeployError
from .kubectl import apply_command, delete_command, rollout_status_command
from .runner import Runner, format_command, tail

# The environment whose releases are canaries; dev keeps its direct rollout.
CANARY_ENVIRONMENT = "prod"
CANARY_SUFFIX = "-canary"
TRACK_LABEL = "track"
CANARY_TRACK = "canary"
# Set by the Deployment controller on every pod of a ReplicaSet (apps/v1,
# DefaultDeploymentUniqueLabelKey).
POD_TEMPLATE_HASH = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
DECISION_ANNOTATION = "conduit-deploy/canary-decision"
# kube-prometheus-stack's Prometheus Service, `<fullname>-prometheus` with the port named
# http-web (chart templates/prometheus/service.yaml; fullname is the release's name
# when it contains the chart's). Reached through the API server's service proxy
# (Kubernetes API: /api/v1/namespaces/{ns}/services/{name}:{port}/proxy/{path}).
PROMETHEUS_SERVICE = f"{monitoring.STACK_RELEASE}-prometheus"
PROMETHEUS_PORT = "http-web"

DEFAULT_STEPS = (5, 25, 50, 100)


class Decision(enum.Enum):
    PROMOTE = "promote"
    ABORT = "abort"


class CanaryAborted(DeployError):
    """The canary failed its analysis or was stopped: traffic is back on the stable set."""


@dataclass(frozen=True)
class CanaryOptions:
    # Canary weights in percent; each below 100 is held and judged, 100 is promotion.
    steps: tuple[int, ...] = DEFAULT_STEPS
    step_seconds: float = 300
    # How often a held step looks for a decision by hand.
    tick_seconds: float = 10
    thresholds: Thresholds = field(default_factory=Thresholds)
    rollout_timeout: float = 300


def parse_steps(text: str) -> tuple[int, ...]:
    """'5,25,50,100' -> (5, 25, 50, 100); increasing whole percentages ending at 100."""
    try:
        steps = tuple(int(part) for part in text.replace(" ", "").split(","))
    except ValueError:
        raise ValueError(f"must be weights in percent separated by commas, got {text!r}") from None
    if any(not 0 < step <= 100 for step in steps):
        raise ValueError(f"weights must be between 1 and 100, got {text!r}")
    if list(steps) != sorted(set(steps)):
        raise ValueError(f"weights must increase, got {text!r}")
    if steps[-1] != 100:
        raise ValueError(f"the last weight must be 100 (promotion), got {text!r}")
    return steps


MIN_STEP_SECONDS = 60  # the ServiceMonitor scrapes every 30 s; rate() needs two samples


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"must be {what}, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"must be {what}, got {text!r}")
    return value


def parse_step_seconds(text: str) -> float:
    seconds = _number(text, "a number of seconds")
    if seconds < MIN_STEP_SECONDS:
        raise ValueError(
            f"must be at least {MIN_STEP_SECONDS} (two scrapes of the canary), got {text!r}"
        )
    return seconds


def parse_percentage_points(text: str) -> float:
    """Percentage points -> a ratio: '1' -> 0.01."""
    points = _number(text, "percentage points (0-100)")
    if points > 100:
        raise ValueError(f"must be percentage points (0-100), got {text!r}")
    return points / 100


def parse_milliseconds(text: str) -> float:
    """Milliseconds -> seconds."""
    return _number(text, "milliseconds") / 1000


def parse_count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"must be a whole number of requests, 1 or more, got {text!r}")
    return int(text)


def canary_replicas(stable_replicas: int, weight: int) -> int:
    """As many canary pods as keep each pod's share of requests equal to a stable pod's."""
    if weight >= 100:
        return max(stable_replicas, 1)
    return max(1, math.ceil(stable_replicas * weight / (100 - weight)))


# --- objects ---------------------------------------------------------------------------


def _load(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _find(objects: list[dict], kind: str, name: str, where: Path) -> dict:
    for obj in objects:
        if obj.get("kind") == kind and obj["metadata"]["name"] == name:
            return obj
    raise DeployError(f"{where} has no {kind} {name}: cannot start a canary")


def canary_deployment(stable: dict, replicas: int) -> dict:
    canary = copy.deepcopy(stable)
    canary["metadata"]["name"] += CANARY_SUFFIX
    canary["metadata"].setdefault("labels", {})[TRACK_LABEL] = CANARY_TRACK
    spec = canary["spec"]
    spec["replicas"] = replicas
    spec["selector"]["matchLabels"][TRACK_LABEL] = CANARY_TRACK
    spec["template"]["metadata"]["labels"][TRACK_LABEL] = CANARY_TRACK
    return canary


def canary_service(stable: dict) -> dict:
    canary = copy.deepcopy(stable)
    canary["metadata"]["name"] += CANARY_SUFFIX
    canary["spec"]["selector"][TRACK_LABEL] = CANARY_TRACK
    return canary


def pinned_service(stable: dict, pod_template_hash: str) -> dict:
    pinned = copy.deepcopy(stable)
    pinned["spec"]["selector"][POD_TEMPLATE_HASH] = pod_template_hash
    return pinned


def weighted_routes(routes: list[dict], service: str, weight: int) -> list[dict]:
    """The routes that send to `service`, with `weight` % of each such rule to its canary."""
    weighted = []
    for route in routes:
        route = copy.deepcopy(route)
        for rule in route["spec"].get("rules") or []:
            refs = rule.get("backendRefs") or []
            stable = [ref for ref in refs if ref.get("name") == service]
            if not stable or weight == 0:
                continue
            canary = {**stable[0], "name": service + CANARY_SUFFIX, "weight": weight}
            rule["backendRefs"] = [{**stable[0], "weight": 100 - weight}, canary]
        weighted.append(route)
    return weighted


def routes_to(objects: list[dict], service: str) -> list[dict]:
    return [
        obj
        for obj in objects
        if obj.get("kind") == "HTTPRoute"
        and any(
            ref.get("name") == service
            for rule in obj["spec"].get("rules") or []
            for ref in rule.get("backendRefs") or []
        )
    ]


# --- commands --------------------------------------------------------------------------


def replica_sets_command(namespace: str, selector: dict[str, str]) -> list[str]:
    labels = ",".join(f"{key}={value}" for key, value in selector.items())
    return [
        "kubectl", "get", "replicasets", "--namespace", namespace,
        f"--selector={labels}", "--output=json",
    ]  # fmt: skip


def replicas_command(deployment: str, namespace: str) -> list[str]:
    return [
        "kubectl", "get", "deployment", deployment, "--namespace", namespace,
        "--output=jsonpath={.spec.replicas}",
    ]  # fmt: skip


def scale_command(deployment: str, namespace: str, replicas: int) -> list[str]:
    return [
        "kubectl", "scale", f"deployment/{deployment}", "--namespace", namespace,
        f"--replicas={replicas}",
    ]  # fmt: skip


def decision_command(deployment: str, namespace: str) -> list[str]:
    key = DECISION_ANNOTATION.replace(".", "\\.")
    return [
        "kubectl", "get", "deployment", deployment, "--namespace", namespace,
        "--ignore-not-found", f"--output=jsonpath={{.metadata.annotations.{key}}}",
    ]  # fmt: skip


def decide_command(deployment: str, namespace: str, decision: Decision) -> list[str]:
    return [
        "kubectl", "annotate", "deployment", deployment, "--namespace", namespace,
        "--overwrite", f"{DECISION_ANNOTATION}={decision.value}",
    ]  # fmt: skip


def prometheus_query_command(expr: str) -> list[str]:
    proxy = (
        f"/api/v1/namespaces/{monitoring.STACK_NAMESPACE}/services/"
        f"{PROMETHEUS_SERVICE}:{PROMETHEUS_PORT}/proxy"
    )
    return ["kubectl", "get", "--raw", proxy + analysis.api_path(expr)]


def kubectl_query(runner: Runner) -> analysis.Query:
    """analysis.Query through the API server's service proxy."""

    def query(expr: str) -> list[tuple[dict[str, str], float]]:
        result = runner.run(prometheus_query_command(expr), capture=True, check=False, quiet=True)
        if not result.ok:
            raise PrometheusError(
                f"cannot reach Prometheus ({monitoring.STACK_NAMESPACE}/{PROMETHEUS_SERVICE}): "
                f"{tail(result.stderr or result.stdout, 1) or f'exit {result.returncode}'}"
            )
        return analysis.parse_vector(result.stdout)

    return query


def request_decision(runner: Runner, namespace: str, app: str, decision: Decision) -> None:
    """What `conduit-deploy canary promote|abort` does: tell the running deploy."""
    name = app + CANARY_SUFFIX
    result = runner.run(decide_command(name, namespace, decision), capture=True, check=False)
    if not result.ok:
        detail = tail(result.stderr or result.stdout, 1)
        if "NotFound" in detail or "not found" in detail:
            raise DeployError(f"no canary is running: deployment/{name} does not exist")
        raise CommandFailed(
            format_command(decide_command(name, namespace, decision)), result.returncode, detail
        )
    runner.outcome(
        f"==> canary: asked the running deploy to {decision.value} deployment/{name} "
        "(it reads the request within one tick)"
    )


# --- the release -----------------------------------------------------------------------


class Canary:
    """One canary release of the rendered app, beside the stable Deployment `app`."""

    def __init__(
        self,
        runner: Runner,
        namespace: str,
        app: str,
        app_file: Path,
        ingress_file: Path,
        options: CanaryOptions,
        query: analysis.Query | None = None,
    ):
        self.runner = runner
        self.namespace = namespace
        self.app = app
        self.name = app + CANARY_SUFFIX
        self.app_file = app_file
        self.ingress_file = ingress_file
        self.options = options
        self.query = query or kubectl_query(runner)
        self.folder = Path(app_file).parent
        self.selection = Selection(namespace, stable_job=app, canary_job=self.name)
        self.stable_replicas = 1
        self.started = False

    # -- start ---------------------------------------------------------------------------

    def start(self, stable_revision: str) -> None:
        """The app stage without touching the stable Deployment: its other objects, the
        stable Service pinned to the stable pods, the canary Deployment and Service."""
        objects = _load(self.app_file)
        stable = _find(objects, "Deployment", self.app, self.app_file)
        service = _find(objects, "Service", self.app, self.app_file)
        if not routes_to(_load(self.ingress_file), self.app):
            raise DeployError(
                f"{self.ingress_file} has no HTTPRoute that sends to Service {self.app}: "
                "a canary's share is set by Gateway API weights"
            )
        pod_hash = self._stable_pod_template_hash(stable, stable_revision)
        self.stable_replicas = self._stable_replicas()
        replicas = canary_replicas(self.stable_replicas, self.options.steps[0])
        others = [obj for obj in objects if obj is not stable and obj is not service]
        path = self._write(
            "canary-start",
            [
                pinned_service(service, pod_hash),
                *others,
                canary_deployment(stable, replicas),
                canary_service(service),
            ],
        )
        log(
            f"==> deploy: canary: deployment/{self.name} ({replicas} pod(s)) beside "
            f"deployment/{self.app}, which keeps serving every request"
        )
        self.started = True
        self.runner.run(apply_command(path))
        try:
            self.runner.run(
                rollout_status_command(
                    "deployment", self.name, self.namespace, self.options.rollout_timeout
                )
            )
        except CommandFailed as error:
            self.abort(f"the canary did not become ready: {error}")

    def _stable_pod_template_hash(self, stable: dict, revision: str) -> str:
        selector = stable["spec"]["selector"]["matchLabels"]
        result = self.runner.run(
            replica_sets_command(self.namespace, selector), capture=True, check=False
        )
        if self.runner.dry_run:
            return "<pod-template-hash of the stable ReplicaSet>"
        items = yaml.safe_load(result.stdout or "{}").get("items") or [] if result.ok else []
        for item in items:
            owners = item["metadata"].get("ownerReferences") or []
            annotations = item["metadata"].get("annotations") or {}
            owned = any(o.get("kind") == "Deployment" and o.get("name") == self.app for o in owners)
            if owned and annotations.get(REVISION_ANNOTATION) == revision:
                return item["metadata"]["labels"][POD_TEMPLATE_HASH]
        raise DeployError(
            f"no ReplicaSet of deployment/{self.app} at revision {revision}: cannot tell the "
            f"stable pods from the canary's ({tail(result.stderr, 1) or 'none listed'})"
        )

    def _stable_replicas(self) -> int:
        result = self.runner.run(
            replicas_command(self.app, self.namespace), capture=True, check=False
        )
        text = result.stdout.strip()
        return int(text) if result.ok and text.isdigit() else 1

    # -- steps ---------------------------------------------------------------------------

    def release(self) -> None:
        """Every step, then promotion; on any failure, abort (raises CanaryAborted)."""
        o = self.options
        for weight in o.steps:
            if weight >= 100:
                break
            try:
                self._shift(weight)
            except CommandFailed as error:
                self.abort(f"could not move to {weight} %: {error}")
            decision = self._hold(weight)
            if decision is Decision.ABORT:
                self.abort(f"stopped by hand at {weight} % (abort:prod)")
            if decision is Decision.PROMOTE:
                log(f"==> deploy: canary: promoted by hand at {weight} % (promote:prod)")
                break
            verdict = self._judge(weight)
            if verdict.outcome is not Outcome.PASS:
                self.abort(f"{verdict.outcome.value} at {weight} %: {verdict.summary}")
            self.runner.outcome(f"==> deploy: canary at {weight} % passed: {verdict.summary}")
        self.promote()

    def _shift(self, weight: int) -> None:
        replicas = canary_replicas(self.stable_replicas, weight)
        self.runner.note(
            f"{weight} %: {replicas} canary pod(s) "
            f"(ceil(stable replicas x {weight} / {100 - weight}), at least 1)"
        )
        self.runner.run(scale_command(self.name, self.namespace, replicas))
        self.runner.run(
            rollout_status_command(
                "deployment", self.name, self.namespace, self.options.rollout_timeout
            )
        )
        log(f"==> deploy: canary: {weight} % of requests to deployment/{self.name}")
        self._route(weight)

    def _route(self, weight: int) -> None:
        routes = weighted_routes(routes_to(_load(self.ingress_file), self.app), self.app, weight)
        path = self._write(f"canary-route-{weight}", routes)
        self.runner.run(apply_command(path))

    def _hold(self, weight: int) -> Decision | None:
        """Wait step_seconds, reading the decision annotation every tick."""
        o = self.options
        command = decision_command(self.name, self.namespace)
        if self.runner.dry_run:
            self.runner.note(
                f"hold {o.step_seconds:g}s; every {o.tick_seconds:g}s, a decision by hand "
                "(promote:prod, abort:prod):"
            )
            self.runner.run(command)
            return None
        clock = self.runner.clock
        deadline = clock.now() + o.step_seconds
        while True:
            result = self.runner.run(command, capture=True, check=False, quiet=True)
            value = result.stdout.strip() if result.ok else ""
            if value:
                try:
                    return Decision(value)
                except ValueError:
                    log(f"    canary: ignoring {DECISION_ANNOTATION}={value!r}")
            remaining = deadline - clock.now()
            if remaining <= 0:
                return None
            clock.sleep(min(o.tick_seconds, remaining))

    def _judge(self, weight: int) -> Verdict:
        o = self.options
        window = int(o.step_seconds)
        if self.runner.dry_run:
            t = o.thresholds
            self.runner.note(
                f"judge {weight} % over the last {window}s: the canary served >= "
                f"{t.min_requests} requests, its 5xx ratio <= stable + "
                f"{t.max_error_ratio_increase * 100:g} points, its p99 <= stable + "
                f"{t.max_p99_increase_seconds * 1000:g} ms; else abort:"
            )
            for job in (self.selection.canary_job, self.selection.stable_job):
                for expr in analysis.queries(self.selection, job, window).values():
                    self.runner.run(prometheus_query_command(expr))
            return Verdict(Outcome.PASS, ("dry run",))
        try:
            return analysis.analyze(self.query, self.selection, window, o.thresholds)
        except PrometheusError as error:
            return Verdict(Outcome.INCONCLUSIVE, (str(error),))

    # -- endings -------------------------------------------------------------------------

    def promote(self) -> None:
        """The stable Deployment gets the new version; then the canary goes."""
        log(f"==> deploy: canary: promoting: deployment/{self.app} rolls to the new version")
        # take_over: a rollback's `kubectl rollout undo` may own the pod template
        # (deploy.py says why); the stable Deployment must take the new one all the same.
        self.runner.run(apply_command(self.app_file, take_over=True))
        self.runner.run(
            rollout_status_command(
                "deployment", self.app, self.namespace, self.options.rollout_timeout
            )
        )
        self._route(0)
        self.runner.run(
            delete_command(
                f"deployment/{self.name}", f"service/{self.name}", namespace=self.namespace
            )
        )
        self.started = False

    def abort(self, reason: str) -> None:
        """Weight 0, the stable Service unpinned, the canary deleted; raises CanaryAborted."""
        log(f"==> deploy: canary FAILED: {reason}")
        log(f"==> deploy: canary: all requests back to deployment/{self.app}; deleting the canary")
        self.started = False
        self._route(0)
        objects = _load(self.app_file)
        path = self._write("canary-abort", [_find(objects, "Service", self.app, self.app_file)])
        self.runner.run(apply_command(path))
        self.runner.run(
            delete_command(
                f"deployment/{self.name}", f"service/{self.name}", namespace=self.namespace
            )
        )
        raise CanaryAborted(f"canary aborted: {reason}; {self.app} serves the previous release")

    def _write(self, name: str, objects: list[dict]) -> Path:
        path = self.folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(objects, sort_keys=False, width=float("inf")))
        return path
