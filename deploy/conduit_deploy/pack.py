"""The Pack stage: registry login, build with the previous images as cache, prove, push.

The image is proven before any tag is pushed: against the job's PostgreSQL service it
runs its migrations (`flask db upgrade`, as the deploy's migration container does),
starts its own CMD (uWSGI) and passes the deploy's smoke test (smoke.py). A failed
proof pushes nothing; the container is removed whatever happens.

BuildKit's inline cache describes only the stage an image was built from, so the final
image alone would leave the expensive build stage (the uWSGI compile) uncached. The
build stage is therefore built and pushed as its own image, `:buildcache`, and the next
pipeline pulls both.

With --audit-image, the Python distributions the proven image holds are audited by
pip-audit and judged by the security policy (security/gate.py) before any push: an
image that fails the policy is never pushed.

The registry's answer to the push, the image's manifest digest, goes into a dotenv
report (CONDUIT_IMAGE_DIGEST): the deploy jobs that need pack run the image by that
digest, so a tag pushed again later cannot change what they deploy.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from . import config, images
from .config import Settings
from .console import log
from .errors import ConfigError, DeployError, SmokeFailed
from .runner import Runner, tail
from .smoke import SmokeOptions
from .versioning import DIGEST, IMAGE_DIGEST, BuildInfo

DOCKERFILE = "docker/Dockerfile"
CONTEXT = "."
LATEST = "latest"
BUILD_STAGE = "build"  # the builder stage's name in docker/Dockerfile
BUILD_CACHE = "buildcache"
# The image's own default PORT (docker/Dockerfile). The proof's container shares the
# engine's network, so with GitLab's docker:dind service it answers on the service's
# address (`docker`), where the job's smoke test reaches it.
PROOF_PORT = 8000
# A cold start of uWSGI and its workers, and the first connections to PostgreSQL.
PROOF_READY_TIMEOUT = 120.0
PROOF_LOG_LINES = 40
# The line `docker push` ends with once the registry has the manifest: "<tag>: digest:
# <digest> size: <bytes>" (moby/moby: distribution/push_v2.go, pushV2Tag, and
# daemon/containerd/image_push.go, pushRef, for the containerd image store: both
# progress.Messagef(..., "%s: digest: %s size: %d", tag, digest, size)).
_PUSHED_DIGEST = re.compile(r"^(?P<tag>\S+): digest: (?P<digest>\S+) size: \d+$", re.MULTILINE)
# The dotenv report pack writes by default (the pack job's artifacts:reports:dotenv).
ENV_FILE = Path("pack.env")
IMAGE_BY_DIGEST = "CONDUIT_IMAGE_BY_DIGEST"
# Run by the image's own interpreter (it has no pip): `name==version` of every Python
# distribution in the virtualenv and in the base interpreter's site-packages (pip and
# setuptools of python:*-slim), from their metadata. Left out: the app itself (installed
# from the build's source folder: PEP 610 direct_url.json with dir_info; no index release
# of that name is ours) and Debian's dist-packages (OS packages, which the container scan
# judges with Debian's own advisories). A wheel installed from a file is audited.
IMAGE_INVENTORY = """
import importlib.metadata as metadata, json, re, site, sys
folders = [f for f in site.getsitepackages() + site.getsitepackages([sys.base_prefix])
           if f.endswith("site-packages")]
pins = {}
for dist in metadata.distributions(path=folders):
    name, origin = dist.metadata["Name"], json.loads(dist.read_text("direct_url.json") or "{}")
    if name and "dir_info" not in origin:
        pins.setdefault(re.sub(r"[-_.]+", "-", name).lower(), f"{name}=={dist.version}")
print("\\n".join(sorted(pins.values(), key=str.lower)))
"""


class ProofFailed(DeployError):
    """The built image did not pass its proof; nothing was pushed."""


class ImageAuditFailed(DeployError):
    """The built image holds a Python package the security policy fails; nothing was pushed."""


class PushUnverified(DeployError):
    """The push succeeded but did not say which digest the registry stored."""


def pushed_digest(output: str, tag: str) -> str | None:
    """The digest `docker push` reports for `tag`, None when its output names none."""
    for match in _PUSHED_DIGEST.finditer(output):
        if match["tag"] == tag and DIGEST.match(match["digest"]):
            return match["digest"]
    return None


@dataclass(frozen=True)
class Proof:
    """How the built image is started and checked before it may be pushed."""

    database_url: str
    # (name, address) pairs for --add-host: the engine may run where the job's service
    # names do not resolve (a dind service is not linked to the other services).
    hosts: tuple[tuple[str, str], ...]
    engine_host: str  # where the engine's host network is reached from this job
    container: str

    @property
    def base_url(self) -> str:
        return f"http://{self.engine_host}:{PROOF_PORT}"


@dataclass(frozen=True)
class PackPlan:
    """Everything `pack` will do, decided before any command runs."""

    repository: str
    version: str
    tags: tuple[str, ...]  # full references: repository:tag
    # The previous final image and build stage; None: a local name has no registry.
    cache_image: str | None
    build_cache: str | None
    build_args: tuple[tuple[str, str], ...]
    registry: str
    login_user: str | None  # None: no login (no credentials for a --no-push build)
    push: bool

    @property
    def image(self) -> str:
        return self.tags[0]


@dataclass(frozen=True)
class ImageAudit:
    """pip-audit over the built image's Python distributions, judged by the security gate."""

    gate: Path  # security/gate.py of the checkout (standard library only)
    kev: Path  # CISA's Known Exploited Vulnerabilities catalogue (JSON feed)
    reports: Path  # folder: the inventory, pip-audit's JSON, GitLab's reports
    osv_api: str  # OSV's API (https://api.osv.dev), or a mirror

    @property
    def inventory(self) -> Path:
        return self.reports / "image-requirements.txt"

    @property
    def audit_report(self) -> Path:
        return self.reports / "image-pip-audit.json"


