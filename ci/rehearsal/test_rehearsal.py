"""A job that would fail on GitLab fails in the rehearsal too.

Each test rehearses a copy of this repository with one thing broken the way the seed's
pipeline was broken, and checks that the rehearsal reports the job as failed and exits
non-zero. They run after the rehearsal proper (make rehearse), on its stand-in images.
"""

from __future__ import annotations

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
