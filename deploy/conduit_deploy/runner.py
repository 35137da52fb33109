"""The one way conduit-deploy runs external programs (docker, kops, kubectl, git).

Every call goes through Runner.run(), which resolves the binary on PATH, prints the
command as a shell line, and raises CommandFailed with the exit code when it fails.
A dry run is the same guard in the same place: the command is printed and not run.
Tests replace this single point and assert on the argument lists.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .errors import CommandFailed, ProgramNotFound

# How many trailing lines of a failed command's stderr go into the error message.
_DETAIL_LINES = 3


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


def execute(call: Invocation) -> Result:
    """Run the program for real: no shell, output streamed unless captured."""
    shown = format_command(call.args)
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
        raise CommandFailed(shown, None, f"no result after {call.timeout:g} s") from expired
    return Result(call.args, completed.returncode, completed.stdout or "", completed.stderr or "")


def format_command(args: Sequence[str]) -> str:
    """The command as a line one could paste into a POSIX shell."""
    return shlex.join(args)


def tail(text: str, lines: int = _DETAIL_LINES) -> str:
    """The last non-empty lines of a program's output, joined on one line."""
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


def log(message: str) -> None:
    """A progress line: on stderr, so stdout stays machine-readable."""
    print(message, file=sys.stderr, flush=True)


class Runner:
    """Runs external programs, or prints them when dry_run is set.

    exported variables (see export()) apply to every later command, the way
    `export` does in a shell script, so a dry run prints a script one could replay.
    """

    def __init__(
        self,
        *,
        dry_run: bool = False,
        which: Callable[[str], str | None] = shutil.which,
        echo: Callable[[str], None] = log,
        plan: Callable[[str], None] | None = None,
        executor: Callable[[Invocation], Result] = execute,
    ):
        self.dry_run = dry_run
        self._execute = executor
        self._which = which
        self._echo = echo
        # In a dry run the commands are the product, so they go to stdout.
        self._plan = plan or (lambda line: print(line, flush=True))
        self.exported: dict[str, str] = {}

    def export(self, name: str, value: str) -> None:
        """Set an environment variable for every later command, and show it."""
        self.exported[name] = value
        line = f"export {name}={shlex.quote(value)}"
        if self.dry_run:
            self._plan(line)
        else:
            self._echo(f"$ {line}")

    def note(self, comment: str) -> None:
        """A comment in the dry-run plan (what happens between commands)."""
        if self.dry_run:
            self._plan(f"# {comment}")

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
        dry_run_safe: a read-only local query (git describe) that runs even in a dry
            run, so the printed plan carries real values.
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
            raise ProgramNotFound(args[0])
        env = {**os.environ, **self.exported} if self.exported else None
        result = self._execute(
            Invocation(args, binary, stdin, capture, env, timeout, dict(self.exported))
        )
        if check and not result.ok:
            raise CommandFailed(shown, result.returncode, tail(result.stderr or result.stdout))
        return result
