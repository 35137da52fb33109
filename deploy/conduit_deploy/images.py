"""Image references: the one grammar the tool checks repositories, tags and images with.

It follows the Docker distribution project's reference grammar
(github.com/distribution/reference, regexp.go): ``[host[:port]/]path[:tag][@digest]``,
path components in lower case. IPv6 registry hosts are not accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_REGISTRY = "docker.io"
# Docker Hub's names in references and credentials: docker.io and its legacy alias.
DOCKER_HUB_HOSTS = (DEFAULT_REGISTRY, "index.docker.io")

_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"

PATH_COMPONENT = re.compile(rf"^{_PATH_COMPONENT}$")
TAG = re.compile(rf"^{_TAG}$")
_REFERENCE = re.compile(
    rf"^(?P<repository>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)


@dataclass(frozen=True)
class ImageReference:
    repository: str
    tag: str | None
    digest: str | None


def parse(reference: str) -> ImageReference:
    """Split a reference; ValueError when it does not follow the grammar."""
    match = _REFERENCE.match(reference)
    # Docker reads a first component as a host only when it looks like one (normalize.go,
    # splitDockerDomain); otherwise it is a path component and must be lower case.
    first, _, rest = match["repository"].partition("/") if match else ("", "", "")
    if (
        not match
        or len(match["repository"]) > 255
        or (rest and registry_host(match["repository"]) is None and not PATH_COMPONENT.match(first))
    ):
        raise ValueError(f"is not an image reference ([host/]path[:tag][@digest]): {reference!r}")
    return ImageReference(match["repository"], match["tag"], match["digest"])


def check_repository(text: str) -> str:
    """A repository without tag or digest, e.g. docker.io/team/conduit."""
    try:
        reference = parse(text)
    except ValueError:
        reference = None
    if reference is None or reference.tag or reference.digest:
        raise ValueError(
            f"is not an image repository (lowercase, no tag, e.g. docker.io/team/conduit): {text!r}"
        )
    return text


def check_image(text: str) -> str:
    """A pullable image: a repository with a tag, a digest, or both."""
    try:
        reference = parse(text)
    except ValueError:
        reference = None
    if reference is None or not (reference.tag or reference.digest):
        raise ValueError(f"must be repository:tag, got {text!r}")
    return text


def check_prefix(text: str) -> str:
    """A registry host with an optional path, under which image names go: docker.io, or a
    dependency proxy's gitlab.example.com:443/group/dependency_proxy/containers."""
    try:
        reference = parse(f"{text}/image")
    except ValueError:
        reference = None
    if reference is None or reference.tag or registry_host(reference.repository) is None:
        raise ValueError(
            "is not a registry prefix (a host, then path components, no tag, e.g. "
            f"docker.io or gitlab.example.com:443/group/dependency_proxy/containers): {text!r}"
        )
    return text


def check_tag(text: str) -> str:
    if not TAG.match(text):
        raise ValueError(
            f"cannot be an image tag (letters, digits, '_', '.', '-'; at most 128 characters): "
            f"{text!r}"
        )
    return text


def registry_host(repository: str) -> str | None:
    """The registry host a repository names, None when it names none (a local name or
    a Docker Hub short name); distribution treats a first component with '.' or ':', or
    'localhost', as a host."""
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def registry_of(repository: str) -> str:
    """The registry a repository lives in: Docker Hub unless it names a host."""
    return registry_host(repository) or DEFAULT_REGISTRY
