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
from .versioning import ENVIRONMENTS, BuildInfo

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
