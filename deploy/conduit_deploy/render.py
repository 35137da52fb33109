"""Render the manifests of one environment: kops cluster spec and Kubernetes objects.

Sources (all in the repository's k8s/ directory):

* ``k8s/kops/cluster.yaml.j2`` + ``k8s/kops/values/<env>.yaml``: the kops Cluster and
  InstanceGroups, rendered with Jinja2 in strict mode (a missing variable is an error
  that names it, never an empty field);
* ``k8s/overlays/<env>``: the kustomize overlay over ``k8s/base``;
* ``k8s/monitoring`` (optional): rendered as-is when it has a kustomization.yaml; its
  kube-prometheus-stack-values.yaml are the Helm values of the monitoring stack the
  deploy installs (conduit_deploy.monitoring).

For the Kubernetes objects, render() writes a throw-away kustomization that uses the
overlay as a resource and adds what only deploy time knows: the image of the release,
its version label (the pods read CONDUIT_VERSION from it) and the two Secrets
(generated with a content hash, so a changed secret rolls the pods that use it).
``kubectl kustomize`` builds it, and the objects are split into the files the deploy
tool applies one after another.

Nothing here talks to a cluster and nothing imports the app.
"""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import jinja2.meta
import yaml

from . import images
from .errors import RenderError
from .files import write_private
from .runner import Runner

# The edge: Envoy Gateway (the Gateway API implementation run by the Envoy project,
# CNCF), installed from its release manifest, which holds the Gateway API v1.6.1 CRDs,
# its own CRDs and the controller (site/content/en/v1.9/install/install-yaml.md of
# envoyproxy/gateway v1.9.0: `kubectl apply --server-side -f .../install.yaml`). The
# deploy checks the download against the SHA-256 below before applying it: the digest
# a public runbook records for this release asset, which no machine of ours could fetch
# to recompute (k8s/README.md says how to check it). v1.9 runs Envoy 1.39.0 and
# supports Kubernetes 1.33-1.36 until 2027-02-14 (site/content/en/news/releases/matrix.md).
ENVOY_GATEWAY_VERSION = "v1.9.0"
ENVOY_GATEWAY_MANIFEST_URL = (
    f"https://github.com/envoyproxy/gateway/releases/download/{ENVOY_GATEWAY_VERSION}/install.yaml"
)
ENVOY_GATEWAY_MANIFEST_SHA256 = "a83dea73466ee6528f0d23f86d36573fbf1f305c822d986a63e262e32594481a"
ENVOY_GATEWAY_NAMESPACE = "envoy-gateway-system"
ENVOY_GATEWAY_DEPLOYMENT = "envoy-gateway"
# Cluster-scoped, so outside the kustomize tree (see the file).
GATEWAY_CLASS_FILE = Path("k8s", "cluster", "gatewayclass.yaml")
# Where k8s/overlays/prod names its public host; render() writes PROD_HOST there.
PUBLIC_HOST_PLACEHOLDER = "prod-host.invalid"

# The CloudNativePG operator and its Barman Cloud plugin, from their release manifests
# (installation_upgrade.md of the operator, installation.mdx of the plugin). The plugin
# needs cert-manager, which kops installs (certManager in k8s/kops/cluster.yaml.j2).
CNPG_VERSION = "1.30.0"
CNPG_OPERATOR_MANIFEST_URL = (
    "https://raw.githubusercontent.com/cloudnative-pg/cloudnative-pg/"
    f"release-1.30/releases/cnpg-{CNPG_VERSION}.yaml"
)
BARMAN_CLOUD_VERSION = "v0.14.0"
BARMAN_CLOUD_MANIFEST_URL = (
    "https://github.com/cloudnative-pg/plugin-barman-cloud/releases/download/"
    f"{BARMAN_CLOUD_VERSION}/manifest.yaml"
)
CNPG_NAMESPACE = "cnpg-system"
CNPG_OPERATOR_DEPLOYMENT = "cnpg-controller-manager"
BARMAN_CLOUD_DEPLOYMENT = "barman-cloud"

# Helm values of the monitoring stack, next to k8s/monitoring's kustomization.yaml.
MONITORING_STACK_VALUES = "kube-prometheus-stack-values.yaml"

