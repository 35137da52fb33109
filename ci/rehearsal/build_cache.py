"""How long the pack job's build takes after a code-only change, by cache strategy.

A GitLab pack job starts with an empty dind engine, so the only cache it has is what it
pulls from the registry. Here that is imitated on the host's engine:

- a registry of our own (Debian's docker-registry) on 127.0.0.1;
- a base image with a label of its own, so no layer that another build left in the
  engine can match. Every image built on that base inherits the label, and between two
  builds all of them are removed. This works with the classic builder, whose cache is
  the image store; BuildKit's cache cannot be emptied without pruning every other
  user's cache on this shared engine. (No separate engine is possible either: this
  machine allows no privileged container.)

Steps:

1. a first pipeline builds this tree and pushes the image and its caches;
2. one line of the app's code changes;
3. the next pipeline's build, once per strategy, each starting from an empty engine:
   - build-stage: the builder stage pushed as its own image (`--target build`), pulled
     and used as `--cache-from` with the previous image;
   - final-stage: today's `conduit-deploy pack`, `--cache-from` the previous image
     only, which holds the final stage alone;
   - none: no cache.

    python ci/rehearsal/build_cache.py

Prints one line per strategy. The times include pulling the caches, not pushing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import rehearse  # noqa: E402 - beside this file

STANDIN_BASE = "python:3.11.13-slim-bookworm"
LABEL = "org.conduit.rehearsal.build-cache"
CODE_CHANGE = "conduit/__init__.py"
STRATEGIES = ("build-stage", "final-stage", "none")


class Measurement:
    def __init__(self, context: Path, registry: str) -> None:
        self.context = context
        self.nonce = uuid.uuid4().hex[:12]
        self.base = f"pipeline-rehearsal/build-cache-base:{self.nonce}"
        self.repository = f"{registry}/pipeline-rehearsal-conduit"
        self.build_cache = f"{self.repository}:buildcache"
        self.latest = f"{self.repository}:latest"
        dockerfile = f"FROM {STANDIN_BASE}\nLABEL {LABEL}={self.nonce}\n"
        self.docker("build", "--quiet", "--tag", self.base, "-", stdin=dockerfile)

    def docker(self, *arguments: str, stdin: str | None = None, check: bool = True) -> bool:
        result = subprocess.run(
            ["docker", *arguments],
            cwd=self.context,
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
        )
        if check and result.returncode != 0:
            raise SystemExit(f"build-cache: docker {' '.join(arguments)}:\n{result.stderr[-3000:]}")
        return result.returncode == 0

    def build(self, *options: str, tags: tuple[str, ...]) -> None:
        command = ["build", "--file", "docker/Dockerfile", "--build-arg", f"BASE_IMAGE={self.base}"]
        for tag in tags:
            command += ["--tag", tag]
        self.docker(*command, *options, ".")

    def pipeline(self, strategy: str, version: str) -> float:
        """The pack job's pulls and builds; returns their seconds."""
        tags = (f"{self.repository}:{version}", self.latest)
        started = time.monotonic()
        if strategy == "build-stage":
            # A cache image that is not there yet (the first pipeline) is no error.
            had_stage = self.docker("pull", self.build_cache, check=False)
            had_latest = self.docker("pull", self.latest, check=False)
            stage_cache = ["--cache-from", self.build_cache] if had_stage else []
            self.build("--target", "build", *stage_cache, tags=(self.build_cache,))
            final_cache = ["--cache-from", self.build_cache]
            if had_latest:
                final_cache += ["--cache-from", self.latest]
            self.build(*final_cache, tags=tags)
        elif strategy == "final-stage":
            cache = (
                ["--cache-from", self.latest]
                if self.docker("pull", self.latest, check=False)
                else []
            )
            self.build(*cache, tags=tags)
        else:
            self.build(tags=tags)
        return time.monotonic() - started

    def push(self) -> None:
        for image in (self.build_cache, self.latest):
            self.docker("push", image)

    def empty_engine(self) -> None:
        """Remove every image built on this measurement's base, and the pulled ones."""
        mine = f"label={LABEL}={self.nonce}"
        listed = subprocess.run(
            ["docker", "images", "--all", "--quiet", "--no-trunc", "--filter", mine],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        base_id = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Id}}", self.base],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        doomed = [image for image in dict.fromkeys(listed) if image != base_id]
        if doomed:
            self.docker("rmi", "--force", *doomed, check=False)

    def close(self) -> None:
        self.empty_engine()
        self.docker("rmi", "--force", self.base, check=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> int:
    rehearse.sh(str(HERE / "build-images.sh"), "python-slim")
    with tempfile.TemporaryDirectory(prefix="pipeline-build-cache-") as scratch:
        scratch = Path(scratch)
        port = free_port()
        config = scratch / "registry.yml"
        config.write_text(
            "version: 0.1\n"
            f"storage:\n  filesystem:\n    rootdirectory: {scratch / 'registry'}\n"
            f"http:\n  addr: 127.0.0.1:{port}\n"
        )
        log = (scratch / "registry.log").open("w")
        registry = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=log, stderr=log
        )
        measurement = None
        try:
            context = scratch / "context"
            rehearse.copy_tree(rehearse.ROOT, context)
            measurement = Measurement(context, f"127.0.0.1:{port}")
            seconds = measurement.pipeline("build-stage", "1")
            measurement.push()
            print(f"build-cache: first build, nothing cached        {seconds:5.0f} s", flush=True)

            changed = context / CODE_CHANGE
            changed.write_text(changed.read_text() + "\n# a code-only change\n")
            for strategy in STRATEGIES:
                measurement.empty_engine()
                seconds = measurement.pipeline(strategy, "2")
                print(
                    f"build-cache: after a code change, {strategy:<12} {seconds:5.0f} s", flush=True
                )
        finally:
            if measurement:
                measurement.close()
            registry.terminate()
            registry.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
