"""The memory goal's own measure: every kind of request, 10,000 of them, on a fresh server.

Issue 14 bounds a worker's RSS "after 10k requests". The scenarios each load a single
endpoint, and a worker's memory depends on which kinds it has served (the first request
of each kind builds what that kind needs: the ORM's unit of work for a write, bcrypt for
a login, the metrics collector for a scrape), not on how many. The end of the whole run
is also a later point than the goal names (hundreds of thousands of requests). So the
driver starts a server of its own after the scenarios and sends it REQUESTS requests
over one keep-alive connection: the kinds of MIX, interleaved in a fixed order, reads
and writes in the proportions a blog sees.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from bench import BenchError

REQUESTS = 10_000

# Kind of request -> how many of every 100. Reads are most of the traffic, as on a blog.
MIX = {
    "article list": 30,
    "article list, signed in": 12,
    "article list by tag": 8,
    "feed": 8,
    "single article": 12,
    "comments": 10,
    "tags": 4,
    "profile": 4,
    "current user": 3,
    "article create": 3,
    "comment create": 2,
    "favorite, unfavorite in turn": 2,
    "login": 1,
    "metrics scrape": 1,
}

# status, body
Response = tuple[int, bytes]
# method, path, headers, JSON body -> Response
Send = Callable[[str, str, dict[str, str], dict | None], Response]


@dataclass(frozen=True)
class Reader:
    """The signed-in user of the mix, and the data its requests name."""

    email: str
    password: str
    token: str
    slug: str  # an article to read, comment on and favorite
    tag: str


def run(send: Send, reader: Reader, requests: int = REQUESTS, nonce: str = "mix") -> Counter:
    """Send `requests` requests of MIX's kinds; every one must succeed. Returns how many
    of each kind were sent."""
    auth = {"Authorization": f"Token {reader.token}"}
    author = _json(send("GET", f"/api/articles/{reader.slug}", {}, None))["article"]["author"]
    order = [kind for kind, share in MIX.items() for _ in range(share)]
    random.Random(0).shuffle(order)  # noqa: S311 - the same interleaving in every run
    sent: Counter = Counter()
    for number in range(requests):
        kind = order[number % len(order)]
        method, path, headers, body = _request(
            kind, number, sent[kind], reader, auth, author["username"], nonce
        )
        status, content = send(method, path, headers, body)
        if not 200 <= status < 300:
            raise BenchError(f"memory mix: {method} {path} answered {status}: {content[:200]!r}")
        sent[kind] += 1
    return sent


def _request(
    kind: str, number: int, nth: int, reader: Reader, auth: dict, author: str, nonce: str
) -> tuple[str, str, dict[str, str], dict | None]:
    """The number-th request of the mix, the nth of its kind."""
    if kind == "article list":
        # The first ten pages, so that the pages differ.
        return "GET", f"/api/articles?limit=20&offset={20 * (nth % 10)}", {}, None
    elif kind == "article list, signed in":
        return "GET", "/api/articles?limit=20", auth, None
    elif kind == "article list by tag":
        return "GET", f"/api/articles?tag={reader.tag}&limit=20", {}, None
    elif kind == "feed":
        return "GET", "/api/articles/feed?limit=20", auth, None
    elif kind == "single article":
        return "GET", f"/api/articles/{reader.slug}", auth if number % 2 else {}, None
    elif kind == "comments":
        return "GET", f"/api/articles/{reader.slug}/comments", {}, None
    elif kind == "tags":
        return "GET", "/api/tags", {}, None
    elif kind == "profile":
        return "GET", f"/api/profiles/{author}", auth, None
    elif kind == "current user":
        return "GET", "/api/user", auth, None
    elif kind == "article create":
        article = {
            "title": f"Memory mix {nonce} {number}",
            "description": "Written by the benchmark's memory mix",
            "body": "Every kind of request, on a fresh server. " * 10,
            "tagList": [reader.tag, "benchmark"],
        }
        return "POST", "/api/articles", auth, {"article": article}
    elif kind == "comment create":
        body = {"comment": {"body": f"Comment {number} of the memory mix"}}
        return "POST", f"/api/articles/{reader.slug}/comments", auth, body
    elif kind == "favorite, unfavorite in turn":
        return "DELETE" if nth % 2 else "POST", f"/api/articles/{reader.slug}/favorite", auth, None
    elif kind == "login":
        credentials = {"user": {"email": reader.email, "password": reader.password}}
        return "POST", "/api/users/login", {}, credentials
    elif kind == "metrics scrape":
        return "GET", "/metrics", {}, None
    raise ValueError(f"unknown kind of request: {kind}")


def _json(response: Response) -> dict:
    status, content = response
    if status != 200:
        raise BenchError(f"memory mix: the article to read answered {status}: {content[:200]!r}")
    return json.loads(content)
