"""A tiny in-memory stand-in for the Conduit API on 127.0.0.1, with switchable faults,
to prove the smoke test reports each kind of mismatch. The real API is exercised in
test_smoke_live.py."""

from __future__ import annotations

import json
import re
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Faults:
    create_status: int = 201
    favorites_count: Any = 0
    tags_reversed: bool = False
    hide_from_list: bool = False
    keep_after_delete: bool = False
    ready_after: int = 0  # /readyz answers 503 this many times first


@dataclass
class State:
    faults: Faults = field(default_factory=Faults)
    articles: dict[str, dict] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)  # token -> username
    ready_calls: int = 0
    deletes: list[str] = field(default_factory=list)


def serve(
    state: State, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1"
) -> tuple[ThreadingHTTPServer, str]:
    """The fake API on 127.0.0.1; with `tls`, over HTTPS, its URL naming `host`."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, status: int, body: Any = None):
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def payload(self) -> dict:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}")

        def user(self) -> str | None:
            token = (self.headers.get("Authorization") or "").removeprefix("Token ")
            return state.users.get(token)

        def view(self, article: dict) -> dict:
            tags = list(article["tagList"])
            return {
                **article,
                "tagList": tags[::-1] if state.faults.tags_reversed else tags,
                "favorited": False,
                "favoritesCount": state.faults.favorites_count,
                "author": {
                    "username": article["author"],
                    "bio": None,
                    "image": None,
                    "following": False,
                },
            }

        def do_GET(self):
            faults = state.faults
            if self.path == "/readyz":
                state.ready_calls += 1
                if state.ready_calls <= faults.ready_after:
                    return self.reply(503, {"status": "unavailable"})
                return self.reply(200, {"status": "ready"})
            match = re.fullmatch(r"/api/articles\?author=([^&]+)&limit=20", self.path)
            if match:
                found = [
                    {k: v for k, v in self.view(a).items() if k != "body"}
                    for a in state.articles.values()
                    if a["author"] == match.group(1) and not faults.hide_from_list
                ]
                return self.reply(200, {"articles": found, "articlesCount": len(found)})
            match = re.fullmatch(r"/api/articles/([\w-]+)", self.path)
            if match and match.group(1) in state.articles:
                return self.reply(200, {"article": self.view(state.articles[match.group(1)])})
            return self.reply(404, {"errors": {"article": ["not found"]}})

        def do_POST(self):
            body = self.payload()
            if self.path == "/api/users":
                user = body["user"]
                token = f"token-{len(state.users)}"
                state.users[token] = user["username"]
                return self.reply(
                    201, {"user": {**user, "token": token, "bio": None, "image": None}}
                )
            if self.path == "/api/articles":
                author = self.user()
                if author is None:
                    return self.reply(401, {"errors": {"token": ["missing"]}})
                if state.faults.create_status != 201:
                    return self.reply(state.faults.create_status, {"errors": {"server": ["boom"]}})
                article = {
                    **body["article"],
                    "slug": f"article-{len(state.articles) + 1}",
                    "author": author,
                }
                state.articles[article["slug"]] = article
                return self.reply(201, {"article": self.view(article)})
            return self.reply(404)

        def do_DELETE(self):
            slug = self.path.rsplit("/", 1)[-1]
            state.deletes.append(slug)
            if slug in state.articles and not state.faults.keep_after_delete:
                del state.articles[slug]
            return self.reply(204)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    scheme = "https" if tls is not None else "http"
    return server, f"{scheme}://{host}:{server.server_port}"
