"""conduit-deploy: the commands the GitLab jobs (and operators) run.

Errors a user can fix print one line and exit 1 (usage errors exit 2).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from . import canary, config, images, render, review, signing, tools
from .analysis import Thresholds
from .cloud import cloud_session, export_kubeconfig
from .cluster import ClusterOptions, run_cluster
from .config import Settings
from .console import log
from .deploy import Deployer, DeployOptions
from .errors import ConfigError, DeployError
from .pack import ENV_FILE, ImageAudit, audit_image, plan_pack, plan_proof, run_pack
from .preflight import PreflightFunction, run_preflight
from .release import (
    RenderFunction,
    check_environment,
    check_pinned,
    check_target,
    default_out_dir,
    render_environment,
    render_values,
)
from .render import Rendered
from .restore import RestoreOptions, Restorer, parse_target_time
from .runner import Runner
from .smoke import SmokeOptions, run_smoke, smoke_user
from .versioning import (
    ENVIRONMENTS,
    IMAGE_DIGEST,
    BuildInfo,
    build_info,
    dotenv,
    image_digest,
    revision,
)
from .waiting import Clock

PROG = "conduit-deploy"


@dataclass
class Context:
    """What the commands use from the outside world; tests replace any of it."""

    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    runner_factory: Callable[[bool, Clock], Runner] = field(
        default=lambda dry_run, clock: Runner(dry_run=dry_run, clock=clock)
    )
    render: RenderFunction = render.render
    smoke: Callable[[str, SmokeOptions], object] = run_smoke
    resolve: Callable[[str], str] = socket.gethostbyname  # a host name to its address
    clock: Clock = field(default_factory=Clock)
    preflight: PreflightFunction = run_preflight
    # Wall-clock time (the Clock is monotonic, for waits): restore's target and names.
    utc_now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # GitLab's REST API for the review sweep: (url, headers) -> (status, JSON object).
    http_get_json: Callable[[str, Mapping[str, str]], tuple[int, dict]] = review.http_get_json
    # The registry, Fulcio/Rekor and Sigstore's verification, for sign and deploy.
    sigstore: signing.Sigstore = field(default_factory=signing.Sigstore)

    def runner(self, args: argparse.Namespace) -> Runner:
        return self.runner_factory(getattr(args, "dry_run", False), self.clock)


@dataclass(frozen=True)
class Prepared:
    """What render, cluster and deploy have checked and rendered before they act."""

    environment: str
    settings: Settings
    runner: Runner
    info: BuildInfo
    rendered: Rendered


def cmd_version(args: argparse.Namespace, ctx: Context) -> int:
    runner = ctx.runner(args)
    if args.tag_only:
        print(build_info(ctx.environ, runner).version)
        return 0
    settings = config.load_settings(ctx.environ, config.VERSION)
    info = build_info(ctx.environ, runner)
    sys.stdout.write(dotenv(info, settings.image_repository))
    return 0


def cmd_pack(args: argparse.Namespace, ctx: Context) -> int:
    settings = config.load_settings(
        ctx.environ, config.PACK_NO_PUSH if args.no_push else config.PACK
    )
    # Checked before any command runs, like the variables.
    proof = plan_proof(args.proof_database_url, ctx.environ.get("DOCKER_HOST"), resolve=ctx.resolve)
    audit = image_audit(args) if args.audit_image else None
    runner = ctx.runner(args)
    info = build_info(ctx.environ, runner)
    if args.review:
        review.app_from_environ(ctx.environ)  # only a merge request of this project's
        info = review.review_build(info)
    plan = plan_pack(
        settings,
        info,
        revision=revision(ctx.environ, runner),
        push=not args.no_push,
        source_url=ctx.environ.get("CI_PROJECT_URL") or None,
    )
    run_pack(plan, settings, runner, proof, ctx.smoke, args.env_file, audit, args.save_image)
    return 0


def cmd_audit_image(args: argparse.Namespace, ctx: Context) -> int:
    audit = image_audit(args)
    audit_image(args.image, audit, ctx.runner(args))
    return 0


def audit_options(group) -> None:
    """The image audit's inputs (pack --audit-image, audit-image)."""
    group.add_argument(
        "--kev", type=Path, default=Path("kev.json"),
        help="CISA's Known Exploited Vulnerabilities catalogue (default: %(default)s)",
    )  # fmt: skip
    group.add_argument(
        "--osv-api", default="https://api.osv.dev", metavar="URL",
        help="OSV's API, or a mirror of it (default: %(default)s)",
    )  # fmt: skip
    group.add_argument(
        "--audit-reports", type=Path, default=Path("reports/image"), metavar="DIR",
        help="folder for the inventory and the reports (default: %(default)s)",
    )  # fmt: skip