# Stages in the order the deploy tool applies them.
STAGES = ("namespace", "secrets", "database", "app", "ingress")
# Every object carries app.kubernetes.io/component; it decides the stage.
_STAGE_OF_COMPONENT = {
    "namespace": "namespace",
    "database": "database",
    "api": "app",
    "ingress": "ingress",
}
COMPONENT_LABEL = "app.kubernetes.io/component"
VERSION_LABEL = "app.kubernetes.io/version"
PART_OF = {"app.kubernetes.io/part-of": "conduit"}

# Names the manifests in k8s/base use for what render() generates.
APP_SECRET = "conduit-app"  # noqa: S105 - an object name, not a secret
DATABASE_SECRET = "postgres-credentials"  # noqa: S105 - an object name
BACKUP_SECRET = "conduit-backup-gcs"  # noqa: S105 - an object name
BACKUP_KEY_FILE = "credentials.json"
# The API pods pull their image with it (imagePullSecrets): a private repository works,
# and the nodes pull as the registry user instead of anonymously (rate-limited per IP).
REGISTRY_SECRET = "registry-credentials"  # noqa: S105 - an object name
# What render() generates with a content-hash suffix; the deploy prunes old ones.
GENERATED_SECRETS = (APP_SECRET, DATABASE_SECRET, BACKUP_SECRET, REGISTRY_SECRET)
# Docker's config names Docker Hub by its legacy index URL (what `docker login` writes).
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
APP_IMAGE_PLACEHOLDER = "conduit"
# The app reaches the primary through the CloudNativePG operator's read-write Service,
# <cluster>-rw, of the overlay's Cluster (a restore renames it: k8s/README.md). Without
# a Cluster (a managed database), a Service of the default cluster's name leads there.
DEFAULT_DATABASE_CLUSTER = "conduit-db"
DATABASE_PORT = 5432
DATABASE_NAME = "conduit"

_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")

KUBECTL_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class RenderValues:
    """Everything deploy time knows that the committed manifests do not."""

    environment: str
    image: str  # repository:tag (optionally @sha256:digest)
    version: str
    cluster_name: str
    kops_state_store: str
    gcp_project: str
    db_user: str
    db_password: str
    conduit_secret: str
    backup_bucket: str  # the bucket's name; the environment's backups go under /<env>
    backup_key: str  # JSON key of the service account that may write only that bucket
    # The registry account the nodes pull the image with; None: anonymous pulls.
    registry_user: str | None = None
    registry_password: str | None = None
    # Who may reach the Kubernetes API (KOPS_API_ACCESS_CIDRS): the kops spec's
    # kubernetesApiAccess. Empty only where no kops spec is rendered (review apps).
    api_access_cidrs: tuple[str, ...] = ()
    # The DNS name an environment serves HTTPS on (PROD_HOST), where its overlay asks
    # for one; None: the overlay must not ask (dev answers on the bare address).
    public_host: str | None = None
    # kustomize patches on top of the overlay, for one command (a restore renames the
    # Cluster and bootstraps it from the backups); committed overlays need none.
    overlay_patches: tuple[dict, ...] = ()

    @property
    def backup_destination(self) -> str:
        return f"gs://{self.backup_bucket}/{self.environment}"

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("db_password", "conduit_secret", "backup_key", "registry_password"):
            shown[name] = "***"
        return f"RenderValues({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


@dataclass
class Rendered:
    """The rendered files and the names the deploy tool waits on."""

    kops_file: Path
    stages: list[tuple[str, Path]]
    monitoring_file: Path | None
    namespace: str
    database_cluster: str  # "" when the environment uses a managed database
    app_deployment: str
    gateway_name: str
    gateway_class_file: Path
    public_host: str = ""  # "" : served over HTTP on the Gateway's address
    certificate_name: str = ""  # the cert-manager Certificate of public_host, if any
    edge_manifest_url: str = ENVOY_GATEWAY_MANIFEST_URL
    edge_manifest_sha256: str = ENVOY_GATEWAY_MANIFEST_SHA256
    edge_namespace: str = ENVOY_GATEWAY_NAMESPACE
    edge_deployment: str = ENVOY_GATEWAY_DEPLOYMENT
    database_operator_manifest_url: str = CNPG_OPERATOR_MANIFEST_URL
    database_plugin_manifest_url: str = BARMAN_CLOUD_MANIFEST_URL
    database_operator_namespace: str = CNPG_NAMESPACE
    database_operator_deployments: tuple[str, ...] = (
        CNPG_OPERATOR_DEPLOYMENT,
        BARMAN_CLOUD_DEPLOYMENT,
    )
    # The Helm values of the monitoring stack; None without k8s/monitoring.
    monitoring_stack_values: Path | None = None


