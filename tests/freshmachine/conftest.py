"""A container built like a new user's machine, with this repository cloned into it.

The container shares the host's network (the registries are reached through the
host's proxy, whose CA the image trusts) and sees two read-only mounts: a bare clone of
this repository, and the folder of the pinned RealWorld files (REALWORLD_DIR inside).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import upstream
from tests.freshmachine.support import (
    CA_BUNDLE,
    DEFAULT_CACHE,
    HERE,
    HOME,
    RELEASES,
    USER_ID,
    Machine,
    Served,
    base_image,
    machine_image,
    report,
)
from tests.support import ROOT, free_port

MEASURED: dict[str, float] = {}


def pytest_terminal_summary(terminalreporter) -> None:
    if MEASURED:
        report(MEASURED, terminalreporter)


def _build(*args: str, timeout: float) -> None:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode:
        pytest.fail(f"{args[0]} failed:\n{(result.stdout + result.stderr)[-3000:]}")


@pytest.fixture(scope="module", params=sorted(RELEASES))
def release(request) -> str:
    """Every test of the tier runs on each Debian release a new user may have."""
    return request.param


@pytest.fixture(scope="module")
def image(release: str, tmp_path_factory) -> str:
    """The machine's image, rebuilt only when the base or the Dockerfile changed."""
    base = base_image(release)
    _build(
        "env", f"DEBIAN_SUITE={release}", str(ROOT / "docker" / "build-base-image.sh"), base,
        timeout=900,
    )  # fmt: skip
    context = tmp_path_factory.mktemp("freshmachine-context")
    shutil.copy(HERE / "Dockerfile", context / "Dockerfile")
    shutil.copy(CA_BUNDLE, context / CA_BUNDLE.name)
    tag = machine_image(release)
    _build(
        "docker", "build", "--quiet", "--network", "host",
        "--build-arg", f"BASE_IMAGE={base}", "--tag", tag, str(context),
        timeout=600,
    )  # fmt: skip
    return tag


@pytest.fixture(scope="session")
def bare_clone(tmp_path_factory) -> Path:
    """The committed state of this repository, as a user would clone it."""
    target = tmp_path_factory.mktemp("freshmachine-repo") / "conduit.git"
    _build("git", "clone", "--quiet", "--bare", "--no-local", str(ROOT), str(target), timeout=120)
    # Owned by the machine's user, as a clone from their Git server would be (git refuses
    # to read a repository another user owns).
    _build("chown", "-R", f"{USER_ID}:{USER_ID}", str(target), timeout=60)
    return target


def cache_volumes() -> list[str]:
    """docker run options that mount the download cache, or none for a cold run."""
    folder = os.environ.get("FRESHMACHINE_CACHE", DEFAULT_CACHE)
    MEASURED["npm cache kept between runs (1 = yes)"] = 1 if folder else 0
    if not folder:
        return []
    path = Path(folder) / "npm"
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, USER_ID, USER_ID)
    return ["--volume", f"{path}:/srv/cache/npm", "--env", "npm_config_cache=/srv/cache/npm"]


def upstream_volumes() -> list[str]:
    """Every pinned upstream group's folder, mounted read-only under its variable (the
    machine reaches PyPI and npm, not the upstream hosts)."""
    options = []
    for group, pins in upstream.load_pins().items():
        pin = next(iter(pins.values()))
        folder = upstream.resolve(pin)
        for _ in Path(pin.name).parts:
            folder = folder.parent
        inside = f"/srv/upstream/{group}"
        options += ["--volume", f"{folder}:{inside}:ro", "--env", f"{pin.env}={inside}"]
    return options


@pytest.fixture(scope="module")
def machine(release: str, image: str, bare_clone: Path) -> Iterator[Machine]:
    name = f"conduit-freshmachine-{release}-{secrets.token_hex(4)}"
    subprocess.run(
        [
            "docker", "run", "--detach", "--rm", "--name", name, "--network", "host",
            "--volume", f"{bare_clone}:/srv/conduit.git:ro",
            *upstream_volumes(),
            # This machine reaches PyPI and npm through a TLS-inspecting proxy.
            "--env", f"PIP_CERT={CA_BUNDLE}", "--env", f"NODE_EXTRA_CA_CERTS={CA_BUNDLE}",
            # The host's network is shared: the Postman tier's uWSGI takes a free port.
            "--env", f"POSTMAN_PORT={free_port()}",
            *cache_volumes(),
            image,
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    machine = Machine(name, release)
    try:
        yield machine
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)
        MEASURED.update(
            {f"{release}: {what}": value for what, value in machine.measurements.items()}
        )


@pytest.fixture(scope="module")
def served(machine: Machine) -> Served:
    """`git clone` then `make run`, timed until the API first answers."""
    port = free_port()
    started = time.monotonic()
    cloned = machine.sh(f"git clone --quiet /srv/conduit.git {HOME}/conduit", timeout=120)
    assert cloned.returncode == 0, cloned.stderr
    machine.start(
        f"cd {HOME}/conduit && make run PORT={port} >{HOME}/make-run.log 2>&1;"
        f" echo $? >{HOME}/make-run.exit"
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = started + 600
    while time.monotonic() < deadline:
        probe = subprocess.run(
            ["curl", "--silent", "--fail", "--max-time", "5", f"{url}/tags"],
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            machine.measurements["clone to first answer of make run (s)"] = round(
                time.monotonic() - started, 1
            )
            break
        if machine.sh(f"test -e {HOME}/make-run.exit", timeout=30).returncode == 0:
            break
        time.sleep(1)
    log = machine.sh(f"cat {HOME}/make-run.log", timeout=30).stdout
    assert "clone to first answer of make run (s)" in machine.measurements, (
        f"make run did not answer on {url}:\n{log[-3000:]}"
    )
    machine.measurements["virtualenv after make run (MB)"] = machine.size_mb(
        f"{HOME}/conduit/.venv"
    )
    return Served(url, log)
