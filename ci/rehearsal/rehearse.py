"""Runs .gitlab-ci.yml's own jobs here, through gitlab-ci-local's Docker executor.

The file is used unchanged. What differs from a GitLab runner is said here, once, as a
runner's config.toml would say it (README.md beside this file has the details):

- the images are local stand-ins built by build-images.sh under the file's image names;
- the runner adds the host's Docker socket (for the dind stand-in only), one shared
  /certs/client volume (a GitLab runner's `volumes = ["/certs/client"]`) and local
  copies of the pinned upstream inputs (REALWORLD_DIR and the other variables of
  tests/upstream.toml), because GitHub is out of reach here;
- OSV_API and KEV_URL point at a stand-in advisory service this script serves (a
  project points them at a mirror), because OSV and CISA are out of reach too;
- pipelines are simulated by the variables GitLab sets for each kind of pipeline.

    python ci/rehearsal/rehearse.py                     # the default plan below
    python ci/rehearsal/rehearse.py [--pipeline KIND] --job NAME [--job NAME ...]
    python ci/rehearsal/rehearse.py --job security --advisories FIXTURE.json

Prints one line per job (result and duration) and exits non-zero when a job failed that
is not allowed to fail.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
GITLAB_CI_LOCAL = ROOT / "node_modules" / ".bin" / "gitlab-ci-local"
WORK = ROOT / "build" / "rehearsal"

HELPER_IMAGE = "pipeline-rehearsal/base:bookworm"
WAIT_IMAGE = "pipeline-rehearsal/wait-for-it:bookworm"
CERTS_VOLUME = "pipeline-rehearsal-certs"
DOCKER_SOCKET = "/var/run/docker.sock"

# What GitLab sets for each kind of pipeline (docs: ci/variables/predefined_variables).
PIPELINES: dict[str, dict[str, str | None]] = {
    "merge_request": {
        "CI_PIPELINE_SOURCE": "merge_request_event",
        "CI_MERGE_REQUEST_IID": "1",
        "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "rehearsal",
        "CI_COMMIT_BRANCH": None,
        "CI_COMMIT_TAG": None,
    },
    # A merge request of a branch of this project, with review apps switched on.
    "review_app": {
        "CI_PIPELINE_SOURCE": "merge_request_event",
        "CI_MERGE_REQUEST_IID": "1",
        "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "rehearsal",
        "CI_COMMIT_REF_SLUG": "rehearsal",
        "CI_PROJECT_ID": "1",
        "CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "1",
        "CI_COMMIT_BRANCH": None,
        "CI_COMMIT_TAG": None,
    },
    "default_branch": {
        "CI_PIPELINE_SOURCE": "push",
        "CI_COMMIT_BRANCH": "main",
        "CI_COMMIT_TAG": None,
    },
    # A release: a pushed tag vX.Y.Z (a tag pipeline has no branch).
    "release": {
        "CI_PIPELINE_SOURCE": "push",
        "CI_COMMIT_BRANCH": None,
        "CI_COMMIT_TAG": "v1.0.0",
    },
}
# A merge request's jobs, then the cluster and deploy jobs (dry run) of the default
# branch (dev) and of a release tag (prod; cluster:prod is manual there, a person's
# start is this run). pack would push, and a runner here has no registry to push to.
DEFAULT_PLAN = {
    "merge_request": ["test", "lint", "security", "pack:check"],
    # The review app's deploy and stop, dry runs (pack:review would push).
    "review_app": ["review", "stop_review"],
    "default_branch": ["cluster:dev", "deploy:dev"],
    "release": ["cluster:prod", "deploy:prod"],
}

# Variables a project would set in its settings, with values that reach no cloud. The
# cluster and deploy jobs run with the deploy tool's dry run switched on.
DEPLOY_VARIABLES = {
    "CONDUIT_DEPLOY_DRY_RUN": "1",
    "DB_USER": "conduit",
    "DB_PASSWORD": "rehearsal-password-0123456789",
    "CONDUIT_SECRET": "rehearsal-secret-0123456789abcdef0123456789abcdef",
    "KOPS_STATE_STORE": "gs://rehearsal-kops-state",
    # Documentation addresses (RFC 5737): the cluster's API is open to no real network.
    "KOPS_API_ACCESS_CIDRS": "192.0.2.0/24,198.51.100.7/32",
    "GCP_CREDENTIAL_FILE": (
        '{"type": "service_account", "project_id": "rehearsal", '
        '"client_email": "deployer@rehearsal.iam.gserviceaccount.com"}'
    ),
    "CONDUIT_IMAGE_REPOSITORY": "registry.example.com/rehearsal/conduit",
    "DOCKER_REGISTRY_USER": "rehearsal",
    "DOCKER_REGISTRY_PASSWORD": "cmVoZWFyc2FsLXRva2Vu",  # base64 of "rehearsal-token"
    "BACKUP_BUCKET": "rehearsal-backups",
    # Another service account than the CI's: the deploy tool refuses the CI's own key.
    "BACKUP_GCP_CREDENTIAL_FILE": (
        '{"type": "service_account", "project_id": "rehearsal", '
        '"client_email": "backup-dev@rehearsal.iam.gserviceaccount.com"}'
    ),
}
# The test job's tiers have just run on this machine in full (`make test`, whose tier
# this rehearsal is). Here the job proves itself: its image, service, packages, install
# and reports. So each tier runs only the tests that use what the job brings: the
# PostgreSQL service (test_health on the postgres tier), Envoy from the job's pip install
# (test_api_under_flask_reaches_the_app_without_the_prefix),
# promtool (test_alert_rules), wrk (test_lua), git (test_versioning), uWSGI and newman
# (test_postman), nginx and docker/serve.py (test_the_body_bound_...), the security
# tier's policy gate (one test: a tier that selects none exits 5 and fails). pytest
# reads PYTEST_ADDOPTS itself; the job's script is GitLab's. --whole-test-job runs every
# test instead.
TEST_JOB_SELECTION = {
    "PYTEST_ADDOPTS": "-k 'test_health or test_api_under_flask_reaches_the_app_without_the_prefix"
    " or test_alert_rules"
    " or test_lua or test_versioning or test_postman"
    " or test_the_body_bound_is_the_apps_max_content_length"
    " or test_an_allow_list_entry_without_a_reason_is_refused'",
}
# What the pack job's dotenv report hands the deploy jobs (pack does not run here: no
# registry); prod deploys only an image pinned by digest, and dev and review apps run it
# when it is set.
PACK_DOTENV = {"CONDUIT_IMAGE_DIGEST": "sha256:" + "0" * 64}
# The advisory services the security job and the image audit ask (.gitlab-ci.yml's
# OSV_API and KEV_URL) point at advisory_service() below, as a project would point them
# at a mirror: the host name every job container resolves to this machine (Docker's
# host-gateway), on the port the service got. Set for every pipeline, like a project's
# variables.
ADVISORY_HOST = "advisories"


def advisory_variables(port: int) -> dict[str, str]:
    return {
        "OSV_API": f"http://{ADVISORY_HOST}:{port}",
        "KEV_URL": f"http://{ADVISORY_HOST}:{port}/kev.json",
    }


PROJECT_VARIABLES = {
    # The review/*-scoped variables (deploy/gitlab.md, "Review apps").
    "review_app": {
        "CONDUIT_DEPLOY_DRY_RUN": "1",
        "REVIEW_APPS_ENABLED": "true",
        "REVIEW_KUBECONFIG": (
            "apiVersion: v1\nkind: Config\nclusters:\n- name: dev\n"
            "  cluster: {server: 'https://203.0.113.1'}\nusers:\n- name: review\n"
            "  user: {token: rehearsal}\n"
        ),
        "REVIEW_SECRET": "rehearsal-review-secret-0123456789abcdef",
        **PACK_DOTENV,
        "CONDUIT_IMAGE_REPOSITORY": DEPLOY_VARIABLES["CONDUIT_IMAGE_REPOSITORY"],
        "DOCKER_REGISTRY_USER": DEPLOY_VARIABLES["DOCKER_REGISTRY_USER"],
        "DOCKER_REGISTRY_PASSWORD": DEPLOY_VARIABLES["DOCKER_REGISTRY_PASSWORD"],
    },
    "default_branch": {
        **DEPLOY_VARIABLES,
        **PACK_DOTENV,
        "K8S_CLUSTER_NAME": "dev.conduit.k8s.local",
    },
    # The cluster name and the host name are scoped to the prod environment in the
    # project's settings.
    "release": {
        **DEPLOY_VARIABLES,
        **PACK_DOTENV,
        "K8S_CLUSTER_NAME": "prod.conduit.k8s.local",
        "PROD_HOST": "conduit.example.org",
    },
}


@dataclass(frozen=True)
class JobResult:
    name: str
    status: str  # passed, failed, failed (allowed)
    seconds: float

    @property
    def blocks(self) -> bool:
        return self.status == "failed"

    def line(self) -> str:
        minutes, seconds = divmod(round(self.seconds), 60)
        return f"rehearsal: {self.name:<14} {self.status:<17} {minutes:d}m{seconds:02d}s"


def sh(*command: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=True, text=True, **kwargs)


def source_files(source: Path) -> list[str]:
    """What a push of this working tree would hold: tracked and new unignored files."""
    listed = sh(
        "git",
        "-C",
        str(source),
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
        capture_output=True,
    ).stdout
    return [name for name in listed.split("\0") if name and (source / name).exists()]


def copy_tree(source: Path, target: Path) -> None:
    """Copy what a push of `source` would hold into `target`."""
    target.mkdir(parents=True, exist_ok=True)
    archive = target.parent / f".{target.name}.tar"
    with tarfile.open(archive, "w") as tar:
        for name in source_files(source):
            tar.add(source / name, arcname=name, recursive=False)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="tar")
    archive.unlink()


def prepare_checkout(source: Path, checkout: Path) -> None:
    """A one-commit repository holding the tree to rehearse.

    gitlab-ci-local's state (its cache, e.g. .cache/pip) lives in .gitlab-ci-local and
    is kept between runs, as a runner keeps its cache.
    """
    if checkout.exists():
        for entry in checkout.iterdir():
            if entry.name == ".gitlab-ci-local":
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    copy_tree(source, checkout)
    git = [
        "git",
        "-C",
        str(checkout),
        "-c",
        "user.name=rehearsal",
        "-c",
        "user.email=rehearsal@localhost",
    ]
    sh(*git, "init", "-q", "-b", "main")
    # gitlab-ci-local derives CI_PROJECT_PATH and friends from the remote.
    sh(*git, "remote", "add", "origin", "https://gitlab.example.com/conduit/conduit.git")
    (checkout / ".git" / "info" / "exclude").write_text(".gitlab-ci-local/\n")
    sh(*git, "add", "-A")
    sh(*git, "commit", "-q", "-m", "rehearsal")


def upstream_dirs() -> dict[str, Path]:
    """A local copy of each group of pinned upstream inputs (tests/upstream.toml), by
    the variable that names it: the host's own setting, else the host's pinned download."""
    sys.path.insert(0, str(ROOT))
    from tests import upstream  # the one manifest of pinned inputs

    folders = {}
    for group, pins in upstream.load_pins().items():
        variable = next(iter(pins.values())).env
        configured = os.environ.get(variable)
        if configured:
            folders[variable] = Path(configured).resolve()
            continue
        fetched = subprocess.run(
            [sys.executable, "-m", "tests.upstream", "fetch", group],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if fetched.returncode != 0:
            reason = (fetched.stderr.strip().splitlines() or ["no reason given"])[-1]
            raise SystemExit(f"rehearsal: no local copy of the {group} inputs: {reason}")
        folders[variable] = upstream.CACHE / group
    return folders


def load_advisories(fixture: Path | None) -> dict[str, list]:
    """--advisories' fixture: {"osv": [OSV records], "known_exploited": [CVE ids]}."""
    if fixture is None:
        return {}
    try:
        advisories = json.loads(fixture.read_text())
    except (OSError, ValueError) as error:
        raise SystemExit(f"rehearsal: cannot read the advisories {fixture}: {error}") from None
    if not (
        isinstance(advisories, dict)
        and set(advisories) <= {"osv", "known_exploited"}
        and all(isinstance(value, list) for value in advisories.values())
    ):
        raise SystemExit(
            f'rehearsal: {fixture} is not {{"osv": [OSV records], "known_exploited": [CVE ids]}}'
        )
    return advisories


