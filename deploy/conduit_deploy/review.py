"""Review apps: one Conduit per merge request, in its own namespace on the dev cluster.

`review deploy` renders k8s/overlays/review into the namespace review-<slug>, labelled
with the merge request, its slug, when it was created and when it expires; applies it
in the deploy's order (the database, then the app, whose init container runs the
migrations, then its route on the dev Gateway under /review/<slug>/flask/); and smoke
tests it there. `review stop` deletes the namespace and waits until it is gone; `review
sweep` deletes those whose merge request is no longer open or whose time is up.

Every review command runs as the review ServiceAccount of k8s/review-access (the
REVIEW_KUBECONFIG), never as the dev cluster's admin: it checks who it is before it
changes anything. decisions: docs/decisions/0006-review-apps.md.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
import yaml

from . import config, render
from .config import Settings
from .console import log
from .deploy import cluster_ready_command, wait_for_gateway_address, write_env_file
from .errors import CommandFailed, ConfigError, DeployError, RolloutFailed, SmokeFailed
from .files import private_folder, write_private
from .kubectl import apply_command, delete_command, rollout_status_command
from .release import check_pinned
from .render import RenderValues
from .runner import Result, Runner, tail
from .versioning import BuildInfo

# Labels of a review namespace (what the sweep, the bound and the admission policy of
# k8s/review-access read). Label values allow no ':' so times are compact ISO 8601.
REVIEW_LABEL = "conduit/review"
MR_LABEL = "conduit/review-mr"
SLUG_LABEL = "conduit/review-slug"
CREATED_LABEL = "conduit/review-created-at"
EXPIRES_LABEL = "conduit/review-expires-at"
# The dev Gateway admits routes from namespaces with this label (k8s/overlays/dev/gateway.yaml).
GATEWAY_LABEL = "conduit/gateway"
GATEWAY_LABEL_VALUE = "dev"
TIME_FORMAT = "%Y%m%dT%H%M%SZ"

ENVIRONMENT = "review"
OVERLAY = Path("k8s", "overlays", ENVIRONMENT)
SLUG_PLACEHOLDER = "_slug_"
NAMESPACE_PREFIX = "review-"
NAMESPACE_MAX = 63  # a DNS label
# The dev Gateway the review routes attach to (k8s/overlays/review/httproute.yaml).
DEV_NAMESPACE = "conduit"
DEV_GATEWAY = "conduit"
# Who the review commands must run as (k8s/review-access/serviceaccount.yaml), and the
# ClusterRole each review namespace binds it to.
REVIEW_IDENTITY = "system:serviceaccount:conduit-review-access:conduit-review"
APP_CLUSTER_ROLE = "conduit-review-app"
# The app's database role of every review app (its password is derived per app).
DB_USER = "conduit"

DEFAULT_MAX = 5
DEFAULT_LIFETIME = 3 * 86400  # "3 days", GitLab's auto_stop_in default of the pipeline
MR_SOURCE = "merge_request_event"
# GitLab's merge request states (REST API, "Merge requests": state is opened, closed,
# locked or merged); only an open one keeps its review app.
OPEN_STATE = "opened"


@dataclass(frozen=True)
class ReviewOptions:
    rollout_timeout: float = 300
    database_timeout: float = 300  # one instance, initdb on an empty 1 GiB volume
    delete_timeout: float = 300
    address_timeout: float = 120  # the dev Gateway has its address already
    address_interval: float = 10
    env_file: Path = Path("deploy.env")


@dataclass(frozen=True)
class ReviewApp:
    """A merge request's review app: which one, and where it lives."""

    slug: str  # CI_COMMIT_REF_SLUG: lower-case, [a-z0-9-], at most 63 characters
    iid: str = ""  # the merge request's number; "" when only stopping

    @property
    def namespace(self) -> str:
        return (NAMESPACE_PREFIX + self.slug)[:NAMESPACE_MAX].rstrip("-")

    @property
    def path_prefix(self) -> str:
        return f"/review/{self.slug}/flask/"


