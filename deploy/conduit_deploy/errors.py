"""The failures conduit-deploy reports to its user.

Every error a user can act on is a DeployError: the CLI prints its message on one line
and exits non-zero, without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence


class DeployError(Exception):
    """A failure with a message meant for the person running the tool."""

    exit_code = 1


class ConfigError(DeployError):
    """CI variables or command-line arguments that cannot be used."""


class VariableErrors(ConfigError):
    """CI variables that are missing or invalid, all of them in one message."""

    def __init__(self, command: str, missing: Sequence[str], invalid: Sequence[str]):
        self.command = command
        self.missing = tuple(missing)
        self.invalid = tuple(invalid)
        parts = []
        if self.missing:
            parts.append(f"not set: {', '.join(self.missing)}")
        if self.invalid:
            parts.append(f"invalid: {'; '.join(self.invalid)}")
        super().__init__(
            f"`{command}` cannot start; CI variables {'; '.join(parts)}"
            " (set them in Settings > CI/CD > Variables, or export them)"
        )


class RenderError(DeployError):
    """The manifests cannot be rendered (a template, a value or an overlay is wrong)."""


class ProgramNotFound(DeployError):
    """An external program is not installed or not on PATH."""

    def __init__(self, program: str, hint: str = ""):
        self.program = program
        message = f"{program} is not installed or not on PATH"
        super().__init__(f"{message} ({hint})" if hint else message)


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

    def __init__(self, message: str, last: str):
        self.last = last
        super().__init__(message)


class RolloutFailed(DeployError):
    """The new release did not become healthy; the app was rolled back."""


class SmokeFailed(DeployError):
    """The deployed API did not behave as the smoke test expects."""


class CheckFailed(DeployError):
    """One preflight check failed; the message is the reason and the fix."""


class PreflightFailed(DeployError):
    """At least one preflight check failed (each has printed its line)."""


class Unreachable(CheckFailed):
    """A host could not be reached: the network or a proxy is at fault, not the check.

    The preflight reports each unreachable endpoint once, and the checks that needed it
    as not run.
    """

    def __init__(self, endpoint: str, detail: str):
        self.endpoint = endpoint
        super().__init__(f"cannot reach {endpoint}: {detail}")


class GcpError(CheckFailed):
    """A Google Cloud call failed; the message says which and why, on one line."""

    def __init__(self, what: str, detail: str, status: int | None = None):
        self.status = status
        super().__init__(f"{what}: {detail}")


class RegistryError(CheckFailed):
    """The registry refused the credentials, or could not be asked."""
