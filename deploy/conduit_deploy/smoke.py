"""The smoke test of a deployment: a few real API calls, one printed line per step.

The first mismatch fails the test (later steps build on earlier ones), after the
article it created is deleted. deploy/README.md lists the steps.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .errors import SmokeFailed, WaitTimeout
from .waiting import Clock, poll

# The API returns tagList sorted by name; sending it sorted makes "in order" exact.
TAGS = ["conduit-deploy", "smoke-test"]


@dataclass(frozen=True)
class SmokeOptions:
    request_timeout: float = 10.0  # seconds for each connect and each read
    connect_retries: int = 3  # only for connections that never reached the server
    ready_timeout: float = 60.0  # how long /readyz may take to answer 200
    ready_interval: float = 2.0


class Step(Exception):
    """A failed expectation inside one step."""


@dataclass
class Report:
    """Prints each step's outcome; keeps the count for the summary."""

    out: Callable[[str], None] = field(default=lambda line: print(line, flush=True))
    passed: int = 0

    def ok(self, message: str) -> None:
        self.passed += 1
        self.out(f"  ok    {message}")

    def fail(self, message: str) -> None:
        self.out(f"  FAIL  {message}")


def session_with_retries(options: SmokeOptions) -> requests.Session:
    """Retry only connection failures: the request never reached the server, so even a
    POST is safe to send again. Read errors and HTTP statuses are never retried."""
    retry = Retry(
        total=options.connect_retries,
        connect=options.connect_retries,
        read=0,
        status=0,
        other=0,
        redirect=0,
        backoff_factor=0.5,
        allowed_methods=None,
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class Client:
    def __init__(self, base_url: str, options: SmokeOptions, session: requests.Session):
        self.base_url = base_url.rstrip("/")
        self.options = options
        self.session = session
        self.token: str | None = None

    def call(
        self, method: str, path: str, *, expect: tuple[int, ...], json: Any = None
    ) -> tuple[int, Any]:
        """One request; a Step error unless the status is in `expect`."""
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        url = self.base_url + path
        try:
            response = self.session.request(
                method, url, json=json, headers=headers, timeout=self.options.request_timeout
            )
        except requests.RequestException as error:
            raise Step(f"{method} {path}: {type(error).__name__}: {error}") from None
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
        if response.status_code not in expect:
            shown = response.text.strip().replace("\n", " ")[:200]
            raise Step(
                f"{method} {path} -> {response.status_code}, expected "
                f"{' or '.join(map(str, expect))}: {shown}"
            )
        return response.status_code, body


def article_mismatches(
    article: Any, expected: dict[str, Any], username: str, *, listed: bool = False
) -> list[str]:
    """Every field of `article` that differs from what was created.

    listed: the article comes from GET /api/articles, which the RealWorld spec returns
    without `body`; a body that is there must still match.
    """
    if not isinstance(article, dict):
        return [f"expected an article object, got {article!r}"]
    wanted = {
        **expected,
        "favorited": False,
        "favoritesCount": 0,
    }
    if listed and "body" not in article:
        del wanted["body"]
    problems = [
        f"{name}: expected {value!r}, got {article.get(name)!r}"
        for name, value in wanted.items()
        if article.get(name) != value
        or type(article.get(name)) is not type(value)  # 0 is not False, 1 is not True
    ]
    author = article.get("author")
    author_name = author.get("username") if isinstance(author, dict) else None
    if author_name != username:
        problems.append(f"author.username: expected {username!r}, got {author_name!r}")
    return problems


def wait_ready(client: Client, options: SmokeOptions, clock: Clock) -> int:
    """Poll /readyz until 200; the deployed service may still be warming up."""

    def attempt() -> tuple[int | None, str]:
        try:
            status, _ = client.call("GET", "/readyz", expect=(200,))
        except Step as error:
            return None, str(error)
        return status, f"GET /readyz -> {status}"

    try:
        return poll(
            attempt,
            what="GET /readyz",
            timeout=options.ready_timeout,
            interval=options.ready_interval,
            clock=clock,
        )
    except WaitTimeout as error:
        raise Step(f"not ready within {options.ready_timeout:g}s: {error.last}") from None


def run_smoke(
    base_url: str,
    options: SmokeOptions | None = None,
    *,
    report: Report | None = None,
    clock: Clock | None = None,
    session: requests.Session | None = None,
) -> int:
    """Run every step against base_url. Returns the number of passed checks; raises
    SmokeFailed at the first failure."""
    options = options or SmokeOptions()
    report = report or Report()
    clock = clock or Clock()
    client = Client(base_url, options, session or session_with_retries(options))
    suffix = f"{time.strftime('%Y%m%d%H%M%S', time.gmtime())}{secrets.token_hex(3)}"
    username = f"smoke{suffix}"
    article = {
        "title": f"Smoke test {suffix}",
        "description": "Written by conduit-deploy smoke",
        "body": f"Checks a deployment end to end ({suffix}).",
        "tagList": TAGS,
    }
    slug: str | None = None
    deleted = False
    step = "start"
    report.out(f"smoke: testing {client.base_url}")
    try:
        step = "service ready"
        status = wait_ready(client, options, clock)
        report.ok(f"service ready: GET /readyz -> {status}")

        step = "register a new user"
        status, body = client.call(
            "POST",
            "/api/users",
            expect=(201, 200),
            json={
                "user": {
                    "username": username,
                    "email": f"{username}@example.com",
                    "password": secrets.token_urlsafe(16),
                }
            },
        )
        user = (body or {}).get("user") or {}
        if user.get("username") != username or not user.get("token"):
            raise Step(f"the response has no token or a different username: {body!r}")
        client.token = user["token"]
        report.ok(f"register {username}: POST /api/users -> {status}, token received")

        step = "create an article"
        status, body = client.call(
            "POST", "/api/articles", expect=(201, 200), json={"article": article}
        )
        created = (body or {}).get("article")
        problems = article_mismatches(created, article, username)
        slug = created.get("slug") if isinstance(created, dict) else None
        if not slug:
            problems.append("slug: missing")
        if problems:
            raise Step("; ".join(problems))
        report.ok(f"create article: POST /api/articles -> {status}, slug {slug}")

        step = "find it in the article list"
        _, body = client.call("GET", f"/api/articles?author={username}&limit=20", expect=(200,))
        listed = [a for a in (body or {}).get("articles") or [] if a.get("slug") == slug]
        if not listed:
            raise Step(f"article {slug} is not in GET /api/articles?author={username}")
        problems = article_mismatches(listed[0], article, username, listed=True)
        if problems:
            raise Step("; ".join(problems))
        report.ok(f"list articles by {username}: found {slug} with the expected fields")

        step = "get it by slug"
        _, body = client.call("GET", f"/api/articles/{slug}", expect=(200,))
        problems = article_mismatches((body or {}).get("article"), article, username)
        if problems:
            raise Step("; ".join(problems))
        report.ok(f"get article: GET /api/articles/{slug} -> 200 with the expected fields")

        step = "delete it"
        status, _ = client.call("DELETE", f"/api/articles/{slug}", expect=(204, 200))
        deleted = True
        report.ok(f"delete article: DELETE /api/articles/{slug} -> {status}")

        step = "check it is gone"
        client.call("GET", f"/api/articles/{slug}", expect=(404,))
        report.ok(f"deleted article is gone: GET /api/articles/{slug} -> 404")
    except Step as error:
        report.fail(f"{step}: {error}")
        if slug and not deleted:
            _clean_up(client, slug, report)
        raise SmokeFailed(
            f"smoke test failed at '{step}' against {client.base_url}: {error}"
        ) from None
    report.out(f"smoke: all {report.passed} checks passed against {client.base_url}")
    return report.passed


def _clean_up(client: Client, slug: str, report: Report) -> None:
    """Do not leave a half-checked smoke article behind."""
    try:
        client.call("DELETE", f"/api/articles/{slug}", expect=(204, 200))
        report.out(f"  (cleaned up article {slug})")
    except Step as error:
        report.out(f"  (could not delete article {slug}: {error})")
