"""Keyless signing in the sign job and the deploy's check: the commands' decisions with
the recording runner, the certificate policy on Fulcio-shaped certificates
(tests/deploy/signatures.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from conduit_deploy import signing
from conduit_deploy.cli import Context, main
from conduit_deploy.signing import ImageNotTrusted, SignerIdentity, verify_image

from tests.deploy.signatures import (
    SOURCE_REPOSITORY_DIGEST,
    SOURCE_REPOSITORY_URI,
    FakeRegistry,
    FakeSigner,
    FakeVerifier,
    fake_bundle,
    fake_sigstore,
    fulcio_certificate,
    gitlab_extensions,
    signed_by,
)
from tests.deploy.support import IMAGE_DIGEST, ci_environ, release_environ

RELEASE = SignerIdentity("https://gitlab.example.com", "team/conduit", "refs/tags/v1.2.3", "42")


def _verify(certificate, identity=RELEASE, referrers_api=True) -> str:
    registry = FakeRegistry(referrers_api=referrers_api)
    signed_by(registry, certificate)
    return verify_image(IMAGE_DIGEST, identity, registry, FakeVerifier())


@pytest.mark.parametrize("referrers_api", [True, False])
def test_the_release_pipelines_signature_is_accepted(referrers_api):
    assert _verify(fulcio_certificate("refs/tags/v1.2.3"), referrers_api=referrers_api)


@pytest.mark.parametrize(
    ("certificate", "reason"),
    [
        (lambda: fulcio_certificate("refs/tags/v1.2.3", project="mallory/conduit"), "not match"),
        (lambda: fulcio_certificate("refs/heads/feature"), "not match"),
        (lambda: fulcio_certificate("refs/tags/v1.2.4"), "not match"),
        (
            lambda: fulcio_certificate("refs/tags/v1.2.3", server="https://gitlab.evil.example"),
            "not match",
        ),
        (lambda: fulcio_certificate("refs/tags/v1.2.3", project_id="7"), "not match"),
        # The SAN without GitLab's `//<ci file>@<ref>` form.
        (
            lambda: fulcio_certificate(
                "refs/tags/v1.2.3",
                san="https://gitlab.example.com/team/conduit/.gitlab-ci.yml@refs/tags/v1.2.3",
            ),
            "not match",
        ),
    ],
    ids=[
        "foreign project",
        "unprotected branch",
        "another tag",
        "another issuer",
        "re-created project",
        "wrong SAN form",
    ],
)
def test_a_signature_by_another_identity_is_refused(certificate, reason):
    with pytest.raises(ImageNotTrusted, match=reason):
        _verify(certificate())


def test_the_source_repository_must_be_in_fulcios_extension():
    # The right value under a neighbouring OID is not the Source Repository URI.
    extensions = gitlab_extensions("refs/tags/v1.2.3")
    extensions[SOURCE_REPOSITORY_DIGEST] = extensions.pop(SOURCE_REPOSITORY_URI)
    with pytest.raises(ImageNotTrusted, match=r"1\.3\.6\.1\.4\.1\.57264\.1\.12"):
        _verify(fulcio_certificate("refs/tags/v1.2.3", extensions=extensions))


def test_an_unsigned_image_and_a_signature_of_another_digest_are_refused():
    with pytest.raises(ImageNotTrusted, match="no Sigstore signature"):
        verify_image(IMAGE_DIGEST, RELEASE, FakeRegistry(), FakeVerifier())
    registry = FakeRegistry()
    other = "sha256:" + "ab" * 32
    registry.images[other] = registry.images[IMAGE_DIGEST]
    # A bundle attached to the image but stating another digest.
    body = signing.statement(other, signing.SIGN_PREDICATE, {})
    signing.attach(
        registry,
        registry.images[IMAGE_DIGEST],
        fake_bundle(fulcio_certificate("refs/tags/v1.2.3"), body),
        signing.SIGN_PREDICATE,
        datetime.now(UTC),
    )
    with pytest.raises(ImageNotTrusted, match="signs"):
        verify_image(IMAGE_DIGEST, RELEASE, registry, FakeVerifier())


def test_prod_refuses_an_unsigned_image_in_one_line(run_command, recorder, fake_render, preflight):
    code, _, err = run_command(
        "deploy",
        "prod",
        environ=release_environ(),
        render=fake_render,
        preflight=preflight,
        sigstore=fake_sigstore(FakeRegistry()),
    )
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("conduit-deploy: error: prod refuses ")
    assert "no Sigstore signature is attached" in err
    assert "Traceback" not in err
    assert not any(c[0] == "kubectl" and "apply" in c for c in recorder.commands)


def test_prod_refuses_an_image_signed_by_another_project(run_command, fake_render, preflight):
    registry = FakeRegistry()
    signed_by(registry, fulcio_certificate("refs/tags/v1.2.3", project="mallory/conduit"))
    code, _, err = run_command(
        "deploy",
        "prod",
        environ=release_environ(),
        render=fake_render,
        preflight=preflight,
        sigstore=fake_sigstore(registry),
    )
    assert code == 1
    assert "is by https://gitlab.example.com/team/conduit//.gitlab-ci.yml@refs/tags/v1.2.3" in err


def test_dev_warns_about_an_unsigned_image_and_goes_on(recorder, capsys):
    dev = SignerIdentity("https://gitlab.example.com", "team/conduit", "refs/heads/main", "42")
    signing.check_signature(
        "dev", "team/conduit@" + IMAGE_DIGEST, IMAGE_DIGEST, lambda: dev,
        FakeRegistry, FakeVerifier, recorder.runner(),
    )  # fmt: skip
    err = capsys.readouterr().err
    assert "warning: dev deploys team/conduit@sha256:" in err
    assert "unverified" in err


def _sign(recorder, capsys, environ, sigstore, *argv):
    ctx = Context(environ=environ, runner_factory=recorder.runner, sigstore=sigstore)
    code = main(["sign", *argv], ctx)
    return code, capsys.readouterr().err


def test_sign_signs_and_attests_the_pushed_digest(recorder, capsys, tmp_path):
    registry = FakeRegistry(referrers_api=False)
    signer = FakeSigner(fulcio_certificate("refs/heads/main"))
    sbom = tmp_path / "sbom.cdx.json"
    sbom.write_text(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6"}))
    environ = ci_environ(CONDUIT_IMAGE_DIGEST=IMAGE_DIGEST, SIGSTORE_ID_TOKEN="eyJ.token.sig")
    code, err = _sign(
        recorder,
        capsys,
        environ,
        fake_sigstore(registry, signer),
        "--sbom",
        str(sbom),
        "--docker-config",
        str(tmp_path / "docker"),
    )
    assert code == 0, err
    image = f"docker.io/team/conduit@{IMAGE_DIGEST}"
    assert ("syft", "scan", f"registry:{image}", "--output", f"cyclonedx-json={sbom}") in (
        recorder.commands
    )
    config = json.loads((tmp_path / "docker" / "config.json").read_text())
    assert list(config["auths"]) == ["https://index.docker.io/v1/"]
    assert [s["predicateType"] for s in signer.signed] == [
        signing.SIGN_PREDICATE,
        signing.CYCLONEDX_PREDICATE,
    ]
    assert signer.signed[1]["predicate"]["bomFormat"] == "CycloneDX"
    assert all(s["subject"] == [{"digest": {"sha256": "4e" * 32}}] for s in signer.signed)
    # Without the referrers API the index sits under the fallback tag, one entry each.
    index = json.loads(registry.manifest("sha256-" + "4e" * 32))
    assert [m["annotations"][signing.PREDICATE_ANNOTATION] for m in index["manifests"]] == [
        signing.SIGN_PREDICATE,
        signing.CYCLONEDX_PREDICATE,
    ]
    manifest = json.loads(registry.manifest(index["manifests"][0]["digest"]))
    assert manifest["artifactType"] == signing.BUNDLE_MEDIA_TYPE
    assert manifest["subject"]["digest"] == IMAGE_DIGEST
    assert manifest["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    # What sign attached is what deploy of dev accepts.
    dev = SignerIdentity("https://gitlab.example.com", "team/conduit", "refs/heads/main", "42")
    assert verify_image(IMAGE_DIGEST, dev, registry, FakeVerifier())


def test_sign_without_the_jobs_token_fails_before_anything_runs(recorder, capsys):
    environ = ci_environ(CONDUIT_IMAGE_DIGEST=IMAGE_DIGEST)
    code, err = _sign(recorder, capsys, environ, fake_sigstore(FakeRegistry()))
    assert code == 1
    assert "SIGSTORE_ID_TOKEN is not set" in err
    assert "aud: sigstore" in err
    assert recorder.commands == []