def repo_root() -> Path:
    """The repository holding k8s/: CONDUIT_REPO_ROOT, else the checkout this file is in."""
    override = os.environ.get("CONDUIT_REPO_ROOT")
    if override:
        return Path(override).resolve()
    return Path(__file__).resolve().parents[2]


def environments(root: Path | None = None) -> list[str]:
    """Environments that have both a kustomize overlay and kops values."""
    k8s = (root or repo_root()) / "k8s"
    overlays = {p.parent.name for p in (k8s / "overlays").glob("*/kustomization.yaml")}
    values = {p.stem for p in (k8s / "kops" / "values").glob("*.yaml")}
    return sorted(overlays & values)


def render(values: RenderValues, out_dir: Path, runner: Runner | None = None) -> Rendered:
    """Render kops and Kubernetes manifests of values.environment into out_dir.

    runner runs `kubectl kustomize` (a local query: it runs in a dry run too).
    """
    runner = runner or Runner()
    root = repo_root()
    k8s = root / "k8s"
    validate_values(values, environments(root))

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    if not values.api_access_cidrs:
        raise RenderError(
            "the kops spec needs the address ranges that may reach the Kubernetes API: "
            "set KOPS_API_ACCESS_CIDRS"
        )
    kops_context = {
        **load_yaml_mapping(k8s / "kops" / "values" / f"{values.environment}.yaml"),
        "api_access_cidrs": list(values.api_access_cidrs),
        "cluster_name": values.cluster_name,
        "kops_state_store": values.kops_state_store,
        "gcp_project": values.gcp_project,
    }
    kops_file = out_dir / "kops.yaml"
    kops_file.write_text(render_kops(k8s / "kops" / "cluster.yaml.j2", kops_context))

    namespace = base_namespace(k8s)
    objects = build_overlay(k8s / "overlays" / values.environment, values, namespace, runner)
    objects = with_public_host(objects, values)
    by_stage = split_stages(objects)

    stages = []
    for index, stage in enumerate(STAGES, start=1):
        path = out_dir / f"{index:02d}-{stage}.yaml"
        write_objects(path, by_stage[stage], secret=(stage == "secrets"))
        stages.append((stage, path))

    monitoring_file = monitoring_stack_values = None
    if (k8s / "monitoring" / "kustomization.yaml").is_file():
        # Its objects need the stack's CRDs: no monitoring objects without the stack.
        monitoring_stack_values = k8s / "monitoring" / MONITORING_STACK_VALUES
        if not monitoring_stack_values.is_file():
            raise RenderError(f"k8s/monitoring has no {MONITORING_STACK_VALUES}")
        monitoring_file = out_dir / "monitoring.yaml"
        monitoring_file.write_text(kustomize_build(k8s / "monitoring", runner))

    return Rendered(
        kops_file=kops_file,
        stages=stages,
        monitoring_file=monitoring_file,
        namespace=namespace,
        # "" when the overlay uses a managed database instead (k8s/README.md).
        database_cluster=single_name(objects, "Cluster", "database", required=False),
        app_deployment=single_name(objects, "Deployment", "api"),
        gateway_name=single_name(objects, "Gateway", "ingress"),
        gateway_class_file=root / GATEWAY_CLASS_FILE,
        public_host=values.public_host or "",
        certificate_name=single_name(objects, "Certificate", "ingress", required=False),
        monitoring_stack_values=monitoring_stack_values,
    )


# --- values -----------------------------------------------------------------------


