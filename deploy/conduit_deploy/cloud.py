"""Credentials for kops, kubectl and gcloud, kept in a private temporary folder for one
command (deploy/README.md, "Credentials"): the GCP key, or the configuration of Workload
Identity Federation and the job's ID token (workload_identity.py)."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import config
from .config import GcpKey, Settings
from .console import log
from .files import write_private
from .runner import Runner
from .workload_identity import WorkloadIdentity

# Long enough for the slowest cluster job (a rolling update of prod), short enough
# that a leaked kubeconfig is soon useless.
ADMIN_CREDENTIAL_TTL = "2h"


@dataclass(frozen=True)
class CloudSession:
    """What a command holds while the credentials are exported (cloud_session)."""

    cluster_name: str


CREDENTIALS_FILE = "gcp-credentials.json"
ID_TOKEN_FILE = "gcp-id-token.jwt"  # noqa: S105 - a file name
KUBECONFIG_FILE = "kubeconfig"
# What a dry run's plan does in their place, so that it replays as a script: the same
# private folder (mktemp -d creates it 0700, on Linux and macOS alike) and the
# credentials, written 0600 from the variables. Secrets are never printed: the plan
# reads them from the variables.
PLAN_FOLDER = "$CONDUIT_DEPLOY_DIR"
PLAN_SETUP = (
    "# a private folder for the credentials and the kubeconfig, removed when the script ends",
    'CONDUIT_DEPLOY_DIR="$(mktemp -d)"',
    "trap 'rm -rf \"$CONDUIT_DEPLOY_DIR\"' EXIT",
)
PLAN_KEY = (
    "# the key of GCP_CREDENTIAL_FILE (a file's path, or the JSON itself), mode 0600",
    '(umask 077; if [ -f "$GCP_CREDENTIAL_FILE" ]; then cat "$GCP_CREDENTIAL_FILE"; '
    f'else printf \'%s\' "$GCP_CREDENTIAL_FILE"; fi > "{PLAN_FOLDER}/{CREDENTIALS_FILE}")',
)
PLAN_WIF_COMMENT = (
    "# the job's ID token (GCP_ID_TOKEN) and the external-account configuration, mode 0600"
)


def _plan_workload_identity(identity: WorkloadIdentity) -> tuple[str, ...]:
    """The plan's lines that write the token and the configuration naming it."""
    # Every value in it is checked (digits, ids, an email): nothing to escape for the
    # single quotes, and the folder's path is spliced in where the file is named.
    marker = "@TOKEN_FILE@"
    text = json.dumps(identity.credential_config(marker))
    before, after = text.split(marker)
    return (
        PLAN_WIF_COMMENT,
        f'(umask 077; printf \'%s\' "$GCP_ID_TOKEN" > "{PLAN_FOLDER}/{ID_TOKEN_FILE}")',
        f"(umask 077; printf '%s\\n' '{before}'\"{PLAN_FOLDER}/{ID_TOKEN_FILE}\"'{after}' "
        f'> "{PLAN_FOLDER}/{CREDENTIALS_FILE}")',
    )


def describe_credential(settings: Settings) -> str:
    """Which credential the cloud commands use, for the log and the preflight."""
    credential = settings.gcp_credential
    if isinstance(credential, WorkloadIdentity):
        text = (
            f"Workload Identity Federation: the job's ID token through {credential.provider}, "
            f"as {credential.service_account}"
        )
        if settings.unused_key:
            text += "; GCP_CREDENTIAL_FILE is set too and not used: delete it and the key"
        return text
    account = credential.client_email or "an unnamed account"
    return f"the service-account key GCP_CREDENTIAL_FILE of {account}"


def write_credentials(
    folder: Path, credential: WorkloadIdentity | GcpKey, **endpoints: str
) -> Path:
    """The file GOOGLE_APPLICATION_CREDENTIALS names, 0600 in `folder`: the key, or the
    external-account configuration and, beside it, the job's ID token it reads.

    endpoints: token_url and iam_credentials for tests (workload_identity.credential_config).
    """
    path = folder / CREDENTIALS_FILE
    if isinstance(credential, WorkloadIdentity):
        token_file = folder / ID_TOKEN_FILE
        write_private(token_file, credential.token.text)
        config_text = json.dumps(credential.credential_config(str(token_file), **endpoints))
        write_private(path, config_text + "\n")
    else:
        write_private(path, credential.text)
    return path


@contextlib.contextmanager
def cloud_session(settings: Settings, runner: Runner) -> Iterator[CloudSession]:
    """Write the credentials to 0600 files in a 0700 folder, export what kops, gcloud and
    google-auth read, clean up.

    A dry run writes nothing: its plan creates the folder and the files itself.
    """
    credential = settings.gcp_credential
    log(f"==> credentials: {describe_credential(settings)}")
    # mkdtemp creates the folder 0700.
    with tempfile.TemporaryDirectory(prefix="conduit-deploy-") as folder:
        credentials = Path(folder, CREDENTIALS_FILE)
        kubeconfig = Path(folder, KUBECONFIG_FILE)
        if runner.dry_run:
            runner.script(*PLAN_SETUP)
            if isinstance(credential, WorkloadIdentity):
                runner.script(*_plan_workload_identity(credential))
            else:
                runner.script(*PLAN_KEY)
        else:
            write_credentials(Path(folder), credential)
        planned = f'"{PLAN_FOLDER}/{CREDENTIALS_FILE}"'
        # kops (Go's Application Default Credentials) and google-auth read the first,
        # gcloud the second (its auth/credential_file_override property).
        runner.export("GOOGLE_APPLICATION_CREDENTIALS", str(credentials), planned=planned)
        runner.export("CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE", str(credentials), planned=planned)
        runner.export("KOPS_STATE_STORE", settings.require(config.KOPS_STATE_STORE))
        feature_flags = settings.get(config.KOPS_FEATURE_FLAGS)
        if feature_flags:
            runner.export("KOPS_FEATURE_FLAGS", feature_flags)
        runner.export("KUBECONFIG", str(kubeconfig), planned=f'"{PLAN_FOLDER}/{KUBECONFIG_FILE}"')
        yield CloudSession(settings.require(config.K8S_CLUSTER_NAME))


def export_kubeconfig(session: CloudSession, runner: Runner) -> None:
    runner.run(
        [
            "kops",
            "export",
            "kubecfg",
            "--name",
            session.cluster_name,
            f"--admin={ADMIN_CREDENTIAL_TTL}",
        ]
    )
