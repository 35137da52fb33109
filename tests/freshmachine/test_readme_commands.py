"""The README's two commands on a new user's machine: `make run` serves, `make test` passes.

The machine (tests/freshmachine/Dockerfile) has python3, python3-venv, python3-pip,
make, git and curl, on each Debian release of support.RELEASES. Everything else must
come from the repository's own files.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

from nox import registry

from noxfile import NO_DOCKER
from tests import upstream
from tests.freshmachine.support import HOME, RELEASES, Machine, Served
from tests.support import ROOT

# noxfile.py's closing lines: "nox > * <tier>: success|skipped (<why>)|failed|aborted ..."
SUMMARY_LINE = re.compile(r"^nox > \* (?P<tier>[\w-]+): (?P<status>\w+)(?: \((?P<why>.*)\))?", re.M)


def tiers_skipped_here() -> set[str]:
    """postgres (no TEST_DATABASE_URL here) and every tier not tagged no-docker: those
    need root, the Docker engine or PostgreSQL's programs, which this machine lacks."""
    sessions = registry.get()
    return {"postgres"} | {name for name, tier in sessions.items() if NO_DOCKER[0] not in tier.tags}


# A guard against a hung run, not a speed goal (measured: docs/decisions/0002-ci-time-budget.md).
MAKE_TEST_TIMEOUT_SECONDS = 2400


def test_the_machine_has_only_what_a_new_user_has(machine: Machine):
    present = machine.sh("for p in python3 pip3 make git curl; do command -v $p; done", timeout=30)
    assert len(present.stdout.split()) == 5, present.stdout
    absent = machine.sh("for p in gcc cc node npm psql docker; do command -v $p; done", timeout=30)
    assert absent.stdout == "", f"the machine should not have: {absent.stdout.split()}"
    # The release's own Python, not one the image brought from elsewhere.
    version = machine.sh("python3 -c 'import sys; print(*sys.version_info[:2], sep=\".\")'", 30)
    assert version.stdout.strip() == RELEASES[machine.release], version.stdout + version.stderr


def test_make_run_says_what_it_does_and_installs_only_the_runtime(machine: Machine, served: Served):
    assert "make: creating .venv with the runtime dependencies" in served.log
    assert "make: serving on http://127.0.0.1:" in served.log
    # No compiler was needed, and neither the server nor the test tools were installed.
    tools = machine.sh(f"ls {HOME}/conduit/.venv/bin", timeout=30).stdout.split()
    assert "flask" in tools
    assert not {"uwsgi", "pytest", "nox", "node", "ruff"} & set(tools)


def test_postman_suite_passes_against_make_run(served: Served, tmp_path):
    collection = upstream.require("realworld", "Conduit.postman_collection.json")
    report = tmp_path / "newman.json"
    user = f"u{time.time_ns()}"
    result = subprocess.run(
        [
            str(ROOT / "node_modules" / ".bin" / "newman"), "run", str(collection),
            "--bail", "failure", "--reporters", "cli,json", "--reporter-json-export", str(report),
            "--global-var", f"APIURL={served.url}", "--global-var", f"USERNAME={user}",
            "--global-var", f"EMAIL={user}@example.com", "--global-var", "PASSWORD=password",
        ],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    stats = json.loads(report.read_text())["run"]["stats"]
    assert stats["assertions"]["total"] > 0
    assert stats["assertions"]["failed"] == 0
    assert stats["requests"]["failed"] == 0


def test_make_test_passes_and_its_summary_names_the_skipped_tiers(machine: Machine, served: Served):
    started = time.monotonic()
    result = machine.sh(f"cd {HOME}/conduit && make test", timeout=MAKE_TEST_TIMEOUT_SECONDS)
    machine.measurements["make test (s)"] = round(time.monotonic() - started, 1)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    summary = {m["tier"]: (m["status"], m["why"]) for m in SUMMARY_LINE.finditer(output)}
    skipped = {tier for tier, (status, _) in summary.items() if status == "skipped"}
    assert skipped == tiers_skipped_here(), summary
    for tier in skipped:
        assert summary[tier][1].startswith("needs "), summary[tier]
    assert {"lint", "python", "postman"} <= {t for t, (s, _) in summary.items() if s == "success"}
    machine.measurements["virtualenv after make test (MB)"] = machine.size_mb(
        f"{HOME}/conduit/.venv"
    )
