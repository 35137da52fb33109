"""Fixtures of the image tier.

Every fixture owns what it starts and removes it afterwards, pass or fail: the Docker
containers (labelled with the run's id), the image built for the run (its layers stay
in the build cache), Envoy, the local registry, the private PostgreSQL server and the
temporary folder. Names start with TEST_RUN_PREFIX (default `conduit-test`) and a
random id, so runs on one machine never collide. KEEP_WORKDIR=1 keeps the folder
(logs, envoy.json) for a look afterwards.

The base image (CONDUIT_BASE_IMAGE, default conduit-base:bookworm) is built once per
machine by docker/build-base-image.sh and reused by every later run.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.image.docker import Container, Docker, DockerError
from tests.image.migrations import Upgrade, gated_upgrades
from tests.image.pg import PostgresServer, scratch_database, shared_server_url
from tests.k8s import envoy_conf
from tests.support import free_port, in_ci, require_program, stop_process, wait_until

ROOT = Path(__file__).resolve().parents[2]
RUN_PREFIX = os.environ.get("TEST_RUN_PREFIX", "conduit-test")
BASE_IMAGE = os.environ.get("CONDUIT_BASE_IMAGE", "conduit-base:bookworm")
MIGRATION_CONTAINERS = 3
BUILD_TIMEOUT_S = 1800  # the first build compiles uWSGI; later ones reuse its layer
READY_TIMEOUT_S = 60
METRICS: list[str] = []  # measurements, printed at the end and kept in reports/
# Run in the server container: RSS and PSS (MiB) of each uWSGI worker, i.e. each child
# of uWSGI's master (the first argument) but the liveness mule (the others), then of the
# front: serve.py (pid 1) and nginx's processes, added up. Pids are the container's. PSS
# counts the pages a worker shares with the master once in the pod.
WORKER_MEMORY = """
import os, re, sys
master, others = sys.argv[1], sys.argv[2:]
def memory(pid):
    rollup = open(f"/proc/{pid}/smaps_rollup").read()
    return {k: int(v) / 1024 for k, v in re.findall(r"^(Rss|Pss):\\s+(\\d+) kB", rollup, re.M)}
front = {"Rss": 0, "Pss": 0}
for pid in filter(str.isdigit, os.listdir("/proc")):
    status = open(f"/proc/{pid}/status").read()
    if re.search(rf"^PPid:\\s+{master}$", status, re.M) and pid not in others:
        kib = memory(pid)
        print("worker", round(kib["Rss"]), round(kib["Pss"]))
    elif pid == "1" or open(f"/proc/{pid}/comm").read().strip() == "nginx":
        for key, value in memory(pid).items():
            front[key] += value
print("front", round(front["Rss"]), round(front["Pss"]))
"""


def unavailable(message: str):
    """Skip with the reason locally; in CI (CI=true) fail, so the tier never passes empty."""
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def pytest_terminal_summary(terminalreporter) -> None:
    if not METRICS:
        return
    terminalreporter.section("image measurements")
    for line in METRICS:
        terminalreporter.write_line(line)
    reports = ROOT / "reports"
    reports.mkdir(exist_ok=True)
    (reports / "image-metrics.txt").write_text("\n".join(METRICS) + "\n")


# --- PostgreSQL -------------------------------------------------------------------


@pytest.fixture
def postgres_url() -> str:
    return shared_server_url()


@pytest.fixture
def fresh_database(postgres_url: str) -> Iterator[str]:
    """A new, empty database on TEST_DATABASE_URL's server, dropped afterwards."""
    with scratch_database(postgres_url, "conduit_image") as url:
        yield url


@pytest.fixture(scope="session")
def run_id() -> str:
    return f"{RUN_PREFIX}-{secrets.token_hex(3)}"


