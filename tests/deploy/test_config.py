"""CI variables: one table, what each command needs, legacy names, parsing and checks."""

from __future__ import annotations

import base64
import json
import re

import pytest
import yaml
from conduit_deploy import config
from conduit_deploy.errors import VariableErrors

from .support import (
    BACKUP_KEY,
    CONDUIT_SECRET,
    DB_PASSWORD,
    GCP_KEY,
    REGISTRY_PASSWORD,
    ci_environ,
)


def load(environ, command="deploy"):
    return config.load_settings(environ, command)


def test_every_missing_variable_is_named_in_one_message():
    environ = ci_environ(DB_PASSWORD=None, CONDUIT_SECRET="", K8S_CLUSTER_NAME=None)
    with pytest.raises(VariableErrors) as caught:
        config.load_settings(environ, "deploy", "dev")
    message = str(caught.value)
    assert caught.value.missing == (
        "DB_PASSWORD",
        "CONDUIT_SECRET",
        "K8S_CLUSTER_NAME",
    )
    assert message.startswith("`deploy dev` cannot start; CI variables not set: DB_PASSWORD, ")
    assert "\n" not in message


def test_missing_and_invalid_variables_come_in_the_same_message_under_their_ci_names():
    environ = ci_environ(
        DB_PASSWORD="short", DB_USER="Conduit", CONDUIT_SECRET=None, KOPS_STATE_STORE="s3://x"
    )
    with pytest.raises(VariableErrors) as caught:
        load(environ)
    assert caught.value.missing == ("CONDUIT_SECRET",)
    assert caught.value.invalid == (
        "DB_USER must be a plain PostgreSQL role name (a-z, 0-9, _), got 'Conduit'",
        "DB_PASSWORD must be at least 16 characters",
        "KOPS_STATE_STORE must be a Google Cloud Storage URL (gs://bucket[/path]), got 's3://x'",
    )
    assert "short" not in str(caught.value)  # a secret's value is never quoted


def test_nothing_set_names_all_deploy_variables():
    with pytest.raises(VariableErrors) as caught:
        load({})
    assert caught.value.missing == (
        "DB_USER",
        "DB_PASSWORD",
        "CONDUIT_SECRET",
        "K8S_CLUSTER_NAME",
        "KOPS_STATE_STORE",
        "KOPS_API_ACCESS_CIDRS",
        # deploy checks the registry in its preflight and renders the image pull Secret
        "DOCKER_REGISTRY_USER",
        "DOCKER_REGISTRY_PASSWORD",
        "BACKUP_BUCKET",
        "BACKUP_GCP_CREDENTIAL_FILE",
        "GCP_PROJECT (or GCP_CREDENTIAL_FILE)",
        "CONDUIT_IMAGE_REPOSITORY (or DOCKER_REGISTRY_USER)",
        "GCP_WORKLOAD_IDENTITY_PROVIDER and GCP_SERVICE_ACCOUNT (or the key, GCP_CREDENTIAL_FILE)",
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("K8S_CLUSTER_NAME", "Conduit_Prod", "DNS name"),
        ("KOPS_STATE_STORE", "s3://bucket", "gs://"),
        ("GCP_PROJECT", "x", "GCP project"),
        ("DB_USER", "conduit; drop", "role name"),
        ("DB_PASSWORD", "short", "at least 16"),
        ("CONDUIT_SECRET", "too-short-for-the-app", "at least 32"),
        ("PROD_HOST", "https://conduit.example.org", "DNS name"),
    ],
)
def test_an_unusable_value_is_refused_by_its_variable_s_rule(name, value, message):
    # What render then trusts (conduit_deploy/render.py checks only what it composes).
    with pytest.raises(VariableErrors) as caught:
        load(ci_environ(**{name: value}))
    assert [line for line in caught.value.invalid if line.startswith(name)], caught.value
    assert message in str(caught.value)


def test_the_seeds_misspelled_cluster_variable_is_accepted():
    environ = ci_environ(K8S_CLUSTER_NAME=None, K8S_CLUSTER_NAEM="legacy.k8s.local")
    assert load(environ, "cluster").get(config.K8S_CLUSTER_NAME) == "legacy.k8s.local"


def test_the_correct_cluster_name_wins_over_the_legacy_one():
    environ = ci_environ(K8S_CLUSTER_NAME="new.k8s.local", K8S_CLUSTER_NAEM="old.k8s.local")
    assert load(environ, "cluster").get(config.K8S_CLUSTER_NAME) == "new.k8s.local"


