"""The production image end to end, on this machine alone: built from docker/Dockerfile
on a local Debian base, migrated by three containers at once, serving the RealWorld
suite behind Envoy routed like the Gateway, surviving a PostgreSQL restart, shipped
through a registry and stopped gracefully. See docker/README.md."""

from __future__ import annotations

import json
import threading
import time
import uuid

import requests

from tests.image.db_restart import restart_under_load
from tests.image.migrations import assert_applied_once
from tests.image.pg import connect
from tests.postman.newman import run_suite

OCI = "org.opencontainers.image."
HEALTH_TIMEOUT_S = 60  # HEALTHCHECK: first probe after its 15 s interval
STOP_TIMEOUT_S = 40  # above uwsgi.ini's 25 s of mercy, like the pod's grace period
FIND_TOOLS = "for tool in gcc cc pip pip3; do command -v $tool; done; true"
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
# The paths .dockerignore keeps out of the build; find(1) prints any that got in.
UNWANTED = (
    "find / -xdev \\( -path /proc -o -path /sys \\) -prune -o \\( -name node_modules "
    "-o -name .git -o -name '*.sqlite' -o -path '*/site-packages/tests' -o -path /app/tests "
    "\\) -print"
)


# --- the image as built -----------------------------------------------------------


def test_labels_name_version_revision_source_and_base(docker, image):
    """The OCI labels carry the version, the commit, the source URL and the base."""
    labels = json.loads(docker.inspect(image.ref, "{{json .Config.Labels}}"))
    assert labels[OCI + "version"] == image.version
    assert labels[OCI + "revision"] == image.revision
    assert labels[OCI + "source"] == image.source
    assert labels[OCI + "base.name"] == image.base
    env = json.loads(docker.inspect(image.ref, "{{json .Config.Env}}"))
    assert f"CONDUIT_VERSION={image.version}" in env


def test_runs_as_a_numeric_non_root_user(docker, image):
    """The image names a numeric non-root user (runAsNonRoot can check it) and runs as it."""
    user = docker.inspect(image.ref, "{{.Config.User}}")
    uid = user.split(":")[0]
    assert uid.isdigit(), f"USER {user!r} is not numeric"
    assert int(uid) != 0
    assert docker.run_once(image.ref, "id", "-u") == uid


def test_healthcheck_probes_healthz(docker, image):
    """The HEALTHCHECK probes /healthz (liveness), which needs no database."""
    probe = json.loads(docker.inspect(image.ref, "{{json .Config.Healthcheck.Test}}"))
    assert probe[0] == "CMD"
    assert "/healthz" in " ".join(probe)


def test_carries_no_compiler_pip_tests_or_local_data(docker, image):
    """No compiler or pip, and nothing .dockerignore keeps out (tests, .git, SQLite files)."""
    tools = docker.run_once(image.ref, "sh", "-c", FIND_TOOLS)
    assert tools == "", f"found {tools.split()}"
    assert docker.run_once(image.ref, "sh", "-c", UNWANTED + " 2>/dev/null || true") == ""


# What the server imports (conduit/preload.py's modules and the app), then every one of
# those modules whose bytecode file is missing: the interpreter would compile it from
# source at each start, in every process.
UNCOMPILED = """
import os, sys
import conduit.preload, conduit.wsgi
print(sys.flags.optimize)
for module in list(sys.modules.values()):
    cached = getattr(module, "__cached__", None)
    if cached and not os.path.exists(cached):
        print(module.__name__)
"""


def test_the_server_runs_optimised_from_bytecode_built_into_the_image(docker, image):
    """PYTHONOPTIMIZE=2 (no docstrings: less memory per worker) with the bytecode of that
    level compiled at build time for everything the server imports, standard library
    included (the image cannot write it: PYTHONDONTWRITEBYTECODE, non-root user)."""
    env = (
        "--env",
        "CONDUIT_SECRET=" + uuid.uuid4().hex * 2,
        "--env",
        "DATABASE_URL=postgresql+psycopg://nobody:x@127.0.0.1:9/none",  # never connected
    )
    optimize, *uncompiled = docker.run_once(
        image.ref, "python", "-c", UNCOMPILED, options=env
    ).split()
    assert optimize == "2"
    assert uncompiled == []


# --- serving ----------------------------------------------------------------------


def test_three_migration_containers_at_once_apply_each_migration_once(migrations, postgres):
    """Three init containers (`flask schema upgrade`) started together: one migrates, two
    wait, all exit 0."""
    assert_applied_once(migrations, postgres.url)


