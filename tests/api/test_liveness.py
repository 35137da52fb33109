"""The liveness mule's answers (conduit/liveness.py) from a given worker table.

Under uWSGI the table is uwsgi.workers(); tests/image/test_uwsgi_config.py probes the
mule of docker/uwsgi.ini itself, while the workers are busy and after the master died.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import requests

from conduit.liveness import server, verdict
from tests.support import free_port


def worker(pid: int, status: str = "idle") -> dict:
    return {"id": 1, "pid": pid, "status": status}


def everyone_exists(_pid: int) -> bool:
    return True


def test_busy_workers_are_alive():
    workers = [worker(101, "busy"), worker(102, "busy")]
    assert verdict(workers, everyone_exists) == (200, {"status": "ok", "workers": 2})


def test_one_worker_left_is_enough():
    workers = [worker(0), worker(102)]  # pid 0: not (re)spawned yet
    assert verdict(workers, everyone_exists) == (200, {"status": "ok", "workers": 1})


@pytest.mark.parametrize(
    "workers",
    [[], [worker(0), worker(0)], [worker(101, "cheap")]],
    ids=["none", "not spawned", "cheaped"],
)
def test_no_worker_is_503(workers):
    assert verdict(workers, everyone_exists) == (503, {"status": "no workers"})


def test_a_worker_whose_process_is_gone_does_not_count():
    workers = [worker(101), worker(102)]
    assert verdict(workers, lambda pid: pid == 102)[1]["workers"] == 1
    assert verdict(workers, lambda pid: False)[0] == 503


@pytest.fixture
def serve() -> Iterator:
    started = []

    def serve(workers: list[dict]) -> str:
        httpd = server(free_port(), lambda: workers)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        started.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield serve
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


def test_the_server_answers_healthz_as_json(serve):
    # This process's own pid exists: a worker table naming it is alive.
    import os

    url = serve([worker(os.getpid())])
    response = requests.get(f"{url}/healthz", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "workers": 1}
    assert response.headers["Cache-Control"] == "no-store"
    assert requests.head(f"{url}/healthz", timeout=5).status_code == 200


def test_the_server_says_503_without_workers(serve):
    url = serve([])
    response = requests.get(f"{url}/healthz", timeout=5)
    assert response.status_code == 503
    assert response.json() == {"status": "no workers"}


def test_the_server_answers_nothing_else(serve):
    url = serve([])
    for path in ("/", "/readyz", "/api/tags", "/healthz/x"):
        response = requests.get(f"{url}{path}", timeout=5)
        assert response.status_code == 404, path
        assert "errors" in response.json()
