"""The tier runner (noxfile.py) and the Makefile's installs, as a developer meets them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from nox import registry
from nox.command import CommandFailed

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
    assert summary[0].split(",")[0] in {"nox > * lint: success", "nox > * lint: failed"}
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
    with pytest.raises(CommandFailed, match="exited with status 5"):  # nox says "failed"
        noxfile.run(FakeSession(), sys.executable, "-c", "raise SystemExit(5)")  # no tests


def test_a_pytest_tier_reports_its_passed_failed_and_skipped_counts(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(noxfile, "LOGS", tmp_path / "logs")
    monkeypatch.setattr(noxfile, "ROOT", tmp_path)
    monkeypatch.setattr(noxfile, "BIN", Path(sys.executable).parent)
    monkeypatch.setattr(noxfile, "COUNTS", {})
    monkeypatch.delenv("REPORTS", raising=False)
    (tmp_path / "test_some.py").write_text(
        textwrap.dedent("""
            import pytest

            def test_one(): pass
            def test_two(): pass
            def test_three(): assert False
            def test_four(): pytest.skip("not here")
            @pytest.fixture
            def broken(): raise RuntimeError
            def test_five(broken): pass
        """)
    )
    with pytest.raises(CommandFailed):
        noxfile.pytest(FakeSession(), "-p", "no:cacheprovider", "test_some.py")
    assert {"fake": noxfile.Counts(passed=2, failed=2, skipped=1)} == noxfile.COUNTS
    capsys.readouterr()
    noxfile.print_counts()
    assert capsys.readouterr().err.splitlines()[-1] == "nox >   fake: 2 passed, 2 failed, 1 skipped"


def test_a_tier_whose_pytest_wrote_no_report_says_so(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(noxfile, "COUNTS", {"fake": noxfile.junit_counts(tmp_path / "none.xml")})
    noxfile.print_counts()
    assert "fake: no report" in capsys.readouterr().err


def sessions() -> dict:
    return dict(registry.get())


def test_the_gitlab_test_job_s_tiers_are_the_no_docker_ones_but_lint():
    # tests/deploy/test_pipeline.py holds .gitlab-ci.yml's test job to this list.
    no_docker = [name for name, tier in sessions().items() if "no-docker" in tier.tags]
    assert [name for name in no_docker if name != "lint"] == noxfile.GITLAB_TEST_JOB_TIERS


def test_every_tier_s_own_tests_exist_and_the_python_tier_leaves_them_out():
    for tier, paths in noxfile.OWN_TESTS.items():
        assert tier in sessions(), tier
        for path in paths:
            assert (ROOT / path).exists(), path


def test_make_tiers_lists_noxfile_s_tiers_with_python_alone():
    # The system's Python, isolated: no nox, no virtualenv (a new user's machine).
    result = subprocess.run(
        ["/usr/bin/python3", "-I", str(ROOT / ".ci" / "list-tiers.py")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    listed = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert listed == list(sessions())
    assert "  lint " in result.stdout
    assert "[no-docker]" in result.stdout


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


def fake_apt(tmp_path: Path) -> dict[str, str]:
    """dpkg-query that finds nothing installed, apt-get that notes the policy it meets."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "dpkg-query": "#!/bin/sh\nexit 1\n",
        "apt-get": f'#!/bin/sh\ncat "$POLICY_RC_D" >> {tmp_path}/seen 2>/dev/null; exit 0\n',
        "id": "#!/bin/sh\necho 0\n",  # as root, which `make prerequisites` needs
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    policy = tmp_path / "policy-rc.d"
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "POLICY_RC_D": str(policy)}


def prerequisites(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / ".ci" / "setup-system.sh")], env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


def test_prerequisites_stop_service_starts_and_remove_only_their_own_policy(tmp_path: Path):
    env = fake_apt(tmp_path)
    result = prerequisites(env)
    assert result.returncode == 0, result.stderr
    assert "exit 101" in (tmp_path / "seen").read_text()  # in place while apt-get ran
    assert not Path(env["POLICY_RC_D"]).exists()


def test_prerequisites_leave_a_policy_the_machine_already_had(tmp_path: Path):
    env = fake_apt(tmp_path)
    owned = Path(env["POLICY_RC_D"])
    owned.write_text("#!/bin/sh\n# the owner's own rules\nexit 0\n")
    result = prerequisites(env)
    assert result.returncode == 0, result.stderr
    assert owned.read_text() == "#!/bin/sh\n# the owner's own rules\nexit 0\n"