def image_audit(args: argparse.Namespace) -> ImageAudit:
    """The image audit's inputs, checked before any command runs."""
    gate = render.repo_root() / "security" / "gate.py"
    if not gate.is_file():
        raise ConfigError(f"the image audit needs the security gate {gate} (set CONDUIT_REPO_ROOT)")
    if not args.kev.is_file():
        raise ConfigError(
            f"the image audit needs CISA's known-exploited catalogue: no file {args.kev} (--kev)"
        )
    return ImageAudit(gate=gate, kev=args.kev, reports=args.audit_reports, osv_api=args.osv_api)


def cmd_sign(args: argparse.Namespace, ctx: Context) -> int:
    settings = config.load_settings(ctx.environ, config.SIGN)
    digest = image_digest(ctx.environ)
    if digest is None:
        raise ConfigError(
            f"{IMAGE_DIGEST} is not set: sign signs the digest pack pushed (the pack job's "
            "dotenv report; at a terminal, export it)"
        )
    # A dry run prints the plan without the job's token.
    token = "" if args.dry_run else signing.id_token(ctx.environ)
    repository = settings.require(config.CONDUIT_IMAGE_REPOSITORY)
    user = settings.require(config.DOCKER_REGISTRY_USER)
    password = settings.require(config.DOCKER_REGISTRY_PASSWORD)
    plan = signing.SignPlan(repository, digest, args.sbom)
    credentials = signing.registry_config(images.registry_of(repository), user, password)
    signing.run_sign(
        plan,
        ctx.runner(args),
        lambda: ctx.sigstore.registry(repository, user, password),
        lambda: ctx.sigstore.signer(token),
        docker_config=(args.docker_config, credentials),
    )
    return 0


def _prepare(args: argparse.Namespace, ctx: Context, command: str) -> Prepared:
    """Checks shared by render, cluster and deploy, all before any command runs."""
    environment = check_environment(args.environment)
    runner = ctx.runner(args)
    info = build_info(ctx.environ, runner)
    if command != config.RENDER:
        check_target(info, environment)  # the pipeline's reason comes before the variables'
    settings = config.load_settings(ctx.environ, command, environment)
    out_dir = args.out or default_out_dir(environment)
    rendered = render_environment(settings, info, environment, out_dir, ctx.render, runner)
    return Prepared(environment, settings, runner, info, rendered)


def cmd_render(args: argparse.Namespace, ctx: Context) -> int:
    prepared = _prepare(args, ctx, config.RENDER)
    rendered = prepared.rendered
    log(f"==> render: {prepared.environment} for version {prepared.info.version}:")
    log(f"    kops:       {rendered.kops_file}")
    for stage, path in rendered.stages:
        log(f"    {stage + ':':<11} {path}")
    if rendered.monitoring_file:
        log(f"    monitoring: {rendered.monitoring_file}")
    return 0


def _preflight(prepared: Prepared, ctx: Context, *, registry: bool) -> None:
    """The preflight's read-only checks, as one step of the command (printed in a dry run)."""
    prepared.runner.step(
        f"conduit-deploy preflight {prepared.environment}",
        lambda: ctx.preflight(prepared.environment, prepared.settings, registry=registry),
        planned=None,
    )


