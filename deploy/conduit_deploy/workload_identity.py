"""Google Cloud credentials from the GitLab job's OIDC token (Workload Identity Federation).

The job asks GitLab for an ID token (`id_tokens: GCP_ID_TOKEN` in .gitlab-ci.yml) whose
audience is the pool provider. At job start the deploy tool writes that token to a file
and, beside it, an external-account credential configuration that names the file.
google-auth (the preflight), kops (Go's golang.org/x/oauth2/google) and gcloud read the
configuration, exchange the token at Google's Security Token Service for a federated
token, and trade that for a one-hour access token of the service account it may
impersonate. No long-lived key exists anywhere.

The configuration's fields are those google-auth 2.62.2 reads
(google/auth/external_account.py Credentials.from_info, identity_pool.py
_validate_file_or_url_config) and that `gcloud iam workload-identity-pools
create-cred-config` writes (cloud.google.com/iam/docs/workload-identity-federation-with-
deployment-pipelines, "Create a credential configuration").
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

STS_TOKEN_URL = "https://sts.googleapis.com/v1/token"  # noqa: S105 - a URL
IAM_CREDENTIALS = "https://iamcredentials.googleapis.com"
# RFC 8693 token type of an OIDC ID token (google-auth: subject_token_type).
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105 - a type name
# The ID token's variable, named by .gitlab-ci.yml's id_tokens.
ID_TOKEN_VARIABLE = "GCP_ID_TOKEN"  # noqa: S105 - a variable name

# projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER. Pool and
# provider ids: 4-32 of a-z, 0-9 and '-', not starting with the reserved `gcp-`
# (cloud.google.com/iam/docs/reference/rest/v1/projects.locations.workloadIdentityPools
# .providers/create). STS names the project by number, never by id.
_PROVIDER = re.compile(
    r"^projects/(?P<number>[^/]+)/locations/(?P<location>[^/]+)/workloadIdentityPools/"
    r"(?P<pool>[^/]+)/providers/(?P<provider>[^/]+)$"
)
_ID = re.compile(r"^[a-z0-9-]{4,32}$")
# Service-account ids are 6-30 characters (a letter first, no '-' last) in a project.
_SERVICE_ACCOUNT = re.compile(
    r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z][a-z0-9-]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com$"
)
_IAM_PREFIX = "//iam.googleapis.com/"


def provider_name(value: str) -> str:
    """The provider's full resource name (the gcloud output, with or without the
    //iam.googleapis.com/ of the STS audience)."""
    name = value.strip().removeprefix(_IAM_PREFIX).removeprefix("https://iam.googleapis.com/")
    match = _PROVIDER.match(name)
    if not match:
        raise ValueError(
            "must be projects/PROJECT_NUMBER/locations/global/workloadIdentityPools/POOL/"
            f"providers/PROVIDER (`gcloud iam workload-identity-pools providers describe "
            f"PROVIDER --workload-identity-pool=POOL --location=global --format='value(name)'`), "
            f"got {value!r}"
        )
    if not match["number"].isdigit():
        raise ValueError(
            f"must name the project by its number, not its id {match['number']!r} "
            "(`gcloud projects describe PROJECT --format='value(projectNumber)'`)"
        )
    if match["location"] != "global":
        raise ValueError(f"names location {match['location']!r}; pools live in `global`")
    for what in ("pool", "provider"):
        part = match[what]
        if not _ID.match(part) or part.startswith("gcp-"):
            raise ValueError(
                f"has the {what} id {part!r}: ids are 4-32 of a-z, 0-9 and '-', "
                "not starting with 'gcp-'"
            )
    return name


def service_account(value: str) -> str:
    if not _SERVICE_ACCOUNT.match(value):
        raise ValueError(
            "must be a service account's email, NAME@PROJECT.iam.gserviceaccount.com, "
            f"got {value!r}"
        )
    return value


@dataclass(frozen=True)
class IdToken:
    """The job's OIDC ID token (a JWT) and the claims the tool checks before using it."""

    text: str
    audience: tuple[str, ...]
    claims: dict[str, Any]

    def __repr__(self) -> str:  # the token is a credential: never in logs
        return f"IdToken(audience={self.audience!r})"


def id_token(value: str) -> IdToken:
    """A JWT's claims, read without verifying its signature: Google's STS verifies it
    against GitLab's keys. Here it only lets a wrong audience fail with a clear message."""
    parts = value.strip().split(".")
    try:
        if len(parts) != 3:
            raise ValueError
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeEncodeError):
        raise ValueError(
            "is not a JWT (three base64url parts): it must be the job's ID token from "
            "`id_tokens`, never set by hand"
        ) from None
    if not isinstance(claims, dict):
        raise ValueError("is not a JWT: its payload is not a JSON object")
    audience = claims.get("aud")
    audiences = (audience,) if isinstance(audience, str) else tuple(audience or ())
    return IdToken(value.strip(), tuple(str(a) for a in audiences), claims)


def expected_audience(provider: str) -> str:
    """The audience a provider accepts when its allowed audiences are left empty
    (cloud.google.com/iam/docs/workload-identity-federation-with-deployment-pipelines:
    "the default audience"), which .gitlab-ci.yml's id_tokens asks for."""
    return f"https://iam.googleapis.com/{provider}"


@dataclass(frozen=True)
class WorkloadIdentity:
    """The pool provider, the service account it may impersonate, the job's token."""

    provider: str  # projects/N/locations/global/workloadIdentityPools/P/providers/R
    service_account: str
    token: IdToken

    @property
    def audience(self) -> str:
        """The STS audience: the provider's resource name under //iam.googleapis.com/."""
        return f"{_IAM_PREFIX}{self.provider}"

    def audience_problem(self) -> str | None:
        wanted = expected_audience(self.provider)
        if wanted in self.token.audience:
            return None
        shown = ", ".join(self.token.audience) or "none"
        return (
            f"{ID_TOKEN_VARIABLE} is for the audience {shown}, not the provider's {wanted}: "
            "the job's `id_tokens` must ask for `aud: https://iam.googleapis.com/"
            "$GCP_WORKLOAD_IDENTITY_PROVIDER` (.gitlab-ci.yml)"
        )

    def credential_config(
        self,
        token_file: str,
        *,
        token_url: str = STS_TOKEN_URL,
        iam_credentials: str = IAM_CREDENTIALS,
    ) -> dict[str, Any]:
        """The external-account configuration GOOGLE_APPLICATION_CREDENTIALS names.

        The endpoints are parameters so that tests can serve them from 127.0.0.1.
        """
        return {
            "type": "external_account",
            "audience": self.audience,
            "subject_token_type": JWT_TOKEN_TYPE,
            "token_url": token_url,
            # The token file holds the bare JWT ("text"), as GitLab hands it over.
            "credential_source": {"file": token_file, "format": {"type": "text"}},
            "service_account_impersonation_url": (
                f"{iam_credentials}/v1/projects/-/serviceAccounts/"
                f"{self.service_account}:generateAccessToken"
            ),
        }
