"""Verdicts and the results files of the benchmark."""

from __future__ import annotations

import json

import pytest

from bench import report
from bench.report import Goal, ScenarioResult

NO_SOCKET_ERRORS = {"connect": 0, "read": 0, "write": 0, "timeout": 0}


def result(name="articles", rps=1000.0, p99=20.0, statements=1, page_of_1=1, goal=None, **kw):
    return ScenarioResult(
        name=name,
        title=name.title(),
        method="GET",
        path=f"/api/{name}",
        requests=int(rps * 15),
        requests_per_s=rps,
        latency_ms={"mean": 5.0, "p50": 4.0, "p90": 9.0, "p99": p99, "max": 80.0},
        non_2xx=kw.pop("non_2xx", 0),
        socket_errors=kw.pop("socket_errors", dict(NO_SOCKET_ERRORS)),
        sql_statements=statements,
        sql_statements_page_of_1=page_of_1,
        goal=goal,
        **kw,
    )


LIST = Goal(min_share=0.20, max_p99_ms=50, max_statements=4, constant_statements=True)


def test_a_scenario_that_reaches_every_bound_meets_its_goal():
    r = result(rps=1000, p99=49.9, statements=4, page_of_1=4, goal=LIST)
    report.judge(r, ceiling_rps=5000, keep_alive=True)
    assert r.share_of_ceiling == pytest.approx(0.2)
    assert (r.met, r.misses) == (True, [])


@pytest.mark.parametrize(
    ("changes", "miss"),
    [
        ({"rps": 999}, "20% of ceiling < 20%"),
        ({"p99": 50.0}, "p99 50.0 ms"),
        ({"statements": 5, "page_of_1": 5}, "5 SQL statements > 4"),
        ({"statements": 3, "page_of_1": 2}, "grow with the page"),
        ({"non_2xx": 1}, "1 failed requests"),
    ],
)
def test_each_bound_missed_is_named(changes, miss):
    r = result(**{"goal": LIST, **changes})
    report.judge(r, ceiling_rps=5000, keep_alive=True)
    assert r.met is False
    assert any(miss in m for m in r.misses), r.misses


def test_closed_connections_are_failures_only_when_keep_alive_is_on():
    closed = {**NO_SOCKET_ERRORS, "read": 15000}
    r = result(goal=Goal(), socket_errors=closed)
    report.judge(r, ceiling_rps=5000, keep_alive=False)
    assert (r.failed, r.met) == (0, True)
    report.judge(r, ceiling_rps=5000, keep_alive=True)
    assert (r.failed, r.met) == (15000, False)
    timeouts = result(goal=Goal(), socket_errors={**closed, "timeout": 2})
    report.judge(timeouts, ceiling_rps=5000, keep_alive=False)
    assert timeouts.failed == 2


def test_the_cpu_bound_counts_the_server_and_the_database():
    goal = Goal(max_cpu_ms=1.2)
    within = result(goal=goal, app_cpu_ms=0.8, db_cpu_ms=0.4, client_cpu_ms=5.0)
    report.judge(within, ceiling_rps=5000, keep_alive=True)
    assert within.met is True
    over = result(goal=goal, app_cpu_ms=0.8, db_cpu_ms=0.41)
    report.judge(over, ceiling_rps=5000, keep_alive=True)
    assert over.misses == ["1.21 ms CPU app + db > 1.2 ms"]
    unmeasured = result(goal=goal)
    report.judge(unmeasured, ceiling_rps=5000, keep_alive=True)
    assert unmeasured.met is False


def test_a_burst_on_new_connections_counts_closes_as_no_failure():
    closed = {**NO_SOCKET_ERRORS, "read": 300}
    burst = result(goal=Goal(max_p99_ms=1000), socket_errors=closed, new_connections=True)
    report.judge(burst, ceiling_rps=5000, keep_alive=True)
    assert (burst.failed, burst.met) == (0, True)


def test_a_scenario_without_a_goal_has_no_verdict():
    r = result(name="login", rps=8, p99=3000, goal=None)
    report.judge(r, ceiling_rps=5000, keep_alive=False)
    assert r.met is None


RUN = {
    "finished_at": "2026-11-25 16:00 UTC",
    "revision": "abc1234",
    "machine": {"cpus": 2, "cpu_model": "Test CPU", "python": "3.11.7", "uwsgi": "2.0.31",
                "postgresql": "15.18", "wrk": "4.1.0", "load_average_before": 0.4,
                "load_average_after": 2.1},
    "server": {"config": "docker/uwsgi.ini", "processes": 2, "threads": 4, "keep_alive": False,
               "bcrypt_log_rounds": 12, "db_pool_size": 4, "db_max_overflow": 4,
               "tags_cache_seconds": 0},
    "load": {"threads": 2, "connections": 16, "duration_s": 15, "warmup_s": 2},
    "dataset": "seeded",
    "worker_rss_mib": [61.4, 60.1],
}  # fmt: skip


