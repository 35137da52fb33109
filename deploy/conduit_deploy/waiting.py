"""Bounded polling: try, report one line per attempt, give up with a clear error."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .console import log
from .errors import WaitTimeout

T = TypeVar("T")


@dataclass
class Clock:
    """Time as the waits see it; tests pass a fake that advances on sleep()."""

    now: Callable[[], float] = field(default=time.monotonic)
    sleep: Callable[[float], None] = field(default=time.sleep)


def poll(
    attempt: Callable[[], tuple[T | None, str]],
    *,
    what: str,
    timeout: float,
    interval: float,
    clock: Clock | None = None,
    report: Callable[[str], None] = log,
) -> T:
    """Call attempt() until it returns a value, at most for `timeout` seconds.

    attempt() returns (value, detail): a value other than None ends the wait; detail
    says in a few words what this attempt saw, and is printed as the progress line.
    """
    clock = clock or Clock()
    started = clock.now()
    number = 0
    while True:
        number += 1
        value, detail = attempt()
        elapsed = clock.now() - started
        report(f"    {what}: attempt {number} ({elapsed:.0f}s): {detail}")
        if value is not None:
            return value
        if elapsed + interval > timeout:
            raise WaitTimeout(
                f"{what}: gave up after {elapsed:.0f}s and {number} attempts "
                f"(timeout {timeout:g}s); last: {detail}",
                last=detail,
            )
        clock.sleep(interval)
