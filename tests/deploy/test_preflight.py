"""`conduit-deploy preflight`, against a local fake of Google Cloud and a registry.

No cloud is reachable here, so one HTTP server on 127.0.0.1 (pytest-httpserver) plays
the OAuth token endpoint, Cloud Resource Manager, Service Usage, Cloud Storage and a
Docker registry's token service, with the request and response shapes of their REST
references. The token endpoint checks the JWT that google-auth signs with the key,
and every API call must carry the token it handed out.
"""

from __future__ import annotations

import base64
import functools
import json
import time
from urllib.parse import parse_qs

import pytest
import requests
from conduit_deploy.cli import Context, main
from conduit_deploy.errors import GcpError, PreflightFailed, RegistryError, Unreachable
from conduit_deploy.gcp import Endpoints, GcpClient
from conduit_deploy.preflight import (
    BACKUP_PERMISSIONS,
    BUCKET_PERMISSIONS,
    PROJECT_PERMISSIONS,
    REQUIRED_APIS,
    run_preflight,
)
from conduit_deploy.registry import Repository, check_push_access
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from werkzeug import Request, Response

from tests.deploy.support import REGISTRY_PASSWORD, ci_environ

PROJECT = "conduit-dev-123"
BUCKET = "conduit-kops-state"
BACKUP_BUCKET = "backups.conduit.example.com"  # a dotted name: a verified domain's
CI_ACCOUNT = f"deployer@{PROJECT}.iam.gserviceaccount.com"
BACKUP_ACCOUNT = f"conduit-backup-dev@{PROJECT}.iam.gserviceaccount.com"
REGISTRY_TOKEN_PATH = "/registry-token"
PROXY_VARIABLES = [f(name) for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")
                   for f in (str.upper, str.lower)]  # fmt: skip


