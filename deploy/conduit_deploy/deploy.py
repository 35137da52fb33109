"""The Deploy stage, in the order deploy/README.md describes; this module decides the
commands and when to roll back."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import monitoring
from .canary import Canary, CanaryOptions
from .cloud import CloudSession, export_kubeconfig
from .console import log
from .errors import CommandFailed, DeployError, RolloutFailed, SmokeFailed
from .kubectl import apply_command, delete_command, rollout_status_command
from .render import GENERATED_SECRETS, Rendered
from .runner import Result, Runner, format_command, tail
from .tools import download_checked

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
URL_VARIABLE = "DYNAMIC_ENVIRONMENT_URL"
# Where the Gateway serves the API (its HTTPRoute rewrites /flask/api/... to /api/...).
PATH_PREFIX = "/flask/"
# What the retired ingress-nginx (controller-v1.15.1, deploy/static/provider/cloud/
# deploy.yaml) and our old Ingress left in a cluster, deleted once the Gateway serves:
# the admission webhook first (the IngressNightmare path), then the namespace with the
# controller, its LoadBalancer Service, Jobs and namespaced RBAC, then the
# cluster-scoped rest. (kind, name, namespace: None when cluster-scoped, APP_NAMESPACE
# for the app's)
APP_NAMESPACE = "<the app's namespace>"
RETIRED_EDGE_OBJECTS = (
    ("validatingwebhookconfiguration", "ingress-nginx-admission", None),
    ("ingress", "conduit", APP_NAMESPACE),
    ("networkpolicy", "conduit-from-ingress", APP_NAMESPACE),
    ("namespace", "ingress-nginx", None),
    ("clusterrolebinding", "ingress-nginx", None),
    ("clusterrolebinding", "ingress-nginx-admission", None),
    ("clusterrole", "ingress-nginx", None),
    ("clusterrole", "ingress-nginx-admission", None),
    ("ingressclass", "nginx", None),
)
# kops installs cert-manager here (k8s/kops/cluster.yaml.j2, certManager); its HTTP-01
# Gateway API solver works only with this flag (cert-manager v1.19.5
# cmd/controller/app/controller.go), which kops 1.35 has no setting for.
CERT_MANAGER_NAMESPACE = "kube-system"
CERT_MANAGER_DEPLOYMENT = "cert-manager"
CERT_MANAGER_GATEWAY_FLAG = "--enable-gateway-api"


@dataclass(frozen=True)
class DeployOptions:
    rollout_timeout: float = 300  # migrations run in the app's init container
    controller_timeout: float = 300
    # A new Cluster: initdb (or an import), then each standby cloned from the primary.
    database_timeout: float = 900
    # The first install of the monitoring stack: its images, volumes and CRD-backed pods.
    monitoring_timeout: float = 600
    address_timeout: float = 600  # a new GCE load balancer takes a few minutes
    # Let's Encrypt validates over HTTP once PROD_HOST resolves to the Gateway.
    certificate_timeout: float = 600
    address_interval: float = 10
    env_file: Path = Path("deploy.env")
    # ENVOY_GATEWAY_SHA256: the digest an operator checked, over the one render records.
    edge_manifest_sha256: str | None = None


def ready_command(resource: str, namespace: str, timeout: float) -> list[str]:
    """`kubectl wait` until the resource (kind.group/name) reports condition Ready."""
    return [
        "kubectl",
        "wait",
        "--for=condition=Ready",
        resource,
        "--namespace",
        namespace,
        f"--timeout={timeout:g}s",
    ]


def cluster_ready_command(cluster: str, namespace: str, timeout: float) -> list[str]:
    return ready_command(f"cluster.postgresql.cnpg.io/{cluster}", namespace, timeout)


def rollout_undo_command(deployment: str, namespace: str, revision: str) -> list[str]:
    return [
        "kubectl",
        "rollout",
        "undo",
        f"deployment/{deployment}",
        "--namespace",
        namespace,
        f"--to-revision={revision}",
    ]


def revision_command(deployment: str, namespace: str) -> list[str]:
    """The Deployment's current revision; empty output when it does not exist yet."""
    key = REVISION_ANNOTATION.replace(".", "\\.")
    return [
        "kubectl",
        "get",
        "deployment",
        deployment,
        "--namespace",
        namespace,
        "--ignore-not-found",
        f"--output=jsonpath={{.metadata.annotations.{key}}}",
    ]


def gateway_address_command(gateway: str, namespace: str) -> list[str]:
    # The address Envoy Gateway copies from its LoadBalancer Service (an IP on GCE).
    return [
        "kubectl",
        "get",
        "gateway",
        gateway,
        "--namespace",
        namespace,
        "--output=jsonpath={.status.addresses[0].value}",
    ]


