"""The Docker CLI as the image tier drives it: the commands an operator types.

Every container it starts carries the run's label, so the session can remove all of
them at the end, pass or fail, without touching anyone else's.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass

LOG_TAIL_LINES = 30
ERROR_TAIL_CHARS = 3000


class DockerError(Exception):
    """A docker command failed; the message ends with the end of its output."""


@dataclass(frozen=True)
class Docker:
    binary: str
    label: str  # key=value put on every container of this run

    def __call__(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        """Run `docker ARGS`; its stdout, stripped. Raises DockerError when check fails."""
        result = subprocess.run(
            [self.binary, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            raise DockerError(
                f"docker {' '.join(args[:3])} ... exited {result.returncode}: "
                f"{output[-ERROR_TAIL_CHARS:]}"
            )
        return result.stdout.strip()

    def has_image(self, ref: str) -> bool:
        result = subprocess.run(
            [self.binary, "image", "inspect", ref], capture_output=True, check=False
        )
        return result.returncode == 0

    def inspect(self, name: str, template: str) -> str:
        return self("inspect", "--format", template, name)

    def _run_options(self, *options: str) -> list[str]:
        # Every container of the run: labelled for the clean-up, on the host's network
        # so that it reaches the loopback services the fixtures start.
        return ["run", "--label", self.label, "--network", "host", *options]

    def start(
        self, image: str, name: str, *command: str, options: tuple[str, ...] = ()
    ) -> Container:
        """A detached container of the run."""
        self(*self._run_options("--detach", "--name", name, *options), image, *command)
        return Container(self, name)

    def run_once(self, image: str, *command: str, options: tuple[str, ...] = ()) -> str:
        """`docker run --rm` to completion; its output."""
        return self(*self._run_options("--rm", *options), image, *command)

    def run_argv(self, image: str, *command: str, options: tuple[str, ...] = ()) -> list[str]:
        """The argv of a `docker run --rm`, for callers that manage the process themselves."""
        return [self.binary, *self._run_options("--rm", *options), image, *command]

    def remove_run_containers(self) -> None:
        ids = self("ps", "--all", "--quiet", "--filter", f"label={self.label}", check=False)
        if ids:
            self("rm", "--force", *ids.split(), check=False)


@dataclass(frozen=True)
class Container:
    docker: Docker
    name: str

    def inspect(self, template: str) -> str:
        return self.docker.inspect(self.name, template)

    def logs(self, lines: int = LOG_TAIL_LINES) -> str:
        return self.docker("logs", "--tail", str(lines), self.name, check=False)

    def running(self) -> bool:
        return self.inspect("{{.State.Running}}") == "true"

    def wait(self, timeout: float) -> int | None:
        """Wait for the container to exit; its exit code, None if still running."""
        try:
            return int(self.docker("wait", self.name, timeout=timeout))
        except subprocess.TimeoutExpired:
            return None

    def wait_for_health(self, timeout: float) -> str:
        """Docker's health status once it is no longer `starting` (or after timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.inspect("{{.State.Health.Status}}")
            if status != "starting" or time.monotonic() > deadline:
                return status
            time.sleep(1)

    def stop(self, timeout: float) -> None:
        """`docker stop`: SIGTERM, then SIGKILL after `timeout` seconds."""
        self.docker("stop", "--time", str(int(timeout)), self.name, timeout=timeout + 30)

    def signal(self, name: str) -> None:
        self.docker("kill", "--signal", name, self.name)

    def remove(self) -> None:
        self.docker("rm", "--force", self.name, check=False)
