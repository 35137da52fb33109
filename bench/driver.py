"""The load benchmark of the served API (`make bench`, via bench/run.sh).

One run: a fresh PostgreSQL database, migrated and seeded (bench/seed.py); the app
under uWSGI with docker/uwsgi.ini and the production settings of the Deployment
(k8s/base/kustomization.yaml); beside it the smallest Flask app (bench/minimal_app.py)
on the same uWSGI configuration, the ceiling the goals are judged against; then, per
scenario, a short warm-up and a bounded wrk load against 127.0.0.1. SQL statements
per request come from the app itself (X-SQL-Statements, switched on for this server
only). Results go to bench/results/ (results.md, results.json); wrk's full reports, the
server log and optional py-spy profiles to build/bench/.

bench/server.py runs the server and its database, bench/scenarios.py the load; this
module is the run's order and its record.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench import BenchError, mix, pyspy, report, wrk
from bench.report import ScenarioResult
from bench.scenarios import (
    MEMORY,
    RSS_GOAL_MIB,
    Fixtures,
    Scenario,
    choose_fixtures,
    log_in,
    memory_after_mix,
    run_scenario,
    scenarios,
)
from bench.server import (
    BIN,
    DEFAULT_DATABASE_URL,
    REPO,
    SEED_ARGS,
    SERVER_VENV,
    Server,
    database_backends,
    free_port,
    minimal_app_ini,
    programs,
    seed_database,
    server_env,
    shown,
)
from conduit.settings import ConfigError, load_settings, normalise_database_url


def version_of(command: list[str], pattern: str) -> str:
    try:
        output = subprocess.run(  # noqa: S603 - our own command line
            command, capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return "unknown"
    match = re.search(pattern, output.stdout + output.stderr)
    return match.group(1) if match else "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def revision() -> str:
    def git(*args: str) -> str:
        return subprocess.run(  # noqa: S603 - our own command line
            ["git", *args],  # noqa: S607 - git from PATH, like a developer runs it
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    # Only changes that can move the figures make the run "dirty".
    paths = ["conduit", "migrations", "docker", "bench", ":!bench/results"]
    changed = git("status", "--porcelain", "--", *paths)
    return head + ("+changes" if changed else "")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("BENCH_PORT", "0")),
        help="the server's port on 127.0.0.1 (default: a free one)",
    )
    parser.add_argument("--duration", type=int, default=15, help="seconds of load per scenario")
    parser.add_argument(
        "--warm-up", type=int, default=2, help="seconds of warm-up per read scenario"
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="SCENARIO",
        help=f"run these scenarios only (the ceiling always runs; {MEMORY}: the memory mix)",
    )
    parser.add_argument(
        "--profile",
        nargs="+",
        metavar="SCENARIO",
        default=[],
        help="record the workers with py-spy during these scenarios",
    )
    parser.add_argument(
        "--profile-format", choices=("flamegraph", "raw", "speedscope"), default="flamegraph"
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=REPO / "bench" / "results",
        help="where results.md and results.json go",
    )
    parser.add_argument("--logs", type=Path, default=REPO / "build" / "bench")
    parser.add_argument(
        "--server-venv",
        type=Path,
        default=Path(os.environ.get("BENCH_SERVER_VENV", SERVER_VENV)),
        help="the virtualenv the server runs from (default: the image's packages, made by "
        "bench/run.sh)",
    )
    parser.add_argument(
        "--uwsgi-ini",
        type=Path,
        default=REPO / "docker" / "uwsgi.ini",
        help="the uWSGI configuration (to measure a proposed change; results name it)",
    )
    args = parser.parse_args(argv)
    for name in ("duration", "connections", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warm_up < 0:
        parser.error("--warm-up must not be negative")
    return args


@dataclass
class Run:
    """What one run knows: its options, the server's settings, what it measured."""

    args: argparse.Namespace
    wrk: str
    uwsgi: Path
    database_url: str
    load: wrk.Load
    env: dict[str, str]
    settings: dict
    started: float = field(default_factory=time.monotonic)
    load_before: float = field(default_factory=lambda: os.getloadavg()[0])
    fixtures: Fixtures | None = None
    postgres_version: str = ""
    postmaster: int | None = None
    results: list[ScenarioResult] = field(default_factory=list)
    keep_alive: bool = False
    memory: list[dict[str, float]] = field(default_factory=list)
    minimal_rss: list[float] = field(default_factory=list)
    processes: int = 0
    memory_mix: dict | None = None


def prepare(args: argparse.Namespace) -> Run:
    """Check the programs and the settings before anything starts."""
    binary, uwsgi = programs(args.server_venv)
    database_url = normalise_database_url(args.database_url)
    if not database_url.startswith("postgresql"):
        raise BenchError(
            "the benchmark runs on PostgreSQL: --database-url must be postgresql://..."
        )
    args.logs.mkdir(parents=True, exist_ok=True)
    args.port = args.port or free_port()
    env = server_env(database_url, args.port, args.logs)
    try:
        settings = load_settings(args.logs, env)
    except ConfigError as error:
        raise BenchError(f"invalid server settings: {error}") from None
    load = wrk.Load(args.threads, args.connections, args.duration)
    return Run(args, binary, uwsgi, database_url, load, env, settings)


def seed(run: Run) -> None:
    seed_database(run.database_url, run.env, run.args.logs)
    run.fixtures, run.postgres_version, run.postmaster = choose_fixtures(run.database_url)


