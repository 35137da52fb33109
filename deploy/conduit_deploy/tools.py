"""Installs the pinned kops and Helm releases, checked against a SHA-256 before they are
executable, and downloads other pinned files (release manifests) the same way.

kops: the digest comes from --kops-sha256 / KOPS_SHA256, else from RECORDED_DIGESTS. Only
a release with neither falls back to the `.sha256` file published next to the binary,
which proves the download is intact but not who made it.

Helm (the deploy installs the monitoring stack's chart with it): only the recorded
digests of the pinned release; another version or machine is an error.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import tarfile
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
# Helm 4.2 is built against Kubernetes 1.36's client (go.mod: k8s.io/client-go v0.36.1);
# Helm supports the three minor versions before it too, so the clusters' 1.35.
HELM_VERSION = "4.2.4"
HELM_URL = "https://get.helm.sh/helm-v{version}-linux-{arch}.tar.gz"
# The archive's path of the binary.
HELM_MEMBER = "linux-{arch}/helm"
# From the release page, github.com/helm/helm/releases/tag/v4.2.4 (each archive's
# checksum, also published as <archive>.sha256sum).
HELM_DIGESTS = {
    ("4.2.4", "amd64"): "c306b46f719b0a4da32d0f78ee21bf90ce8d602f15b22ab753f0674d1670a7f3",
    ("4.2.4", "arm64"): "564de2191b881e9f71b5606b25345821ea1682f06ab90499d3ab22b530176da1",
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
    _install_executable(target, payload)
    log(f"    installed {target} (sha256 {actual[:12]}..., checked against {digest.source})")
    return target


def _install_executable(target: Path, payload: bytes) -> None:
    _write_atomically(target, payload, 0o755)  # a program on PATH: everyone may run it


def _write_atomically(target: Path, payload: bytes, mode: int) -> None:
    """Write beside the target and rename: a reader never sees a half-written file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def download_checked(url: str, sha256: str, target: Path, runner: Runner) -> Path:
    """Download url to target if its SHA-256 is the recorded one; nothing is written
    otherwise (a moved tag or a tampered mirror stops the deploy)."""

    def download() -> Path:
        payload = _fetch(url)
        actual = hashlib.sha256(payload).hexdigest()
        if actual != sha256:
            raise DeployError(
                f"{url} does not match its recorded SHA-256: sha256 {actual}, expected {sha256}"
            )
        _write_atomically(target, payload, 0o644)
        return target

    return runner.step(
        f"download {url}, check its SHA-256 is {sha256}, save as {target}",
        download,
        planned=target,
    )


def install_helm(
    dest: Path,
    runner: Runner,
    *,
    version: str = HELM_VERSION,
    url_template: str | None = None,
    arch: str | None = None,
) -> Path:
    arch = arch or machine_arch()
    if (version, arch) not in HELM_DIGESTS:
        raise ConfigError(
            f"no digest recorded for helm {version} ({arch}) in conduit_deploy.tools.HELM_DIGESTS"
        )
    url = (url_template or HELM_URL).format(version=version, arch=arch)
    target = dest / "helm"
    return runner.step(
        f"download {url}, check its SHA-256 against the digest recorded in "
        f"conduit_deploy.tools, install its {HELM_MEMBER.format(arch=arch)} as {target}",
        lambda: _download_helm(url, target, version, arch),
        planned=target,
    )


def _download_helm(url: str, target: Path, version: str, arch: str) -> Path:
    log(f"==> tools: helm {version} ({arch}) from {url}")
    expected = HELM_DIGESTS[(version, arch)]
    archive = _fetch(url)
    actual = hashlib.sha256(archive).hexdigest()
    if actual != expected:
        raise DeployError(
            f"helm {version} download does not match the digest recorded in "
            f"conduit_deploy.tools: sha256 {actual}, expected {expected}"
        )
    member = HELM_MEMBER.format(arch=arch)
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as bundle:
            found = bundle.extractfile(member)
            if found is None:
                raise KeyError(member)
            payload = found.read()
    except (KeyError, tarfile.TarError, OSError):
        raise DeployError(f"helm {version} archive from {url} has no file {member}") from None
    _install_executable(target, payload)
    log(f"    installed {target} (archive sha256 {actual[:12]}..., checked against the record)")
    return target
