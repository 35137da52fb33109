"""How long the pack job's build takes after a code-only change, by cache strategy.

Every build runs in a new Docker engine (images/engine), as empty as the dind service
of a GitLab job, so the only cache a build can use is the one it pulls from the
registry beside the engine. Steps:

1. a first pipeline builds this tree and pushes the image and its caches;
2. one line of the app's code changes;
3. the next pipeline's build, once per strategy, each in a new engine:
   - build-stage: the builder stage pushed as its own image with inline cache
     (`--target build`), then used as `--cache-from` with the previous image;
   - final-stage: today's `conduit-deploy pack`, `--cache-from` the previous image
     only (BuildKit's inline cache describes the final stage alone);
   - none: no cache at all.

    python ci/rehearsal/build_cache.py

Prints one line per strategy. The times include pulling the caches, not pushing.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import rehearse  # noqa: E402 - beside this file

ENGINE_IMAGE = "pipeline-rehearsal/engine:bookworm"
BASE_IMAGE = "python:3.11.13-slim-bookworm"
REPOSITORY = "localhost:5000/conduit"
BUILD_CACHE = f"{REPOSITORY}:buildcache"
LATEST = f"{REPOSITORY}:latest"
INLINE = ["--build-arg", "BUILDKIT_INLINE_CACHE=1"]
CODE_CHANGE = "conduit/__init__.py"


def build(*options: str, tags: tuple[str, ...]) -> list[str]:
    command = ["docker", "build", "--file", "docker/Dockerfile"]
    command += ["--build-arg", f"BASE_IMAGE={BASE_IMAGE}", *options]
    for tag in tags:
        command += ["--tag", tag]
    return [*command, "."]


def strategy_commands(strategy: str, version: str) -> list[list[str]]:
    tags = (f"{REPOSITORY}:{version}", LATEST)
    if strategy == "build-stage":
        return [
            build("--target", "build", "--cache-from", BUILD_CACHE, *INLINE, tags=(BUILD_CACHE,)),
            build("--cache-from", BUILD_CACHE, "--cache-from", LATEST, *INLINE, tags=tags),
        ]
    if strategy == "final-stage":
        return [build("--cache-from", LATEST, *INLINE, tags=tags)]
    if strategy == "none":
        return [build(tags=tags)]
    raise ValueError(strategy)


class Engine:
    def __init__(self, name: str, registry_volume: str) -> None:
        self.name = name
        rehearse.sh(
            "docker", "run", "--detach", "--privileged", "--name", name,
            "--volume", f"{registry_volume}:/var/lib/docker-registry",
            ENGINE_IMAGE, capture_output=True,
        )  # fmt: skip
        for _ in range(60):
            if self.run("docker", "info", check=False).returncode == 0:
                break
            time.sleep(1)
        else:
            raise SystemExit(f"build-cache: the engine in {name} did not start")
        saved = subprocess.Popen(["docker", "save", BASE_IMAGE], stdout=subprocess.PIPE)
        self.run("docker", "load", "--quiet", stdin=saved.stdout)
        saved.wait()

    def run(self, *command: str, check: bool = True, stdin=None) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["docker", "exec", "--interactive", "--workdir", "/context", self.name, *command],
            stdin=stdin, capture_output=True, text=True, check=check,
        )  # fmt: skip

    def copy_context(self, context: Path) -> None:
        self.run("mkdir", "-p", "/context")
        rehearse.sh("docker", "cp", f"{context}/.", f"{self.name}:/context")

    def timed(self, commands: list[list[str]]) -> float:
        started = time.monotonic()
        for command in commands:
            result = self.run(*command, check=False)
            if result.returncode != 0:
                raise SystemExit(
                    f"build-cache: {' '.join(command)} failed:\n{result.stderr[-3000:]}"
                )
        return time.monotonic() - started


@contextmanager
def engine(registry_volume: str) -> Iterator[Engine]:
    name = f"pipeline-rehearsal-engine-{uuid.uuid4().hex[:8]}"
    try:
        yield Engine(name, registry_volume)
    finally:
        subprocess.run(["docker", "rm", "--force", "--volumes", name], capture_output=True)


def main() -> int:
    rehearse.sh(str(HERE / "build-images.sh"), "python-slim", "engine")
    registry = f"pipeline-rehearsal-registry-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="pipeline-build-cache-") as scratch:
        context = Path(scratch) / "context"
        rehearse.copy_tree(rehearse.ROOT, context)
        try:
            with engine(registry) as first:
                first.copy_context(context)
                seconds = first.timed(strategy_commands("build-stage", "1"))
                first.timed([["docker", "push", BUILD_CACHE], ["docker", "push", LATEST]])
            print(f"build-cache: first build, no cache            {seconds:6.0f} s", flush=True)

            changed = context / CODE_CHANGE
            changed.write_text(changed.read_text() + "\n# a code-only change\n")
            for strategy in ("build-stage", "final-stage", "none"):
                with engine(registry) as fresh:
                    fresh.copy_context(context)
                    seconds = fresh.timed(strategy_commands(strategy, "2"))
                print(
                    f"build-cache: after a code change, {strategy:<12} {seconds:6.0f} s", flush=True
                )
        finally:
            subprocess.run(["docker", "volume", "rm", registry], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
