"""The served A/B: the CPU one lever saves, measured on two uWSGI servers side by side.

    python -m bench.ab article --b-env LOG_LEVEL=WARNING
    python -m bench.ab /api/articles?limit=20 --b-code ../wt/other-branch

Both servers run as `make bench` runs its server (bench/server.py: docker/uwsgi.ini,
the Deployment's and the image's settings, one secret), on the same database; variant
B (or A) differs by environment variables, its uWSGI configuration or its code (another
git worktree). After a warm-up of each, bounded wrk runs alternate between them (A B, B
A, A B, ...), and the CPU time of each server's processes is read from /proc around
each run (and, on a local PostgreSQL, that of the database's backends: the servers
take turns, so what the backends spend during a server's run is that server's). On a
shared machine the absolute figures move by 20-30 % from one minute to the next; two
servers measured in turn over the same minutes move together, so their ratio is what a
run gives.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import BenchError, cpu, wrk
from bench.scenarios import (
    Fixtures,
    Scenario,
    choose_fixtures,
    log_in,
    probe,
    probe_body,
    scenario_load,
    scenarios,
)
from bench.server import (
    DEFAULT_DATABASE_URL,
    REPO,
    SERVER_VENV,
    Server,
    database_backends,
    free_port,
    local_postmaster,
    programs,
    seed_database,
    server_env,
)
from conduit.settings import normalise_database_url

VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Set by the tool for each server: a variant cannot choose them.
OWN_VARIABLES = {"PORT", "PROMETHEUS_MULTIPROC_DIR", "PYTHONPATH"}
MAX_ROUNDS = 50
MAX_DURATION_S = 60
# wrk counts connections it could not open and replies that never came: a server that
# refuses or stalls is broken, whatever its figures. Read and write errors are kept-alive
# connections the server closed, reported but not an error.
FAILING_SOCKET_ERRORS = ("connect", "timeout")
PLACEHOLDER = Fixtures(email="", feed_size=0, tag="", slug="", comments=0)
SCENARIOS = [s.name for s in scenarios(PLACEHOLDER) if s.server == "api"]


@dataclass(frozen=True)
class Variant:
    """One server: its overrides of the environment, its uWSGI configuration, its code."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    ini: Path | None = None  # default: the code's docker/uwsgi.ini
    code: Path = REPO

    @property
    def uwsgi_ini(self) -> Path:
        return self.ini or self.code / "docker" / "uwsgi.ini"

    def describe(self) -> str:
        parts = [f"{name}={value}" for name, value in self.env.items()]
        if self.code != REPO:
            parts.append(f"code {self.code}")
        if self.ini:
            parts.append(f"ini {self.ini}")
        return ", ".join(parts) or "as `make bench` serves"

    def server_env(self, base: dict[str, str], port: int, metrics: Path) -> dict[str, str]:
        """`base` (the benchmark server's environment), this variant's overrides, then
        what each server needs of its own: its port, its metric files, its code first on
        the module path (before the virtualenv's editable install of this repository)."""
        return {
            **base,
            **self.env,
            "PORT": str(port),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
            "PYTHONPATH": str(self.code),
        }


@dataclass(frozen=True)
class Sample:
    """One bounded wrk run against one server."""

    requests: int
    duration_s: float
    cpu_s: float  # the server's processes (master, router, workers) during the run
    non_2xx: int
    socket_errors: dict[str, int]
    # The database's backends during the run (a local PostgreSQL only). The servers take
    # turns, so what the backends spend while one is loaded is that server's.
    db_cpu_s: float | None = None

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cpu_s / max(self.requests, 1)

    @property
    def db_ms_per_request(self) -> float | None:
        return None if self.db_cpu_s is None else 1000 * self.db_cpu_s / max(self.requests, 1)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


@dataclass(frozen=True)
class Summary:
    name: str
    runs: int
    cpu_ms_median: float
    cpu_ms_min: float
    requests_per_s_median: float
    requests: int
    non_2xx: int
    socket_errors: dict[str, int]
    db_ms_median: float | None = None

    @property
    def failures(self) -> list[str]:
        """Why this variant's figures are not to be compared (empty when they are)."""
        found = []
        if self.non_2xx:
            found.append(f"{self.non_2xx} non-2xx responses")
        for kind in FAILING_SOCKET_ERRORS:
            if self.socket_errors.get(kind):
                found.append(f"{self.socket_errors[kind]} {kind} errors")
        return found