@dataclass(frozen=True)
class RunningApp:
    """A review namespace as the cluster lists it."""

    namespace: str
    iid: str
    slug: str
    created: datetime | None
    expires: datetime | None

    def describe(self) -> str:
        since = self.created.strftime("%Y-%m-%d %H:%M UTC") if self.created else "unknown"
        return f"{self.namespace} (!{self.iid or '?'}, since {since})"


_SLUG = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def check_slug(slug: str) -> str:
    if not _SLUG.match(slug):
        raise ConfigError(
            f"review app slug {slug!r} is not a ref slug (lower-case letters, digits and '-', "
            "at most 63; GitLab's CI_COMMIT_REF_SLUG)"
        )
    return slug


def app_from_environ(environ: Mapping[str, str]) -> ReviewApp:
    """The merge request of this pipeline, refused unless it may get a review app: a
    merge request pipeline of a branch of this project, never a fork's, never the
    default branch (the pipeline's rules say the same; this holds outside GitLab too)."""
    source = environ.get("CI_PIPELINE_SOURCE", "")
    if source != MR_SOURCE:
        raise ConfigError(
            f"review apps are for merge request pipelines (CI_PIPELINE_SOURCE={MR_SOURCE}), "
            f"not {source or 'a run outside GitLab CI'}"
        )
    own, source_project = (
        environ.get("CI_PROJECT_ID", ""),
        environ.get("CI_MERGE_REQUEST_SOURCE_PROJECT_ID", ""),
    )
    if not own or source_project != own:
        raise ConfigError(
            "this merge request comes from a fork (CI_MERGE_REQUEST_SOURCE_PROJECT_ID "
            f"{source_project or 'unset'} is not CI_PROJECT_ID {own or 'unset'}): forks never "
            "get a review app"
        )
    branch = environ.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "")
    if branch and branch == environ.get("CI_DEFAULT_BRANCH"):
        raise ConfigError("the default branch deploys to dev, never to a review app")
    iid = environ.get("CI_MERGE_REQUEST_IID", "")
    if not iid.isdigit():
        raise ConfigError(f"CI_MERGE_REQUEST_IID must be the merge request's number, got {iid!r}")
    return ReviewApp(check_slug(environ.get("CI_COMMIT_REF_SLUG", "")), iid)


def image_version(info: BuildInfo) -> str:
    """The review tag of a build: review-<short sha>. Never `latest`, never a release
    tag (vX.Y.Z), and a registry clean-up rule can match the prefix."""
    return f"review-{info.version}"


def review_build(info: BuildInfo) -> BuildInfo:
    """The build as `pack --review` pushes it and `review deploy` runs it."""
    return replace(info, version=image_version(info), default_branch=False)


def derived_secret(key: str, app: ReviewApp, purpose: str) -> str:
    """A per-app secret from REVIEW_SECRET: the same on every deploy of the app (its
    database keeps its password), another for every app and purpose."""
    message = f"conduit review {purpose} {app.slug}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def parse_stamp(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


# --- kubectl ----------------------------------------------------------------------------


def whoami_command() -> list[str]:
    # SelfSubjectReview (authentication.k8s.io/v1, GA in Kubernetes 1.28): who the
    # credentials authenticate as, allowed for every authenticated user.
    return ["kubectl", "auth", "whoami", "--output=jsonpath={.status.userInfo.username}"]


def can_i_command(verb: str, resource: str, namespace: str) -> list[str]:
    return ["kubectl", "auth", "can-i", verb, resource, "--namespace", namespace]


def list_command() -> list[str]:
    return [
        "kubectl", "get", "namespaces", f"--selector={REVIEW_LABEL}=true", "--output=json",
    ]  # fmt: skip


