"""Credentials for kops and kubectl, kept in a private temporary folder for one command
(deploy/README.md, "Credentials")."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import config
from .config import Settings
from .files import write_private
from .runner import Runner

# Long enough for the slowest cluster job (a rolling update of prod), short enough
# that a leaked kubeconfig is soon useless.
ADMIN_CREDENTIAL_TTL = "2h"


@dataclass(frozen=True)
class CloudSession:
    cluster_name: str
    credentials_file: Path
    kubeconfig: Path


CREDENTIALS_FILE = "gcp-credentials.json"
KUBECONFIG_FILE = "kubeconfig"
# What a dry run's plan does in their place, so that it replays as a script: the same
# private folder (mktemp -d creates it 0700, on Linux and macOS alike) and the key,
# written 0600 from GCP_CREDENTIAL_FILE (a File variable's path, or the JSON itself).
# The key itself is never printed: the plan reads it from the variable.
PLAN_FOLDER = "$CONDUIT_DEPLOY_DIR"
PLAN_SETUP = (
    "# a private folder for the key and the kubeconfig, removed when the script ends",
    'CONDUIT_DEPLOY_DIR="$(mktemp -d)"',
    "trap 'rm -rf \"$CONDUIT_DEPLOY_DIR\"' EXIT",
    "# the key of GCP_CREDENTIAL_FILE (a file's path, or the JSON itself), mode 0600",
    '(umask 077; if [ -f "$GCP_CREDENTIAL_FILE" ]; then cat "$GCP_CREDENTIAL_FILE"; '
    f'else printf \'%s\' "$GCP_CREDENTIAL_FILE"; fi > "{PLAN_FOLDER}/{CREDENTIALS_FILE}")',
)


@contextlib.contextmanager
def cloud_session(settings: Settings, runner: Runner) -> Iterator[CloudSession]:
    """Write the key to a 0600 file in a 0700 folder, export what kops needs, clean up.

    A dry run writes nothing: its plan creates the folder and the key file itself.
    """
    # mkdtemp creates the folder 0700.
    with tempfile.TemporaryDirectory(prefix="conduit-deploy-") as folder:
        credentials = Path(folder, CREDENTIALS_FILE)
        kubeconfig = Path(folder, KUBECONFIG_FILE)
        if runner.dry_run:
            runner.script(*PLAN_SETUP)
        else:
            write_private(credentials, settings.require(config.GCP_CREDENTIAL_FILE).text)
        runner.export(
            "GOOGLE_APPLICATION_CREDENTIALS",
            str(credentials),
            planned=f'"{PLAN_FOLDER}/{CREDENTIALS_FILE}"',
        )
        runner.export("KOPS_STATE_STORE", settings.require(config.KOPS_STATE_STORE))
        feature_flags = settings.get(config.KOPS_FEATURE_FLAGS)
        if feature_flags:
            runner.export("KOPS_FEATURE_FLAGS", feature_flags)
        runner.export("KUBECONFIG", str(kubeconfig), planned=f'"{PLAN_FOLDER}/{KUBECONFIG_FILE}"')
        yield CloudSession(settings.require(config.K8S_CLUSTER_NAME), credentials, kubeconfig)


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
