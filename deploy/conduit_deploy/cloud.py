"""Credentials for kops and kubectl, kept in a private temporary folder.

kops reads its state from GCS and drives GCE through Application Default
Credentials, so GOOGLE_APPLICATION_CREDENTIALS pointing at the service-account key is
all it needs: no gcloud in the job image. kubectl uses the admin certificate that
`kops export kubecfg --admin` writes; it expires on its own (ADMIN_CREDENTIAL_TTL).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .config import Settings
from .runner import Runner

# Long enough for the slowest cluster job (a rolling update of prod), short enough
# that a leaked kubeconfig is soon useless.
ADMIN_CREDENTIAL_TTL = "2h"


@dataclass(frozen=True)
class CloudSession:
    cluster_name: str
    credentials_file: Path
    kubeconfig: Path


@contextlib.contextmanager
def cloud_session(settings: Settings, runner: Runner) -> Iterator[CloudSession]:
    """Write the key to a 0600 file in a 0700 folder, export what kops needs, clean up."""
    with tempfile.TemporaryDirectory(prefix="conduit-deploy-") as folder:
        os.chmod(folder, 0o700)
        credentials = Path(folder, "gcp-credentials.json")
        # Created with 0600 from the start: no moment where others could read it.
        fd = os.open(credentials, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(settings.require("gcp_credentials"))
        runner.export("GOOGLE_APPLICATION_CREDENTIALS", str(credentials))
        runner.export("KOPS_STATE_STORE", settings.require("kops_state_store"))
        if settings.kops_feature_flags:
            runner.export("KOPS_FEATURE_FLAGS", settings.kops_feature_flags)
        kubeconfig = Path(folder, "kubeconfig")
        runner.export("KUBECONFIG", str(kubeconfig))
        yield CloudSession(settings.require("cluster_name"), credentials, kubeconfig)


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
