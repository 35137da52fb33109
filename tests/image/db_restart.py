"""Write load across a PostgreSQL restart, and what the API answered meanwhile.

Writers create articles at a steady, bounded rate while the database is stopped
(every server connection dropped), kept down for a moment and started again.
`restart_under_load` returns the problems it saw, none when
  * every answer, during the outage too, was JSON from the app: no HTML error page,
    no empty reply, no refused connection;
  * within `recover_within` seconds of the database accepting connections again,
    writes succeed, and every write sent after that succeeds: the pool replaced its
    dead connections by itself, nobody restarted the server;
  * every article acknowledged with a 2xx is in the database afterwards.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import requests

from tests.image.pg import libpq_url


@dataclass
class Result:
    sent: float  # time.monotonic() when the request went out
    seconds: float
    status: int | None  # None: no HTTP answer at all
    json: bool
    slug: str | None
    detail: str

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Writers:
    """Threads that each create one article, then wait out the interval, until stopped."""

    def __init__(self, api: str, token: str, threads: int, rate: float, limit: int):
        self.api = api
        self.headers = {"Authorization": f"Token {token}"}
        self.interval = threads / rate
        self.limit = limit  # upper bound on requests, whatever happens
        self.results: list[Result] = []
        self.stopped = threading.Event()
        self.marker = f"restart-{uuid.uuid4().hex[:8]}"
        self._count = 0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self.stopped.set()
        for thread in self._threads:
            thread.join()

    def _next(self) -> int | None:
        with self._lock:
            if self._count >= self.limit:
                return None
            self._count += 1
            return self._count

    def _run(self) -> None:
        session = requests.Session()
        while not self.stopped.is_set():
            number = self._next()
            if number is None:
                return
            started = time.monotonic()
            self.results.append(self._write(session, number, started))
            self.stopped.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _write(self, session: requests.Session, number: int, started: float) -> Result:
        article = {
            "title": f"{self.marker} {number}",
            "description": "written while the database restarts",
            "body": f"write {number}",
        }
        try:
            response = session.post(
                f"{self.api}/articles", json={"article": article}, headers=self.headers, timeout=15
            )
        except requests.RequestException as error:
            return Result(started, time.monotonic() - started, None, False, None, repr(error))
        seconds = time.monotonic() - started
        try:
            body = response.json()
        except ValueError:
            snippet = response.text[:120].replace("\n", " ")
            return Result(started, seconds, response.status_code, False, None, snippet)
        slug = body.get("article", {}).get("slug") if response.ok else None
        return Result(started, seconds, response.status_code, True, slug, str(body)[:120])


def register(api: str) -> str:
    name = f"restart{uuid.uuid4().hex[:10]}"
    user = {"username": name, "email": f"{name}@example.com", "password": "restart-load-pw"}
    response = requests.post(f"{api}/users", json={"user": user}, timeout=30)
    response.raise_for_status()
    return response.json()["user"]["token"]


def wait_for_database(url: str, timeout: float) -> float:
    """Poll until the database accepts a connection; returns that moment (monotonic)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2) as connection:
                connection.execute("SELECT 1")
            return time.monotonic()
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def stored_slugs(url: str, slugs: list[str]) -> set[str]:
    with psycopg.connect(url) as connection:
        rows = connection.execute("SELECT slug FROM articles WHERE slug = ANY(%s)", (slugs,))
        return {row[0] for row in rows}


@dataclass(frozen=True)
class Load:
    """The shape of the test: bounded in rate, in requests and in time (about 15 s)."""

    warmup: float = 2.0  # seconds of load before the stop
    outage: float = 2.0  # seconds the database stays down
    recover_within: float = 5.0  # seconds the app may take to write again
    after: float = 5.0  # seconds of load after that
    threads: int = 2
    rate: float = 20.0  # writes per second, in all
    max_requests: int = 2000


@dataclass
class Outcome:
    problems: list[str]
    summary: list[str]  # what happened, for the test's output


def restart_under_load(
    api: str, database_url: str, stop: Callable[[], None], start: Callable[[], None],
    load: Load = Load(),
) -> Outcome:  # fmt: skip
    database_url = libpq_url(database_url)
    writers = Writers(api, register(api), load.threads, load.rate, load.max_requests)
    writers.start()
    try:
        time.sleep(load.warmup)
        stopping = time.monotonic()
        stop()
        down = time.monotonic()
        time.sleep(load.outage)
        start()
        back = wait_for_database(database_url, timeout=30)
        time.sleep(load.recover_within + load.after)
    finally:
        writers.stop()

    results = sorted(writers.results, key=lambda r: r.sent)
    ok = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    not_json = [r for r in results if not r.json]
    settled = [r for r in results if r.sent >= back + load.recover_within]
    recovered = next((r for r in ok if r.sent >= back), None)

    summary = [
        f"{len(results)} writes in {results[-1].sent - results[0].sent:.1f} s; "
        f"database stopped {down - stopping:.1f} s after the stop began, "
        f"accepting again {back - down:.1f} s after it was down",
        f"{len(ok)} acknowledged (2xx), {len(failed)} refused:",
    ]
    for status in sorted({r.status for r in failed}, key=str):
        sample = next(r for r in failed if r.status == status)
        count = sum(1 for r in failed if r.status == status)
        summary.append(f"  {count} x {status}: {sample.detail}")
    if recovered:
        summary.append(f"first write acknowledged {recovered.sent - back:.2f} s after restart")

    problems = []
    if not_json:
        sample = not_json[0]
        problems.append(
            f"{len(not_json)} answers were not JSON from the app, "
            f"e.g. status {sample.status}: {sample.detail}"
        )
    if not failed:
        problems.append("no write failed while the database was down: the outage was not seen")
    if recovered is None or recovered.sent - back > load.recover_within:
        problems.append(f"no write succeeded within {load.recover_within} s of the restart")
    if not settled:
        problems.append("no write was sent after the recovery window")
    elif any(not r.ok for r in settled):
        bad = [r for r in settled if not r.ok]
        problems.append(
            f"{len(bad)} writes sent more than {load.recover_within} s after the restart "
            f"failed, e.g. {bad[0].status}: {bad[0].detail}"
        )
    acknowledged = [r.slug for r in ok if r.slug]
    if len(acknowledged) != len(ok):
        problems.append("a 2xx answer named no article slug")
    missing = set(acknowledged) - stored_slugs(database_url, acknowledged)
    if missing:
        problems.append(f"{len(missing)} acknowledged writes are not in the database: {missing}")
    else:
        summary.append(f"all {len(acknowledged)} acknowledged articles are in the database")
    return Outcome(problems, summary)