def test_the_results_files_hold_the_table_and_the_machine(tmp_path):
    ceiling = result(name="healthz", rps=4000, statements=0, page_of_1=None)
    timeouts = {**NO_SOCKET_ERRORS, "timeout": 3}
    missed = result(rps=100, goal=LIST, socket_errors=timeouts)
    missed.app_cpu_ms, missed.db_cpu_ms, missed.client_cpu_ms = 1.234, 0.5, 0.266
    ceiling.app_cpu_ms, ceiling.db_cpu_ms, ceiling.client_cpu_ms = 0.2, 0.0, 0.2
    for r in (ceiling, missed):
        report.judge(r, ceiling_rps=4000, keep_alive=False, ceiling_cpu_ms=0.4)
    report.write(tmp_path, RUN, [ceiling, missed])

    data = json.loads((tmp_path / "results.json").read_text())
    assert data["machine"]["cpus"] == 2
    assert [s["name"] for s in data["scenarios"]] == ["healthz", "articles"]
    assert data["scenarios"][1]["met"] is False
    assert data["scenarios"][1]["share_of_ceiling"] == pytest.approx(0.025)

    markdown = (tmp_path / "results.md").read_text()
    assert "2 CPUs (Test CPU), Python 3.11.7, uWSGI 2.0.31, PostgreSQL 15.18" in markdown
    assert "HTTP keep-alive off" in markdown
    assert "load average 0.4 before the run, 2.1 after" in markdown
    assert "| 4,000 | 100 % |" in markdown
    assert "| 100 | 2 % | 20 % |" in markdown  # 0.4 ms against 2 ms of CPU a request
    assert "1.23 + 0.50 + 0.27" in markdown
    assert "| 0 (+3 socket errors) |" in markdown
    assert "Goals: not met for Articles." in markdown
    assert "61, 60 MiB" in markdown


def test_the_workers_shared_memory_is_reported_beside_their_rss(tmp_path):
    memory = [
        {"rss": 80.2, "pss": 45.4, "private": 35.1},
        {"rss": 72.0, "pss": 35.0, "private": 24.2},
    ]
    report.write(tmp_path, {**RUN, "worker_memory_mib": memory}, [result(name="healthz")])
    markdown = (tmp_path / "results.md").read_text()
    assert "Proportional (PSS): 45, 35 MiB; private to each worker: 35, 24 MiB." in markdown
    report.write(tmp_path, RUN, [result(name="healthz")])
    assert "PSS" not in (tmp_path / "results.md").read_text()


def test_the_memory_goal_is_judged_after_the_mix_when_the_run_has_it(tmp_path):
    workers = [
        {"rss": 58.6, "pss": 30.1, "private": 20.0},
        {"rss": 59.4, "pss": 31.0, "private": 21.2},
    ]
    after_mix = {"requests": 10_000, "kinds": {"article list": 3000}, "workers": workers}
    # The end of the run is over the goal, the mix is not: the mix decides.
    run = {**RUN, "worker_rss_mib": [66.0, 64.2], "rss_goal_mib": 60}
    report.write(tmp_path, {**run, "memory_after_mix": after_mix}, [result(name="healthz")])
    markdown = (tmp_path / "results.md").read_text()
    assert (
        "after 10,000 requests of every kind on a fresh server (bench/mix.py), where the goal "
        "is judged: RSS 59, 59 MiB (goal ≤60 MiB: met). Proportional (PSS): 30, 31 MiB"
    ) in markdown
    assert "after 0 requests: 66, 64 MiB." in markdown
    assert "Goals: all met." in markdown

    over = [{**worker, "rss": 61.0} for worker in workers]
    report.write(
        tmp_path,
        {**run, "memory_after_mix": {**after_mix, "workers": over}},
        [result(name="healthz")],
    )
    markdown = (tmp_path / "results.md").read_text()
    assert "RSS 61, 61 MiB (goal ≤60 MiB: **not met**)" in markdown
    assert "Goals: not met for worker RSS ≤60 MiB." in markdown

    # Without the mix (a run of some scenarios), the end of the run is judged.
    report.write(tmp_path, {**run, "memory_after_mix": None}, [result(name="healthz")])
    markdown = (tmp_path / "results.md").read_text()
    assert "of every kind" not in markdown
    assert "66, 64 MiB (goal ≤60 MiB: **not met**)" in markdown
