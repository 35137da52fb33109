"""The API pods pull their image with the registry account of the CI variables.

A private repository needs it, and with it the nodes do not pull anonymously (Docker
Hub limits anonymous pulls per address). The credentials go into an immutable
kubernetes.io/dockerconfigjson Secret whose name carries a content hash, like the other
generated Secrets, and appear nowhere else.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest
from conduit_deploy.render import docker_config_json, render

from tests.k8s.support import RenderedEnv, load_all, sample_values


def pull_secret(env: RenderedEnv) -> dict:
    [secret] = [s for s in env.find("Secret") if s["type"] == "kubernetes.io/dockerconfigjson"]
    return secret


def test_the_api_pods_pull_with_the_registry_secret(env):
    secret = pull_secret(env)
    [deployment] = env.find("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": secret["metadata"]["name"]}]
    assert secret["metadata"]["name"].startswith("registry-credentials-")
    assert secret["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert secret["immutable"] is True


def test_the_secret_holds_the_account_for_the_images_registry(env):
    config = json.loads(base64.b64decode(pull_secret(env)["data"][".dockerconfigjson"]))
    registry = env.values.image.split("/", 1)[0]
    entry = config["auths"][registry]
    assert (entry["username"], entry["password"]) == (
        env.values.registry_user,
        env.values.registry_password,
    )
    user, password = base64.b64decode(entry["auth"]).decode().split(":", 1)
    assert (user, password) == (env.values.registry_user, env.values.registry_password)


def test_docker_hub_images_use_docker_hubs_key(tmp_path):
    values = sample_values("dev", image="docker.io/team/conduit:1.4.0")
    rendered = render(values, tmp_path)
    [secret] = [
        s
        for s in load_all(dict(rendered.stages)["secrets"])
        if s["type"] == "kubernetes.io/dockerconfigjson"
    ]
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    assert list(config["auths"]) == ["https://index.docker.io/v1/"]


@pytest.mark.parametrize(
    ("image", "key"),
    [
        ("team/conduit:1.4.0", "https://index.docker.io/v1/"),  # a Docker Hub short name
        ("index.docker.io/team/conduit:1.4.0", "https://index.docker.io/v1/"),
        ("registry.gitlab.com/team/conduit:1.4.0", "registry.gitlab.com"),
        ("localhost:5000/conduit:1.4.0", "localhost:5000"),
    ],
)
def test_the_auth_key_names_the_images_registry(image, key):
    config = json.loads(docker_config_json(sample_values("dev", image=image)))
    assert list(config["auths"]) == [key]


def test_the_registry_password_is_only_in_the_secrets_stage(env):
    password = env.values.registry_password
    for stage, path in [*env.rendered.stages, ("kops", env.rendered.kops_file)]:
        text = path.read_text()
        assert password not in text, stage
        assert base64.b64encode(password.encode()).decode() not in text, stage
    assert password not in repr(env.values)
    assert (env.rendered.stages[1][1].stat().st_mode & 0o777) == 0o600


def test_without_registry_credentials_pods_pull_anonymously(tmp_path):
    values = replace(sample_values("dev"), registry_user=None, registry_password=None)
    rendered = render(values, tmp_path)
    objects = [o for _, path in rendered.stages for o in load_all(path)]
    assert not [o for o in objects if o.get("type") == "kubernetes.io/dockerconfigjson"]
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    assert "imagePullSecrets" not in deployment["spec"]["template"]["spec"]