def plan_pack(
    settings: Settings, info: BuildInfo, *, revision: str, push: bool, source_url: str | None
) -> PackPlan:
    repository = settings.image_repository
    local = repository == config.LOCAL_REPOSITORY
    tags = [info.tagged_image(repository)]
    if info.default_branch:
        tags.append(f"{repository}:{LATEST}")
    build_args = []
    base_image = settings.get(config.BASE_IMAGE)
    if base_image:
        build_args.append(("BASE_IMAGE", base_image))
    # Where the Dockerfile's default base comes from (a dependency proxy, or Docker Hub).
    docker_hub_prefix = settings.get(config.DOCKER_HUB_PREFIX)
    if docker_hub_prefix:
        build_args.append(("DOCKER_HUB_PREFIX", docker_hub_prefix))
    build_args += [("VERSION", info.version), ("REVISION", revision)]
    if source_url:
        build_args.append(("SOURCE", source_url))
    user = settings.get(config.DOCKER_REGISTRY_USER)
    # Pull credentials are optional for a --no-push build (a merge request from a fork
    # has no protected variables); a push always logs in.
    can_login = bool(user and settings.get(config.DOCKER_REGISTRY_PASSWORD))
    return PackPlan(
        repository=repository,
        version=info.version,
        tags=tuple(tags),
        cache_image=None if local else f"{repository}:{LATEST}",
        build_cache=None if local else f"{repository}:{BUILD_CACHE}",
        build_args=tuple(build_args),
        registry=images.registry_of(repository),
        login_user=user if (push or (can_login and not local)) else None,
        push=push,
    )


def login_command(plan: PackPlan) -> list[str]:
    # The password goes on stdin: never in argv (visible in `ps`) nor in the job log.
    return ["docker", "login", "--username", plan.login_user, "--password-stdin", plan.registry]


def build_command(
    plan: PackPlan, *, cache_from: tuple[str, ...], target: str | None = None
) -> list[str]:
    command = ["docker", "build", "--file", DOCKERFILE]
    if target:
        command += ["--target", target]
    for image in cache_from:
        command += ["--cache-from", image]
    # BuildKit only reuses layers from an image that carries inline cache metadata:
    # every image we push embeds it, so the next build can use it as --cache-from.
    command += ["--build-arg", "BUILDKIT_INLINE_CACHE=1"]
    for name, value in plan.build_args:
        command += ["--build-arg", f"{name}={value}"]
    for tag in (plan.build_cache,) if target else plan.tags:
        command += ["--tag", tag]
    command.append(CONTEXT)
    return command


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def engine_host(docker_host: str | None) -> str:
    """The host of DOCKER_HOST (tcp://docker:2376 -> docker); a local engine's is this
    machine."""
    if not docker_host or docker_host.startswith(("unix://", "npipe://", "fd://")):
        return "127.0.0.1"
    host = urlsplit(docker_host).hostname
    if not host:
        raise ConfigError(f"DOCKER_HOST={docker_host!r} names no host")
    return host


