"""conduit/preload.py runs in uWSGI's master before fork(): it may load modules, but
must create nothing a worker could share by mistake (a connection, a thread)."""

import subprocess
import sys

PROBE = """
import sys, threading
import conduit.preload
print(threading.active_count(), "psycopg" in sys.modules, "conduit.api" in sys.modules)
"""


def _preload(database_url: str) -> list[str]:
    env = {
        "DATABASE_URL": database_url,
        "CONDUIT_SECRET": "preload-" + "k" * 40,  # production settings, judged first
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.split()


def test_the_master_loads_the_app_modules_and_the_postgresql_driver_only():
    # A URL no server answers: an import that connected would fail or hang here.
    assert _preload("postgres://nobody:x@127.0.0.1:9/none") == ["1", "True", "True"]


def test_sqlite_leaves_the_postgresql_driver_out():
    assert _preload("sqlite:///unused.sqlite") == ["1", "False", "True"]