def running_apps(result: Result) -> list[RunningApp]:
    """The review namespaces of a `kubectl get namespaces -o json` (a NamespaceList)."""
    if not result.ok or not result.stdout.strip():
        return []
    apps = []
    for item in json.loads(result.stdout).get("items") or []:
        metadata = item.get("metadata") or {}
        labels = metadata.get("labels") or {}
        if labels.get(REVIEW_LABEL) != "true":
            continue
        apps.append(
            RunningApp(
                namespace=metadata.get("name", ""),
                iid=labels.get(MR_LABEL, ""),
                slug=labels.get(SLUG_LABEL, ""),
                created=parse_stamp(labels.get(CREATED_LABEL, "")),
                expires=parse_stamp(labels.get(EXPIRES_LABEL, "")),
            )
        )
    oldest_first = datetime.max.replace(tzinfo=UTC)
    return sorted(apps, key=lambda app: (app.created or oldest_first, app.namespace))


# --- credentials ------------------------------------------------------------------------

PLAN_KUBECONFIG = '"$CONDUIT_REVIEW_DIR/kubeconfig"'


@contextlib.contextmanager
def review_session(settings: Settings, runner: Runner) -> Iterator[None]:
    """REVIEW_KUBECONFIG in a 0600 file of a 0700 folder, as KUBECONFIG; no cloud key, no
    kops: a review job never holds the dev cluster's admin credentials."""
    with tempfile.TemporaryDirectory(prefix="conduit-review-") as folder:
        path = Path(folder, "kubeconfig")
        if runner.dry_run:
            runner.script(
                "# REVIEW_KUBECONFIG (a file's path, or the YAML itself), mode 0600",
                'CONDUIT_REVIEW_DIR="$(mktemp -d)"',
                "trap 'rm -rf \"$CONDUIT_REVIEW_DIR\"' EXIT",
                '(umask 077; if [ -f "$REVIEW_KUBECONFIG" ]; then cat "$REVIEW_KUBECONFIG"; '
                'else printf \'%s\' "$REVIEW_KUBECONFIG"; fi > "$CONDUIT_REVIEW_DIR/kubeconfig")',
            )
        else:
            write_private(path, settings.require(config.REVIEW_KUBECONFIG))
        runner.export("KUBECONFIG", str(path), planned=PLAN_KUBECONFIG)
        yield


def check_identity(runner: Runner) -> None:
    """Refuse any credentials but the review ServiceAccount's, and one that could change
    dev: the preflight of every review command, before it changes anything."""
    runner.note(f"refuse to go on unless these run as {REVIEW_IDENTITY}, which cannot touch dev")
    who = runner.run(whoami_command(), capture=True, check=False)
    if runner.dry_run:
        return
    if not who.ok:
        raise ConfigError(
            f"REVIEW_KUBECONFIG: `kubectl auth whoami` failed: {tail(who.stderr, 1) or 'no output'}"
        )
    name = who.stdout.strip()
    if name != REVIEW_IDENTITY:
        raise ConfigError(
            f"REVIEW_KUBECONFIG authenticates as {name or 'nobody'!r}, not {REVIEW_IDENTITY}: "
            "review jobs never use the dev cluster's admin kubeconfig (deploy/gitlab.md, "
            '"Review apps", says how to make the review one)'
        )
    # The ServiceAccount of k8s/review-access cannot change dev: make sure of it.
    dev = runner.run(
        can_i_command("create", "deployments", DEV_NAMESPACE), capture=True, check=False
    )
    if dev.stdout.strip() != "no":
        raise ConfigError(
            f"{REVIEW_IDENTITY} may create deployments in {DEV_NAMESPACE} (dev): give it only "
            "the roles of k8s/review-access"
        )


# --- render -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewRendered:
    stages: list[tuple[str, Path]]
    app_deployment: str
    database_cluster: str