def access_token(account: str) -> str:
    return f"ya29.fake-token-of-{account}"


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    return ("127.0.0.1", 0)  # pytest-httpserver's fixture reads this: IPv4 loopback only


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def b64json(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def jwt(claims: dict) -> str:
    """An unsigned JWT-shaped token, as a registry's token service returns (payload only)."""

    def encode(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{encode({'alg': 'none'})}.{encode(claims)}.sig"


class FakeCloud:
    """State of the fake project, bucket and registry; tests change it, then call."""

    def __init__(self, server, private_key):
        self.server = server
        self.url = server.url_for("").rstrip("/")
        self.public_key = private_key.public_key()
        self.key_refused = False
        self.project_state = "ACTIVE"
        self.enabled = set(REQUIRED_APIS) | {
            "serviceusage.googleapis.com",
            "logging.googleapis.com",
        }
        self.project_denied: set[str] = set()
        self.bucket_exists = True
        self.bucket_denied: set[str] = set()  # the CI key's, on the state bucket
        self.backup_bucket_exists = True
        self.backup_denied: set[str] = set()  # the backup key's, on the backup bucket
        self.backup_reads_state = False  # the backup key was given the state bucket too
        self.registry_password = REGISTRY_PASSWORD
        self.registry_actions = ["pull", "push"]
        self.requests: list[str] = []
        server.expect_request("/token", method="POST").respond_with_handler(self.token)
        for path in (
            f"/v1/projects/{PROJECT}",
            f"/v1/projects/{PROJECT}:testIamPermissions",
            f"/v1/projects/{PROJECT}/services",
            f"/storage/v1/b/{BUCKET}",
            f"/storage/v1/b/{BUCKET}/iam/testPermissions",
            f"/storage/v1/b/{BACKUP_BUCKET}/iam/testPermissions",
        ):
            server.expect_request(path).respond_with_handler(self.api)
        server.expect_request("/v2/").respond_with_handler(self.registry_probe)
        server.expect_request(REGISTRY_TOKEN_PATH).respond_with_handler(self.registry_token)

    def key(self, private_key, **changes) -> dict:
        pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "0123abcd",
            "private_key": pem,
            "client_email": CI_ACCOUNT,
            "client_id": "1234567890",
            "token_uri": f"{self.url}/token",
            **changes,
        }

    def backup_key(self, private_key) -> dict:
        return self.key(private_key, private_key_id="4567cdef", client_email=BACKUP_ACCOUNT)

    def token(self, request: Request) -> Response:
        """OAuth 2.0 JWT bearer grant: verify the assertion's signature and claims; the
        token names the service account (the assertion's issuer)."""
        form = parse_qs(request.get_data(as_text=True))
        assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
        header, claims, signature = form["assertion"][0].split(".")
        self.public_key.verify(
            base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)),
            f"{header}.{claims}".encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
        payload = b64json(claims)
        # google-auth always names Google's token endpoint as the audience.
        assert payload["aud"] == "https://oauth2.googleapis.com/token"
        assert payload["scope"] == "https://www.googleapis.com/auth/cloud-platform"
        assert payload["exp"] > time.time()
        if self.key_refused:
            body = {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            return Response(json.dumps(body), 400, content_type="application/json")
        token = access_token(payload["iss"])
        body = {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}
        return Response(json.dumps(body), content_type="application/json")

    @staticmethod
    def error(status: int, code: str, message: str) -> Response:
        body = {"error": {"code": status, "message": message, "status": code}}
        return Response(json.dumps(body), status, content_type="application/json")

    def api(self, request: Request) -> Response:
        self.requests.append(f"{request.method} {request.path}")
        caller = {f"Bearer {access_token(a)}": a for a in (CI_ACCOUNT, BACKUP_ACCOUNT)}.get(
            request.headers.get("Authorization", "")
        )
        if caller is None:
            return self.error(401, "UNAUTHENTICATED", "Request had invalid authentication")
        path = request.path
        if caller == BACKUP_ACCOUNT and path.endswith("/iam/testPermissions"):
            return self.backup_permissions(request)
        if caller == BACKUP_ACCOUNT:  # it holds nothing on the project
            return self.error(403, "PERMISSION_DENIED", f"{caller} does not have permission")
        if path == f"/v1/projects/{PROJECT}":
            body = {
                "projectId": PROJECT,
                "projectNumber": "42",
                "lifecycleState": self.project_state,
            }
        elif path.endswith(":testIamPermissions"):
            asked = request.get_json()["permissions"]
            assert len(asked) <= 100
            body = {"permissions": [p for p in asked if p not in self.project_denied]}
        elif path.endswith("/services"):
            assert request.args["filter"] == "state:ENABLED"
            names = sorted(self.enabled)
            page = int(request.args.get("pageToken", "0"))
            body = {
                "services": [
                    {"name": f"projects/42/services/{n}", "config": {"name": n}, "state": "ENABLED"}
                    for n in names[page : page + 2]
                ]
            }
            if page + 2 < len(names):  # two per page: the client must follow nextPageToken
                body["nextPageToken"] = str(page + 2)
        elif path == f"/storage/v1/b/{BACKUP_BUCKET}/iam/testPermissions":
            # The CI key holds nothing on the backup bucket.
            body = {"kind": "storage#testIamPermissionsResponse"}
        elif path.endswith("/iam/testPermissions"):
            if not self.bucket_exists:
                return self.error(404, "NOT_FOUND", "The specified bucket does not exist.")
            asked = request.args.getlist("permissions")
            body = {
                "kind": "storage#testIamPermissionsResponse",
                "permissions": [p for p in asked if p not in self.bucket_denied],
            }
        else:  # the bucket
            if not self.bucket_exists:
                return self.error(404, "NOT_FOUND", "The specified bucket does not exist.")
            body = {"kind": "storage#bucket", "name": BUCKET, "location": "EUROPE-WEST1"}
        return Response(json.dumps(body), content_type="application/json")

    def backup_permissions(self, request: Request) -> Response:
        """buckets.testIamPermissions as the backup key: its bucket, and the state's."""
        asked = request.args.getlist("permissions")
        if request.path.startswith(f"/storage/v1/b/{BACKUP_BUCKET}/"):
            if not self.backup_bucket_exists:
                return self.error(404, "NOT_FOUND", "The specified bucket does not exist.")
            held = {need.permission for need in BACKUP_PERMISSIONS} - self.backup_denied
        else:
            if not self.bucket_exists:
                return self.error(404, "NOT_FOUND", "The specified bucket does not exist.")
            held = (
                {"storage.objects.get", "storage.objects.list"}
                if self.backup_reads_state
                else set()
            )
        # Google leaves "permissions" out when the caller holds none of them.
        body = {"kind": "storage#testIamPermissionsResponse"}
        if held & set(asked):
            body["permissions"] = [p for p in asked if p in held]
        return Response(json.dumps(body), content_type="application/json")

    def registry_probe(self, request: Request) -> Response:
        challenge = f'Bearer realm="{self.url}{REGISTRY_TOKEN_PATH}",service="registry.docker.io"'
        return Response("{}", 401, headers={"WWW-Authenticate": challenge})

    def registry_token(self, request: Request) -> Response:
        auth = request.authorization
        if auth is None or (auth.username, auth.password) != ("team", self.registry_password):
            return Response('{"details":"incorrect username or password"}', 401)
        assert request.args["service"] == "registry.docker.io"
        scope = request.args["scope"]
        assert scope == "repository:team/conduit:pull,push"
        access = [{"type": "repository", "name": "team/conduit", "actions": self.registry_actions}]
        return Response(
            json.dumps({"token": jwt({"access": access})}), content_type="application/json"
        )


@pytest.fixture
def cloud(httpserver, private_key) -> FakeCloud:
    return FakeCloud(httpserver, private_key)


def preflight(cloud: FakeCloud, private_key, capsys, *, google=None, key=None, **environ):
    """`conduit-deploy preflight dev` against the fake; google: another base URL for
    every Google endpoint (the token endpoint too)."""
    google = google or cloud.url
    key = key or cloud.key(private_key, token_uri=f"{google}/token")
    backup_key = cloud.backup_key(private_key) | {"token_uri": f"{google}/token"}
    variables = {
        "GCP_CREDENTIAL_FILE": json.dumps(key),
        "BACKUP_GCP_CREDENTIAL_FILE": json.dumps(backup_key),
        "BACKUP_BUCKET": BACKUP_BUCKET,
        **environ,
    }
    ctx = Context(
        environ=ci_environ(**variables),
        preflight=functools.partial(
            run_preflight,
            endpoints=Endpoints(google, google, google),
            registry_api=cloud.url,
        ),
    )
    code = main(["preflight", "dev"], ctx)
    captured = capsys.readouterr()
    return code, captured.out + captured.err, json.dumps(key)


def lines(output: str, status: str) -> list[str]:
    return [line.split(":", 1)[0].strip()[len(status) :].strip()
            for line in output.splitlines() if line.strip().startswith(status)]  # fmt: skip


def test_everything_in_place_passes_every_check(cloud, private_key, capsys):
    code, output, _ = preflight(cloud, private_key, capsys)
    assert code == 0, output
    assert lines(output, "ok") == [
        "cluster name", "GCP credentials", "project", "APIs enabled", "state bucket",
        "IAM permissions", "backup key", "backup bucket", "registry credentials",
    ]  # fmt: skip
    assert lines(output, "FAIL") == []
    assert (
        "ok    GCP credentials: the service-account key GCP_CREDENTIAL_FILE of "
        "deployer@conduit-dev-123.iam.gserviceaccount.com: authorized as "
        "deployer@conduit-dev-123.iam.gserviceaccount.com"
    ) in output
    assert f"all {len(PROJECT_PERMISSIONS)} permissions kops needs" in output
    assert (
        f"ok    backup key: service account {BACKUP_ACCOUNT}, not the CI's, no access to the "
        "state bucket" in output
    )
    assert (
        f"ok    backup bucket: gs://{BACKUP_BUCKET} exists; {BACKUP_ACCOUNT} may write, read, "
        "list and delete backups" in output
    )


def test_every_failure_is_reported_at_once(cloud, private_key, capsys):
    cloud.enabled -= {"iam.googleapis.com"}
    cloud.project_denied = {"iam.serviceAccounts.actAs", "compute.instances.create"}
    cloud.bucket_denied = {"storage.buckets.setIamPolicy"}
    cloud.registry_password = "another-password"
    code, output, key = preflight(
        cloud, private_key, capsys, K8S_CLUSTER_NAME="prod.conduit.k8s.local"
    )
    assert code == 1
    assert lines(output, "FAIL") == [
        "cluster name", "APIs enabled", "state bucket", "IAM permissions", "registry credentials",
    ]  # fmt: skip
    assert lines(output, "ok") == ["GCP credentials", "project", "backup key", "backup bucket"]
    assert "gcloud services enable iam.googleapis.com --project conduit-dev-123" in output
    assert "grant roles/iam.serviceAccountUser (iam.serviceAccounts.actAs)" in output
    assert "grant roles/compute.admin (compute.instances.create)" in output
    assert "storage.buckets.setIamPolicy on gs://conduit-kops-state" in output
    assert "refused DOCKER_REGISTRY_USER 'team'" in output
    assert "K8S_CLUSTER_NAME 'prod.conduit.k8s.local' is the prod cluster, not dev's" in output
    assert (
        output.rstrip()
        .splitlines()[-1]
        .startswith(
            "conduit-deploy: error: preflight: 5 of 9 checks failed (cluster name, APIs enabled"
        )
    )
    # One line per check, and no secret in any of them.
    for secret in (REGISTRY_PASSWORD, "another-password", json.loads(key)["private_key"][30:90]):
        assert secret not in output


def test_a_refused_key_says_why(cloud, private_key, capsys):
    cloud.key_refused = True
    code, output, _ = preflight(cloud, private_key, capsys)
    assert code == 1
    assert (
        "FAIL  GCP credentials: the key was refused: invalid_grant: Invalid JWT Signature."
        in output
    )
    # The checks that need a token fail too, each saying so, instead of being skipped.
    assert lines(output, "FAIL")[:4] == [
        "GCP credentials",
        "project",
        "APIs enabled",
        "state bucket",
    ]
    assert cloud.requests == []


def test_a_missing_bucket_and_an_inactive_project(cloud, private_key, capsys):
    cloud.bucket_exists = False
    cloud.project_state = "DELETE_REQUESTED"
    code, output, _ = preflight(cloud, private_key, capsys)
    assert code == 1
    assert "FAIL  project: project conduit-dev-123 is DELETE_REQUESTED" in output
    assert "FAIL  state bucket: gs://conduit-kops-state does not exist" in output


def test_a_read_only_registry_token_cannot_push(cloud, private_key, capsys):
    cloud.registry_actions = ["pull"]
    code, output, _ = preflight(cloud, private_key, capsys)
    assert code == 1
    assert "grants no push to team/conduit (granted: pull)" in output


def test_permission_checks_are_batched_by_100(cloud, private_key):
    client = GcpClient(cloud.key(private_key), endpoints=Endpoints(cloud.url, cloud.url, cloud.url))
    wanted = [f"compute.things{i}.get" for i in range(150)]
    cloud.project_denied = {wanted[0], wanted[120]}
    assert client.missing_permissions(PROJECT, wanted) == [wanted[0], wanted[120]]
    assert cloud.requests.count(f"POST /v1/projects/{PROJECT}:testIamPermissions") == 2


def test_an_api_error_is_one_line_with_google_status(cloud, private_key):
    client = GcpClient(cloud.key(private_key), endpoints=Endpoints(cloud.url, cloud.url, cloud.url))
    cloud.bucket_exists = False
    with pytest.raises(GcpError) as raised:
        client.bucket(BUCKET)
    assert str(raised.value) == (
        "bucket gs://conduit-kops-state: HTTP 404 NOT_FOUND: The specified bucket does not exist."
    )
    assert raised.value.status == 404


CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens on it here


def test_an_unreachable_endpoint_is_reported_and_not_tried_again(private_key, httpserver):
    cloud = FakeCloud(httpserver, private_key)
    client = GcpClient(
        cloud.key(private_key), endpoints=Endpoints(CLOSED, CLOSED, CLOSED), timeout=2
    )
    with pytest.raises(Unreachable) as first:
        client.project(PROJECT)
    assert first.value.endpoint == CLOSED
    assert str(first.value).startswith(
        "cannot reach http://127.0.0.1:9: Failed to establish a new connection: "
    )
    with pytest.raises(Unreachable) as second:
        client.enabled_services(PROJECT)
    assert second.value is first.value


@pytest.fixture
def no_proxy_variables(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_no_route_to_google_is_one_failure_naming_the_endpoint(
    cloud, private_key, capsys, no_proxy_variables
):
    code, output, _ = preflight(cloud, private_key, capsys, google=CLOSED)
    assert code == 1
    # The reason, the endpoint and the proxy settings: once.
    assert output.count("cannot reach http://127.0.0.1:9: ") == 1
    assert (
        "FAIL  GCP credentials: cannot reach http://127.0.0.1:9: Failed to establish a new "
        "connection: [Errno 111] Connection refused; sent directly: no proxy variable is set "
        "(HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY)" in output
    )
    assert lines(output, "--") == [
        "project", "APIs enabled", "state bucket", "IAM permissions", "backup key",
        "backup bucket",
    ]  # fmt: skip
    assert "--    project: not checked, http://127.0.0.1:9 is unreachable" in output
    assert lines(output, "ok") == ["cluster name", "registry credentials"]
    assert output.rstrip().splitlines()[-1] == (
        "conduit-deploy: error: preflight: cannot reach http://127.0.0.1:9 (the network, or "
        "the proxy variables HTTPS_PROXY, HTTP_PROXY, NO_PROXY), so 7 of 9 checks could not "
        "run (GCP credentials, project, APIs enabled, state bucket, IAM permissions, backup "
        "key, backup bucket); fix them and run again (deploy/google-cloud.md explains each)"
    )
    assert cloud.requests == []


def test_a_dead_proxy_is_named_with_its_variable_and_without_its_password(
    cloud, private_key, capsys, no_proxy_variables
):
    # Every request goes through the proxy: the fake cloud itself is up.
    no_proxy_variables.setenv("HTTP_PROXY", "http://ops:hunter2@127.0.0.1:9")
    code, output, _ = preflight(cloud, private_key, capsys)
    assert code == 1
    assert f"cannot reach {cloud.url}: the proxy failed: " in output
    assert (
        "sent through the proxy http://***@127.0.0.1:9 (HTTP_PROXY=http://***@127.0.0.1:9)"
        in output
    )
    assert "hunter2" not in output
    # Everything goes through that one dead proxy to one endpoint: one report, the rest "--".
    assert output.count(f"cannot reach {cloud.url}: ") == 1
    assert lines(output, "ok") == ["cluster name"]
    assert cloud.requests == []


def test_no_proxy_exempting_the_endpoint_is_said():
    from conduit_deploy.network import proxy_settings

    environ = {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": ".googleapis.com"}
    with pytest.MonkeyPatch.context() as patch:
        for name in PROXY_VARIABLES:
            patch.delenv(name, raising=False)
        for name, value in environ.items():
            patch.setenv(name, value)
        assert proxy_settings("https://storage.googleapis.com/x") == (
            "sent directly, not through a proxy "
            "(HTTPS_PROXY=http://proxy:3128 NO_PROXY=.googleapis.com)"
        )
        assert proxy_settings("https://registry-1.docker.io/v2/") == (
            "sent through the proxy http://proxy:3128 "
            "(HTTPS_PROXY=http://proxy:3128 NO_PROXY=.googleapis.com)"
        )


# --- the backups' bucket and key -------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "value", "check", "message"),
    [
        ("backup_bucket_exists", False, "backup bucket",
         f'gs://{BACKUP_BUCKET} does not exist: create it (deploy/google-cloud.md, "The backup '
         'bucket")'),
        ("backup_denied", {"storage.buckets.get", "storage.objects.create"}, "backup bucket",
         f"{BACKUP_ACCOUNT} lacks storage.buckets.get, storage.objects.create on "
         f"gs://{BACKUP_BUCKET}: on that bucket, grant roles/storage.legacyBucketReader "
         "(storage.buckets.get); grant roles/storage.objectAdmin (storage.objects.create)"),
        ("backup_reads_state", True, "backup key",
         f"{BACKUP_ACCOUNT} may read the kops state bucket gs://{BUCKET} (storage.objects.get, "
         "storage.objects.list), which holds the cluster's secrets"),
    ],
    ids=["missing bucket", "cannot see or write it", "may read the state bucket"],
)  # fmt: skip
def test_each_backup_fault_fails_its_line_with_the_fix(
    cloud, private_key, capsys, fault, value, check, message
):
    setattr(cloud, fault, value)
    code, output, _ = preflight(cloud, private_key, capsys)
    assert code == 1
    assert lines(output, "FAIL") == [check]
    assert f"FAIL  {check}: {message}" in output


def test_the_ci_key_as_backup_key_stops_before_any_request(cloud, private_key, capsys):
    key = cloud.key(private_key)
    code, output, _ = preflight(
        cloud, private_key, capsys, key=key, BACKUP_GCP_CREDENTIAL_FILE=json.dumps(key)
    )
    assert code == 1
    assert output.count("\n") == 1
    assert "BACKUP_GCP_CREDENTIAL_FILE is the same key as GCP_CREDENTIAL_FILE" in output
    assert cloud.requests == []


def test_another_key_of_the_ci_account_as_backup_key_is_refused(cloud, private_key, capsys):
    other = cloud.key(private_key, private_key_id="another-key-of-the-deployer")
    code, output, _ = preflight(
        cloud, private_key, capsys, BACKUP_GCP_CREDENTIAL_FILE=json.dumps(other)
    )
    assert code == 1
    assert f"is a key of the CI's own service account {CI_ACCOUNT}" in output


def test_not_a_service_account_key(private_key, httpserver):
    cloud = FakeCloud(httpserver, private_key)
    client = GcpClient(cloud.key(private_key, type="authorized_user"))
    with pytest.raises(GcpError, match="is not a service-account key"):
        client.authorize()


def test_registry_with_basic_auth(httpserver):
    def probe(request: Request) -> Response:
        auth = request.authorization
        if auth and (auth.username, auth.password) == ("u", "p"):
            return Response("{}")
        return Response("{}", 401, headers={"WWW-Authenticate": 'Basic realm="registry"'})

    httpserver.expect_request("/v2/").respond_with_handler(probe)
    repository = Repository.parse("registry.example.com:5000/team/conduit")
    url = httpserver.url_for("").rstrip("/")
    assert "u may push" in check_push_access(repository, "u", "p", api_url=url)
    with pytest.raises(RegistryError, match="refused DOCKER_REGISTRY_USER 'u'"):
        check_push_access(repository, "u", "wrong", api_url=url)


@pytest.mark.parametrize(
    ("reference", "registry", "path", "api"),
    [
        ("docker.io/team/conduit", "docker.io", "team/conduit", "https://registry-1.docker.io"),
        ("team/conduit", "docker.io", "team/conduit", "https://registry-1.docker.io"),
        ("conduit", "docker.io", "library/conduit", "https://registry-1.docker.io"),
        ("index.docker.io/conduit", "index.docker.io", "library/conduit",
         "https://registry-1.docker.io"),
        ("registry.gitlab.com/g/p/conduit", "registry.gitlab.com", "g/p/conduit",
         "https://registry.gitlab.com"),
        ("localhost:5000/conduit", "localhost:5000", "conduit", "https://localhost:5000"),
    ],
)  # fmt: skip
def test_repository_references(reference, registry, path, api):
    repository = Repository.parse(reference)
    assert (repository.registry, repository.path, repository.api_url()) == (registry, path, api)


@pytest.mark.parametrize(
    ("name", "confirmed", "failure"),
    [
        ("dev.conduit.k8s.local", None, None),
        # Another environment's cluster: the confirmation does not help.
        ("prod.conduit.k8s.local", "prod.conduit.k8s.local", "is the prod cluster, not dev's"),
        ("devx.conduit.k8s.local", None, "does not start with 'dev.'"),
        ("conduit.k8s.local", None, "K8S_CLUSTER_NAME_CONFIRMED=conduit.k8s.local in the dev"),
        ("conduit.k8s.local", "other.k8s.local", "does not start with 'dev.'"),
        ("conduit.k8s.local", "conduit.k8s.local", None),
    ],
)
def test_the_cluster_name_line_applies_the_cluster_name_rule(
    cloud, private_key, capsys, name, confirmed, failure
):
    code, output, _ = preflight(
        cloud, private_key, capsys, K8S_CLUSTER_NAME=name, K8S_CLUSTER_NAME_CONFIRMED=confirmed
    )
    if failure is None:
        assert code == 0, output
        assert f"ok    cluster name: {name}" in output
    else:
        assert code == 1
        assert lines(output, "FAIL") == ["cluster name"]
        assert failure in output


def test_bucket_permissions_include_what_kops_does_to_the_bucket():
    # kops writes its state and sets the bucket's IAM policy (storagebucketiam.go:112,124).
    assert {"storage.objects.create", "storage.buckets.setIamPolicy"} <= set(BUCKET_PERMISSIONS)


def test_requests_stay_local(cloud):
    assert cloud.url.startswith("http://127.0.0.1:")
    assert requests.get(f"{cloud.url}/v2/", timeout=5).status_code == 401


# --- cluster and deploy run it first --------------------------------------------------


@pytest.fixture
def stage_command(recorder, fake_render, clock, tmp_path, capsys):
    """Run `cluster` or `deploy` of dev with the given preflight; (exit code, stderr)."""

    def run(command: str, preflight, *options: str) -> tuple[int, str]:
        ctx = Context(
            environ=ci_environ(),
            runner_factory=recorder.runner,
            render=fake_render,
            clock=clock,
            preflight=preflight,
        )
        code = main([command, "dev", "--out", str(tmp_path / "out"), *options], ctx)
        return code, capsys.readouterr().err

    return run


@pytest.mark.parametrize("command", ["cluster", "deploy"])
def test_a_dry_run_prints_the_preflight_first_and_calls_nothing(
    command, stage_command, recorder, preflight
):
    assert stage_command(command, preflight, "--dry-run")[0] == 0
    assert preflight.calls == []
    assert recorder.planned[0] == "# conduit-deploy preflight dev"


@pytest.mark.parametrize(("command", "registry"), [("cluster", False), ("deploy", True)])
def test_cluster_and_deploy_run_the_preflight_first_and_stop_when_it_fails(
    command, registry, stage_command, recorder
):
    seen: list[tuple[str, bool, int]] = []

    def failing(environment, settings, *, registry):
        seen.append((environment, registry, len(recorder.calls)))
        raise PreflightFailed("preflight: 1 of 6 checks failed (APIs enabled)")

    code, err = stage_command(command, failing)
    assert code == 1
    # The cluster stage pulls no image, so its preflight leaves the registry out.
    assert seen == [("dev", registry, 0)]
    assert recorder.calls == []
    assert err.endswith("conduit-deploy: error: preflight: 1 of 6 checks failed (APIs enabled)\n")
