"""Liveness answered beside the workers, never behind their threads (issue 26).

`/healthz` on the API port is served by a worker thread like any request, so while
every thread is busy (slow registrations, writers waiting on a lock) a probe queues
behind them and a health check with a timeout restarts a server that is only busy.
docker/uwsgi.ini therefore runs serve() in a uWSGI mule: a process the master forks
and respawns, which shares no thread with the app and answers GET /healthz on
HEALTH_PORT from uWSGI's worker table.

Alive means what a restart could fix: the master runs (uWSGI kills its mules when the
master dies, core/mule.c: PR_SET_PDEATHSIG) and at least one worker process exists.
A worker that is busy, however long, is alive; harakiri ends one that is stuck. The
database is not looked at: readiness (/readyz, through the app) says whether the
process can serve.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATH = "/healthz"
# A client that connects and sends nothing holds only its own handler thread, this long.
CLIENT_TIMEOUT_S = 2
RETRY_BIND_S = 5


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process, which a worker never is
        return False
    return True


def verdict(workers: Iterable[Mapping], exists=_exists) -> tuple[int, dict]:
    """(HTTP status, JSON body) from uwsgi.workers(): 200 while a worker process exists."""
    present = [
        w for w in workers if w["pid"] > 0 and w["status"] != "cheap" and exists(int(w["pid"]))
    ]
    if not present:
        return 503, {"status": "no workers"}
    return 200, {"status": "ok", "workers": len(present)}


class _Handler(BaseHTTPRequestHandler):
    timeout = CLIENT_TIMEOUT_S

    @staticmethod
    def workers() -> Iterable[Mapping]:  # uwsgi.workers in the mule (server() below)
        return ()

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        if self.path.split("?", 1)[0] != PATH:
            status, payload = 404, {"errors": {"path": ["not found"]}}
        else:
            status, payload = verdict(self.workers())
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:
        pass  # one line per probe every few seconds would drown the access log


def server(port: int, workers: Callable[[], Iterable[Mapping]]) -> ThreadingHTTPServer:
    """An HTTP server on all interfaces answering /healthz from `workers()`."""
    handler = type("Handler", (_Handler,), {"workers": staticmethod(workers)})
    httpd = ThreadingHTTPServer(("", port), handler)
    httpd.daemon_threads = True
    return httpd


def serve() -> None:
    """The mule's body (docker/liveness-mule.py, run by docker/uwsgi.ini's `mule`)."""
    import uwsgi  # only inside uWSGI

    port = int(os.environ["HEALTH_PORT"])
    while True:
        try:
            httpd = server(port, uwsgi.workers)
            break
        except OSError as error:  # e.g. the port is taken: no respawn loop, try again
            print(f"conduit: liveness port {port}: {error.strerror}", file=sys.stderr, flush=True)
            time.sleep(RETRY_BIND_S)
    print(f"conduit: liveness on port {port}{PATH}", file=sys.stderr, flush=True)
    httpd.serve_forever()
