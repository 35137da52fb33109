"""Hostile and unlucky clients against one serving arrangement (issue 26), with figures.

    python -m bench.serving [--server-venv DIR] [ARRANGEMENT ...]

Each arrangement serves the API in production mode (CONDUIT_ENV=production, a migrated
SQLite database, 2 processes x 4 threads or the nearest equivalent) on a free port of
127.0.0.1, and the same probes run against each in the same run, so that their figures
can be compared (docs/decisions/0008-serving-hostile-clients.md records them). Every
probe is bounded in connections and seconds; an outcome that hit its bound says so.
The registrations that keep threads busy use BCRYPT_LOG_ROUNDS=14 (about a second each).

The servers other than uWSGI are not the project's dependencies: make a virtualenv with
the app and the versions the decision record names, e.g.

    python3 -m venv /tmp/servers
    /tmp/servers/bin/pip install -c requirements.lock '.[server]' \
        granian==2.8.7 gunicorn==27.0.1 waitress==3.0.2
    python -m bench.serving --server-venv /tmp/servers
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THREADS = 8  # 2 processes x 4 threads, the Deployment's settings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Arrangement:
    name: str
    command: Callable[[Path, int], list[str]]  # (bin directory, port) -> argv
    env: dict[str, str] = field(default_factory=dict)
    # pids of the processes that run the app (killed by the dead-worker probe)
    workers: Callable[[subprocess.Popen, str], list[int]] = lambda p, log: children(p.pid)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def uwsgi_workers(process: subprocess.Popen, log: str) -> list[int]:
    import re

    return [int(pid) for pid in re.findall(r"spawned uWSGI worker \d+ \(pid: (\d+)", log)]


def uwsgi(bindir: Path, port: int) -> list[str]:
    return [str(bindir / "uwsgi"), "--ini", str(ROOT / "docker" / "uwsgi.ini")]


def nginx_front(bindir: Path, port: int) -> list[str]:
    # The image's command: nginx in front of uWSGI (docker/serve.py, docker/nginx.conf).
    return [str(bindir / "python"), str(ROOT / "docker" / "serve.py")]


ARRANGEMENTS = {
    "uwsgi": Arrangement("uwsgi", uwsgi, workers=uwsgi_workers),
    "nginx-uwsgi": Arrangement("nginx-uwsgi", nginx_front, workers=uwsgi_workers),
    # The router's own options that bear on these clients, as far as the ini lets the
    # environment set them (http-keepalive is set by the file).
    "uwsgi-tuned": Arrangement(
        "uwsgi-tuned",
        uwsgi,
        env={
            "UWSGI_HTTP_TIMEOUT": "5",
            "UWSGI_HTTP_HEADERS_TIMEOUT": "5",
            "UWSGI_HTTP_MANAGE_EXPECT": "1048576",
            "UWSGI_POST_BUFFERING": "65536",
            "UWSGI_SOCKET_TIMEOUT": "2",
            "UWSGI_HTTP_CHUNKED_INPUT": "1",
        },
        workers=uwsgi_workers,
    ),
    "granian": Arrangement(
        "granian",
        lambda b, port: [
            str(b / "granian"),
            "--interface",
            "wsgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
            "--blocking-threads",
            "4",
            "--respawn-failed-workers",
            "--no-access-log",
            "conduit.wsgi:app",
        ],
    ),
    "gunicorn": Arrangement(
        "gunicorn",
        lambda b, port: [
            str(b / "gunicorn"),
            "-k",
            "gthread",
            "-w",
            "2",
            "--threads",
            "4",
            "-b",
            f"127.0.0.1:{port}",
            "--keep-alive",
            "75",
            "conduit.wsgi:app",
        ],
    ),
    "waitress": Arrangement(
        "waitress",
        lambda b, port: [
            str(b / "waitress-serve"),
            f"--listen=127.0.0.1:{port}",
            f"--threads={THREADS}",
            "conduit.wsgi:app",
        ],
        workers=lambda p, log: [],
    ),
}


# --- a raw HTTP client: every outcome named, every wait bounded ------------------


def connect(port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_status(sock: socket.socket) -> str:
    """The status code of the answer, or what happened instead (after the socket's timeout)."""
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return "closed without an answer" if not data else "truncated"
            data += chunk
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "no answer"
    return data.split(b" ", 2)[1].decode()


def read_answer(sock: socket.socket) -> tuple[str, bytes]:
    """(status, body) of one answer with Content-Length; ('reset'/...,'') otherwise."""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return ("closed without an answer" if not data else "truncated"), b""
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    except ConnectionResetError:
        return "reset", b""
    except TimeoutError:
        return "no answer", b""
    return head.split(b" ", 2)[1].decode(), body


def request(method: str, path: str, body: bytes = b"", headers: dict | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    headers = dict(headers or {})
    if body and "Transfer-Encoding" not in headers:
        headers.setdefault("Content-Length", str(len(body)))
        headers.setdefault("Content-Type", "application/json")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def timed_get(port: int, path: str, bound: float) -> str:
    started = time.monotonic()
    try:
        with connect(port, bound) as sock:
            sock.sendall(request("GET", path))
            status = read_status(sock)
    except OSError as error:
        status = type(error).__name__
    return f"{status} after {time.monotonic() - started:.2f} s"


def register_body(name: str) -> bytes:
    user = {"username": name, "email": f"{name}@example.com", "password": "a long password"}
    return json.dumps({"user": user}).encode()


# --- the probes ------------------------------------------------------------------


@contextmanager
def clients(count: int, client: Callable[[int, threading.Event], None]) -> Iterator[None]:
    """`count` threads running client(number, stop) until the block ends (joined, bounded)."""
    stop = threading.Event()
    threads = [
        threading.Thread(target=client, args=(number, stop), daemon=True) for number in range(count)
    ]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(20)


def registering(port: int, rounds: int = 10) -> Callable[[int, threading.Event], None]:
    """A client registering up to `rounds` times (bcrypt at 2^14 here: about a second each)."""

    def client(number: int, stop: threading.Event) -> None:
        round_ = 0
        while not stop.is_set() and round_ < rounds:
            name = f"b{number}r{round_}{secrets.token_hex(3)}"
            try:
                with connect(port, 15) as sock:
                    sock.sendall(request("POST", "/api/users", register_body(name)))
                    read_status(sock)
            except OSError:
                time.sleep(0.1)
            round_ += 1

    return client


def trickling(
    port: int, declared: int, sent: bytes, per_byte: float
) -> Callable[[int, threading.Event], None]:
    """A client declaring `declared` body bytes and sending `sent`, a byte per `per_byte` s."""

    def client(_number: int, stop: threading.Event) -> None:
        headers = {"Content-Length": str(declared), "Content-Type": "application/json"}
        try:
            with connect(port, 15) as sock:
                sock.sendall(request("POST", "/api/users/login", b"", headers))
                for byte in sent:
                    if stop.wait(per_byte):
                        return
                    sock.sendall(bytes([byte]))
                stop.wait(12)
        except OSError:
            pass

    return client


def probe_healthz_while_busy(port: int, health_port: int | None = None) -> str:
    """/healthz on `health_port` (uWSGI's liveness mule) or else on the API port."""
    with clients(THREADS * 2, registering(port)):
        time.sleep(0.5)
        return timed_get(health_port or port, "/healthz", 10)


def probe_slow_bodies(port: int, declared: int, sent: bytes, per_byte: float) -> str:
    with clients(THREADS, trickling(port, declared, sent, per_byte)):
        time.sleep(1)
        return timed_get(port, "/api/tags", 10)


def probe_over_limit(port: int) -> str:
    outcomes = []
    body = b'{"user": {"email": "' + b"x" * (2 * 1024 * 1024) + b'"}}'
    for _ in range(5):
        try:
            with connect(port, 10) as sock:
                sock.sendall(request("POST", "/api/users/login", body))
                outcomes.append(read_status(sock))
        except OSError as error:
            outcomes.append(type(error).__name__)
    return ", ".join(outcomes)


def probe_head(port: int, path: str, headers: dict) -> str:
    try:
        with connect(port, 10) as sock:
            sock.sendall(request("GET", path, b"", headers))
            return read_status(sock)
    except OSError as error:
        return type(error).__name__


def probe_chunked(port: int) -> str:
    body = register_body("chunky" + secrets.token_hex(3))
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    with connect(port, 15) as sock:
        sock.sendall(
            request(
                "POST",
                "/api/users",
                chunked,
                {"Transfer-Encoding": "chunked", "Content-Type": "application/json"},
            )
        )
        status, answer = read_answer(sock)
    return f"{status} {answer[:80].decode(errors='replace')}"


def settle(port: int, bound: float = 60) -> None:
    """Wait until the requests earlier probes left queued are done (a quick answer)."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        started = time.monotonic()
        if timed_get(port, "/api/tags", 5).startswith("200") and time.monotonic() - started < 0.2:
            return
        time.sleep(0.5)


def probe_dead_worker(port: int, workers: list[int]) -> str:
    if not workers:
        return "n/a (one process)"
    settle(port)
    with connect(port, 15) as sock:
        sock.sendall(request("GET", "/api/tags"))
        status, _ = read_answer(sock)  # a kept-alive connection
        if status != "200":
            return f"not measured: the first request got {status}"
        sock.sendall(request("POST", "/api/users", register_body("victim" + secrets.token_hex(3))))
        time.sleep(0.3)
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        started = time.monotonic()
        status, body = read_answer(sock)
    return f"{status} {body[:60].decode(errors='replace')} after {time.monotonic() - started:.2f} s"


def probe_after_sigterm(process: subprocess.Popen, port: int) -> str:
    slow = threading.Thread(target=lambda: probe_chunked(port), daemon=True)  # a ~1 s request
    slow.start()
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    outcome = probe_head(port, "/api/tags", {})
    slow.join(20)
    return outcome


def rss_mib(pids: list[int]) -> list[float]:
    values = []
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    values.append(round(int(line.split()[1]) / 1024, 1))
        except OSError:
            pass
    return values


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    found = [pid]
    for child in children(pid):
        found += tree(child)
    return found


def pss_mib(pids: list[int]) -> float:
    """Proportional set size of the processes together: shared pages counted once."""
    total = 0
    for pid in pids:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total += sum(
            int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")
        )
    return round(total / 1024, 1)


def warm(port: int, count: int) -> float:
    started = time.monotonic()
    with connect(port, 10) as sock:
        for _ in range(count):
            sock.sendall(request("GET", "/api/tags"))
            status, _ = read_answer(sock)
            if status != "200":
                raise SystemExit(f"warm-up: /api/tags answered {status}")
    return (time.monotonic() - started) / count * 1000


def run(arrangement: Arrangement, bindir: Path, workdir: Path) -> dict[str, object]:
    for program in (bindir / "flask", Path(arrangement.command(bindir, 0)[0])):
        if not program.exists():
            raise SystemExit(f"{arrangement.name}: {program} is not installed (see --help)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UWSGI_", "GRANIAN_"))}
    env.update(
        FLASK_APP="conduit",
        CONDUIT_ENV="production",
        CONDUIT_SECRET=secrets.token_urlsafe(48),
        DATABASE_URL=f"sqlite:///{workdir / (arrangement.name + '.sqlite')}",
        PROMETHEUS_MULTIPROC_DIR=str(workdir / f"metrics-{arrangement.name}"),
        BCRYPT_LOG_ROUNDS="14",
        PYTHONOPTIMIZE="2",
        PATH=f"{bindir}:{os.environ['PATH']}",
    )
    (workdir / f"metrics-{arrangement.name}").mkdir(exist_ok=True)
    subprocess.run(  # noqa: S603 - our own command line
        [str(bindir / "flask"), "db", "upgrade"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    port, health_port = free_port(), free_port()
    # HEALTH_PORT: where docker/uwsgi.ini's liveness mule answers; the others ignore it.
    env.update(arrangement.env, PORT=str(port), HEALTH_PORT=str(health_port))
    log = workdir / f"{arrangement.name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own command line
            arrangement.command(bindir, port),
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    figures: dict[str, object] = {}
    try:
        deadline = time.monotonic() + 60
        while "200" not in probe_head(port, "/readyz", {}):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{arrangement.name} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        time.sleep(2)  # every worker has loaded the app
        figures["ms per keep-alive GET /api/tags (sequential)"] = round(warm(port, 3000), 3)
        workers = arrangement.workers(process, log.read_text()) or [process.pid]
        figures["worker RSS MiB after 3000 requests"] = rss_mib(workers)
        figures["PSS MiB of all the server's processes"] = pss_mib(tree(process.pid))
        figures["40 KB header"] = probe_head(
            port, "/api/user", {"Authorization": "Token " + "x" * 40000}
        )
        figures["100k-character URL"] = probe_head(port, "/api/tags?q=" + "x" * 100000, {})
        figures["chunked registration"] = probe_chunked(port)
        figures["2 MiB body without Expect (5 tries)"] = probe_over_limit(port)
        figures[f"/api/tags while {THREADS} bodies trickle at 2 B/s"] = probe_slow_bodies(
            port, 5000, b"x" * 100, 0.5
        )
        figures[f"/api/tags while {THREADS} bodies lie (1 MB declared, 60 B sent)"] = (
            probe_slow_bodies(port, 1000000, b"x" * 60, 0)
        )
        figures[f"/healthz while {THREADS * 2} registrations run"] = probe_healthz_while_busy(port)
        if probe_head(health_port, "/healthz", {}) == "200":
            figures[f"liveness port /healthz while {THREADS * 2} registrations run"] = (
                probe_healthz_while_busy(port, health_port)
            )
        figures["keep-alive client of a worker killed mid-request"] = probe_dead_worker(
            port, arrangement.workers(process, log.read_text())
        )
        time.sleep(3)  # respawned
        figures["new request 0.3 s after SIGTERM"] = probe_after_sigterm(process, port)
        try:
            figures["exit status after SIGTERM"] = process.wait(40)
        except subprocess.TimeoutExpired:
            figures["exit status after SIGTERM"] = "still running after 40 s"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "arrangements", nargs="*", metavar="ARRANGEMENT", help=", ".join(ARRANGEMENTS)
    )
    parser.add_argument(
        "--server-venv",
        type=Path,
        default=Path(sys.executable).parent.parent,
        help="virtualenv with the servers",
    )
    args = parser.parse_args(argv)
    unknown = set(args.arrangements) - set(ARRANGEMENTS)
    if unknown:
        parser.error(f"unknown arrangement(s): {', '.join(sorted(unknown))}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="conduit-serving-") as tmp:
        for name in args.arrangements or ARRANGEMENTS:
            print(f"== {name}", flush=True)
            results[name] = run(ARRANGEMENTS[name], args.server_venv / "bin", Path(tmp))
            for key, value in results[name].items():
                print(f"  {key}: {value}", flush=True)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
