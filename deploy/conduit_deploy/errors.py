"""The failures conduit-deploy reports to its user.

Every error a user can act on (a missing variable, a failed command, a timeout) is a
DeployError: the CLI prints its message on one line and exits non-zero, without a
traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence


class DeployError(Exception):
    """A failure with a message meant for the person running the tool."""

    exit_code = 1


class ConfigError(DeployError):
    """CI variables or command-line arguments that cannot be used."""


class MissingVariables(ConfigError):
    """One or more required CI variables are unset or empty."""

    def __init__(self, command: str, names: Sequence[str]):
        self.command = command
        self.names = tuple(names)
        super().__init__(
            f"`{command}` needs CI variables that are not set: {', '.join(self.names)}"
            " (set them in Settings > CI/CD > Variables, or export them)"
        )


class ProgramNotFound(DeployError):
    """An external program is not installed or not on PATH."""

    def __init__(self, program: str):
        self.program = program
        super().__init__(f"{program} is not installed or not on PATH")


class CommandFailed(DeployError):
    """An external program exited non-zero (or ran past its time limit)."""

    def __init__(self, command: str, returncode: int | None, detail: str = ""):
        self.command = command
        self.returncode = returncode
        self.detail = detail
        outcome = "timed out" if returncode is None else f"failed with exit code {returncode}"
        message = f"`{command}` {outcome}"
        if detail:
            message += f": {detail}"
        super().__init__(message)


class WaitTimeout(DeployError):
    """Something we poll for did not happen within its time limit."""


class RolloutFailed(DeployError):
    """The new release did not become healthy; the app was rolled back."""


class SmokeFailed(DeployError):
    """The deployed API did not behave as the smoke test expects."""
