"""The migration heads this build ships, which /readyz compares with the database's.

Alembic (with Mako) weighs several MiB in a process that imports it (bench/HISTORY.md,
memory round), and a uWSGI worker needs nothing else from it. So under uWSGI the master
(docker/uwsgi.ini, `shared-import`) reads the heads in a child process once, and passes
them to the workers in the environment; elsewhere (tests, the development server) they
are read on first use.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ENV_VAR = "CONDUIT_MIGRATION_HEADS"


def read(directory: str) -> set[str]:
    """The heads of the migration scripts in `directory`, as Alembic sees them."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(Path(directory).resolve()))
    return set(ScriptDirectory.from_config(config).get_heads())


def expected(directory: str) -> set[str]:
    """The heads handed down by uWSGI's master, else read from `directory`."""
    published = os.environ.get(ENV_VAR)
    if published is not None:
        return set(filter(None, published.split(",")))
    return read(directory)


def publish(directory: str) -> None:
    """Read the heads in a child process and put them in this process's environment,
    which the workers it forks inherit: the master's own imports would end up in every
    worker's memory."""
    # Under uWSGI, sys.executable is the interpreter's resolved binary (e.g.
    # /usr/bin/python3.11), outside the virtualenv: the child would find neither this
    # package nor Alembic. So it gets this process's module path.
    path = os.pathsep.join(entry or os.getcwd() for entry in sys.path)
    completed = subprocess.run(  # noqa: S603 - this interpreter, this module
        [sys.executable, "-m", __name__, directory],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    os.environ[ENV_VAR] = completed.stdout.strip()


if __name__ == "__main__":
    print(",".join(sorted(read(sys.argv[1]))))
