"""CI variables: what each command needs, legacy names, base64 and GCP key parsing."""

from __future__ import annotations

import base64
import json
import re

import pytest
from conduit_deploy import config
from conduit_deploy.errors import ConfigError, MissingVariables

from .support import CONDUIT_SECRET, GCP_KEY, REGISTRY_PASSWORD, ci_environ


def test_every_missing_variable_is_named_in_one_message():
    environ = ci_environ(DB_PASSWORD=None, CONDUIT_SECRET="", K8S_CLUSTER_NAME=None)
    with pytest.raises(MissingVariables) as caught:
        config.load_settings(environ, "deploy dev", config.DEPLOY_NEEDS)
    message = str(caught.value)
    assert caught.value.names == (
        "K8S_CLUSTER_NAME (or K8S_CLUSTER_NAEM)",
        "DB_PASSWORD",
        "CONDUIT_SECRET",
    )
    assert message.startswith("`deploy dev` needs CI variables that are not set: ")
    assert "\n" not in message


def test_nothing_set_names_all_deploy_variables():
    with pytest.raises(MissingVariables) as caught:
        config.load_settings({}, "deploy prod", config.DEPLOY_NEEDS)
    assert caught.value.names == (
        "CONDUIT_IMAGE_REPOSITORY (or DOCKER_REGISTRY_USER)",
        "K8S_CLUSTER_NAME (or K8S_CLUSTER_NAEM)",
        "KOPS_STATE_STORE",
        "GCP_PROJECT (or GCP_CREDENTIAL_FILE)",
        "DB_USER",
        "DB_PASSWORD",
        "CONDUIT_SECRET",
        "GCP_CREDENTIAL_FILE",
    )


def test_the_seeds_misspelled_cluster_variable_is_accepted():
    environ = ci_environ(K8S_CLUSTER_NAME=None, K8S_CLUSTER_NAEM="legacy.k8s.local")
    settings = config.load_settings(environ, "cluster dev", config.CLUSTER_NEEDS)
    assert settings.cluster_name == "legacy.k8s.local"


def test_the_correct_cluster_name_wins_over_the_legacy_one():
    environ = ci_environ(K8S_CLUSTER_NAME="new.k8s.local", K8S_CLUSTER_NAEM="old.k8s.local")
    settings = config.load_settings(environ, "cluster dev", config.CLUSTER_NEEDS)
    assert settings.cluster_name == "new.k8s.local"


def test_registry_password_is_decoded_from_base64():
    settings = config.load_settings(ci_environ(), "pack", config.PACK_PUSH_NEEDS)
    assert settings.registry_password == REGISTRY_PASSWORD


def test_base64_with_a_trailing_newline_is_accepted():
    # `base64` without -w0 wraps and ends its output with a newline.
    encoded = base64.encodebytes(REGISTRY_PASSWORD.encode()).decode()
    assert encoded.endswith("\n")
    settings = config.load_settings(
        ci_environ(DOCKER_REGISTRY_PASSWORD=encoded), "pack", config.PACK_PUSH_NEEDS
    )
    assert settings.registry_password == REGISTRY_PASSWORD


@pytest.mark.parametrize(
    "value", ["not base64!", "abc", "////", base64.b64encode(b"\xff\xfe").decode()]
)
def test_malformed_base64_password_is_a_clear_error(value):
    with pytest.raises(ConfigError) as caught:
        config.load_settings(
            ci_environ(DOCKER_REGISTRY_PASSWORD=value), "pack", config.PACK_PUSH_NEEDS
        )
    assert "DOCKER_REGISTRY_PASSWORD is not valid base64" in str(caught.value)
    assert value not in str(caught.value)  # never echo the secret


def test_secrets_stay_out_of_repr():
    settings = config.load_settings(ci_environ(), "deploy dev", config.DEPLOY_NEEDS)
    shown = repr(settings)
    for secret in (REGISTRY_PASSWORD, CONDUIT_SECRET, GCP_KEY["private_key"][:20]):
        assert secret not in shown


