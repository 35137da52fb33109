"""The Pack stage: registry login, build with the previous images as cache, tag, push.

BuildKit's inline cache describes only the stage an image was built from, so the final
image alone would leave the expensive build stage (the uWSGI compile) uncached. The
build stage is therefore built and pushed as its own image, `:buildcache`, and the next
pipeline pulls both.
"""

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
BUILD_STAGE = "build"  # the builder stage's name in docker/Dockerfile
BUILD_CACHE = "buildcache"


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

    if not plan.push:
        runner.outcome(f"==> pack: built {', '.join(plan.tags)}; not pushed (--no-push)")
        return
    pushed = (*plan.tags, *((plan.build_cache,) if plan.build_cache else ()))
    for tag in pushed:
        log(f"==> pack: pushing {tag}")
        runner.run(["docker", "push", tag])
    runner.outcome(f"==> pack: pushed {', '.join(pushed)}")
