"""The smoke test of a deployment: a few real API calls, one printed line per step.

The first mismatch fails the test (later steps build on earlier ones), after the
article it created is deleted. deploy/README.md lists the steps. Over HTTPS (prod, on
PROD_HOST) requests go to the host name, and a step checks the certificate chain and
name the way any client will.

Users cannot be deleted through the API, so a deploy logs in as its environment's one
smoke user (smoke_user()), registering it only the first time; a standalone run
against a throwaway instance registers a fresh user.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.certs
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .errors import SmokeFailed, WaitTimeout
from .waiting import Clock, poll

# The API returns tagList sorted by name; sending it sorted makes "in order" exact.
TAGS = ["conduit-deploy", "smoke-test"]


@dataclass(frozen=True)
class SmokeUser:
    username: str
    email: str
    password: str = field(repr=False)


def smoke_user(environment: str, conduit_secret: str) -> SmokeUser:
    """The environment's smoke user, derived from its CONDUIT_SECRET.

    The same secret gives the same user on every deploy, so the user is registered once
    and reused; nothing needs storing. The password is an HMAC of the secret, which it
    does not reveal. A new CONDUIT_SECRET (which logs every user out anyway) gives a new
    name too, so the old user is never needed again.
    """
    digest = hmac.new(
        conduit_secret.encode(), f"conduit-deploy smoke user {environment}".encode(), hashlib.sha256
    ).digest()
    username = f"smoke-{environment}-{digest[:4].hex()}"
    password = base64.urlsafe_b64encode(digest[4:]).decode().rstrip("=")
    return SmokeUser(username, f"{username}@example.com", password)


def fresh_user() -> SmokeUser:
    """A new user for a throwaway instance (make run, the image test)."""
    suffix = f"{time.strftime('%Y%m%d%H%M%S', time.gmtime())}{secrets.token_hex(3)}"
    username = f"smoke{suffix}"
    return SmokeUser(username, f"{username}@example.com", secrets.token_urlsafe(16))


@dataclass(frozen=True)
class SmokeOptions:
    request_timeout: float = 10.0  # seconds for each connect and each read
    connect_retries: int = 3  # only for connections that never reached the server
    # A new GCE load balancer answers only once its health checks pass, minutes after
    # the ingress shows its address.
    ready_timeout: float = 600.0  # how long /readyz may take to answer 200
    ready_interval: float = 5.0
    user: SmokeUser | None = None  # None: register a fresh user
    # PEM file of the certificate authorities HTTPS is verified against; None: the one
    # requests would use (REQUESTS_CA_BUNDLE, else certifi's, which holds Let's Encrypt's
    # roots).
    ca_bundle: str | None = None

    def trust_store(self) -> str:
        """One trust store for the certificate step and every request."""
        return (
            self.ca_bundle
            or os.environ.get("REQUESTS_CA_BUNDLE")
            or os.environ.get("CURL_CA_BUNDLE")
            or requests.certs.where()
        )


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
                method,
                url,
                json=json,
                headers=headers,
                timeout=self.options.request_timeout,
                # Per request: requests lets REQUESTS_CA_BUNDLE override a session's verify.
                verify=self.options.trust_store(),
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


def check_certificate(base_url: str, options: SmokeOptions) -> str:
    """Verify the server's certificate chain and that it names the host, the way a
    client does (Python's default context: chain to a trusted root, host name, expiry)."""
    parts = urlsplit(base_url)
    host, port = parts.hostname or "", parts.port or 443
    context = ssl.create_default_context(cafile=options.trust_store())
    try:
        with (
            socket.create_connection((host, port), timeout=options.request_timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            certificate = tls.getpeercert()
    except ssl.SSLCertVerificationError as error:
        raise Step(f"the certificate of {host} is not valid: {error.verify_message}") from None
    except (OSError, ssl.SSLError) as error:
        raise Step(f"TLS to {host}:{port}: {error}") from None
    issuer = dict(pair[0] for pair in certificate.get("issuer", ()))
    days = (ssl.cert_time_to_seconds(certificate["notAfter"]) - time.time()) / 86400
    return (
        f"certificate of {host}: chain and name verified, issued by "
        f"{issuer.get('organizationName') or issuer.get('commonName', '?')}, "
        f"expires in {days:.0f} days"
    )


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
    user = options.user or fresh_user()
    username = user.username
    suffix = f"{time.strftime('%Y%m%d%H%M%S', time.gmtime())}{secrets.token_hex(3)}"
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

        if urlsplit(client.base_url).scheme == "https":
            step = "certificate"
            report.ok(check_certificate(client.base_url, options))

        step = "log in"
        report.ok(sign_in(client, user, reuse=options.user is not None))

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


def sign_in(client: Client, user: SmokeUser, *, reuse: bool) -> str:
    """Log in as `user` (registering it when it does not exist yet); keep its token."""
    credentials = {"email": user.email, "password": user.password}
    if reuse:
        status, body = client.call(
            "POST", "/api/users/login", expect=(200, 401), json={"user": credentials}
        )
        if status == 200:
            client.token = _token(body, user)
            return f"log in {user.username}: POST /api/users/login -> 200, token received"
    status, body = client.call(
        "POST",
        "/api/users",
        expect=(201, 200, 422),
        json={"user": {"username": user.username, **credentials}},
    )
    if status == 422:
        raise Step(
            f"{user.username} exists but its password does not match (was the user "
            f"changed by hand?): {body!r}"
        )
    client.token = _token(body, user)
    return f"register {user.username}: POST /api/users -> {status}, token received"


def _token(body: Any, user: SmokeUser) -> str:
    found = (body or {}).get("user") or {}
    if found.get("username") != user.username or not found.get("token"):
        raise Step(f"the response has no token or a different username: {body!r}")
    return found["token"]


def _clean_up(client: Client, slug: str, report: Report) -> None:
    """Do not leave a half-checked smoke article behind."""
    try:
        client.call("DELETE", f"/api/articles/{slug}", expect=(204, 200))
        report.out(f"  (cleaned up article {slug})")
    except Step as error:
        report.out(f"  (could not delete article {slug}: {error})")
