"""The CI variables conduit-deploy reads: one table, and the Settings parsed from it.

Each variable is declared once, in VARIABLES: its name and older names, whether it is a
secret, how its value is parsed and checked, which commands need it or read it, and the
GitLab environment scope it is meant to have. load_settings(), the commands' checks and
the variable table of deploy/README.md (`conduit-deploy variables`) all come from it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import enum
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from . import canary, images, workload_identity
from .errors import VariableErrors
from .versioning import ENVIRONMENTS

T = TypeVar("T")

IMAGE_NAME = "conduit"
# The image's name when no registry is configured: builds that are never pushed (merge
# requests, a workstation) and `version` outside CI.
LOCAL_REPOSITORY = f"localhost/{IMAGE_NAME}"

# The commands a variable can be needed or read by. "pack --no-push" is pack without
# the push, which needs no registry.
VERSION = "version"
PACK = "pack"
PACK_NO_PUSH = "pack --no-push"
RENDER = "render"
CLUSTER = "cluster"
DEPLOY = "deploy"
RESTORE = "restore"
INSTALL_TOOLS = "install-tools"
PREFLIGHT = "preflight"
SIGN = "sign"  # the image's SBOM and keyless signatures (conduit_deploy.signing)
# Review apps (conduit_deploy.review): per merge request, on the dev cluster.
REVIEW_DEPLOY = "review deploy"
REVIEW_STOP = "review stop"
REVIEW_SWEEP = "review sweep"
REVIEW = (REVIEW_DEPLOY, REVIEW_STOP, REVIEW_SWEEP)
COMMANDS = (
    VERSION, PACK, PACK_NO_PUSH, RENDER, CLUSTER, DEPLOY, RESTORE, INSTALL_TOOLS, PREFLIGHT,
    SIGN, *REVIEW,
)  # fmt: skip
# render writes the manifests; cluster, deploy and restore render first.
RENDERING = (RENDER, CLUSTER, DEPLOY, RESTORE)
# cluster, deploy and restore talk to GCP (kops reads its state from GCS) and run
# install-tools; preflight checks what they will need there.
CLOUD = (CLUSTER, DEPLOY, RESTORE, PREFLIGHT)

# How the docs and messages tell to base64-encode a value: GNU `base64 -w0` does not exist
# on macOS, while every base64 wraps lines that tr removes.
BASE64_COMMAND = "printf %s \"{value}\" | base64 | tr -d '\\n'"

# conduit/settings.py refuses a shorter CONDUIT_SECRET in production: fail here first.
MIN_CONDUIT_SECRET_LENGTH = 32
MIN_DB_PASSWORD_LENGTH = 16

_DNS_NAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
# GCP project ids: 6-30 characters, lower-case letters, digits and hyphens, starting
# with a letter and not ending with a hyphen.
_GCP_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_PG_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Cloud Storage's bucket naming rules (cloud.google.com/storage/docs/buckets#naming, read
# 2026-12-05): lower-case letters, digits, '-', '_' and '.'; a letter or digit first and
# last; 3-63 characters, or up to 222 with dots, each dot-separated part at most 63; not
# an IP address in dotted-decimal notation; not beginning with "goog"; not containing
# "google" or a close misspelling such as "g00gle".
_BUCKET_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
_BUCKET_ENDS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_BUCKET_MAX = 63
_DOTTED_BUCKET_MAX = 222
_GOOGLE_LOOKALIKE = re.compile(r"g[o0][o0]g[l1]e")
GCS_SCHEME = "gs://"


class Scope(enum.Enum):
    """The GitLab environment scope a variable should get (Settings > CI/CD > Variables)."""

    ENVIRONMENT = "dev, prod"  # one value per environment scope
    PROD = "prod"  # read for prod only
    REVIEW = "review/*"  # the review jobs' environments only
    ALL = "all (*)"


class Kind(enum.Enum):
    """The GitLab variable type to choose: a File variable reaches the job as a path."""

    VARIABLE = "Variable"
    FILE = "File"


@dataclass(frozen=True)
class GcpKey:
    """A service-account key: its JSON text (secret), the project it belongs to, and
    what tells two keys apart (the service account and the key's id)."""

    text: str
    project_id: str | None
    client_email: str | None = None
    private_key_id: str | None = None

    def __repr__(self) -> str:
        return f"GcpKey(project_id={self.project_id!r}, client_email={self.client_email!r})"


# --- parsers: each returns the value or raises ValueError with what is wrong ----------
# Messages follow the variable's name ("DB_PASSWORD must be ...") and never quote a secret.


_GITLAB_PROJECT = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$")


def signer_project(value: str) -> str:
    if not _GITLAB_PROJECT.match(value):
        raise ValueError("must be a GitLab project path, group/project")
    return value


def text(value: str) -> str:
    return value


def dns_name(value: str) -> str:
    if not _DNS_NAME.match(value):
        raise ValueError(f"must be a lower-case DNS name, got {value!r}")
    return value


def bucket_name_problem(name: str) -> str | None:
    """Which of Cloud Storage's naming rules `name` breaks (the first), or None."""
    wrong = sorted(set(name) - _BUCKET_CHARACTERS)
    if wrong:
        shown = " ".join(repr(c) for c in wrong)
        return f"may hold only lower-case letters, digits, '-', '_' and '.', not {shown}"
    if not name or name[0] not in _BUCKET_ENDS or name[-1] not in _BUCKET_ENDS:
        return "must start and end with a lower-case letter or a digit"
    parts = name.split(".")
    if len(parts) > 1:
        if len(name) > _DOTTED_BUCKET_MAX:
            return f"has {len(name)} characters; a name with dots may have at most 222"
        if "" in parts:
            return "has an empty part between two dots"
        longest = max(parts, key=len)
        if len(longest) > _BUCKET_MAX:
            return f"has a dot-separated part of {len(longest)} characters; at most 63"
    if not 3 <= len(name) <= (_DOTTED_BUCKET_MAX if len(parts) > 1 else _BUCKET_MAX):
        return f"has {len(name)} characters; a name without dots has 3 to 63"
    with contextlib.suppress(ValueError):
        ipaddress.IPv4Address(name)
        return "must not be an IP address"
    if name.startswith("goog"):
        return "must not begin with 'goog'"
    if _GOOGLE_LOOKALIKE.search(name):
        return "must not contain 'google' or a look-alike of it"
    return None


def gcs_url(value: str) -> str:
    """gs://BUCKET or gs://BUCKET/PATH, the bucket named by Cloud Storage's rules."""
    if not value.startswith(GCS_SCHEME) or len(value) <= len(GCS_SCHEME):
        raise ValueError(f"must be a Google Cloud Storage URL (gs://bucket[/path]), got {value!r}")
    bucket = value.removeprefix(GCS_SCHEME).split("/", 1)[0]
    problem = bucket_name_problem(bucket)
    if problem:
        raise ValueError(
            f"must be gs://BUCKET[/PATH] with a valid bucket name: {bucket!r} {problem}"
        )
    return value


def bucket_of(url: str) -> str:
    """The bucket of a gs:// URL."""
    return url.removeprefix(GCS_SCHEME).split("/", 1)[0]


def gcp_project(value: str) -> str:
    if not _GCP_PROJECT.match(value):
        raise ValueError(f"is not a valid GCP project id: {value!r}")
    return value


def postgres_role(value: str) -> str:
    if not _PG_ROLE.match(value):
        raise ValueError(f"must be a plain PostgreSQL role name (a-z, 0-9, _), got {value!r}")
    return value


def db_password(value: str) -> str:
    if len(value) < MIN_DB_PASSWORD_LENGTH:
        raise ValueError(f"must be at least {MIN_DB_PASSWORD_LENGTH} characters")
    return value


def conduit_secret(value: str) -> str:
    if len(value) < MIN_CONDUIT_SECRET_LENGTH:
        raise ValueError(
            f"must be at least {MIN_CONDUIT_SECRET_LENGTH} characters"
            " (the app refuses to start with a shorter one)"
        )
    return value


def registry_user(value: str) -> str:
    # It becomes a path component of docker.io/<user>/conduit.
    if not images.PATH_COMPONENT.match(value):
        raise ValueError(f"must be a lower-case registry user name, got {value!r}")
    return value


def base64_password(value: str) -> str:
    """Stored base64-encoded (as in the seed pipeline); returns the decoded password."""
    try:
        password = base64.b64decode("".join(value.split()), validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValueError(
            "is not valid base64 (store the output of "
            f"`{BASE64_COMMAND.format(value='$PASSWORD')}`)"
        ) from None
    if not password.strip():
        raise ValueError("decodes to an empty password")
    return password


def gcp_key(value: str) -> GcpKey:
    """A path (GitLab file variable) or the key's JSON itself."""
    content = value.strip()
    if not content.startswith(("{", "[")):
        path = Path(content)
        try:
            content = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ValueError(
                f"is neither JSON nor a readable file ({error.strerror}: {path})"
            ) from None
    try:
        parsed = json.loads(content)
    except json.JSONDecodeError as error:
        raise ValueError(f"is not valid JSON (line {error.lineno}, column {error.colno})") from None
    if not isinstance(parsed, dict):
        raise ValueError("must hold a JSON object (a service-account key)")

    def field(name: str) -> str | None:
        return str(parsed.get(name) or "").strip() or None

    return GcpKey(content, field("project_id"), field("client_email"), field("private_key_id"))


def access_cidrs(value: str) -> tuple[str, ...]:
    """`203.0.113.0/24, 2001:db8::/32`: each a network address and its prefix length,
    no host bits set (kops refuses those: pkg/apis/kops/validation/validation.go
    parseCIDR, v1.35.2)."""
    found = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            raise ValueError(f"must be CIDRs separated by commas, got an empty one in {value!r}")
        try:
            if "/" not in item:
                raise ValueError
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(
                f"must be CIDRs separated by commas (203.0.113.0/24), got {item!r}"
            ) from None
        if str(network) != item and network.network_address != ipaddress.ip_interface(item).ip:
            raise ValueError(f"has host bits set in {item!r}: did you mean {str(network)!r}?")
        found.append(item)
    return tuple(dict.fromkeys(found))


def kubeconfig(value: str) -> str:
    """A path (GitLab file variable) or the kubeconfig's YAML itself; returns the YAML."""
    content = value
    if "\n" not in value.strip():
        path = Path(value.strip())
        try:
            content = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ValueError(
                f"is neither a kubeconfig nor a readable file ({error.strerror}: {path})"
            ) from None
    if "clusters:" not in content or "users:" not in content:
        raise ValueError("is not a kubeconfig (it has no clusters: and users:)")
    return content


def positive_count(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"must be a whole number of 1 or more, got {value!r}")
    return int(value)


# The units GitLab's auto_stop_in accepts that a review app's life is counted in.
_DURATION = re.compile(
    r"^(\d+)\s*(min|mins|minute|minutes|h|hr|hrs|hour|hours|d|day|days|"
    r"w|week|weeks)$"
)
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(value: str) -> int:
    """`3 days`, `12 hours`, `1 week`, `90 minutes`: the number of seconds."""
    match = _DURATION.match(value.strip().lower())
    if not match or int(match.group(1)) < 1:
        raise ValueError(
            f"must be a number and a unit (minutes, hours, days or weeks), e.g. `3 days`, "
            f"got {value!r}"
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)[0]]


def bucket_name(value: str) -> str:
    if value.startswith(GCS_SCHEME):
        raise ValueError(f"must be the bucket's name without gs://, got {value!r}")
    problem = bucket_name_problem(value)
    if problem:
        raise ValueError(f"is not a Cloud Storage bucket name: {value!r} {problem}")
    return value


def same_service_account(ci_key: GcpKey, backup_key: GcpKey) -> str | None:
    """Why the backup key is the CI's own (same key, or same service account), or None."""
    if ci_key.text.strip() == backup_key.text.strip() or (
        ci_key.private_key_id and ci_key.private_key_id == backup_key.private_key_id
    ):
        return "is the same key as GCP_CREDENTIAL_FILE"
    if ci_key.client_email and ci_key.client_email == backup_key.client_email:
        return f"is a key of the CI's own service account {ci_key.client_email}"
    return None


def sha256(value: str) -> str:
    digest = value.strip().lower()
    if not _SHA256.match(digest):
        raise ValueError("must be a SHA-256 digest (64 hexadecimal characters)")
    return digest


def _project_of_key(key: GcpKey) -> str:
    if key.project_id is None:
        raise ValueError("has no project_id; set GCP_PROJECT to the project's id")
    return gcp_project(key.project_id)


def _docker_hub_repository(user: str) -> str:
    return f"{images.DEFAULT_REGISTRY}/{user}/{IMAGE_NAME}"


# --- the table ------------------------------------------------------------------------


@dataclass(frozen=True)
class Variable(Generic[T]):
    """One CI variable."""

    name: str
    meaning: str  # one line for the docs
    parse: Callable[[str], T]
    needed_by: tuple[str, ...] = ()  # commands that refuse to start without it
    read_by: tuple[str, ...] = ()  # commands that use it when it is set
    scope: Scope = Scope.ALL
    secret: bool = False  # never printed, surrounding spaces kept; masked where GitLab can
    # GitLab masks only values it can find in a log: 8+ characters from the Base64
    # alphabet and @ : . ~ (docs.gitlab.com/ci/variables/, "Mask a CI/CD variable");
    # a JSON key, with its braces, quotes and spaces, cannot be masked.
    maskable: bool = True
    # Protected variables reach only pipelines of protected branches and tags: every one
    # a deploying job reads, except those that builds of any branch read too.
    protected: bool = True
    kind: Kind = Kind.VARIABLE
    alternatives: tuple[str, ...] = ()  # older names that still work
    # When unset, the value comes from this other variable's parsed value through derive.
    fallback: str | None = None
    derive: Callable[[Any], T] | None = None

    def lookup(self, environ: Mapping[str, str]) -> str | None:
        """The first non-empty value among the name and its alternatives."""
        for name in (self.name, *self.alternatives):
            value = environ.get(name, "")
            if value.strip():
                return value if self.secret else value.strip()
        return None

    def describe(self) -> str:
        # An old name is accepted silently; the variable table alone names it.
        return f"{self.name} (or {self.fallback})" if self.fallback else self.name

    def applies_to(self, command: str) -> bool:
        return command in self.needed_by or command in self.read_by

    @property
    def masked(self) -> bool:
        return self.secret and self.maskable


DB_USER = Variable(
    "DB_USER",
    "PostgreSQL role the app uses",
    postgres_role,
    needed_by=RENDERING,
    scope=Scope.ENVIRONMENT,
)
DB_PASSWORD = Variable(
    "DB_PASSWORD",
    f"its password ({MIN_DB_PASSWORD_LENGTH}+ characters)",
    db_password,
    needed_by=RENDERING,
    scope=Scope.ENVIRONMENT,
    secret=True,
)
CONDUIT_SECRET = Variable(
    "CONDUIT_SECRET",
    f"the app's JWT signing key ({MIN_CONDUIT_SECRET_LENGTH}+ characters)",
    conduit_secret,
    needed_by=RENDERING,
    scope=Scope.ENVIRONMENT,
    secret=True,
)
K8S_CLUSTER_NAME = Variable(
    "K8S_CLUSTER_NAME",
    "kops cluster name, starting with its environment: `dev.conduit.k8s.local`, "
    "`prod.conduit.k8s.local`",
    dns_name,
    needed_by=(*RENDERING, PREFLIGHT),
    scope=Scope.ENVIRONMENT,
    # The seed pipeline spelled it K8S_CLUSTER_NAEM; projects that still set that keep working.
    alternatives=("K8S_CLUSTER_NAEM",),
)
K8S_CLUSTER_NAME_CONFIRMED = Variable(
    "K8S_CLUSTER_NAME_CONFIRMED",
    "optional: the exact cluster name, to use a cluster whose name does not start with "
    "its environment (`dev.`, `prod.`); never lets one environment use the other's cluster",
    dns_name,
    read_by=(*RENDERING, PREFLIGHT),
    scope=Scope.ENVIRONMENT,
)
KOPS_STATE_STORE = Variable(
    "KOPS_STATE_STORE",
    "kops state bucket, `gs://…` (one bucket can hold both clusters)",
    gcs_url,
    needed_by=(*RENDERING, PREFLIGHT),
)
KOPS_FEATURE_FLAGS = Variable(
    "KOPS_FEATURE_FLAGS", "optional kops feature flags", text, read_by=CLOUD
)
KOPS_API_ACCESS_CIDRS = Variable(
    "KOPS_API_ACCESS_CIDRS",
    "the address ranges (CIDRs, comma-separated) that may reach the Kubernetes API: the "
    "runners' egress and the operators'. No default: `0.0.0.0/0` opens it to every "
    "address, which GitLab.com's shared runners need (deploy/google-cloud.md, "
    '"Who may reach the Kubernetes API")',
    access_cidrs,
    needed_by=RENDERING,
)
GCP_CREDENTIAL_FILE = Variable(
    "GCP_CREDENTIAL_FILE",
    "the CI service account's key (JSON), best as a File variable; its `project_id` is "
    "the GCP project. The fallback of Workload Identity Federation, which wins when both "
    "are set (deploy/google-cloud.md)",
    gcp_key,
    # Needed unless Workload Identity Federation is configured (_credential_problems).
    read_by=(*CLOUD, RENDER),
    secret=True,
    maskable=False,
    kind=Kind.FILE,
)
GCP_WORKLOAD_IDENTITY_PROVIDER = Variable(
    "GCP_WORKLOAD_IDENTITY_PROVIDER",
    "Workload Identity Federation: the pool provider that trusts this project's jobs, "
    "`projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER`; "
    "with `GCP_SERVICE_ACCOUNT`, no key is needed (deploy/google-cloud.md)",
    workload_identity.provider_name,
    read_by=CLOUD,
    scope=Scope.ENVIRONMENT,
)
GCP_SERVICE_ACCOUNT = Variable(
    "GCP_SERVICE_ACCOUNT",
    "Workload Identity Federation: the email of the CI service account the job impersonates",
    workload_identity.service_account,
    read_by=CLOUD,
    scope=Scope.ENVIRONMENT,
)
# Set by the job itself (.gitlab-ci.yml's id_tokens), never in Settings > CI/CD: left
# out of the variable tables.
GCP_ID_TOKEN = Variable(
    workload_identity.ID_TOKEN_VARIABLE,
    "the job's OIDC ID token for the pool provider (id_tokens)",
    workload_identity.id_token,
    read_by=CLOUD,
    secret=True,
    protected=False,
)
GCP_PROJECT = Variable(
    "GCP_PROJECT",
    "the GCP project id; unset: the `project_id` of `GCP_CREDENTIAL_FILE` (so set it "
    "when the jobs use Workload Identity Federation)",
    gcp_project,
    needed_by=(*RENDERING, PREFLIGHT),
    fallback=GCP_CREDENTIAL_FILE.name,
    derive=_project_of_key,
)
DOCKER_REGISTRY_USER = Variable(
    "DOCKER_REGISTRY_USER",
    "registry user",
    registry_user,
    # deploy and restore render and apply the image pull Secret the API pods use.
    needed_by=(PACK, SIGN, DEPLOY, RESTORE, PREFLIGHT),
    read_by=(VERSION, PACK_NO_PUSH, RENDER, CLUSTER, REVIEW_DEPLOY),
)
DOCKER_REGISTRY_PASSWORD = Variable(
    "DOCKER_REGISTRY_PASSWORD",
    f"registry password or token, **base64-encoded** (`{BASE64_COMMAND.format(value='$TOKEN')}`)",
    base64_password,
    needed_by=(PACK, SIGN, DEPLOY, RESTORE, PREFLIGHT),
    read_by=(PACK_NO_PUSH, RENDER, CLUSTER, REVIEW_DEPLOY),
    secret=True,
)
CONDUIT_IMAGE_REPOSITORY = Variable(
    "CONDUIT_IMAGE_REPOSITORY",
    "image repository; unset: `docker.io/$DOCKER_REGISTRY_USER/conduit`, or the local "
    f"name `{LOCAL_REPOSITORY}` when no registry is needed (`version`, `pack --no-push`)",
    images.check_repository,
    needed_by=(PACK, SIGN, *RENDERING, PREFLIGHT, REVIEW_DEPLOY),
    read_by=(VERSION, PACK_NO_PUSH),
    fallback=DOCKER_REGISTRY_USER.name,
    derive=_docker_hub_repository,
)
CONDUIT_SIGNER_PROJECT = Variable(
    "CONDUIT_SIGNER_PROJECT",
    "optional: the GitLab project (`group/project`) whose pipeline must have signed the "
    "image deploy runs; unset: this project (`CI_PROJECT_PATH`)",
    signer_project,
    read_by=(DEPLOY,),
)
BASE_IMAGE = Variable(
    "BASE_IMAGE",
    "optional: the Dockerfile's `BASE_IMAGE` build argument",
    images.check_image,
    read_by=(PACK, PACK_NO_PUSH),
    protected=False,  # merge-request builds (pack --no-push) use the same base
)
DOCKER_HUB_PREFIX = Variable(
    "DOCKER_HUB_PREFIX",
    "optional: where Docker Hub's images are pulled from, the jobs' and the Dockerfile's "
    "(`DOCKER_HUB_PREFIX` build argument); `.gitlab-ci.yml` sets `docker.io`, a group's "
    "project may set `$CI_DEPENDENCY_PROXY_GROUP_IMAGE_PREFIX` (deploy/gitlab.md)",
    images.check_prefix,
    read_by=(PACK, PACK_NO_PUSH),
    protected=False,  # merge-request builds (pack --no-push) pull the same bases
)
BACKUP_BUCKET = Variable(
    "BACKUP_BUCKET",
    "Cloud Storage bucket (name only) for the database's WAL archive and base backups; "
    "one per environment, never the kops state bucket",
    bucket_name,
    needed_by=(*RENDERING, PREFLIGHT),
    scope=Scope.ENVIRONMENT,
)
BACKUP_GCP_CREDENTIAL_FILE = Variable(
    "BACKUP_GCP_CREDENTIAL_FILE",
    "key (JSON) of the service account that may only use `BACKUP_BUCKET` "
    "(roles/storage.objectAdmin and roles/storage.legacyBucketReader on that bucket), "
    "best as a File variable; never the CI's own key",
    gcp_key,
    needed_by=(*RENDERING, PREFLIGHT),
    scope=Scope.ENVIRONMENT,
    secret=True,
    maskable=False,
    kind=Kind.FILE,
)
KOPS_SHA256 = Variable(
    "KOPS_SHA256",
    "optional: the expected SHA-256 of the kops binary (overrides the recorded one)",
    sha256,
    read_by=(INSTALL_TOOLS,),
)
ENVOY_GATEWAY_SHA256 = Variable(
    "ENVOY_GATEWAY_SHA256",
    "optional: the expected SHA-256 of Envoy Gateway's install.yaml (overrides the "
    "recorded one; k8s/README.md says how to check it)",
    sha256,
    read_by=(DEPLOY,),
)
PROD_HOST = Variable(
    "PROD_HOST",
    "the DNS name prod serves HTTPS on (Let's Encrypt certificate; plain HTTP redirects); "
    "its A record points at the Gateway's address. Required for prod; dev stays on the "
    "bare address over HTTP",
    dns_name,
    read_by=RENDERING,
    scope=Scope.PROD,
)
# Prod's canary release (conduit_deploy.canary); each has a default.
CANARY_STEPS = Variable(
    "CANARY_STEPS",
    "optional: the canary's share of requests in percent, step by step, ending at 100 "
    "(promotion); default `5,25,50,100`",
    canary.parse_steps,
    read_by=(DEPLOY,),
    scope=Scope.PROD,
)
CANARY_STEP_SECONDS = Variable(
    "CANARY_STEP_SECONDS",
    "optional: how long each step is held, and the window it is judged over (60 or "
    "more: two scrapes); default `300`",
    canary.parse_step_seconds,
    read_by=(DEPLOY,),
    scope=Scope.PROD,
)
CANARY_MAX_5XX_INCREASE = Variable(
    "CANARY_MAX_5XX_INCREASE",
    "optional: percentage points by which the canary's 5xx ratio may exceed the stable "
    "one's; default `1`",
    canary.parse_percentage_points,
    read_by=(DEPLOY,),
    scope=Scope.PROD,
)
CANARY_MAX_P99_INCREASE_MS = Variable(
    "CANARY_MAX_P99_INCREASE_MS",
    "optional: milliseconds by which the canary's p99 latency may exceed the stable "
    "one's; default `100`",
    canary.parse_milliseconds,
    read_by=(DEPLOY,),
    scope=Scope.PROD,
)
CANARY_MIN_REQUESTS = Variable(
    "CANARY_MIN_REQUESTS",
    "optional: requests the canary must serve in each step, else the step is "
    "inconclusive and the release aborts; default `50`",
    canary.parse_count,
    read_by=(DEPLOY,),
    scope=Scope.PROD,
)
CONDUIT_DEPLOY_DISABLED = Variable(
    "CONDUIT_DEPLOY_DISABLED",
    "set to any value to skip the cluster and deploy jobs (read by the pipeline's rules)",
    text,
    protected=False,  # the rules of every pipeline read it
)

REVIEW_APPS_ENABLED = Variable(
    "REVIEW_APPS_ENABLED",
    "set to `true` to deploy a review app for each merge request from this project's "
    'branches (read by the pipeline\'s rules; deploy/gitlab.md, "Review apps")',
    text,
    protected=False,  # merge request pipelines run on unprotected branches
)
REVIEW_KUBECONFIG = Variable(
    "REVIEW_KUBECONFIG",
    "kubeconfig of the dev cluster's review ServiceAccount (k8s/review-access), best as a "
    "File variable; never the admin kubeconfig (the review jobs refuse it)",
    kubeconfig,
    needed_by=REVIEW,
    scope=Scope.REVIEW,
    secret=True,
    maskable=False,
    protected=False,  # reaches merge request pipelines; the environment scope limits it
    kind=Kind.FILE,
)
REVIEW_SECRET = Variable(
    "REVIEW_SECRET",
    f"key ({MIN_CONDUIT_SECRET_LENGTH}+ characters) each review app's JWT key and "
    "database password are derived from; never dev's or prod's CONDUIT_SECRET",
    conduit_secret,
    needed_by=(REVIEW_DEPLOY,),
    scope=Scope.REVIEW,
    secret=True,
    protected=False,
)
REVIEW_APPS_MAX = Variable(
    "REVIEW_APPS_MAX",
    "optional: how many review apps may run at once; the next deploy fails naming the "
    "oldest; default `5`",
    positive_count,
    read_by=(REVIEW_DEPLOY,),
    protected=False,
)
REVIEW_AUTO_STOP_IN = Variable(
    "REVIEW_AUTO_STOP_IN",
    "optional: how long a review app lives after its last deploy (GitLab's `auto_stop_in`, "
    "and the expiry the sweep reads), in minutes, hours, days or weeks; default `3 days`",
    duration,
    read_by=(REVIEW_DEPLOY,),
    protected=False,
)
REVIEW_SWEEP_TOKEN = Variable(
    "REVIEW_SWEEP_TOKEN",
    "optional: a project access token (Reporter, `read_api`) the scheduled sweep reads "
    "merge requests with; unset: the job's CI_JOB_TOKEN",
    text,
    read_by=(REVIEW_SWEEP,),
    scope=Scope.REVIEW,
    secret=True,
)

VARIABLES: tuple[Variable[Any], ...] = (
    DB_USER,
    DB_PASSWORD,
    CONDUIT_SECRET,
    K8S_CLUSTER_NAME,
    K8S_CLUSTER_NAME_CONFIRMED,
    KOPS_STATE_STORE,
    KOPS_FEATURE_FLAGS,
    KOPS_API_ACCESS_CIDRS,
    GCP_WORKLOAD_IDENTITY_PROVIDER,
    GCP_SERVICE_ACCOUNT,
    GCP_CREDENTIAL_FILE,
    GCP_ID_TOKEN,
    GCP_PROJECT,
    DOCKER_REGISTRY_USER,
    DOCKER_REGISTRY_PASSWORD,
    CONDUIT_IMAGE_REPOSITORY,
    CONDUIT_SIGNER_PROJECT,
    BASE_IMAGE,
    DOCKER_HUB_PREFIX,
    BACKUP_BUCKET,
    BACKUP_GCP_CREDENTIAL_FILE,
    KOPS_SHA256,
    ENVOY_GATEWAY_SHA256,
    PROD_HOST,
    CANARY_STEPS,
    CANARY_STEP_SECONDS,
    CANARY_MAX_5XX_INCREASE,
    CANARY_MAX_P99_INCREASE_MS,
    CANARY_MIN_REQUESTS,
    CONDUIT_DEPLOY_DISABLED,
    REVIEW_APPS_ENABLED,
    REVIEW_KUBECONFIG,
    REVIEW_SECRET,
    REVIEW_APPS_MAX,
    REVIEW_AUTO_STOP_IN,
    REVIEW_SWEEP_TOKEN,
)

# The ones a project sets (the tables of the docs): all but those the job sets itself.
DOCUMENTED = tuple(variable for variable in VARIABLES if variable is not GCP_ID_TOKEN)


# --- settings -------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """The parsed variables a command uses, by variable name."""

    values: Mapping[str, Any]

    def get(self, variable: Variable[T]) -> T | None:
        return self.values.get(variable.name)

    def require(self, variable: Variable[T]) -> T:
        """A value the command declared as needed (load_settings checked it)."""
        value = self.values.get(variable.name)
        if value is None:  # a programming error: the table does not say it is needed
            raise AssertionError(f"{variable.name} is not declared as needed by this command")
        return value

    @property
    def gcp_credential(self) -> workload_identity.WorkloadIdentity | GcpKey:
        """What the cloud commands authenticate to Google Cloud with: Workload Identity
        Federation when it is configured (load_settings checked it is whole), else the
        key. Only for the commands that need one (CLOUD)."""
        provider = self.get(GCP_WORKLOAD_IDENTITY_PROVIDER)
        if provider is not None:
            return workload_identity.WorkloadIdentity(
                provider, self.require(GCP_SERVICE_ACCOUNT), self.require(GCP_ID_TOKEN)
            )
        return self.require(GCP_CREDENTIAL_FILE)

    @property
    def unused_key(self) -> bool:
        """GCP_CREDENTIAL_FILE is set but Workload Identity Federation is used instead."""
        return self.get(GCP_WORKLOAD_IDENTITY_PROVIDER) is not None and bool(
            self.get(GCP_CREDENTIAL_FILE)
        )

    @property
    def image_repository(self) -> str:
        """Where the image lives: the configured repository, else its local name."""
        return self.get(CONDUIT_IMAGE_REPOSITORY) or LOCAL_REPOSITORY

    def __repr__(self) -> str:  # secrets stay out of logs and tracebacks
        secret = {variable.name for variable in VARIABLES if variable.secret}
        shown = {name: "***" if name in secret else value for name, value in self.values.items()}
        return f"Settings({shown!r})"


def cluster_name_problem(environment: str, name: str, confirmed: str | None) -> str | None:
    """Why K8S_CLUSTER_NAME cannot be the cluster of `environment`, or None.

    A cluster belongs to the environment its name starts with (`dev.…`, `prod.…`). A name
    that starts with another environment is always refused, so a variable without the
    right environment scope can never send prod's spec to the dev cluster. A name that
    starts with none is allowed only when K8S_CLUSTER_NAME_CONFIRMED repeats it.
    """
    if name.startswith(f"{environment}."):
        return None
    owner = next((env for env in ENVIRONMENTS if name.startswith(f"{env}.")), None)
    if owner is not None:
        return (
            f"K8S_CLUSTER_NAME {name!r} is the {owner} cluster, not {environment}'s: give the "
            f"variable one value per environment scope ({', '.join(ENVIRONMENTS)})"
        )
    if confirmed == name:
        return None
    return (
        f"K8S_CLUSTER_NAME {name!r} does not start with '{environment}.', so nothing shows it "
        f"is the {environment} cluster: name it {environment}.<domain>, or set "
        f"K8S_CLUSTER_NAME_CONFIRMED={name} in the {environment} scope"
    )


def _backup_problems(parsed: Mapping[str, Any]) -> list[str]:
    """The backups must not share the CI's key or the kops state bucket: the plugin's
    sidecar holds that key, and the state bucket holds the cluster's secrets."""
    problems = []
    ci_key, backup_key = (
        parsed.get(GCP_CREDENTIAL_FILE.name),
        parsed.get(BACKUP_GCP_CREDENTIAL_FILE.name),
    )
    if ci_key is not None and backup_key is not None:
        same = same_service_account(ci_key, backup_key)
        if same:
            problems.append(
                f"BACKUP_GCP_CREDENTIAL_FILE {same}: give backups their own service account "
                '(deploy/google-cloud.md, "The backup bucket")'
            )
    impersonated = parsed.get(GCP_SERVICE_ACCOUNT.name)
    if impersonated and backup_key is not None and backup_key.client_email == impersonated:
        problems.append(
            f"BACKUP_GCP_CREDENTIAL_FILE is a key of the CI's own service account {impersonated} "
            '(GCP_SERVICE_ACCOUNT): give backups their own (deploy/google-cloud.md, "The backup '
            'bucket")'
        )
    state_store, backup_bucket = parsed.get(KOPS_STATE_STORE.name), parsed.get(BACKUP_BUCKET.name)
    if state_store and backup_bucket and bucket_of(state_store) == backup_bucket:
        problems.append(
            f"BACKUP_BUCKET {backup_bucket!r} is the kops state bucket: give backups a bucket "
            "of their own, so the backup key cannot read the cluster's secrets"
        )
    return problems


WIF_GUIDE = 'deploy/google-cloud.md, "Workload Identity Federation"'


def _credential_problems(
    parsed: Mapping[str, Any], raw: Mapping[str, str | None]
) -> tuple[list[str], list[str]]:
    """(missing, invalid) of the cloud commands' credential: Workload Identity Federation
    (provider, service account and the job's token, all three) or the key.

    A half-configured federation is an error, never a silent fall back to the key: the
    key would hide it until the day the key is deleted.
    """
    provider, account = GCP_WORKLOAD_IDENTITY_PROVIDER.name, GCP_SERVICE_ACCOUNT.name
    if raw[provider] is None and raw[account] is None:
        if raw[GCP_CREDENTIAL_FILE.name] is None:
            return [f"{provider} and {account} (or the key, {GCP_CREDENTIAL_FILE.name})"], []
        return [], []
    for name, other in ((provider, account), (account, provider)):
        if raw[name] is None:
            return [], [
                f"{other} is set but {name} is not: Workload Identity Federation needs both "
                f"({WIF_GUIDE})"
            ]
    token = parsed.get(GCP_ID_TOKEN.name)
    if raw[GCP_ID_TOKEN.name] is None:
        return [], [
            f"{GCP_ID_TOKEN.name} is not set: a job that uses Workload Identity Federation "
            "needs `id_tokens: GCP_ID_TOKEN: aud: https://iam.googleapis.com/"
            "$GCP_WORKLOAD_IDENTITY_PROVIDER` (.gitlab-ci.yml); elsewhere, use the key"
        ]
    name = parsed.get(provider)
    if token is not None and name is not None and parsed.get(account) is not None:
        identity = workload_identity.WorkloadIdentity(name, parsed[account], token)
        problem = identity.audience_problem()
        if problem:
            return [], [problem]
    return [], []


def load_settings(
    environ: Mapping[str, str], command: str, environment: str | None = None
) -> Settings:
    """Parse every variable `command` (for `environment`, if it takes one) needs or reads.

    Raises VariableErrors naming every missing and every invalid variable at once, under
    the name the user sets, including a cluster that is not the environment's.
    """
    if command not in COMMANDS:
        raise AssertionError(f"unknown command {command!r}")
    relevant = [variable for variable in VARIABLES if variable.applies_to(command)]
    parsed: dict[str, Any] = {}
    missing: list[str] = []
    invalid: list[str] = []

    def attempt(name: str, parse: Callable[[Any], Any], value: Any) -> Any:
        try:
            return parse(value)
        except ValueError as error:
            invalid.append(f"{name} {error}")
            return None

    # Variables with a fallback come last, once the one they fall back on is parsed.
    for variable in sorted(relevant, key=lambda v: v.fallback is not None):
        raw = variable.lookup(environ)
        if raw is not None:
            parsed[variable.name] = attempt(variable.name, variable.parse, raw)
            continue
        needed = command in variable.needed_by
        source = parsed.get(variable.fallback) if variable.fallback else None
        if source is not None and variable.derive is not None:
            if needed:
                parsed[variable.name] = attempt(variable.fallback, variable.derive, source)
            else:  # optional here: a fallback that gives nothing is no error
                with contextlib.suppress(ValueError):
                    parsed[variable.name] = variable.derive(source)
        elif needed and not (variable.fallback and environ.get(variable.fallback, "").strip()):
            # (a fallback that is set but invalid is already reported as invalid)
            missing.append(variable.describe())

    if command in CLOUD:
        credential_missing, credential_invalid = _credential_problems(
            parsed,
            {
                v.name: v.lookup(environ)
                for v in (
                    GCP_WORKLOAD_IDENTITY_PROVIDER,
                    GCP_SERVICE_ACCOUNT,
                    GCP_CREDENTIAL_FILE,
                    GCP_ID_TOKEN,
                )
            },
        )
        missing.extend(credential_missing)
        invalid.extend(credential_invalid)
    invalid.extend(_backup_problems(parsed))
    cluster = parsed.get(K8S_CLUSTER_NAME.name)
    if environment and cluster:
        problem = cluster_name_problem(
            environment, cluster, parsed.get(K8S_CLUSTER_NAME_CONFIRMED.name)
        )
        if problem:
            invalid.append(problem)

    if missing or invalid:
        label = f"{command} {environment}" if environment else command
        raise VariableErrors(label, missing, invalid)
    return Settings({name: value for name, value in parsed.items() if value is not None})


# --- docs -----------------------------------------------------------------------------


def _commands(names: tuple[str, ...]) -> str:
    return ", ".join(f"`{name}`" for name in names) or "—"


def _mask(variable: Variable[Any]) -> str:
    if variable.masked:
        return "yes"
    if not variable.secret:
        return "no"
    return "cannot (JSON)" if variable.parse is gcp_key else "cannot (YAML)"


def _name_cell(variable: Variable[Any]) -> str:
    name = f"`{variable.name}`"
    if variable.alternatives:
        name += " (or " + ", ".join(f"`{a}`" for a in variable.alternatives) + ")"
    return name


def markdown_table() -> str:
    """The variable table of deploy/README.md (a test keeps the two equal)."""
    rows = [
        "| Variable | Type | Scope | Protect | Mask | Needed by | Read by | What it is |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for variable in DOCUMENTED:
        read_only = tuple(c for c in variable.read_by if c not in variable.needed_by)
        meaning = variable.meaning.replace("|", "\\|")
        rows.append(
            f"| {_name_cell(variable)} | {variable.kind.value} | {variable.scope.value} "
            f"| {'yes' if variable.protected else 'no'} | {_mask(variable)} "
            f"| {_commands(variable.needed_by)} | {_commands(read_only)} | {meaning} |"
        )
    return "\n".join(rows) + "\n"


def settings_table() -> str:
    """How to add each variable in GitLab, for the runbooks (a test keeps them equal)."""
    rows = [
        "| Variable | Type | Environment scope | Protect | Mask |",
        "| --- | --- | --- | --- | --- |",
    ]
    for variable in DOCUMENTED:
        scope = {
            Scope.ENVIRONMENT: "`dev` and `prod`, a value each",
            Scope.PROD: "`prod`",
            Scope.REVIEW: "`review/*`",
        }.get(variable.scope, "`*`")
        rows.append(
            f"| {_name_cell(variable)} | {variable.kind.value} | {scope} "
            f"| {'yes' if variable.protected else 'no'} | {_mask(variable)} |"
        )
    return "\n".join(rows) + "\n"
