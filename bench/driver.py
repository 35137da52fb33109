"""The load benchmark of the served API (`make bench`, via bench/run.sh).

One run: a fresh PostgreSQL database, migrated and seeded (bench/seed.py); the app
under uWSGI with docker/uwsgi.ini and the production settings of the Deployment
(k8s/base/kustomization.yaml); beside it the smallest Flask app (bench/minimal_app.py)
on the same uWSGI configuration, the ceiling the goals are judged against; then, per
scenario, a short warm-up and a bounded wrk load against 127.0.0.1. SQL statements
per request come from the app itself (X-SQL-Statements, switched on for this server
only). Results go to bench/results/ (results.md, results.json); wrk's full reports, the
server log and optional py-spy profiles to build/bench/.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml
from dockerfile_parse import DockerfileParser
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bench import BenchError, cpu, mix, pyspy, report, wrk
from bench.report import Goal, ScenarioResult
from conduit import models  # noqa: F401 - registers the tables in the metadata
from conduit.extensions import db as conduit_db
from conduit.settings import ConfigError, load_settings, normalise_database_url

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# The server's own virtualenv: what the image installs, none of .venv's tools (Makefile).
SERVER_VENV = REPO / "build" / "bench" / "server-venv"
# .ci/start-postgres.sh's server at its default port (5400 + prod's major); bench/run.sh
# passes the one it started.
DEFAULT_DATABASE_URL = "postgresql+psycopg://conduit:conduit@127.0.0.1:5418/conduit_bench"
CONFIGMAP = REPO / "k8s" / "base" / "kustomization.yaml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
# Of the image's environment, what the interpreter and the C library read when the
# process starts (PYTHONOPTIMIZE, MALLOC_*): they change what a worker holds. Not
# PYTHONDONTWRITEBYTECODE: the image compiles its bytecode when it is built, the
# benchmark's virtualenv keeps what its first run compiles.
INTERPRETER_PREFIXES = ("PYTHON", "MALLOC_")
NOT_INTERPRETER = {"PYTHONDONTWRITEBYTECODE"}
DATASET = {
    "users": 200,
    "articles": 2000,
    "tags": 50,
    "follows": 1000,
    "favorites": 5000,
    "comments": 4000,
    "seed": 1,
}
SEED_ARGS = [item for key, value in DATASET.items() for item in (f"--{key}", str(value))]
SEED_PASSWORD = "benchmark-password"  # noqa: S105 - of the seeded users, on a throwaway database

# Shares are of the minimal Flask app's requests/s; CPU is uWSGI's and PostgreSQL's.
LIST_GOAL = Goal(min_share=0.20, max_p99_ms=50, constant_statements=True, max_cpu_ms=1.2)
READ_GOAL = Goal(min_share=0.30)
# 200 clients, each request on a new connection: bursts must wait in the listen backlog,
# not be dropped (and resent after 1, 3, 7 s of SYN retransmission).
BURST_CONNECTIONS = 200
BURST_GOAL = Goal(max_p99_ms=1000)
RSS_GOAL_MIB = 60
# The --only name of the memory goal's own measure (bench/mix.py), run after the scenarios.
MEMORY = "memory"
MINIMAL_APP = "bench.minimal_app:app"


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    path: str
    goal: Goal | None = None
    method: str = "GET"
    script: str = "get.lua"
    auth: bool = False
    warm_up: bool = True
    page_probe: bool = False  # also probe with limit=1: statements must not grow
    server: str = "api"  # or "minimal": the minimal Flask app's server
    connections: int | None = None  # instead of the run's --connections
    new_connections: bool = False  # `Connection: close` on every request


@dataclass(frozen=True)
class Fixtures:
    """What the scenarios read, chosen from the seeded data by fixed rules."""

    email: str  # the user who follows the most authors: the feed's reader
    feed_size: int
    tag: str  # the most used tag
    slug: str  # an article at the 99th percentile of comments: a busy one
    comments: int


def scenarios(f: Fixtures) -> list[Scenario]:
    return [
        Scenario("minimal", "Ceiling: minimal Flask app", "/healthz", server="minimal"),
        Scenario("healthz", "API's /healthz (middleware, no database)", "/healthz"),
        Scenario(
            "articles",
            "Article list, anonymous",
            "/api/articles?limit=20",
            dataclasses.replace(LIST_GOAL, max_statements=4),
            page_probe=True,
        ),
        Scenario(
            "articles_auth",
            "Article list, authenticated",
            "/api/articles?limit=20",
            LIST_GOAL,
            auth=True,
            page_probe=True,
        ),
        Scenario(
            "articles_tag",
            f"Article list by tag ({f.tag})",
            f"/api/articles?tag={f.tag}&limit=20",
            LIST_GOAL,
            page_probe=True,
        ),
        Scenario(
            "feed",
            f"Feed ({f.feed_size} articles)",
            "/api/articles/feed?limit=20",
            LIST_GOAL,
            auth=True,
            page_probe=True,
        ),
        Scenario("article", "Single article", f"/api/articles/{f.slug}", READ_GOAL),
        Scenario(
            "comments",
            f"Comments of an article ({f.comments})",
            f"/api/articles/{f.slug}/comments",
            READ_GOAL,
        ),
        Scenario("tags", "Tags", "/api/tags", Goal()),
        Scenario(
            "burst",
            f"Burst: {BURST_CONNECTIONS} clients, a new connection per request",
            "/api/articles?limit=20",
            BURST_GOAL,
            connections=BURST_CONNECTIONS,
            new_connections=True,
        ),
        Scenario(
            "login",
            "Login (bcrypt)",
            "/api/users/login",
            method="POST",
            script="login.lua",
            warm_up=False,
        ),
        Scenario(
            "create",
            "Article create",
            "/api/articles",
            method="POST",
            script="create_article.lua",
            auth=True,
            warm_up=False,
        ),
    ]


# --- settings ------------------------------------------------------------------------


def deployment_settings(path: Path = CONFIGMAP) -> dict[str, str]:
    """The app settings the Kubernetes Deployment gets (its ConfigMap literals)."""
    try:
        kustomization = yaml.safe_load(path.read_text())
        (config,) = [
            c for c in kustomization["configMapGenerator"] if c["name"] == "conduit-config"
        ]
        return dict(literal.split("=", 1) for literal in config["literals"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as error:
        raise BenchError(f"cannot read the production settings from {path}: {error}") from None


def image_settings(path: Path = DOCKERFILE) -> dict[str, str]:
    """The interpreter settings the image's final stage puts in its environment."""
    try:
        envs = DockerfileParser(str(path), cache_content=True).envs
    except OSError as error:
        raise BenchError(f"cannot read the image's settings from {path}: {error}") from None
    return {
        name: value
        for name, value in envs.items()
        if name.startswith(INTERPRETER_PREFIXES) and name not in NOT_INTERPRETER
    }