def summarise(name: str, samples: Sequence[Sample]) -> Summary:
    if not samples:
        raise ValueError(f"no runs of {name} to summarise")
    cpu_ms = [s.cpu_ms_per_request for s in samples]
    db_ms = [s.db_ms_per_request for s in samples]
    errors: dict[str, int] = {}
    for sample in samples:
        for kind, count in sample.socket_errors.items():
            errors[kind] = errors.get(kind, 0) + count
    return Summary(
        name=name,
        runs=len(samples),
        cpu_ms_median=statistics.median(cpu_ms),
        cpu_ms_min=min(cpu_ms),
        requests_per_s_median=statistics.median(s.requests_per_s for s in samples),
        requests=sum(s.requests for s in samples),
        non_2xx=sum(s.non_2xx for s in samples),
        socket_errors=errors,
        db_ms_median=None if None in db_ms else statistics.median(db_ms),
    )


def table(a: Summary, b: Summary) -> str:
    """The two variants and B/A. The database's column is there when both have it."""
    with_db = a.db_ms_median is not None and b.db_ms_median is not None
    rows = [
        f"{'':8} {'CPU ms/request median (min)':>28}"
        + (f" {'PostgreSQL ms median':>21}" if with_db else "")
        + f" {'requests/s median':>18} {'requests':>9} {'non-2xx':>8}  socket errors",
    ]
    for s in (a, b):
        errors = ", ".join(f"{k} {v}" for k, v in s.socket_errors.items() if v) or "none"
        rows.append(
            f"{s.name:8} {f'{s.cpu_ms_median:.3f} ({s.cpu_ms_min:.3f})':>28}"
            + (f" {s.db_ms_median:>21.3f}" if with_db else "")
            + f" {s.requests_per_s_median:>18,.0f} {s.requests:>9,} {s.non_2xx:>8}  {errors}"
        )
    rows.append(
        f"{f'{b.name}/{a.name}':8} {_ratio(b.cpu_ms_median, a.cpu_ms_median):>28.3f}"
        + (f" {_ratio(b.db_ms_median, a.db_ms_median):>21.3f}" if with_db else "")
        + f" {_ratio(b.requests_per_s_median, a.requests_per_s_median):>18.3f}"
    )
    if with_db:
        total_a, total_b = a.cpu_ms_median + a.db_ms_median, b.cpu_ms_median + b.db_ms_median
        rows.append(
            f"uWSGI + PostgreSQL ms/request medians: {a.name} {total_a:.3f}, "
            f"{b.name} {total_b:.3f}, {b.name}/{a.name} {_ratio(total_b, total_a):.3f}"
        )
    return "\n".join(rows)


def _ratio(b: float, a: float) -> float:
    return b / a if a else float("nan")


def errors(summaries: Sequence[Summary], logs: Path) -> list[str]:
    """One loud line per variant whose runs had errors (the run then exits 1)."""
    return [
        f"ab: ERROR: {s.name} answered {', '.join(s.failures)}: its figures measure "
        f"errors, not the lever (see {logs / f'uwsgi-{s.name}.log'})"
        for s in summaries
        if s.failures
    ]


def order(round_index: int, variants: Sequence[Variant]) -> list[Variant]:
    """A B, then B A, ...: neither always runs first, after the other has warmed the
    caches the two share (PostgreSQL's, the CPU's)."""
    return list(variants) if round_index % 2 == 0 else list(reversed(variants))


def measure(
    server: Server,
    run: Callable[[], wrk.WrkResult],
    backends: Callable[[], list[int]] | None = None,
) -> Sample:
    """One run, with the CPU time the server's processes spent during it, and the
    database backends' when `backends` lists them."""
    result, spent, db_spent = cpu.spent_during(run, server.process.pid, backends)
    return Sample(
        requests=result.requests,
        duration_s=result.duration_s,
        cpu_s=spent,
        non_2xx=result.non_2xx,
        socket_errors=result.socket_errors,
        db_cpu_s=db_spent,
    )


# --- the command line ----------------------------------------------------------------


