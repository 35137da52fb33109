"""CPU time spent by a process tree, read from /proc.

Requests per second depend on everything else the machine runs; CPU time per request
of the app's processes and of PostgreSQL does much less, so it is reported too. A
process tree's time is the root's own, what it collected from children that exited
(uWSGI recycles workers; PostgreSQL ends a backend per closed connection) and that of
its live children.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

PROC = Path("/proc")


def parse_stat(text: str) -> tuple[int, int, int]:
    """(parent pid, own CPU ticks, CPU ticks of waited-for children) from /proc/PID/stat."""
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = text.rsplit(")", 1)[1].split()
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return ppid, utime + stime, cutime + cstime


def _stats() -> dict[int, tuple[int, int, int]]:
    stats = {}
    for path in PROC.glob("[0-9]*/stat"):
        try:
            stats[int(path.parent.name)] = parse_stat(path.read_text())
        except (OSError, ValueError, IndexError):
            continue  # the process exited while we read
    return stats


def tree_seconds(root: int) -> float:
    """CPU seconds used so far by `root`, its exited children and its live children."""
    stats = _stats()
    if root not in stats:
        raise ProcessLookupError(root)
    _, own, reaped = stats[root]
    ticks = own + reaped
    ticks += sum(own + reaped for ppid, own, reaped in stats.values() if ppid == root)
    return ticks / os.sysconf("SC_CLK_TCK")


def processes_ticks(pids: list[int]) -> dict[int, int]:
    """CPU ticks used so far by each of `pids` that is still running."""
    ticks = {}
    for pid in pids:
        try:
            _, own, reaped = parse_stat((PROC / str(pid) / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue
        ticks[pid] = own + reaped
    return ticks


def seconds_between(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU seconds the processes used between two processes_ticks(); a process that
    started in between counts whole, one that ended in between is lost."""
    ticks = sum(used - before.get(pid, 0) for pid, used in after.items())
    return ticks / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    return sorted(child for child, (ppid, _, _) in _stats().items() if ppid == pid)


def parent_of(pid: int) -> int | None:
    try:
        return parse_stat((PROC / str(pid) / "stat").read_text())[0]
    except (OSError, ValueError, IndexError):
        return None


def spent_during(
    run: Callable[[], T], root: int, backends: Callable[[], list[int]] | None = None
) -> tuple[T, float, float | None]:
    """run()'s result, the CPU seconds `root`'s process tree spent during it and, when
    `backends` lists processes (the database's backends, read before and after), theirs;
    None without `backends`."""
    listed_before = processes_ticks(backends()) if backends else None
    tree_before = tree_seconds(root)
    result = run()
    tree = tree_seconds(root) - tree_before
    listed = None
    if listed_before is not None:
        listed = seconds_between(listed_before, processes_ticks(backends()))
    return result, tree, listed
