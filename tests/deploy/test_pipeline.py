""".gitlab-ci.yml: valid for GitLab, and the right jobs for each kind of pipeline.

The expected table below is the contract. It is checked two ways: by the rule
evaluator in gitlab_rules.py (which also applies workflow:rules) and by
gitlab-ci-local, which lists the jobs offline as GitLab would add them (it ignores
workflow:rules, hence both).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conduit_deploy import config as deploy_config

from tests.support import in_ci

from . import gitlab_rules

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / ".gitlab-ci.yml"
GITLAB_CI_LOCAL = ROOT / "node_modules" / ".bin" / "gitlab-ci-local"

ALWAYS = {"test": "on_success", "lint": "on_success"}
SCENARIOS = {
    # name: (variables GitLab sets, expected {job: when}; None = no pipeline)
    "push to the default branch": (
        {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main"},
        {**ALWAYS, "pack": "on_success", "cluster:dev": "on_success", "deploy:dev": "on_success"},
    ),
    "tag v1.2.3": (
        {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_TAG": "v1.2.3"},
        {**ALWAYS, "pack": "on_success", "cluster:prod": "manual", "deploy:prod": "on_success"},
    ),
    "tag nightly": (
        {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_TAG": "nightly"},
        {**ALWAYS, "pack": "on_success"},
    ),
    "tag v1.2.3-rc1": (
        {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_TAG": "v1.2.3-rc1"},
        {**ALWAYS, "pack": "on_success"},
    ),
    "merge request": (
        {
            "CI_PIPELINE_SOURCE": "merge_request_event",
            "CI_MERGE_REQUEST_IID": "7",
            "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "feature",
        },
        {**ALWAYS, "pack:check": "on_success"},
    ),
    "schedule": (
        {"CI_PIPELINE_SOURCE": "schedule", "CI_COMMIT_BRANCH": "main"},
        {**ALWAYS, "pack:check": "on_success"},
    ),
    "run from the web UI on the default branch": (
        {"CI_PIPELINE_SOURCE": "web", "CI_COMMIT_BRANCH": "main"},
        {**ALWAYS, "pack": "on_success", "cluster:dev": "on_success", "deploy:dev": "on_success"},
    ),
    "deploys disabled": (
        {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main", "CONDUIT_DEPLOY_DISABLED": "1"},
        {**ALWAYS, "pack": "on_success"},
    ),
    "deploy freeze": (
        {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_TAG": "v1.2.3", "CI_DEPLOY_FREEZE": "true"},
        {**ALWAYS, "pack": "on_success"},
    ),
    "push to another branch": (
        {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "feature"},
        None,
    ),
}
COMMON = {"CI_DEFAULT_BRANCH": "main"}


@pytest.fixture(scope="module")
def pipeline() -> dict:
    return yaml.safe_load(PIPELINE.read_text())


def test_validates_against_gitlabs_schema():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.gitlab-ci",
            "--data-transform",
            "gitlab-ci",
            str(PIPELINE),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_jobs_per_pipeline_by_rule_evaluation(pipeline, scenario):
    variables, expected = SCENARIOS[scenario]
    assert gitlab_rules.pipeline(pipeline, {**COMMON, **variables}) == expected


@pytest.mark.parametrize("scenario", [name for name, (_, jobs) in SCENARIOS.items() if jobs])
def test_needs_only_name_jobs_of_the_same_pipeline(pipeline, scenario):
    _, expected = SCENARIOS[scenario]
    jobs = gitlab_rules.jobs(pipeline)
    for name in expected:
        for need in jobs[name].get("needs", []):
            needed = need if isinstance(need, str) else need["job"]
            assert needed in expected, f"{name} needs {needed}, which {scenario} does not run"


def gitlab_ci_local(tmp_path: Path, variables: dict[str, str]) -> dict[str, dict]:
    if not GITLAB_CI_LOCAL.exists():
        message = "gitlab-ci-local is not installed (npm ci installs it)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    # A scratch repository: gitlab-ci-local keeps state next to the file it reads.
    (tmp_path / ".gitlab-ci.yml").write_text(PIPELINE.read_text())
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "pipeline"], check=True)
    command = [str(GITLAB_CI_LOCAL), "--list-json"]
    names = set(variables) | {"CI_COMMIT_BRANCH", "CI_COMMIT_TAG", "CI_PIPELINE_SOURCE"}
    command += ["--ignore-predefined-vars", ",".join(sorted(names))]
    for name, value in variables.items():
        command += ["--variable", f"{name}={value}"]
    # gitlab-ci-local derives a branch from the scratch repository: drop it where
    # GitLab would not set one (tags, merge requests).
    for name in ("CI_COMMIT_BRANCH", "CI_COMMIT_TAG"):
        if name not in variables:
            command += ["--unset-variable", name]
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return {job["name"]: job for job in json.loads(result.stdout)}


@pytest.mark.parametrize("scenario", [name for name, (_, jobs) in SCENARIOS.items() if jobs])
def test_jobs_per_pipeline_by_gitlab_ci_local(tmp_path, scenario):
    variables, expected = SCENARIOS[scenario]
    listed = gitlab_ci_local(tmp_path, {**COMMON, **variables})
    running = {name: job["when"] for name, job in listed.items() if job["when"] != "never"}
    assert running == expected
    if "cluster:prod" in running:
        # A manual job under rules blocks what needs it: deploy:prod waits for a person.
        assert listed["cluster:prod"]["allow_failure"] is False


def test_no_only_or_except(pipeline):
    for name, job in gitlab_rules.jobs(pipeline).items():
        assert not {"only", "except"} & set(job), name


def images(pipeline):
    for name, job in pipeline.items():
        if not isinstance(job, dict):
            continue
        if "image" in job:
            image = job["image"]
            yield name, image if isinstance(image, str) else image["name"]
        for service in job.get("services", []):
            yield name, service if isinstance(service, str) else service["name"]


def test_every_image_is_official_and_pinned(pipeline):
    found = list(images(pipeline))
    assert found
    for job, image in found:
        repository, _, tag = image.partition(":")
        assert "/" not in repository, f"{job}: {image} is not an official image"
        assert re.search(r"\d+\.\d+", tag), f"{job}: {image} is not pinned to a version"
        assert "latest" not in tag


def test_dind_service_matches_the_docker_client(pipeline):
    pack = pipeline[".pack"]
    client = pack["image"].split(":")[1].removesuffix("-cli")
    assert [s["name"] for s in pack["services"]] == [f"docker:{client}-dind"]


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_deploy_jobs(pipeline, environment):
    jobs = gitlab_rules.jobs(pipeline)
    cluster, deploy = jobs[f"cluster:{environment}"], jobs[f"deploy:{environment}"]
    for job in (cluster, deploy):
        assert job["resource_group"] == environment
        assert job["variables"]["TARGET_ENVIRONMENT"] == environment
        assert job["environment"]["name"] == environment
        assert job["interruptible"] is False
    assert cluster["environment"]["action"] == "prepare"
    assert cluster["script"] == ['conduit-deploy cluster "$TARGET_ENVIRONMENT"']
    assert deploy["script"] == ['conduit-deploy deploy "$TARGET_ENVIRONMENT" --env-file deploy.env']
    assert deploy["environment"]["url"] == "$DYNAMIC_ENVIRONMENT_URL"
    assert deploy["artifacts"] == {"when": "always", "reports": {"dotenv": "deploy.env"}}
    assert deploy["needs"] == ["pack", f"cluster:{environment}"]


def test_pack_jobs(pipeline):
    jobs = gitlab_rules.jobs(pipeline)
    assert jobs["pack"]["script"] == ["conduit-deploy pack"]
    assert jobs["pack:check"]["script"] == ["conduit-deploy pack --no-push"]
    assert jobs["pack"]["needs"] == jobs["pack:check"]["needs"] == ["test"]


def test_test_job_reports(pipeline):
    test = pipeline["test"]
    reports = test["artifacts"]["reports"]
    assert reports["coverage_report"] == {
        "coverage_format": "cobertura",
        "path": "reports/coverage.xml",
    }
    assert set(reports["junit"]) == {"reports/junit.xml", "reports/junit-postgres.xml"}
    assert test["artifacts"]["when"] == "always"
    assert any(
        "--junitxml=reports/junit.xml" in line and "--cov-report=xml:reports/coverage.xml" in line
        for line in test["script"]
    )


def test_lint_reports_code_quality_without_blocking(pipeline):
    lint = pipeline["lint"]
    assert lint["allow_failure"] is True
    assert lint["artifacts"]["reports"] == {"codequality": "gl-code-quality-report.json"}
    assert any("--output-format=gitlab" in line for line in lint["script"])


def test_every_variable_the_tool_reads_is_documented():
    header = "".join(line for line in PIPELINE.read_text().splitlines(True) if line.startswith("#"))
    variables = [v for v in vars(deploy_config).values() if isinstance(v, deploy_config.Variable)]
    names = {name for v in variables for name in (v.name, *v.alternatives)}
    names |= {"KOPS_SHA256", "CONDUIT_DEPLOY_DISABLED"}
    for name in sorted(names):
        assert re.search(rf"#\s+{name}\b", header) or name in header, f"{name} is not documented"
