"""Helpers for the deploy tool's tests: CI environments (GitLab's variables and the
project's) and a clock that moves only when the code under test sleeps."""

from __future__ import annotations

import base64
import json

from conduit_deploy.cloud import PLAN_SETUP
from conduit_deploy.waiting import Clock

REGISTRY_PASSWORD = "s3cret-registry-token"
GCP_KEY = {
    "type": "service_account",
    "project_id": "conduit-dev-123",
    "client_email": "deployer@conduit-dev-123.iam.gserviceaccount.com",
    "private_key": "-----BEGIN PRIVATE KEY-----\nnot-a-real-key\n-----END PRIVATE KEY-----\n",
}
DB_PASSWORD = "db-password-0123456789"
CONDUIT_SECRET = "conduit-secret-0123456789abcdef0123456789"
BACKUP_KEY = {
    "type": "service_account",
    "project_id": "conduit-dev-123",
    "client_email": "conduit-backup@conduit-dev-123.iam.gserviceaccount.com",
    "private_key": "not-a-real-backup-key",
}
# The generated Secrets the fake render writes, hash suffix included.
RENDERED_SECRETS = ("conduit-app-aaaaaaaaaa", "registry-credentials-bbbbbbbbbb")


def ci_environ(**overrides: str | None) -> dict[str, str]:
    """Variables as GitLab sets them for a push to the default branch, plus the
    project's CI/CD variables. overrides=None removes a variable."""
    environ = {
        "CI": "true",
        "CI_PIPELINE_SOURCE": "push",
        "CI_DEFAULT_BRANCH": "main",
        "CI_COMMIT_BRANCH": "main",
        "CI_COMMIT_SHA": "0123456789abcdef0123456789abcdef01234567",
        "CI_COMMIT_SHORT_SHA": "01234567",
        "CI_PROJECT_URL": "https://gitlab.example.com/team/conduit",
        "DOCKER_REGISTRY_USER": "team",
        "DOCKER_REGISTRY_PASSWORD": base64.b64encode(REGISTRY_PASSWORD.encode()).decode(),
        "K8S_CLUSTER_NAME": "dev.conduit.k8s.local",
        "KOPS_STATE_STORE": "gs://conduit-kops-state",
        "GCP_CREDENTIAL_FILE": json.dumps(GCP_KEY),
        "DB_USER": "conduit",
        "DB_PASSWORD": DB_PASSWORD,
        "CONDUIT_SECRET": CONDUIT_SECRET,
        "BACKUP_BUCKET": "conduit-dev-backups",
        "BACKUP_GCP_CREDENTIAL_FILE": json.dumps(BACKUP_KEY),
    }
    for name, value in overrides.items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    return environ


def tag_environ(tag: str, **overrides: str | None) -> dict[str, str]:
    """A tag pipeline: GitLab sets CI_COMMIT_TAG and no CI_COMMIT_BRANCH."""
    return ci_environ(
        **{
            "CI_COMMIT_TAG": tag,
            "CI_COMMIT_BRANCH": None,
            # The prod-scoped value of the variable.
            "K8S_CLUSTER_NAME": "prod.conduit.k8s.local",
            **overrides,
        }
    )


class FakeClock(Clock):
    """Time that moves only when the code under test sleeps."""

    def __init__(self):
        self.current = 1000.0
        self.sleeps: list[float] = []
        super().__init__(now=lambda: self.current, sleep=self._sleep)

    def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.current += seconds


def plan_steps(planned: list[str]) -> list[str]:
    """A dry run's plan without its environment: the exports, and the lines that create
    the private folder and the key file the exports name."""
    return [line for line in planned if not line.startswith("export ") and line not in PLAN_SETUP]
