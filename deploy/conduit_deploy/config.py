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
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from . import canary, images
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
COMMANDS = (
    VERSION, PACK, PACK_NO_PUSH, RENDER, CLUSTER, DEPLOY, RESTORE, INSTALL_TOOLS, PREFLIGHT,
)  # fmt: skip
# render writes the manifests; cluster, deploy and restore render first.
RENDERING = (RENDER, CLUSTER, DEPLOY, RESTORE)
# cluster, deploy and restore talk to GCP (kops reads its state from GCS) and run
# install-tools; preflight checks what they will need there.
CLOUD = (CLUSTER, DEPLOY, RESTORE, PREFLIGHT)

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
# Cloud Storage bucket names without dots: 3-63 lower-case letters, digits, '-' and '_',
# starting and ending with a letter or digit.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$")


class Scope(enum.Enum):
    """The GitLab environment scope a variable should get (Settings > CI/CD > Variables)."""

    ENVIRONMENT = "dev, prod"  # one value per environment scope
    PROD = "prod"  # read for prod only
    ALL = "all (*)"


@dataclass(frozen=True)
class GcpKey:
    """A service-account key: its JSON text (secret) and the project it belongs to."""

    text: str
    project_id: str | None

    def __repr__(self) -> str:
        return f"GcpKey(project_id={self.project_id!r})"


# --- parsers: each returns the value or raises ValueError with what is wrong ----------
# Messages follow the variable's name ("DB_PASSWORD must be ...") and never quote a secret.


def text(value: str) -> str:
    return value


def dns_name(value: str) -> str:
    if not _DNS_NAME.match(value):
        raise ValueError(f"must be a lower-case DNS name, got {value!r}")
    return value


def gcs_url(value: str) -> str:
    if not value.startswith("gs://") or len(value) <= len("gs://"):
        raise ValueError(f"must be a Google Cloud Storage URL (gs://bucket), got {value!r}")
    return value


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
            'is not valid base64 (store the output of `printf %s "$PASSWORD" | base64 -w0`)'
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
    return GcpKey(content, str(parsed.get("project_id") or "").strip() or None)


def bucket_name(value: str) -> str:
    if value.startswith("gs://"):
        raise ValueError(f"must be the bucket's name without gs://, got {value!r}")
    if not _BUCKET.match(value) or "goog" in value:
        raise ValueError(f"is not a Cloud Storage bucket name, got {value!r}")
    return value


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
    secret: bool = False  # masked in GitLab; never printed, surrounding spaces kept
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
        others = [*self.alternatives, *([self.fallback] if self.fallback else [])]
        if not others:
            return self.name
        return f"{self.name} (or {' or '.join(others)})"

    def applies_to(self, command: str) -> bool:
        return command in self.needed_by or command in self.read_by


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
GCP_CREDENTIAL_FILE = Variable(
    "GCP_CREDENTIAL_FILE",
    "service-account key, as a **File** variable or as the JSON itself; "
    "its `project_id` is the GCP project",
    gcp_key,
    needed_by=CLOUD,
    read_by=(RENDER,),
    secret=True,
)
GCP_PROJECT = Variable(
    "GCP_PROJECT",
    "the GCP project id; unset: the `project_id` of `GCP_CREDENTIAL_FILE`",
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
    needed_by=(PACK, DEPLOY, RESTORE, PREFLIGHT),
    read_by=(VERSION, PACK_NO_PUSH, RENDER, CLUSTER),
)
DOCKER_REGISTRY_PASSWORD = Variable(
    "DOCKER_REGISTRY_PASSWORD",
    'registry password or token, **base64-encoded** (`printf %s "$TOKEN" | base64 -w0`)',
    base64_password,
    needed_by=(PACK, DEPLOY, RESTORE, PREFLIGHT),
    read_by=(PACK_NO_PUSH, RENDER, CLUSTER),
    secret=True,
)
CONDUIT_IMAGE_REPOSITORY = Variable(
    "CONDUIT_IMAGE_REPOSITORY",
    "image repository; unset: `docker.io/$DOCKER_REGISTRY_USER/conduit`, or the local "
    f"name `{LOCAL_REPOSITORY}` when no registry is needed (`version`, `pack --no-push`)",
    images.check_repository,
    needed_by=(PACK, *RENDERING, PREFLIGHT),
    read_by=(VERSION, PACK_NO_PUSH),
    fallback=DOCKER_REGISTRY_USER.name,
    derive=_docker_hub_repository,
)
BASE_IMAGE = Variable(
    "BASE_IMAGE",
    "optional: the Dockerfile's `BASE_IMAGE` build argument",
    images.check_image,
    read_by=(PACK, PACK_NO_PUSH),
)
BACKUP_BUCKET = Variable(
    "BACKUP_BUCKET",
    "Cloud Storage bucket (name only) for the database's WAL archive and base backups; "
    "one per environment",
    bucket_name,
    needed_by=RENDERING,
    scope=Scope.ENVIRONMENT,
)
BACKUP_GCP_CREDENTIAL_FILE = Variable(
    "BACKUP_GCP_CREDENTIAL_FILE",
    "key of the service account that may only write `BACKUP_BUCKET` "
    "(roles/storage.objectAdmin on that bucket), as a **File** variable or the JSON; "
    "never the CI's own key",
    gcp_key,
    needed_by=RENDERING,
    scope=Scope.ENVIRONMENT,
    secret=True,
)
KOPS_SHA256 = Variable(
    "KOPS_SHA256",
    "optional: the expected SHA-256 of the kops binary (overrides the recorded one)",
    sha256,
    read_by=(INSTALL_TOOLS,),
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
)

VARIABLES: tuple[Variable[Any], ...] = (
    DB_USER,
    DB_PASSWORD,
    CONDUIT_SECRET,
    K8S_CLUSTER_NAME,
    K8S_CLUSTER_NAME_CONFIRMED,
    KOPS_STATE_STORE,
    KOPS_FEATURE_FLAGS,
    GCP_CREDENTIAL_FILE,
    GCP_PROJECT,
    DOCKER_REGISTRY_USER,
    DOCKER_REGISTRY_PASSWORD,
    CONDUIT_IMAGE_REPOSITORY,
    BASE_IMAGE,
    BACKUP_BUCKET,
    BACKUP_GCP_CREDENTIAL_FILE,
    KOPS_SHA256,
    CANARY_STEPS,
    CANARY_STEP_SECONDS,
    CANARY_MAX_5XX_INCREASE,
    CANARY_MAX_P99_INCREASE_MS,
    CANARY_MIN_REQUESTS,
    CONDUIT_DEPLOY_DISABLED,
)


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


def markdown_table() -> str:
    """The variable table of deploy/README.md (a test keeps the two equal)."""
    rows = [
        "| Variable | Scope | Secret | Needed by | Read by | What it is |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for variable in VARIABLES:
        name = f"`{variable.name}`"
        if variable.alternatives:
            name += " (or " + ", ".join(f"`{a}`" for a in variable.alternatives) + ")"
        read_only = tuple(c for c in variable.read_by if c not in variable.needed_by)
        meaning = variable.meaning.replace("|", "\\|")
        rows.append(
            f"| {name} | {variable.scope.value} | {'masked' if variable.secret else 'no'} "
            f"| {_commands(variable.needed_by)} | {_commands(read_only)} | {meaning} |"
        )
    return "\n".join(rows) + "\n"