@pytest.fixture(scope="session")
def workdir(run_id: str) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix=f"{run_id}-"))
    folder.chmod(0o755)  # the PostgreSQL server runs as `postgres` inside it
    yield folder
    if os.environ.get("KEEP_WORKDIR") == "1":
        print(f"\nkept {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(workdir: Path) -> Iterator[PostgresServer]:
    """The app's PostgreSQL: a server of this run's own (the tier restarts it)."""
    server = PostgresServer(workdir / "pg", free_port())
    try:
        server.create()
        yield server
    finally:
        server.destroy()


# --- Docker and the image ---------------------------------------------------------


@pytest.fixture(scope="session")
def docker(run_id: str) -> Iterator[Docker]:
    """The Docker CLI against a running engine (started as .ci/start-dockerd.sh does)."""
    binary = require_program("docker")
    if subprocess.run([binary, "info"], capture_output=True, check=False).returncode:
        if os.geteuid() != 0:
            unavailable("the Docker engine is not running (start it: sudo .ci/start-dockerd.sh)")
        started = subprocess.run(
            [ROOT / ".ci" / "start-dockerd.sh"], capture_output=True, text=True, check=False
        )
        if started.returncode:
            pytest.fail(f"the Docker engine did not start: {started.stderr[-1500:]}", pytrace=False)
    client = Docker(binary, f"conduit.test-run={run_id}")
    yield client
    client.remove_run_containers()


@pytest.fixture(scope="session")
def base_image(docker: Docker) -> str:
    """The Debian base of the build: present, or built once for this machine."""
    if docker.has_image(BASE_IMAGE):
        return BASE_IMAGE
    if os.geteuid() != 0 or not shutil.which("debootstrap"):
        unavailable(
            f"the base image {BASE_IMAGE} is missing; building it needs root and debootstrap "
            "(apt-get install debootstrap), or set CONDUIT_BASE_IMAGE to an image present"
        )
    built = subprocess.run(
        [ROOT / "docker" / "build-base-image.sh", BASE_IMAGE],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
    )  # fmt: skip
    if built.returncode:
        pytest.fail(f"docker/build-base-image.sh failed:\n{built.stderr[-3000:]}", pytrace=False)
    return BASE_IMAGE


@dataclass(frozen=True)
class Image:
    ref: str
    id: str
    version: str
    revision: str
    source: str
    base: str


def git(*args: str) -> str:
    result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return result.stdout.strip()


@pytest.fixture(scope="session")
def deploy_tool() -> Callable[..., subprocess.CompletedProcess]:
    """deploy_tool(*args) runs `conduit-deploy` (installed by `make install`)."""
    beside = Path(sys.executable).with_name("conduit-deploy")
    binary = str(beside) if beside.is_file() else require_program("conduit-deploy")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [binary, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
        )

    return run


@pytest.fixture(scope="session")
def image(docker: Docker, base_image: str, run_id: str, deploy_tool) -> Iterator[Image]:
    """docker/Dockerfile built for this run, tagged with `conduit-deploy version`."""
    version = deploy_tool("version", "--tag-only").stdout.strip()
    assert version, "conduit-deploy version --tag-only printed nothing"
    revision = git("rev-parse", "HEAD")
    source = os.environ.get("CI_PROJECT_URL") or git("remote", "get-url", "origin")
    ref = f"{run_id}-conduit:{version}"
    arguments = {"BASE_IMAGE": base_image, "VERSION": version, "REVISION": revision}
    arguments["SOURCE"] = source
    # How pip reaches its index, when the environment says so (build stage only).
    arguments |= {k: os.environ[k] for k in ("PIP_INDEX_URL", "PIP_CERT") if os.environ.get(k)}
    build_args = [item for k, v in arguments.items() for item in ("--build-arg", f"{k}={v}")]
    started = time.monotonic()
    try:
        docker("build", "--network", "host", "--file", "docker/Dockerfile", *build_args,
               "--tag", ref, str(ROOT), timeout=BUILD_TIMEOUT_S)  # fmt: skip
    except DockerError as exc:
        pytest.fail(f"the image did not build: {exc}", pytrace=False)
    METRICS.append(f"image build: {time.monotonic() - started:.0f} s")
    built = Image(ref, docker.inspect(ref, "{{.Id}}"), version, revision, source, base_image)
    size, base_size = (int(docker.inspect(r, "{{.Size}}")) for r in (ref, base_image))
    METRICS.append(
        f"image size: {size / 1e6:.0f} MB, {(size - base_size) / 1e6:.0f} MB on top of "
        f"{base_image} ({base_size / 1e6:.0f} MB)"
    )
    yield built
    # The run's containers go first (they hold the image), then the tag; --no-prune
    # keeps the layers as the next build's cache.
    docker.remove_run_containers()
    docker("rmi", "--no-prune", ref)


@pytest.fixture(scope="session")
def app_settings(workdir: Path, postgres: PostgresServer) -> tuple[str, ...]:
    """`docker run` options giving the app its settings through a private file."""
    env_file = workdir / "app.env"
    env_file.touch(mode=0o600)
    env_file.write_text(
        f"DATABASE_URL={postgres.url}\nCONDUIT_SECRET={secrets.token_urlsafe(48)}\n"
    )
    return ("--env-file", str(env_file))


@pytest.fixture(scope="session")
def migrations(docker: Docker, image: Image, app_settings, postgres) -> list[Upgrade]:
    """Three containers of the init container's command (`flask schema upgrade`, which runs
    `flask db upgrade`) started together against the empty database."""
    command = docker.run_argv(image.ref, "flask", "schema", "upgrade", options=app_settings)
    return gated_upgrades(postgres.url, [(command, None)] * MIGRATION_CONTAINERS)


@dataclass(frozen=True)
class Server:
    container: Container
    url: str  # http://127.0.0.1:PORT

    @property
    def upstream(self) -> str:
        return self.url.removeprefix("http://")


@pytest.fixture(scope="session")
def serve_image(docker: Docker, image: Image, app_settings, migrations, run_id):
    """serve_image(name, image_ref=None, **env) -> a container of the image, ready.

    Every container started is removed at the end of the session.
    """
    if any(upgrade.returncode for upgrade in migrations):
        pytest.fail(
            "the migration containers failed (see the test of the three migration containers)",
            pytrace=False,
        )
    counter = iter(range(1000))

    def serve(role: str, image_ref: str | None = None, **env: str) -> Server:
        port = free_port()
        # As the Deployment runs it: a read-only root with /tmp writable (an emptyDir
        # there), no capabilities, no privilege escalation.
        confined = ("--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
                    "--security-opt", "no-new-privileges")  # fmt: skip
        options = (*app_settings, *confined, "--env", f"PORT={port}")
        options += tuple(item for k, v in env.items() for item in ("--env", f"{k}={v}"))
        name = f"{run_id}-{role}-{next(counter)}"
        started = time.monotonic()
        container = docker.start(image_ref or image.ref, name, options=options)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if not container.running():
                pytest.fail(f"{name} exited:\n{container.logs()}", pytrace=False)
            return requests.get(f"{url}/readyz", timeout=5).status_code == 200

        wait_until(ready, f"{name}: /readyz did not answer 200", READY_TIMEOUT_S,
                   lambda: f"; its log ends:\n{container.logs()}")  # fmt: skip
        METRICS.append(
            f"{role}: container start to /readyz 200 in {time.monotonic() - started:.1f} s"
        )
        return Server(container, url)

    return serve


@pytest.fixture(scope="session")
def server(serve_image: Callable[..., Server], docker: Docker) -> Iterator[Server]:
    """The server container the serving tests share (the image's CMD: nginx and uWSGI)."""
    server = serve_image("server")
    yield server
    # Read inside the container: its pids are the ones uWSGI logs, and process names
    # cannot tell a worker from the mule (pyuwsgi runs under python3, which uWSGI cannot
    # rename).
    log = docker("logs", server.container.name, check=False)
    master = re.findall(r"spawned uWSGI master process \(pid: (\d+)\)", log)
    mules = re.findall(r"spawned uWSGI mule \d+ \(pid: (\d+)\)", log)
    found = docker("exec", server.container.name, "python", "-c", WORKER_MEMORY, *master[:1],
                   *mules, check=False) if master else ""  # fmt: skip
    rows = [line.split() for line in found.splitlines()]
    workers = [row[1:] for row in rows if row[0] == "worker"]
    front = [row[1:] for row in rows if row[0] == "front"]
    if workers:
        METRICS.append(
            "uWSGI workers after the tier's traffic: "
            f"RSS {', '.join(rss for rss, _ in workers)} MiB, "
            f"PSS {', '.join(pss for _, pss in workers)} MiB"
        )
    if front:
        METRICS.append(f"front (serve.py and nginx): RSS {front[0][0]} MiB, PSS {front[0][1]} MiB")


@pytest.fixture(scope="session")
def gateway(server: Server, workdir: Path) -> Iterator[str]:
    """Envoy in front of the server container, routed like the Gateway; its base URL."""
    with envoy_conf.serve(ROOT / "k8s" / "base", server.upstream, workdir / "envoy") as edge:
        yield edge.http


@pytest.fixture(scope="session")
def registry(workdir: Path) -> Iterator[str]:
    """A local Docker registry (docker-registry) on a loopback port; its host:port."""
    binary = require_program("docker-registry")
    port = free_port()
    folder = workdir / "registry"
    folder.mkdir()
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: {secrets.token_hex(16)}\n"
    )
    log = folder / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until(
            lambda: requests.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code == 200,
            "the registry did not answer /v2/", 15,
            lambda: "; its log ends:\n" + log.read_text(errors="replace")[-2000:],
        )  # fmt: skip
        yield f"127.0.0.1:{port}"
    finally:
        stop_process(process)