def render_review(
    app: ReviewApp,
    values: RenderValues,
    labels: Mapping[str, str],
    out_dir: Path,
    runner: Runner,
) -> ReviewRendered:
    """k8s/overlays/review with the release's image and Secrets (render.build_overlay),
    moved into the app's namespace, with its labels, its RoleBinding and its paths."""
    root = render.repo_root()
    k8s = root / "k8s"
    base = render.base_namespace(k8s)
    objects = render.build_overlay(root / OVERLAY, values, base, runner)
    objects = [_in_namespace(obj, app, base, labels) for obj in objects if _kept(obj)]
    objects.insert(1, role_binding(app))
    by_stage = render.split_stages(objects)
    private_folder(out_dir)
    stages = []
    for index, stage in enumerate(render.STAGES, start=1):
        path = out_dir / f"{index:02d}-{stage}.yaml"
        render.write_objects(path, by_stage[stage], secret=(stage == "secrets"))
        stages.append((stage, path))
    return ReviewRendered(
        stages=stages,
        app_deployment=render.single_name(objects, "Deployment", "api"),
        database_cluster=render.single_name(objects, "Cluster", "database"),
    )


def _kept(obj: dict) -> bool:
    # No backups, so no backup key: the Secret render generates for it stays out.
    name = obj.get("metadata", {}).get("name", "")
    return not (obj.get("kind") == "Secret" and name.startswith(render.BACKUP_SECRET + "-"))


def _in_namespace(obj: dict, app: ReviewApp, base: str, labels: Mapping[str, str]) -> dict:
    obj = json.loads(json.dumps(obj).replace(SLUG_PLACEHOLDER, app.slug))
    metadata = obj["metadata"]
    if obj.get("kind") == "Namespace":
        metadata["name"] = app.namespace
        metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
    elif metadata.get("namespace") == base:
        metadata["namespace"] = app.namespace
    return obj


def role_binding(app: ReviewApp) -> dict:
    """The review ServiceAccount's rights inside this namespace only."""
    account, namespace = REVIEW_IDENTITY.rsplit(":", 2)[-1], REVIEW_IDENTITY.split(":")[2]
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {
            "name": APP_CLUSTER_ROLE,
            "namespace": app.namespace,
            "labels": {**render.PART_OF, render.COMPONENT_LABEL: "namespace"},
        },
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": APP_CLUSTER_ROLE,
        },
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }


def namespace_labels(app: ReviewApp, created: datetime, expires: datetime) -> dict[str, str]:
    """Created when first deployed; expires a lifetime after the last deploy, as GitLab
    renews auto_stop_in on every deployment."""
    return {
        REVIEW_LABEL: "true",
        MR_LABEL: app.iid,
        SLUG_LABEL: app.slug,
        CREATED_LABEL: stamp(created),
        EXPIRES_LABEL: stamp(expires),
        GATEWAY_LABEL: GATEWAY_LABEL_VALUE,
    }


# --- the commands -------------------------------------------------------------------------


