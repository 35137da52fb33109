"""Helpers for the deploy tool's tests: CI environments (GitLab's variables and the
project's) and a clock that moves only when the code under test sleeps."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import yaml
from conduit_deploy.cloud import PLAN_KEY, PLAN_SETUP, PLAN_WIF_COMMENT
from conduit_deploy.runner import Result, find_program
from conduit_deploy.waiting import Clock

from tests.k8s.crd import crd_errors
from tests.k8s.support import K8S, load_all
from tests.k8s.test_schemas import is_builtin, schema_errors

REGISTRY_PASSWORD = "s3cret-registry-token"
GCP_KEY = {
    "type": "service_account",
    "project_id": "conduit-dev-123",
    "client_email": "deployer@conduit-dev-123.iam.gserviceaccount.com",
    "private_key": "-----BEGIN PRIVATE KEY-----\nnot-a-real-key\n-----END PRIVATE KEY-----\n",
}
# Workload Identity Federation: dev's pool provider and the service account it may
# impersonate (deploy/google-cloud.md).
WIF_PROVIDER = (
    "projects/123456789012/locations/global/workloadIdentityPools/gitlab/providers/conduit-dev"
)
WIF_ACCOUNT = "deployer@conduit-dev-123.iam.gserviceaccount.com"


def gitlab_id_token(**claims: object) -> str:
    """A GitLab CI ID token's shape: a JWT with GitLab's claims (docs.gitlab.com/ci/secrets/
    id_token_authentication, "Token payload"), for a push to the protected default branch;
    claims override any. Unsigned: STS, not the deploy tool, checks signatures."""
    now = 1_796_000_000
    payload = {
        "namespace_id": "72",
        "namespace_path": "team",
        "project_id": "20",
        "project_path": "team/conduit",
        "user_id": "1",
        "user_login": "alice",
        "user_email": "alice@example.com",
        "pipeline_id": "1574",
        "pipeline_source": "push",
        "job_id": "302",
        "ref": "main",
        "ref_type": "branch",
        "ref_path": "refs/heads/main",
        "ref_protected": "true",
        "environment": "dev",
        "environment_protected": "false",
        "deployment_tier": "development",
        "runner_id": 1,
        "runner_environment": "gitlab-hosted",
        "sha": "0123456789abcdef0123456789abcdef01234567",
        "jti": "235b3a54-b797-45c7-ae9a-f72d7bc6ef5b",
        "iss": "https://gitlab.example.com",
        "iat": now,
        "nbf": now - 5,
        "exp": now + 3600,
        "sub": "project_path:team/conduit:ref_type:branch:ref:main",
        "aud": f"https://iam.googleapis.com/{WIF_PROVIDER}",
        **claims,
    }

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'kid': 'gitlab'})}.{part(payload)}.c2lnbmF0dXJl"


def wif_environ(**overrides: str | None) -> dict[str, str]:
    """ci_environ() with Workload Identity Federation in place of the key."""
    return ci_environ(
        **{
            "GCP_CREDENTIAL_FILE": None,
            "GCP_PROJECT": "conduit-dev-123",
            "GCP_WORKLOAD_IDENTITY_PROVIDER": WIF_PROVIDER,
            "GCP_SERVICE_ACCOUNT": WIF_ACCOUNT,
            "GCP_ID_TOKEN": gitlab_id_token(),
            **overrides,
        }
    )


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
        "CI_SERVER_URL": "https://gitlab.example.com",
        "CI_PROJECT_PATH": "team/conduit",
        "CI_PROJECT_ID": "42",
        "DOCKER_REGISTRY_USER": "team",
        "DOCKER_REGISTRY_PASSWORD": base64.b64encode(REGISTRY_PASSWORD.encode()).decode(),
        "K8S_CLUSTER_NAME": "dev.conduit.k8s.local",
        "KOPS_STATE_STORE": "gs://conduit-kops-state",
        "KOPS_API_ACCESS_CIDRS": "203.0.113.0/24",
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


# The manifest digest `docker push` reported in the pack job (tests/deploy/test_pack.py).
IMAGE_DIGEST = "sha256:" + "4e" * 32


def release_environ(tag: str = "v1.2.3", **overrides: str | None) -> dict[str, str]:
    """What deploy:prod sees in a tag pipeline: the tag's variables and the digest of the
    pack job's dotenv report (GitLab passes it to the jobs that need pack)."""
    return tag_environ(tag, **{"CONDUIT_IMAGE_DIGEST": IMAGE_DIGEST, **overrides})


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
    the private folder and the credential files the exports name."""
    setup = (*PLAN_SETUP, *PLAN_KEY, PLAN_WIF_COMMENT)
    return [
        line
        for line in planned
        if not line.startswith(("export ", "(umask 077; ")) and line not in setup
    ]


# --- a cluster to restore from -------------------------------------------------------

OBJECT_STORE_QUERY = (
    "kubectl",
    "get",
    "objectstore.barmancloud.cnpg.io/conduit-backups",
    "--namespace",
    "conduit",
    "--output=json",
)


def object_store(status: dict | None) -> dict:
    """The committed ObjectStore as the Barman Cloud plugin reports it, with `status`.

    Checked against the status schema of the plugin's CRD (plugin-barman-cloud v0.14.0,
    config/crd/bases/barmancloud.cnpg.io_objectstores.yaml), so only a shape the plugin
    can publish gets into a test.
    """
    store = yaml.safe_load((K8S / "base" / "postgres-objectstore.yaml").read_text())
    store["metadata"]["namespace"] = "conduit"
    if status is not None:
        store["status"] = status
    errors = crd_errors(store)
    assert errors == [], errors
    return store


class ScriptedCluster:
    """A runner's executor for restore: kubectl kustomize runs for real, the ObjectStore
    query answers `store` (or fails with `store_error`), the app has one replica, and
    every other command succeeds without output."""

    def __init__(self, store: dict, store_error: str = "") -> None:
        self.store = store
        self.store_error = store_error

    def __call__(self, args: tuple[str, ...]) -> Result | None:
        if args[:2] == ("kubectl", "kustomize"):
            done = subprocess.run(
                [find_program("kubectl"), *args[1:]], capture_output=True, text=True, check=False
            )
            return Result(args, done.returncode, done.stdout, done.stderr)
        if args == OBJECT_STORE_QUERY:
            if self.store_error:
                return Result(args, 1, "", self.store_error)
            return Result(args, 0, json.dumps(self.store))
        if args[:3] == ("kubectl", "get", "deployment/conduit"):
            return Result(args, 0, "1")
        return None


def rendered_objects(out: Path) -> list[dict]:
    """Every object of the rendered stages in out/, in apply order."""
    return [o for stage in sorted(out.glob("0*.yaml")) for o in load_all(stage)]


def manifest_errors(objects: list[dict], out: Path) -> list[str]:
    """Custom resources against their pinned CRDs, the rest against the schemas of the
    Kubernetes version out/kops.yaml targets."""
    [kops] = [d for d in load_all(out / "kops.yaml") if d["kind"] == "Cluster"]
    custom = [o for o in objects if not is_builtin(o)]
    return [e for o in custom for e in crd_errors(o)] + schema_errors(
        objects, kops["spec"]["kubernetesVersion"]
    )
