"""`conduit-deploy smoke` against the real API: served by Flask on 127.0.0.1, then
behind a real Envoy routed like the cluster's Gateway (/flask/api/... rewritten to /api/...)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def wait_for(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args[0]} exited with {process.returncode}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer 200 within {timeout}s")


@pytest.fixture(scope="module")
def api_url(tmp_path_factory):
    folder = tmp_path_factory.mktemp("live-api")
    env = {
        **os.environ,
        "CONDUIT_ENV": "development",
        "DATABASE_URL": f"sqlite:///{folder / 'conduit.sqlite'}",
        "BCRYPT_LOG_ROUNDS": "4",
        "FLASK_APP": "conduit",
    }
    flask = [sys.executable, "-m", "flask", "--app", "conduit"]
    subprocess.run([*flask, "db", "upgrade"], env=env, cwd=ROOT, check=True, capture_output=True)
    port = free_port()
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(
        [*flask, "run", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz", server)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(server)
        log.close()


def smoke(base_url: str, *options: str) -> subprocess.CompletedProcess:
    script = BIN / "conduit-deploy"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "conduit_deploy.cli"]
    return subprocess.run(
        [*command, "smoke", base_url, *options],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_passed(result: subprocess.CompletedProcess, base_url: str) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"smoke: testing {base_url}"
    assert [line.split()[0] for line in lines[1:-1]] == ["ok"] * 7
    assert lines[-1] == f"smoke: all 7 checks passed against {base_url}"


def test_smoke_passes_against_the_api(api_url):
    assert_passed(smoke(api_url), api_url)


def test_smoke_passes_through_the_gateway_prefix(api_url, tmp_path):
    from tests.k8s import envoy_conf

    upstream = api_url.removeprefix("http://")
    with envoy_conf.serve(ROOT / "k8s" / "base", upstream, tmp_path / "envoy") as edge:
        base_url = f"{edge.http}/flask"
        assert_passed(smoke(base_url), base_url)


def test_smoke_passes_through_a_review_apps_prefix_on_the_dev_gateway(api_url, tmp_path):
    """The review deploy's smoke test, through the dev Gateway and a review app's route."""
    from tests.k8s import envoy_conf
    from tests.k8s.test_review_routes import APP, review_edge_objects

    upstream = api_url.removeprefix("http://")
    objects = review_edge_objects(tmp_path / "render")
    # Only the review app's Service is up: dev's route must not be what answers.
    upstreams = {"conduit": "127.0.0.1:9", f"{APP.namespace}/conduit": upstream}
    with envoy_conf.serve(objects, upstreams, tmp_path / "envoy") as edge:
        base_url = f"{edge.http}{APP.path_prefix}".rstrip("/")
        assert_passed(smoke(base_url), base_url)


def test_smoke_fails_readably_when_the_prefix_is_wrong(api_url):
    result = smoke(f"{api_url}/not-mounted-here", "--ready-timeout", "1")
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1].startswith(
        "  FAIL  service ready: not ready within 1s: GET /readyz -> 404, expected 200"
    )
    *progress, last = result.stderr.splitlines()
    assert progress
    assert all(line.startswith("    GET /readyz: attempt ") for line in progress)
    assert last.startswith("conduit-deploy: error: smoke test failed at 'service ready'")


def test_a_deploys_smoke_user_is_registered_once_then_reused(api_url):
    from conduit_deploy.smoke import Report, SmokeOptions, run_smoke, smoke_user

    user = smoke_user("dev", "a-conduit-secret-of-at-least-32-characters")
    outputs: list[list[str]] = []
    for _ in range(2):
        lines: list[str] = []
        options = SmokeOptions(user=user, ready_timeout=10, ready_interval=0.1)
        assert run_smoke(api_url, options, report=Report(out=lines.append)) == 7
        outputs.append(lines)
    assert outputs[0][2].startswith(f"  ok    register {user.username}: POST /api/users -> 201")
    assert outputs[1][2].startswith(f"  ok    log in {user.username}: POST /api/users/login -> 200")
    # What it created is gone: the user has no article left.
    articles = requests.get(f"{api_url}/api/articles?author={user.username}", timeout=5).json()
    assert articles["articlesCount"] == 0


def test_each_environment_and_secret_has_its_own_smoke_user():
    from conduit_deploy.smoke import smoke_user

    secret = "a-conduit-secret-of-at-least-32-characters"
    dev, again, prod = (
        smoke_user("dev", secret),
        smoke_user("dev", secret),
        smoke_user("prod", secret),
    )
    assert dev == again
    assert dev.username.startswith("smoke-dev-")
    assert prod.username.startswith("smoke-prod-")
    assert dev.password != prod.password
    assert smoke_user("dev", secret + "rotated").username != dev.username
    assert dev.password not in repr(dev)
    assert secret not in dev.password