def validate_values(values: RenderValues, known_environments: Iterable[str]) -> None:
    """Refuse values that would render a broken or unsafe deployment."""
    empty = [f.name for f in fields(values) if not str(getattr(values, f.name)).strip()]
    if empty:
        raise RenderError(f"render values must not be empty: {', '.join(empty)}")
    known = list(known_environments)
    if values.environment not in known:
        raise RenderError(
            f"unknown environment {values.environment!r} (known: {', '.join(known) or 'none'})"
        )
    # The values of CI variables were checked by their own rules when config.load_settings
    # read them; what render composes itself (the image reference, the version) is not.
    problems = []
    try:
        images.check_image(values.image)
    except ValueError as error:
        problems.append(f"image {error}")
    if not _LABEL_VALUE.match(values.version):
        problems.append(
            f"version {values.version!r} cannot be a Kubernetes label value "
            "(at most 63 letters, digits, '.', '_' or '-', starting and ending alphanumeric)"
        )
    if problems:
        raise RenderError("; ".join(problems))


def database_host(cluster: str) -> str:
    return f"{cluster}-rw"


def database_url(user: str, password: str, cluster: str = DEFAULT_DATABASE_CLUSTER) -> str:
    """The SQLAlchemy URL of the in-cluster PostgreSQL, credentials percent-encoded."""
    return (
        f"postgresql+psycopg://{quote(user, safe='')}:{quote(password, safe='')}"
        f"@{database_host(cluster)}:{DATABASE_PORT}/{DATABASE_NAME}"
    )


def split_image(image: str) -> dict[str, str]:
    """A kustomize `images:` entry for repository[:tag][@digest]."""
    try:
        reference = images.parse(images.check_image(image))
    except ValueError as error:
        raise RenderError(f"image {error}") from None
    entry = {"name": APP_IMAGE_PLACEHOLDER, "newName": reference.repository}
    if reference.tag:
        entry["newTag"] = reference.tag
    if reference.digest:
        entry["digest"] = reference.digest
    return entry


def load_yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RenderError(f"cannot read {path}: {one_line(str(exc))}") from exc
    if not isinstance(data, dict):
        raise RenderError(f"{path} must hold a mapping of values")
    return data


# --- kops -------------------------------------------------------------------------


def render_kops(template_path: Path, context: Mapping[str, Any]) -> str:
    """Render the kops template; a variable it uses but context lacks is an error."""
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - YAML, not HTML; strings are quoted with |tojson
    )
    try:
        source = template_path.read_text()
        # Name every missing variable up front: a filter such as |tojson would otherwise
        # receive the undefined value and fail with an unrelated TypeError.
        needed = jinja2.meta.find_undeclared_variables(env.parse(source))
        missing = sorted(needed - set(context))
        if missing:
            raise RenderError(
                f"kops template {template_path.name}: "
                f"variable{'s' if len(missing) > 1 else ''} {', '.join(repr(m) for m in missing)} "
                f"not set (add to k8s/kops/values/<environment>.yaml)"
            )
        text = env.from_string(source).render(**context)
    except OSError as exc:
        raise RenderError(f"cannot read {template_path}: {exc.strerror}") from exc
    except jinja2.TemplateError as exc:  # also a missing key of a mapping value
        raise RenderError(f"kops template {template_path.name}: {one_line(str(exc))}") from exc
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc]
    except yaml.YAMLError as exc:
        raise RenderError(
            f"kops template {template_path.name} rendered invalid YAML: {one_line(str(exc))}"
        ) from exc
    if not any(doc.get("kind") == "Cluster" for doc in documents):
        raise RenderError(f"kops template {template_path.name} rendered no Cluster")
    return text


# --- kustomize --------------------------------------------------------------------


def kustomize_build(directory: Path, runner: Runner) -> str:
    """`kubectl kustomize DIR`; a failure becomes a RenderError with kustomize's reason."""
    result = runner.run(
        ["kubectl", "kustomize", str(directory)],
        capture=True,
        check=False,
        timeout=KUBECTL_TIMEOUT_SECONDS,
        dry_run_safe=True,
        quiet=True,
    )
    if not result.ok:
        raise RenderError(f"kubectl kustomize {directory} failed: {one_line(result.stderr)}")
    return result.stdout