def test_registry_password_is_decoded_from_base64():
    settings = load(ci_environ(), "pack")
    assert settings.get(config.DOCKER_REGISTRY_PASSWORD) == REGISTRY_PASSWORD


def test_base64_with_a_trailing_newline_is_accepted():
    # `base64` without -w0 wraps and ends its output with a newline.
    encoded = base64.encodebytes(REGISTRY_PASSWORD.encode()).decode()
    assert encoded.endswith("\n")
    settings = load(ci_environ(DOCKER_REGISTRY_PASSWORD=encoded), "pack")
    assert settings.get(config.DOCKER_REGISTRY_PASSWORD) == REGISTRY_PASSWORD


@pytest.mark.parametrize(
    "value", ["not base64!", "abc", "////", base64.b64encode(b"\xff\xfe").decode()]
)
def test_malformed_base64_password_is_a_clear_error(value):
    with pytest.raises(VariableErrors) as caught:
        load(ci_environ(DOCKER_REGISTRY_PASSWORD=value), "pack")
    assert "DOCKER_REGISTRY_PASSWORD is not valid base64" in str(caught.value)
    assert value not in str(caught.value)  # never echo the secret


def test_secrets_keep_their_spaces_and_other_values_are_trimmed():
    settings = load(ci_environ(DB_PASSWORD=f" {DB_PASSWORD} ", DB_USER=" conduit "))
    assert settings.get(config.DB_PASSWORD) == f" {DB_PASSWORD} "
    assert settings.get(config.DB_USER) == "conduit"


def test_secrets_stay_out_of_repr():
    shown = repr(load(ci_environ()))
    for secret in (CONDUIT_SECRET, DB_PASSWORD, GCP_KEY["private_key"][:20]):
        assert secret not in shown
    assert "conduit-dev-123" in shown


def test_gcp_key_as_json_content_gives_the_project():
    settings = load(ci_environ())
    assert settings.get(config.GCP_PROJECT) == "conduit-dev-123"
    assert json.loads(settings.require(config.GCP_CREDENTIAL_FILE).text) == GCP_KEY


def test_gcp_key_as_file_variable_gives_the_project(tmp_path):
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps({**GCP_KEY, "project_id": "from-file-1"}))
    settings = load(ci_environ(GCP_CREDENTIAL_FILE=str(key_file)))
    assert settings.get(config.GCP_PROJECT) == "from-file-1"


def test_gcp_project_variable_overrides_the_key():
    settings = load(ci_environ(GCP_PROJECT="explicit-project"))
    assert settings.get(config.GCP_PROJECT) == "explicit-project"


def test_render_needs_only_a_project_not_the_key():
    environ = ci_environ(GCP_CREDENTIAL_FILE=None, GCP_PROJECT="explicit-project")
    settings = load(environ, "render")
    assert settings.get(config.GCP_PROJECT) == "explicit-project"
    assert settings.get(config.GCP_CREDENTIAL_FILE) is None
    with pytest.raises(VariableErrors) as caught:
        load(environ, "deploy")
    assert caught.value.missing == (
        "GCP_WORKLOAD_IDENTITY_PROVIDER and GCP_SERVICE_ACCOUNT (or the key, GCP_CREDENTIAL_FILE)",
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/no/such/key.json", "GCP_CREDENTIAL_FILE is neither JSON nor a readable file"),
        ("{not json", "GCP_CREDENTIAL_FILE is not valid JSON (line 1, column 2)"),
        ("[1, 2]", "GCP_CREDENTIAL_FILE must hold a JSON object"),
    ],
)
def test_unusable_gcp_key_is_a_clear_error(value, expected):
    with pytest.raises(VariableErrors, match=re.escape(expected)):
        load(ci_environ(GCP_CREDENTIAL_FILE=value))


def test_gcp_key_without_project_needs_gcp_project():
    key = {k: v for k, v in GCP_KEY.items() if k != "project_id"}
    with pytest.raises(VariableErrors) as caught:
        load(ci_environ(GCP_CREDENTIAL_FILE=json.dumps(key)))
    assert caught.value.invalid == (
        "GCP_CREDENTIAL_FILE has no project_id; set GCP_PROJECT to the project's id",
    )
    settings = load(ci_environ(GCP_CREDENTIAL_FILE=json.dumps(key), GCP_PROJECT="explicit-1"))
    assert settings.get(config.GCP_PROJECT) == "explicit-1"


