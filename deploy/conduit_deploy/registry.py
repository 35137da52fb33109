"""Do the registry credentials work, and may they push the image repository?

The Docker Registry HTTP API v2 way, which Docker Hub, GitLab and GHCR all speak: ask
`/v2/` anonymously, follow its `WWW-Authenticate` challenge, and request a token for
`repository:<path>:pull,push` with the user and password (or access token). A 401 there
means the credentials are wrong. When the token is a JWT (Docker Hub's are), its
`access` claim says which actions were granted, so a read-only token is caught too.
The password is only ever sent as HTTP basic auth and never printed.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass

import requests

from . import images, network
from .errors import RegistryError

# Docker Hub's registry API is not served on docker.io itself.
_API_HOSTS = dict.fromkeys(images.DOCKER_HUB_HOSTS, "registry-1.docker.io")
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Repository:
    registry: str  # host[:port] as written in the image reference
    path: str  # e.g. team/conduit

    @classmethod
    def parse(cls, repository: str) -> Repository:
        """From a repository without tag, as images.check_repository accepts it."""
        host = images.registry_host(repository)
        path = repository[len(host) + 1 :] if host else repository
        registry = images.registry_of(repository)
        if registry in images.DOCKER_HUB_HOSTS and "/" not in path:
            path = f"library/{path}"  # Docker Hub's official images
        return cls(registry, path)

    def api_url(self, scheme: str = "https") -> str:
        return f"{scheme}://{_API_HOSTS.get(self.registry, self.registry)}"


def _jwt_actions(token: str, path: str) -> set[str] | None:
    """The actions a JWT grants on `path`, or None when the token is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, json.JSONDecodeError):
        return None
    access = claims.get("access") if isinstance(claims, dict) else None
    if not isinstance(access, list):
        return None
    granted: set[str] = set()
    for entry in access:
        if not isinstance(entry, dict):
            continue
        if (entry.get("type"), entry.get("name")) == ("repository", path):
            granted.update(entry.get("actions") or [])
    return granted


def check_push_access(
    repository: Repository,
    user: str,
    password: str,
    *,
    session: requests.Session | None = None,
    timeout: float = 15.0,
    api_url: str | None = None,
) -> str:
    """Raise RegistryError unless user/password may push to repository; return a summary."""
    session = session or requests.Session()
    base = (api_url or repository.api_url()).rstrip("/")
    where = f"registry {repository.registry}"
    try:
        probe = session.get(f"{base}/v2/", timeout=timeout)
        challenge = probe.headers.get("WWW-Authenticate", "")
        scheme = challenge.split(" ", 1)[0].lower()
        if probe.status_code == 401 and scheme == "bearer":
            params = dict(_CHALLENGE_PARAM.findall(challenge))
            if "realm" not in params:
                raise RegistryError(f"{where}: its Bearer challenge names no realm")
            response = session.get(
                params["realm"],
                params={
                    "service": params.get("service", ""),
                    "scope": f"repository:{repository.path}:pull,push",
                },
                auth=(user, password),
                timeout=timeout,
            )
        elif probe.status_code == 401 and scheme == "basic":
            response = session.get(f"{base}/v2/", auth=(user, password), timeout=timeout)
        elif probe.ok:
            return f"{where} asks for no credentials"
        else:
            raise RegistryError(f"{where}: GET /v2/ answered HTTP {probe.status_code}")
    except requests.RequestException as error:
        if network.is_network_failure(error):
            url = error.request.url if error.request is not None else base
            raise network.unreachable(str(url), error) from None
        raise RegistryError(f"{where}: {type(error).__name__}: {network.reason(error)}") from None
    if response.status_code in (401, 403):
        raise RegistryError(
            f"{where} refused DOCKER_REGISTRY_USER {user!r} with DOCKER_REGISTRY_PASSWORD "
            f"(HTTP {response.status_code}): wrong user, or a revoked or mistyped token"
        )
    if not response.ok:
        raise RegistryError(f"{where}: token request answered HTTP {response.status_code}")
    if scheme == "bearer":
        try:
            body = response.json()
        except ValueError:
            body = {}
        token = str(body.get("token") or body.get("access_token") or "")
        actions = _jwt_actions(token, repository.path)
        if actions is not None and "push" not in actions:
            raise RegistryError(
                f"{where} accepted {user!r} but grants no push to {repository.path} "
                f"(granted: {', '.join(sorted(actions)) or 'nothing'}): use an access token "
                "with Read & Write scope, on a repository the user may write"
            )
    return f"{user} may push to {repository.registry}/{repository.path}"