@contextmanager
def advisory_service(advisories: dict[str, list], log: Path) -> Iterator[int]:
    """The stand-in for OSV's API and CISA's known-exploited catalogue, on a free port of
    this machine: the security tier's OSV service (tests/security/osv.py: POST /v1/query
    as pip-audit asks it, GET /v1/vulns/<id> as the gate asks it) and its KEV feed at
    /kev.json. It serves the given advisories (load_advisories), none without them.
    Every request it answered is written to `log`."""
    sys.path.insert(0, str(ROOT))
    from pytest_httpserver import HTTPServer

    from tests.security.osv import kev_feed, serve_osv

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    # On every interface: the job containers come from the engine's bridges, whose
    # addresses are the engine's to choose. It serves fixtures only, for this run.
    server = HTTPServer(host="0.0.0.0", port=0, threaded=True)  # noqa: S104
    serve_osv(server, advisories.get("osv", []))
    server.expect_request("/kev.json", method="GET").respond_with_json(
        kev_feed(*advisories.get("known_exploited", []))
    )
    server.start()
    try:
        yield server.port
    finally:
        server.stop()
        lines = []
        for request, response in server.log:
            line = f"{request.method} {request.path} -> {response.status_code}"
            if request.path == "/v1/query" and response.status_code == 200:
                asked = json.loads(request.data)
                vulns = json.loads(response.get_data()).get("vulns", [])
                name, version = asked["package"]["name"], asked.get("version")
                line += f": {name} {version}, advisories: {len(vulns)}"
            lines.append(line + "\n")
        log.write_text("".join(lines))


