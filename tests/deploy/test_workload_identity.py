"""Workload Identity Federation: which credential the cloud commands use, and the
external-account configuration they write, read back by the real google-auth.

google-auth (the version deploy/pyproject.toml pins) is the judge of the file's shape:
a wrong or missing field makes google.auth.load_credentials_from_file refuse it, as
kops' and gcloud's readers of the same format would. The token exchange itself is
tested against a fake STS in test_preflight.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import google.auth
import pytest
from conduit_deploy import config
from conduit_deploy.errors import VariableErrors
from conduit_deploy.workload_identity import provider_name
from google.auth import identity_pool

from .support import GCP_KEY, WIF_ACCOUNT, WIF_PROVIDER, ci_environ, gitlab_id_token, wif_environ

AUDIENCE = f"//iam.googleapis.com/{WIF_PROVIDER}"


def adc_load(info: dict):
    """google-auth's loader of a GOOGLE_APPLICATION_CREDENTIALS file, which picks the
    credential class by "type" as Application Default Credentials do
    (google.auth.default would also ask the network for a project). It warns that a
    configuration from an untrusted source must be checked first: this one is ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return google.auth.load_credentials_from_dict(info)[0]


def load(environ, command="cluster"):
    return config.load_settings(environ, command, "dev")


def refusal(environ, command="cluster") -> VariableErrors:
    with pytest.raises(VariableErrors) as caught:
        load(environ, command)
    assert "\n" not in str(caught.value)  # one line
    return caught.value


# --- which credential ------------------------------------------------------------------


def test_the_key_alone_is_used_as_before():
    assert load(ci_environ()).gcp_credential.client_email == GCP_KEY["client_email"]


def test_federation_alone_needs_no_key():
    credential = load(wif_environ()).gcp_credential
    assert (credential.provider, credential.service_account) == (WIF_PROVIDER, WIF_ACCOUNT)
    assert credential.audience == AUDIENCE


def test_both_set_federation_wins_and_the_log_says_the_key_is_unused(
    run_command, recorder, fake_render, preflight
):
    environ = wif_environ(GCP_CREDENTIAL_FILE=json.dumps(GCP_KEY))
    settings = load(environ)
    assert settings.gcp_credential.service_account == WIF_ACCOUNT
    assert settings.unused_key
    code, out, err = run_command(
        "cluster", "dev", render=fake_render, preflight=preflight, environ=environ
    )
    assert code == 0, err
    assert (
        f"==> credentials: Workload Identity Federation: the job's ID token through "
        f"{WIF_PROVIDER}, as {WIF_ACCOUNT}; GCP_CREDENTIAL_FILE is set too and not used: "
        "delete it and the key"
    ) in out + err


def test_neither_set_names_both_ways():
    environ = wif_environ(GCP_WORKLOAD_IDENTITY_PROVIDER=None, GCP_SERVICE_ACCOUNT=None)
    assert refusal(environ).missing == (
        "GCP_WORKLOAD_IDENTITY_PROVIDER and GCP_SERVICE_ACCOUNT (or the key, GCP_CREDENTIAL_FILE)",
    )


@pytest.mark.parametrize(
    ("unset", "message"),
    [
        ("GCP_SERVICE_ACCOUNT", "GCP_WORKLOAD_IDENTITY_PROVIDER is set but GCP_SERVICE_ACCOUNT "
         "is not: Workload Identity Federation needs both"),
        ("GCP_WORKLOAD_IDENTITY_PROVIDER", "GCP_SERVICE_ACCOUNT is set but "
         "GCP_WORKLOAD_IDENTITY_PROVIDER is not"),
        ("GCP_ID_TOKEN", "GCP_ID_TOKEN is not set: a job that uses Workload Identity Federation "
         "needs `id_tokens: GCP_ID_TOKEN: aud: https://iam.googleapis.com/"
         "$GCP_WORKLOAD_IDENTITY_PROVIDER` (.gitlab-ci.yml)"),
    ],
)  # fmt: skip
def test_half_configured_federation_is_refused_even_with_a_key(unset, message):
    # Never a silent fall back to the key: it would hide the mistake until it is deleted.
    environ = wif_environ(GCP_CREDENTIAL_FILE=json.dumps(GCP_KEY), **{unset: None})
    assert message in str(refusal(environ))


