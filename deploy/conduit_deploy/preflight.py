"""`conduit-deploy preflight ENV`: everything kops and the deploy need, checked up front.

Each check prints one line, ok or FAIL with the reason and the fix; every check runs
even after one fails, so a first run shows all that is missing at once. The checks only
read: nothing is created. `cluster` and `deploy` run them before anything else.

What kops on GCE needs, read from kops v1.35.2 (paths in github.com/kubernetes/kops):

* APIs: kops builds clients for Compute, Cloud Storage, IAM and Cloud Resource
  Manager (upup/pkg/fi/cloudup/gce/gce_cloud.go:142-170; its DNS client is used only
  with a DNS zone, and our clusters use `topology.dns.type: None`).
* Project permissions: it creates a service account per instance-group role
  (pkg/model/gcemodel/service_accounts.go:48-88, via gcetasks/serviceaccount.go:67,134,149),
  binds them to roles/container.serviceAgent and roles/compute.viewer on the project
  (service_accounts.go:99-126, gcetasks/projectiambinding.go:117,130), runs instances
  as them, and creates the instance templates, managed instance groups, network,
  subnet, firewall rules, disks, address, forwarding rule, target pool and health
  checks of the cluster (pkg/model/gcemodel/*.go; docs/getting_started/gce.md:164-179
  lists what `kops delete cluster` removes).
* State bucket: kops reads and writes its state there and grants the instances'
  service accounts access to it through the bucket's IAM policy
  (pkg/model/gcemodel/storageacl.go:171-176, gcetasks/storagebucketiam.go:112,124).

What the database backups need, with their own key (BACKUP_GCP_CREDENTIAL_FILE): the
Barman Cloud tools the plugin runs first ask whether the bucket exists
(barman/cloud_providers/google_cloud_storage.py, _check_bucket_existence: the
google-cloud-storage Bucket.exists(), a buckets.get), then write, read, list and, for
the retention policy, delete objects. And nothing else: not the kops state bucket,
which holds the cluster's secrets.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from . import config
from .cloud import describe_credential, write_credentials
from .config import Settings
from .console import log
from .errors import CheckFailed, DeployError, GcpError, PreflightFailed, Unreachable
from .gcp import Endpoints, GcpClient
from .registry import Repository, check_push_access

REQUIRED_APIS = {
    "compute.googleapis.com": "Compute Engine API",
    "storage.googleapis.com": "Cloud Storage API",
    "iam.googleapis.com": "Identity and Access Management (IAM) API",
    "cloudresourcemanager.googleapis.com": "Cloud Resource Manager API",
}


@dataclass(frozen=True)
class Need:
    permission: str
    role: str  # the predefined role the guide grants for it (deploy/google-cloud.md)
    why: str


PROJECT_PERMISSIONS = (
    Need("resourcemanager.projects.get", "roles/browser", "the preflight reads the project"),
    Need("serviceusage.services.list", "roles/serviceusage.serviceUsageViewer",
         "the preflight lists the enabled APIs"),
    Need("resourcemanager.projects.getIamPolicy", "roles/resourcemanager.projectIamAdmin",
         "kops binds its node service accounts to project roles"),
    Need("resourcemanager.projects.setIamPolicy", "roles/resourcemanager.projectIamAdmin",
         "kops binds its node service accounts to project roles"),
    Need("iam.serviceAccounts.get", "roles/iam.serviceAccountAdmin",
         "kops creates a service account per role"),
    Need("iam.serviceAccounts.create", "roles/iam.serviceAccountAdmin",
         "kops creates a service account per role"),
    Need("iam.serviceAccounts.update", "roles/iam.serviceAccountAdmin",
         "kops keeps its service accounts' descriptions"),
    Need("iam.serviceAccounts.delete", "roles/iam.serviceAccountAdmin",
         "kops delete cluster removes them"),
    Need("iam.serviceAccounts.actAs", "roles/iam.serviceAccountUser",
         "the instances run as those service accounts"),
    *(
        Need(f"compute.{resource}.{verb}", "roles/compute.admin", "kops creates the cluster")
        for resource in (
            "instanceTemplates", "instanceGroupManagers", "instances", "disks", "networks",
            "subnetworks", "firewalls", "addresses", "forwardingRules", "targetPools",
            "httpHealthChecks", "healthChecks",
        )
        for verb in ("create", "delete", "get")
    ),
    Need("compute.zones.list", "roles/compute.admin", "kops finds the region's zones"),
)  # fmt: skip

BUCKET_PERMISSIONS = (
    "storage.buckets.get",
    "storage.buckets.getIamPolicy",
    "storage.buckets.setIamPolicy",
    "storage.objects.create",
    "storage.objects.delete",
    "storage.objects.get",
    "storage.objects.list",
)
BUCKET_ROLE = "roles/storage.admin"

BACKUP_GUIDE = 'deploy/google-cloud.md, "The backup bucket"'
BACKUP_PERMISSIONS = (
    Need("storage.buckets.get", "roles/storage.legacyBucketReader",
         "barman-cloud checks that the bucket exists"),
    *(
        Need(f"storage.objects.{verb}", "roles/storage.objectAdmin", "WAL and base backups")
        for verb in ("create", "get", "list", "delete")
    ),
)  # fmt: skip
# Permissions on the state bucket the backup key must not hold.
STATE_READ_PERMISSIONS = ("storage.objects.get", "storage.objects.list")


class PreflightFunction(Protocol):
    def __call__(self, environment: str, settings: Settings, *, registry: bool) -> None: ...


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[], str]  # the detail of a pass; raises DeployError on a failure


@dataclass(frozen=True)
class Target:
    """What one environment's preflight checks."""

    environment: str
    project: str
    state_store: str  # gs://bucket[/prefix]
    cluster_name: str
    cluster_name_confirmed: str | None = None  # K8S_CLUSTER_NAME_CONFIRMED
    key_project: str | None = None  # project_id inside the key
    # Which credential is in use (cloud.describe_credential).
    credential: str = "the service-account key"
    backup_bucket: str | None = None  # BACKUP_BUCKET; None: no backup checks

    @property
    def bucket(self) -> str:
        return config.bucket_of(self.state_store)


