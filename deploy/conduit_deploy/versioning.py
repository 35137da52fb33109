"""The version and target environment of a build: the one place this is decided.

In GitLab CI the version is CI_COMMIT_TAG when set, else CI_COMMIT_SHORT_SHA. Outside
CI it comes from git: the tag on HEAD, else the short commit hash. Only tags of the
form vX.Y.Z go to prod; the default branch goes to dev; everything else goes nowhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from . import images
from .errors import ConfigError
from .runner import Runner, tail

PROD_TAG = re.compile(r"^v\d+\.\d+\.\d+$")
# Pipelines that never deploy, whatever branch they run on.
_NON_DEPLOYING_SOURCES = frozenset({"merge_request_event", "schedule"})

DEV, PROD, NONE = "dev", "prod", "none"
ENVIRONMENTS = (DEV, PROD)

# The digest the registry gave the pushed image: the pack job's dotenv report sets it for
# the jobs that need pack (GitLab passes dotenv variables down `needs`); an operator
# exports it. Not a project variable: the pipeline makes it.
IMAGE_DIGEST = "CONDUIT_IMAGE_DIGEST"
# The only digest algorithm registries and Kubernetes nodes use for manifests (OCI
# image-spec descriptor.md, "Registered algorithms": sha256 is the one that MUST be
# supported); pinned to lower-case hex as the registries write it.
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class BuildInfo:
    """What is being built, from which commit, and where it may be deployed."""

    version: str
    environment: str  # dev | prod | none
    default_branch: bool  # also tag the image `latest`
    in_ci: bool
    # The pushed image's manifest digest (IMAGE_DIGEST), once pack has pushed it.
    digest: str | None = None

    def image(self, repository: str) -> str:
        """What to run: pinned by digest when the push's digest is known (a tag can be
        pushed again; a digest names one manifest forever), else by tag."""
        if self.digest:
            return f"{repository}@{self.digest}"
        return self.tagged_image(repository)

    def tagged_image(self, repository: str) -> str:
        return f"{repository}:{self.version}"


def target_environment(
    *, tag: str | None, branch: str | None, default_branch: str | None, source: str | None
) -> str:
    """Where a pipeline for this ref deploys (mirrors the rules in .gitlab-ci.yml)."""
    if source in _NON_DEPLOYING_SOURCES:
        return NONE
    if tag:
        return PROD if PROD_TAG.match(tag) else NONE
    if branch and default_branch and branch == default_branch:
        return DEV
    return NONE


def in_ci(environ: Mapping[str, str]) -> bool:
    """GitLab always sets CI_COMMIT_SHORT_SHA; a tag alone also counts as CI input."""
    return bool(environ.get("CI_COMMIT_SHORT_SHA") or environ.get("CI_COMMIT_TAG"))


def check_version(version: str) -> str:
    try:
        return images.check_tag(version)
    except ValueError as error:
        raise ConfigError(f"version {error}") from None


def check_digest(value: str) -> str:
    digest = value.strip()
    if not DIGEST.match(digest):
        raise ConfigError(
            f"{IMAGE_DIGEST} must be the pushed image's digest, sha256:<64 lower-case hex "
            f"digits> (what `conduit-deploy pack` writes), got {digest!r}"
        )
    return digest


def image_digest(environ: Mapping[str, str]) -> str | None:
    value = environ.get(IMAGE_DIGEST, "")
    return check_digest(value) if value.strip() else None


def build_info(environ: Mapping[str, str], runner: Runner) -> BuildInfo:
    """The BuildInfo from CI variables, or from git outside CI."""
    digest = image_digest(environ)
    if in_ci(environ):
        tag = environ.get("CI_COMMIT_TAG") or None
        branch = environ.get("CI_COMMIT_BRANCH") or None
        default = environ.get("CI_DEFAULT_BRANCH") or None
        version = tag or environ["CI_COMMIT_SHORT_SHA"]
        return BuildInfo(
            version=check_version(version),
            environment=target_environment(
                tag=tag,
                branch=branch,
                default_branch=default,
                source=environ.get("CI_PIPELINE_SOURCE") or None,
            ),
            default_branch=bool(branch and branch == default and not tag),
            in_ci=True,
            digest=digest,
        )

    tag = _git(runner, "describe", "--tags", "--exact-match", "HEAD", required=False)
    version = tag or _git(runner, "rev-parse", "--short", "HEAD")
    return BuildInfo(
        version=check_version(version),
        # Outside CI the default branch is unknown: only a release tag names a target.
        environment=PROD if tag and PROD_TAG.match(tag) else NONE,
        default_branch=False,
        in_ci=False,
        digest=digest,
    )


def revision(environ: Mapping[str, str], runner: Runner) -> str:
    """The full commit hash being built (the image's OCI revision label)."""
    return environ.get("CI_COMMIT_SHA") or _git(runner, "rev-parse", "HEAD")


# git (2.35.2 and later) refuses a repository owned by another user than the one running
# it: "fatal: detected dubious ownership in repository at '<path>'" (git's setup.c).
_DUBIOUS_OWNERSHIP = re.compile(r"detected dubious ownership in repository at '([^']*)'")


def _git(runner: Runner, *args: str, required: bool = True) -> str:
    result = runner.run(["git", *args], capture=True, check=False, dry_run_safe=True, quiet=True)
    if result.ok and result.stdout.strip():
        return result.stdout.strip()
    refused = _DUBIOUS_OWNERSHIP.search(result.stderr)
    if refused:  # every git command fails the same way: say so, whatever was asked
        raise ConfigError(
            f"cannot tell the version: git refuses the checkout {refused.group(1)}, which "
            'belongs to another user ("dubious ownership"): run as its owner, or trust it '
            f"with `git config --global --add safe.directory {refused.group(1)}`; "
            "or set CI_COMMIT_SHORT_SHA"
        )
    if required:
        detail = tail(result.stderr) or "no output"
        hint = (
            "run inside the git checkout"
            if "not a git repository" in result.stderr
            else "a checkout with at least one commit is needed"
        )
        raise ConfigError(
            f"cannot tell the version: `git {' '.join(args)}` failed outside CI ({detail}); "
            f"{hint}, or set CI_COMMIT_SHORT_SHA"
        )
    return ""


def dotenv(info: BuildInfo, repository: str) -> str:
    """The `version` command's output, in GitLab's dotenv report format."""
    return (
        f"CONDUIT_VERSION={info.version}\n"
        f"CONDUIT_ENVIRONMENT={info.environment}\n"
        f"CONDUIT_IMAGE={info.image(repository)}\n"
    )
