"""Image references, by the grammar of github.com/distribution/reference (regexp.go)."""

from __future__ import annotations

import pytest
from conduit_deploy import images


@pytest.mark.parametrize(
    ("reference", "repository", "tag", "digest"),
    [
        ("conduit", "conduit", None, None),
        ("conduit:1.0", "conduit", "1.0", None),
        ("team/conduit:v1.2.3", "team/conduit", "v1.2.3", None),
        ("docker.io/team/conduit:latest", "docker.io/team/conduit", "latest", None),
        ("localhost:5000/conduit:x_y-z.1", "localhost:5000/conduit", "x_y-z.1", None),
        ("Registry.Example.com/a__b/c-d", "Registry.Example.com/a__b/c-d", None, None),
        (f"conduit@sha256:{'a' * 64}", "conduit", None, f"sha256:{'a' * 64}"),
        (f"r.io/c:1@sha256:{'0' * 64}", "r.io/c", "1", f"sha256:{'0' * 64}"),
    ],
)
def test_references_are_split(reference, repository, tag, digest):
    assert images.parse(reference) == images.ImageReference(repository, tag, digest)


@pytest.mark.parametrize(
    "reference",
    [
        "",
        "Conduit",  # path components are lower case
        "team//conduit",
        "team/conduit/",
        "-conduit",
        "conduit:",  # an empty tag
        "conduit:-x",  # a tag starts with a word character
        f"conduit:{'x' * 129}",  # at most 128 characters
        "conduit@sha256:abc",  # digests have at least 32 hex digits
        "conduit:1.0:2.0",
        "team/con duit",
        "Team/conduit",  # not a host (no '.' or ':', not localhost): a lower-case path
    ],
)
def test_malformed_references_are_refused(reference):
    with pytest.raises(ValueError, match="is not an image reference"):
        images.parse(reference)


def test_a_repository_has_no_tag_or_digest():
    assert images.check_repository("docker.io/team/conduit") == "docker.io/team/conduit"
    for text in ("team/conduit:1.0", f"team/conduit@sha256:{'a' * 64}", "Team/conduit"):
        with pytest.raises(ValueError, match="is not an image repository"):
            images.check_repository(text)


def test_an_image_has_a_tag_or_a_digest():
    assert images.check_image("team/conduit:1.0") == "team/conduit:1.0"
    with pytest.raises(ValueError, match="must be repository:tag"):
        images.check_image("team/conduit")


@pytest.mark.parametrize(
    ("repository", "host"),
    [
        ("docker.io/team/conduit", "docker.io"),
        ("team/conduit", None),  # a Docker Hub short name
        ("conduit", None),
        ("localhost/conduit", "localhost"),
        ("localhost:5000/conduit", "localhost:5000"),
    ],
)
def test_the_registry_host_is_the_first_component_when_it_looks_like_one(repository, host):
    assert images.registry_host(repository) == host


@pytest.mark.parametrize(
    ("repository", "host"),
    [
        ("docker.io/team/conduit", "docker.io"),
        ("team/conduit", "docker.io"),
        ("registry.gitlab.com/team/conduit", "registry.gitlab.com"),
        ("localhost:5000/conduit", "localhost:5000"),
        ("localhost/conduit", "localhost"),
    ],
)
def test_registry_of(repository, host):
    assert images.registry_of(repository) == host
