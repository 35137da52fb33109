"""Sampling the uWSGI workers with py-spy while a scenario is under load.

py-spy attaches to the running master and its workers (--subprocesses) from outside,
so the profile is of the production configuration, not of a test server. Profiling
slows the workers down: the figures of a profiled run are not the results. Only samples
of threads holding the GIL are kept (--gil): they show where the CPU goes, not where
requests wait (for PostgreSQL, say).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench import BenchError

EXTENSIONS = {"flamegraph": "svg", "raw": "txt", "speedscope": "json"}


@dataclass
class Recording:
    scenario: str
    output: Path
    process: subprocess.Popen


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
        # With --subprocesses a stack starts with its process (and thread) name: not code.
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


class Profiler:
    def __init__(self, bin_dir: Path, logs: Path, output_format: str):
        found = shutil.which("py-spy", path=f"{bin_dir}:{os.environ.get('PATH', '')}")
        if found is None:
            raise BenchError("--profile needs py-spy (pip install py-spy==0.4.3)")
        self.binary, self.logs, self.format = found, logs, output_format
        self.master_pid: int | None = None
        self.scenarios: set[str] = set()
        self.outputs: list[Path] = []

    def attach(self, master_pid: int, scenarios: set[str]) -> None:
        self.master_pid, self.scenarios = master_pid, scenarios

    def start(self, scenario: str, duration_s: int) -> Recording | None:
        if scenario not in self.scenarios or self.master_pid is None:
            return None
        output = self.logs / f"profile-{scenario}.{EXTENSIONS[self.format]}"
        process = subprocess.Popen(  # noqa: S603 - our own command line
            [
                self.binary, "record", "--pid", str(self.master_pid), "--subprocesses",
                "--duration", str(duration_s), "--rate", "200", "--nonblocking", "--gil",
                "--format", self.format, "--output", str(output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        return Recording(scenario, output, process)

    def finish(self, recording: Recording) -> None:
        try:
            _, errors = recording.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            recording.process.kill()
            raise BenchError(f"py-spy did not finish profiling {recording.scenario}") from None
        if recording.process.returncode != 0:
            raise BenchError(f"py-spy failed on {recording.scenario}: {errors.strip()[-300:]}")
        self.outputs.append(recording.output)

    def summarise(self) -> None:
        for output in self.outputs:
            print(f"\nprofile: {output}")
            if self.format != "raw":
                continue
            summary = summarise_collapsed(output.read_text(), top=10_000)
            print(f"{'on stack':>9} {'leaf':>6}  function (most inclusive)")
            for frame, inclusive, leaf in summary[:30]:
                print(f"{inclusive:9.1%} {leaf:6.1%}  {frame}")
            print(f"{'on stack':>9} {'leaf':>6}  function (most samples of its own)")
            for frame, inclusive, leaf in sorted(summary, key=lambda f: -f[2])[:20]:
                print(f"{inclusive:9.1%} {leaf:6.1%}  {frame}")
