"""From settings and build info to the rendered files of one environment.

The templates and their values belong to conduit_deploy.render (the manifests'
owner); this module only decides what goes in and guards where it may go.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import config
from .config import Settings
from .console import log
from .errors import ConfigError
from .files import private_folder
from .render import Rendered, RenderValues
from .runner import Runner
from .versioning import ENVIRONMENTS, IMAGE_DIGEST, PROD, BuildInfo

RenderFunction = Callable[[RenderValues, Path, Runner], Rendered]


def check_environment(environment: str) -> str:
    if environment not in ENVIRONMENTS:
        raise ConfigError(
            f"unknown environment {environment!r} (expected one of: {', '.join(ENVIRONMENTS)})"
        )
    return environment


def check_target(info: BuildInfo, environment: str) -> None:
    """In CI the pipeline decides where a build may go: a branch build never reaches prod.

    Outside CI (an operator at a terminal) any known environment is allowed.
    """
    if info.in_ci and info.environment != environment:
        allowed = "no environment" if info.environment == "none" else info.environment
        raise ConfigError(
            f"this pipeline's build {info.version} may deploy to {allowed}, not {environment} "
            "(prod takes tags vX.Y.Z, dev the default branch)"
        )


def check_pinned(info: BuildInfo, repository: str, environment: str) -> None:
    """Prod runs only an image pinned by digest: a tag can be pushed again, by anyone
    with the registry's password, and the nodes would pull the new image on their next
    pod start. Dev may run a tag (a deploy from a workstation), and says so."""
    if info.digest:
        return
    tagged = info.tagged_image(repository)
    if environment == PROD:
        raise ConfigError(
            f"prod deploys only an image pinned by digest, and {IMAGE_DIGEST} is not set: "
            "deploy:prod takes it from the pack job's dotenv report (needs: [pack]); at a "
            f"terminal, export {IMAGE_DIGEST}=sha256:<digest> of the pushed {tagged}"
        )
    log(f"    {IMAGE_DIGEST} is not set: {environment} runs the tag {tagged}, not a digest")


def default_out_dir(environment: str) -> Path:
    return Path("build", environment)


def render_values(settings: Settings, info: BuildInfo, environment: str) -> RenderValues:
    return RenderValues(
        environment=environment,
        image=info.image(settings.require(config.CONDUIT_IMAGE_REPOSITORY)),
        version=info.version,
        cluster_name=settings.require(config.K8S_CLUSTER_NAME),
        kops_state_store=settings.require(config.KOPS_STATE_STORE),
        gcp_project=settings.require(config.GCP_PROJECT),
        db_user=settings.require(config.DB_USER),
        db_password=settings.require(config.DB_PASSWORD),
        conduit_secret=settings.require(config.CONDUIT_SECRET),
        backup_bucket=settings.require(config.BACKUP_BUCKET),
        backup_key=settings.require(config.BACKUP_GCP_CREDENTIAL_FILE).text,
        registry_user=settings.get(config.DOCKER_REGISTRY_USER),
        registry_password=settings.get(config.DOCKER_REGISTRY_PASSWORD),
        api_access_cidrs=settings.require(config.KOPS_API_ACCESS_CIDRS),
        # prod only: dev answers on the Gateway's bare address (k8s/README.md).
        public_host=settings.get(config.PROD_HOST) if environment == "prod" else None,
    )


def render_environment(
    settings: Settings,
    info: BuildInfo,
    environment: str,
    out_dir: Path,
    render: RenderFunction,
    runner: Runner,
) -> Rendered:
    """Render into out_dir (made private: the secrets manifest is written there)."""
    values = render_values(settings, info, environment)
    private_folder(out_dir)
    log(f"==> render: {environment} files for {values.image} into {out_dir}")
    return render(values, out_dir, runner)
