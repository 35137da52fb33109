"""The image's server as it runs in production: nginx in front of uWSGI
(docker/serve.py, docker/nginx.conf, docker/uwsgi.ini), and uWSGI alone where it differs.

Each test starts the server from the repository with the production settings on a
migrated SQLite database; only what the environment may change (port, worker counts,
bcrypt cost) differs. The image tier (tests/image/test_image.py) repeats the graceful stop
inside a container; these run without Docker, in seconds.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support import free_port, require_program, uwsgi_binary

ROOT = Path(__file__).resolve().parents[2]
SERVE = ROOT / "docker" / "serve.py"
BIN = Path(sys.executable).parent
# The developer's shell must not change what the server does.
CLEARED = (
    "PORT",
    "HEALTH_PORT",
    "DATABASE_URL",
    "CONDUIT_ENV",
    "PROMETHEUS_MULTIPROC_DIR",
    "MAX_CONTENT_LENGTH",
    "UPSTREAM_SOCKET",
)
CLEARED_PREFIX = "UWSGI_"


def nginx_binary() -> str:
    """nginx, which serve.py also finds in /usr/sbin when PATH lacks it."""
    return shutil.which("nginx", path="/usr/sbin:/sbin") or require_program("nginx")


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in CLEARED and not k.startswith(CLEARED_PREFIX)
    }
    env.update(
        FLASK_APP="conduit",
        CONDUIT_ENV="production",
        CONDUIT_SECRET=secrets.token_urlsafe(48),
        DATABASE_URL=f"sqlite:///{tmp_path / 'conduit.sqlite'}",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        BCRYPT_LOG_ROUNDS="4",
    )
    env.update(extra)
    return env


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen  # serve.py, or uWSGI alone
    log: Path  # stdout
    errors: Path  # stderr
    health_url: str  # the liveness mule's /healthz

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def pid_of(self, what: str) -> int:
        """The pid uWSGI logs for `what`: "master process", "worker 1", "mule 1"."""
        found = re.findall(rf"spawned uWSGI {what} \(pid: (\d+)", self.output())
        assert found, f"uWSGI logged no {what}:\n{self.output()}"
        return int(found[-1])

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            from bench.serving import tree

            for pid in tree(self.process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return self.process.wait()


def launch(tmp_path: Path, env: dict[str, str], front: bool = True) -> Server:
    """Start the image's server (serve.py), or uWSGI alone with docker/uwsgi.ini, on a
    free port (not waiting for it)."""
    port = free_port()
    env = {"HEALTH_PORT": str(free_port()), **env, "PORT": str(port)}
    if front:
        command = [sys.executable, str(SERVE)]
        env["NGINX_PROGRAM"] = nginx_binary()
    else:
        command = [uwsgi_binary(), "--ini", str(ROOT / "docker" / "uwsgi.ini")]
    log, errors = tmp_path / f"server-{port}.log", tmp_path / f"server-{port}.err"
    with log.open("wb") as out, errors.open("wb") as err:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=err, start_new_session=True
        )  # a session of its own, as a container's process 1
    health = f"http://127.0.0.1:{env['HEALTH_PORT']}/healthz"
    return Server(f"http://127.0.0.1:{port}", port, process, log, errors, health)


@pytest.fixture
def start(tmp_path: Path) -> Iterator:
    """start(**env) -> a migrated, ready server; every one is stopped afterwards."""
    servers: list[Server] = []
    migrated = False

    def start(front: bool = True, **extra: str) -> Server:
        nonlocal migrated
        env = production_env(tmp_path, **extra)
        if not migrated:
            subprocess.run(
                [sys.executable, "-m", "flask", "db", "upgrade"],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
                timeout=120,
            )
            migrated = True
        server = launch(tmp_path, env, front)
        servers.append(server)
        workers = int(env.get("UWSGI_PROCESSES", "2"))
        deadline = time.monotonic() + 60
        while True:
            # Ready means every worker has loaded the app (lazy-apps loads it per worker
            # after the first one may already answer): a SIGTERM that arrives while a
            # worker is still importing the app is a different case from these tests'.
            loaded = server.output().count("WSGI app 0 (mountpoint='') ready")
            try:
                answered = requests.get(server.url + "/readyz", timeout=5).status_code == 200
            except requests.RequestException:  # not listening yet, or busy loading the app
                answered = False
            if answered and loaded >= workers:
                return server
            assert server.process.poll() is None, f"the server exited:\n{server.output()}"
            assert time.monotonic() < deadline, f"not ready in 60 s:\n{server.output()}"
            time.sleep(0.1)

    yield start
    for server in servers:
        server.stop()


def register_body(name: str) -> str:
    user = {"username": name, "email": f"{name}@example.com", "password": "a long password"}
    return json.dumps({"user": user})


def register(url: str, name: str) -> requests.Response:
    return requests.post(
        f"{url}/api/users",
        data=register_body(name),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )


def test_sigterm_finishes_the_request_in_flight_then_exits_0(start):
    # A bcrypt cost of 2^15 makes registration take seconds: a slow request of the API.
    server = start(BCRYPT_LOG_ROUNDS="15")
    answer: dict = {}

    def slow_request():
        started = time.monotonic()
        answer["response"] = register(server.url, "inflight")
        answer["finished"] = time.monotonic() - started

    client = threading.Thread(target=slow_request)
    client.start()
    time.sleep(0.5)
    server.process.send_signal(signal.SIGTERM)
    sent_term = 0.5
    exit_code = server.process.wait(timeout=40)
    client.join(timeout=40)

    response = answer["response"]
    assert response.status_code == 201, response.text
    assert response.json()["user"]["username"] == "inflight"
    assert answer["finished"] > sent_term + 0.5, "the request was not in flight at SIGTERM"
    assert exit_code == 0, server.output()
    assert "graceful shutdown" in server.output()


def test_sigterm_when_idle_exits_0_promptly(start):
    server = start()
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 5


def test_ctrl_c_in_a_terminal_stops_nginx_then_uwsgi_gracefully(start):
    # A terminal sends SIGINT to its whole foreground process group; the servers are in
    # groups of their own, so serve.py alone gets it and stops them in order.
    server = start()
    os.killpg(server.process.pid, signal.SIGINT)
    assert server.process.wait(40) == 0, server.output()
    output = server.output()
    assert "serve: SIGINT: stopping nginx, then uWSGI" in output
    assert "graceful shutdown" in output


def test_production_without_a_secret_exits_instead_of_serving(tmp_path):
    env = production_env(tmp_path)
    del env["CONDUIT_SECRET"]
    server = launch(tmp_path, env)
    try:
        exit_code = server.process.wait(timeout=60)
    finally:
        server.stop()
    assert exit_code != 0
    assert "CONDUIT_SECRET" in server.output()


def test_worker_counts_come_from_the_environment(start):
    default = start()
    assert re.findall(r"spawned uWSGI worker \d+ \(pid: \d+, cores: (\d+)\)", default.output()) == [
        "4",
        "4",
    ]
    tuned = start(UWSGI_PROCESSES="3", UWSGI_THREADS="2")
    assert re.findall(r"spawned uWSGI worker \d+ \(pid: \d+, cores: (\d+)\)", tuned.output()) == [
        "2",
        "2",
        "2",
    ]


def test_a_large_head_within_the_bounds_reaches_the_app(start):
    # 4 header lines of 7 KiB: each within nginx's 8 KiB, 28 KiB in all, which uWSGI's
    # buffer must hold with the variables nginx adds (uwsgi.ini, buffer-size).
    server = start()
    headers = {f"X-Padding-{n}": "x" * 7000 for n in range(3)}
    headers["Authorization"] = "Token " + "x" * 7000
    response = requests.get(f"{server.url}/api/user", headers=headers, timeout=10)
    assert response.status_code == 401
    assert "errors" in response.json()


def test_uwsgi_alone_answers_a_16_kib_header(start):
    # Past uWSGI's default 4 KiB buffer, which would drop the request unanswered.
    server = start(front=False)
    response = requests.get(
        f"{server.url}/api/user", headers={"Authorization": "Token " + "x" * 16384}, timeout=10
    )
    assert response.status_code == 401
    assert "errors" in response.json()


def test_one_connection_carries_requests_of_every_kind(start):
    # HTTP/1.1 keep-alive through nginx: reads, writes, errors and empty answers all
    # leave the connection open for the next request.
    server = start()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    sockets = set()
    token = json.loads(register(server.url, "deleter").text)["user"]["token"]
    authorized = {"Content-Type": "application/json", "Authorization": f"Token {token}"}
    for round_ in range(30):
        article = {"article": {"title": f"Gone {round_}", "description": "d", "body": "b"}}
        for method, path, body, headers, status in [
            ("GET", "/api/tags", None, {}, 200),
            ("POST", "/api/users", register_body(f"kept{round_}"), {}, 201),
            ("POST", "/api/users", register_body(f"kept{round_}"), {}, 422),
            ("GET", "/api/no-such-route", None, {}, 404),
            ("DELETE", "/api/articles/none", None, {}, 401),
            ("OPTIONS", "/api/tags", None, {}, 200),
            ("HEAD", "/healthz", None, {}, 200),
            ("POST", "/api/articles", json.dumps(article), authorized, 201),
            # A 204 has no Content-Length (RFC 9110 forbids it) and no body.
            ("DELETE", f"/api/articles/gone-{round_}", None, authorized, 204),
        ]:
            if body:
                headers = {"Content-Type": "application/json", **headers}
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            assert response.status == status, (method, path, answer)
            assert not response.will_close, (method, path)
            if status == 204:
                assert answer == b""
            sockets.add(id(connection.sock))
    assert len(sockets) == 1
    connection.close()


def test_an_answer_given_before_the_body_is_read_keeps_the_connection(start):
    # urllib3 (requests) sends the headers and the body in two writes, so the body may
    # reach the worker after its handler has answered without reading it (a 401 here,
    # a 503 while the database is down). Unless the app reads it, uWSGI's router drops
    # the kept-alive connection after that answer (plugins/http/http.c,
    # hr_instance_read: ECONNRESET from the worker's socket, or a body not yet
    # forwarded), and the client's next request on it meets a reset.
    server = start()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    article = json.dumps({"article": {"title": "t", "description": "d", "body": "b"}}).encode()
    sockets = set()
    for _ in range(10):
        connection.putrequest("POST", "/api/articles")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(article)))
        connection.endheaders()
        time.sleep(0.01)  # the body arrives on its own, after the handler has answered
        connection.send(article)
        response = connection.getresponse()
        assert response.status == 401
        assert "errors" in json.loads(response.read())
        assert not response.will_close
        sockets.add(id(connection.sock))
    assert len(sockets) == 1
    connection.close()


def test_a_body_over_the_limit_is_refused_before_it_is_read(start, tmp_path):
    # Declares 2 GiB and sends a few bytes: the answer comes from Content-Length alone,
    # as JSON, and nothing of the body is buffered anywhere.
    server = start()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.putrequest("POST", "/api/users")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(2 * 1024**3))
    connection.endheaders(b'{"user": {')
    response = connection.getresponse()
    assert response.status == 413
    assert "body" in json.loads(response.read())["errors"]
    connection.close()
    assert requests.get(f"{server.url}/api/tags", timeout=10).status_code == 200


def test_logs_go_to_stdout(start):
    server = start()
    requests.get(f"{server.url}/api/tags", timeout=10)
    assert server.stop() == 0
    stdout = server.output()
    assert "spawned uWSGI worker" in stdout  # uWSGI's own
    assert '"route": "/api/tags"' in stdout or '"route":"/api/tags"' in stdout  # the app's
    assert "goodbye to uWSGI" in stdout
    # uWSGI names its configuration file on stderr before its logging is set up.
    stray = [
        line
        for line in server.errors.read_text().splitlines()
        if not line.startswith("[uWSGI] getting INI configuration")
    ]
    assert stray == []


def test_the_master_starts_without_an_error(start):
    # The master's shared imports (conduit/preload.py, the migration heads) run before
    # any worker: an exception there is only logged, and the workers start anyway.
    server = start()
    assert requests.get(f"{server.url}/readyz", timeout=10).status_code == 200
    assert "Traceback" not in server.output()


# --- hostile and unlucky clients (issue 26) ----------------------------------------
# Each probe is bounded: a client waits at most a few seconds, against the tens of
# seconds (or never) the defect cost uWSGI's router alone. The raw client and the figures
# of every serving arrangement measured are in bench/serving.py and
# docs/decisions/0008-serving-hostile-clients.md.


def uwsgi_worker_pids(server: Server) -> list[int]:
    return [int(p) for p in re.findall(r"spawned uWSGI worker \d+ \(pid: (\d+)", server.output())]


def test_a_killed_workers_keep_alive_client_gets_an_answer_at_once(start):
    from bench.serving import connect, read_answer, request

    server = start(BCRYPT_LOG_ROUNDS="15")  # a registration takes seconds
    with connect(server.port, 5) as sock:  # uWSGI's router alone: nothing for 75 s
        sock.sendall(request("GET", "/api/tags"))
        assert read_answer(sock)[0] == "200"
        sock.sendall(request("POST", "/api/users", register_body("victim").encode()))
        time.sleep(0.5)
        for pid in uwsgi_worker_pids(server):
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        status, body = read_answer(sock)
        assert time.monotonic() - killed < 1
    assert status == "502"
    assert "may or may not have taken effect" in json.loads(body)["errors"]["body"][0]
    # The master starts new workers, and the server goes on.
    deadline = time.monotonic() + 30
    while requests.get(f"{server.url}/api/tags", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "no worker answered 30 s after the kill"
        time.sleep(0.2)


def test_bodies_trickling_on_every_thread_do_not_stall_the_api(start):
    from bench.serving import clients, trickling

    server = start()
    with clients(8, trickling(server.port, 5000, b"x" * 20, 0.5)):  # 2 workers x 4 threads
        time.sleep(1)
        # uWSGI's router alone: no answer while the bodies trickle (28 s in the issue).
        response = requests.get(f"{server.url}/api/tags", timeout=2)
        assert response.status_code == 200


def test_bodies_that_lie_about_their_length_do_not_hold_threads(start):
    from bench.serving import clients, connect, read_answer, request, trickling

    server = start()
    with clients(8, trickling(server.port, 1000000, b"x" * 60, 0)):  # 1 MB declared, 60 B sent
        time.sleep(1)
        # uWSGI's router alone: 7 s for this answer.
        assert requests.get(f"{server.url}/api/tags", timeout=2).status_code == 200
    # One that stops sending has its connection closed when the body has not moved for
    # 10 s (client_body_timeout; nginx sends no 408 then).
    headers = {"Content-Length": "1000", "Content-Type": "application/json"}
    with connect(server.port, 15) as sock:
        sock.sendall(request("POST", "/api/users", b'{"user":', headers))
        started = time.monotonic()
        status, body = read_answer(sock)
        waited = time.monotonic() - started
    assert (status, body) == ("closed without an answer", b"")
    assert 9 < waited < 13


@pytest.mark.parametrize("front", [True, False], ids=["image", "uwsgi-alone"])
def test_a_body_over_the_limit_without_expect_gets_413_not_a_reset(start, front):
    # 2 MiB sent whole without waiting for 100-continue (as urllib does). nginx answers
    # from Content-Length and reads and drops the rest; uWSGI alone, the app reads and
    # drops up to four times its limit (conduit/request_body.py). Either way the 413
    # reaches the client.
    from bench.serving import probe_over_limit

    server = start(front=front)
    assert probe_over_limit(server.port) == ", ".join(["413"] * 5)


def test_the_body_bound_is_the_apps_max_content_length(start):
    server = start(MAX_CONTENT_LENGTH="2048")

    def login(password_length: int) -> requests.Response:
        body = json.dumps({"user": {"email": "a@b.co", "password": "p" * password_length}})
        return requests.post(
            f"{server.url}/api/users/login",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=10,
        )

    refused = login(2100)
    assert refused.status_code == 413
    assert refused.json() == {"errors": {"body": ["the body is larger than 2048 bytes"]}}
    answered = login(1900)
    # Read whole and judged by the app (its answers carry a request id; nginx's do not).
    assert answered.status_code != 413
    assert "X-Request-ID" in answered.headers


def test_liveness_answers_while_every_thread_is_busy(start):
    # What the image's HEALTHCHECK and the livenessProbe ask: HEALTH_PORT's /healthz,
    # answered by the liveness mule, not by a worker thread.
    from bench.serving import clients, registering

    server = start(BCRYPT_LOG_ROUNDS="13")  # 16 registrations keep 8 threads busy for seconds
    with clients(16, registering(server.port, rounds=1)):
        time.sleep(0.5)
        # The HEALTHCHECK gives urllib 2 s; /healthz on the API port waits behind the queue.
        response = requests.get(server.health_url, timeout=2)
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "workers": 2}


def test_the_liveness_port_answers_healthz_only(start):
    server = start()
    base = server.health_url.removesuffix("/healthz")
    assert requests.head(server.health_url, timeout=5).status_code == 200
    assert requests.get(f"{base}/readyz", timeout=5).status_code == 404
    assert requests.get(f"{base}/api/tags", timeout=5).status_code == 404
    # A client that connects and says nothing does not hold the probe's answer.
    from bench.serving import connect

    with connect(int(base.rsplit(":", 1)[1]), 5):
        assert requests.get(server.health_url, timeout=2).status_code == 200
    # /healthz on the API port is still the app's.
    assert requests.get(f"{server.url}/healthz", timeout=5).json() == {"status": "ok"}


def refused_within(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
        except requests.ConnectionError:
            return True
        time.sleep(0.1)
    return False


def test_the_uwsgi_master_dying_ends_the_server(start):
    # SIGKILL to uWSGI's master: its mule must not go on answering for a server that is
    # gone, nginx must not go on answering 502, and serve.py exits non-zero so that the
    # container is restarted.
    server = start()
    assert requests.get(server.health_url, timeout=5).status_code == 200
    os.kill(server.pid_of("master process"), signal.SIGKILL)
    assert server.process.wait(15) == 1
    assert refused_within(server.health_url, 10), "the liveness port still answers"
    assert refused_within(f"{server.url}/api/tags", 1), "the API port still answers"
    assert "serve: uWSGI exited" in server.output()


def test_nginx_dying_ends_the_server(start):
    from bench.serving import children

    server = start()
    nginx = [pid for pid in children(server.process.pid) if _name(pid) == "nginx"]
    assert len(nginx) == 1, nginx
    os.kill(nginx[0], signal.SIGKILL)
    assert server.process.wait(40) == 1
    assert refused_within(server.health_url, 10), "uWSGI's liveness port still answers"
    # nginx's worker outlives a killed master unless it is ended too: it holds the port.
    assert refused_within(f"{server.url}/api/tags", 5), "the API port still answers"
    assert "serve: nginx exited" in server.output()


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def test_oversized_request_heads_get_431_and_414(start):
    from bench.serving import connect, read_answer, request

    server = start()
    for path, headers, status in [
        ("/api/user", {"Authorization": "Token " + "x" * 40000}, "431"),
        ("/api/user", {f"X-Padding-{n}": "x" * 7000 for n in range(6)}, "431"),
        ("/api/tags?q=" + "x" * 100000, {}, "414"),
    ]:
        with connect(server.port, 10) as sock:
            sock.sendall(request("GET", path, b"", headers))
            answer = read_answer(sock)
        assert answer[0] == status, answer
        assert json.loads(answer[1])["errors"]["body"]


def test_a_malformed_request_gets_json_400(start):
    from bench.serving import connect, read_answer

    server = start()
    with connect(server.port, 10) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, body = read_answer(sock)
    assert status == "400"
    assert json.loads(body) == {"errors": {"body": ["malformed HTTP request"]}}


@pytest.mark.parametrize("front", [True, False], ids=["image", "uwsgi-alone"])
def test_a_chunked_request_body_is_accepted(start, front):
    from bench.serving import probe_chunked

    server = start(front=front)
    assert probe_chunked(server.port).startswith("201 ")


def send_chunked(port: int, chunks: bytes) -> tuple[str, dict]:
    from bench.serving import connect, read_answer, request

    headers = {"Transfer-Encoding": "chunked", "Content-Type": "application/json"}
    with connect(port, 15) as sock:
        sock.sendall(request("POST", "/api/users", chunks, headers))
        status, answer = read_answer(sock)
    return status, json.loads(answer)


@pytest.mark.parametrize("front", [True, False], ids=["image", "uwsgi-alone"])
def test_a_chunked_body_over_the_limit_gets_413(start, front):
    # 64 chunks of 32 KiB: 2 MiB, twice MAX_CONTENT_LENGTH, none of them too big alone.
    server = start(front=front)
    piece = b"x" * 32768
    status, answer = send_chunked(
        server.port, b"%x\r\n%s\r\n" % (len(piece), piece) * 64 + b"0\r\n\r\n"
    )
    assert status == "413"
    assert "body" in answer["errors"]
    assert requests.get(f"{server.url}/api/tags", timeout=10).status_code == 200


MALFORMED_CHUNKS = [
    b"-%x\r\n%s\r\n0\r\n\r\n",  # a negative size
    b"%x 0\r\n%s\r\n0\r\n\r\n",  # a space in the size
]


def test_a_malformed_chunked_body_gets_400(start):
    # nginx reads "1a 0" as a size with an extension (lenient, and harmless: the app gets
    # the body nginx decoded, with its length); a size that is no number is refused.
    server = start()
    body = register_body("malformed").encode()
    for framing in [b"-%x\r\n" % len(body), b"zz\r\n"]:
        status, answer = send_chunked(server.port, framing + body + b"\r\n0\r\n\r\n")
        assert status == "400", framing
        assert answer == {"errors": {"body": ["malformed HTTP request"]}}
    assert requests.get(f"{server.url}/api/tags", timeout=10).status_code == 200


def test_uwsgi_alone_answers_a_malformed_chunked_body_with_400(start):
    server = start(front=False)
    body = register_body("malformed").encode()
    for framing in MALFORMED_CHUNKS:
        status, answer = send_chunked(server.port, framing % (len(body), body))
        assert status == "400", framing
        assert answer["errors"]["body"] == ["malformed or incomplete chunked body"]
    assert "Traceback" not in server.output()
    assert requests.get(f"{server.url}/api/tags", timeout=10).status_code == 200


def test_uwsgi_alone_answers_a_chunked_body_that_stops_arriving_with_408(start):
    # The client sends less than the chunk's size and waits: the worker thread is
    # released at the deadline (CHUNKED_BODY_DEADLINE_S) with an answer.
    server = start(front=False)
    body = register_body("stalled").encode()
    status, answer = send_chunked(server.port, b"%x\r\n%s" % (len(body) + 50, body))
    assert status == "408"
    assert answer["errors"]["body"] == ["the chunked body did not arrive in time"]


def test_a_request_after_sigterm_is_refused_or_served_never_dropped(start):
    from bench.serving import probe_head

    server = start(BCRYPT_LOG_ROUNDS="15")
    answer: dict = {}
    in_flight = threading.Thread(
        target=lambda: answer.update(response=register(server.url, "draining")), daemon=True
    )
    in_flight.start()
    time.sleep(0.5)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    outcome = probe_head(server.port, "/api/tags", {})  # uWSGI's router alone: dropped
    in_flight.join(40)
    assert outcome in {"ConnectionRefusedError", "200"}, outcome
    assert answer["response"].status_code == 201
    assert server.process.wait(40) == 0


def test_serve_checks_its_configuration_and_settings(tmp_path):
    env = {**production_env(tmp_path), "NGINX_PROGRAM": nginx_binary()}
    checked = subprocess.run(
        [sys.executable, str(SERVE), "--check"], env=env, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    for name, value, message in [
        ("PORT", "eighty", "serve: PORT='eighty' is not a whole number"),
        ("PORT", "70000", "serve: PORT=70000 is outside 1..65535"),
        ("MAX_CONTENT_LENGTH", "10", "serve: MAX_CONTENT_LENGTH=10 is outside 1024..2147483647"),
    ]:
        bad = subprocess.run(
            [sys.executable, str(SERVE)],
            env={**env, name: value},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert (bad.returncode, bad.stderr.strip()) == (1, message)
    missing = subprocess.run(
        [sys.executable, str(SERVE), "--check"],
        env={**env, "NGINX_PROGRAM": "no-such-nginx"},
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1
    assert missing.stderr.strip().startswith("serve: no-such-nginx: not found")
    usage = subprocess.run([sys.executable, str(SERVE), "--bogus"], capture_output=True, text=True)
    assert (usage.returncode, usage.stderr.strip()) == (2, "usage: serve.py [--check]")
