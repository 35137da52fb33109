"""uWSGI with the production configuration, and helpers to read what /metrics says.

`start_uwsgi()` serves the app from docker/uwsgi.ini exactly as the image does; the
test changes only what the environment (and, for recycling, extra command-line
options) may change: port, database, worker counts, the metrics directory.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support import free_port, uwsgi_binary

REPO = Path(__file__).resolve().parents[2]


UWSGI_INI = REPO / "docker" / "uwsgi.ini"


BIN = Path(sys.executable).parent


START_TIMEOUT_SECONDS = 60


# Variables of the developer's shell that would change what the server does.
_INHERITED_OUT = ("PROMETHEUS_MULTIPROC_DIR", "PORT", "DATABASE_URL", "CONDUIT_ENV")


def server_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _INHERITED_OUT}
    env.update(
        CONDUIT_ENV="production",
        CONDUIT_SECRET=secrets.token_urlsafe(48),
        DATABASE_URL=database_url,
        FLASK_APP="conduit",
        BCRYPT_LOG_ROUNDS="4",
    )
    env.update(extra)  # may replace the above (CONDUIT_ENV for test-only settings)
    return env


def migrate(database_url: str) -> None:
    result = subprocess.run(
        [str(BIN / "flask"), "db", "upgrade"],
        cwd=REPO,
        env=server_env(database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"flask db upgrade failed:\n{result.stderr}"


@dataclass
class UwsgiServer:
    url: str
    process: subprocess.Popen
    log_path: Path
    metrics_dir: Path
    # Responses the start-up wait itself received, by (route, method, status).
    startup_requests: Counter = field(default_factory=Counter)

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kwargs)

    def scrape(self) -> dict[tuple[str, frozenset], float]:
        response = self.get("/metrics")
        assert response.status_code == 200, response.text
        return samples(response.text)

    def json_logs(self) -> list[dict]:
        """The JSON lines of the server's output (uWSGI's own lines are plain text)."""
        records = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                records.append(json.loads(line))
        return records

    def worker_pids(self) -> set[int]:
        """Running workers, from the metric files every worker creates when it starts."""
        pids = set()
        for path in self.metrics_dir.glob("gauge_livesum_*.db"):
            pid = int(path.stem.rsplit("_", 1)[1])
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            pids.add(pid)
        return pids

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # graceful in docker/uwsgi.ini
            try:
                # Normally 1-2 s. The image's tests prove the graceful stop; here a
                # stop that hangs (seen now and then under threads) only costs time.
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                # The master and every worker: no orphaned worker outlives the test.
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_uwsgi(
    workdir: Path,
    database_url: str,
    *,
    extra_args: tuple[str, ...] = (),
    processes: int = 2,
    threads: int = 4,
    metrics_dir: Path | None = None,
    **env: str,
) -> UwsgiServer:
    port = free_port()
    metrics_dir = metrics_dir or workdir / "prometheus"
    log_path = workdir / f"uwsgi-{port}.log"
    environment = server_env(
        database_url,
        PORT=str(port),
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        UWSGI_PROCESSES=str(processes),
        UWSGI_THREADS=str(threads),
        **env,
    )
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [uwsgi_binary(), "--ini", str(UWSGI_INI), *extra_args],
            cwd=REPO,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a process group of its own, see stop()
        )
    server = UwsgiServer(f"http://127.0.0.1:{port}", process, log_path, metrics_dir)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"uWSGI exited {process.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            response = server.get("/readyz")
        except requests.ConnectionError:
            time.sleep(0.1)
            continue
        server.startup_requests[("/readyz", "GET", str(response.status_code))] += 1
        if response.status_code == 200 and len(server.worker_pids()) >= processes:
            return server
        time.sleep(0.1)
    server.stop()
    pytest.fail(f"uWSGI not ready in {START_TIMEOUT_SECONDS} s:\n{log_path.read_text()[-4000:]}")


def samples(exposition: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a text exposition: (sample name, labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def series(found: dict, name: str, **labels: str) -> dict[frozenset, float]:
    """Samples of one name whose labels include `labels`."""
    wanted = set(labels.items())
    return {
        key_labels: value
        for (sample_name, key_labels), value in found.items()
        if sample_name == name and wanted <= key_labels
    }


def request_totals(found: dict, name: str = "conduit_http_requests_total") -> Counter:
    """(route, method, status) -> count, from one scrape."""
    totals = Counter()
    for key_labels, value in series(found, name).items():
        labels = dict(key_labels)
        totals[(labels["route"], labels["method"], labels["status"])] = int(value)
    return totals


def exposed_names(exposition: str) -> set[str]:
    """Metric names a query may use: sample names, so histograms give _bucket/_sum/_count."""
    return {name for name, _ in samples(exposition)}