def test_server_answers_ready_and_alive(server):
    """The image's CMD (uWSGI) serves /readyz (database reachable) and /healthz."""
    for path in ("/readyz", "/healthz"):
        response = requests.get(server.url + path, timeout=5)
        assert response.status_code == 200, response.text[:300]


def test_postman_suite_passes_through_the_gateway_prefix(gateway, workdir):
    """Every assertion of the RealWorld suite passes through Envoy's /flask/ rewrite."""
    run = run_suite(f"{gateway}/flask/api", workdir / "newman")
    assert run.passed, run.account()


def test_deploy_smoke_passes_through_the_gateway_prefix(gateway, deploy_tool):
    """`conduit-deploy smoke`, as the pipeline runs it after a deploy, passes through Envoy."""
    result = deploy_tool("smoke", f"{gateway}/flask")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def test_docker_reports_the_server_healthy(server):
    """Docker's own HEALTHCHECK of the running container ends `healthy`."""
    assert server.container.wait_for_health(HEALTH_TIMEOUT_S) == "healthy"


def test_postgres_restart_under_write_load_loses_no_acknowledged_write(server, postgres):
    """A database restart under writes: JSON 503s meanwhile, then writes again, none lost."""
    outcome = restart_under_load(f"{server.url}/api", postgres.url, postgres.stop, postgres.start)
    assert not outcome.problems, "\n".join(outcome.problems + outcome.summary)
    print("\n".join(outcome.summary))
    state = server.container.inspect("{{.RestartCount}} {{.State.Running}}")
    assert state == "0 true", "the server container was restarted"


# --- shipping and stopping --------------------------------------------------------


def test_registry_round_trip_returns_the_same_image(docker, image, registry):
    """Pushed to a registry and pulled back by its version tag, it is the same image."""
    name = image.ref.split(":")[0]
    remote = f"{registry}/{name}:{image.version}"
    docker("tag", image.ref, remote)
    try:
        docker("push", remote, timeout=600)
        # The registry holds this very image: its config is the image id, every layer is there.
        manifest = requests.get(
            f"http://{registry}/v2/{name}/manifests/{image.version}",
            headers={"Accept": MANIFEST_V2}, timeout=10,
        ).json()  # fmt: skip
        assert manifest["config"]["digest"] == image.id
        for layer in manifest["layers"]:
            blob = requests.head(f"http://{registry}/v2/{name}/blobs/{layer['digest']}", timeout=10)
            assert blob.status_code == 200, layer["digest"]
        docker("rmi", remote)
        docker("pull", remote, timeout=600)
        assert docker.inspect(remote, "{{.Id}}") == image.id
    finally:
        docker("rmi", "--no-prune", remote, check=False)


def test_stop_when_idle_exits_zero(serve_image):
    """`docker stop` (SIGTERM) of an idle server: a prompt exit with code 0."""
    server = serve_image("idle")
    server.container.stop(STOP_TIMEOUT_S)
    code = server.container.wait(10)
    assert code == 0, f"exit code {code} (None: still running):\n{server.container.logs()}"


def test_sigterm_during_a_request_finishes_it_then_exits_zero(serve_image, postgres):
    """SIGTERM while a request is in flight: it still answers 201, then the exit is 0."""
    # A bcrypt cost of 2^15 makes registration take seconds (about 2 s here unloaded, and
    # well under uwsgi.ini's 25 s of mercy on a busy machine): a slow request of the API.
    server = serve_image("sigterm", BCRYPT_LOG_ROUNDS="15")
    name = f"sigterm{uuid.uuid4().hex[:10]}"
    answer: dict = {}

    def register() -> None:
        user = {"username": name, "email": f"{name}@example.com", "password": "a long password"}
        try:
            answer["response"] = requests.post(
                f"{server.url}/api/users", json={"user": user}, timeout=60
            )
        except requests.RequestException as exc:
            answer["error"] = exc
        answer["at"] = time.monotonic()

    client = threading.Thread(target=register)
    client.start()
    time.sleep(1)
    signalled = time.monotonic()
    server.container.signal("TERM")
    code = server.container.wait(STOP_TIMEOUT_S)
    client.join(timeout=60)
    log = f"\nthe container's log ends:\n{server.container.logs()}"

    assert "error" not in answer, f"the request in flight got no answer: {answer['error']}{log}"
    response = answer["response"]
    assert response.status_code == 201, response.text[:300] + log
    assert response.json()["user"]["username"] == name
    assert answer["at"] > signalled, "the request was answered before SIGTERM came"
    assert code == 0, f"exit code {code} (None: still running){log}"
    with connect(postgres.url) as connection:
        rows = connection.execute("SELECT count(*) FROM users WHERE username = %s", (name,))
        assert rows.fetchone()[0] == 1