def server_env(database_url: str, port: int, logs: Path) -> dict[str, str]:
    """Production settings (the Deployment's, the image's interpreter settings), then the
    caller's own overrides, then what the run needs."""
    env = {**deployment_settings(), **image_settings(), **os.environ}
    env.pop("PORT", None)
    # Metrics files of our own: the master empties this directory when it starts, so
    # sharing the default with another server on this machine would break both.
    if "PROMETHEUS_MULTIPROC_DIR" not in env:
        metrics = logs.resolve() / "metrics"
        metrics.mkdir(parents=True, exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    env.update(
        CONDUIT_ENV="production",
        CONDUIT_SECRET=secrets.token_urlsafe(48),
        DATABASE_URL=database_url,
        PORT=str(port),
        FLASK_APP="conduit",
        CONDUIT_SQL_STATEMENTS_HEADER="1",
    )
    return env


# --- database ------------------------------------------------------------------------


def fresh_database(url: str) -> None:
    """Drop and recreate the benchmark database, so every run starts from the same data."""
    target = make_url(url)
    if not target.database:
        raise BenchError(f"the database URL names no database: {url}")
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            name = connection.dialect.identifier_preparer.quote(target.database)
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            connection.execute(text(f"CREATE DATABASE {name}"))
    except Exception as error:
        raise BenchError(f"cannot recreate the database {target.database}: {error}") from None
    finally:
        admin.dispose()


def run_python(args: list[str], env: dict[str, str], log: Path) -> str:
    """This virtualenv's Python (or a console script of it) with `args`, from the repo."""
    completed = subprocess.run(  # noqa: S603 - our own command line
        [sys.executable, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    log.write_text(completed.stdout + completed.stderr)
    if completed.returncode != 0:
        raise BenchError(f"{' '.join(args)} failed: {completed.stderr.strip()[-400:]}")
    return completed.stdout


def seed_database(url: str, env: dict[str, str], logs: Path) -> None:
    """A fresh database `url` with the benchmark's dataset (the users' password is
    SEED_PASSWORD); `env` runs the migrations, logs go to `logs`."""
    print(f"bench: recreating {make_url(url).database}, migrating, seeding", flush=True)
    fresh_database(url)
    run_python(["-m", "flask", "db", "upgrade"], env, logs / "migrate.log")
    seeded = run_python(
        ["-m", "bench.seed", *SEED_ARGS, "--password", SEED_PASSWORD], env, logs / "seed.log"
    )
    print("bench: " + seeded.splitlines()[0], flush=True)


def choose_fixtures(url: str) -> tuple[Fixtures, str, int | None]:
    """The scenarios' user, tag and article; the server's version and main process."""
    engine = create_engine(url)
    try:
        with engine.connect() as db:
            email, feed_size = db.execute(
                text(
                    "SELECT u.email, (SELECT count(*) FROM articles a JOIN follows f2"
                    "   ON f2.followed_id = a.author_id WHERE f2.follower_id = u.id)"
                    " FROM users u JOIN follows f ON f.follower_id = u.id"
                    " GROUP BY u.id ORDER BY count(*) DESC, u.id LIMIT 1"
                )
            ).one()
            tag = db.execute(
                text(
                    "SELECT t.name FROM tags t JOIN article_tags at ON at.tag_id = t.id"
                    " GROUP BY t.id ORDER BY count(*) DESC, t.id LIMIT 1"
                )
            ).scalar_one()
            slug, comments = db.execute(
                text(
                    "WITH counted AS (SELECT a.id, a.slug, count(c.id) AS n FROM articles a"
                    "   LEFT JOIN comments c ON c.article_id = a.id GROUP BY a.id)"
                    " SELECT slug, n FROM counted WHERE n = (SELECT percentile_disc(0.99)"
                    "   WITHIN GROUP (ORDER BY n) FROM counted) ORDER BY id LIMIT 1"
                )
            ).one()
            version = db.execute(text("SHOW server_version")).scalar_one()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
            # Fresh statistics, as autovacuum would have them on a live database.
            tables = ", ".join(table.name for table in conduit_db.metadata.sorted_tables)
            db.execute(text(f"VACUUM ANALYZE {tables}"))
    finally:
        engine.dispose()
    fixtures = Fixtures(email, feed_size, tag, slug, comments)
    return fixtures, version.split()[0], local_postmaster(url)


def local_postmaster(url: str) -> int | None:
    """The PostgreSQL server's main process when it runs on this machine, else None."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as db:
            # While this backend runs: its parent is the server's main process.
            return _postmaster(db.execute(text("SELECT pg_backend_pid()")).scalar_one())
    finally:
        engine.dispose()


def database_backends(url: str):
    """A function listing the PostgreSQL backends connected to the benchmark's database:
    their CPU is the database's share of a request. The server may be shared with other
    work, so the whole server's CPU time would not be."""
    engine = create_engine(url, poolclass=NullPool)

    def backends() -> list[int]:
        with engine.connect() as db:
            return list(
                db.execute(
                    text(
                        "SELECT pid FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).scalars()
            )

    return backends


def _postmaster(backend_pid: int) -> int | None:
    """The local PostgreSQL server's main process, whose tree runs every backend; None
    when the server is not on this machine (its CPU time is then not reported)."""
    parent = cpu.parent_of(backend_pid)
    try:
        if parent and Path(f"/proc/{parent}/comm").read_text().strip() == "postgres":
            return parent
    except OSError:
        pass
    return None


# --- server --------------------------------------------------------------------------


class Server:
    """uWSGI with docker/uwsgi.ini, as the image runs it, on 127.0.0.1:port."""

    def __init__(
        self,
        uwsgi: Path,
        ini: Path,
        env: dict[str, str],
        port: int,
        log: Path,
        ready_path: str = "/readyz",
        cwd: Path = REPO,
    ):
        self.uwsgi, self.ini, self.env, self.port, self.log = uwsgi, ini, env, port, log
        self.ready_path, self.cwd = ready_path, cwd
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("w") as out:
            self.process = subprocess.Popen(  # noqa: S603 - our own command line
                [str(self.uwsgi), "--ini", str(self.ini)],
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"uWSGI exited {self.process.returncode}:\n{self.log_tail()}")
            try:
                if self.request("GET", self.ready_path)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise BenchError(f"uWSGI did not become ready in 60 s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # graceful in docker/uwsgi.ini
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def request(
        self, method: str, path: str, headers: dict | None = None, body: dict | None = None
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            payload = None if body is None else json.dumps(body)
            all_headers = dict(headers or {})
            if payload is not None:
                all_headers["Content-Type"] = "application/json"
            connection.request(method, path, body=payload, headers=all_headers)
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        finally:
            connection.close()

    def keeps_connections_alive(self) -> bool:
        """Whether a second request can reuse the connection of the first."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            for _ in range(2):
                connection.request("GET", "/healthz")
                response = connection.getresponse()
                response.read()
                if response.will_close:
                    return False
            return True
        except (http.client.HTTPException, OSError):
            return False
        finally:
            connection.close()

    def workers(self) -> list[int]:
        """The worker processes: the master's children but its HTTP router."""
        assert self.process is not None
        routers = set(
            map(int, re.findall(r"spawned uWSGI http \d+ \(pid: (\d+)\)", self.log_text()))
        )
        return [pid for pid in cpu.children(self.process.pid) if pid not in routers]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def worker_memory_mib(self) -> list[dict[str, float]]:
        """Each worker's resident memory (rss), its proportional share of pages shared
        with other processes (pss) and the pages only it holds (private): RSS counts
        every shared page in full in every worker, PSS adds up to what the pod uses."""
        found = []
        for pid in self.workers():
            try:
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue
            kib = {
                name: int(value)
                for name, value in re.findall(r"^(\w+):\s+(\d+) kB", rollup, re.MULTILINE)
            }
            private = kib.get("Private_Clean", 0) + kib.get("Private_Dirty", 0)
            found.append(
                {
                    "rss": round(kib.get("Rss", 0) / 1024, 1),
                    "pss": round(kib.get("Pss", 0) / 1024, 1),
                    "private": round(private / 1024, 1),
                }
            )
        return found

    def worker_rss_mib(self) -> list[float]:
        return [memory["rss"] for memory in self.worker_memory_mib()]


def log_in(server: Server, email: str, password: str = SEED_PASSWORD) -> str:
    """A token of the seeded user `email`, from the server's own login."""
    status, _, content = server.request(
        "POST", "/api/users/login", body={"user": {"email": email, "password": password}}
    )
    if status != 200:
        raise BenchError(f"cannot log in as {email}: {status} {content[:200]!r}")
    return json.loads(content)["user"]["token"]


class KeptAlive:
    """A bench.mix sender: one HTTP/1.1 connection for every request, a new one only
    when the server closes it."""

    def __init__(self, port: int):
        self.port = port
        self.connection: http.client.HTTPConnection | None = None

    def __call__(self, method: str, path: str, headers: dict, body: dict | None) -> mix.Response:
        if self.connection is None:
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        payload = None if body is None else json.dumps(body)
        if payload is not None:
            headers = {**headers, "Content-Type": "application/json"}
        self.connection.request(method, path, body=payload, headers=headers)
        response = self.connection.getresponse()
        content = response.read()
        if response.will_close:
            self.close()
        return response.status, content

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def memory_after_mix(
    uwsgi: Path, ini: Path, env: dict[str, str], logs: Path, fixtures: Fixtures
) -> dict:
    """Each worker's memory after bench/mix.py's requests, on a server of its own started
    for it (the issue's measure: see bench/mix.py)."""
    port = free_port()
    server = Server(uwsgi, ini, {**env, "PORT": str(port)}, port, logs / "memory-uwsgi.log")
    send = KeptAlive(port)
    try:
        server.start()
        reader = mix.Reader(
            fixtures.email,
            SEED_PASSWORD,
            log_in(server, fixtures.email),
            fixtures.slug,
            fixtures.tag,
        )
        kinds = mix.run(send, reader, nonce=secrets.token_hex(4))
        return {
            "requests": sum(kinds.values()),
            "kinds": dict(kinds),
            "workers": server.worker_memory_mib(),
        }
    except (OSError, http.client.HTTPException) as error:
        raise BenchError(f"memory mix: {error}\n{server.log_tail()}") from None
    finally:
        send.close()
        server.stop()


# --- one scenario --------------------------------------------------------------------


def statements(headers: http.client.HTTPMessage) -> int | None:
    value = headers.get("X-SQL-Statements")
    return None if value is None else int(value)


def probe(server: Server, scenario: Scenario, headers: dict, body: dict | None) -> dict:
    """One request as the load sends it: it must succeed; its statement count is kept."""
    status, response_headers, content = server.request(
        scenario.method, scenario.path, headers, body
    )
    if not 200 <= status < 300:
        raise BenchError(
            f"{scenario.name}: {scenario.method} {scenario.path} answered {status}: "
            f"{content[:300]!r}"
        )
    found = {"sql_statements": statements(response_headers)}
    if scenario.page_probe:
        small = scenario.path.replace("limit=20", "limit=1")
        status, response_headers, _ = server.request("GET", small, headers)
        found["sql_statements_page_of_1"] = statements(response_headers)
    return found


def probe_body(name: str, context: dict) -> dict | None:
    """The body of the probe request: what the scenario's Lua script sends."""
    if name == "login":
        return {"user": {"email": context["email"], "password": SEED_PASSWORD}}
    if name == "create":
        title = f"Benchmark probe {context['nonce']}"
        article = {"title": title, "description": "probe", "body": "probe", "tagList": []}
        return {"article": article}
    return None


def minimal_app_ini(ini: Path, logs: Path) -> Path:
    """`ini` serving the minimal Flask app instead of the API, every other line kept."""
    text = ini.read_text()
    lines = [line for line in text.splitlines() if line.startswith("module = ")]
    if len(lines) != 1:
        raise BenchError(f"{ini}: expected one `module = ` line to swap for the minimal app")
    swapped = text.replace(lines[0], f"module = {MINIMAL_APP}\npythonpath = {REPO}")
    path = logs / "minimal-app-uwsgi.ini"
    path.write_text(swapped)
    return path


def scenario_load(
    scenario: Scenario, load: wrk.Load, context: dict
) -> tuple[dict[str, str], wrk.Load, dict[str, str]]:
    """What wrk sends for `scenario`: its headers, its load and its script's environment."""
    headers = {"Authorization": f"Token {context['token']}"} if scenario.auth else {}
    if scenario.new_connections:
        headers["Connection"] = "close"
    if scenario.connections:
        load = dataclasses.replace(load, connections=scenario.connections)
    env = {
        "BENCH_EMAIL": context["email"],
        "BENCH_PASSWORD": SEED_PASSWORD,
        "BENCH_NONCE": context["nonce"],
    }
    return headers, load, env


def run_scenario(
    server: Server,
    scenario: Scenario,
    load: wrk.Load,
    warm_up_s: int,
    context: dict,
    logs: Path,
    profiler: pyspy.Profiler | None,
) -> ScenarioResult:
    url = f"http://127.0.0.1:{server.port}{scenario.path}"
    headers, load, env = scenario_load(scenario, load, context)
    binary = context["wrk"]
    if scenario.warm_up and warm_up_s:
        wrk.run(binary, url, scenario.script, _with_duration(load, warm_up_s), headers, env)
    # After the warm-up, so caches are in the state the load meets (e.g. /api/tags).
    found = probe(server, scenario, headers, probe_body(scenario.name, context))
    running = profiler.start(scenario.name, load.duration_s) if profiler else None
    (result, output), app_cpu, db_cpu = cpu.spent_during(
        lambda: wrk.run(binary, url, scenario.script, load, headers, env),
        server.process.pid,
        context["backends"] if context["postmaster"] else None,
    )
    if running:
        profiler.finish(running)
    per_request = 1000 / max(result.requests, 1)
    (logs / f"wrk-{scenario.name}.txt").write_text(output)
    return ScenarioResult(
        name=scenario.name,
        title=scenario.title,
        method=scenario.method,
        path=scenario.path,
        requests=result.requests,
        requests_per_s=result.requests_per_s,
        latency_ms=result.latency_ms,
        non_2xx=result.non_2xx,
        socket_errors=result.socket_errors,
        goal=scenario.goal,
        app_cpu_ms=app_cpu * per_request,
        db_cpu_ms=None if db_cpu is None else db_cpu * per_request,
        client_cpu_ms=result.cpu_s * per_request,
        new_connections=scenario.new_connections,
        **found,
    )


def _with_duration(load: wrk.Load, seconds: int) -> wrk.Load:
    return wrk.Load(load.threads, load.connections, seconds, load.timeout_s)


# --- the run -------------------------------------------------------------------------


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick), for the server to take."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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


def _shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


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


def programs(server_venv: Path) -> tuple[str, Path]:
    """wrk, and the uWSGI of the server's virtualenv: the run needs both."""
    binary = shutil.which("wrk")
    if binary is None:
        raise BenchError("wrk is not installed (apt-get install wrk)")
    uwsgi = server_venv / "bin" / "uwsgi"
    if not uwsgi.exists():
        raise BenchError(
            f"uWSGI is not installed in {server_venv} (bench/run.sh or "
            f"`make {_shown(SERVER_VENV)}/.installed` creates that virtualenv)"
        )
    return binary, uwsgi


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    binary, uwsgi = programs(args.server_venv)
    database_url = normalise_database_url(args.database_url)
    if not database_url.startswith("postgresql"):
        raise BenchError(
            "the benchmark runs on PostgreSQL: --database-url must be postgresql://..."
        )
    args.logs.mkdir(parents=True, exist_ok=True)
    args.port = args.port or free_port()
    load = wrk.Load(args.threads, args.connections, args.duration)
    env = server_env(database_url, args.port, args.logs)
    try:
        settings = load_settings(args.logs, env)
    except ConfigError as error:
        raise BenchError(f"invalid server settings: {error}") from None
    engine_options = settings["SQLALCHEMY_ENGINE_OPTIONS"]

    started = time.monotonic()
    load_before = os.getloadavg()[0]
    seed_database(database_url, env, args.logs)
    fixtures, postgres_version, postmaster = choose_fixtures(database_url)

    chosen = scenarios(fixtures)
    if args.only:
        unknown = set(args.only) - {s.name for s in chosen} - {MEMORY}
        if unknown:
            raise BenchError(f"unknown scenarios: {', '.join(sorted(unknown))}")
        chosen = [s for s in chosen if s.name == "minimal" or s.name in args.only]
    profiler = pyspy.Profiler(BIN, args.logs, args.profile_format) if args.profile else None

    server = Server(uwsgi, args.uwsgi_ini, env, args.port, args.logs / "uwsgi.log")
    minimal = Server(
        uwsgi,
        minimal_app_ini(args.uwsgi_ini, args.logs),
        {**env, "PROMETHEUS_MULTIPROC_DIR": env["PROMETHEUS_MULTIPROC_DIR"] + "-minimal"},
        free_port(),
        args.logs / "minimal-app-uwsgi.log",
        ready_path="/healthz",
    )
    minimal.env["PORT"] = str(minimal.port)
    results: list[ScenarioResult] = []
    try:
        minimal.start()
        server.start()
        if profiler:
            profiler.attach(server.workers, set(args.profile))
        keep_alive = server.keeps_connections_alive()
        context = {
            "token": log_in(server, fixtures.email),
            "email": fixtures.email,
            "nonce": secrets.token_hex(4),
            "wrk": binary,
            "postmaster": postmaster,
            "backends": database_backends(database_url),
        }
        servers = {"api": server, "minimal": minimal}
        for scenario in chosen:
            print(f"bench: {scenario.name}: {scenario.method} {scenario.path}", flush=True)
            results.append(
                run_scenario(
                    servers[scenario.server],
                    scenario,
                    load,
                    args.warm_up,
                    context,
                    args.logs,
                    profiler,
                )
            )
        memory = server.worker_memory_mib()
        rss = [worker["rss"] for worker in memory]
        minimal_rss = minimal.worker_rss_mib()
        processes = len(server.workers())
        served = sum(r.requests for r in results if r.name != "minimal")
    finally:
        server.stop()
        minimal.stop()
    memory_mix = None
    if not args.only or MEMORY in args.only:
        print(f"bench: {MEMORY}: {mix.REQUESTS:,} requests of every kind, fresh server", flush=True)
        memory_mix = memory_after_mix(uwsgi, args.uwsgi_ini, env, args.logs, fixtures)

    ceiling = results[0]
    for result in results:
        report.judge(result, ceiling.requests_per_s, keep_alive, report.cpu_per_request(ceiling))
    run = {
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "revision": revision(),
        "elapsed_s": round(time.monotonic() - started),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model(),
            "python": platform.python_version(),
            "uwsgi": version_of([str(uwsgi), "--version"], r"^(\S+)"),
            "postgresql": postgres_version,
            "wrk": version_of([binary, "-v"], r"wrk (?:debian/)?([\d.]+)"),
            # Anything else running shares the CPUs with the run and moves every figure.
            "load_average_before": round(load_before, 1),
            "load_average_after": round(os.getloadavg()[0], 1),
        },
        "server": {
            "config": _shown(args.uwsgi_ini),
            "virtualenv": _shown(args.server_venv),
            "processes": processes,
            "threads": int(env.get("UWSGI_THREADS", "4")),
            "keep_alive": keep_alive,
            "bcrypt_log_rounds": settings["BCRYPT_LOG_ROUNDS"],
            "db_pool_size": engine_options.get("pool_size"),
            "db_max_overflow": engine_options.get("max_overflow"),
            "tags_cache_seconds": settings["TAGS_CACHE_SECONDS"],
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
        "worker_rss_mib": [round(mib, 1) for mib in rss],
        "minimal_app_worker_rss_mib": [round(mib, 1) for mib in minimal_rss],
        "worker_memory_mib": memory,
        "rss_goal_mib": RSS_GOAL_MIB,
        "memory_after_mix": memory_mix,
        "requests_served": served,
    }
    report.write(args.results, run, results)
    print()
    print(report.table(results))
    print(f"\nbench: {run['elapsed_s']} s; results in {args.results}, logs in {args.logs}")
    if profiler:
        profiler.summarise()
    broken = [r.name for r in results if r.goal and r.goal.no_errors and r.failed]
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
