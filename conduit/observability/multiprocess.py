"""prometheus_client's multiprocess mode under uWSGI's worker processes.

With PROMETHEUS_MULTIPROC_DIR set, every process writes its metric values to its own
memory-mapped files in that directory (``counter_<pid>.db``, ``histogram_<pid>.db``,
``gauge_<mode>_<pid>.db``) and a scrape, answered by any one worker, adds them up.
Three things keep those totals right over the life of a uWSGI instance:

* the master empties the directory when it starts (``prepare_directory``, run by
  ``conduit.observability.uwsgi_master``), so values of a previous run never leak in;
* when a worker exits - recycled after ``max-requests``, reloaded, or killed by
  harakiri - its live gauges (requests in flight, pool connections) are dropped and
  its counters and histograms are folded into one archive file per type
  (``retire_processes``). Counters so survive the worker without one file per dead
  process piling up: with recycling every few thousand requests that pile would
  grow without bound and every scrape would read all of it;
* readers and the folding take a lock on the directory, so a scrape never sees a
  dead worker's counts both in the archive and in its own file.

A worker folds its own files when it exits normally (atexit); a worker killed
outright is found by the next scrape, which folds every process that no longer runs.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import values
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

log = logging.getLogger(__name__)

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"
LOCK_NAME = "metrics.lock"
# Counters and histograms of exited processes, summed. Named like the per-process
# files (type first) because the collector takes the metric type from the name.
ARCHIVE_TYPES = ("counter", "histogram")
ARCHIVE_SUFFIX = "archive"
# Every per-process file prometheus_client writes ends in _<pid>.db.
_PROCESS_FILE = re.compile(r"^(?:counter|histogram|summary|gauge_[a-z]+)_(\d+)\.db$")


class MultiprocessConfigError(RuntimeError):
    """PROMETHEUS_MULTIPROC_DIR is set but the metrics cannot work in that mode."""


def configured_directory() -> str | None:
    """The multiprocess directory, or None for the plain in-process registry."""
    return os.environ.get(ENV_VAR) or None


def check_directory(path: str) -> None:
    """Fail at start-up, with the fix, instead of exposing metrics nobody writes."""
    if values.ValueClass is values.MutexValue:
        raise MultiprocessConfigError(
            f"{ENV_VAR} is set but prometheus_client was imported before it was: "
            "set it in the environment of the process (docker/uwsgi.ini does)"
        )
    # uWSGI's master creates it; a process started otherwise with the variable set
    # (`flask db upgrade` in the same environment) must not fail for want of it.
    os.makedirs(path, mode=0o700, exist_ok=True)


def prepare_directory(path: str) -> int:
    """Create the directory, or empty it of a previous run's files; returns files removed."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    removed = 0
    # Only the files prometheus_client writes: never wipe a directory wholesale
    # on the word of an environment variable.
    for name in os.listdir(path):
        if name.endswith(".db") or name == LOCK_NAME:
            os.remove(os.path.join(path, name))
            removed += 1
    return removed


@contextmanager
def directory_lock(path: str, *, exclusive: bool) -> Iterator[None]:
    """flock on a file in the directory: shared for reading, exclusive for folding."""
    fd = os.open(os.path.join(path, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def process_ids(path: str) -> set[int]:
    """Process ids that have files in the directory."""
    pids = set()
    for name in os.listdir(path):
        match = _PROCESS_FILE.match(name)
        if match:
            pids.add(int(match.group(1)))
    return pids


def is_running(pid: int) -> bool:
    """True while the process exists (uWSGI's master reaps its dead workers at once)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def retire_exited_processes(path: str) -> list[int]:
    """Fold the files of every process that no longer runs; returns their ids."""
    exited = sorted(pid for pid in process_ids(path) if not is_running(pid))
    if exited:
        retire_processes(path, exited)
        log.info("folded metrics of exited worker processes", extra={"pids": exited})
    return exited


def retire_processes(path: str, pids: Iterable[int]) -> None:
    """Fold the counters and histograms of `pids` into the archives, drop their live gauges."""
    pids = list(pids)
    with directory_lock(path, exclusive=True):
        for kind in ARCHIVE_TYPES:
            files = [
                f for pid in pids if os.path.exists(f := os.path.join(path, f"{kind}_{pid}.db"))
            ]
            if files:
                _fold_into_archive(path, kind, files)
        for pid in pids:
            mark_process_dead(pid, path)


def _fold_into_archive(path: str, kind: str, files: list[str]) -> None:
    archive = os.path.join(path, f"{kind}_{ARCHIVE_SUFFIX}.db")
    sources = [archive, *files] if os.path.exists(archive) else files
    # accumulate=False keeps histogram buckets per bucket, as the files store them.
    merged = MultiProcessCollector.merge(sources, accumulate=False)
    staging = archive + ".new"  # not *.db: readers never pick it up
    if os.path.exists(staging):
        os.remove(staging)
    out = MmapedDict(staging)
    try:
        for metric in merged:
            for sample in metric.samples:
                key = mmap_key(
                    metric.name,
                    sample.name,
                    list(sample.labels),
                    list(sample.labels.values()),
                    metric.documentation,
                )
                out.write_value(key, sample.value, 0.0)
    finally:
        out.close()
    # Swap the archive in whole, then drop the sources it now holds. A crash between
    # the two would count those workers twice; both steps are local file operations.
    os.replace(staging, archive)
    for name in files:
        os.remove(name)


class LockedMultiProcessCollector:
    """MultiProcessCollector that reads under the directory's shared lock."""

    def __init__(self, path: str):
        self._path = path
        self._collector = MultiProcessCollector(None, path=path)

    def collect(self):
        with directory_lock(self._path, exclusive=False):
            return list(self._collector.collect())