def test_every_malformed_variable_is_reported_together():
    environ = ci_environ(DOCKER_REGISTRY_PASSWORD="%%%", GCP_CREDENTIAL_FILE="{oops")
    with pytest.raises(VariableErrors) as caught:
        load(environ)
    assert [problem.split()[0] for problem in caught.value.invalid] == [
        "GCP_CREDENTIAL_FILE",
        "DOCKER_REGISTRY_PASSWORD",
    ]
    with pytest.raises(VariableErrors) as caught:
        load(environ, "pack")
    assert [problem.split()[0] for problem in caught.value.invalid] == ["DOCKER_REGISTRY_PASSWORD"]


def test_a_variable_a_command_does_not_use_is_not_checked():
    settings = load(ci_environ(DB_PASSWORD="short", DOCKER_REGISTRY_PASSWORD="%%%"), "version")
    assert settings.get(config.DOCKER_REGISTRY_PASSWORD) is None
    assert settings.get(config.DB_PASSWORD) is None


def test_image_repository_defaults_to_docker_hub_under_the_registry_user():
    assert load(ci_environ(), "pack").image_repository == "docker.io/team/conduit"


def test_image_repository_can_be_configured():
    environ = ci_environ(CONDUIT_IMAGE_REPOSITORY="registry.gitlab.com/team/conduit")
    assert load(environ, "pack").image_repository == "registry.gitlab.com/team/conduit"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CONDUIT_IMAGE_REPOSITORY", "docker.io/Team/conduit"),
        ("CONDUIT_IMAGE_REPOSITORY", "team/conduit:1.0"),
        ("CONDUIT_IMAGE_REPOSITORY", "team//conduit"),
        ("DOCKER_REGISTRY_USER", "Team"),
    ],
)
def test_invalid_image_repository_is_refused(name, value):
    with pytest.raises(VariableErrors) as caught:
        load(ci_environ(**{name: value}), "pack")
    assert caught.value.invalid[0].startswith(f"{name} ")
    assert caught.value.missing == ()


@pytest.mark.parametrize("command", ["version", "pack --no-push"])
def test_local_commands_need_no_registry_and_use_a_local_name(command):
    environ = {"CI_COMMIT_SHORT_SHA": "01234567"}
    settings = config.load_settings(environ, command)
    assert settings.image_repository == config.LOCAL_REPOSITORY == "localhost/conduit"


def test_pack_without_push_needs_no_registry_credentials():
    environ = ci_environ(DOCKER_REGISTRY_PASSWORD=None, DOCKER_REGISTRY_USER=None)
    settings = load(environ, "pack --no-push")
    assert settings.get(config.DOCKER_REGISTRY_PASSWORD) is None
    with pytest.raises(VariableErrors) as caught:
        load(environ, "pack")
    assert caught.value.missing == (
        "DOCKER_REGISTRY_USER",
        "DOCKER_REGISTRY_PASSWORD",
        "CONDUIT_IMAGE_REPOSITORY (or DOCKER_REGISTRY_USER)",
    )


def test_kops_sha256_is_checked_by_install_tools():
    assert load({"KOPS_SHA256": "AB" * 32}, "install-tools").get(config.KOPS_SHA256) == "ab" * 32
    with pytest.raises(VariableErrors, match="KOPS_SHA256 must be a SHA-256 digest"):
        load({"KOPS_SHA256": "abc"}, "install-tools")


# --- the table itself -------------------------------------------------------------------


def test_the_table_names_each_variable_once():
    names = [n for v in config.VARIABLES for n in (v.name, *v.alternatives)]
    assert len(names) == len(set(names))


def test_the_table_names_only_known_commands():
    for variable in config.VARIABLES:
        assert set(variable.needed_by) | set(variable.read_by) <= set(config.COMMANDS)


def test_a_fallback_is_read_wherever_the_variable_it_stands_in_for_is():
    by_name = {variable.name: variable for variable in config.VARIABLES}
    for variable in config.VARIABLES:
        if variable.fallback:
            assert variable.derive is not None
            fallback = by_name[variable.fallback]
            for command in (*variable.needed_by, *variable.read_by):
                assert fallback.applies_to(command), (variable.name, command)


