"""The Google Cloud REST calls of the preflight, authorised by the key or by Workload
Identity Federation.

google-auth turns the credential into an OAuth access token: a key signs a JWT that it
exchanges at the key's token_uri; an external-account configuration (workload_identity.py)
exchanges the job's ID token at STS, then impersonates the service account. Each call
sends the access token as a Bearer token. The base URLs are parameters so that tests can
serve them from 127.0.0.1.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import google.auth.credentials
import google.auth.exceptions
import google.auth.transport.requests
import requests
from google.auth import identity_pool
from google.oauth2 import service_account

from . import network
from .errors import GcpError, Unreachable

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# projects.testIamPermissions takes at most 100 permissions per call.
PERMISSIONS_PER_CALL = 100


@dataclass(frozen=True)
class Endpoints:
    resource_manager: str = "https://cloudresourcemanager.googleapis.com"
    service_usage: str = "https://serviceusage.googleapis.com"
    storage: str = "https://storage.googleapis.com"
    # Workload Identity Federation's token exchange and impersonation.
    sts_token: str = "https://sts.googleapis.com/v1/token"  # noqa: S105 - a URL
    iam_credentials: str = "https://iamcredentials.googleapis.com"


def _api_error(response: requests.Response) -> str:
    """'HTTP 403 PERMISSION_DENIED: message' from Google's JSON error body, if any."""
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    if not isinstance(error, dict):  # OAuth endpoints answer {"error": "invalid_grant"}
        error = {"status": str(error)}
    parts = [f"HTTP {response.status_code}", str(error.get("status") or response.reason or "")]
    message = " ".join(str(error.get("message") or "").split())
    return " ".join(p for p in parts if p) + (f": {message[:300]}" if message else "")


