"""The tier runner (noxfile.py) and the Makefile's installs, as a developer meets them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import noxfile
from tests.support import ROOT

NOX = [sys.executable, "-m", "nox", "--no-color", "--noxfile", str(ROOT / "noxfile.py")]


def nox(*args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **env}
    for name, value in env.items():
        if value is None:
            environment.pop(name)
    return subprocess.run(
        [*NOX, *args], env=environment, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_tier_without_its_program_is_skipped_in_one_line_locally():
    result = nox("--sessions", "postgres", TEST_DATABASE_URL=None, CI=None)
    assert result.returncode == 0, result.stderr
    skipped = [line for line in result.stderr.splitlines() if "skipped" in line]
    assert skipped == [
        "nox > Session postgres skipped: needs TEST_DATABASE_URL, which is not set: "
        "`make prerequisites`, then `.ci/start-postgres.sh` starts a UTF8 server and prints it; "
        "or `docker run --rm -d -p 5432:5432 -e POSTGRES_PASSWORD=conduit postgres:18` and "
        "TEST_DATABASE_URL=postgresql://postgres:conduit@127.0.0.1:5432/postgres."
    ]


def test_in_ci_a_tier_without_its_program_fails():
    result = nox("--sessions", "postgres", TEST_DATABASE_URL=None, CI="true")
    assert result.returncode != 0
    assert "CI=true: nothing is skipped" in result.stderr


def test_the_run_ends_with_one_summary_line_per_tier():
    result = nox("--sessions", "lint", "postgres", TEST_DATABASE_URL=None, CI=None)
    summary = [line for line in result.stderr.splitlines() if line.startswith("nox > * ")]
    # lint's own outcome depends on the tree it runs in (a GitLab job adds caches to it);
    # what is under test is one line per tier, naming its outcome.
    assert [line.split(":")[0] for line in summary] == ["nox > * lint", "nox > * postgres"]
    assert summary[0].split(",")[0] in {"nox > * lint: success", "nox > * lint: aborted"}
    assert summary[1].startswith("nox > * postgres: skipped (needs TEST_DATABASE_URL")


def test_unknown_tier_is_an_error():
    result = nox("--sessions", "no-such-tier")
    assert result.returncode != 0
    assert "no-such-tier" in result.stderr


def fake_node(tmp_path: Path, version: str) -> str:
    node = tmp_path / "node"
    node.write_text(f"#!/bin/sh\necho {version}\n")
    node.chmod(0o755)
    return str(node)


def test_a_node_older_than_the_tools_need_gets_one_clear_line(tmp_path: Path):
    # Debian bookworm's Node: yargs (newman, gitlab-ci-local) needs 20 or later.
    problem = noxfile.node_problem(fake_node(tmp_path, "v18.20.4"))
    assert problem == f"is v18.20.4 at {tmp_path}/node; the Node tools need 20 or later"
    assert noxfile.node_problem(fake_node(tmp_path, "v20.0.0")) is None
    assert noxfile.node_problem(None) == "is not installed"


class FakeSession:
    name = "fake"

    def __init__(self) -> None:
        self.errors: list[str] = []

    def log(self, message: str) -> None:
        pass

    def error(self, message: str) -> None:
        self.errors.append(message)


def test_long_lines_are_cut_on_the_terminal_and_kept_in_the_log(capfd, monkeypatch, tmp_path):
    monkeypatch.setattr(noxfile, "LOGS", tmp_path)
    monkeypatch.setattr(noxfile, "ROOT", tmp_path)
    session = FakeSession()
    noxfile.run(session, sys.executable, "-c", "print('x' * 100_000); print('end')")
    shown = capfd.readouterr().out.splitlines()
    assert len(shown[0]) < noxfile.MAX_LINE + 200
    assert "99600 characters cut" in shown[0]
    assert shown[1] == "end"
    assert len((tmp_path / "fake.log").read_text()) == 100_000 + len("\nend\n")
    assert session.errors == []


def test_a_program_that_ran_no_test_fails_the_tier(monkeypatch, tmp_path):
    monkeypatch.setattr(noxfile, "LOGS", tmp_path)
    monkeypatch.setattr(noxfile, "ROOT", tmp_path)
    session = FakeSession()
    noxfile.run(session, sys.executable, "-c", "raise SystemExit(5)")  # pytest: no tests
    assert session.errors == [f"{sys.executable} exited with status 5"]


def test_an_npm_that_crashes_but_exits_0_does_not_mark_the_tools_installed(tmp_path: Path):
    for name in ("Makefile", "package.json", "package-lock.json"):
        shutil.copy(ROOT / name, tmp_path / name)
    npm = tmp_path / "npm"
    npm.write_text("#!/bin/sh\necho 'npm error Exit handler never called!' >&2\nexit 0\n")
    npm.chmod(0o755)
    result = subprocess.run(
        ["make", "--old-file=.venv/.test", f"NPM={npm}", "node_modules/.installed"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "make: npm ci did not install newman" in result.stderr
    assert not (tmp_path / "node_modules" / ".installed").exists()
