"""A job that would fail on GitLab fails in the rehearsal too.

Each test rehearses a copy of this repository with one thing broken the way the seed's
pipeline was broken, and checks that the rehearsal reports the job as failed and exits
non-zero. They run after the rehearsal proper (make rehearse), on its stand-in images.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import rehearse  # noqa: E402 - the module under test sits beside this file

from tests.postgres_major import rehearsal_standin  # noqa: E402
from tests.security.osv import osv_record  # noqa: E402
from tests.security.test_security import FAKE_AWS_KEY, FAKE_AWS_SECRET  # noqa: E402

PIPELINE = ".gitlab-ci.yml"


def copy_of_this_repository(target: Path) -> Path:
    """A git repository holding what a push of this working tree would hold."""
    rehearse.copy_tree(rehearse.ROOT, target)
    rehearse.sh("git", "init", "-q", str(target))
    return target


def rehearse_copy(source: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(HERE / "rehearse.py"),
            "--skip-images",
            "--source",
            str(source),
            "--work",
            str(source.parent / "work"),
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
        env={**os.environ, "CI": "true"},
    )


def job_line(output: str, job: str) -> str:
    match = re.search(rf"^rehearsal: {re.escape(job)}\s+(.+)$", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def test_the_test_job_on_debians_node_fails(tmp_path):
    # The seed's way to get Node: bookworm's nodejs (18.x). gitlab-ci-local, which the
    # pipeline tests drive, refuses to start on it. The job keeps its image, service and
    # variables; its steps become the seed's Node install and the first Node tool run.
    source = copy_of_this_repository(tmp_path / "repo")
    pipeline = source / PIPELINE
    text = pipeline.read_text()
    start = text.index("  before_script:\n", text.index("\ntest:\n"))
    end = text.index("  coverage:", start)
    seed_steps = (
        "  script:\n"
        "    - apt-get update -qq\n"
        "    - apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null\n"
        "    - node --version\n"
        "    - npm ci --no-audit --no-fund --loglevel=error\n"
        "    - node_modules/.bin/gitlab-ci-local --list\n"
    )
    pipeline.write_text(text[:start] + seed_steps + text[end:])

    result = rehearse_copy(source, "--job", "test")
    assert result.returncode != 0, result.stdout + result.stderr
    assert job_line(result.stdout, "test").startswith("failed "), result.stdout + result.stderr
    log = (source.parent / "work" / "logs" / "test.log").read_text()
    assert "v18." in log
    # npm ci worked; the Node tool itself is what fails.
    assert "$ node_modules/.bin/gitlab-ci-local --list" in log


def test_the_test_job_without_the_realworld_spec_fails(tmp_path):
    # The job unchanged, on a runner that can neither download the pinned RealWorld
    # files nor has a local copy: the job fails at the fetch, before any test runs.
    source = copy_of_this_repository(tmp_path / "repo")
    result = rehearse_copy(source, "--job", "test", "--no-upstream")
    assert result.returncode != 0, result.stdout + result.stderr
    assert job_line(result.stdout, "test").startswith("failed "), result.stdout + result.stderr
    log = (source.parent / "work" / "logs" / "test.log").read_text()
    assert "realworld/openapi.yml" in log


def test_pack_check_proved_the_image_it_built():
    # make rehearse runs rehearse.py's default plan just before these tests (noxfile).
    log_file = rehearse.WORK / "logs" / "pack-check.log"
    assert log_file.is_file(), f"{log_file} is missing: run rehearse.py first (make rehearse)"
    log = log_file.read_text()
    built = re.search(r"==> pack: building (\S+) ", log)
    assert built, log[-3000:]
    image = built.group(1)
    # The smoke test prints on stdout, the tool's steps go to stderr: the job log keeps
    # the order within each stream only. "passed its proof" follows a passed smoke test.
    assert "smoke: all 7 checks passed against http://docker:8000" in log
    order = [
        f"{image} flask db upgrade",  # the migrations, against the job's postgres service
        "$ docker run --detach --name conduit-proof-",
        "$ docker rm --force --volumes conduit-proof-",
        f"==> pack: {image} passed its proof",
    ]
    positions = {line: log.find(line) for line in order}
    assert -1 not in positions.values(), positions
    assert list(positions.values()) == sorted(positions.values()), positions


def rehearsed_log(job: str) -> str:
    """The log of a job of the rehearsal proper (make rehearse runs it before these tests)."""
    log_file = rehearse.WORK / "logs" / f"{job.replace(':', '-')}.log"
    assert log_file.is_file(), f"{log_file} is missing: run rehearse.py first (make rehearse)"
    return log_file.read_text()


def test_deploy_prod_dry_run_plans_a_canary():
    """The release pipeline's deploy:prod, a dry run: its plan is the canary's steps,
    judged by Prometheus, with the manual promote and abort jobs, for the digest pack's
    dotenv report gave it."""
    log = rehearsed_log("deploy:prod")
    for line in (
        "# the app stage picks one path: a canary or a direct rollout",
        "# a canary, when deployment/conduit runs a release:",
        "a decision by hand (promote:prod, abort:prod)",
        "# judge ",
        "kubectl get --raw '/api/v1/namespaces/monitoring/services/",
    ):
        assert line in log, line
    assert f"{rehearse.DEPLOY_VARIABLES['CONDUIT_IMAGE_REPOSITORY']}@sha256:" in log


def test_the_review_deploy_runs_the_digest_pack_review_pushed():
    log = rehearsed_log("review")
    digest = rehearse.PACK_DOTENV["CONDUIT_IMAGE_DIGEST"]
    assert f"==> review: registry.example.com/rehearsal/conduit@{digest} for !1" in log


def test_pack_check_fails_when_the_image_cannot_prove_itself(tmp_path):
    # The job unchanged but for the proof's database password, which its migrations then
    # cannot log in with: the job fails, with the reason, and the proof ends there.
    source = copy_of_this_repository(tmp_path / "repo")
    pipeline = source / PIPELINE
    url = "postgresql://conduit:conduit@postgres:5432/conduit"
    assert url in pipeline.read_text()
    pipeline.write_text(pipeline.read_text().replace(url, url.replace(":conduit@", ":wrong@")))

    result = rehearse_copy(source, "--job", "pack:check")
    assert result.returncode != 0, result.stdout + result.stderr
    assert job_line(result.stdout, "pack:check").startswith("failed "), result.stdout
    log = (source.parent / "work" / "logs" / "pack-check.log").read_text()
    assert "failed its proof, nothing pushed: its migrations exited 1" in log
    assert "password authentication failed" in log
    assert "conduit-proof-" not in log  # no server was started


def test_pack_check_fails_on_an_image_holding_a_package_with_a_blocking_advisory(tmp_path):
    """The job unchanged, with the stand-in serving a Critical advisory with a fix for the
    Flask version the image holds: the image's audit blocks it after its proof, and the
    job fails with nothing pushed (the image tier plants an old PyJWT for the same rule)."""
    source = copy_of_this_repository(tmp_path / "repo")
    advisories = tmp_path / "advisories.json"
    fixed = osv_record("GHSA-2222-3333-4444", "flask", "9.9.9", "CRITICAL", "CVE-2026-20001")
    advisories.write_text(json.dumps({"osv": [fixed], "known_exploited": []}))

    result = rehearse_copy(
        source, "--job", "pack:check", "--no-upstream", "--advisories", str(advisories)
    )
    assert result.returncode != 0, result.stdout + result.stderr
    assert job_line(result.stdout, "pack:check").startswith("failed "), result.stdout
    log = (source.parent / "work" / "logs" / "pack-check.log").read_text()
    pins = locked_pins()
    assert f"BLOCKS: CVE-2026-20001 flask {pins['flask']}" in log
    assert "fails the security policy: a Python package it holds has a blocking advisory" in log
    assert "passes the security policy" not in log


@pytest.mark.parametrize("status", ["passed", "failed (allowed)"])
def test_a_job_that_may_fail_does_not_fail_the_rehearsal(status):
    assert not rehearse.JobResult("lint", status, 1.0).blocks
    assert rehearse.JobResult("lint", "failed", 1.0).blocks


def docker_run(image: str, *command: str, env: dict[str, str] | None = None):
    options = [item for name, value in (env or {}).items() for item in ("--env", f"{name}={value}")]
    return subprocess.run(
        ["docker", "run", "--rm", *options, image, *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_apk_stand_in_refuses_a_package_it_does_not_provide():
    known = docker_run("docker:28.3.2-cli", "apk", "add", "--no-cache", "python3")
    assert known.returncode == 0, known.stderr
    unknown = docker_run("docker:28.3.2-cli", "apk", "add", "--no-cache", "curl")
    assert unknown.returncode != 0
    assert "unable to select packages: curl" in unknown.stderr


def test_the_postgres_stand_in_refuses_to_start_without_a_password():
    # As the official image does: no POSTGRES_PASSWORD, no server.
    standin = rehearsal_standin((HERE / "build-images.sh").read_text())
    result = docker_run(standin, env={"POSTGRES_USER": "conduit"})
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


def locked_pins() -> dict[str, str]:
    lock = (rehearse.ROOT / "requirements.lock").read_text()
    return dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+)", lock, re.MULTILINE))


def test_the_security_job_passed_on_this_tree_asking_the_stand_in_advisories():
    """The rehearsal proper ran the security job unchanged (it fails the rehearsal when
    the job fails): every scan reported, and its pip-audit asked the stand-in OSV for
    each pin of requirements.lock, its catalogue download the stand-in CISA feed."""
    log = rehearsed_log("security")
    for summary in (
        "Bandit: ",
        "detect-secrets: 0 finding(s)",
        "pip-audit: 0 finding(s) reported in gl-dependency-scanning-report.json",
    ):
        assert summary in log, summary
    assert log.count("detect-secrets: 0 finding(s)") == 2  # the tree, then the history
    served = (rehearse.WORK / "logs" / "advisories.log").read_text()
    queried = dict(re.findall(r"^POST /v1/query -> 200: (\S+) (\S+), advisories: 0$", served, re.M))
    pins = locked_pins()
    assert len(pins) > 100
    assert {name: queried.get(name) for name in pins} == pins
    assert "GET /kev.json -> 200" in served


def test_the_security_job_fails_on_a_planted_secret_and_blocking_advisories(tmp_path):
    """The job unchanged, on a change whose commit adds a fake AWS key, with the stand-in
    serving the security tier's fixture advisories for two pins of requirements.lock: a
    Critical one with a fix, and one without a fix on CISA's known-exploited list. The
    tree scan, the history scan and the dependency audit each block; the job fails."""
    source = copy_of_this_repository(tmp_path / "repo")
    (source / "planted_settings.py").write_text(
        f'AWS_ACCESS_KEY_ID = "{FAKE_AWS_KEY}"\nAWS_SECRET_ACCESS_KEY = "{FAKE_AWS_SECRET}"\n'
    )
    advisories = tmp_path / "advisories.json"
    fixed = osv_record("GHSA-2222-3333-4444", "flask", "9.9.9", "CRITICAL", "CVE-2026-20001")
    exploited = osv_record("GHSA-8888-9999-aaaa", "werkzeug", None, "MODERATE", "CVE-2026-20003")
    advisories.write_text(
        json.dumps({"osv": [fixed, exploited], "known_exploited": ["CVE-2026-20003"]})
    )

    result = rehearse_copy(
        source, "--job", "security", "--no-upstream", "--advisories", str(advisories)
    )
    assert result.returncode != 0, result.stdout + result.stderr
    assert job_line(result.stdout, "security").startswith("failed "), result.stdout
    work = source.parent / "work"
    log = (work / "logs" / "security.log").read_text()
    commit = rehearse.sh(
        "git", "-C", str(work / "checkout"), "rev-parse", "HEAD", capture_output=True
    ).stdout.strip()
    pins = locked_pins()
    for blocked in (
        "BLOCKS: AWS Access Key planted_settings.py:1: a secret in the repository",
        f"BLOCKS: AWS Access Key planted_settings.py:1 in commit {commit[:12]}",
        f"BLOCKS: CVE-2026-20001 flask {pins['flask']} (requirements.lock): "
        "critical with a fix available (9.9.9)",
        f"BLOCKS: CVE-2026-20003 werkzeug {pins['werkzeug']} (requirements.lock): "
        "known to be exploited (CISA KEV)",
    ):
        assert blocked in log, blocked
    # The job's own lines ("security > "): gitlab-ci-local's summary after the log
    # repeats the job's last lines, which may hold the third gate's line again.
    gate_failures = re.findall(
        r"^security > the security policy \(policy\.toml\) fails this pipeline$", log, re.M
    )
    assert len(gate_failures) == 3
    # The gate read both severities from the stand-in, OSV_API (not api.osv.dev).
    served = (work / "logs" / "advisories.log").read_text()
    for record in (fixed, exploited):
        assert f"GET /v1/vulns/{record['id']} -> 200" in served
    # Every scan ran before the job failed: the SBOM is the last step.
    assert "$ cyclonedx-py requirements" in log


def test_a_bad_advisories_fixture_is_a_one_line_error(tmp_path):
    fixture = tmp_path / "advisories.json"
    fixture.write_text('{"osv": {"id": "GHSA-2222-3333-4444"}}')
    result = subprocess.run(
        [
            sys.executable,
            str(HERE / "rehearse.py"),
            "--job",
            "security",
            "--advisories",
            str(fixture),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert result.stderr.strip() == (
        f'rehearsal: {fixture} is not {{"osv": [OSV records], "known_exploited": [CVE ids]}}'
    )
    assert result.stdout == ""
