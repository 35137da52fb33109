"""Goals, verdicts and the results files (results.json, results.md).

Pure functions of the measured figures, so they are unit-tested (tests/bench).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Goal:
    """What a scenario must reach; None means no bound of that kind."""

    min_share: float | None = None  # of the ceiling (the minimal Flask app), 0..1
    max_p99_ms: float | None = None
    max_cpu_ms: float | None = None  # CPU per request, uWSGI + PostgreSQL
    max_statements: int | None = None
    constant_statements: bool = False  # the same for a page of 1 and of 20
    no_errors: bool = True

    def describe(self) -> str:
        parts = []
        if self.min_share is not None:
            parts.append(f"≥{self.min_share:.0%} of ceiling")
        if self.max_p99_ms is not None:
            parts.append(f"p99 <{self.max_p99_ms:g} ms")
        if self.max_cpu_ms is not None:
            parts.append(f"≤{self.max_cpu_ms:g} ms CPU app + db")
        if self.max_statements is not None:
            parts.append(f"≤{self.max_statements} SQL")
        if self.constant_statements:
            parts.append("SQL constant in page size")
        return ", ".join(parts) or "no errors"


@dataclass
class ScenarioResult:
    name: str
    title: str
    method: str
    path: str
    requests: int
    requests_per_s: float
    latency_ms: dict[str, float]
    non_2xx: int
    socket_errors: dict[str, int]  # connect, read, write, timeout
    sql_statements: int | None  # from X-SQL-Statements on a probe request
    sql_statements_page_of_1: int | None = None  # lists: the same probe with limit=1
    app_cpu_ms: float | None = None  # CPU time of the uWSGI processes per request
    db_cpu_ms: float | None = None  # CPU time of PostgreSQL per request (when local)
    client_cpu_ms: float | None = None  # CPU time of wrk per request
    cpu_share_of_ceiling: float | None = None  # see judge()
    share_of_ceiling: float | None = None
    goal: Goal | None = None
    misses: list[str] = field(default_factory=list)
    new_connections: bool = False  # every request asked for `Connection: close`

    failed: int = 0  # non-2xx and socket errors that are failures (see judge())

    @property
    def met(self) -> bool | None:
        return None if self.goal is None else not self.misses


def failures(result: ScenarioResult, keep_alive: bool) -> int:
    """Failed requests. When a connection is closed after each response (no keep-alive,
    or the client asked for it), wrk counts the close as a read error: not a failure."""
    errors = result.socket_errors
    reads_fail = keep_alive and not result.new_connections
    return (
        result.non_2xx
        + errors["connect"]
        + errors["write"]
        + errors["timeout"]
        + (errors["read"] if reads_fail else 0)
    )


def cpu_per_request(result: ScenarioResult) -> float | None:
    parts = (result.app_cpu_ms, result.db_cpu_ms, result.client_cpu_ms)
    return None if None in parts else sum(parts)


def judge(
    result: ScenarioResult,
    ceiling_rps: float,
    keep_alive: bool,
    ceiling_cpu_ms: float | None = None,
) -> None:
    """Fill in the shares of the ceiling, the failures and what misses the goal.

    The share by CPU compares the CPU time a request costs (app, database and load
    generator together) with a /healthz request's: what the share of requests/s would
    be on a machine that runs nothing else, whatever else ran on this one.
    """
    result.share_of_ceiling = result.requests_per_s / ceiling_rps if ceiling_rps else None
    spent = cpu_per_request(result)
    if ceiling_cpu_ms and spent:
        result.cpu_share_of_ceiling = ceiling_cpu_ms / spent
    result.failed = failures(result, keep_alive)
    goal = result.goal
    if goal is None:
        return
    misses = []
    share = result.share_of_ceiling or 0.0
    if goal.min_share is not None and share < goal.min_share:
        misses.append(f"{share:.0%} of ceiling < {goal.min_share:.0%}")
    if goal.max_p99_ms is not None and result.latency_ms["p99"] >= goal.max_p99_ms:
        misses.append(f"p99 {result.latency_ms['p99']:.1f} ms ≥ {goal.max_p99_ms:g} ms")
    if goal.max_cpu_ms is not None:
        server_cpu = (result.app_cpu_ms or 0.0) + (result.db_cpu_ms or 0.0)
        if result.app_cpu_ms is None or round(server_cpu, 2) > goal.max_cpu_ms:
            misses.append(f"{server_cpu:.2f} ms CPU app + db > {goal.max_cpu_ms:g} ms")
    if goal.max_statements is not None and (
        result.sql_statements is None or result.sql_statements > goal.max_statements
    ):
        misses.append(f"{result.sql_statements} SQL statements > {goal.max_statements}")
    if goal.constant_statements and result.sql_statements != result.sql_statements_page_of_1:
        misses.append(
            f"SQL statements grow with the page ({result.sql_statements_page_of_1} for 1, "
            f"{result.sql_statements} for 20)"
        )
    if goal.no_errors and result.failed:
        misses.append(f"{result.failed} failed requests")
    result.misses = misses


def to_json(run: dict, results: list[ScenarioResult]) -> str:
    scenarios = []
    for result in results:
        entry = asdict(result)
        entry["goal"] = None if result.goal is None else asdict(result.goal)
        entry["met"] = result.met
        scenarios.append(entry)
    return json.dumps({**run, "scenarios": scenarios}, indent=2, ensure_ascii=False) + "\n"


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _statements(result: ScenarioResult) -> str:
    if result.sql_statements is None:
        return "-"
    if result.sql_statements_page_of_1 not in (None, result.sql_statements):
        return f"{result.sql_statements} ({result.sql_statements_page_of_1} for 1)"
    return str(result.sql_statements)


def _failures(result: ScenarioResult) -> str:
    socket = result.failed - result.non_2xx
    return f"{result.non_2xx} (+{socket} socket errors)" if socket else str(result.non_2xx)


def _verdict(result: ScenarioResult) -> str:
    if result.met is None:
        return "-"
    return "yes" if result.met else "**no**: " + "; ".join(result.misses)


def table(results: list[ScenarioResult]) -> str:
    rows = [
        "| Scenario | Requests/s | % of ceiling | by CPU | p50 ms | p99 ms | Non-2xx "
        "| SQL/request | CPU ms/request app + db + wrk | Goal | Met |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for r in results:
        share = None if r.share_of_ceiling is None else 100 * r.share_of_ceiling
        by_cpu = None if r.cpu_share_of_ceiling is None else 100 * r.cpu_share_of_ceiling
        rows.append(
            f"| {r.title} (`{r.method} {r.path}`) | {_number(r.requests_per_s)} "
            f"| {_number(share)} % | {_number(by_cpu)} % | {_number(r.latency_ms['p50'], 1)} "
            f"| {_number(r.latency_ms['p99'], 1)} | {_failures(r)} "
            f"| {_statements(r)} | {_number(r.app_cpu_ms, 2)} + {_number(r.db_cpu_ms, 2)} "
            f"+ {_number(r.client_cpu_ms, 2)} "
            f"| {r.goal.describe() if r.goal else '-'} | {_verdict(r)} |"
        )
    return "\n".join(rows)


def markdown(run: dict, results: list[ScenarioResult]) -> str:
    machine, server, load = run["machine"], run["server"], run["load"]
    rss = ", ".join(f"{mib:.0f}" for mib in run["worker_rss_mib"]) or "-"
    minimal_rss = ", ".join(f"{mib:.0f}" for mib in run.get("minimal_app_worker_rss_mib", []))
    rss_goal = run.get("rss_goal_mib")
    # The goal is judged where it is set: after the memory mix on a fresh server
    # (bench/mix.py); a run without the mix (--only) is judged at its end.
    mix = run.get("memory_after_mix")
    judged = [worker["rss"] for worker in mix["workers"]] if mix else run["worker_rss_mib"]
    rss_met = bool(judged) and max(judged) <= (rss_goal or 0)
    verdict = f" (goal ≤{rss_goal} MiB: {'met' if rss_met else '**not met**'})" if rss_goal else ""
    missed = [r.title for r in results if r.met is False]
    if rss_goal is not None and not rss_met:
        missed.append(f"worker RSS ≤{rss_goal} MiB")
    kept_alive = [r for r in results if not r.new_connections]
    resets = sum(r.socket_errors["read"] + r.socket_errors["write"] for r in kept_alive)
    lines = [
        "# Load benchmark results",
        "",
        f"Run {run['finished_at']} at revision `{run['revision']}` by `make bench`.",
        "",
        f"- Machine: {machine['cpus']} CPUs ({machine['cpu_model']}), "
        f"Python {machine['python']}, uWSGI {machine['uwsgi']}, "
        f"PostgreSQL {machine['postgresql']}, wrk {machine['wrk']}; load average "
        f"{machine['load_average_before']} before the run, {machine['load_average_after']} "
        "after (above 0 means other work shared the CPUs).",
        f"- Server: uWSGI with {server['config']}"
        + (f" from {server['virtualenv']}" if "virtualenv" in server else "")
        + f", {server['processes']} processes x "
        f"{server['threads']} threads, HTTP keep-alive "
        f"{'on' if server['keep_alive'] else 'off (a new connection per request)'}, "
        f"bcrypt cost {server['bcrypt_log_rounds']}, database pool "
        f"{server['db_pool_size']}+{server['db_max_overflow']} per process, "
        f"tags cache {server['tags_cache_seconds']} s.",
        f"- Load: wrk, {load['threads']} threads, {load['connections']} connections, "
        f"{load['duration_s']} s per scenario after a {load['warmup_s']} s warm-up, "
        "all on this machine (client, server and database share the CPUs).",
        f"- Data: {run['dataset']}.",
        *(
            [
                f"- Worker memory after {mix['requests']:,} requests of every kind on a fresh "
                "server (bench/mix.py), where the goal is judged: RSS "
                + ", ".join(f"{worker['rss']:.0f}" for worker in mix["workers"])
                + f" MiB{verdict}."
                + _shared_memory(mix["workers"])
            ]
            if mix
            else []
        ),
        f"- Worker RSS at the end, after {run.get('requests_served', 0):,} requests: {rss} MiB"
        + ("" if mix else verdict)
        + (f"; the minimal app's: {minimal_rss} MiB." if minimal_rss else ".")
        + _shared_memory(run.get("worker_memory_mib", [])),
        (
            f"- Keep-alive: {sum(r.requests for r in kept_alive):,} requests on kept-alive "
            f"connections, {resets} read or write errors (resets)."
            if server["keep_alive"]
            else "- Keep-alive: off."
        ),
        "",
        table(results),
        "",
        "Non-2xx: replies with a status of 400 or more, as wrk counts them (the API never "
        "redirects), and failed connections or timeouts if any"
        + (
            "."
            if server["keep_alive"]
            else "; without keep-alive the server closes every connection after its reply, "
            "and a read error on such a closed connection is not a failure."
        ),
        "",
        "% of ceiling: requests/s against the minimal Flask app's (bench/minimal_app.py, "
        "same uWSGI configuration) in the same run, as the goals are judged. By CPU: the "
        "minimal app's CPU time per request (server and wrk) against the scenario's (app, "
        "PostgreSQL and wrk), which is what the share would be on a machine running nothing "
        "else; when the two differ much, other work was competing for the CPUs.",
        "",
        "Goals: " + ("all met." if not missed else "not met for " + ", ".join(missed) + "."),
        "",
    ]
    return "\n".join(lines)


def write(directory: Path, run: dict, results: list[ScenarioResult]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(to_json(run, results))
    (directory / "results.md").write_text(markdown(run, results))


def _shared_memory(workers: list[dict]) -> str:
    """PSS and private memory of the workers: what they cost the pod, shared pages
    counted once (RSS counts them in every worker)."""
    if not workers:
        return ""
    pss = ", ".join(f"{w['pss']:.0f}" for w in workers)
    private = ", ".join(f"{w['private']:.0f}" for w in workers)
    return f" Proportional (PSS): {pss} MiB; private to each worker: {private} MiB."