def cmd_preflight(args: argparse.Namespace, ctx: Context) -> int:
    environment = check_environment(args.environment)
    # Without the environment, load_settings leaves the cluster-name rule to the
    # preflight's own check, so a wrong name is reported with every other failure.
    settings = config.load_settings(ctx.environ, config.PREFLIGHT)
    ctx.preflight(environment, settings, registry=True)
    return 0


def cmd_cluster(args: argparse.Namespace, ctx: Context) -> int:
    prepared = _prepare(args, ctx, config.CLUSTER)
    # The cluster stage pulls no image: its preflight leaves the registry out.
    _preflight(prepared, ctx, registry=False)
    log(f"==> cluster: {prepared.environment} for version {prepared.info.version}")
    options = ClusterOptions(
        validate_timeout=args.validate_timeout,
        validate_interval=args.validate_interval,
        rolling_update=args.rolling_update,
    )
    with cloud_session(prepared.settings, prepared.runner) as session:
        run_cluster(
            prepared.environment, prepared.rendered.kops_file, session, prepared.runner, options
        )
    return 0


def cmd_deploy(args: argparse.Namespace, ctx: Context) -> int:
    prepared = _prepare(args, ctx, config.DEPLOY)
    image_repository = prepared.settings.require(config.CONDUIT_IMAGE_REPOSITORY)
    check_pinned(prepared.info, image_repository, prepared.environment)
    _preflight(prepared, ctx, registry=True)
    _check_signature(prepared, ctx, image_repository)
    options = DeployOptions(
        rollout_timeout=args.rollout_timeout,
        controller_timeout=args.rollout_timeout,
        address_timeout=args.address_timeout,
        certificate_timeout=args.certificate_timeout,
        env_file=args.env_file,
        edge_manifest_sha256=prepared.settings.get(config.ENVOY_GATEWAY_SHA256),
    )
    smoke_options = SmokeOptions(
        ready_timeout=args.smoke_ready_timeout,
        # One smoke user per environment, registered once: users cannot be deleted.
        user=smoke_user(prepared.environment, prepared.settings.require(config.CONDUIT_SECRET)),
    )
    deployer = Deployer(
        prepared.environment,
        prepared.info.image(image_repository),
        prepared.rendered,
        prepared.runner,
        options,
        smoke=lambda url: ctx.smoke(url, smoke_options),
        canary=_canary_options(prepared, args.rollout_timeout),
    )
    with cloud_session(prepared.settings, prepared.runner) as session:
        deployer.run(session)
    return 0


def _check_signature(prepared: Prepared, ctx: Context, repository: str) -> None:
    settings = prepared.settings
    signing.check_signature(
        prepared.environment,
        prepared.info.image(repository),
        prepared.info.digest,
        identity=lambda: signing.signer_identity(
            prepared.environment,
            prepared.info.version,
            ctx.environ,
            settings.get(config.CONDUIT_SIGNER_PROJECT),
        ),
        registry=lambda: ctx.sigstore.registry(
            repository,
            settings.require(config.DOCKER_REGISTRY_USER),
            settings.require(config.DOCKER_REGISTRY_PASSWORD),
        ),
        verifier=ctx.sigstore.verifier,
        runner=prepared.runner,
    )


def _canary_options(prepared: Prepared, rollout_timeout: float) -> canary.CanaryOptions | None:
    """Prod releases as canaries (deploy/README.md, "Canary releases"); dev rolls out."""
    if prepared.environment != canary.CANARY_ENVIRONMENT:
        return None
    settings, defaults = prepared.settings, canary.CanaryOptions()
    thresholds = defaults.thresholds

    def get(variable: config.Variable, default):
        value = settings.get(variable)
        return default if value is None else value

    return canary.CanaryOptions(
        steps=get(config.CANARY_STEPS, defaults.steps),
        step_seconds=get(config.CANARY_STEP_SECONDS, defaults.step_seconds),
        thresholds=Thresholds(
            max_error_ratio_increase=get(
                config.CANARY_MAX_5XX_INCREASE, thresholds.max_error_ratio_increase
            ),
            max_p99_increase_seconds=get(
                config.CANARY_MAX_P99_INCREASE_MS, thresholds.max_p99_increase_seconds
            ),
            min_requests=get(config.CANARY_MIN_REQUESTS, thresholds.min_requests),
        ),
        rollout_timeout=rollout_timeout,
    )


