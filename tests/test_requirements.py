"""Every install of the project's dependencies is hash-checked. requirements.lock pins
the whole tree; `make lock` writes, from it, one requirements file per install (the
Makefile's `sources.<file>` table: docker/requirements.txt for the image,
requirements/*.txt for the virtualenvs and the CI jobs), each the lock's versions with
the SHA-256 of every file, installed with `--require-hashes`. This fails, without
network or Docker, when a file drifts from the lock or from its sources, has an entry
without a SHA-256, or when an install takes dependencies from anything else.

What a file must hold is read from the installed packages' metadata (Requires-Dist):
the test environment is installed from requirements/dev.txt, at the versions compared.
The drill's, PostgreSQL's and the sign job's packages are not installed here: for them
pip's hash-checking mode, which refuses any dependency a file does not list, checks at
install time that the file is complete (the drill tier, .ci/postgres-binaries.sh, the
sign job)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")
# Whose packages are not in the test environment (see above).
INSTALLED_ELSEWHERE = {
    "requirements/drill.txt",
    "requirements/postgres.txt",
    "requirements/sign.txt",
}
# Where pip installs run; each must install hash-checked files only.
INSTALLERS = (
    ".gitlab-ci.yml",
    "Makefile",
    "noxfile.py",
    ".ci/postgres-binaries.sh",
    "docker/Dockerfile",
)


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


def lock_table(makefile: str) -> dict[str, list[str]]:
    """The Makefile's `sources.<file> := <pip-compile arguments>`, its variables expanded."""
    text = re.sub(r"\\\n\s*", " ", makefile)
    variables = dict(re.findall(r"^([A-Z_]+) := (.*)$", text, re.M))
    table = {}
    for file, value in re.findall(r"^sources\.(\S+) := (.*)$", text, re.M):
        expanded = re.sub(r"\$\((\w+)\)", lambda m: variables[m.group(1)], value)
        table[file] = expanded.split()
    return table


TABLE = lock_table((ROOT / "Makefile").read_text())


def roots(arguments: list[str]) -> list[tuple[str, Requirement]]:
    """(source, requirement) of what pip-compile's arguments ask for directly."""
    extras = [arguments[i + 1] for i, word in enumerate(arguments) if word == "--extra"]
    sources = [
        word
        for i, word in enumerate(arguments)
        if word != "--extra" and (i == 0 or arguments[i - 1] != "--extra")
    ]
    found = []
    for source in sources:
        if source.endswith(".toml"):
            project = tomllib.loads((ROOT / source).read_text())["project"]
            optional = project.get("optional-dependencies", {})
            specs = project["dependencies"] + [s for e in extras for s in optional.get(e, [])]
        else:
            specs = logical_lines((ROOT / source).read_text())
        found += [(source, Requirement(spec)) for spec in specs]
    return found


def closure(requirements: list[Requirement]) -> dict[str, str | None]:
    """name -> installed version (None: not installed) of every distribution the
    requirements pull in."""
    todo = list(requirements)
    needed: dict[str, str | None] = {}
    expanded: set[tuple[str, str]] = set()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            needed[name] = None
            continue
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


def problems(file: str, text: str, lock_text: str) -> list[str]:
    """Every way `file` (contents `text`) differs from what it must be; empty if none."""
    found: list[str] = []
    listed: dict[str, str] = {}
    for line in logical_lines(text):
        spec, *options = line.split()
        name, sep, version = spec.partition("==")
        if spec.startswith("-") or not sep:
            found.append(f"{file}: {spec}: not an exact pin (`name==version --hash=...`)")
            continue
        name = canonicalize_name(name)
        if name in listed:
            found.append(f"{file}: {name}: listed twice")
        listed[name] = version
        if not options:
            found.append(f"{file}: {name}: no --hash")
        bad = [option for option in options if not HASH.fullmatch(option)]
        found += [f"{file}: {name}: {option} is not a SHA-256 hash" for option in bad]
    locked = pins(lock_text)
    for name, version in sorted(listed.items()):
        if name not in locked:
            found.append(f"{file}: {name} is not in requirements.lock")
        elif locked[name] != version:
            found.append(f"{file}: {name} {version}, requirements.lock pins {locked[name]}")
    direct = roots(TABLE[file])
    for source, requirement in direct:
        name = canonicalize_name(requirement.name)
        if name not in listed:
            found.append(f"{file}: {name} ({source}) is missing")
        elif not requirement.specifier.contains(listed[name], prereleases=True):
            found.append(f"{file}: {name} {listed[name]} is not {requirement} ({source})")
    if file in INSTALLED_ELSEWHERE:
        return found
    needed = closure([requirement for _, requirement in direct])
    for name, version in sorted(needed.items()):
        if name not in listed:
            found.append(f"{file}: {name} is needed, missing")
        if version is None:
            found.append(f"{name}: not installed here (make install)")
        elif locked.get(name) != version:
            found.append(
                f"{name}: {version} is installed here, requirements.lock pins "
                f"{locked.get(name)} (make install)"
            )
    found += [f"{file}: {name} is not needed" for name in sorted(listed.keys() - needed.keys())]
    return found