def certificate_ready_command(certificate: str, namespace: str, timeout: float) -> list[str]:
    return ready_command(f"certificate.cert-manager.io/{certificate}", namespace, timeout)


def container_args_command(deployment: str, namespace: str) -> list[str]:
    return [
        "kubectl", "get", "deployment", deployment, "--namespace", namespace,
        "--output=jsonpath={.spec.template.spec.containers[0].args}",
    ]  # fmt: skip


def add_container_arg_command(deployment: str, namespace: str, arg: str) -> list[str]:
    patch = [{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": arg}]
    return [
        "kubectl", "patch", "deployment", deployment, "--namespace", namespace,
        "--type=json", f"--patch={json.dumps(patch)}",
    ]  # fmt: skip


def workloads_command(namespace: str) -> list[str]:
    return [
        "kubectl", "get", "deployments,statefulsets", "--namespace", namespace, "--output=json",
    ]  # fmt: skip


def secrets_command(namespace: str) -> list[str]:
    return [
        "kubectl", "get", "secrets", "--namespace", namespace,
        "--selector=app.kubernetes.io/part-of=conduit", "--output=json",
    ]  # fmt: skip


def delete_secrets_command(names: Iterable[str], namespace: str) -> list[str]:
    return ["kubectl", "delete", "secret", *names, "--namespace", namespace, "--ignore-not-found"]


_GENERATED = re.compile(rf"^(?:{'|'.join(map(re.escape, GENERATED_SECRETS))})-[a-z0-9]{{10}}$")


def secrets_referenced(workloads: Iterable[dict]) -> set[str]:
    """The Secret names the pod templates of these workloads use, in any way."""
    names: set[str] = set()
    for workload in workloads:
        pod = workload.get("spec", {}).get("template", {}).get("spec", {})
        names.update(s.get("name", "") for s in pod.get("imagePullSecrets") or [])
        for volume in pod.get("volumes") or []:
            names.add((volume.get("secret") or {}).get("secretName", ""))
        for container in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
            for source in container.get("envFrom") or []:
                names.add((source.get("secretRef") or {}).get("name", ""))
            for variable in container.get("env") or []:
                ref = (variable.get("valueFrom") or {}).get("secretKeyRef") or {}
                names.add(ref.get("name", ""))
    names.discard("")
    return names


def _items(result: Result) -> list[dict]:
    if not result.ok or not result.stdout.strip():
        return []  # a dry run, or a namespace that does not exist yet
    return json.loads(result.stdout).get("items") or []


def read_address(result: Result) -> tuple[str | None, str]:
    """A poll's reading of gateway_address_command: the address, once there is one."""
    address = result.stdout.strip() if result.ok else ""
    if address:
        return address, f"address {address}"
    return None, "no address yet" if result.ok else tail(result.stderr, 1)


def wait_for_gateway_address(
    runner: Runner, gateway: str, namespace: str, *, what: str, timeout: float, interval: float
) -> str:
    """Poll the Gateway until it has an address (its LoadBalancer's IP), at most timeout."""
    return runner.poll(
        gateway_address_command(gateway, namespace),
        read_address,
        what=what,
        until="it prints an address",
        timeout=timeout,
        interval=interval,
        planned="<gateway-address>",
    )


def write_env_file(runner: Runner, path: Path, url: str) -> None:
    """GitLab reads the environment URL from this dotenv report."""
    line = f"{URL_VARIABLE}={url}\n"

    def write() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(line, encoding="utf-8")

    runner.step(f"write {path}: {line.strip()}", write, planned=None)


def service_url(address: str, host: str = "") -> str:
    """HTTPS on the host name when the environment has one, else HTTP on the address."""
    return f"https://{host}{PATH_PREFIX}" if host else f"http://{address}{PATH_PREFIX}"


class Deployer:
    """One deploy of one rendered environment."""

    def __init__(
        self,
        environment: str,
        image: str,
        rendered: Rendered,
        runner: Runner,
        options: DeployOptions,
        smoke: Callable[[str], object],
        canary: CanaryOptions | None = None,
    ):
        self.environment = environment
        self.image = image
        self.rendered = rendered
        self.runner = runner
        self.options = options
        self.smoke = smoke
        # The app's revision before this deploy applied anything: the one to go back to.
        self.revision_before: str | None = None
        # The Secrets the workloads used before this deploy: a rollback needs them.
        self.secrets_before: set[str] = set()
        # Prod: the release starts as a canary beside the running one (conduit_deploy.canary).
        self.canary_options = canary
        self.canary: Canary | None = None

    def run(self, session: CloudSession) -> str:
        r = self.rendered
        log(f"==> deploy: {self.image} to {self.environment} ({session.cluster_name})")
        export_kubeconfig(session, self.runner)

        self._install_edge()

        if r.database_cluster:
            self._install_database_operator()
        if r.monitoring_stack_values is not None:
            self._install_monitoring_stack(r.monitoring_stack_values)

        self.secrets_before = secrets_referenced(
            _items(self.runner.run(workloads_command(r.namespace), capture=True, check=False))
        )
        for stage, path in r.stages:
            if not Path(path).read_text(encoding="utf-8").strip():
                # e.g. the database stage of an environment using a managed database;
                # `kubectl apply` refuses a file without objects.
                log(f"==> deploy: {stage}: nothing to apply ({path} has no objects)")
                continue
            log(f"==> deploy: {stage} ({path})")
            if stage == "app":
                self.revision_before = self._revision()
                if self.canary_options is not None:
                    self._app_as_canary(path)
                    continue
            # A rollback's `kubectl rollout undo` patches the pod template: by Server-Side
            # Apply's rules (kubernetes.io/docs/reference/using-api/server-side-apply,
            # "Field management"), a non-apply PATCH that changes a field takes it from
            # its manager, and our next apply of it would fail with a conflict.
            self.runner.run(apply_command(path, take_over=stage == "app"))
            if stage == "database" and r.database_cluster:
                log(
                    f"==> deploy: waiting for cluster/{r.database_cluster} to be Ready "
                    f"(a primary and its standbys; at most {self.options.database_timeout:g}s)"
                )
                self.runner.run(
                    cluster_ready_command(
                        r.database_cluster, r.namespace, self.options.database_timeout
                    )
                )
            elif stage == "app":
                self._wait_for_app()

        self._apply_monitoring()
        url = self._wait_for_address()
        self._wait_for_certificate()
        self._write_env_file(url)
        self._smoke(url)
        self._retire_ingress_nginx()
        if self.canary is not None:
            self.canary.release()
        self._prune_secrets()
        self.runner.outcome(f"==> deploy: {self.image} is live in {self.environment} at {url}")
        return url

    def _install_edge(self) -> None:
        """Envoy Gateway (pinned, digest-checked) and the GatewayClass; for a host name,
        cert-manager's Gateway API support. Applying again is a no-op."""
        r = self.rendered
        log(f"==> deploy: Envoy Gateway from {r.edge_manifest_url}")
        manifest = download_checked(
            r.edge_manifest_url,
            self.options.edge_manifest_sha256 or r.edge_manifest_sha256,
            Path(r.kops_file).parent / "envoy-gateway-install.yaml",
            self.runner,
        )
        self.runner.run(apply_command(manifest))
        self.runner.run(
            rollout_status_command(
                "deployment", r.edge_deployment, r.edge_namespace, self.options.controller_timeout
            )
        )
        self.runner.run(apply_command(r.gateway_class_file))
        if r.certificate_name:
            self._enable_cert_manager_gateway_api()

    def _enable_cert_manager_gateway_api(self) -> None:
        """Add --enable-gateway-api to kops' cert-manager once (a kops addon update
        resets it; the deploy that follows every cluster job adds it again)."""
        args = container_args_command(CERT_MANAGER_DEPLOYMENT, CERT_MANAGER_NAMESPACE)
        if self.runner.when(
            args,
            lambda found: found.ok and CERT_MANAGER_GATEWAY_FLAG not in found.stdout,
            f"cert-manager runs without {CERT_MANAGER_GATEWAY_FLAG}",
        ):
            log(f"==> deploy: cert-manager: {CERT_MANAGER_GATEWAY_FLAG} (HTTP-01 via the Gateway)")
            self.runner.run(
                add_container_arg_command(
                    CERT_MANAGER_DEPLOYMENT, CERT_MANAGER_NAMESPACE, CERT_MANAGER_GATEWAY_FLAG
                )
            )
            self.runner.run(
                rollout_status_command(
                    "deployment",
                    CERT_MANAGER_DEPLOYMENT,
                    CERT_MANAGER_NAMESPACE,
                    self.options.controller_timeout,
                )
            )

    def _retire_ingress_nginx(self) -> None:
        """Once the Gateway has passed the smoke test: delete what ingress-nginx and the
        old Ingress left behind. Every delete ignores what is already gone."""
        self.runner.note("delete the retired ingress-nginx controller and the old Ingress")
        for kind, name, namespace in RETIRED_EDGE_OBJECTS:
            if namespace == APP_NAMESPACE:
                namespace = self.rendered.namespace
            self.runner.run(
                delete_command(
                    kind, name, namespace=namespace, timeout=self.options.controller_timeout
                )
            )

    def _app_as_canary(self, path: Path) -> None:
        """A canary beside the running release; the first release rolls out directly."""
        r = self.rendered

        def start() -> None:
            self.canary = Canary(
                self.runner,
                r.namespace,
                r.app_deployment,
                path,
                dict(r.stages)["ingress"],
                self.canary_options,
            )
            self.canary.start(self.revision_before or "<revision>")

        def roll_out() -> None:
            self.runner.run(apply_command(path, take_over=True))
            self._wait_for_app()

        self.runner.note("the app stage picks one path: a canary or a direct rollout")
        self.runner.choose(
            lambda: bool(self.revision_before),
            {
                True: (f"a canary, when deployment/{r.app_deployment} runs a release", start),
                False: ("a direct rollout, when there is none (the first release)", roll_out),
            },
            describe=lambda canary: (
                f"==> deploy: app: a canary beside deployment/{r.app_deployment}, revision "
                f"{self.revision_before}"
                if canary
                else "==> deploy: app: the first release, rolled out directly"
            ),
        )

    def _install_database_operator(self) -> None:
        """CloudNativePG and its Barman Cloud plugin, pinned; applying again is a no-op."""
        r = self.rendered
        log(f"==> deploy: CloudNativePG operator from {r.database_operator_manifest_url}")
        self.runner.run(apply_command(r.database_operator_manifest_url))
        log(f"==> deploy: Barman Cloud plugin from {r.database_plugin_manifest_url}")
        self.runner.run(apply_command(r.database_plugin_manifest_url))
        for deployment in r.database_operator_deployments:
            self.runner.run(
                rollout_status_command(
                    "deployment",
                    deployment,
                    r.database_operator_namespace,
                    self.options.controller_timeout,
                )
            )

    def _wait_for_app(self) -> None:
        r = self.rendered
        log(
            f"==> deploy: waiting for deployment/{r.app_deployment} "
            f"(migrations, then readiness; at most {self.options.rollout_timeout:g}s)"
        )
        try:
            self.runner.run(
                rollout_status_command(
                    "deployment", r.app_deployment, r.namespace, self.options.rollout_timeout
                )
            )
        except CommandFailed as error:
            self._roll_back(f"the rollout of {self.image} did not finish: {error}")

    def _install_monitoring_stack(self, values_file: Path) -> None:
        """kube-prometheus-stack at the pinned chart version: its CRDs (server-side, taking
        them over from whoever applied them before), then the chart. Skipped when the
        release already runs that version with these values (conduit_deploy.monitoring)."""
        values = yaml.safe_load(values_file.read_text(encoding="utf-8")) or {}

        def install() -> None:
            crds = self.runner.run(monitoring.crds_command(), capture=True)
            if not self.runner.dry_run and not crds.stdout.strip():
                raise DeployError(
                    f"`{format_command(monitoring.crds_command())}` printed no CRDs: the chart "
                    "would install operators without them"
                )
            self.runner.run(
                apply_command("-", take_over=True),
                stdin=crds.stdout,
                stdin_note=f"the CRDs of {monitoring.STACK_CHART_REFERENCE} (helm show crds)",
            )
            self.runner.run(
                monitoring.upgrade_command(str(values_file), self.options.monitoring_timeout)
            )

        self.runner.note("the monitoring stack's release picks one path: install, upgrade or none")
        chart = monitoring.STACK_CHART_REFERENCE
        paths = monitoring.StackPath
        self.runner.choose(
            lambda: monitoring.stack_path(self.runner, values),
            {
                paths.INSTALL: (f"install, when there is no release of {chart}", install),
                paths.UPGRADE: (
                    f"upgrade, when the release runs another chart or values than {chart} "
                    f"with {values_file}",
                    install,
                ),
                paths.CURRENT: ("nothing, when it runs both", lambda: None),
            },
            describe=monitoring.describe,
        )

    def _apply_monitoring(self) -> None:
        """The app's ServiceMonitor, the database's PodMonitor, the alert rules."""
        monitoring_file = self.rendered.monitoring_file
        if monitoring_file is None:
            return
        log(f"==> deploy: monitoring ({monitoring_file})")
        self.runner.run(apply_command(monitoring_file))

    def _wait_for_address(self) -> str:
        r = self.rendered
        log(f"==> deploy: waiting for the address of gateway/{r.gateway_name}")

        address = wait_for_gateway_address(
            self.runner,
            r.gateway_name,
            r.namespace,
            what=f"gateway {r.gateway_name}",
            timeout=self.options.address_timeout,
            interval=self.options.address_interval,
        )
        if r.public_host:
            log(f"==> deploy: {r.public_host} must resolve to {address} (a DNS A record)")
        url = service_url(address, r.public_host)
        self.runner.outcome(f"==> deploy: {self.environment} is served at {url}")
        return url

    def _wait_for_certificate(self) -> None:
        r = self.rendered
        if not r.certificate_name:
            return
        log(
            f"==> deploy: waiting for certificate/{r.certificate_name} of {r.public_host} "
            f"(Let's Encrypt, HTTP-01; at most {self.options.certificate_timeout:g}s)"
        )
        try:
            self.runner.run(
                certificate_ready_command(
                    r.certificate_name, r.namespace, self.options.certificate_timeout
                )
            )
        except CommandFailed as error:
            raise RolloutFailed(
                f"no certificate for {r.public_host}: {error} (does {r.public_host} resolve "
                f"to the Gateway's address? `kubectl describe certificate,challenges -n "
                f"{r.namespace}` tells why)"
            ) from None

    def _write_env_file(self, url: str) -> None:
        write_env_file(self.runner, self.options.env_file, url)

    def _smoke(self, url: str) -> None:
        def check() -> None:
            log(f"==> deploy: smoke test of {url}")
            try:
                self.smoke(url.rstrip("/"))
            except SmokeFailed as error:
                self._roll_back(str(error))

        self.runner.step(f"conduit-deploy smoke {url.rstrip('/')}", check, planned=None)

    def _prune_secrets(self) -> None:
        """Delete the generated Secrets that neither this release nor the one before uses.

        Each change of a secret value makes a new Secret (its name carries a content
        hash), so they pile up. The previous release's are kept for a rollback.
        """
        r = self.rendered
        self.runner.note(
            "delete the generated Secrets used neither by this release nor the one before"
        )
        secrets_path = dict(r.stages).get("secrets")
        current = {
            obj["metadata"]["name"]
            for obj in yaml.safe_load_all(Path(secrets_path).read_text(encoding="utf-8"))
            if obj
        } if secrets_path else set()  # fmt: skip
        existing = {
            item["metadata"]["name"]
            for item in _items(
                self.runner.run(secrets_command(r.namespace), capture=True, check=False)
            )
        }
        stale = sorted(
            name for name in existing - current - self.secrets_before if _GENERATED.match(name)
        )
        if stale:
            log(f"==> deploy: pruning {len(stale)} old generated Secret(s): {', '.join(stale)}")
            self.runner.run(delete_secrets_command(stale, r.namespace))

    def _revision(self) -> str:
        r = self.rendered
        result = self.runner.run(
            revision_command(r.app_deployment, r.namespace), capture=True, check=False
        )
        return result.stdout.strip() if result.ok else ""

    def _roll_back(self, reason: str) -> None:
        """Return the app to the revision it ran before this deploy, wait, fail the job.

        Only to that revision: when a retried deploy of the same release changed nothing,
        `rollout undo` without a revision would go back one release too far.
        """
        r = self.rendered
        if self.canary is not None and self.canary.started:
            self.canary.abort(reason)  # the stable Deployment was never changed
        deployment = f"deployment/{r.app_deployment}"
        log(f"==> deploy: FAILED: {reason}")
        before = self.revision_before
        if not before:
            raise RolloutFailed(
                f"{reason}; rollback impossible: {deployment} is new, no release ran before"
            )
        now = self._revision()
        if now == before:
            raise RolloutFailed(
                f"{reason}; {deployment} still runs revision {before}, the release from before "
                "this deploy: nothing to roll back"
            )
        log(f"==> deploy: rolling {deployment} back to revision {before}, from before this deploy")
        undo = self.runner.run(
            rollout_undo_command(r.app_deployment, r.namespace, before), capture=True, check=False
        )
        if not undo.ok:
            raise RolloutFailed(
                f"{reason}; rollback impossible: {tail(undo.stderr or undo.stdout, 1)}"
            )
        settled = self.runner.run(
            rollout_status_command(
                "deployment", r.app_deployment, r.namespace, self.options.rollout_timeout
            ),
            check=False,
        )
        state = (
            f"rolled back to revision {before}"
            if settled.ok
            else "rollback started but did not finish in time"
        )
        raise RolloutFailed(f"{reason}; {deployment} {state}")