def _grouped(needs: Sequence[Need], missing: Sequence[str]) -> str:
    roles: dict[str, list[str]] = {}
    for need in needs:
        if need.permission in missing:
            roles.setdefault(need.role, []).append(need.permission)
    return "; ".join(f"grant {role} ({', '.join(perms)})" for role, perms in roles.items())


def checks(target: Target, gcp: GcpClient, backup: GcpClient | None = None) -> list[Check]:
    """The checks of the cluster name and of Google Cloud, in the order they print;
    `backup` is the client of the backup key, for the backup bucket's checks."""

    def credential() -> str:
        gcp.authorize()
        return f"{target.credential}: authorized as {gcp.email}"

    def project() -> str:
        found = gcp.project(target.project)
        state = found.get("lifecycleState", "")
        if state != "ACTIVE":
            raise CheckFailed(f"project {target.project} is {state or 'not active'}")
        origin = ""
        if target.key_project and target.key_project != target.project:
            origin = f" (the key belongs to {target.key_project})"
        return f"{target.project} is active{origin}"

    def apis() -> str:
        missing = sorted(set(REQUIRED_APIS) - gcp.enabled_services(target.project))
        if missing:
            raise CheckFailed(
                f"not enabled: {', '.join(missing)}: run `gcloud services enable "
                f"{' '.join(missing)} --project {target.project}`"
            )
        return ", ".join(sorted(REQUIRED_APIS))

    def bucket() -> str:
        try:
            gcp.bucket(target.bucket)
        except GcpError as error:
            if error.status == 404:
                raise CheckFailed(
                    f"gs://{target.bucket} does not exist: create it (deploy/google-cloud.md)"
                ) from None
            raise
        missing = gcp.missing_bucket_permissions(target.bucket, BUCKET_PERMISSIONS)
        if missing:
            raise CheckFailed(
                f"the key lacks {', '.join(missing)} on gs://{target.bucket}: grant "
                f"{BUCKET_ROLE} on the bucket"
            )
        return f"gs://{target.bucket} is readable and writable"

    def permissions() -> str:
        wanted = [need.permission for need in PROJECT_PERMISSIONS]
        missing = gcp.missing_permissions(target.project, wanted)
        if missing:
            raise CheckFailed(
                f"{len(missing)} of {len(wanted)} permissions missing on {target.project}: "
                + _grouped(PROJECT_PERMISSIONS, missing)
            )
        return f"all {len(wanted)} permissions kops needs"

    def name() -> str:
        problem = config.cluster_name_problem(
            target.environment, target.cluster_name, target.cluster_name_confirmed
        )
        if problem:
            raise CheckFailed(problem)
        return target.cluster_name

    found = [
        Check("cluster name", name),
        Check("GCP credentials", credential),
        Check("project", project),
        Check("APIs enabled", apis),
        Check("state bucket", bucket),
        Check("IAM permissions", permissions),
    ]
    if backup is not None and target.backup_bucket is not None:
        found += _backup_checks(backup, target.backup_bucket, target.bucket)
    return found