def check(file: str, text: str | None = None) -> list[str]:
    text = (ROOT / file).read_text() if text is None else text
    return problems(file, text, LOCK.read_text())


def real(file: str) -> str:
    return (ROOT / file).read_text()


def entry(text: str, name: str) -> str:
    """The whole entry of `name` (its pin, hashes and `via` comments)."""
    match = re.search(rf"^{re.escape(name)}==.*?(?=^\S|\Z)", text, re.M | re.S)
    assert match, f"no {name} entry"
    return match.group(0)


@pytest.mark.parametrize("file", sorted(TABLE))
def test_each_file_is_its_sources_at_the_locked_versions_with_hashes(file):
    assert check(file) == []


def test_the_table_names_every_hashed_file_and_no_other():
    on_disk = {"docker/requirements.txt"} | {
        str(path.relative_to(ROOT)) for path in (ROOT / "requirements").glob("*.txt")
    }
    assert set(TABLE) == on_disk
    assert set(TABLE) >= INSTALLED_ELSEWHERE
    # the image and each virtualenv or job that builds a project get pip and setuptools
    assert "requirements/build.in" in TABLE["docker/requirements.txt"]
    assert "requirements/build.in" in TABLE["requirements/run.txt"]


def test_the_table_is_read_with_its_continuations_and_variables():
    makefile = "BUILD_IN := b.in\nsources.x.txt := --extra ci \\\n\tp.toml $(BUILD_IN)\n"
    assert lock_table(makefile) == {"x.txt": ["--extra", "ci", "p.toml", "b.in"]}


def test_a_version_other_than_the_lock_is_reported():
    file = "docker/requirements.txt"
    tampered = real(file).replace("\nflask==3.1.3 ", "\nflask==3.1.2 ")
    assert tampered != real(file)
    assert check(file, tampered) == [
        f"{file}: flask 3.1.2, requirements.lock pins 3.1.3",
        f"{file}: flask 3.1.2 is not Flask==3.1.3 (pyproject.toml)",
    ]


def test_a_missing_dependency_is_reported():
    # markupsafe comes in through Jinja2 and Werkzeug, not pyproject.toml
    file = "requirements/run.txt"
    tampered = real(file).replace(entry(real(file), "markupsafe"), "")
    assert check(file, tampered) == [f"{file}: markupsafe is needed, missing"]


def test_a_missing_source_requirement_is_reported_where_nothing_is_installed():
    # barman is not installed here: its absence is seen from requirements/drill.in
    file = "requirements/drill.txt"
    tampered = real(file).replace(entry(real(file), "barman"), "")
    assert check(file, tampered) == [f"{file}: barman (requirements/drill.in) is missing"]


def test_a_package_not_needed_or_not_locked_is_reported():
    file = "docker/requirements.txt"
    # pytest is in requirements.lock (the test extra), not in the image
    extra = real(file) + f"pytest==9.2.0 \\\n    --hash=sha256:{'0' * 64}\n"
    assert check(file, extra) == [f"{file}: pytest is not needed"]
    unknown = real("requirements/postgres.txt") + f"leftpad==1.0 --hash=sha256:{'0' * 64}\n"
    assert check("requirements/postgres.txt", unknown) == [
        "requirements/postgres.txt: leftpad is not in requirements.lock"
    ]