def test_a_token_for_another_audience_is_refused_with_the_one_to_ask_for():
    token = gitlab_id_token(aud="https://gitlab.example.com")
    problem = str(refusal(wif_environ(GCP_ID_TOKEN=token)))
    assert (
        "GCP_ID_TOKEN is for the audience https://gitlab.example.com, not the provider's "
        f"https://iam.googleapis.com/{WIF_PROVIDER}"
    ) in problem
    assert token not in problem  # the token is a credential


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "e30.WyJhIl0.c2ln"])
def test_a_token_that_is_no_jwt_is_refused(token):
    assert "GCP_ID_TOKEN is not a JWT" in str(refusal(wif_environ(GCP_ID_TOKEN=token)))


def test_render_needs_no_credential_at_all():
    environ = wif_environ(GCP_WORKLOAD_IDENTITY_PROVIDER=None, GCP_SERVICE_ACCOUNT=None)
    assert load(environ, "render").get(config.GCP_PROJECT) == "conduit-dev-123"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("projects/conduit-dev-123/locations/global/workloadIdentityPools/gitlab/providers/"
         "conduit-dev", "must name the project by its number, not its id 'conduit-dev-123'"),
        ("projects/1/locations/europe-west1/workloadIdentityPools/gitlab/providers/conduit",
         "names location 'europe-west1'; pools live in `global`"),
        ("projects/1/locations/global/workloadIdentityPools/gcp-pool/providers/conduit",
         "has the pool id 'gcp-pool'"),
        ("projects/1/locations/global/workloadIdentityPools/gitlab/providers/Dev",
         "has the provider id 'Dev'"),
        ("gitlab/conduit-dev", "must be projects/PROJECT_NUMBER/locations/global/"
         "workloadIdentityPools/POOL/providers/PROVIDER"),
    ],
)  # fmt: skip
def test_a_malformed_provider_name_says_what_is_wrong(value, message):
    problem = str(refusal(wif_environ(GCP_WORKLOAD_IDENTITY_PROVIDER=value)))
    assert f"GCP_WORKLOAD_IDENTITY_PROVIDER {message}" in problem


def test_the_provider_may_be_given_as_its_sts_audience():
    assert provider_name(AUDIENCE) == WIF_PROVIDER


@pytest.mark.parametrize("value", ["deployer", "deployer@conduit-dev-123.example.com", "d@x"])
def test_a_malformed_service_account_is_refused(value):
    problem = str(refusal(wif_environ(GCP_SERVICE_ACCOUNT=value)))
    assert "GCP_SERVICE_ACCOUNT must be a service account's email" in problem


def test_the_backup_key_may_not_be_the_impersonated_account_s(tmp_path):
    backup = {**GCP_KEY, "client_email": WIF_ACCOUNT, "private_key_id": "other"}
    problem = str(refusal(wif_environ(BACKUP_GCP_CREDENTIAL_FILE=json.dumps(backup))))
    own = f"is a key of the CI's own service account {WIF_ACCOUNT} (GCP_SERVICE_ACCOUNT)"
    assert own in problem


# --- the file kops, gcloud and google-auth read -----------------------------------------


def written_files(run_command, recorder, fake_render, preflight, environ) -> dict[str, object]:
    """What the first kops command saw: the exported variables and the files' content."""
    seen: dict[str, object] = {}

    def respond(args):
        if seen:
            return
        exported = recorder.calls[-1].exported
        path = Path(exported["GOOGLE_APPLICATION_CREDENTIALS"])
        info = json.loads(path.read_text())
        token = Path(info["credential_source"]["file"])
        seen.update(
            exported=dict(exported),
            info=info,
            modes={p.name: oct(p.stat().st_mode & 0o777) for p in (path, token)},
            folder=(path.parent, oct(path.parent.stat().st_mode & 0o777)),
            # google-auth reads the file while it exists, as kops does.
            credentials=adc_load(info),
        )
        seen["subject_token"] = seen["credentials"].retrieve_subject_token(None)

    recorder.respond = respond
    code, _, err = run_command("cluster", "dev", render=fake_render, preflight=preflight,
                               environ=environ)  # fmt: skip
    assert code == 0, err
    return seen


