"""Installs the pinned kops release, checked against a SHA-256 before it is executable.

The digest comes from --kops-sha256 / KOPS_SHA256, else from RECORDED_DIGESTS. Only a
release with neither falls back to the `.sha256` file published next to the binary,
which proves the download is intact but not who made it.
"""

from __future__ import annotations

import hashlib
import os
import platform
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import config
from .console import log
from .errors import ConfigError, DeployError
from .runner import Runner

# kops X.Y manages Kubernetes X.Y and older: keep it in step with kubernetes_version in
# k8s/kops/values/*.yaml. 1.35.2 is the release whose source the project's kops rules and
# citations are read from (tests/k8s/kops_rules.py, deploy/google-cloud.md), so the tool
# runs what the tests check; kops' stable channel (channels/stable, kopsVersions, range
# ">=1.35.0-alpha.1") recommends 1.35.1 or later, which it is.
KOPS_VERSION = "1.35.2"
KOPS_URL = "https://github.com/kubernetes/kops/releases/download/v{version}/kops-linux-{arch}"
# From the Kubernetes project's artifact promotion manifest of the release, the record of
# what artifacts.k8s.io (and so the GitHub release) serves: kubernetes/k8s.io,
# artifacts/manifests/k8s-staging-kops/1.35.2.yaml, entries 1.35.2/linux/<arch>/kops.
RECORDED_DIGESTS = {
    ("1.35.2", "amd64"): "027a9f4e8cbbf2aa8ac4aeb19ea7d28069334ca10795c5e3fd3df2f309586704",
    ("1.35.2", "arm64"): "7fcab00bbcbe4a84280ce47661c74bf57730a8c9875cbe1ef09ac3afa07e748b",
}
_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_DOWNLOAD_TIMEOUT = 120


def machine_arch() -> str:
    machine = platform.machine().lower()
    if machine not in _ARCHES:
        raise ConfigError(f"no kops build for this machine ({machine})")
    return _ARCHES[machine]


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT) as response:  # noqa: S310
            return response.read()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DeployError(f"cannot download {url}: {reason}") from None


@dataclass(frozen=True)
class Digest:
    """The SHA-256 to check a download against, and where it came from."""

    value: str
    source: str


def digest_source(url: str, version: str, arch: str, pinned: str | None) -> str:
    """Where the digest to check against comes from (decided without any download)."""
    if pinned:
        return "the pinned digest"
    if (version, arch) in RECORDED_DIGESTS:
        return "the digest recorded in conduit_deploy.tools"
    return f"{url}.sha256 (integrity only)"


def expected_digest(url: str, version: str, arch: str, pinned: str | None) -> Digest:
    source = digest_source(url, version, arch, pinned)
    if pinned:
        digest = pinned
    elif (version, arch) in RECORDED_DIGESTS:
        digest = RECORDED_DIGESTS[(version, arch)]
    else:
        log(
            f"    no digest recorded for kops {version} ({arch}) and none given (KOPS_SHA256): "
            "falling back to the published .sha256 file, which checks integrity only"
        )
        text = _fetch(url + ".sha256").decode("ascii", "replace").split()
        digest = text[0].lower() if text else ""
    try:
        return Digest(config.sha256(digest), source)
    except ValueError:
        raise ConfigError(f"not a SHA-256 digest (from {source}): {digest[:80]!r}") from None


def install_kops(
    dest: Path,
    runner: Runner,
    *,
    version: str = KOPS_VERSION,
    sha256: str | None = None,
    url_template: str | None = None,
    arch: str | None = None,
) -> Path:
    arch = arch or machine_arch()
    url = (url_template or KOPS_URL).format(version=version, arch=arch)
    target = dest / "kops"
    return runner.step(
        f"download {url}, check its SHA-256 against "
        f"{digest_source(url, version, arch, sha256)}, install as {target}",
        lambda: _download(url, target, version, arch, sha256),
        planned=target,
    )


def _download(url: str, target: Path, version: str, arch: str, sha256: str | None) -> Path:
    log(f"==> tools: kops {version} ({arch}) from {url}")
    digest = expected_digest(url, version, arch, sha256)
    payload = _fetch(url)
    actual = hashlib.sha256(payload).hexdigest()
    if actual != digest.value:
        raise DeployError(
            f"kops {version} download does not match {digest.source}: sha256 {actual}, "
            f"expected {digest.value}"
        )
    dest = target.parent
    dest.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename: a reader never sees a half-written binary.
    fd, temporary = tempfile.mkstemp(dir=dest, prefix=".kops-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(temporary, 0o755)  # noqa: S103 - a program on PATH: everyone may run it
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    log(f"    installed {target} (sha256 {actual[:12]}..., checked against {digest.source})")
    return target