def test_an_entry_without_a_hash_is_reported():
    file = "requirements/dev.txt"
    pin = entry(real(file), "bcrypt")
    assert check(file, real(file).replace(pin, "bcrypt==5.0.0\n")) == [f"{file}: bcrypt: no --hash"]
    md5 = "--hash=md5:0123456789abcdef0123456789abcdef"
    weak = real(file).replace(pin, f"bcrypt==5.0.0 {md5}\n")
    assert check(file, weak) == [f"{file}: bcrypt: {md5} is not a SHA-256 hash"]


def test_an_index_option_an_editable_or_a_loose_pin_is_reported():
    file = "requirements/lint.txt"
    assert check(file, "--index-url https://example.invalid/simple\n" + real(file)) == [
        f"{file}: --index-url: not an exact pin (`name==version --hash=...`)"
    ]
    assert check(file, "-e ./deploy\n" + real(file)) == [
        f"{file}: -e: not an exact pin (`name==version --hash=...`)"
    ]
    tampered = real(file).replace("\nruff==0.17.5 ", "\nruff>=0.17.5 ")
    assert f"{file}: ruff>=0.17.5: not an exact pin (`name==version --hash=...`)" in check(
        file, tampered
    )


def unchecked_installs(path: str, text: str) -> list[str]:
    """`path`'s pip installs that are not hash-checked: each must be --require-hashes
    (pip then refuses anything without a listed hash), or a local project alone
    (--no-deps --no-build-isolation: nothing fetched)."""
    found = []
    joined = re.sub(r"\\\n\s*", " ", text)
    for number, line in enumerate(joined.splitlines(), 1):
        install = re.search(r"\bpip\b.*\binstall\b", line)
        if not install or line.lstrip().startswith("#") or line.startswith("PIP :="):
            continue
        for command in re.split(r";|&&", line):
            if not re.search(r"\bpip\b.*\binstall\b", command):
                continue
            hashed = "--require-hashes" in command
            local = "--no-deps" in command and "--no-build-isolation" in command
            if not (hashed or local) or re.search(r"(^|\s)(-c|--constraint)\b", command):
                found.append(f"{path}:{number}: {command.strip()}")
    return found


def test_every_install_of_dependencies_is_hash_checked():
    for path in INSTALLERS:
        assert unchecked_installs(path, real(path)) == [], path
    # the Makefile's installs go through its HASHED and LOCAL, which are these
    makefile = real("Makefile")
    assert "HASHED := $(PIP) --require-hashes --requirement\n" in makefile
    assert "LOCAL := $(PIP) --no-deps --no-build-isolation\n" in makefile
    # and every file they install is one of the table's
    for path in INSTALLERS:
        named = set(re.findall(r"requirements/\w+\.txt", real(path)))
        assert named <= set(TABLE), path


def test_an_unchecked_install_is_reported():
    # pip ignores hashes in a constraints file (pypa/pip#8792, #12956): not hash-checked
    old = "    - pip install --no-cache-dir --quiet -c requirements.lock ruff\n"
    assert unchecked_installs(".gitlab-ci.yml", "lint:\n  script:\n" + old) == [
        ".gitlab-ci.yml:3: - pip install --no-cache-dir --quiet -c requirements.lock ruff"
    ]
    unhashed = '        pip = [python, "-m", "pip", "install", "--quiet"]\n'
    assert unchecked_installs("noxfile.py", unhashed) == [
        'noxfile.py:1: pip = [python, "-m", "pip", "install", "--quiet"]'
    ]
    bare = "RUN pip install --quiet pip==25.3; \\\n    pip install --require-hashes -r r.txt\n"
    assert unchecked_installs("docker/Dockerfile", bare) == [
        "docker/Dockerfile:1: RUN pip install --quiet pip==25.3"
    ]
    # a project with build isolation fetches its build backend unchecked
    isolated = "    - pip install --no-deps ./deploy\n"
    assert unchecked_installs(".gitlab-ci.yml", isolated) == [
        ".gitlab-ci.yml:1: - pip install --no-deps ./deploy"
    ]