def cmd_canary(args: argparse.Namespace, ctx: Context) -> int:
    """Tell the deploy job that runs ENV's canary to promote it now, or to abort it."""
    prepared = _prepare(args, ctx, config.DEPLOY)
    r = prepared.rendered
    with cloud_session(prepared.settings, prepared.runner) as session:
        export_kubeconfig(session, prepared.runner)
        canary.request_decision(
            prepared.runner, r.namespace, r.app_deployment, canary.Decision(args.decision)
        )
    return 0


def cmd_restore(args: argparse.Namespace, ctx: Context) -> int:
    now = ctx.utc_now()
    moment = None if args.window else parse_target_time(args.to, now)
    prepared = _prepare(args, ctx, config.RESTORE)
    restorer = Restorer(
        render_values(prepared.settings, prepared.info, prepared.environment),
        prepared.rendered,
        ctx.render,
        args.out or default_out_dir(prepared.environment),
        prepared.runner,
        RestoreOptions(database_timeout=args.database_timeout),
    )
    with cloud_session(prepared.settings, prepared.runner) as session:
        if moment is None:
            restorer.show_window(session)
        else:
            restorer.run(session, moment, now)
    return 0


def cmd_smoke(args: argparse.Namespace, ctx: Context) -> int:
    options = SmokeOptions(
        request_timeout=args.timeout,
        connect_retries=args.retries,
        ready_timeout=args.ready_timeout,
    )
    ctx.smoke(args.base_url, options)
    return 0


def cmd_review_deploy(args: argparse.Namespace, ctx: Context) -> int:
    app = review.app_from_environ(ctx.environ)
    runner = ctx.runner(args)
    info = review.review_build(build_info(ctx.environ, runner))
    settings = config.load_settings(ctx.environ, config.REVIEW_DEPLOY)
    options = review.ReviewOptions(
        rollout_timeout=args.rollout_timeout,
        database_timeout=args.rollout_timeout,
        env_file=args.env_file,
    )

    def smoke(url: str, conduit_secret: str) -> object:
        # The app's own smoke user, from its own JWT key.
        user = smoke_user("review", conduit_secret)
        return ctx.smoke(url, SmokeOptions(ready_timeout=args.smoke_ready_timeout, user=user))

    review.Review(settings, runner, ctx.utc_now(), options).deploy(
        app, info, args.out or Path("build", "review"), smoke
    )
    return 0


def cmd_review_stop(args: argparse.Namespace, ctx: Context) -> int:
    slug = args.slug or ctx.environ.get("CI_COMMIT_REF_SLUG", "")
    if not slug:
        raise ConfigError("review stop: which review app? --slug SLUG, or CI_COMMIT_REF_SLUG")
    app = review.ReviewApp(review.check_slug(slug))
    settings = config.load_settings(ctx.environ, config.REVIEW_STOP)
    review.Review(settings, ctx.runner(args), ctx.utc_now()).stop(app)
    return 0


def cmd_review_sweep(args: argparse.Namespace, ctx: Context) -> int:
    settings = config.load_settings(ctx.environ, config.REVIEW_SWEEP)
    state_of = review.gitlab_merge_request_state(ctx.environ, settings, ctx.http_get_json)
    deleted = review.Review(settings, ctx.runner(args), ctx.utc_now()).sweep(state_of)
    verb = "would delete" if args.dry_run else "deleted"
    log(f"==> review sweep: {verb} {len(deleted)}: {', '.join(deleted) or 'none'}")
    return 0


def cmd_review_kubeconfig(args: argparse.Namespace, ctx: Context) -> int:
    review.make_kubeconfig(ctx.runner(args), args.output, args.duration, ctx.utc_now())
    return 0