def test_gcp_key_as_json_content_gives_the_project():
    settings = config.load_settings(ci_environ(), "deploy dev", config.DEPLOY_NEEDS)
    assert settings.gcp_project == "conduit-dev-123"
    assert json.loads(settings.gcp_credentials) == GCP_KEY


def test_gcp_key_as_file_variable_gives_the_project(tmp_path):
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps({**GCP_KEY, "project_id": "from-file-1"}))
    settings = config.load_settings(
        ci_environ(GCP_CREDENTIAL_FILE=str(key_file)), "deploy dev", config.DEPLOY_NEEDS
    )
    assert settings.gcp_project == "from-file-1"


def test_gcp_project_variable_overrides_the_key():
    settings = config.load_settings(
        ci_environ(GCP_PROJECT="explicit-project"), "deploy dev", config.DEPLOY_NEEDS
    )
    assert settings.gcp_project == "explicit-project"


def test_render_needs_only_a_project_not_the_key():
    environ = ci_environ(GCP_CREDENTIAL_FILE=None, GCP_PROJECT="explicit-project")
    settings = config.load_settings(environ, "render dev", config.RENDER_NEEDS)
    assert settings.gcp_project == "explicit-project"
    assert settings.gcp_credentials is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/no/such/key.json", "neither JSON nor a readable file"),
        ("{not json", "not valid JSON (line 1, column 2)"),
        ("[1, 2]", "must hold a JSON object"),
    ],
)
def test_unusable_gcp_key_is_a_clear_error(value, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        config.load_settings(
            ci_environ(GCP_CREDENTIAL_FILE=value), "deploy dev", config.DEPLOY_NEEDS
        )


def test_gcp_key_without_project_needs_gcp_project():
    key = {k: v for k, v in GCP_KEY.items() if k != "project_id"}
    with pytest.raises(ConfigError, match="no project_id; set GCP_PROJECT"):
        config.load_settings(
            ci_environ(GCP_CREDENTIAL_FILE=json.dumps(key)), "deploy dev", config.DEPLOY_NEEDS
        )


def test_every_malformed_variable_is_reported_together():
    environ = ci_environ(DOCKER_REGISTRY_PASSWORD="%%%", GCP_CREDENTIAL_FILE="{oops")
    with pytest.raises(ConfigError) as caught:
        config.load_settings(environ, "deploy dev", config.DEPLOY_NEEDS)
    assert "DOCKER_REGISTRY_PASSWORD" in str(caught.value)
    assert "GCP_CREDENTIAL_FILE" in str(caught.value)


def test_image_repository_defaults_to_docker_hub_under_the_registry_user():
    settings = config.load_settings(ci_environ(), "pack", config.PACK_PUSH_NEEDS)
    assert settings.image_repository == "docker.io/team/conduit"


def test_image_repository_can_be_configured():
    environ = ci_environ(CONDUIT_IMAGE_REPOSITORY="registry.gitlab.com/team/conduit")
    settings = config.load_settings(environ, "pack", config.PACK_PUSH_NEEDS)
    assert settings.image_repository == "registry.gitlab.com/team/conduit"


@pytest.mark.parametrize(
    "repository", ["docker.io/Team/conduit", "team/conduit:1.0", "team//conduit"]
)
def test_invalid_image_repository_is_refused(repository):
    environ = ci_environ(CONDUIT_IMAGE_REPOSITORY=repository)
    with pytest.raises(ConfigError, match="not a valid repository"):
        config.load_settings(environ, "pack", config.PACK_PUSH_NEEDS)


def test_pack_without_push_needs_no_registry_credentials():
    environ = ci_environ(
        DOCKER_REGISTRY_PASSWORD=None,
        DOCKER_REGISTRY_USER=None,
        CONDUIT_IMAGE_REPOSITORY="docker.io/team/conduit",
    )
    settings = config.load_settings(environ, "pack", config.PACK_NO_PUSH_NEEDS)
    assert settings.registry_password is None
    with pytest.raises(MissingVariables) as caught:
        config.load_settings(environ, "pack", config.PACK_PUSH_NEEDS)
    assert caught.value.names == ("DOCKER_REGISTRY_USER", "DOCKER_REGISTRY_PASSWORD")