class Review:
    """The review commands, with what they use from outside."""

    def __init__(
        self,
        settings: Settings,
        runner: Runner,
        now: datetime,
        options: ReviewOptions | None = None,
    ):
        self.settings = settings
        self.runner = runner
        self.now = now
        self.options = options or ReviewOptions()

    def running(self, *, always: bool = False) -> list[RunningApp]:
        """The review namespaces; always: also in a dry run (a read-only query)."""
        return running_apps(
            self.runner.run(list_command(), capture=True, check=False, dry_run_safe=always)
        )

    def deploy(
        self,
        app: ReviewApp,
        info: BuildInfo,
        out_dir: Path,
        smoke: Callable[[str, str], object],
    ) -> str:
        settings, runner = self.settings, self.runner
        repository = settings.require(config.CONDUIT_IMAGE_REPOSITORY)
        # pack:review's dotenv report hands the review job the digest it pushed, as pack's
        # hands dev and prod theirs: the app runs what pack proved, not what the tag is now.
        check_pinned(info, repository, ENVIRONMENT)
        image = info.image(repository)
        log(f"==> review: {image} for !{app.iid} in namespace {app.namespace}")
        with review_session(settings, runner):
            check_identity(runner)
            created = self._admit(app)
            lifetime = settings.get(config.REVIEW_AUTO_STOP_IN) or DEFAULT_LIFETIME
            key = settings.require(config.REVIEW_SECRET)
            values = RenderValues(
                environment=ENVIRONMENT,
                image=image,
                version=info.version,
                cluster_name="-",  # the review overlay renders no kops cluster
                kops_state_store="-",
                gcp_project="-",
                db_user=DB_USER,
                db_password=derived_secret(key, app, "database password"),
                conduit_secret=derived_secret(key, app, "jwt key"),
                backup_bucket="-",
                backup_key="-",
                registry_user=settings.get(config.DOCKER_REGISTRY_USER),
                registry_password=settings.get(config.DOCKER_REGISTRY_PASSWORD),
            )
            rendered = render_review(
                app,
                values,
                namespace_labels(app, created, self.now + timedelta(seconds=lifetime)),
                out_dir,
                runner,
            )
            self._apply(app, rendered)
            url = self._url(app)
            write_env_file(runner, self.options.env_file, url)
            runner.step(
                f"conduit-deploy smoke {url.rstrip('/')}",
                lambda: self._smoke(url, smoke, values.conduit_secret),
                planned=None,
            )
        runner.outcome(f"==> review: !{app.iid} is live at {url}")
        return url

    def _admit(self, app: ReviewApp) -> datetime:
        """When the app was created (now for a new one); refuses a new app beyond
        REVIEW_APPS_MAX, naming the oldest, and a namespace of another merge request."""
        running = self.running()
        mine = next((r for r in running if r.namespace == app.namespace), None)
        if mine is not None:
            if mine.iid and mine.iid != app.iid:
                raise ConfigError(
                    f"namespace {app.namespace} belongs to merge request !{mine.iid}, not "
                    f"!{app.iid} (their branch names give the same slug): rename the branch"
                )
            return mine.created or self.now
        limit = self.settings.get(config.REVIEW_APPS_MAX) or DEFAULT_MAX
        if len(running) >= limit:
            oldest = ", ".join(r.describe() for r in running[:3])
            raise ConfigError(
                f"{len(running)} review apps run already, REVIEW_APPS_MAX is {limit}: stop one "
                f"(its environment's Stop button in GitLab), oldest first: {oldest}; or raise "
                "REVIEW_APPS_MAX"
            )
        return self.now

    def _apply(self, app: ReviewApp, rendered: ReviewRendered) -> None:
        runner, options = self.runner, self.options
        for stage, path in rendered.stages:
            if not path.read_text(encoding="utf-8").strip():
                continue
            log(f"==> review: {stage} ({path})")
            runner.run(apply_command(path, take_over=stage == "app"))
            if stage == "database":
                runner.run(
                    cluster_ready_command(
                        rendered.database_cluster, app.namespace, options.database_timeout
                    )
                )
            elif stage == "app":
                try:
                    runner.run(
                        rollout_status_command(
                            "deployment",
                            rendered.app_deployment,
                            app.namespace,
                            options.rollout_timeout,
                        )
                    )
                except CommandFailed as error:
                    raise RolloutFailed(
                        f"the review app did not start: {error} (`kubectl describe pods "
                        f"--namespace {app.namespace}` tells why; its migrations run in the "
                        "init container)"
                    ) from None

    def _url(self, app: ReviewApp) -> str:
        address = wait_for_gateway_address(
            self.runner,
            DEV_GATEWAY,
            DEV_NAMESPACE,
            what=f"the dev gateway {DEV_GATEWAY}",
            timeout=self.options.address_timeout,
            interval=self.options.address_interval,
        )
        return f"http://{address}{app.path_prefix}"

    def _smoke(self, url: str, smoke: Callable[[str, str], object], secret: str) -> None:
        log(f"==> review: smoke test of {url}")
        try:
            smoke(url.rstrip("/"), secret)
        except SmokeFailed as error:
            raise RolloutFailed(f"the review app failed its smoke test: {error}") from None

    def stop(self, app: ReviewApp) -> None:
        with review_session(self.settings, self.runner):
            check_identity(self.runner)
            log(f"==> review: deleting namespace {app.namespace} and everything in it")
            self.runner.run(
                delete_command(
                    "namespace", app.namespace, timeout=self.options.delete_timeout, wait=True
                )
            )
        self.runner.outcome(f"==> review: {app.namespace} is gone")

    def sweep(self, merge_request_state: Callable[[str], str | None]) -> list[str]:
        """Delete the review namespaces whose merge request is not open or whose time
        is up. merge_request_state(iid): GitLab's state, None when GitLab did not say.
        Returns what it deleted (a dry run: would delete)."""
        deleted, unknown = [], []
        with review_session(self.settings, self.runner):
            check_identity(self.runner)
            running = self.running(always=True)
            log(f"==> review sweep: {len(running)} review app(s)")
            for app in running:
                reason = self._sweep_reason(app, merge_request_state, unknown)
                if reason is None:
                    continue
                verb = "would delete" if self.runner.dry_run else "deleting"
                log(f"    {verb} {app.describe()}: {reason}")
                self.runner.run(
                    delete_command(
                        "namespace", app.namespace, timeout=self.options.delete_timeout, wait=True
                    )
                )
                deleted.append(app.namespace)
        if unknown:
            raise DeployError(
                f"review sweep: could not read the merge request of {', '.join(unknown)} "
                "from GitLab; left running (see above)"
            )
        return deleted

    def _sweep_reason(
        self, app: RunningApp, state_of: Callable[[str], str | None], unknown: list[str]
    ) -> str | None:
        if app.expires is None:
            return f"no valid {EXPIRES_LABEL} label"
        if app.expires <= self.now:
            return f"expired at {app.expires:%Y-%m-%d %H:%M} UTC"
        if not app.iid.isdigit():
            return f"no valid {MR_LABEL} label"
        state = state_of(app.iid)
        if state is None:
            unknown.append(app.namespace)
            return None
        if state != OPEN_STATE:
            return f"merge request !{app.iid} is {state}"
        log(f"    keeping {app.describe()}: open, expires {app.expires:%Y-%m-%d %H:%M} UTC")
        return None


