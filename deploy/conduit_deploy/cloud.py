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
    """What a command holds while the credentials are exported (cloud_session)."""

    cluster_name: str


@contextlib.contextmanager
def cloud_session(settings: Settings, runner: Runner) -> Iterator[CloudSession]:
    """Write the key to a 0600 file in a 0700 folder, export what kops needs, clean up."""
    # mkdtemp creates the folder 0700.
    with tempfile.TemporaryDirectory(prefix="conduit-deploy-") as folder:
        credentials = Path(folder, "gcp-credentials.json")
        write_private(credentials, settings.require(config.GCP_CREDENTIAL_FILE).text)
        runner.export("GOOGLE_APPLICATION_CREDENTIALS", str(credentials))
        runner.export("KOPS_STATE_STORE", settings.require(config.KOPS_STATE_STORE))
        feature_flags = settings.get(config.KOPS_FEATURE_FLAGS)
        if feature_flags:
            runner.export("KOPS_FEATURE_FLAGS", feature_flags)
        runner.export("KUBECONFIG", str(Path(folder, "kubeconfig")))
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
