"""The Pack stage: registry login, build with the previous image as cache, tag, push."""

from __future__ import annotations

from dataclasses import dataclass

from . import config, images
from .config import Settings
from .console import log
from .runner import Runner
from .versioning import BuildInfo

DOCKERFILE = "docker/Dockerfile"
CONTEXT = "."
LATEST = "latest"


@dataclass(frozen=True)
class PackPlan:
    """Everything `pack` will do, decided before any command runs."""

    repository: str
    version: str
    tags: tuple[str, ...]  # full references: repository:tag
    cache_image: str | None  # None: a local name has no previous image to pull
    build_args: tuple[tuple[str, str], ...]
    registry: str
    login_user: str | None  # None: no login (no credentials for a --no-push build)
    push: bool

    @property
    def image(self) -> str:
        return self.tags[0]


def registry_of(repository: str) -> str:
    """The registry a repository lives in: Docker Hub unless it names a host."""
    return images.registry_host(repository) or images.DEFAULT_REGISTRY


def plan_pack(
    settings: Settings, info: BuildInfo, *, revision: str, push: bool, source_url: str | None
) -> PackPlan:
    repository = settings.image_repository
    local = repository == config.LOCAL_REPOSITORY
    tags = [f"{repository}:{info.version}"]
    if info.default_branch:
        tags.append(f"{repository}:{LATEST}")
    build_args = []
    base_image = settings.get(config.BASE_IMAGE)
    if base_image:
        build_args.append(("BASE_IMAGE", base_image))
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
        build_args=tuple(build_args),
        registry=registry_of(repository),
        login_user=user if (push or (can_login and not local)) else None,
        push=push,
    )


def login_command(plan: PackPlan) -> list[str]:
    # The password goes on stdin: never in argv (visible in `ps`) nor in the job log.
    return ["docker", "login", "--username", plan.login_user, "--password-stdin", plan.registry]


def build_command(plan: PackPlan, *, use_cache: bool) -> list[str]:
    command = ["docker", "build", "--file", DOCKERFILE]
    if use_cache and plan.cache_image:
        command += ["--cache-from", plan.cache_image]
    # BuildKit only reuses layers from an image that carries inline cache metadata:
    # every image we push embeds it, so the next build can use it as --cache-from.
    command += ["--build-arg", "BUILDKIT_INLINE_CACHE=1"]
    for name, value in plan.build_args:
        command += ["--build-arg", f"{name}={value}"]
    for tag in plan.tags:
        command += ["--tag", tag]
    command.append(CONTEXT)
    return command


def run_pack(plan: PackPlan, settings: Settings, runner: Runner) -> None:
    target = "push to " + plan.registry if plan.push else "no push"
    log(f"==> pack: building {plan.image} (version {plan.version}, {target})")

    if plan.login_user:
        log(f"==> pack: logging in to {plan.registry} as {plan.login_user}")
        runner.run(
            login_command(plan),
            stdin=settings.require(config.DOCKER_REGISTRY_PASSWORD) + "\n",
            stdin_note="the password decoded from DOCKER_REGISTRY_PASSWORD",
        )

    cached = False
    if plan.cache_image:
        log(f"==> pack: pulling {plan.cache_image} to reuse its layers")
        cached = runner.run(["docker", "pull", plan.cache_image], check=False).ok
        if not cached:
            # The first build of a repository has no `latest` yet: build without cache.
            log(f"    no previous {plan.cache_image}; building without a cache")

    runner.run(build_command(plan, use_cache=cached))

    if not plan.push:
        runner.outcome(f"==> pack: built {', '.join(plan.tags)}; not pushed (--no-push)")
        return
    for tag in plan.tags:
        log(f"==> pack: pushing {tag}")
        runner.run(["docker", "push", tag])
    runner.outcome(f"==> pack: pushed {', '.join(plan.tags)}")