class GcpClient:
    def __init__(
        self,
        key: Mapping[str, Any],
        *,
        endpoints: Endpoints | None = None,
        session: requests.Session | None = None,
        timeout: float = 15.0,
        unreachable: dict[str, Unreachable] | None = None,
    ):
        self.endpoints = endpoints or Endpoints()
        self.session = session or requests.Session()
        self.timeout = timeout
        self._key = key
        self._credentials: google.auth.credentials.Credentials | None = None
        # An endpoint that could not be reached is not tried again: every later call to
        # it fails at once with the same error, which the preflight reports once.
        # Clients of the same run share this record.
        self._unreachable: dict[str, Unreachable] = {} if unreachable is None else unreachable

    def _reach(self, url: str) -> None:
        known = self._unreachable.get(network.endpoint(url))
        if known is not None:
            raise known

    def _network_failure(self, url: str, error: BaseException) -> Unreachable:
        failure = network.unreachable(url, error)
        self._unreachable[failure.endpoint] = failure
        return failure

    @property
    def email(self) -> str:
        """The service account the calls run as (the key's, or the impersonated one)."""
        if self._key.get("type") == "external_account":
            url = str(self._key.get("service_account_impersonation_url") or "")
            return url.rpartition("/serviceAccounts/")[2].removesuffix(":generateAccessToken")
        return str(self._key.get("client_email", ""))

    @property
    def _what(self) -> str:
        federated = self._key.get("type") == "external_account"
        return "the job's ID token" if federated else "the key"

    def _credentials_from_info(self) -> google.auth.credentials.Credentials:
        kind = self._key.get("type")
        try:
            if kind == "service_account":
                return service_account.Credentials.from_service_account_info(
                    self._key, scopes=[SCOPE]
                )
            if kind == "external_account":
                return identity_pool.Credentials.from_info(self._key, scopes=[SCOPE])
        except (ValueError, KeyError) as error:
            raise GcpError(self._what, f"cannot be used: {error}") from None
        raise GcpError(
            "the key",
            'is not a service-account key (its "type" is not "service_account")',
        )

    def authorize(self) -> None:
        """Exchange the credential for an access token; GcpError says why that failed."""
        credentials = self._credentials_from_info()
        token_uri = str(
            self._key.get("token_uri")
            or self._key.get("token_url")
            or "https://oauth2.googleapis.com/token"
        )
        self._reach(token_uri)
        # The transport's own default waits 120 s for an answer: bound it like every call.
        request = functools.partial(
            google.auth.transport.requests.Request(self.session), timeout=self.timeout
        )
        try:
            credentials.refresh(request)
        except (google.auth.exceptions.RefreshError, google.auth.exceptions.OAuthError) as error:
            # args[0] is Google's "error: description" (e.g. invalid_grant: Invalid JWT
            # Signature for a deleted key; STS's refusals are OAuthErrors); never the
            # credential itself.
            raise GcpError(f"{self._what} was refused", str(error.args[0])[:300]) from None
        except google.auth.exceptions.TransportError as error:
            cause = error.__cause__ or error
            if network.is_network_failure(cause):
                raise self._network_failure(token_uri, cause) from None
            raise GcpError("the token endpoint", network.reason(cause)) from None
        self._credentials = credentials

    def _call(self, what: str, method: str, url: str, **kwargs: Any) -> dict:
        if self._credentials is None:
            self.authorize()
        self._reach(url)
        headers = {"Authorization": f"Bearer {self._credentials.token}"}  # type: ignore[union-attr]
        try:
            response = self.session.request(
                method, url, headers=headers, timeout=self.timeout, **kwargs
            )
        except requests.RequestException as error:
            if network.is_network_failure(error):
                raise self._network_failure(url, error) from None
            raise GcpError(what, f"{type(error).__name__}: {network.reason(error)}") from None
        if not response.ok:
            raise GcpError(what, _api_error(response), response.status_code)
        try:
            return response.json() if response.content else {}
        except ValueError:
            raise GcpError(what, f"HTTP {response.status_code}, a body that is not JSON") from None

    # --- Cloud Resource Manager v1 -------------------------------------------------------

    def project(self, project_id: str) -> dict:
        """projects.get: the project's number, name and lifecycleState."""
        return self._call(
            f"project {project_id}",
            "GET",
            f"{self.endpoints.resource_manager}/v1/projects/{project_id}",
        )

    def missing_permissions(self, project_id: str, permissions: Iterable[str]) -> list[str]:
        """projects.testIamPermissions: which of `permissions` the caller lacks there."""
        wanted = list(dict.fromkeys(permissions))
        granted: set[str] = set()
        for start in range(0, len(wanted), PERMISSIONS_PER_CALL):
            batch = wanted[start : start + PERMISSIONS_PER_CALL]
            body = self._call(
                f"testIamPermissions on project {project_id}",
                "POST",
                f"{self.endpoints.resource_manager}/v1/projects/{project_id}:testIamPermissions",
                json={"permissions": batch},
            )
            granted.update(body.get("permissions") or [])
        return [p for p in wanted if p not in granted]

    # --- Service Usage v1 ----------------------------------------------------------------

    def enabled_services(self, project_id: str) -> set[str]:
        """services.list with filter state:ENABLED, every page."""
        return set(self._enabled_service_pages(project_id))

    def _enabled_service_pages(self, project_id: str) -> Iterator[str]:
        params: dict[str, Any] = {"filter": "state:ENABLED", "pageSize": 200}
        while True:
            body = self._call(
                f"the enabled APIs of project {project_id}",
                "GET",
                f"{self.endpoints.service_usage}/v1/projects/{project_id}/services",
                params=params,
            )
            for service in body.get("services") or []:
                yield str(service.get("config", {}).get("name") or "").strip()
            token = body.get("nextPageToken")
            if not token:
                return
            params = {**params, "pageToken": token}

    # --- Cloud Storage JSON API v1 -------------------------------------------------------

    def bucket(self, name: str) -> dict:
        """buckets.get: the bucket's location and settings."""
        url = f"{self.endpoints.storage}/storage/v1/b/{name}"
        return self._call(f"bucket gs://{name}", "GET", url)

    def missing_bucket_permissions(self, name: str, permissions: Iterable[str]) -> list[str]:
        """buckets.testIamPermissions: which of `permissions` the caller lacks on the bucket.

        GET storage/v1/b/BUCKET/iam/testPermissions?permissions=…, answered with
        {"kind": "storage#testIamPermissionsResponse", "permissions": [held ones]}; the
        call itself needs no permission (cloud.google.com/storage/docs/json_api/v1/
        buckets/testIamPermissions), so a key that may only use objects can ask it.
        """
        wanted = list(dict.fromkeys(permissions))
        body = self._call(
            f"testIamPermissions on bucket gs://{name}",
            "GET",
            f"{self.endpoints.storage}/storage/v1/b/{name}/iam/testPermissions",
            params={"permissions": wanted},
        )
        granted = set(body.get("permissions") or [])
        return [p for p in wanted if p not in granted]
