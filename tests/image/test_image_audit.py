"""The image audit CI runs before a push (`conduit-deploy pack --audit-image`, here as
`conduit-deploy audit-image`, the same code): pip-audit over the Python packages the
image really holds, judged by security/policy.toml, against a local advisory fixture
(tests/security/osv.py). The tier's image passes; the same image with an old PyJWT fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.security.osv import kev_catalogue, osv_record, serve_osv

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# PyJWT 2.3.0, pinned by its SHA-256.
OLD_PACKAGE = Path(__file__).with_name("vulnerable-requirements.txt")
# The fixture advisory, modelled on GHSA-ffqj-6fqr-9h24 (CVE-2022-29217: PyJWT before
# 2.4.0 lets an attacker choose the algorithm); its severity here is the test's choice.
# OSV names PyPI packages by their normalised name, and pip-audit 2.10 reads the fixed
# versions only of an entry named exactly so (_service/osv.py: pkg["name"] ==
# spec.canonical_name): "pyjwt", not "PyJWT".
ADVISORY = osv_record("GHSA-ffqj-6fqr-9h24", "pyjwt", "2.4.0", "CRITICAL", "CVE-2022-29217")
LOCAL = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


@pytest.fixture(scope="module")
def vulnerable_image(docker, image, tmp_path_factory):
    """The tier's image with PyJWT downgraded to 2.3.0 by pip (the image has none: it is
    bootstrapped for the one install, then removed again)."""
    context = tmp_path_factory.mktemp("vulnerable-image")
    downloaded = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--require-hashes", "-r", str(OLD_PACKAGE), "-d", str(context)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert downloaded.returncode == 0, downloaded.stderr
    (context / "Dockerfile").write_text(
        f"FROM {image.ref}\nUSER root\nCOPY *.whl /tmp/\n"
        "RUN python -m ensurepip --default-pip >/dev/null; "
        "python -m pip install --quiet --no-index --no-deps /tmp/*.whl; "
        "python -m pip uninstall --quiet --yes pip setuptools; rm /tmp/*.whl\n"
        "USER 10001:10001\n"
    )
    ref = f"{image.ref}-old-pyjwt"
    docker("build", "--network", "none", "--tag", ref, str(context), timeout=600)
    yield ref
    docker("rmi", "--no-prune", ref, check=False)


def audit(ref: str, tmp_path: Path, api: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "conduit-deploy"), "audit-image", ref, "--osv-api", api,
         "--kev", str(kev_catalogue(tmp_path / "kev.json")),
         "--audit-reports", str(tmp_path / "reports")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, **LOCAL, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
    )  # fmt: skip


def test_the_image_audit_passes_the_tiers_image(image, httpserver, tmp_path):
    result = audit(image.ref, tmp_path, serve_osv(httpserver, [ADVISORY]))
    assert result.returncode == 0, result.stdout + result.stderr
    listed = (tmp_path / "reports" / "image-requirements.txt").read_text()
    # What the image holds, as requirements.lock pins it; not the app itself.
    lock = (ROOT / "requirements.lock").read_text().splitlines()
    pinned = next(line.split()[0] for line in lock if line.startswith("pyjwt=="))
    assert f"PyJWT=={pinned.partition('==')[2]}" in listed.splitlines()
    assert "conduit==" not in listed


def test_the_image_audit_fails_an_image_with_a_vulnerable_package(
    vulnerable_image, httpserver, tmp_path
):
    result = audit(vulnerable_image, tmp_path, serve_osv(httpserver, [ADVISORY]))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "PyJWT==2.3.0" in (tmp_path / "reports" / "image-requirements.txt").read_text()
    # pip-audit names the advisory by its CVE alias; the gate lists both.
    assert "BLOCKS: CVE-2022-29217 pyjwt 2.3.0" in result.stdout
    assert "critical with a fix available (2.4.0)" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        f"conduit-deploy: error: {vulnerable_image} fails the security policy: a Python "
        "package it holds has a blocking advisory (listed above)"
    )