def _backup_checks(backup: GcpClient, name: str, state_bucket: str) -> list[Check]:
    """The backup key (its own, kept out of the state bucket) and its bucket."""

    def backup_key() -> str:
        backup.authorize()
        try:
            readable = set(STATE_READ_PERMISSIONS) - set(
                backup.missing_bucket_permissions(state_bucket, STATE_READ_PERMISSIONS)
            )
        except GcpError as error:
            if error.status != 404:  # a missing state bucket is the state bucket's line
                raise
            readable = set()
        if readable:
            raise CheckFailed(
                f"{backup.email} may read the kops state bucket gs://{state_bucket} "
                f"({', '.join(sorted(readable))}), which holds the cluster's secrets: grant "
                "the backup service account roles on its own bucket only"
            )
        return f"service account {backup.email}, not the CI's, no access to the state bucket"

    def backup_bucket() -> str:
        wanted = [need.permission for need in BACKUP_PERMISSIONS]
        try:
            missing = backup.missing_bucket_permissions(name, wanted)
        except GcpError as error:
            if error.status == 404:
                raise CheckFailed(
                    f"gs://{name} does not exist: create it ({BACKUP_GUIDE})"
                ) from None
            raise
        if missing:
            raise CheckFailed(
                f"{backup.email} lacks {', '.join(missing)} on gs://{name}: on that bucket, "
                + _grouped(BACKUP_PERMISSIONS, missing)
            )
        return f"gs://{name} exists; {backup.email} may write, read, list and delete backups"

    return [Check("backup key", backup_key), Check("backup bucket", backup_bucket)]


def run_checks(found: Sequence[Check], out: Callable[[str], None] = log) -> None:
    """Run every check, one line each; raise PreflightFailed naming the failures.

    An endpoint that cannot be reached is one failure, of the network: its line says
    why and through which proxy, once; the other checks that needed it say only that
    they could not run.
    """
    failed: list[str] = []
    not_run: list[str] = []
    unreachable: list[str] = []
    for check in found:
        try:
            detail = check.run()
        except Unreachable as error:
            not_run.append(check.name)
            if error.endpoint in unreachable:
                out(f"  --    {check.name}: not checked, {error.endpoint} is unreachable")
            else:
                unreachable.append(error.endpoint)
                out(f"  FAIL  {check.name}: {error}")
        except DeployError as error:
            failed.append(check.name)
            out(f"  FAIL  {check.name}: {error}")
        else:
            out(f"  ok    {check.name}: {detail}")
    problems = []
    if unreachable:
        problems.append(
            f"cannot reach {', '.join(unreachable)} (the network, or the proxy variables "
            f"HTTPS_PROXY, HTTP_PROXY, NO_PROXY), so {len(not_run)} of {len(found)} checks "
            f"could not run ({', '.join(not_run)})"
        )
    if failed:
        problems.append(f"{len(failed)} of {len(found)} checks failed ({', '.join(failed)})")
    if problems:
        raise PreflightFailed(
            f"preflight: {'; '.join(problems)}; fix them and run again "
            "(deploy/google-cloud.md explains each)"
        )


def run_preflight(
    environment: str,
    settings: Settings,
    *,
    registry: bool,
    endpoints: Endpoints | None = None,
    registry_api: str | None = None,
) -> None:
    """Every check of `environment`, from the parsed CI variables; registry=False leaves
    the registry out (the cluster stage pulls no image)."""
    credential = settings.gcp_credential
    backup_key = settings.get(config.BACKUP_GCP_CREDENTIAL_FILE)
    target = Target(
        environment=environment,
        project=settings.require(config.GCP_PROJECT),
        state_store=settings.require(config.KOPS_STATE_STORE),
        cluster_name=settings.require(config.K8S_CLUSTER_NAME),
        cluster_name_confirmed=settings.get(config.K8S_CLUSTER_NAME_CONFIRMED),
        key_project=credential.project_id if isinstance(credential, config.GcpKey) else None,
        backup_bucket=settings.get(config.BACKUP_BUCKET),
        credential=describe_credential(settings),
    )
    unreachable: dict[str, Unreachable] = {}  # shared: one report per endpoint

    def client(info: dict) -> GcpClient:
        return GcpClient(info, endpoints=endpoints, unreachable=unreachable)

    federation = {}
    if endpoints is not None:
        federation = {
            "token_url": endpoints.sts_token,
            "iam_credentials": endpoints.iam_credentials,
        }
    # Google's libraries read Workload Identity Federation's token from a file: the same
    # files as the cloud commands', in a private folder removed after the checks.
    with tempfile.TemporaryDirectory(prefix="conduit-preflight-") as folder:
        path = write_credentials(Path(folder), credential, **federation)
        ci = client(json.loads(path.read_text(encoding="utf-8")))
        found = checks(target, ci, client(json.loads(backup_key.text)) if backup_key else None)
        if registry:
            user = settings.require(config.DOCKER_REGISTRY_USER)
            password = settings.require(config.DOCKER_REGISTRY_PASSWORD)
            repository = Repository.parse(settings.require(config.CONDUIT_IMAGE_REPOSITORY))
            found.append(
                Check(
                    "registry credentials",
                    lambda: check_push_access(repository, user, password, api_url=registry_api),
                )
            )
        log(f"==> preflight: {environment}")
        run_checks(found)
