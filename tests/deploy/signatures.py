"""Sigstore and an OCI registry, faked at the edges only, for the signing tests.

The certificates are real X.509 certificates carrying the extensions Fulcio writes for a
GitLab job (sigstore/fulcio v1.8.8-16-geb10c98e: pkg/identity/gitlabcom/principal.go,
Embed; docs/oid-info.md for the OIDs and their encodings), and FakeVerifier runs the
deploy's real sigstore-python policy on them. What it does not do is what only Sigstore's
public-good instance can show: the certificate chain to Fulcio's root, the signed
certificate timestamp and the Rekor inclusion proof.

The bundles have the JSON shape of sigstore/protobuf-specs' Bundle v0.3
(`verificationMaterial.certificate.rawBytes`, `dsseEnvelope.payload/payloadType`).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from conduit_deploy import signing
from conduit_deploy.signing import Descriptor, ImageNotTrusted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sigstore.errors import VerificationError

from tests.deploy.support import IMAGE_DIGEST

FULCIO = "1.3.6.1.4.1.57264.1"
# docs/oid-info.md: .1 to .6 are raw strings; .8 onwards DER-encoded UTF8String.
ISSUER_V1 = f"{FULCIO}.1"
ISSUER = f"{FULCIO}.8"
BUILD_SIGNER_URI = f"{FULCIO}.9"
RUNNER_ENVIRONMENT = f"{FULCIO}.11"
SOURCE_REPOSITORY_URI = f"{FULCIO}.12"
SOURCE_REPOSITORY_DIGEST = f"{FULCIO}.13"
SOURCE_REPOSITORY_REF = f"{FULCIO}.14"
SOURCE_REPOSITORY_IDENTIFIER = f"{FULCIO}.15"
BUILD_CONFIG_URI = f"{FULCIO}.18"
BUILD_TRIGGER = f"{FULCIO}.20"
RUN_INVOCATION_URI = f"{FULCIO}.21"

SERVER = "https://gitlab.example.com"
PROJECT = "team/conduit"
PROJECT_ID = "42"
# The image's manifest as the registry describes it (docker push stores schema 2).
IMAGE = Descriptor("application/vnd.docker.distribution.manifest.v2+json", IMAGE_DIGEST, 1574)


def _der_utf8(value: str) -> bytes:
    data = value.encode()
    length = bytes([len(data)]) if len(data) < 128 else bytes([0x81, len(data)])
    assert len(data) < 256
    return b"\x0c" + length + data


def gitlab_extensions(
    ref: str, *, server: str = SERVER, project: str = PROJECT, project_id: str = PROJECT_ID
) -> dict[str, bytes]:
    """What Fulcio embeds for a GitLab job of `project` on `ref` (Embed)."""
    config_uri = f"{server}/{project}//.gitlab-ci.yml@{ref}"
    utf8 = {
        ISSUER: server,
        BUILD_SIGNER_URI: config_uri,
        RUNNER_ENVIRONMENT: "gitlab-hosted",
        SOURCE_REPOSITORY_URI: f"{server}/{project}",
        SOURCE_REPOSITORY_DIGEST: "ab" * 20,  # the commit SHA
        SOURCE_REPOSITORY_REF: ref,
        SOURCE_REPOSITORY_IDENTIFIER: project_id,
        BUILD_CONFIG_URI: config_uri,
        BUILD_TRIGGER: "push",
        RUN_INVOCATION_URI: f"{server}/{project}/-/jobs/1001",
    }
    return {ISSUER_V1: server.encode(), **{oid: _der_utf8(v) for oid, v in utf8.items()}}


def fulcio_certificate(
    ref: str,
    *,
    san: str | None = None,
    extensions: dict[str, bytes] | None = None,
    **identity: str,
) -> x509.Certificate:
    """A short-lived code-signing certificate shaped like Fulcio's for a GitLab job: the
    SAN is the ci_config_ref_uri with https, the extensions those of gitlab_extensions."""
    server = identity.get("server", SERVER)
    project = identity.get("project", PROJECT)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sigstore-intermediate")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(minutes=10))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(san or f"{server}/{project}//.gitlab-ci.yml@{ref}")]
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.CODE_SIGNING]), False)
    )
    chosen = extensions if extensions is not None else gitlab_extensions(ref, **identity)
    for oid, value in chosen.items():
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value), critical=False
        )
    return builder.sign(key, hashes.SHA256())


def fake_bundle(certificate: x509.Certificate, statement: bytes) -> bytes:
    """A bundle of protobuf-specs' JSON shape (its signature is not checked here)."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    return json.dumps(
        {
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {"certificate": {"rawBytes": base64.b64encode(der).decode()}},
            "dsseEnvelope": {
                "payload": base64.b64encode(statement).decode(),
                "payloadType": signing.INTOTO_PAYLOAD_TYPE,
                "signatures": [{"sig": base64.b64encode(b"not checked here").decode()}],
            },
        }
    ).encode()


