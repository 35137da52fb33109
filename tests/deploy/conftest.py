"""Fixtures for the deploy tool: a recording runner, a fake clock, a fake render, and the
command line run with them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conduit_deploy import tools
from conduit_deploy.cli import Context, main
from conduit_deploy.runner import Invocation, Result, Runner
from conduit_deploy.waiting import Clock

from .signatures import signed_world
from .support import RENDERED_SECRETS, FakeClock, ci_environ


@dataclass
class Recorder:
    """A Runner whose executor records each call and answers from a script.

    respond(args) returns a Result, or None for success with no output.
    """

    respond: Callable[[tuple[str, ...]], Result | None] = lambda args: None
    calls: list[Invocation] = field(default_factory=list)
    echoed: list[str] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)

    def runner(self, dry_run: bool = False, clock: Clock | None = None) -> Runner:
        return Runner(
            dry_run=dry_run,
            which=lambda name: f"/usr/bin/{name}",
            echo=self.echoed.append,
            plan=self.planned.append,
            executor=self._execute,
            clock=clock,
        )

    def _execute(self, call: Invocation) -> Result:
        self.calls.append(call)
        return self.respond(call.args) or Result(call.args, 0)

    @property
    def commands(self) -> list[tuple[str, ...]]:
        return [call.args for call in self.calls]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def run_command(recorder, clock, capsys, tmp_path):
    """run_command("deploy", "dev", ..., **context) -> (exit code, stdout, stderr): the
    command line with the recording runner, the fake clock, the CI variables of
    ci_environ() (or `environ`) and its files under tmp_path/out; `context` sets the
    Context's other stand-ins (render, smoke, preflight, utc_now, sigstore: by default
    an image the tests' pipelines signed, tests/deploy/signatures.py)."""

    def run(*argv: str, environ=None, **context) -> tuple[int, str, str]:
        context.setdefault("sigstore", signed_world())
        ctx = Context(
            environ=environ or ci_environ(),
            runner_factory=recorder.runner,
            clock=clock,
            **context,
        )
        code = main([*argv, "--out", str(tmp_path / "out")], ctx)
        out, err = capsys.readouterr()
        return code, out, err

    return run


# What the fake download of the edge's release manifest returns (tests/deploy/test_deploy.py).
EDGE_MANIFEST = b"kind: Example  # Envoy Gateway's install.yaml\n"


@dataclass
class FakeRendered:
    kops_file: Path
    stages: list[tuple[str, Path]]
    monitoring_file: Path | None
    namespace: str = "conduit"
    database_cluster: str = "conduit-db"
    app_deployment: str = "conduit"
    gateway_name: str = "conduit"
    gateway_class_file: Path = Path("k8s/cluster/gatewayclass.yaml")
    public_host: str = ""
    certificate_name: str = ""
    edge_manifest_url: str = "https://example.invalid/gateway/v1.9.0/install.yaml"
    edge_manifest_sha256: str = hashlib.sha256(EDGE_MANIFEST).hexdigest()
    edge_namespace: str = "envoy-gateway-system"
    edge_deployment: str = "envoy-gateway"
    database_operator_manifest_url: str = "https://example.invalid/cnpg-1.30.0.yaml"
    database_plugin_manifest_url: str = "https://example.invalid/barman-cloud/manifest.yaml"
    database_operator_namespace: str = "cnpg-system"
    database_operator_deployments: tuple[str, ...] = ("cnpg-controller-manager", "barman-cloud")
    monitoring_stack_values: Path | None = None


STAGE_NAMES = ("namespace", "secrets", "database", "app", "ingress")
# Helm values of the monitoring stack as the fake render writes them; `helm get values
# --output json` of a release installed with them prints MONITORING_VALUES_JSON.
STACK_VALUES = "prometheus:\n  prometheusSpec:\n    retention: 15d\ngrafana:\n  adminPassword: ''\n"
MONITORING_VALUES_JSON = (
    '{"grafana":{"adminPassword":""},"prometheus":{"prometheusSpec":{"retention":"15d"}}}'
)


@dataclass
class FakeRender:
    """Stands in for conduit_deploy.render.render: writes placeholder files and
    remembers the values it was given."""

    monitoring: bool = True
    managed_database: bool = False  # render then writes no database objects
    public_host: str = ""  # served over HTTPS on this name, with a Certificate
    kubernetes_version: str = "1.35.5"
    received: list = field(default_factory=list)

    def __call__(self, values, out_dir: Path, runner: Runner) -> FakeRendered:
        self.received.append(values)
        out_dir.mkdir(parents=True, exist_ok=True)
        kops = out_dir / "kops.yaml"
        kops.write_text(f"kind: Cluster\nspec:\n  kubernetesVersion: {self.kubernetes_version}\n")
        stages = []
        for index, name in enumerate(STAGE_NAMES, start=1):
            path = out_dir / f"{index:02d}-{name}.yaml"
            empty = name == "database" and self.managed_database
            if name == "secrets":
                path.write_text(
                    "".join(
                        f"---\nkind: Secret\nmetadata: {{name: {n}}}\n" for n in RENDERED_SECRETS
                    )
                )
            else:
                path.write_text("" if empty else f"kind: Example\nmetadata: {{name: {name}}}\n")
            stages.append((name, path))
        monitoring = stack_values = None
        if self.monitoring:
            monitoring = out_dir / "monitoring.yaml"
            monitoring.write_text("kind: ServiceMonitor\n")
            stack_values = out_dir / "kube-prometheus-stack-values.yaml"
            stack_values.write_text(STACK_VALUES)
        rendered = FakeRendered(kops, stages, monitoring, monitoring_stack_values=stack_values)
        if self.public_host:
            rendered.public_host = self.public_host
            rendered.certificate_name = "conduit-tls"
        if self.managed_database:
            rendered.database_cluster = ""
        return rendered


@pytest.fixture
def fake_render() -> FakeRender:
    return FakeRender()


@dataclass
class FakePreflight:
    """Stands in for the preflight's cloud calls: records which environment it checked."""

    calls: list[tuple[str, bool]] = field(default_factory=list)

    def __call__(self, environment: str, settings: object, *, registry: bool) -> None:
        self.calls.append((environment, registry))


@pytest.fixture
def preflight() -> FakePreflight:
    return FakePreflight()


@dataclass
class Downloads:
    """Stands in for the network: what each URL returns, and which were fetched."""

    payload: bytes = EDGE_MANIFEST
    urls: list[str] = field(default_factory=list)

    def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        return self.payload


@pytest.fixture
def downloads(monkeypatch) -> Downloads:
    fake = Downloads()
    monkeypatch.setattr(tools, "_fetch", fake)
    return fake
