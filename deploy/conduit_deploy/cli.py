"""conduit-deploy: the commands the GitLab jobs (and operators) run.

    conduit-deploy version [--tag-only]
    conduit-deploy pack [--no-push] [--dry-run]
    conduit-deploy render ENV [--out DIR]
    conduit-deploy preflight ENV
    conduit-deploy cluster ENV [--dry-run] [--validate-timeout S] [--no-rolling-update]
    conduit-deploy deploy ENV [--dry-run] [--rollout-timeout S] [--env-file PATH]
    conduit-deploy smoke BASE_URL
    conduit-deploy install-tools [--dest DIR] [--dry-run]

Errors a user can fix print one line and exit 1 (usage errors exit 2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from . import config, tools
from .cloud import cloud_session
from .cluster import ClusterOptions, run_cluster
from .deploy import Deployer, DeployOptions
from .errors import DeployError
from .gcp import Endpoints, GcpClient
from .pack import plan_pack, run_pack
from .preflight import Target, checks, registry_check, run_checks
from .release import check_environment, check_target, default_out_dir, render_environment
from .runner import Runner, log
from .smoke import SmokeOptions, run_smoke
from .versioning import ENVIRONMENTS, build_info, dotenv, revision
from .waiting import Clock

PROG = "conduit-deploy"


@dataclass
class Context:
    """What the commands use from the outside world; tests replace any of it."""

    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    runner_factory: Callable[[bool], Runner] = field(
        default=lambda dry_run: Runner(dry_run=dry_run)
    )
    render: Callable[[Any, Path], Any] | None = None  # None: conduit_deploy.render.render
    smoke: Callable[[str, SmokeOptions], Any] = run_smoke
    clock: Clock = field(default_factory=Clock)
    gcp_endpoints: Endpoints = field(default_factory=Endpoints)
    registry_api: str | None = None  # None: the image repository's registry


def cmd_version(args: argparse.Namespace, ctx: Context) -> int:
    settings = None
    if not args.tag_only:
        settings = config.load_settings(ctx.environ, "version", (config.IMAGE_REPOSITORY,))
    info = build_info(ctx.environ, ctx.runner_factory(False))
    if settings is None:
        print(info.version)
        return 0
    sys.stdout.write(dotenv(info, settings.require("image_repository")))
    return 0


def cmd_pack(args: argparse.Namespace, ctx: Context) -> int:
    needs = config.PACK_NO_PUSH_NEEDS if args.no_push else config.PACK_PUSH_NEEDS
    settings = config.load_settings(ctx.environ, "pack", needs)
    runner = ctx.runner_factory(args.dry_run)
    info = build_info(ctx.environ, runner)
    plan = plan_pack(
        settings,
        info,
        revision=revision(ctx.environ, runner),
        push=not args.no_push,
        source_url=ctx.environ.get("CI_PROJECT_URL") or None,
    )
    run_pack(plan, settings, runner)
    return 0


def _prepare(args: argparse.Namespace, ctx: Context, command: str, needs):
    """Checks shared by render, cluster and deploy, all before any command runs."""
    environment = check_environment(args.environment)
    settings = config.load_settings(ctx.environ, f"{command} {environment}", needs)
    runner = ctx.runner_factory(getattr(args, "dry_run", False))
    info = build_info(ctx.environ, runner)
    if command != "render":
        check_target(info, environment)
    out_dir = args.out or default_out_dir(environment)
    rendered = render_environment(settings, info, environment, out_dir, ctx.render)
    return environment, settings, runner, info, rendered


def cmd_render(args: argparse.Namespace, ctx: Context) -> int:
    environment, _, _, info, rendered = _prepare(args, ctx, "render", config.RENDER_NEEDS)
    log(f"==> render: {environment} for version {info.version}:")
    log(f"    kops:       {rendered.kops_file}")
    for stage, path in rendered.stages:
        log(f"    {stage + ':':<11} {path}")
    if rendered.monitoring_file:
        log(f"    monitoring: {rendered.monitoring_file}")
    return 0


def cmd_preflight(args: argparse.Namespace, ctx: Context) -> int:
    environment = check_environment(args.environment)
    settings = config.load_settings(ctx.environ, f"preflight {environment}", config.PREFLIGHT_NEEDS)
    key = json.loads(settings.require("gcp_credentials"))
    target = Target(
        environment=environment,
        project=settings.require("gcp_project"),
        state_store=settings.require("kops_state_store"),
        cluster_name=settings.require("cluster_name"),
        key_project=key.get("project_id"),
        repository=settings.require("image_repository"),
        registry_user=settings.require("registry_user"),
        registry_password=settings.require("registry_password"),
    )
    log(f"==> preflight: {environment}")
    gcp = GcpClient(key, endpoints=ctx.gcp_endpoints)
    run_checks(checks(target, gcp, registry_check(target, api_url=ctx.registry_api)))
    return 0


def cmd_cluster(args: argparse.Namespace, ctx: Context) -> int:
    environment, settings, runner, info, rendered = _prepare(
        args, ctx, "cluster", config.CLUSTER_NEEDS
    )
    log(f"==> cluster: {environment} for version {info.version}")
    options = ClusterOptions(
        validate_timeout=args.validate_timeout,
        validate_interval=args.validate_interval,
        rolling_update=args.rolling_update,
    )
    with cloud_session(settings, runner) as session:
        run_cluster(environment, rendered.kops_file, session, runner, options, ctx.clock)
    return 0


def cmd_deploy(args: argparse.Namespace, ctx: Context) -> int:
    environment, settings, runner, info, rendered = _prepare(
        args, ctx, "deploy", config.DEPLOY_NEEDS
    )
    options = DeployOptions(
        rollout_timeout=args.rollout_timeout,
        controller_timeout=args.rollout_timeout,
        address_timeout=args.address_timeout,
        env_file=args.env_file,
    )
    smoke_options = SmokeOptions(ready_timeout=args.smoke_ready_timeout)
    deployer = Deployer(
        environment,
        info.image(settings.require("image_repository")),
        rendered,
        runner,
        options,
        smoke=lambda url: ctx.smoke(url, smoke_options),
        clock=ctx.clock,
    )
    with cloud_session(settings, runner) as session:
        deployer.run(session)
    return 0


def cmd_smoke(args: argparse.Namespace, ctx: Context) -> int:
    options = SmokeOptions(
        request_timeout=args.timeout,
        connect_retries=args.retries,
        ready_timeout=args.ready_timeout,
    )
    ctx.smoke(args.base_url, options)
    return 0


def cmd_install_tools(args: argparse.Namespace, ctx: Context) -> int:
    runner = ctx.runner_factory(args.dry_run)
    tools.install_kops(
        args.dest,
        runner,
        version=args.kops_version,
        sha256=args.kops_sha256 or ctx.environ.get("KOPS_SHA256") or None,
    )
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage errors on one line, like every other error of the tool."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return value


def _retries(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a count: {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Build, render, provision and deploy Conduit.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    dry_run = _Parser(add_help=False)
    dry_run.add_argument(
        "--dry-run", action="store_true", help="print the commands instead of running them"
    )
    environment = _Parser(add_help=False)
    environment.add_argument("environment", metavar="ENV", help=" or ".join(ENVIRONMENTS))
    environment.add_argument(
        "--out", type=Path, help="folder for the rendered files (default: build/ENV)"
    )

    version = commands.add_parser(
        "version", help="print the version, target environment and image (dotenv)"
    )
    version.add_argument("--tag-only", action="store_true", help="print only the image tag")
    version.set_defaults(handler=cmd_version)

    pack = commands.add_parser(
        "pack", parents=[dry_run], help="log in, build with cache, tag and push the image"
    )
    pack.add_argument(
        "--no-push", action="store_true", help="build and tag only (merge requests, schedules)"
    )
    pack.set_defaults(handler=cmd_pack)

    render = commands.add_parser(
        "render", parents=[environment], help="write the kops and Kubernetes files of ENV"
    )
    render.set_defaults(handler=cmd_render)

    preflight = commands.add_parser(
        "preflight",
        help="check the GCP key, project, APIs, state bucket, IAM permissions, registry "
        "credentials and cluster name of ENV; creates nothing",
    )
    preflight.add_argument("environment", metavar="ENV", help=" or ".join(ENVIRONMENTS))
    preflight.set_defaults(handler=cmd_preflight)

    cluster = commands.add_parser(
        "cluster",
        parents=[environment, dry_run],
        help="create or update the kops cluster of ENV and wait until it validates",
    )
    cluster.add_argument(
        "--validate-timeout", type=_seconds, default=ClusterOptions.validate_timeout
    )
    cluster.add_argument(
        "--validate-interval", type=_seconds, default=ClusterOptions.validate_interval
    )
    cluster.add_argument(
        "--no-rolling-update",
        dest="rolling_update",
        action="store_false",
        help="do not replace nodes whose spec changed",
    )
    cluster.set_defaults(handler=cmd_cluster)

    deploy = commands.add_parser(
        "deploy",
        parents=[environment, dry_run],
        help="apply ENV in order, wait for rollouts, smoke test, roll back on failure",
    )
    deploy.add_argument("--rollout-timeout", type=_seconds, default=DeployOptions.rollout_timeout)
    deploy.add_argument("--address-timeout", type=_seconds, default=DeployOptions.address_timeout)
    deploy.add_argument("--smoke-ready-timeout", type=_seconds, default=SmokeOptions.ready_timeout)
    deploy.add_argument(
        "--env-file",
        type=Path,
        default=DeployOptions.env_file,
        help="dotenv file that receives DYNAMIC_ENVIRONMENT_URL (default: deploy.env)",
    )
    deploy.set_defaults(handler=cmd_deploy)

    smoke = commands.add_parser(
        "smoke", help="register, create, list, get and delete an article against BASE_URL"
    )
    smoke.add_argument("base_url", metavar="BASE_URL", help="e.g. http://1.2.3.4/flask")
    smoke.add_argument("--timeout", type=_seconds, default=SmokeOptions.request_timeout)
    smoke.add_argument("--retries", type=_retries, default=SmokeOptions.connect_retries)
    smoke.add_argument("--ready-timeout", type=_seconds, default=SmokeOptions.ready_timeout)
    smoke.set_defaults(handler=cmd_smoke)

    install = commands.add_parser(
        "install-tools", parents=[dry_run], help="install the pinned kops, checked by SHA-256"
    )
    install.add_argument("--dest", type=Path, default=Path("/usr/local/bin"))
    install.add_argument("--kops-version", default=tools.KOPS_VERSION)
    install.add_argument("--kops-sha256", help="expected SHA-256 (default: KOPS_SHA256)")
    install.set_defaults(handler=cmd_install_tools)
    return parser


def main(argv: Sequence[str] | None = None, ctx: Context | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.handler(args, ctx or Context())
        if getattr(args, "dry_run", False):
            log("==> dry run: the commands were printed on stdout; nothing was run")
        return code
    except DeployError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr, flush=True)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