def test_per_environment_variables_are_the_ones_that_differ_between_dev_and_prod():
    per_environment = {v.name for v in config.VARIABLES if v.scope is config.Scope.ENVIRONMENT}
    assert per_environment == {
        "DB_USER",
        "DB_PASSWORD",
        "CONDUIT_SECRET",
        "K8S_CLUSTER_NAME",
        "K8S_CLUSTER_NAME_CONFIRMED",
        # Each environment's backups in its own bucket, written by its own key.
        "BACKUP_BUCKET",
        "BACKUP_GCP_CREDENTIAL_FILE",
        # Prod's provider accepts protected tags only; dev's, the protected default branch.
        "GCP_WORKLOAD_IDENTITY_PROVIDER",
        "GCP_SERVICE_ACCOUNT",
    }


def test_the_markdown_table_has_a_row_per_variable_with_its_scope():
    rows = config.markdown_table().splitlines()
    assert rows[0] == (
        "| Variable | Type | Scope | Protect | Mask | Needed by | Read by | What it is |"
    )
    # Every variable a project sets; not the job's own ID token.
    assert len(rows) == 2 + len(config.VARIABLES) - 1
    assert not [row for row in rows if "GCP_ID_TOKEN`" in row.split(" | ")[0]]
    cluster = next(row for row in rows if row.startswith("| `K8S_CLUSTER_NAME`"))
    assert cluster.startswith(
        "| `K8S_CLUSTER_NAME` (or `K8S_CLUSTER_NAEM`) | Variable | dev, prod | yes | no "
        "| `render`, `cluster`, `deploy`, `restore`, `preflight` | — |"
    )


def test_gitlab_settings_say_protect_mask_and_type_once_per_variable():
    rows = {row.split(" | ")[0]: row for row in config.settings_table().splitlines()[2:]}
    assert len(rows) == len(config.DOCUMENTED) == len(config.VARIABLES) - 1
    # Secrets GitLab can mask are masked; the JSON keys cannot be, and are File variables.
    assert rows["| `DB_PASSWORD`"].endswith("| yes | yes |")
    assert rows["| `DOCKER_REGISTRY_PASSWORD`"].endswith("| `*` | yes | yes |")
    assert rows["| `GCP_CREDENTIAL_FILE`"] == (
        "| `GCP_CREDENTIAL_FILE` | File | `*` | yes | cannot (JSON) |"
    )
    assert rows["| `BACKUP_GCP_CREDENTIAL_FILE`"] == (
        "| `BACKUP_GCP_CREDENTIAL_FILE` | File | `dev` and `prod`, a value each | yes "
        "| cannot (JSON) |"
    )
    # Builds of unprotected refs (merge requests) read these, so they stay unprotected.
    assert rows["| `BASE_IMAGE`"].endswith("| no | no |")


# GitLab's rule for a masked value ("Mask a CI/CD variable", docs.gitlab.com/ci/variables):
# 8 or more characters from the Base64 alphabet (RFC 4648) and @ : . ~.
MASKABLE = re.compile(r"^[A-Za-z0-9+/=_@:.~-]{8,}$")


def test_what_the_table_calls_maskable_gitlab_can_mask():
    samples = {
        "DB_PASSWORD": DB_PASSWORD,
        "CONDUIT_SECRET": CONDUIT_SECRET,
        "DOCKER_REGISTRY_PASSWORD": base64.b64encode(REGISTRY_PASSWORD.encode()).decode(),
        "GCP_CREDENTIAL_FILE": json.dumps(GCP_KEY),
        "BACKUP_GCP_CREDENTIAL_FILE": json.dumps(GCP_KEY),
        "REVIEW_KUBECONFIG": "apiVersion: v1\nclusters: []\nusers: []\n",
        "REVIEW_SECRET": CONDUIT_SECRET,
        "REVIEW_SWEEP_TOKEN": "glpat-0123456789abcdefABCD",
        "GCP_ID_TOKEN": "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.c2lnbmF0dXJl",
    }
    for variable in config.VARIABLES:
        if variable.name in samples:
            assert bool(MASKABLE.match(samples[variable.name])) == variable.masked, variable.name
    assert {v.name for v in config.VARIABLES if v.secret} == set(samples)


