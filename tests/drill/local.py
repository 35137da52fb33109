"""Throw-away PostgreSQL servers and a GCS emulator for the restore drill.

Each server gets its own data directory and port: the shared server on 5432 is never
touched. PostgreSQL refuses to run as root, so as root the servers (and the archive
and restore commands they run) run as the `postgres` user; the Barman Cloud tools
then come from a virtualenv that user can execute (BARMAN_VENV, `make restore-drill`
builds it with the system interpreter).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import requests

from tests.postgres_major import MajorError, server_programs
from tests.support import ROOT, free_port, in_ci, stop_process, wait_until

START_TIMEOUT_SECONDS = 60
COMMAND_TIMEOUT_SECONDS = 300


class DrillSetupError(Exception):
    """A program or package the drill needs is missing."""


def missing(message: str) -> None:
    """Skip locally, fail in CI (as tests.support.require_program does for programs)."""
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def postgres_bindir() -> Path:
    """The PostgreSQL server programs at prod's major (.ci/postgres-binaries.sh)."""
    try:
        return server_programs()
    except (FileNotFoundError, MajorError) as error:
        raise DrillSetupError(str(error)) from None


def barman_bindir() -> Path:
    venv = Path(os.environ.get("BARMAN_VENV", ROOT / "build" / "barman"))
    if not (venv / "bin" / "barman-cloud-wal-archive").is_file():
        raise DrillSetupError(
            f"Barman Cloud is not installed in {venv} (make restore-drill installs it)"
        )
    return venv / "bin"


def as_server_user(command: list[str]) -> list[str]:
    """The command as the OS user that owns the servers."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def run(command: list[str], env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command[:3])}... exited {result.returncode}: "
            f"{' '.join((result.stderr or result.stdout).split())[-800:]}"
        )
    return result.stdout


@contextmanager
def scratch_directory() -> Iterator[Path]:
    """A temporary directory the server user owns (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="conduit-drill-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(path, "postgres", "postgres")
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def give_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        run(["chown", "-R", "postgres:postgres", str(path)])
    path.chmod(0o700)


@dataclass
class LocalPostgres:
    """One PostgreSQL server in `data`, listening on 127.0.0.1:port only."""

    data: Path
    port: int = field(default_factory=free_port)
    password: str = "drill-superuser"
    bindir: Path = field(default_factory=postgres_bindir)

    def initdb(self, settings: dict[str, str]) -> None:
        pwfile = self.data.parent / f"{self.data.name}.pw"
        pwfile.write_text(self.password + "\n")
        give_to_server_user(pwfile)
        run(
            as_server_user(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=peer",
                    "--encoding=UTF8",
                    "--locale=C",
                ]
            )
        )
        pwfile.unlink()
        self.configure(settings)

    def configure(self, settings: dict[str, str]) -> None:
        """Append settings (the last value of a setting wins in postgresql.conf)."""
        base = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.data.parent}'",
        }
        lines = [f"{key} = {value}" for key, value in {**base, **settings}.items()]
        conf = self.data / "postgresql.conf"
        with conf.open("a") as handle:
            handle.write("\n# restore drill\n" + "\n".join(lines) + "\n")

    def start(self) -> None:
        run(
            as_server_user(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.data.parent / f"{self.data.name}.log"),
                    "-w",
                    "-t",
                    str(START_TIMEOUT_SECONDS),
                    "start",
                ]
            )
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            run(
                as_server_user(
                    [
                        str(self.bindir / "pg_ctl"),
                        "-D",
                        str(self.data),
                        "-m",
                        "fast",
                        "-w",
                        "stop",
                    ]
                )
            )

    def log_tail(self, lines: int = 20) -> str:
        log = self.data.parent / f"{self.data.name}.log"
        return "\n".join(log.read_text().splitlines()[-lines:]) if log.exists() else ""

    def client_args(self) -> list[str]:
        """libpq client options (pgbench, barman-cloud-backup) for the superuser."""
        return ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]

    def url(
        self,
        database: str = "postgres",
        user: str = "postgres",
        password: str | None = None,
        driver: str = "postgresql",
    ) -> str:
        return f"{driver}://{user}:{password or self.password}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres", **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.url(database), autocommit=True, **kwargs)

    def writable(self) -> bool:
        """Recovery has ended: the server is a primary and accepts writes."""
        try:
            with self.connect() as conn:
                return not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        except psycopg.OperationalError:  # still starting up
            return False

    def wait_until_writable(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        wait_until(
            self.writable,
            f"server on {self.port} writable",
            timeout,
            detail=lambda: ":\n" + self.log_tail(),
        )


@contextmanager
def gcs_emulator(barman_bin: Path, bucket: str) -> Iterator[str]:
    """gcp-storage-emulator in memory on a free port, with `bucket` created.

    Yields the value for STORAGE_EMULATOR_HOST, which google-cloud-storage (and so
    Barman Cloud) honours instead of storage.googleapis.com.
    """
    port = free_port()
    host = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            str(barman_bin / "gcp-storage-emulator"),
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--in-memory",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Creating the bucket is the readiness check (a refused connection is an OSError).
        wait_until(
            lambda: (
                requests.post(
                    f"{host}/storage/v1/b",
                    params={"project": "drill"},
                    json={"name": bucket},
                    timeout=5,
                ).ok
            ),
            f"gcp-storage-emulator on {port} creating bucket {bucket}",
        )
        yield host
    finally:
        stop_process(process)


def object_sizes(emulator: str, bucket: str, prefix: str) -> list[int]:
    """Sizes in bytes of the objects under prefix (the JSON API's object listing)."""
    sizes: list[int] = []
    token = None
    while True:
        params = {"prefix": prefix, **({"pageToken": token} if token else {})}
        response = requests.get(f"{emulator}/storage/v1/b/{bucket}/o", params=params, timeout=10)
        response.raise_for_status()
        listing = response.json()
        sizes += [int(item["size"]) for item in listing.get("items", [])]
        token = listing.get("nextPageToken")
        if not token:
            return sizes