def runner_options(
    pipeline: str,
    *,
    upstream: dict[str, Path],
    advisories_port: int,
    extra: dict[str, str] | None = None,
) -> list[str]:
    options = [
        "--no-color",
        "--pull-policy",
        "if-not-present",
        "--helper-image",
        HELPER_IMAGE,
        "--wait-image",
        WAIT_IMAGE,
        "--volume",
        f"{DOCKER_SOCKET}:/run/rehearsal/docker.sock",
        "--volume",
        f"{CERTS_VOLUME}:/certs/client",
        # The advisory stand-in on this machine (advisory_service).
        "--extra-host",
        f"{ADVISORY_HOST}:host-gateway",
        "--ignore-predefined-vars",
        # (and the merge request's project and slug, which the review_app pipeline sets)
        "CI_PIPELINE_SOURCE,CI_COMMIT_BRANCH,CI_COMMIT_TAG,CI_COMMIT_REF_SLUG,CI_PROJECT_ID",
    ]
    for variable, folder in upstream.items():
        inside = f"/rehearsal/upstream/{variable.lower()}"
        options += ["--volume", f"{folder}:{inside}:ro", "--variable", f"{variable}={inside}"]
    variables = {
        # The Dockerfile's default base (python:3.11-slim-bookworm) has no stand-in: the
        # build starts from the stand-in of the pinned image the jobs use, as a project
        # may choose with this optional variable.
        "BASE_IMAGE": "python:3.11.13-slim-bookworm",
        **PIPELINES[pipeline],
        **advisory_variables(advisories_port),
        **PROJECT_VARIABLES.get(pipeline, {}),
        **(extra or {}),
    }
    for name, value in variables.items():
        if value is None:
            options += ["--unset-variable", name]
        else:
            options += ["--variable", f"{name}={value}"]
    return options


