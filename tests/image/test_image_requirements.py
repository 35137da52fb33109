"""docker/requirements.txt, what the image installs in pip's hash-checking mode, is the
runtime part of requirements.lock: the same versions, every package the app and the
server extra need at run time (no more), and each pinned with its SHA-256. `make lock`
writes both; this fails when they drift apart, without Docker.

What the runtime needs is read from the installed packages' metadata (Requires-Dist):
the test environment is installed from requirements.lock, at the versions compared."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
IMAGE_FILE = "docker/requirements.txt"
IMAGE_REQUIREMENTS = ROOT / IMAGE_FILE
LOCK = ROOT / "requirements.lock"
IMAGE_EXTRAS = ("server",)  # docker/Dockerfile installs the app with these extras
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def logical_lines(text: str) -> list[str]:
    """A requirements file's entries: continuations joined, comments and blanks dropped."""
    joined = re.sub(r"\\\n", " ", text)
    lines = (line.split(" #", 1)[0].strip() for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def pins(text: str) -> dict[str, str]:
    """name -> version of every `name==version` entry (requirements.lock's form)."""
    found = {}
    for line in logical_lines(text):
        spec = line.split()[0]
        if "==" in spec:
            name, version = spec.split("==", 1)
            found[canonicalize_name(name)] = version
    return found


def runtime_closure(pyproject: dict) -> dict[str, str]:
    """name -> installed version of every distribution the app and its image extras need."""
    project = pyproject["project"]
    roots = list(project["dependencies"])
    for extra in IMAGE_EXTRAS:
        roots += project["optional-dependencies"][extra]
    todo = [Requirement(spec) for spec in roots]
    needed: dict[str, str] = {}
    expanded: set[tuple[str, str]] = set()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        dist = metadata.distribution(name)
        needed[name] = dist.version
        for extra in ("", *sorted(requirement.extras)):
            if (name, extra) in expanded:
                continue
            expanded.add((name, extra))
            for spec in dist.requires or []:
                child = Requirement(spec)
                if child.marker is None or child.marker.evaluate({"extra": extra}):
                    todo.append(child)
    return needed


def problems(image_text: str, lock_text: str, pyproject: dict) -> list[str]:
    """Every way the image's requirements differ from what they must be; empty if none."""
    found: list[str] = []
    image: dict[str, str] = {}
    for line in logical_lines(image_text):
        spec, *options = line.split()
        name, sep, version = spec.partition("==")
        if spec.startswith("-") or not sep:
            found.append(f"{spec}: not an exact pin (`name==version --hash=...`)")
            continue
        name = canonicalize_name(name)
        if name in image:
            found.append(f"{name}: listed twice")
        image[name] = version
        if not options:
            found.append(f"{name}: no --hash")
        bad = [option for option in options if not HASH.fullmatch(option)]
        found += [f"{name}: {option} is not a SHA-256 hash" for option in bad]
    locked = pins(lock_text)
    for name, version in sorted(image.items()):
        if name not in locked:
            found.append(f"{name}: in {IMAGE_FILE}, not in requirements.lock")
        elif locked[name] != version:
            found.append(f"{name}: {IMAGE_FILE} has {version}, requirements.lock {locked[name]}")
    needed = runtime_closure(pyproject)
    for name, version in sorted(needed.items()):
        if name not in image:
            found.append(f"{name}: needed at run time, missing from {IMAGE_FILE}")
        if locked.get(name) != version:
            found.append(
                f"{name}: {version} is installed here, requirements.lock pins "
                f"{locked.get(name)} (make install)"
            )
    unneeded = sorted(image.keys() - needed.keys())
    found += [f"{name}: in {IMAGE_FILE}, not needed at run time" for name in unneeded]
    return found


def check(image_text: str) -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return problems(image_text, LOCK.read_text(), pyproject)


def real() -> str:
    return IMAGE_REQUIREMENTS.read_text()


def entry(text: str, name: str) -> str:
    """The whole entry of `name` (its pin, hashes and `via` comments)."""
    match = re.search(rf"^{re.escape(name)}==.*?(?=^\S|\Z)", text, re.M | re.S)
    assert match, f"no {name} in docker/requirements.txt"
    return match.group(0)


def test_the_image_requirements_are_the_locked_runtime_closure_with_hashes():
    assert check(real()) == []


def test_a_version_other_than_the_lock_is_reported():
    tampered = real().replace("\nflask==3.1.3 ", "\nflask==3.1.2 ")
    assert tampered != real()
    assert f"flask: {IMAGE_FILE} has 3.1.2, requirements.lock 3.1.3" in check(tampered)


def test_a_missing_runtime_dependency_is_reported():
    # markupsafe comes in through Jinja2 and Werkzeug, not pyproject.toml
    tampered = real().replace(entry(real(), "markupsafe"), "")
    assert check(tampered) == [f"markupsafe: needed at run time, missing from {IMAGE_FILE}"]


def test_a_package_the_runtime_does_not_need_is_reported():
    # pytest is in requirements.lock (the test extra), not in the image
    tampered = real() + f"pytest==9.2.0 \\\n    --hash=sha256:{'0' * 64}\n"
    assert check(tampered) == [f"pytest: in {IMAGE_FILE}, not needed at run time"]


def test_an_entry_without_a_hash_is_reported():
    pin = entry(real(), "bcrypt")
    tampered = real().replace(pin, "bcrypt==5.0.0\n")
    assert check(tampered) == ["bcrypt: no --hash"]
    md5 = "--hash=md5:0123456789abcdef0123456789abcdef"
    weak = real().replace(pin, f"bcrypt==5.0.0 {md5}\n")
    assert check(weak) == [f"bcrypt: {md5} is not a SHA-256 hash"]


def test_an_index_option_or_a_loose_pin_is_reported():
    assert check("--index-url https://example.invalid/simple\n" + real()) == [
        "--index-url: not an exact pin (`name==version --hash=...`)"
    ]
    tampered = real().replace("\norjson==3.13.0 ", "\norjson>=3.13.0 ")
    assert "orjson>=3.13.0: not an exact pin (`name==version --hash=...`)" in check(tampered)