class FakeVerifier:
    """Applies the deploy's policy to the bundle's certificate (the real sigstore-python
    policy classes); trusts the chain, timestamp and log entry, which it cannot check."""

    def verify(self, bundle: bytes, policy) -> tuple[str, bytes]:
        document = json.loads(bundle)
        der = base64.b64decode(document["verificationMaterial"]["certificate"]["rawBytes"])
        try:
            policy.verify(x509.load_der_x509_certificate(der))
        except VerificationError as error:
            raise ImageNotTrusted(str(error)) from None
        envelope = document["dsseEnvelope"]
        return envelope["payloadType"], base64.b64decode(envelope["payload"])


class FakeSigner:
    def __init__(self, certificate: x509.Certificate):
        self.certificate = certificate
        self.signed: list[dict] = []

    def sign(self, statement: bytes) -> bytes:
        self.signed.append(json.loads(statement))
        return fake_bundle(self.certificate, statement)


@dataclass
class FakeRegistry:
    """An OCI registry in memory; referrers_api=False is one without the referrers API,
    where clients keep the `sha256-<hex>` index tag themselves (distribution-spec v1.1)."""

    referrers_api: bool = True
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    images: dict[str, Descriptor] = field(default_factory=lambda: {IMAGE_DIGEST: IMAGE})
    calls: list[str] = field(default_factory=list)

    def descriptor(self, digest: str) -> Descriptor:
        self.calls.append(f"HEAD {digest}")
        return self.images[digest]

    def push_blob(self, data: bytes) -> None:
        self.calls.append(f"blob {signing.sha256_digest(data)}")
        self.blobs[signing.sha256_digest(data)] = data

    def put_manifest(self, reference: str, body: bytes, media_type: str) -> bool:
        self.calls.append(f"PUT {reference} {media_type}")
        if reference.startswith("sha256:"):
            assert signing.sha256_digest(body) == reference
        for layer in json.loads(body).get("layers", []):
            assert layer["digest"] in self.blobs, "a manifest before its blobs"
        self.manifests[reference] = (body, media_type)
        return self.referrers_api

    def manifest(self, reference: str) -> bytes | None:
        found = self.manifests.get(reference)
        return found[0] if found else None

    def referrers(self, digest: str) -> dict | None:
        if not self.referrers_api:
            return None
        found = []
        for reference, (body, _) in self.manifests.items():
            manifest = json.loads(body)
            if (manifest.get("subject") or {}).get("digest") == digest:
                found.append(
                    {
                        "mediaType": manifest["mediaType"],
                        "digest": reference,
                        "size": len(body),
                        "artifactType": manifest.get("artifactType"),
                        "annotations": manifest.get("annotations", {}),
                    }
                )
        return {"schemaVersion": 2, "mediaType": signing.OCI_INDEX, "manifests": found}

    def blob(self, digest: str) -> bytes:
        return self.blobs[digest]


def signed_by(
    registry: FakeRegistry,
    certificate: x509.Certificate,
    digest: str = IMAGE_DIGEST,
    predicate_type: str = signing.SIGN_PREDICATE,
) -> None:
    """Attach a bundle signed with `certificate` to `digest`, as `sign` does."""
    body = signing.statement(digest, predicate_type, {})
    signing.attach(
        registry,
        registry.images[digest],
        fake_bundle(certificate, body),
        predicate_type,
        datetime(2026, 12, 5, tzinfo=UTC),
    )


def fake_sigstore(registry: FakeRegistry, signer: FakeSigner | None = None) -> signing.Sigstore:
    return signing.Sigstore(
        registry=lambda repository, user, password: registry,
        signer=lambda token: signer or FakeSigner(fulcio_certificate("refs/heads/main")),
        verifier=FakeVerifier,
    )


def signed_world() -> signing.Sigstore:
    """The image of the tests' pipelines, signed by them: the release tag v1.2.3 and the
    default branch of this project."""
    registry = FakeRegistry()
    for ref in ("refs/tags/v1.2.3", "refs/heads/main"):
        signed_by(registry, fulcio_certificate(ref))
    return fake_sigstore(registry)
