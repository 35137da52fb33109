"""PostgreSQL helpers of the image and Postman tiers."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from tests.postgres_major import MajorError, server_programs
from tests.support import in_ci, require_program


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (postgresql+psycopg://...) as the plain libpq URL psycopg takes."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def connect(url: str, **kwargs) -> psycopg.Connection:
    return psycopg.connect(libpq_url(url), **kwargs)


def shared_server_url() -> str:
    """TEST_DATABASE_URL, the shared server's; skips (fails in CI) when it is not set."""
    url = os.environ.get("TEST_DATABASE_URL", "")
    if not url.startswith(("postgresql", "postgres:")):
        message = "TEST_DATABASE_URL (a PostgreSQL URL) is not set; .ci/run sets it"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return url


@contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new, empty database on server_url's server (its role needs CREATEDB).

    Yields its SQLAlchemy URL; the database is dropped afterwards, even with
    processes still connected.
    """
    name = f"{prefix}_{secrets.token_hex(4)}"
    with connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with connect(server_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


class PostgresServer:
    """A PostgreSQL server of the test's own, in a folder, on a loopback port.

    The image tier stops and restarts it under load, which must never happen to a
    server other work shares. Runs as the `postgres` user when the tests run as root
    (the server refuses root).
    """

    def __init__(self, folder: Path, port: int):
        try:
            self.bin = server_programs()
        except (FileNotFoundError, MajorError) as error:
            if in_ci():
                pytest.fail(str(error), pytrace=False)
            pytest.skip(str(error))
        self.folder, self.port = folder, port
        self.data = folder / "data"
        self.password = secrets.token_hex(16)
        self.url = f"postgresql+psycopg://conduit:{self.password}@127.0.0.1:{port}/conduit"

    def _run(self, *argv: str) -> None:
        prefix = [require_program("runuser"), "-u", "postgres", "--"] if os.geteuid() == 0 else []
        result = subprocess.run(
            [*prefix, *argv], capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode:
            log = self.folder / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{Path(argv[0]).name} failed: {result.stderr[-2000:]}{tail}")

    def create(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        password_file = self.folder / "password"
        password_file.write_text("postgres-" + self.password)
        if os.geteuid() == 0:
            shutil.chown(password_file, "postgres", "postgres")
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-E", "UTF8",
            "--locale=C.UTF-8", "--auth=scram-sha-256", f"--pwfile={password_file}",
        )  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.folder}'\n"
            )
        self.start()
        admin = f"postgresql://postgres:postgres-{self.password}@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(
                sql.SQL("CREATE ROLE conduit LOGIN PASSWORD {}").format(sql.Literal(self.password))
            )
            connection.execute("CREATE DATABASE conduit OWNER conduit")

    def start(self) -> None:
        log = self.folder / "server.log"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """`fast` drops every connection, as a crash or a failover does to the app."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)
