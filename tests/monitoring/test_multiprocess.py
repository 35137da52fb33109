"""Folding the metric files of exited workers keeps every total the same.

The files are written here the way prometheus_client's multiprocess mode writes
them (one memory-mapped file per process and metric type), so the tests need no
second process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from conduit.observability import multiprocess
from tests.monitoring.support import samples

REQUESTS = ("conduit_http_requests", "HTTP requests.")
LATENCY = ("conduit_http_request_duration_seconds", "Latency.")
LABELS = ["route", "method", "status"]


def write(path, entries) -> None:
    """entries: (metric, sample name, labels dict, value)."""
    out = MmapedDict(str(path))
    for (metric, help_text), name, labels, value in entries:
        out.write_value(
            mmap_key(metric, name, list(labels), list(labels.values()), help_text), value, 0.0
        )
    out.close()


def worker_files(directory, pid: int, requests: float, fast: float, slow: float) -> None:
    """One worker's files: a counter, a histogram (two buckets used), a live gauge."""
    labels = {"route": "/api/tags", "method": "GET", "status": "200"}
    write(
        directory / f"counter_{pid}.db",
        [(REQUESTS, "conduit_http_requests_total", labels, requests)],
    )
    write(
        directory / f"histogram_{pid}.db",
        [
            (
                LATENCY,
                "conduit_http_request_duration_seconds_bucket",
                {**labels, "le": "0.1"},
                fast,
            ),
            (
                LATENCY,
                "conduit_http_request_duration_seconds_bucket",
                {**labels, "le": "1.0"},
                slow,
            ),
            (
                LATENCY,
                "conduit_http_request_duration_seconds_bucket",
                {**labels, "le": "+Inf"},
                0.0,
            ),
            (
                LATENCY,
                "conduit_http_request_duration_seconds_sum",
                labels,
                fast * 0.05 + slow * 0.5,
            ),
        ],
    )
    write(
        directory / f"gauge_livesum_{pid}.db",
        [
            (
                ("conduit_http_requests_in_flight", "In flight."),
                "conduit_http_requests_in_flight",
                {},
                1.0,
            )
        ],
    )


def exposition(directory) -> dict:
    registry = CollectorRegistry()
    registry.register(multiprocess.LockedMultiProcessCollector(str(directory)))
    return samples(generate_latest(registry).decode())


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_folding_keeps_counter_and_histogram_totals(tmp_path):
    alive, gone = os.getpid(), dead_pid()
    worker_files(tmp_path, alive, requests=5, fast=4, slow=1)
    worker_files(tmp_path, gone, requests=7, fast=2, slow=5)
    before = exposition(tmp_path)

    multiprocess.retire_processes(str(tmp_path), [gone])

    after = exposition(tmp_path)
    in_flight = ("conduit_http_requests_in_flight", frozenset())
    # Everything but the live gauge, which leaves with its process.
    assert {k: v for k, v in after.items() if k != in_flight} == {
        k: v for k, v in before.items() if k != in_flight
    }
    assert before[in_flight] == 2.0
    assert after[in_flight] == 1.0
    labels = frozenset({"route": "/api/tags", "method": "GET", "status": "200"}.items())
    assert after[("conduit_http_requests_total", labels)] == 12
    assert after[("conduit_http_request_duration_seconds_count", labels)] == 12
    assert after[("conduit_http_request_duration_seconds_bucket", labels | {("le", "0.1")})] == 6
    assert after[("conduit_http_request_duration_seconds_bucket", labels | {("le", "1.0")})] == 12
    names = {p.name for p in tmp_path.iterdir()}
    assert not {n for n in names if n.endswith(f"_{gone}.db")}
    assert {"counter_archive.db", "histogram_archive.db"} <= names


def test_folding_again_adds_to_the_archive(tmp_path):
    first, second = dead_pid(), dead_pid()
    worker_files(tmp_path, first, requests=3, fast=3, slow=0)
    multiprocess.retire_processes(str(tmp_path), [first])
    worker_files(tmp_path, second, requests=4, fast=1, slow=3)
    multiprocess.retire_processes(str(tmp_path), [second])

    labels = frozenset({"route": "/api/tags", "method": "GET", "status": "200"}.items())
    found = exposition(tmp_path)
    assert found[("conduit_http_requests_total", labels)] == 7
    assert found[("conduit_http_request_duration_seconds_bucket", labels | {("le", "0.1")})] == 4
    assert found[("conduit_http_request_duration_seconds_bucket", labels | {("le", "+Inf")})] == 7
    assert sorted(p.name for p in tmp_path.glob("*.db")) == [
        "counter_archive.db",
        "histogram_archive.db",
    ]


def test_only_processes_that_no_longer_run_are_folded(tmp_path):
    alive, gone = os.getpid(), dead_pid()
    worker_files(tmp_path, alive, requests=1, fast=1, slow=0)
    worker_files(tmp_path, gone, requests=1, fast=1, slow=0)

    assert multiprocess.retire_exited_processes(str(tmp_path)) == [gone]
    assert multiprocess.process_ids(str(tmp_path)) == {alive}
    assert multiprocess.retire_exited_processes(str(tmp_path)) == []


def test_prepare_empties_only_metric_files(tmp_path):
    directory = tmp_path / "metrics"
    assert multiprocess.prepare_directory(str(directory)) == 0
    worker_files(directory, dead_pid(), requests=1, fast=1, slow=0)
    (directory / multiprocess.LOCK_NAME).touch()
    (directory / "notes.txt").write_text("not ours")

    assert multiprocess.prepare_directory(str(directory)) == 4
    assert [p.name for p in directory.iterdir()] == ["notes.txt"]


def test_multiprocess_mode_refuses_a_process_that_imported_the_client_too_early(tmp_path):
    # This test process imported prometheus_client without PROMETHEUS_MULTIPROC_DIR.
    with pytest.raises(multiprocess.MultiprocessConfigError, match="imported before"):
        multiprocess.check_directory(str(tmp_path))


def test_a_command_run_with_the_variable_set_creates_the_directory(tmp_path, database_url):
    # e.g. `flask db upgrade` in an environment that sets PROMETHEUS_MULTIPROC_DIR
    directory = tmp_path / "not-yet"
    script = (
        "import sys; from conduit import create_app; from tests.support import app_env; "
        "create_app(env=app_env(sys.argv[1]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, database_url],
        env={**os.environ, multiprocess.ENV_VAR: str(directory)},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert directory.is_dir()
