"""The benchmark's server: the database it serves (recreated and seeded) and uWSGI run
as the image runs it (docker/uwsgi.ini, the Deployment's settings, the image's
interpreter settings) on 127.0.0.1, from a virtualenv holding what the image installs.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml
from dockerfile_parse import DockerfileParser
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bench import BenchError, cpu

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


MINIMAL_APP = "bench.minimal_app:app"


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


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick), for the server to take."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def programs(server_venv: Path) -> tuple[str, Path]:
    """wrk, and the uWSGI of the server's virtualenv: the run needs both."""
    binary = shutil.which("wrk")
    if binary is None:
        raise BenchError("wrk is not installed (apt-get install wrk)")
    uwsgi = server_venv / "bin" / "uwsgi"
    if not uwsgi.exists():
        raise BenchError(
            f"uWSGI is not installed in {server_venv} (bench/run.sh or "
            f"`make {shown(SERVER_VENV)}/.installed` creates that virtualenv)"
        )
    return binary, uwsgi