def gitlab_merge_request_state(
    environ: Mapping[str, str],
    settings: Settings,
    get: Callable[[str, Mapping[str, str]], tuple[int, dict]],
) -> Callable[[str], str | None]:
    """state_of(iid) through GitLab's REST API (GET /projects/:id/merge_requests/:iid,
    docs.gitlab.com/api/merge_requests, "Get single MR"): REVIEW_SWEEP_TOKEN as a
    PRIVATE-TOKEN, else the job's CI_JOB_TOKEN as a JOB-TOKEN. A merge request GitLab no
    longer has (404) is gone."""
    api, project = environ.get("CI_API_V4_URL", ""), environ.get("CI_PROJECT_ID", "")
    if not api or not project:
        raise ConfigError("review sweep reads GitLab's API: CI_API_V4_URL and CI_PROJECT_ID")
    token = settings.get(config.REVIEW_SWEEP_TOKEN)
    if token:
        headers = {"PRIVATE-TOKEN": token}
    elif environ.get("CI_JOB_TOKEN"):
        headers = {"JOB-TOKEN": environ["CI_JOB_TOKEN"]}
    else:
        raise ConfigError("review sweep needs REVIEW_SWEEP_TOKEN (or CI_JOB_TOKEN in a CI job)")

    def state_of(iid: str) -> str | None:
        status, body = get(f"{api}/projects/{project}/merge_requests/{iid}", headers)
        if status == 404:
            return "deleted"
        if status != 200 or not isinstance(body.get("state"), str):
            hint = (
                ": set REVIEW_SWEEP_TOKEN (a project access token with read_api)"
                if status in (401, 403)
                else ""
            )
            log(f"    GitLab answered {status} for merge request !{iid}{hint}")
            return None
        return body["state"]

    return state_of


def http_get_json(url: str, headers: Mapping[str, str]) -> tuple[int, dict]:
    """GET url; (status, JSON object or {}); a network failure is status 0."""
    try:
        response = requests.get(url, headers=dict(headers), timeout=30)
    except requests.RequestException:
        return 0, {}
    try:
        body = response.json()
    except ValueError:
        body = {}
    return response.status_code, body if isinstance(body, dict) else {}