def base_namespace(k8s: Path) -> str:
    namespace = load_yaml_mapping(k8s / "base" / "kustomization.yaml").get("namespace")
    if not namespace:
        raise RenderError("k8s/base/kustomization.yaml sets no namespace")
    return namespace


def build_overlay(
    overlay: Path, values: RenderValues, namespace: str, runner: Runner
) -> list[dict]:
    """Build the overlay with the release's image, version and Secrets added."""
    if not (overlay / "kustomization.yaml").is_file():
        raise RenderError(f"no kustomize overlay at {overlay}")
    database = _overlay_cluster(overlay, values.overlay_patches, runner)
    cluster = database["metadata"]["name"] if database else ""
    # A private directory (mode 0700) for the secret files; removed right after the build.
    with tempfile.TemporaryDirectory(prefix="conduit-render-") as workdir:
        work = Path(workdir)
        secret_files = {
            "conduit_secret": values.conduit_secret,
            "database_url": database_url(
                values.db_user, values.db_password, cluster or DEFAULT_DATABASE_CLUSTER
            ),
            "db_user": values.db_user,
            "db_password": values.db_password,
            "backup_key": values.backup_key,
        }
        pull_secret = docker_config_json(values)
        if pull_secret is not None:
            secret_files["dockerconfigjson"] = pull_secret
        for name, content in secret_files.items():
            write_private(work / name, content)
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            # kustomize accepts a base outside the kustomization root only as a relative path.
            "resources": [os.path.relpath(overlay.resolve(), work)],
            "images": [split_image(values.image)],
            "patches": [
                # A restore's patches first, as if committed to the overlay (which is
                # where they end up): the role name then goes into the bootstrap the
                # Cluster has after them.
                *values.overlay_patches,
                *database_patches(values, bootstrap_method(database)),
                *_pull_secret_patches(pull_secret is not None),
                version_patch(values.version),
            ],
            "secretGenerator": [
                {
                    "name": APP_SECRET,
                    "namespace": namespace,
                    "type": "Opaque",
                    "files": [
                        "CONDUIT_SECRET=conduit_secret",
                        "DATABASE_URL=database_url",
                    ],
                    "options": {"labels": {**PART_OF, COMPONENT_LABEL: "api"}, "immutable": True},
                },
                {
                    # The app's role: the Cluster's initdb owner and managed role read
                    # it (CloudNativePG wants the basic-auth shape).
                    "name": DATABASE_SECRET,
                    "namespace": namespace,
                    "type": "kubernetes.io/basic-auth",
                    "files": ["username=db_user", "password=db_password"],
                    "options": {
                        "labels": {**PART_OF, COMPONENT_LABEL: "database"},
                        "immutable": True,
                    },
                },
                {
                    # The backup service account's key, read by the Barman Cloud plugin.
                    "name": BACKUP_SECRET,
                    "namespace": namespace,
                    "type": "Opaque",
                    "files": [f"{BACKUP_KEY_FILE}=backup_key"],
                    "options": {
                        "labels": {**PART_OF, COMPONENT_LABEL: "database"},
                        "immutable": True,
                    },
                },
                *_pull_secret_generator(pull_secret is not None, namespace),
            ],
        }
        (work / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
        output = kustomize_build(work, runner)
    objects = [doc for doc in yaml.safe_load_all(output) if doc]
    for obj in objects:
        if obj.get("kind") == "Secret":
            # kustomize wraps long base64 values at 76 columns; the API ignores the
            # line breaks, but one line per value is what people and greps expect.
            obj["data"] = {
                key: "".join(value.split()) for key, value in obj.get("data", {}).items()
            }
    if not objects:
        raise RenderError(f"kustomize overlay {overlay} rendered no objects")
    return objects


def with_public_host(objects: list[dict], values: RenderValues) -> list[dict]:
    """The objects with PROD_HOST wherever the overlay wrote PUBLIC_HOST_PLACEHOLDER.

    An overlay that asks for a host (prod: the HTTPS listener, its routes and the
    certificate) cannot render without one; a host given to an overlay that asks for
    none (dev) is an error too, rather than silently unused.
    """
    found = False

    def replace(value: Any) -> Any:
        nonlocal found
        if isinstance(value, dict):
            return {key: replace(child) for key, child in value.items()}
        if isinstance(value, list):
            return [replace(child) for child in value]
        if value == PUBLIC_HOST_PLACEHOLDER:
            found = True
            return values.public_host
        return value

    replaced = [replace(obj) for obj in objects]
    if found and not values.public_host:
        raise RenderError(
            f"{values.environment} serves HTTPS on a host name: set PROD_HOST (a DNS name "
            "whose A record points at the Gateway's address)"
        )
    if values.public_host and not found:
        raise RenderError(
            f"{values.environment} is served on the Gateway's address without a host name: "
            f"unset PROD_HOST for {values.environment} (it is for prod only)"
        )
    return replaced


def version_patch(version: str) -> dict:
    """The release's version on the API pods only: on the database's pods it would
    restart PostgreSQL on every release."""
    label = _pointer(VERSION_LABEL)
    return {
        "target": {"kind": "Deployment", "labelSelector": f"{COMPONENT_LABEL}=api"},
        "patch": yaml.safe_dump(
            [
                {"op": "add", "path": f"/metadata/labels/{label}", "value": version},
                {"op": "add", "path": f"/spec/template/metadata/labels/{label}", "value": version},
            ]
        ),
    }


def _overlay_cluster(overlay: Path, patches: tuple[dict, ...], runner: Runner) -> dict | None:
    """The overlay's Cluster (after the extra patches); None without one."""
    if not patches:
        built = kustomize_build(overlay, runner)
    else:
        with tempfile.TemporaryDirectory(prefix="conduit-render-") as workdir:
            work = Path(workdir)
            kustomization = {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(overlay.resolve(), work)],
                "patches": list(patches),
            }
            (work / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
            built = kustomize_build(work, runner)
    objects = [doc for doc in yaml.safe_load_all(built) if doc]
    name = single_name(objects, "Cluster", "database", required=False)
    if not name:
        return None
    return next(o for o in objects if o["kind"] == "Cluster" and o["metadata"]["name"] == name)


# The bootstrap methods of a CloudNativePG Cluster that create the app's database and
# its owner (postgresql.cnpg.io_clusters.yaml 1.30.0, spec.bootstrap: initdb, recovery,
# pg_basebackup, each with `database` and `owner`).
BOOTSTRAP_METHODS = ("initdb", "recovery", "pg_basebackup")


def bootstrap_method(cluster: dict | None) -> str | None:
    """The bootstrap the Cluster declares: initdb as committed, recovery after a restore
    (k8s/README.md, "Restore runbook"); None without a Cluster."""
    if cluster is None:
        return None
    declared = [m for m in BOOTSTRAP_METHODS if m in (cluster["spec"].get("bootstrap") or {})]
    if len(declared) != 1:
        raise RenderError(
            f"Cluster {cluster['metadata']['name']} must declare one bootstrap method "
            f"({', '.join(BOOTSTRAP_METHODS)}) for the app's database and owner; it declares "
            f"{', '.join(declared) or 'none'}"
        )
    return declared[0]


def database_patches(values: RenderValues, bootstrap: str | None) -> list[dict]:
    """The app's role name and the backup bucket, into the CloudNativePG objects.

    The owner is set in the bootstrap the Cluster declares (bootstrap_method): a JSON
    patch cannot say "whichever there is", and a fixed initdb path would fail on the
    recovery bootstrap a committed restore leaves. `add` sets a member whether it is
    there or not (RFC 6902, 4.1). Without a Cluster (a managed database) there is no
    owner to set, and a target that matches nothing is no error for kustomize.
    """
    role = values.db_user
    cluster_operations = [{"op": "replace", "path": "/spec/managed/roles/0/name", "value": role}]
    if bootstrap:
        cluster_operations.insert(
            0, {"op": "add", "path": f"/spec/bootstrap/{bootstrap}/owner", "value": role}
        )
    return [
        {
            "target": {"kind": "Cluster", "labelSelector": f"{COMPONENT_LABEL}=database"},
            "patch": yaml.safe_dump(cluster_operations),
        },
        {
            "target": {"kind": "ObjectStore", "labelSelector": f"{COMPONENT_LABEL}=database"},
            "patch": yaml.safe_dump(
                [
                    {
                        "op": "replace",
                        "path": "/spec/configuration/destinationPath",
                        "value": values.backup_destination,
                    }
                ]
            ),
        },
    ]


def docker_config_json(values: RenderValues) -> str | None:
    """The .dockerconfigjson of the image's registry, None without registry credentials."""
    if not (values.registry_user and values.registry_password):
        return None
    registry = images.registry_of(images.parse(values.image).repository)
    key = DOCKER_HUB_AUTH_KEY if registry in images.DOCKER_HUB_HOSTS else registry
    pair = f"{values.registry_user}:{values.registry_password}".encode()
    auth = {
        "username": values.registry_user,
        "password": values.registry_password,
        "auth": base64.b64encode(pair).decode(),
    }
    return json.dumps({"auths": {key: auth}})


def _pull_secret_generator(enabled: bool, namespace: str) -> list[dict]:
    if not enabled:
        return []
    return [
        {
            "name": REGISTRY_SECRET,
            "namespace": namespace,
            "type": "kubernetes.io/dockerconfigjson",
            "files": [".dockerconfigjson=dockerconfigjson"],
            "options": {"labels": {**PART_OF, COMPONENT_LABEL: "api"}, "immutable": True},
        }
    ]


def _pull_secret_patches(enabled: bool) -> list[dict]:
    """imagePullSecrets on the API pods; kustomize gives the name its content hash."""
    if not enabled:
        return []
    patch = [
        {
            "op": "add",
            "path": "/spec/template/spec/imagePullSecrets",
            "value": [{"name": REGISTRY_SECRET}],
        }
    ]
    return [
        {
            "target": {"kind": "Deployment", "labelSelector": f"{COMPONENT_LABEL}=api"},
            "patch": yaml.safe_dump(patch),
        }
    ]


def _pointer(key: str) -> str:
    """A JSON-pointer path segment (RFC 6901) for a label key."""
    return key.replace("~", "~0").replace("/", "~1")


def split_stages(objects: Iterable[dict]) -> dict[str, list[dict]]:
    """Group objects by deploy stage: Secrets first by kind, the rest by component label."""
    stages: dict[str, list[dict]] = {stage: [] for stage in STAGES}
    for obj in objects:
        if obj.get("kind") == "Secret":
            stages["secrets"].append(obj)
            continue
        component = (obj.get("metadata", {}).get("labels") or {}).get(COMPONENT_LABEL)
        stage = _STAGE_OF_COMPONENT.get(component)
        if stage is None:
            raise RenderError(
                f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')} has no known "
                f"{COMPONENT_LABEL} label ({', '.join(_STAGE_OF_COMPONENT)}): "
                "cannot place it in a stage"
            )
        stages[stage].append(obj)
    return stages


def single_name(
    objects: Iterable[dict], kind: str, component: str, *, required: bool = True
) -> str:
    names = [
        o["metadata"]["name"]
        for o in objects
        if o.get("kind") == kind
        and (o["metadata"].get("labels") or {}).get(COMPONENT_LABEL) == component
    ]
    if not names and not required:
        return ""
    if len(names) != 1:
        raise RenderError(
            f"expected exactly one {kind} with {COMPONENT_LABEL}={component}, found {len(names)}"
        )
    return names[0]


# --- files ------------------------------------------------------------------------


def write_objects(path: Path, objects: list[dict], *, secret: bool = False) -> None:
    # No line wrapping: long values (base64 data, commands) stay on one line.
    text = yaml.safe_dump_all(objects, sort_keys=False, width=float("inf")) if objects else ""
    if secret:
        write_private(path, text)
    else:
        path.write_text(text)


def one_line(text: str, limit: int = 600) -> str:
    """A program's error output on one line; kustomize puts the root cause last."""
    flat = " ".join(text.split())
    for prefix in ("error: ", "Error: "):
        flat = flat.removeprefix(prefix)
    if not flat:
        return "no output"
    return flat if len(flat) <= limit else "..." + flat[-limit:]