@pytest.mark.parametrize(
    ("environment", "name", "confirmed", "problem"),
    [
        ("dev", "dev.conduit.k8s.local", None, None),
        ("prod", "prod.conduit.k8s.local", None, None),
        ("prod", "dev.conduit.k8s.local", None, "is the dev cluster, not prod's"),
        # The override never lets one environment use the other's cluster.
        ("prod", "dev.conduit.k8s.local", "dev.conduit.k8s.local", "is the dev cluster"),
        ("dev", "prod.conduit.k8s.local", None, "is the prod cluster, not dev's"),
        ("dev", "conduit.k8s.local", None, "does not start with 'dev.'"),
        ("dev", "conduit.k8s.local", "other.k8s.local", "does not start with 'dev.'"),
        ("dev", "conduit.k8s.local", "conduit.k8s.local", None),
        ("dev", "devel.k8s.local", None, "does not start with 'dev.'"),  # a prefix, not a word
    ],
)
def test_a_cluster_belongs_to_the_environment_its_name_starts_with(
    environment, name, confirmed, problem
):
    found = config.cluster_name_problem(environment, name, confirmed)
    if problem is None:
        assert found is None
    else:
        assert problem in found


def test_a_foreign_cluster_is_reported_with_the_other_variables():
    environ = ci_environ(K8S_CLUSTER_NAME="prod.conduit.k8s.local", DB_PASSWORD=None)
    with pytest.raises(VariableErrors) as caught:
        config.load_settings(environ, "render", "dev")
    assert caught.value.missing == ("DB_PASSWORD",)
    assert caught.value.invalid[0].startswith("K8S_CLUSTER_NAME 'prod.conduit.k8s.local' is")
    assert str(caught.value).startswith("`render dev` cannot start;")


# --- bucket names: Cloud Storage's rules (cloud.google.com/storage/docs/buckets#naming) ---


@pytest.mark.parametrize(
    "name",
    [
        "conduit-dev-backups",
        "abc",
        "a_b-c",
        "backups.conduit.example.com",  # dotted: a verified domain's name
        "a" * 63,
        ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 30]),  # 222 characters
        "1.2.3.4.5",  # not an IPv4 address
        "my-goog-bucket",  # "goog" only as a prefix is reserved
    ],
)
def test_valid_bucket_names_are_accepted(name):
    assert config.bucket_name(name) == name
    assert config.gcs_url(f"gs://{name}/state") == f"gs://{name}/state"


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("Bad Bucket!", "not ' ' '!' 'B'"),
        ("conduit/dev", "not '/'"),
        ("-conduit", "start and end with a lower-case letter or a digit"),
        ("conduit_", "start and end with a lower-case letter or a digit"),
        ("ab", "has 2 characters; a name without dots has 3 to 63"),
        ("a" * 64, "has 64 characters; a name without dots has 3 to 63"),
        (".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 31]), "at most 222"),
        ("a" * 64 + ".example.com", "a dot-separated part of 64 characters"),
        ("backups..example.com", "an empty part between two dots"),
        ("192.168.5.4", "must not be an IP address"),
        ("google-backups", "must not begin with 'goog'"),
        ("goog-backups", "must not begin with 'goog'"),
        ("my-google-backups", "must not contain 'google'"),
        ("my-g00gle-backups", "must not contain 'google'"),
    ],
)
def test_each_bucket_naming_rule_refuses_its_case(name, rule):
    with pytest.raises(ValueError, match=re.escape(rule)):
        config.bucket_name(name)
    if "/" not in name:  # in a URL, "/" starts the path
        with pytest.raises(ValueError, match=re.escape(rule)):
            config.gcs_url(f"gs://{name}")


def test_a_bad_state_store_is_one_line_naming_the_variable(run_command):
    environ = ci_environ(KOPS_STATE_STORE="gs://Bad Bucket!")
    code, _, err = run_command("render", "dev", environ=environ)
    assert code == 1
    assert err.count("\n") == 1
    assert (
        "KOPS_STATE_STORE must be gs://BUCKET[/PATH] with a valid bucket name: 'Bad Bucket!' "
        "may hold only lower-case letters, digits, '-', '_' and '.'" in err
    )


def test_the_backup_bucket_is_a_name_not_a_url():
    with pytest.raises(VariableErrors, match="BACKUP_BUCKET must be the bucket's name without"):
        load(ci_environ(BACKUP_BUCKET="gs://conduit-dev-backups"))


# --- the backup key and bucket are not the CI's ---------------------------------------


def test_the_ci_key_is_refused_as_the_backup_key():
    environ = ci_environ(BACKUP_GCP_CREDENTIAL_FILE=json.dumps(GCP_KEY))
    with pytest.raises(VariableErrors) as caught:
        load(environ)
    assert caught.value.invalid == (
        "BACKUP_GCP_CREDENTIAL_FILE is the same key as GCP_CREDENTIAL_FILE: give backups their "
        'own service account (deploy/google-cloud.md, "The backup bucket")',
    )


