"""Fixtures of the Postman tier: the API served by uWSGI with the production
configuration (docker/uwsgi.ini), on a migrated SQLite or PostgreSQL database."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.image.pg import scratch_database, shared_server_url
from tests.support import free_port, stop_process, uwsgi_binary, wait_until

ROOT = Path(__file__).resolve().parents[2]
LOG_TAIL_LINES = 30


def production_env(database_url: str, workdir: Path) -> dict[str, str]:
    # Nothing of the developer's shell that would change the server (PORT, UWSGI_*).
    env = {k: v for k, v in os.environ.items() if k != "PORT" and not k.startswith("UWSGI_")}
    env.update(
        FLASK_APP="conduit",
        CONDUIT_ENV="production",
        CONDUIT_SECRET=secrets.token_urlsafe(48),
        DATABASE_URL=database_url,
        PROMETHEUS_MULTIPROC_DIR=str(workdir / "metrics"),
    )
    return env


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture
def serve_api(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """serve_api(database_url) -> the base URL of uWSGI serving the migrated app.

    Every server started is stopped (SIGTERM, as Kubernetes does) afterwards.
    """
    processes: list[subprocess.Popen] = []

    def serve(database_url: str) -> str:
        env = production_env(database_url, tmp_path)
        migration = subprocess.run(
            [sys.executable, "-m", "flask", "db", "upgrade"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert migration.returncode == 0, migration.stdout[-2000:] + migration.stderr[-2000:]
        port = free_port()
        log = tmp_path / f"uwsgi-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [uwsgi_binary(), "--ini", str(ROOT / "docker" / "uwsgi.ini")],
                cwd=ROOT, env={**env, "PORT": str(port)}, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        processes.append(process)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if process.poll() is not None:
                pytest.fail(f"uWSGI exited with {process.returncode}:\n{tail(log)}")
            return requests.get(f"{url}/readyz", timeout=5).status_code == 200

        wait_until(ready, "uWSGI did not answer /readyz 200", 60, lambda: "\n" + tail(log))
        return url

    yield serve
    for process in processes:
        stop_process(process, timeout=40)  # above uwsgi.ini's 25 s of mercy


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A fresh database on TEST_DATABASE_URL's server, dropped afterwards."""
    with scratch_database(shared_server_url(), "conduit_postman") as url:
        yield url
