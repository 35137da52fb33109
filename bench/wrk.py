"""Running wrk and reading its results.

Every scenario script loads bench/lua/report.lua, whose done() prints one
`WRK_JSON {...}` line after wrk's human-readable report; that line is what is parsed,
so a change in wrk's text layout cannot silently change a figure.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import subprocess
from dataclasses import dataclass
from pathlib import Path

MARKER = "WRK_JSON "
LUA_DIR = Path(__file__).resolve().parent / "lua"


class WrkError(RuntimeError):
    """wrk failed or printed no result line."""


@dataclass(frozen=True)
class Load:
    threads: int = 2
    connections: int = 16
    duration_s: int = 15
    timeout_s: int = 10  # above any expected latency: a slow reply counts, not a "timeout"


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    non_2xx: int  # wrk counts replies with a status of 400 or more; the API never redirects
    socket_errors: dict[str, int]  # connect, read, write, timeout
    latency_ms: dict[str, float]  # mean, p50, p90, p99, max
    cpu_s: float = 0.0  # CPU time wrk itself used (user + system)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def parse(output: str) -> WrkResult:
    """The result in wrk's output (raises WrkError when there is none)."""
    lines = [line for line in output.splitlines() if line.startswith(MARKER)]
    if len(lines) != 1:
        raise WrkError(f"expected one {MARKER.strip()} line in wrk's output, found {len(lines)}")
    try:
        data = json.loads(lines[0][len(MARKER) :])
        errors = data["errors"]
        latency = data["latency_us"]
        return WrkResult(
            requests=int(data["requests"]),
            duration_s=data["duration_us"] / 1e6,
            non_2xx=int(errors["status"]),
            socket_errors={k: int(errors[k]) for k in ("connect", "read", "write", "timeout")},
            latency_ms={k: latency[k] / 1000 for k in ("mean", "p50", "p90", "p99", "max")},
        )
    except (ValueError, KeyError, TypeError) as error:
        raise WrkError(f"unreadable wrk result line: {error}") from None


def command(
    wrk: str, url: str, script: str, load: Load, headers: dict[str, str] | None = None
) -> list[str]:
    args = [
        wrk,
        f"--threads={load.threads}",
        f"--connections={load.connections}",
        f"--duration={load.duration_s}s",
        f"--timeout={load.timeout_s}s",
        "--latency",
        f"--script={LUA_DIR / script}",
    ]
    for name, value in (headers or {}).items():
        args.append(f"--header={name}: {value}")
    return [*args, url]


def run(
    wrk: str,
    url: str,
    script: str,
    load: Load,
    headers: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[WrkResult, str]:
    """Run one load; returns the parsed result and wrk's full output."""
    before = _children_cpu_s()
    completed = subprocess.run(  # noqa: S603 - our own command line
        command(wrk, url, script, load, headers),
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {}), "BENCH_LUA_DIR": str(LUA_DIR)},
        timeout=load.duration_s + load.timeout_s + 30,
        check=False,
    )
    output = completed.stdout + completed.stderr
    if completed.returncode != 0:
        raise WrkError(f"wrk exited {completed.returncode}: {output.strip()[-300:]}")
    return dataclasses.replace(parse(output), cpu_s=_children_cpu_s() - before), output


def _children_cpu_s() -> float:
    """CPU time of the finished child processes (wrk, once it has been waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
