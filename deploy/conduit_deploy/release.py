"""From settings and build info to the rendered files of one environment.

The templates and their values belong to conduit_deploy.render (the manifests'
owner); this module only decides what goes in and guards where it may go.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import Settings
from .errors import ConfigError
from .runner import log
from .versioning import ENVIRONMENTS, BuildInfo

RenderFunction = Callable[[Any, Path], Any]


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


def render_values(settings: Settings, info: BuildInfo, environment: str):
    from .render import RenderValues  # the manifests' owner defines the contract

    return RenderValues(
        environment=environment,
        image=info.image(settings.require("image_repository")),
        version=info.version,
        cluster_name=settings.require("cluster_name"),
        kops_state_store=settings.require("kops_state_store"),
        gcp_project=settings.require("gcp_project"),
        db_user=settings.require("db_user"),
        db_password=settings.require("db_password"),
        conduit_secret=settings.require("conduit_secret"),
    )


def render_environment(
    settings: Settings,
    info: BuildInfo,
    environment: str,
    out_dir: Path,
    render: RenderFunction | None = None,
):
    """Render into out_dir (created private: the secrets manifest is written there)."""
    from . import render as render_module

    render = render or render_module.render
    values = render_values(settings, info, environment)
    out_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(out_dir, 0o700)
    log(f"==> render: {environment} files for {values.image} into {out_dir}")
    try:
        return render(values, out_dir)
    except render_module.RenderError as error:
        raise ConfigError(f"render {environment}: {error}") from None