# --- the review identity's kubeconfig ------------------------------------------------------

# A bounded token (TokenRequest, `kubectl create token`), not a long-lived Secret-based
# one: it expires by itself if the CI variable leaks, and the cluster keeps no token
# Secret to steal (Kubernetes calls Secret-based ServiceAccount tokens legacy and cleans
# unused ones up: LegacyServiceAccountTokenCleanUp, GA in 1.30). The cost: an admin
# runs this again before it expires. The API server may shorten what is asked for
# (--service-account-max-token-expiration), so the tool reads the expiry from the token.
DEFAULT_TOKEN_DURATION = 30 * 86400
TOKEN_WARNING = 7 * 86400  # an expiry closer than this is said as a warning


def current_cluster_command() -> list[str]:
    # The admin's current context, flattened: its cluster's server and CA data inline
    # (clientcmd v1 Config, k8s.io/client-go/tools/clientcmd/api/v1/types.go).
    return ["kubectl", "config", "view", "--minify", "--flatten", "--output=json"]


def create_token_command(duration: int) -> list[str]:
    namespace, account = REVIEW_IDENTITY.split(":")[2:4]
    return [
        "kubectl", "create", "token", account, "--namespace", namespace,
        f"--duration={duration}s",
    ]  # fmt: skip


def token_expiry(token: str) -> datetime | None:
    """The `exp` claim of a ServiceAccount token (a JWT); None when it has none."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return datetime.fromtimestamp(int(claims["exp"]), UTC)
    except (IndexError, KeyError, TypeError, ValueError):
        return None


def review_kubeconfig(config_view: str, token: str) -> str:
    """A kubeconfig of the admin's current cluster that authenticates with token."""
    try:
        view = json.loads(config_view)
        [entry] = view["clusters"]
        cluster = entry["cluster"]
        server = cluster["server"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            "`kubectl config view --minify` named no single cluster with a server: "
            "select the dev cluster's context first (kubectl config use-context)"
        ) from None
    kept = {k: v for k, v in cluster.items() if k in ("server", "certificate-authority-data")}
    if "certificate-authority-data" not in kept and not server.startswith("https://"):
        raise ConfigError(f"the current cluster's server {server!r} is not HTTPS")
    name = "conduit-review"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": entry.get("name") or "dev", "cluster": kept}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [
            {"name": name, "context": {"cluster": entry.get("name") or "dev", "user": name}}
        ],
        "current-context": name,
    }
    return yaml.safe_dump(document, sort_keys=False)


def make_kubeconfig(runner: Runner, output: Path, duration: int, now: datetime) -> None:
    """As a cluster admin: a kubeconfig for the review ServiceAccount, written 0600 to
    output, for the REVIEW_KUBECONFIG variable (deploy/gitlab.md, "Review apps")."""
    log(f"==> review kubeconfig: a {duration / 86400:g}-day token for {REVIEW_IDENTITY}")
    view = runner.run(current_cluster_command(), capture=True, quiet=True)
    # Captured, never shown: its output is the token.
    created = runner.run(create_token_command(duration), capture=True)
    if runner.dry_run:
        runner.note(f"write {output} (mode 0600): the current cluster, the token")
        return
    token = created.stdout.strip()
    text = review_kubeconfig(view.stdout, token)
    write_private(output, text)
    expires = token_expiry(token)
    if expires is None:
        log("    the token names no expiry (exp): check the API server's token settings")
    else:
        log(f"    expires {expires:%Y-%m-%d %H:%M} UTC: run this again before then")
        if expires - now < timedelta(seconds=TOKEN_WARNING):
            log(
                "    warning: the API server shortened the token "
                "(--service-account-max-token-expiration)"
            )
    runner.outcome(
        f"==> review kubeconfig: {output} (0600); set it as the CI variable "
        "REVIEW_KUBECONFIG (type File, environment scope review/*), then delete the file"
    )