def run_job(checkout: Path, job: str, options: list[str], log_dir: Path) -> JobResult:
    log = log_dir / f"{job.replace(':', '-')}.log"
    started = time.monotonic()
    with log.open("w") as out:
        completed = subprocess.run(
            [str(GITLAB_CI_LOCAL), "--cwd", ".", "--job", job, *options],
            cwd=checkout,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
    seconds = time.monotonic() - started
    text = log.read_text(errors="replace")
    if completed.returncode != 0:
        status = "failed"
    # gitlab-ci-local's last line for a job that failed under allow_failure: true, e.g.
    # "lint finished in 6.55 s  WARN 1".
    elif re.search(rf"^{re.escape(job)} finished in .* WARN ", text, re.MULTILINE):
        status = "failed (allowed)"
    else:
        status = "passed"
    return JobResult(job, status, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pipeline",
        choices=sorted(PIPELINES),
        default="merge_request",
        help="the kind of pipeline the --job jobs run in",
    )
    parser.add_argument("--job", action="append", dest="jobs", help="a job to run (repeatable)")
    parser.add_argument("--source", type=Path, default=ROOT, help="the working tree to rehearse")
    parser.add_argument("--work", type=Path, default=WORK, help="checkout and logs go here")
    parser.add_argument(
        "--no-upstream",
        action="store_true",
        help="give the jobs no local copies of the pinned upstream inputs",
    )
    parser.add_argument(
        "--variable",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a CI/CD variable, as set in the project's settings (repeatable)",
    )
    parser.add_argument("--skip-images", action="store_true", help="use the stand-ins as built")
    parser.add_argument(
        "--advisories",
        type=Path,
        metavar="FIXTURE",
        help='the advisories the stand-in OSV and CISA serve: JSON {"osv": [OSV records],'
        ' "known_exploited": [CVE ids]} (default: none)',
    )
    parser.add_argument(
        "--whole-test-job",
        action="store_true",
        help="run every test of the test job's tiers, not TEST_JOB_SELECTION",
    )
    args = parser.parse_args(argv)

    plan = {args.pipeline: args.jobs} if args.jobs else DEFAULT_PLAN
    advisories = load_advisories(args.advisories)
    if not GITLAB_CI_LOCAL.exists():
        print("rehearsal: gitlab-ci-local is missing (npm ci installs it)", file=sys.stderr)
        return 2
    if not args.skip_images:
        sh(str(HERE / "build-images.sh"))
    checkout = args.work / "checkout"
    log_dir = args.work / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    prepare_checkout(args.source.resolve(), checkout)
    upstream = {} if args.no_upstream else upstream_dirs()
    extra = {} if args.whole_test_job else dict(TEST_JOB_SELECTION)
    extra.update(item.split("=", 1) for item in args.variable)

    results = []
    with advisory_service(advisories, log_dir / "advisories.log") as port:
        for pipeline, jobs in plan.items():
            print(f"rehearsal: {pipeline} pipeline", flush=True)
            options = runner_options(pipeline, upstream=upstream, advisories_port=port, extra=extra)
            for job in jobs:
                result = run_job(checkout, job, options, log_dir)
                print(result.line(), flush=True)
                results.append(result)
    failed = [r.name for r in results if r.blocks]
    total = sum(r.seconds for r in results) / 60
    verdict = f"{len(failed)} failed ({', '.join(failed)})" if failed else "none failed"
    print(f"rehearsal: {len(results)} jobs, {verdict}, {total:.1f} min; logs in {log_dir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