def chosen_scenarios(run: Run) -> list[Scenario]:
    chosen = scenarios(run.fixtures)
    only = run.args.only
    if only:
        unknown = set(only) - {s.name for s in chosen} - {MEMORY}
        if unknown:
            raise BenchError(f"unknown scenarios: {', '.join(sorted(unknown))}")
        chosen = [s for s in chosen if s.name == "minimal" or s.name in only]
    return chosen


def load_the_servers(run: Run, chosen: list[Scenario], profiler: pyspy.Profiler | None) -> None:
    """The API and the minimal app served side by side, each scenario's load in turn,
    then the workers' memory; both servers are stopped whatever happens."""
    args, env = run.args, run.env
    server = Server(run.uwsgi, args.uwsgi_ini, env, args.port, args.logs / "uwsgi.log")
    minimal_port = free_port()
    minimal = Server(
        run.uwsgi,
        minimal_app_ini(args.uwsgi_ini, args.logs),
        {
            **env,
            "PROMETHEUS_MULTIPROC_DIR": env["PROMETHEUS_MULTIPROC_DIR"] + "-minimal",
            "PORT": str(minimal_port),
        },
        minimal_port,
        args.logs / "minimal-app-uwsgi.log",
        ready_path="/healthz",
    )
    try:
        minimal.start()
        server.start()
        if profiler:
            profiler.attach(server.workers, set(args.profile))
        run.keep_alive = server.keeps_connections_alive()
        context = {
            "token": log_in(server, run.fixtures.email),
            "email": run.fixtures.email,
            "nonce": secrets.token_hex(4),
            "wrk": run.wrk,
            "postmaster": run.postmaster,
            "backends": database_backends(run.database_url),
        }
        servers = {"api": server, "minimal": minimal}
        for scenario in chosen:
            print(f"bench: {scenario.name}: {scenario.method} {scenario.path}", flush=True)
            run.results.append(
                run_scenario(
                    servers[scenario.server],
                    scenario,
                    run.load,
                    args.warm_up,
                    context,
                    args.logs,
                    profiler,
                )
            )
        run.memory = server.worker_memory_mib()
        run.minimal_rss = minimal.worker_rss_mib()
        run.processes = len(server.workers())
    finally:
        server.stop()
        minimal.stop()


def measure_memory_mix(run: Run) -> None:
    if not run.args.only or MEMORY in run.args.only:
        print(f"bench: {MEMORY}: {mix.REQUESTS:,} requests of every kind, fresh server", flush=True)
        run.memory_mix = memory_after_mix(
            run.uwsgi, run.args.uwsgi_ini, run.env, run.args.logs, run.fixtures
        )


def judge(run: Run) -> None:
    ceiling = run.results[0]
    for result in run.results:
        report.judge(
            result, ceiling.requests_per_s, run.keep_alive, report.cpu_per_request(ceiling)
        )


def record(run: Run) -> dict:
    """The run's description: machine, server, load, dataset and memory."""
    args, load, fixtures, engine_options = (
        run.args,
        run.load,
        run.fixtures,
        run.settings["SQLALCHEMY_ENGINE_OPTIONS"],
    )
    return {
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "revision": revision(),
        "elapsed_s": round(time.monotonic() - run.started),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model(),
            "python": platform.python_version(),
            "uwsgi": version_of([str(run.uwsgi), "--version"], r"^(\S+)"),
            "postgresql": run.postgres_version,
            "wrk": version_of([run.wrk, "-v"], r"wrk (?:debian/)?([\d.]+)"),
            # Anything else running shares the CPUs with the run and moves every figure.
            "load_average_before": round(run.load_before, 1),
            "load_average_after": round(os.getloadavg()[0], 1),
        },
        "server": {
            "config": shown(args.uwsgi_ini),
            "virtualenv": shown(args.server_venv),
            "processes": run.processes,
            "threads": int(run.env.get("UWSGI_THREADS", "4")),
            "keep_alive": run.keep_alive,
            "bcrypt_log_rounds": run.settings["BCRYPT_LOG_ROUNDS"],
            "db_pool_size": engine_options.get("pool_size"),
            "db_max_overflow": engine_options.get("max_overflow"),
            "tags_cache_seconds": run.settings["TAGS_CACHE_SECONDS"],
            "sql_statements_header": True,
        },
        "load": {
            "tool": "wrk",
            "threads": load.threads,
            "connections": load.connections,
            "duration_s": load.duration_s,
            "warmup_s": args.warm_up,
        },
        "dataset": (
            f"`python -m bench.seed` {' '.join(SEED_ARGS)}; feed of {fixtures.email} "
            f"({fixtures.feed_size} articles), article {fixtures.slug} "
            f"({fixtures.comments} comments, 99th percentile)"
        ),
        "worker_rss_mib": [round(worker["rss"], 1) for worker in run.memory],
        "minimal_app_worker_rss_mib": [round(mib, 1) for mib in run.minimal_rss],
        "worker_memory_mib": run.memory,
        "rss_goal_mib": RSS_GOAL_MIB,
        "memory_after_mix": run.memory_mix,
        "requests_served": sum(r.requests for r in run.results if r.name != "minimal"),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = prepare(args)
    seed(run)
    chosen = chosen_scenarios(run)
    profiler = pyspy.Profiler(BIN, args.logs, args.profile_format) if args.profile else None
    load_the_servers(run, chosen, profiler)
    measure_memory_mix(run)
    judge(run)
    described = record(run)
    report.write(args.results, described, run.results)
    print()
    print(report.table(run.results))
    print(f"\nbench: {described['elapsed_s']} s; results in {args.results}, logs in {args.logs}")
    if profiler:
        profiler.summarise()
    broken = [r.name for r in run.results if r.goal and r.goal.no_errors and r.failed]
    if broken:
        print(f"bench: errors under load in {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
