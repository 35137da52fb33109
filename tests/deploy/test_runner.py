"""The single runner: real programs, echo, exit codes, dry run, stdin, exports."""

from __future__ import annotations

import pytest
from conduit_deploy.errors import CommandFailed, ProgramNotFound
from conduit_deploy.runner import Runner


@pytest.fixture
def lines():
    return {"echo": [], "plan": []}


def make(lines, dry_run=False) -> Runner:
    return Runner(dry_run=dry_run, echo=lines["echo"].append, plan=lines["plan"].append)


def test_runs_the_program_and_echoes_the_quoted_command(lines):
    result = make(lines).run(["sh", "-c", "echo out; echo err >&2", "a b"], capture=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, "out\n", "err\n")
    assert lines["echo"] == ["$ sh -c 'echo out; echo err >&2' 'a b'"]


def test_a_failure_carries_the_exit_code_and_the_last_error_lines(lines):
    with pytest.raises(CommandFailed) as caught:
        make(lines).run(["sh", "-c", "echo one >&2; echo two >&2; exit 3"], capture=True)
    assert caught.value.returncode == 3
    assert str(caught.value).endswith("failed with exit code 3: one | two")


def test_check_false_returns_the_failure(lines):
    result = make(lines).run(["false"], check=False)
    assert not result.ok
    assert result.returncode == 1


def test_a_missing_program_is_named(lines):
    with pytest.raises(ProgramNotFound, match="no-such-program-xyz is not installed"):
        make(lines).run(["no-such-program-xyz", "--version"])


def test_a_command_past_its_timeout_fails(lines):
    with pytest.raises(CommandFailed, match=r"timed out: no result after 0\.2 s"):
        make(lines).run(["sleep", "5"], timeout=0.2)


def test_stdin_reaches_the_program_and_never_the_log(lines):
    result = make(lines).run(["cat"], stdin="hunter2", stdin_note="a password", capture=True)
    assert result.stdout == "hunter2"
    assert lines["echo"] == ["$ cat  # stdin: a password"]
    assert "hunter2" not in " ".join(lines["echo"])


def test_exports_apply_to_later_commands(lines):
    runner = make(lines)
    runner.export("CONDUIT_TEST_VALUE", "a b")
    result = runner.run(["sh", "-c", 'printf %s "$CONDUIT_TEST_VALUE"'], capture=True)
    assert result.stdout == "a b"
    assert lines["echo"][0] == "$ export CONDUIT_TEST_VALUE='a b'"


def test_a_dry_run_prints_the_commands_and_runs_nothing(lines, tmp_path):
    marker = tmp_path / "ran"
    runner = make(lines, dry_run=True)
    runner.export("KOPS_STATE_STORE", "gs://bucket")
    result = runner.run(["touch", str(marker)])
    assert result.ok
    assert not marker.exists()
    assert lines["plan"] == ["export KOPS_STATE_STORE=gs://bucket", f"touch {marker}"]
    assert lines["echo"] == []


def test_a_dry_run_still_runs_safe_local_queries(lines):
    result = make(lines, dry_run=True).run(["echo", "v1"], capture=True, dry_run_safe=True)
    assert result.stdout == "v1\n"
    assert lines["plan"] == []
