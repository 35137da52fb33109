"""The canary analysis (deploy/conduit_deploy/analysis.py) evaluated by a real Prometheus
over the app's real /metrics.

Prometheus (Debian's, 2.42; prod runs kube-prometheus-stack's 3.x, whose increase,
rate and histogram_quantile mean the same) scrapes uWSGI servers started as the image
starts them (docker/uwsgi.ini), each under the job name the ServiceMonitor gives its
Service in the cluster: the stable set is job="conduit", a canary job="conduit-canary".
Faulty canaries run with the test-only CONDUIT_FAULT_INJECTION (conduit/fault_injection.py).
Load is bounded (a few hundred requests) and spread over several scrapes, as real
traffic is.
"""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
import requests
import yaml
from conduit_deploy import analysis
from conduit_deploy.analysis import Outcome, Selection, Thresholds

from tests.monitoring.support import start_uwsgi
from tests.support import free_port, require_program, stop_process, wait_until

NAMESPACE = "conduit"
SCRAPE_SECONDS = 1
LOAD_SECONDS = 6
WINDOW_SECONDS = 120
THRESHOLDS = Thresholds()  # the defaults prod uses
# job -> (extra environment of its server, API requests it receives)
SERVERS = {
    "conduit": ({}, 240),
    "conduit-canary": ({}, 80),
    "errors-canary": ({"CONDUIT_FAULT_INJECTION": "5xx=0.3"}, 80),
    "slow-canary": ({"CONDUIT_FAULT_INJECTION": "latency=0.3"}, 80),
    "idle-canary": ({}, 0),
}
PATHS = ("/api/articles", "/api/tags")


def drive(url: str, count: int, seconds: float) -> None:
    """`count` GET requests spread evenly over `seconds`, a few at a time."""
    started = time.monotonic()

    def one(index: int) -> None:
        delay = started + seconds * index / count - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        requests.get(url + PATHS[index % len(PATHS)], timeout=10)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(count)))


class Prometheus:
    def __init__(self, url: str):
        self.url = url

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        response = requests.get(self.url + analysis.api_path(expr), timeout=10)
        return analysis.parse_vector(response.text)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory, sqlite_database):
    """Every server of SERVERS under load, scraped by one Prometheus until it has seen
    all the requests sent."""
    binary = require_program("prometheus")
    folder = tmp_path_factory.mktemp("canary")
    servers = {}
    process = None
    try:
        for job, (env, _) in SERVERS.items():
            if env:
                env = {**env, "CONDUIT_ENV": "development"}  # refused in production
            (folder / job).mkdir()
            servers[job] = start_uwsgi(folder / job, sqlite_database, processes=1, threads=4, **env)
        port = free_port()
        config = {
            "global": {"scrape_interval": f"{SCRAPE_SECONDS}s"},
            "scrape_configs": [
                {
                    "job_name": job,
                    "static_configs": [
                        {
                            "targets": [server.url.removeprefix("http://")],
                            "labels": {"namespace": NAMESPACE},
                        }
                    ],
                }
                for job, server in servers.items()
            ],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        log = (folder / "prometheus.log").open("wb")
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        client = Prometheus(f"http://127.0.0.1:{port}")
        wait_until(
            lambda: requests.get(client.url + "/-/ready", timeout=2).ok,
            "Prometheus ready",
            detail=lambda: (folder / "prometheus.log").read_text()[-2000:],
        )
        # As in a cluster, where the stable pods were scraped long before and the canary
        # since it became ready: the first scrape comes some seconds after the start.
        wait_until(
            lambda: len(client.query("up == 1")) == len(servers),
            "Prometheus scraped every server",
            timeout=30,
        )
        with ThreadPoolExecutor(len(servers)) as pool:
            list(
                pool.map(
                    lambda job: drive(servers[job].url, SERVERS[job][1], LOAD_SECONDS),
                    [job for job in servers if SERVERS[job][1]],
                )
            )

        def scraped_everything() -> bool:
            totals = {
                labels["job"]: value
                for labels, value in client.query(
                    'sum by (job) (conduit_http_requests_total{route=~"/api/.*"})'
                )
            }
            return all(totals.get(job, 0) >= count for job, (_, count) in SERVERS.items() if count)

        wait_until(scraped_everything, "Prometheus scraped every request sent", timeout=30)
        yield client
    finally:
        if process is not None:
            stop_process(process)
        for server in servers.values():
            server.stop()


def judge(prometheus: Prometheus, canary_job: str, thresholds: Thresholds = THRESHOLDS):
    selection = Selection(NAMESPACE, stable_job="conduit", canary_job=canary_job)
    return analysis.analyze(prometheus.query, selection, WINDOW_SECONDS, thresholds)


def test_a_healthy_canary_passes(prometheus):
    verdict = judge(prometheus, "conduit-canary")
    assert verdict.outcome is Outcome.PASS, verdict.summary
    assert verdict.canary.errors == 0
    # increase() extrapolates a series sampled over a few seconds by up to about a scrape
    # interval at each end, more when a loaded machine delays scrapes: near what was sent.
    assert 0.5 * 80 <= verdict.canary.requests <= 80 * 1.5
    assert verdict.stable.requests > verdict.canary.requests


def test_a_canary_answering_5xx_fails_with_the_numbers(prometheus):
    verdict = judge(prometheus, "errors-canary")
    assert verdict.outcome is Outcome.FAIL
    assert verdict.canary.error_ratio > 0.1
    assert verdict.stable.error_ratio == 0
    reason = verdict.reasons[0]
    assert reason.startswith("5xx ratio: canary ")
    assert f"of {verdict.canary.requests:.0f})" in reason
    assert "> stable 0.00 % (0 of" in reason


def test_a_slow_canary_fails_on_p99_latency(prometheus):
    verdict = judge(prometheus, "slow-canary")
    assert verdict.outcome is Outcome.FAIL
    assert verdict.canary.p99_seconds >= 0.3
    assert verdict.canary.error_ratio == 0
    reason = verdict.reasons[-1]
    assert reason.startswith("p99 latency: canary ")
    assert reason.endswith(" + 100 ms")


def test_a_canary_without_traffic_is_inconclusive(prometheus):
    # Its probes' requests (/readyz) exist but are not users' traffic.
    verdict = judge(prometheus, "idle-canary")
    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert "no data for idle-canary" in verdict.summary


def test_too_few_requests_are_inconclusive_not_a_pass(prometheus):
    verdict = judge(prometheus, "conduit-canary", replace(THRESHOLDS, min_requests=10_000))
    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert "fewer than the 10000 needed" in verdict.summary


def test_a_refused_query_is_an_error_with_prometheus_reason(prometheus):
    with pytest.raises(analysis.PrometheusError, match=r"refused the query: .*parse error"):
        prometheus.query("sum(")
