"""Helpers shared by every test tier."""

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]  # the repository
# One signing secret per run, shared by the app under test and the tests that sign tokens.
TEST_SECRET = "test-" + secrets.token_hex(24)


def app_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of an app under test on `database_url`."""
    return {
        "CONDUIT_ENV": "testing",
        "CONDUIT_SECRET": TEST_SECRET,
        "DATABASE_URL": database_url,
        "BCRYPT_LOG_ROUNDS": "4",  # the minimum: hashing speed is not under test
        **extra,
    }


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_program(name: str) -> str:
    """Return the path of an external program the test drives.

    Locally a missing program skips the test with the reason; in CI (CI=true)
    it fails, so a tier can never pass by not running.
    """
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (.ci/setup-system.sh installs it)"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(
    ready: Callable[[], object],
    what: str,
    timeout: float = 30.0,
    detail: Callable[[], str] = lambda: "",
) -> None:
    """Poll `ready()` until it is truthy; else fail the test naming `what`, plus `detail()`.

    `ready` may raise OSError (nothing listens yet): that counts as not ready.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout:g} s{detail()}", pytrace=False)
        time.sleep(0.05)


def stop_process(process: subprocess.Popen, timeout: float = 10) -> int:
    """SIGTERM, as Kubernetes and `docker stop` send it; SIGKILL after `timeout` s."""
    process.terminate()
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def uwsgi_binary() -> str:
    """The uWSGI of this virtualenv (`make install` builds it), else the one on PATH."""
    beside = Path(sys.executable).parent / "uwsgi"
    return str(beside) if beside.is_file() else require_program("uwsgi")


def terminate_other_backends(database_url: str) -> int:
    """What a PostgreSQL restart does to an app's pooled connections: every other
    backend of the database ends (each waited for, up to 5 s: PostgreSQL 14+'s
    pg_terminate_backend(pid, timeout), so the app's sockets are closed on return)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as connection:
        ended = connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    engine.dispose()
    return ended


def dispose_engines(app) -> None:
    """Close every connection of the app: its session's pool and, on PostgreSQL, the read
    pool of conduit/reads.py with the connections its threads keep, as a test's app
    goes away."""
    from conduit import reads  # here: the deploy tool's tests never load the app
    from conduit.extensions import db

    reads.pool(app).dispose()  # with the connections uWSGI threads would keep
    with app.app_context():
        db.engine.dispose()


@contextmanager
def engine_events(app, name: str, handler: Callable) -> Iterator[None]:
    """Attach `handler` to the app's SQLAlchemy engine event `name` for the block."""
    from sqlalchemy import event

    from conduit.extensions import db  # here: the deploy tool's tests never load the app

    with app.app_context():
        engine = db.engine
    event.listen(engine, name, handler)
    try:
        yield
    finally:
        event.remove(engine, name, handler)