def test_another_key_of_the_ci_service_account_is_refused_too():
    other_key = {**GCP_KEY, "private_key_id": "another", "private_key": "another key"}
    environ = ci_environ(BACKUP_GCP_CREDENTIAL_FILE=json.dumps(other_key))
    with pytest.raises(VariableErrors, match="is a key of the CI's own service account deployer@"):
        load(environ)


def test_a_key_with_the_same_key_id_is_the_same_key():
    ci_key = {**GCP_KEY, "private_key_id": "0123abcd"}
    backup_key = {**BACKUP_KEY, "private_key_id": "0123abcd"}
    environ = ci_environ(
        GCP_CREDENTIAL_FILE=json.dumps(ci_key), BACKUP_GCP_CREDENTIAL_FILE=json.dumps(backup_key)
    )
    with pytest.raises(VariableErrors, match="is the same key as GCP_CREDENTIAL_FILE"):
        load(environ)


def test_render_compares_the_keys_when_the_ci_key_is_set():
    environ = ci_environ(BACKUP_GCP_CREDENTIAL_FILE=json.dumps(GCP_KEY))
    with pytest.raises(VariableErrors, match="is the same key as GCP_CREDENTIAL_FILE"):
        load(environ, "render")
    # Without the CI key (render needs only the project), there is nothing to compare.
    load(ci_environ(GCP_CREDENTIAL_FILE=None, GCP_PROJECT="conduit-dev-123"), "render")


def test_the_state_bucket_is_refused_as_the_backup_bucket():
    environ = ci_environ(
        KOPS_STATE_STORE="gs://conduit-kops-state/clusters", BACKUP_BUCKET="conduit-kops-state"
    )
    with pytest.raises(
        VariableErrors, match="BACKUP_BUCKET 'conduit-kops-state' is the kops state"
    ):
        load(environ)


def test_the_registry_password_hint_is_portable_shell():
    with pytest.raises(VariableErrors) as caught:
        load(ci_environ(DOCKER_REGISTRY_PASSWORD="not base64!"), "pack")
    assert "| base64 | tr -d '\\n'`" in str(caught.value)
    assert "-w0" not in config.markdown_table()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("203.0.113.0/24", ("203.0.113.0/24",)),
        (" 203.0.113.7/32 , 2001:db8::/32 ", ("203.0.113.7/32", "2001:db8::/32")),
        ("0.0.0.0/0", ("0.0.0.0/0",)),
    ],
)
def test_api_access_cidrs_are_a_comma_separated_list(value, expected):
    settings = load(ci_environ(KOPS_API_ACCESS_CIDRS=value), "cluster")
    assert settings.get(config.KOPS_API_ACCESS_CIDRS) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("203.0.113.7", "must be CIDRs separated by commas (203.0.113.0/24), got '203.0.113.7'"),
        ("203.0.113.7/24", "has host bits set in '203.0.113.7/24': did you mean '203.0.113.0/24'?"),
        ("10.0.0.0/8,,10.1.0.0/16", "must be CIDRs separated by commas, got an empty one"),
        ("office", "must be CIDRs separated by commas (203.0.113.0/24), got 'office'"),
    ],
)
def test_api_access_cidrs_that_kops_would_refuse_are_one_line_errors(value, message):
    with pytest.raises(VariableErrors) as caught:
        load(ci_environ(KOPS_API_ACCESS_CIDRS=value), "cluster")
    assert f"KOPS_API_ACCESS_CIDRS {message}" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_kops_spec_takes_the_api_access_cidrs_from_the_variable(tmp_path):
    from conduit_deploy.errors import RenderError
    from conduit_deploy.render import render

    from tests.k8s.support import sample_values

    rendered = render(sample_values("dev", api_access_cidrs=("198.51.100.0/24",)), tmp_path)
    cluster = next(
        d for d in yaml.safe_load_all(rendered.kops_file.read_text()) if d["kind"] == "Cluster"
    )
    assert cluster["spec"]["kubernetesApiAccess"] == ["198.51.100.0/24"]
    with pytest.raises(RenderError, match="set KOPS_API_ACCESS_CIDRS"):
        render(sample_values("dev", api_access_cidrs=()), tmp_path / "none")
