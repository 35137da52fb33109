"""Deploy by digest: the digest pack recorded is what render pins, prod refuses to run
anything else, and the canary and a rollback run pinned images because the Deployment's
pod template carries the digest (`kubectl rollout undo` restores an earlier template).
"""

from __future__ import annotations

import pytest
from conduit_deploy import canary
from conduit_deploy.errors import ConfigError
from conduit_deploy.versioning import build_info, check_digest

from tests.k8s.support import load_all

from .support import IMAGE_DIGEST, ScriptedCluster, ci_environ, release_environ, tag_environ
from .test_deploy import Cluster, Smoke

PINNED = f"docker.io/team/conduit@{IMAGE_DIGEST}"


@pytest.fixture
def deploy(run_command, recorder, fake_render, preflight, tmp_path, downloads):
    cluster = Cluster()
    cluster.revisions = ["", "1"]  # a first release: prod rolls out without a canary
    recorder.respond = cluster.respond

    def run(environment, environ):
        return run_command(
            "deploy", environment, "--env-file", str(tmp_path / "deploy.env"),
            environ=environ, render=fake_render, smoke=Smoke(), preflight=preflight,
        )  # fmt: skip

    return run


def test_prod_renders_the_digest_pack_recorded_never_the_tag(deploy, fake_render):
    code, _, err = deploy("prod", release_environ("v1.2.3"))
    assert code == 0, err
    assert fake_render.received[0].image == PINNED


def test_prod_without_a_digest_is_refused_before_any_command(
    deploy, recorder, preflight, fake_render
):
    code, _, err = deploy("prod", tag_environ("v1.2.3"))
    assert (code, recorder.calls, preflight.calls) == (1, [], [])
    assert err.splitlines()[-1] == (
        "conduit-deploy: error: prod deploys only an image pinned by digest, and "
        "CONDUIT_IMAGE_DIGEST is not set: deploy:prod takes it from the pack job's dotenv "
        "report (needs: [pack]); at a terminal, export CONDUIT_IMAGE_DIGEST=sha256:<digest> "
        "of the pushed docker.io/team/conduit:v1.2.3"
    )


def test_dev_without_a_digest_runs_the_tag_and_says_so(deploy, fake_render):
    code, _, err = deploy("dev", ci_environ())
    assert code == 0, err
    assert fake_render.received[0].image == "docker.io/team/conduit:01234567"
    assert (
        "CONDUIT_IMAGE_DIGEST is not set: dev runs the tag docker.io/team/conduit:01234567, "
        "not a digest" in err
    )


def test_dev_with_the_digest_runs_it(deploy, fake_render):
    code, _, err = deploy("dev", ci_environ(CONDUIT_IMAGE_DIGEST=IMAGE_DIGEST))
    assert code == 0, err
    assert fake_render.received[0].image == PINNED
    assert f"==> deploy: {PINNED} to dev" in err


@pytest.mark.parametrize(
    "value",
    [
        "4e" * 32,  # no algorithm
        "sha256:" + "4E" * 32,  # registries write lower-case hex
        "sha256:" + "4e" * 31,  # too short
        "sha512:" + "4e" * 64,  # not what registries name manifests by
        "v1.2.3",  # a tag where the digest belongs
    ],
)
def test_a_digest_that_is_not_one_is_refused_with_a_one_line_error(deploy, recorder, value):
    code, _, err = deploy("prod", release_environ("v1.2.3", CONDUIT_IMAGE_DIGEST=value))
    assert (code, recorder.calls) == (1, [])
    assert err == (
        "conduit-deploy: error: CONDUIT_IMAGE_DIGEST must be the pushed image's digest, "
        f"sha256:<64 lower-case hex digits> (what `conduit-deploy pack` writes), got {value!r}\n"
    )


def test_check_digest_accepts_what_docker_push_reports():
    assert check_digest(f" {IMAGE_DIGEST}\n") == IMAGE_DIGEST
    with pytest.raises(ConfigError):
        check_digest("sha256:")


def test_the_rendered_deployment_and_its_canary_pin_the_digest(run_command, recorder, tmp_path):
    """The real render (kustomize): the pod template names the image by digest alone,
    and the canary Deployment, made from it, too."""
    recorder.respond = ScriptedCluster({})  # runs `kubectl kustomize` for real
    environ = release_environ("v1.2.3", PROD_HOST="conduit.example.com")
    code, _, err = run_command("render", "prod", environ=environ)
    assert code == 0, err
    app = tmp_path / "out" / "04-app.yaml"
    [deployment] = [o for o in load_all(app) if o["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == PINNED  # no `:v1.2.3` beside the digest
    [init] = deployment["spec"]["template"]["spec"]["initContainers"]
    assert init["image"] == PINNED  # the migrations run the same manifest
    pod = canary.canary_deployment(deployment, 1)["spec"]["template"]["spec"]
    assert {c["image"] for c in (*pod["containers"], *pod["initContainers"])} == {PINNED}


def test_version_reports_the_pinned_image_once_the_digest_is_known(recorder):
    info = build_info(release_environ("v1.2.3"), recorder.runner())
    assert info.image("docker.io/team/conduit") == PINNED
    assert info.tagged_image("docker.io/team/conduit") == "docker.io/team/conduit:v1.2.3"