def cmd_install_tools(args: argparse.Namespace, ctx: Context) -> int:
    settings = config.load_settings(ctx.environ, config.INSTALL_TOOLS)
    runner = ctx.runner(args)
    tools.install_kops(
        args.dest,
        runner,
        version=args.kops_version,
        sha256=args.kops_sha256 or settings.get(config.KOPS_SHA256),
    )
    tools.install_helm(args.dest, runner)
    return 0


def cmd_variables(args: argparse.Namespace, ctx: Context) -> int:
    sys.stdout.write(config.settings_table() if args.settings else config.markdown_table())
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


def _sha256(text: str) -> str:
    try:
        return config.sha256(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _duration(text: str) -> int:
    try:
        return config.duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_seconds(parser: argparse.ArgumentParser, flag: str, default: float, what: str) -> None:
    parser.add_argument(
        flag,
        type=_seconds,
        default=default,
        metavar="SECONDS",
        help=f"{what} (default: %(default)g s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Build, render, provision and deploy Conduit (see deploy/README.md).",
        epilog="Times are in seconds. `conduit-deploy variables` lists the CI variables "
        "each command needs.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    dry_run = _Parser(add_help=False)
    dry_run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the steps as a script on stdout and run none of them",
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
        "pack",
        parents=[dry_run],
        help="log in, build with cache, tag, prove (migrations, server, smoke) and push the image",
    )
    pack.add_argument(
        "--no-push",
        action="store_true",
        help="build, tag and prove only, without registry variables (merge requests, schedules)",
    )
    pack.add_argument(
        "--proof-database-url",
        required=True,
        metavar="URL",
        help="an empty PostgreSQL database the built image proves itself against before it "
        "is pushed (postgresql://<user>:<password>@<host>:<port>/<database>; the pack "
        "jobs' service)",
    )
    pack.add_argument(
        "--review",
        action="store_true",
        help="tag the image review-<short sha> for this merge request's review app",
    )
    pack.add_argument(
        "--env-file",
        type=Path,
        default=ENV_FILE,
        help="dotenv file that receives the pushed image's CONDUIT_IMAGE_DIGEST "
        "(default: %(default)s)",
    )
    pack.add_argument(
        "--save-image", type=Path, metavar="TAR",
        help="once proven (and audited), save the image to this archive (docker save), "
        "for a scanner in another job",
    )  # fmt: skip
    audit_options(
        pack.add_argument_group(
            "image audit",
            "after the proof and before any push: pip-audit over the Python packages the "
            "image holds, judged by security/policy.toml (needs pip-audit on PATH)",
        )
    )
    pack.add_argument("--audit-image", action="store_true", help="audit the built image")
    pack.set_defaults(handler=cmd_pack)

    audit = commands.add_parser(
        "audit-image",
        parents=[dry_run],
        help="pip-audit over the Python packages an image holds, judged by "
        "security/policy.toml (what pack --audit-image does before a push)",
    )
    audit.add_argument("image", help="a local image: name:tag or name@digest")
    audit_options(audit)
    audit.set_defaults(handler=cmd_audit_image)
    sign = commands.add_parser(
        "sign",
        parents=[dry_run],
        help="describe the pushed image (CycloneDX SBOM, syft), sign it and attest the SBOM "
        "keylessly with the job's OIDC token ($SIGSTORE_ID_TOKEN), attached as OCI referrers",
    )
    sign.add_argument(
        "--sbom",
        type=Path,
        default=signing.SBOM_FILE,
        help="where the image's SBOM is written (default: %(default)s)",
    )
    sign.add_argument(
        "--docker-config",
        type=Path,
        default=Path("build/sign/docker"),
        help="folder for the registry credentials syft reads (default: %(default)s)",
    )
    sign.set_defaults(handler=cmd_sign)

    render_command = commands.add_parser(
        "render", parents=[environment], help="write the kops and Kubernetes files of ENV"
    )
    render_command.set_defaults(handler=cmd_render)

    preflight = commands.add_parser(
        "preflight",
        help="check ENV's cluster name, GCP key, project, APIs, state bucket, IAM "
        "permissions, backup key and bucket, and registry credentials; creates nothing",
    )
    preflight.add_argument("environment", metavar="ENV", help=" or ".join(ENVIRONMENTS))
    preflight.set_defaults(handler=cmd_preflight)

    cluster = commands.add_parser(
        "cluster",
        parents=[environment, dry_run],
        help="create, update or upgrade the kops cluster of ENV and wait until it validates",
    )
    _add_seconds(
        cluster,
        "--validate-timeout",
        ClusterOptions.validate_timeout,
        "how long to wait for validation",
    )
    _add_seconds(
        cluster, "--validate-interval", ClusterOptions.validate_interval, "time between validations"
    )
    cluster.add_argument(
        "--no-rolling-update",
        dest="rolling_update",
        action="store_false",
        help="on an update, leave nodes whose spec changed for later "
        "(an upgrade always rolls them: kops reconcile cluster)",
    )
    cluster.set_defaults(handler=cmd_cluster)

    deploy = commands.add_parser(
        "deploy",
        parents=[environment, dry_run],
        help="apply ENV in order, wait for rollouts, smoke test, roll back on failure",
    )
    _add_seconds(
        deploy, "--rollout-timeout", DeployOptions.rollout_timeout, "how long each rollout may take"
    )
    _add_seconds(
        deploy,
        "--address-timeout",
        DeployOptions.address_timeout,
        "how long the Gateway may take to get an address",
    )
    _add_seconds(
        deploy,
        "--certificate-timeout",
        DeployOptions.certificate_timeout,
        "how long the HTTPS certificate (environments with a host name) may take to be issued",
    )
    _add_seconds(
        deploy,
        "--smoke-ready-timeout",
        SmokeOptions.ready_timeout,
        "how long the service may take to answer /readyz through the new load balancer",
    )
    deploy.add_argument(
        "--env-file",
        type=Path,
        default=DeployOptions.env_file,
        help="dotenv file that receives DYNAMIC_ENVIRONMENT_URL (default: %(default)s)",
    )
    deploy.set_defaults(handler=cmd_deploy)

    canary_command = commands.add_parser(
        "canary",
        parents=[dry_run],
        help="promote (skip the remaining steps) or abort the canary release running in ENV",
    )
    canary_command.add_argument(
        "decision", choices=[decision.value for decision in canary.Decision]
    )
    canary_command.add_argument("environment", metavar="ENV", help=" or ".join(ENVIRONMENTS))
    canary_command.add_argument(
        "--out", type=Path, help="folder for the rendered files (default: build/ENV)"
    )
    canary_command.set_defaults(handler=cmd_canary)

    restore = commands.add_parser(
        "restore",
        parents=[environment, dry_run],
        help="a new database Cluster from ENV's backups at --to TIME, and the app moved to it",
    )
    target = restore.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--to",
        metavar="TIME",
        help="RFC 3339 time with offset to restore to, e.g. 2026-11-30T10:42:00Z",
    )
    target.add_argument(
        "--window",
        action="store_true",
        help="only print which times ENV's backups can restore to, and change nothing",
    )
    _add_seconds(
        restore,
        "--database-timeout",
        RestoreOptions.database_timeout,
        "how long the new Cluster may take to become Ready",
    )
    restore.set_defaults(handler=cmd_restore)

    smoke = commands.add_parser(
        "smoke", help="register, create, list, get and delete an article against BASE_URL"
    )
    smoke.add_argument("base_url", metavar="BASE_URL", help="e.g. http://1.2.3.4/flask")
    _add_seconds(
        smoke, "--timeout", SmokeOptions.request_timeout, "limit for each connect and read"
    )
    smoke.add_argument(
        "--retries",
        type=_retries,
        default=SmokeOptions.connect_retries,
        metavar="COUNT",
        help="retries of a connection that never reached the server (default: %(default)s)",
    )
    _add_seconds(
        smoke,
        "--ready-timeout",
        SmokeOptions.ready_timeout,
        "how long /readyz may take to answer 200",
    )
    smoke.set_defaults(handler=cmd_smoke)

    review_command = commands.add_parser(
        "review",
        help="review apps: one per merge request on the dev cluster (deploy/gitlab.md)",
    )
    review_commands = review_command.add_subparsers(
        dest="review_command", required=True, parser_class=_Parser
    )
    review_deploy = review_commands.add_parser(
        "deploy",
        parents=[dry_run],
        help="deploy this merge request's review app into its namespace and smoke test it",
    )
    review_deploy.add_argument(
        "--out", type=Path, help="folder for the rendered files (default: build/review)"
    )
    _add_seconds(
        review_deploy,
        "--rollout-timeout",
        review.ReviewOptions.rollout_timeout,
        "how long the database and the app may each take to be ready",
    )
    _add_seconds(
        review_deploy,
        "--smoke-ready-timeout",
        SmokeOptions.ready_timeout,
        "how long the app may take to answer /readyz through the dev Gateway",
    )
    review_deploy.add_argument(
        "--env-file",
        type=Path,
        default=review.ReviewOptions.env_file,
        help="dotenv file that receives DYNAMIC_ENVIRONMENT_URL (default: %(default)s)",
    )
    review_deploy.set_defaults(handler=cmd_review_deploy)
    review_stop = review_commands.add_parser(
        "stop",
        parents=[dry_run],
        help="delete a review app's namespace and wait until it is gone",
    )
    review_stop.add_argument(
        "--slug", help="the review app's branch slug (default: CI_COMMIT_REF_SLUG)"
    )
    review_stop.set_defaults(handler=cmd_review_stop)
    review_sweep = review_commands.add_parser(
        "sweep",
        parents=[dry_run],
        help="delete review apps whose merge request is closed or merged, or whose time is "
        "up (--dry-run lists them)",
    )
    review_sweep.set_defaults(handler=cmd_review_sweep)
    review_kubeconfig = review_commands.add_parser(
        "kubeconfig",
        parents=[dry_run],
        help="as a cluster admin, once: write the review ServiceAccount's kubeconfig (a "
        "bounded token) for REVIEW_KUBECONFIG",
    )
    review_kubeconfig.add_argument(
        "--output",
        type=Path,
        default=Path("review-kubeconfig"),
        help="file to write, mode 0600 (default: %(default)s)",
    )
    review_kubeconfig.add_argument(
        "--duration",
        type=_duration,
        default=review.DEFAULT_TOKEN_DURATION,
        help="the token's lifetime in GitLab's words, e.g. '30 days' (default: 30 days)",
    )
    review_kubeconfig.set_defaults(handler=cmd_review_kubeconfig)

    install = commands.add_parser(
        "install-tools",
        parents=[dry_run],
        help="install the pinned kops and Helm, checked by SHA-256",
    )
    install.add_argument(
        "--dest", type=Path, default=Path("/usr/local/bin"), help="folder (default: %(default)s)"
    )
    install.add_argument(
        "--kops-version", default=tools.KOPS_VERSION, help="(default: %(default)s)"
    )
    install.add_argument(
        "--kops-sha256", type=_sha256, help="expected SHA-256 (default: KOPS_SHA256, else recorded)"
    )
    install.set_defaults(handler=cmd_install_tools)

    variables = commands.add_parser(
        "variables", help="print the CI variables table (Markdown, as in deploy/README.md)"
    )
    variables.add_argument(
        "--settings",
        action="store_true",
        help="only how to add each one in GitLab: type, scope, protect, mask",
    )
    variables.set_defaults(handler=cmd_variables)
    return parser


def main(argv: Sequence[str] | None = None, ctx: Context | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.handler(args, ctx or Context())
        if getattr(args, "dry_run", False):
            log("==> dry run: the steps were printed on stdout; nothing was run")
        return code
    except DeployError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr, flush=True)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
