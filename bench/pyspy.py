"""Sampling the uWSGI workers with py-spy while a scenario is under load.

py-spy attaches to the running workers from outside, so the profile is of the
production configuration, not of a test server. Profiling slows the workers down: the
figures of a profiled run are not the results. Only samples of threads holding the GIL
are kept (--gil): they show where the CPU goes, not where requests wait (for
PostgreSQL, say).

One py-spy per worker, each on its own pid: not one on the master with --subprocesses,
which also samples the master and the HTTP router (no app code runs there) and cannot
tell them from the workers by name, since pyuwsgi cannot rename its processes (all are
`python3 .../uwsgi`). The workers are found in the process tree when each recording
starts (bench.server.Server.workers: the master's children but the router), so a worker
uWSGI replaced since the last scenario is profiled too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import BenchError

EXTENSIONS = {"flamegraph": "svg", "raw": "txt", "speedscope": "json"}


@dataclass
class Recording:
    scenario: str
    processes: list[tuple[Path, subprocess.Popen]] = field(default_factory=list)  # per worker


FRAME_LINE = re.compile(r" \((.+?):\d+\)$")


def function_of(frame: str) -> str:
    """`name (path:line)` -> `name (path)`: a function's samples, whatever line ran."""
    return FRAME_LINE.sub(r" (\1)", frame)


def summarise_collapsed(text: str, top: int = 15) -> list[tuple[str, float, float]]:
    """(function, share of samples it is on the stack of, share it is the leaf of), most
    inclusive first, from py-spy's raw output (`frame;frame;... count` per line)."""
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        # A stack may start with its process (--subprocesses) or thread (--threads): not code.
        frames = [
            function_of(f) for f in stack.split(";") if not f.startswith(("process ", "thread "))
        ]
        if not frames:
            continue
        for frame in set(frames):
            inclusive[frame] += samples
        leaf[frames[-1]] += samples
    if not total:
        return []
    return [
        (frame, samples / total, leaf[frame] / total)
        for frame, samples in inclusive.most_common(top)
    ]


def command(binary: str, pid: int, duration_s: int, output_format: str, output: Path) -> list[str]:
    """py-spy recording the one process `pid` for `duration_s`."""
    return [
        binary, "record", "--pid", str(pid), "--duration", str(duration_s), "--rate", "200",
        "--nonblocking", "--gil", "--format", output_format, "--output", str(output),
    ]  # fmt: skip


class Profiler:
    def __init__(self, bin_dir: Path, logs: Path, output_format: str):
        found = shutil.which("py-spy", path=f"{bin_dir}:{os.environ.get('PATH', '')}")
        if found is None:
            raise BenchError("--profile needs py-spy (pip install py-spy==0.4.3)")
        self.binary, self.logs, self.format = found, logs, output_format
        self.workers: Callable[[], list[int]] | None = None
        self.scenarios: set[str] = set()
        self.outputs: dict[str, list[Path]] = {}

    def attach(self, workers: Callable[[], list[int]], scenarios: set[str]) -> None:
        """`workers` lists the server's worker processes; it is asked at each start."""
        self.workers, self.scenarios = workers, scenarios

    def start(self, scenario: str, duration_s: int) -> Recording | None:
        if scenario not in self.scenarios or self.workers is None:
            return None
        pids = self.workers()
        if not pids:
            raise BenchError(f"no uWSGI worker to profile during {scenario}")
        recording = Recording(scenario)
        for pid in pids:
            output = self.logs / f"profile-{scenario}-{pid}.{EXTENSIONS[self.format]}"
            process = subprocess.Popen(  # noqa: S603 - our own command line
                command(self.binary, pid, duration_s, self.format, output),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            recording.processes.append((output, process))
        return recording

    def finish(self, recording: Recording) -> None:
        failures = []
        for output, process in recording.processes:
            try:
                _, errors = process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
                failures.append(f"{output.name}: did not finish")
                continue
            if process.returncode != 0:
                failures.append(f"{output.name}: {errors.strip()[-300:]}")
                continue
            self.outputs.setdefault(recording.scenario, []).append(output)
        if failures:
            raise BenchError(f"py-spy failed on {recording.scenario}: {'; '.join(failures)}")

    def summarise(self) -> None:
        for scenario, outputs in self.outputs.items():
            print(f"\nprofile of {scenario}: {', '.join(str(o) for o in outputs)}")
            if self.format != "raw":
                continue
            # The workers run the same code: their samples add up.
            text = "\n".join(output.read_text() for output in outputs)
            summary = summarise_collapsed(text, top=10_000)
            print(f"{'on stack':>9} {'leaf':>6}  function (most inclusive)")
            for frame, inclusive, leaf in summary[:30]:
                print(f"{inclusive:9.1%} {leaf:6.1%}  {frame}")
            print(f"{'on stack':>9} {'leaf':>6}  function (most samples of its own)")
            for frame, inclusive, leaf in sorted(summary, key=lambda f: -f[2])[:20]:
                print(f"{inclusive:9.1%} {leaf:6.1%}  {frame}")