def test_the_external_account_file_is_what_google_auth_reads(
    run_command, recorder, fake_render, preflight
):
    token = gitlab_id_token()
    seen = written_files(
        run_command, recorder, fake_render, preflight, wif_environ(GCP_ID_TOKEN=token)
    )
    credentials = seen["credentials"]
    assert isinstance(credentials, identity_pool.Credentials)
    assert credentials.service_account_email == WIF_ACCOUNT
    assert seen["subject_token"] == token
    info = seen["info"]
    assert info["audience"] == AUDIENCE
    assert info["subject_token_type"] == "urn:ietf:params:oauth:token-type:jwt"
    assert info["token_url"] == "https://sts.googleapis.com/v1/token"
    assert info["service_account_impersonation_url"] == (
        "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/"
        f"{WIF_ACCOUNT}:generateAccessToken"
    )
    # Private, and gone when the command ends.
    assert seen["modes"] == {"gcp-credentials.json": "0o600", "gcp-id-token.jwt": "0o600"}
    folder, mode = seen["folder"]
    assert mode == "0o700"
    assert not folder.exists()
    exported = seen["exported"]
    assert (
        exported["CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE"]
        == (exported["GOOGLE_APPLICATION_CREDENTIALS"])
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"type": "service_account"}, "client_email"),
        ({"type": None}, "type"),
        ({"credential_source": None}, "Failed to load external account credentials"),
        ({"credential_source": {"file": "t", "format": {"type": "json"}}},
         "Failed to load external account credentials"),
    ],
)  # fmt: skip
def test_google_auth_refuses_a_file_of_another_shape(tmp_path, change, expected):
    # The negative cases of the test above: what google-auth refuses when it loads the
    # file (the audience and token type are judged by STS: test_preflight.py).
    token = tmp_path / "token"
    token.write_text(gitlab_id_token())
    info = load(wif_environ()).gcp_credential.credential_config(str(token))
    adc_load(info)  # as written: accepted
    info = {k: v for k, v in {**info, **change}.items() if v is not None}
    with pytest.raises((google.auth.exceptions.GoogleAuthError, ValueError)) as caught:
        adc_load(info)
    assert expected in f"{caught.value} {caught.value.__cause__}"


def test_a_dry_run_plan_writes_the_same_file_as_a_script(
    run_command, recorder, fake_render, preflight, tmp_path
):
    token = gitlab_id_token()
    code, _, _ = run_command(
        "cluster", "dev", "--dry-run", render=fake_render, preflight=preflight,
        environ=wif_environ(GCP_ID_TOKEN=token),
    )  # fmt: skip
    assert code == 0
    plan = recorder.planned
    assert token not in "\n".join(plan)  # the plan reads the token from the variable
    setup_end = next(i for i, line in enumerate(plan) if "GOOGLE_APPLICATION_CREDENTIALS" in line)
    copy = tmp_path / "copy"
    script = [
        *plan[: setup_end + 1],
        f'cp "$CONDUIT_DEPLOY_DIR"/gcp-* "{copy}"/',
        f'stat -c %a "$GOOGLE_APPLICATION_CREDENTIALS" > "{copy}/mode"',
        f'printf %s "$GOOGLE_APPLICATION_CREDENTIALS" > "{copy}/path"',
    ]
    copy.mkdir()
    env = {"PATH": os.environ["PATH"], "GCP_ID_TOKEN": token, "TMPDIR": str(tmp_path)}
    bash = shutil.which("bash") or "bash"
    subprocess.run([bash, "-c", "\n".join(script)], env=env, check=True)
    info = json.loads((copy / "gcp-credentials.json").read_text())
    used_path = (copy / "path").read_text()
    assert info["credential_source"]["file"] == str(Path(used_path).parent / "gcp-id-token.jwt")
    assert (copy / "gcp-id-token.jwt").read_text() == token
    assert (copy / "mode").read_text().strip() == "600"
    info["credential_source"]["file"] = str(copy / "gcp-id-token.jwt")
    credentials = adc_load(info)
    assert credentials.retrieve_subject_token(None) == token
    assert credentials.service_account_email == WIF_ACCOUNT
