"""Run by uWSGI's master before it forks the workers (`shared-import` in docker/uwsgi.ini).

Empties PROMETHEUS_MULTIPROC_DIR of a previous run's metric files, so the counters
of this instance start at zero as Prometheus expects after a restart; and reads the
migration heads /readyz checks for (conduit/migration_heads.py). The master imports
this module once per start (and again on a full reload), never per worker.
"""

from __future__ import annotations

import os
import sys

from .. import migration_heads
from ..settings import migrations_dir
from .multiprocess import configured_directory, prepare_directory


def prepare() -> None:
    path = configured_directory()
    if path is None:
        return
    removed = prepare_directory(path)
    # The app's logging is not set up in the master; uWSGI logs what goes to stderr.
    print(
        f"conduit: prometheus multiprocess directory {path} ready ({removed} stale files removed)",
        file=sys.stderr,
        flush=True,
    )


prepare()
migration_heads.publish(migrations_dir(os.environ))