def parse_assignment(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not VARIABLE.fullmatch(name):
        raise argparse.ArgumentTypeError(f"expected VAR=VALUE, got {text!r}")
    if name in OWN_VARIABLES:
        raise argparse.ArgumentTypeError(
            f"{name} is set by the tool for each server (use --a-code/--b-code for the code)"
        )
    return name, value


def existing_file(text: str) -> Path:
    path = Path(text).resolve()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path


def code_directory(text: str) -> Path:
    path = Path(text).resolve()
    if not (path / "conduit" / "__init__.py").is_file():
        raise argparse.ArgumentTypeError(
            f"{text} holds no conduit package (a checkout or git worktree of this repository)"
        )
    return path


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ab", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "target",
        help=f"a path on the server (GET, e.g. /api/tags) or a scenario of make bench: "
        f"{', '.join(SCENARIOS)}",
    )
    for variant in ("a", "b"):
        upper = variant.upper()
        parser.add_argument(
            f"--{variant}-env",
            type=parse_assignment,
            action="append",
            default=[],
            metavar="VAR=VALUE",
            help=f"an environment variable of {upper}'s server (repeatable)",
        )
        parser.add_argument(
            f"--{variant}-ini",
            type=existing_file,
            help=f"{upper}'s uWSGI configuration (default: docker/uwsgi.ini of its code)",
        )
        parser.add_argument(
            f"--{variant}-code",
            type=code_directory,
            default=REPO,
            help=f"the repository {upper} serves, e.g. a git worktree (default: this one)",
        )
    parser.add_argument("--rounds", type=int, default=5, help="runs of each server")
    parser.add_argument("--duration", type=int, default=3, help="seconds of each run")
    parser.add_argument("--warm-up", type=int, default=2, help="seconds of warm-up per server")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument(
        "--auth",
        action="store_true",
        help="send the token of the seeded user make bench signs in as (scenarios that "
        "need one get it anyway)",
    )
    auth.add_argument("--token", help="send this token (Authorization: Token ...)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="the database both servers use (default: make bench's, as it left it)",
    )
    parser.add_argument(
        "--seed",
        action="store_true",
        help="first drop, recreate and seed that database as make bench does",
    )
    parser.add_argument(
        "--server-venv",
        type=Path,
        default=Path(os.environ.get("BENCH_SERVER_VENV", SERVER_VENV)),
        help="the virtualenv the servers run from (default: make bench's)",
    )
    parser.add_argument("--logs", type=Path, default=REPO / "build" / "bench" / "ab")
    args = parser.parse_args(argv)
    if not args.target.startswith("/") and args.target not in SCENARIOS:
        parser.error(
            f"unknown scenario {args.target!r}: a path starts with /, a scenario is one of "
            f"{', '.join(SCENARIOS)}"
        )
    for name, low, high in (
        ("rounds", 1, MAX_ROUNDS),
        ("duration", 1, MAX_DURATION_S),
        ("threads", 1, 64),
        ("connections", 1, 1000),
    ):
        if not low <= getattr(args, name) <= high:
            parser.error(f"--{name} must be between {low} and {high}")
    if not 0 <= args.warm_up <= MAX_DURATION_S:
        parser.error(f"--warm-up must be between 0 and {MAX_DURATION_S}")
    if args.threads > args.connections:
        parser.error("--connections must be at least --threads (wrk gives each thread one)")
    return args


def variants(args: argparse.Namespace) -> list[Variant]:
    return [
        Variant(
            name=name.upper(),
            env=dict(getattr(args, f"{name}_env")),
            ini=getattr(args, f"{name}_ini"),
            code=getattr(args, f"{name}_code"),
        )
        for name in ("a", "b")
    ]


def target_scenario(target: str, fixtures: Fixtures | None) -> Scenario:
    if target.startswith("/"):
        return Scenario(name="path", title=target, path=target)
    if fixtures is None:
        raise BenchError(f"the scenario {target} needs the seeded PostgreSQL database")
    (scenario,) = [s for s in scenarios(fixtures) if s.name == target]
    return scenario


# --- the run -------------------------------------------------------------------------


def _stop_on_sigterm(signum, _frame) -> None:
    # As Ctrl-C does: the servers are stopped on the way out.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    binary, uwsgi = programs(args.server_venv)
    database_url = normalise_database_url(args.database_url)
    postgres = database_url.startswith("postgresql")
    if args.seed and not postgres:
        raise BenchError("--seed recreates a PostgreSQL database: --database-url is not one")
    args.logs.mkdir(parents=True, exist_ok=True)

    base = server_env(database_url, 0, args.logs)
    if args.seed:
        seed_database(database_url, base, args.logs)
    needs_fixtures = postgres and (args.auth or not args.target.startswith("/"))
    fixtures = choose_fixtures(database_url)[0] if needs_fixtures else None
    # The database's CPU is read from its backends' /proc entries: a local server only.
    local = postgres and local_postmaster(database_url) is not None
    backends = database_backends(database_url) if local else None
    if args.auth and fixtures is None:
        raise BenchError("--auth signs in as a seeded user: it needs make bench's PostgreSQL")
    scenario = target_scenario(args.target, fixtures)

    servers: list[tuple[Variant, Server]] = []
    for variant in variants(args):
        port = free_port()
        metrics = args.logs / f"metrics-{variant.name}"
        shutil.rmtree(metrics, ignore_errors=True)
        metrics.mkdir()
        server = Server(
            uwsgi,
            variant.uwsgi_ini,
            variant.server_env(base, port, metrics),
            port,
            args.logs / f"uwsgi-{variant.name}.log",
            cwd=variant.code,
        )
        servers.append((variant, server))
        print(f"ab: {variant.name}: {variant.describe()}", flush=True)

    load = wrk.Load(args.threads, args.connections, args.duration)
    samples: dict[str, list[Sample]] = {variant.name: [] for variant, _ in servers}
    load_before = os.getloadavg()[0]
    try:
        for _, server in servers:
            server.start()
        token = args.token
        if fixtures and (args.auth or scenario.auth):
            token = token or log_in(servers[0][1], fixtures.email)
        context = {
            "token": token,
            "email": fixtures.email if fixtures else "",
            "nonce": secrets.token_hex(4),
        }
        headers, load, script_env = scenario_load(scenario, load, context)
        if token and "Authorization" not in headers:
            headers["Authorization"] = f"Token {token}"
        body = probe_body(scenario.name, context)

        def run(server: Server, duration_s: int) -> wrk.WrkResult:
            url = f"http://127.0.0.1:{server.port}{scenario.path}"
            bounded = wrk.Load(load.threads, load.connections, duration_s, load.timeout_s)
            return wrk.run(binary, url, scenario.script, bounded, headers, script_env)[0]

        for variant, server in servers:
            if args.warm_up and scenario.warm_up:
                run(server, args.warm_up)
            # One request as the load sends it: a target that fails stops here, named.
            try:
                probe(server, scenario, headers, body)
            except BenchError as error:
                raise BenchError(f"{variant.name}: {error}") from None
        print(
            f"ab: {scenario.method} {scenario.path}: {args.rounds} rounds of "
            f"{args.duration} s per server, wrk -t{load.threads} -c{load.connections}",
            flush=True,
        )
        by_name = {variant.name: server for variant, server in servers}
        for index in range(args.rounds):
            for variant in order(index, [variant for variant, _ in servers]):
                server = by_name[variant.name]
                sample = measure(server, lambda s=server: run(s, args.duration), backends=backends)
                samples[variant.name].append(sample)
                print(
                    f"ab: round {index + 1}/{args.rounds} {variant.name}: "
                    f"{sample.cpu_ms_per_request:.3f} ms CPU/request"
                    + (
                        ""
                        if sample.db_ms_per_request is None
                        else f" + {sample.db_ms_per_request:.3f} PostgreSQL"
                    )
                    + ", "
                    f"{sample.requests_per_s:,.0f} requests/s, {sample.non_2xx} non-2xx",
                    flush=True,
                )
    finally:
        for _, server in servers:
            server.stop()

    a, b = (summarise(name, found) for name, found in samples.items())
    print()
    print(table(a, b))
    print(
        f"\nab: load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}; compare "
        f"{b.name} with {a.name} within this run only; logs in {args.logs}"
    )
    complaints = errors((a, b), args.logs)
    for complaint in complaints:
        print(complaint, file=sys.stderr)
    return 1 if complaints else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        sys.exit(main())
    except (BenchError, wrk.WrkError) as error:
        print(f"ab: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
