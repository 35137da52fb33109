"""Pinned upstream test inputs: download once, check the SHA-256 every time.

`path(group, name)` returns a local file for an entry of tests/upstream.toml. The file
comes from the folder named by the group's environment variable when it is set, else from
the cache, filled from the pinned URL on first use. Either way its SHA-256 must match the
recorded one, so a moved tag or an edited local copy is caught.

The cache is per user, outside the clone (like pip's): CONDUIT_UPSTREAM_CACHE, else
$XDG_CACHE_HOME/conduit/upstream, else ~/.cache/conduit/upstream. Every clone on the
machine, fresh ones included, reads what one of them downloaded.

    python -m tests.upstream fetch [GROUP ...]   # prefetch, print the paths
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import tomllib
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = Path(__file__).with_name("upstream.toml")


def _cache_folder(environ: Mapping[str, str] = os.environ) -> Path:
    configured = environ.get("CONDUIT_UPSTREAM_CACHE")
    if configured:
        return Path(configured)
    base = environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "conduit" / "upstream"


CACHE = _cache_folder()
DOWNLOAD_TIMEOUT_SECONDS = 60


class UpstreamError(Exception):
    """An input that cannot be had or does not match its pin (one line, for a person)."""


@dataclass(frozen=True)
class Pin:
    group: str
    name: str
    url: str
    sha256: str
    env: str


def load_pins(manifest: Path = MANIFEST) -> dict[str, dict[str, Pin]]:
    with manifest.open("rb") as handle:
        groups = tomllib.load(handle)
    return {
        group: {
            name: Pin(group, name, spec["base_url"] + name, digest, spec["env"])
            for name, digest in spec["files"].items()
        }
        for group, spec in groups.items()
    }


def sha256_of(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def _check(pin: Pin, file: Path, origin: str) -> Path:
    actual = sha256_of(file)
    if actual != pin.sha256:
        raise UpstreamError(
            f"{pin.group}/{pin.name} from {origin} has SHA-256 {actual}, "
            f"expected {pin.sha256} (tests/upstream.toml)"
        )
    return file


def download(pin: Pin, target: Path, timeout: float = DOWNLOAD_TIMEOUT_SECONDS) -> Path:
    """Fetch pin.url into target atomically; nothing is left behind on failure."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(pin.url, timeout=timeout) as response:  # noqa: S310 - https URLs from the manifest
                    for block in iter(lambda: response.read(1 << 16), b""):
                        out.write(block)
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                reason = getattr(exc, "reason", None) or exc
                raise UpstreamError(
                    f"cannot download {pin.group}/{pin.name} from {pin.url}: {reason} "
                    f"(set {pin.env} to a folder holding a copy)"
                ) from None
        _check(pin, Path(partial), pin.url)
        os.replace(partial, target)
        return target
    finally:
        Path(partial).unlink(missing_ok=True)


def resolve(pin: Pin, environ: Mapping[str, str] = os.environ, cache: Path = CACHE) -> Path:
    folder = environ.get(pin.env)
    if folder:
        local = Path(folder) / pin.name
        if not local.is_file():
            raise UpstreamError(f"{pin.env}={folder} has no {pin.name}")
        return _check(pin, local, str(local))
    cached = cache / pin.group / pin.name
    if cached.is_file():
        return _check(pin, cached, str(cached))
    return download(pin, cached)


def path(group: str, name: str) -> Path:
    """The local, checked copy of one pinned upstream file."""
    try:
        pin = load_pins()[group][name]
    except KeyError:
        raise UpstreamError(f"{group}/{name} is not pinned in tests/upstream.toml") from None
    return resolve(pin)


def require(group: str, name: str) -> Path:
    """For a test (or fixture) that needs the file: the file, or else that test alone
    is skipped with a one-line reason; with CI=true it fails instead (no traceback).

    Call it inside the test, never at import: at collection a missing input would stop
    the whole tier.
    """
    import pytest  # only tests call this; the CLI runs without pytest

    from tests.support import in_ci

    try:
        return path(group, name)
    except UpstreamError as exc:
        message = str(exc)
    # Outside `except`, so the failure is one line without the chained traceback.
    if in_ci():
        pytest.fail(f"{message} (CI=true: nothing is skipped)", pytrace=False)
    pytest.skip(message)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "fetch":
        print("usage: python -m tests.upstream fetch [GROUP ...]", file=sys.stderr)
        return 2
    pins = load_pins()
    groups = args[1:] or list(pins)
    try:
        for group in groups:
            if group not in pins:
                raise UpstreamError(f"unknown group {group!r} (known: {', '.join(pins)})")
            for pin in pins[group].values():
                print(resolve(pin))
    except UpstreamError as exc:
        print(f"upstream: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
