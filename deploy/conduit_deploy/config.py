"""CI variables -> a typed Settings object.

Each command declares the variables it needs. load_settings() checks all of them
before anything runs and names every missing one in a single message, so a job never
stops half-way through for want of a variable.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError, MissingVariables

DEFAULT_REGISTRY = "docker.io"
IMAGE_NAME = "conduit"

# A repository reference without tag or digest: optional registry host[:port], then
# lowercase path components (the Docker distribution reference grammar, simplified).
_REPOSITORY = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::\d+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)


@dataclass(frozen=True)
class Variable:
    """A CI variable, with the other names that may stand in for it."""

    name: str
    alternatives: tuple[str, ...] = ()

    def lookup(self, environ: Mapping[str, str]) -> str | None:
        """The first non-empty value among the name and its alternatives."""
        for name in (self.name, *self.alternatives):
            value = environ.get(name, "")
            if value.strip():
                return value
        return None

    def describe(self) -> str:
        if not self.alternatives:
            return self.name
        return f"{self.name} (or {' or '.join(self.alternatives)})"


DB_USER = Variable("DB_USER")
DB_PASSWORD = Variable("DB_PASSWORD")
CONDUIT_SECRET = Variable("CONDUIT_SECRET")
# The seed pipeline spelled it K8S_CLUSTER_NAEM; projects that still set that keep working.
K8S_CLUSTER_NAME = Variable("K8S_CLUSTER_NAME", ("K8S_CLUSTER_NAEM",))
DOCKER_REGISTRY_USER = Variable("DOCKER_REGISTRY_USER")
DOCKER_REGISTRY_PASSWORD = Variable("DOCKER_REGISTRY_PASSWORD")
GCP_CREDENTIAL_FILE = Variable("GCP_CREDENTIAL_FILE")
KOPS_STATE_STORE = Variable("KOPS_STATE_STORE")
KOPS_FEATURE_FLAGS = Variable("KOPS_FEATURE_FLAGS")
BASE_IMAGE = Variable("BASE_IMAGE")
# The image repository defaults to docker.io/<DOCKER_REGISTRY_USER>/conduit.
IMAGE_REPOSITORY = Variable("CONDUIT_IMAGE_REPOSITORY", ("DOCKER_REGISTRY_USER",))
# The GCP project: explicit, or the project_id inside the service-account key.
GCP_PROJECT = Variable("GCP_PROJECT", ("GCP_CREDENTIAL_FILE",))

# What each command needs before it may start.
PACK_PUSH_NEEDS = (IMAGE_REPOSITORY, DOCKER_REGISTRY_USER, DOCKER_REGISTRY_PASSWORD)
PACK_NO_PUSH_NEEDS = (IMAGE_REPOSITORY,)
RENDER_NEEDS = (
    IMAGE_REPOSITORY,
    K8S_CLUSTER_NAME,
    KOPS_STATE_STORE,
    GCP_PROJECT,
    DB_USER,
    DB_PASSWORD,
    CONDUIT_SECRET,
)
# cluster and deploy render first, then talk to GCP (kops reads its state from GCS).
CLUSTER_NEEDS = (*RENDER_NEEDS, GCP_CREDENTIAL_FILE)
DEPLOY_NEEDS = CLUSTER_NEEDS
PREFLIGHT_NEEDS = (*CLUSTER_NEEDS, DOCKER_REGISTRY_USER, DOCKER_REGISTRY_PASSWORD)


@dataclass(frozen=True)
class Settings:
    """The parsed variables. Secrets are kept out of repr() so they never get logged."""

    image_repository: str | None = None
    registry_user: str | None = None
    registry_password: str | None = field(default=None, repr=False)
    cluster_name: str | None = None
    kops_state_store: str | None = None
    kops_feature_flags: str | None = None
    gcp_project: str | None = None
    gcp_credentials: str | None = field(default=None, repr=False)
    db_user: str | None = None
    db_password: str | None = field(default=None, repr=False)
    conduit_secret: str | None = field(default=None, repr=False)
    base_image: str | None = None

    def require(self, name: str) -> str:
        """A value the command declared as needed (load_settings checked it)."""
        value = getattr(self, name)
        if value is None:  # a programming error: the command forgot to declare it
            raise AssertionError(f"setting {name} was not declared as needed")
        return value


def decode_registry_password(value: str) -> str:
    """DOCKER_REGISTRY_PASSWORD is stored base64-encoded (as in the seed pipeline)."""
    try:
        raw = base64.b64decode("".join(value.split()), validate=True)
        password = raw.decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ConfigError(
            "DOCKER_REGISTRY_PASSWORD is not valid base64 "
            '(store the output of `printf %s "$PASSWORD" | base64 -w0`)'
        ) from None
    if not password.strip():
        raise ConfigError("DOCKER_REGISTRY_PASSWORD decodes to an empty password")
    return password


def read_gcp_credentials(value: str) -> tuple[str, dict]:
    """GCP_CREDENTIAL_FILE: a path (GitLab file variable) or the key's JSON itself.

    Returns the JSON text and its parsed form. Messages never quote the content.
    """
    text = value.strip()
    if not text.startswith(("{", "[")):
        path = Path(text)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(
                f"GCP_CREDENTIAL_FILE is neither JSON nor a readable file ({error.strerror}: "
                f"{path})"
            ) from None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"GCP_CREDENTIAL_FILE is not valid JSON (line {error.lineno}, column {error.colno})"
        ) from None
    if not isinstance(parsed, dict):
        raise ConfigError("GCP_CREDENTIAL_FILE must hold a JSON object (a service-account key)")
    return text, parsed


def image_repository(environ: Mapping[str, str]) -> str:
    """CONDUIT_IMAGE_REPOSITORY, else Docker Hub under the registry user."""
    explicit = environ.get("CONDUIT_IMAGE_REPOSITORY", "").strip()
    if explicit:
        repository = explicit
        source = "CONDUIT_IMAGE_REPOSITORY"
    else:
        user = environ.get("DOCKER_REGISTRY_USER", "").strip()
        repository = f"{DEFAULT_REGISTRY}/{user}/{IMAGE_NAME}"
        source = "DOCKER_REGISTRY_USER"
    if not _REPOSITORY.match(repository):
        raise ConfigError(
            f"{source} gives the image repository {repository!r}, which is not a valid "
            "repository (lowercase, no tag, e.g. docker.io/team/conduit)"
        )
    return repository


def _present(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "")
    return value.strip() if value.strip() else None


def load_settings(
    environ: Mapping[str, str],
    command: str,
    needs: Iterable[Variable],
) -> Settings:
    """Check and parse what `command` needs; other variables are read if present.

    Raises MissingVariables naming every missing variable at once, then ConfigError
    listing every malformed one.
    """
    needs = tuple(needs)
    missing = [variable.describe() for variable in needs if variable.lookup(environ) is None]
    if missing:
        raise MissingVariables(command, missing)

    problems: list[str] = []

    def attempt(parse, *args):
        try:
            return parse(*args)
        except ConfigError as error:
            problems.append(str(error))
            return None

    repository = None
    if IMAGE_REPOSITORY in needs or IMAGE_REPOSITORY.lookup(environ):
        repository = attempt(image_repository, environ)

    password = None
    if DOCKER_REGISTRY_PASSWORD.lookup(environ):
        password = attempt(decode_registry_password, environ["DOCKER_REGISTRY_PASSWORD"])

    credentials_text, credentials = None, None
    if GCP_CREDENTIAL_FILE.lookup(environ) and (
        GCP_CREDENTIAL_FILE in needs or GCP_PROJECT in needs
    ):
        parsed = attempt(read_gcp_credentials, environ["GCP_CREDENTIAL_FILE"])
        if parsed:
            credentials_text, credentials = parsed

    project = _present(environ, "GCP_PROJECT")
    if project is None and credentials is not None:
        project = str(credentials.get("project_id") or "").strip() or None
        if project is None and GCP_PROJECT in needs:
            problems.append(
                "GCP_CREDENTIAL_FILE has no project_id; set GCP_PROJECT to the project's id"
            )

    if problems:
        raise ConfigError("; ".join(problems))

    return Settings(
        image_repository=repository,
        registry_user=_present(environ, "DOCKER_REGISTRY_USER"),
        registry_password=password,
        cluster_name=(K8S_CLUSTER_NAME.lookup(environ) or "").strip() or None,
        kops_state_store=_present(environ, "KOPS_STATE_STORE"),
        kops_feature_flags=_present(environ, "KOPS_FEATURE_FLAGS"),
        gcp_project=project,
        gcp_credentials=credentials_text,
        db_user=_present(environ, "DB_USER"),
        # Secrets keep their exact value: surrounding spaces could be intended.
        db_password=environ.get("DB_PASSWORD") or None,
        conduit_secret=environ.get("CONDUIT_SECRET") or None,
        base_image=_present(environ, "BASE_IMAGE"),
    )