def plan_proof(
    database_url: str,
    docker_host: str | None,
    *,
    resolve: Callable[[str], str] = socket.gethostbyname,
) -> Proof:
    """Check the proof's database URL and resolve its host here, where it resolves."""
    parts = urlsplit(database_url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres") or not parts.hostname or not parts.path[1:]:
        raise ConfigError(
            "--proof-database-url must be "
            "postgresql://<user>:<password>@<host>:<port>/<database>, "
            f"got {urlsplit(database_url)._replace(netloc=parts.hostname or '').geturl()!r}"
        )
    hosts: tuple[tuple[str, str], ...] = ()
    if not _is_address(parts.hostname) and parts.hostname != "localhost":
        try:
            hosts = ((parts.hostname, resolve(parts.hostname)),)
        except OSError as error:
            raise ConfigError(
                f"the proof's database host {parts.hostname!r} does not resolve here "
                f"({error}): does the job have its postgres service?"
            ) from None
    return Proof(
        database_url=database_url,
        hosts=hosts,
        engine_host=engine_host(docker_host),
        container=f"conduit-proof-{secrets.token_hex(4)}",
    )


def proof_run_options(proof: Proof) -> list[str]:
    """`docker run` options shared by the migration and the server container."""
    options = ["--network", "host"]
    for name, address in proof.hosts:
        options += ["--add-host", f"{name}:{address}"]
    # A throwaway secret: production settings refuse to start without one.
    options += [
        "--env",
        f"DATABASE_URL={proof.database_url}",
        "--env",
        f"CONDUIT_SECRET={secrets.token_urlsafe(32)}",
        "--env",
        f"PORT={PROOF_PORT}",
    ]
    return options


def prove(
    plan: PackPlan, proof: Proof, runner: Runner, smoke: Callable[[str, SmokeOptions], object]
) -> None:
    """Migrate, serve and smoke test the built image; ProofFailed if it does not pass."""
    options = proof_run_options(proof)
    log(f"==> pack: proving {plan.image}: migrations, then its server, then the smoke test")
    # Captured, then shown: the last lines of a failure go into the job's error line.
    migrated = runner.run(
        ["docker", "run", "--rm", *options, plan.image, "flask", "db", "upgrade"],
        capture=True,
        check=False,
    )
    for line in (migrated.stdout + migrated.stderr).splitlines():
        log(f"    {line}")
    if not migrated.ok:
        raise ProofFailed(
            f"{plan.image} failed its proof, nothing pushed: its migrations exited "
            f"{migrated.returncode}: {tail(migrated.stderr or migrated.stdout)}"
        )
    try:
        started = runner.run(
            ["docker", "run", "--detach", "--name", proof.container, *options, plan.image],
            capture=True,
            check=False,
        )
        if not started.ok:
            raise ProofFailed(
                f"{plan.image} failed its proof, nothing pushed: its server container did "
                f"not start: {' '.join((started.stderr or started.stdout).split())[-300:]}"
            )

        def check() -> None:
            try:
                smoke(proof.base_url, SmokeOptions(ready_timeout=PROOF_READY_TIMEOUT))
            except SmokeFailed as error:
                runner.run(
                    ["docker", "logs", "--tail", str(PROOF_LOG_LINES), proof.container],
                    check=False,
                )
                raise ProofFailed(
                    f"{plan.image} failed its proof, nothing pushed: {error}"
                ) from None

        runner.step(f"conduit-deploy smoke {proof.base_url}", check, planned=None)
    finally:
        runner.run(["docker", "rm", "--force", "--volumes", proof.container], check=False)
    runner.outcome(f"==> pack: {plan.image} passed its proof")


def audit_image(image: str, audit: ImageAudit, runner: Runner) -> None:
    """List the image's Python distributions, audit them, apply the policy; ImageAuditFailed
    when it blocks. The gate writes GitLab's dependency_scanning and code-quality reports."""
    log(f"==> auditing the Python packages {image} holds (pip-audit, security policy)")
    listed = runner.run(
        ["docker", "run", "--rm", image, "python", "-c", IMAGE_INVENTORY], capture=True
    )

    def write() -> None:
        audit.reports.mkdir(parents=True, exist_ok=True)
        audit.inventory.write_text(listed.stdout, encoding="utf-8")

    runner.step(f"write {audit.inventory}", write, planned=None)
    if not runner.dry_run and not listed.stdout.strip():
        raise DeployError(f"{image} lists no Python distribution: nothing to audit")
    # pip-audit exits 1 when it finds a vulnerability: the gate decides what that means.
    audited = runner.run(
        ["pip-audit", "--requirement", audit.inventory, "--no-deps", "--disable-pip",
         "--vulnerability-service", "osv", "--osv-url", f"{audit.osv_api.rstrip('/')}/v1/query",
         "--format", "json", "--output", audit.audit_report, "--progress-spinner", "off"],
        check=False,
    )  # fmt: skip
    if audited.returncode not in (0, 1) or not (runner.dry_run or audit.audit_report.is_file()):
        raise DeployError(
            f"pip-audit could not audit {image}'s packages (exit {audited.returncode})"
        )
    judged = runner.run(
        ["python3", audit.gate, "--reports", audit.reports, "dependencies",
         "--pip-audit", audit.audit_report, "--file", audit.inventory.name,
         "--osv-api", audit.osv_api, "--kev", audit.kev],
        check=False,
    )  # fmt: skip
    if judged.returncode == 1:
        raise ImageAuditFailed(
            f"{image} fails the security policy: a Python package it holds has a blocking "
            "advisory (listed above)"
        )
    if judged.returncode != 0:
        raise DeployError(f"the security gate could not judge {image}'s packages")
    runner.outcome(f"==> {image}'s Python packages pass the security policy")


def run_pack(
    plan: PackPlan,
    settings: Settings,
    runner: Runner,
    proof: Proof,
    smoke: Callable[[str, SmokeOptions], object],
    env_file: Path = ENV_FILE,
    audit: ImageAudit | None = None,
    save_to: Path | None = None,
) -> None:
    target = "push to " + plan.registry if plan.push else "no push"
    log(f"==> pack: building {plan.image} (version {plan.version}, {target})")

    if plan.login_user:
        log(f"==> pack: logging in to {plan.registry} as {plan.login_user}")
        runner.run(
            login_command(plan),
            stdin=settings.require(config.DOCKER_REGISTRY_PASSWORD) + "\n",
            stdin_note="the password decoded from DOCKER_REGISTRY_PASSWORD",
        )

    pulled = []
    for image in (plan.build_cache, plan.cache_image):
        if image is None:
            continue
        log(f"==> pack: pulling {image} to reuse its layers")
        if runner.run(["docker", "pull", image], check=False).ok:
            pulled.append(image)
        else:
            # The first build of a repository has no cache images yet.
            log(f"    no previous {image}; those layers are built from scratch")

    final_cache: tuple[str, ...] = ()
    if plan.build_cache:
        log(f"==> pack: build stage, kept as {plan.build_cache} for the next pipeline's cache")
        stage_cache = tuple(image for image in pulled if image == plan.build_cache)
        runner.run(build_command(plan, cache_from=stage_cache, target=BUILD_STAGE))
        # The build stage now exists in this engine; the final stage's layers come from
        # the previous image.
        final_cache = (plan.build_cache, *(i for i in pulled if i == plan.cache_image))
    runner.run(build_command(plan, cache_from=final_cache))
    prove(plan, proof, runner, smoke)
    if audit:
        try:
            audit_image(plan.image, audit, runner)
        except ImageAuditFailed as error:
            raise ImageAuditFailed(f"{error}; nothing pushed") from None
    if save_to:
        # For a scanner in another job: a merge request's image is in no registry.
        log(f"==> pack: saving {plan.image} to {save_to} (docker save)")
        runner.run(["docker", "save", "--output", save_to, plan.image])

    if not plan.push:
        runner.outcome(f"==> pack: built and proved {', '.join(plan.tags)}; not pushed (--no-push)")
        return
    digest = push_release(plan, runner)
    if plan.build_cache:
        log(f"==> pack: pushing {plan.build_cache}")
        runner.run(["docker", "push", plan.build_cache])
    pushed = (*plan.tags, *((plan.build_cache,) if plan.build_cache else ()))
    runner.outcome(f"==> pack: pushed {', '.join(pushed)}")
    write_env_file(env_file, digest, plan, runner)


def push_release(plan: PackPlan, runner: Runner) -> str:
    """Push each tag of the image; the manifest digest the registry stored for them."""
    digests: dict[str, str] = {}
    for reference in plan.tags:
        log(f"==> pack: pushing {reference}")
        # Captured to read the digest, then shown.
        result = runner.run(["docker", "push", reference], capture=True)
        if runner.dry_run:
            continue
        for line in (result.stdout + result.stderr).splitlines():
            log(f"    {line}")
        tag = reference.rpartition(":")[2]
        digest = pushed_digest(result.stdout, tag)
        if digest is None:
            raise PushUnverified(
                f"`docker push {reference}` succeeded but reported no digest "
                f"(no line '{tag}: digest: sha256:… size: …'): nothing to deploy by digest"
            )
        digests[reference] = digest
    if len(set(digests.values())) > 1:
        # One local image under several tags is one manifest; anything else means a
        # tag moved between the pushes.
        shown = ", ".join(f"{ref} -> {digest}" for ref, digest in digests.items())
        raise PushUnverified(f"the tags of one image were stored as different manifests: {shown}")
    return next(iter(digests.values()), f"<the digest `docker push {plan.image}` reports>")


def write_env_file(path: Path, digest: str, plan: PackPlan, runner: Runner) -> None:
    """The dotenv report the jobs that need pack read the digest from; the whole reference
    too, for the jobs without the deploy tool (container_scanning's trivy)."""
    line = f"{IMAGE_DIGEST}={digest}\n{IMAGE_BY_DIGEST}={plan.repository}@{digest}\n"

    def write() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(line, encoding="utf-8")

    runner.step(f"write {path}: {line.splitlines()[0]}", write, planned=None)
    runner.outcome(f"==> pack: {plan.repository}@{digest} is {', '.join(plan.tags)}")
