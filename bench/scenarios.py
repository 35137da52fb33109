"""What the benchmark asks of the server: the scenarios and their goals, one scenario's
warm-up, probe and bounded wrk load, and the memory mix (bench/mix.py) on a server of
its own.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text

from bench import BenchError, cpu, mix, pyspy, wrk
from bench.report import Goal, ScenarioResult
from bench.server import SEED_PASSWORD, Server, free_port, local_postmaster
from conduit import models  # noqa: F401 - registers the tables in the metadata
from conduit.extensions import db as conduit_db

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
