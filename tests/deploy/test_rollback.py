"""A rollback after a release that migrated, end to end: the new release's pods migrate
the database and then fail, the deploy rolls the Deployment back, and the previous
release's pods start and serve on the migrated schema; no migration is undone, and the
next deploy takes the Deployment back from the rollback.

The cluster is scripted, but its pods run for real: each pod start runs the init
container's command from k8s/base/app-deployment.yaml and then the readiness probe's
/readyz, as the app of that release (this code, with the release's migrations) against
one SQLite database.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from conduit_deploy.runner import Result

from tests.releases import MIGRATIONS, head_and_parent, release_migrations
from tests.support import app_env

from .test_deploy import Cluster as Platform

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "k8s" / "base" / "app-deployment.yaml"
IMAGE = "docker.io/team/conduit:01234567"  # what ci_environ() deploys
PREVIOUS = "docker.io/team/conduit:v1.4.0"
NEXT_REVISION = "0f1e2d3c4b5a"
PROGRESS_DEADLINE = 'error: deployment "conduit" exceeded its progress deadline'
READINESS = """
import sys
from conduit import create_app
response = create_app().test_client().get("/readyz")
print(response.status_code, response.get_data(as_text=True).strip())
sys.exit(response.status_code != 200)
"""


def pod_spec() -> dict:
    deployment = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    return deployment["spec"]["template"]["spec"]


@dataclass
class Release:
    image: str
    migrations: Path
    crashes: bool = False  # its API container fails after the init container ran


@dataclass
class Pods:
    """Starts a release's pod here: its init container, then its readiness probe."""

    database_url: str
    log: list[tuple[str, str, int, str]] = field(default_factory=list)

    def run(self, release: Release, what: str, command: list[str]) -> bool:
        if command[0] == "flask":  # the image's entry point; here this virtualenv's
            command = [sys.executable, "-m", "flask", *command[1:]]
        env = {
            **os.environ,
            **app_env(self.database_url, CONDUIT_MIGRATIONS_DIR=str(release.migrations)),
            "FLASK_APP": "conduit",
            "LOG_LEVEL": "WARNING",
        }
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
        self.log.append((release.image, what, done.returncode, done.stdout + done.stderr))
        return done.returncode == 0

    def start(self, release: Release) -> bool:
        """Whether the release's pod becomes ready."""
        [init] = pod_spec()["initContainers"]
        if not self.run(release, "init", init["command"]):
            return False
        if release.crashes:
            self.log.append((release.image, "crash", 1, ""))
            return False
        return self.run(release, "readyz", [sys.executable, "-c", READINESS])


@dataclass
class ReleaseCluster:
    """kubectl's answers about the app's Deployment, following its revisions, with
    Server-Side Apply's field ownership of the pod template; the rest of the cluster
    (ingress, monitoring, Secrets) answers as in test_deploy.py."""

    pods: Pods
    releases: dict[str, Release]
    revisions: dict[int, str] = field(default_factory=dict)  # revision -> image
    current: int = 0
    template_manager: str = "conduit-deploy"
    applied: list[tuple[str, ...]] = field(default_factory=list)
    platform: Platform = field(default_factory=lambda: Platform(addresses=[]))

    def respond(self, args):
        if args[:3] == ("kubectl", "get", "deployment"):
            return Result(args, 0, str(self.current) if self.current else "")
        if args[:2] == ("kubectl", "apply") and args[-1].endswith("-app.yaml"):
            return self._apply_app(args)
        if args[:4] == ("kubectl", "rollout", "status", "deployment/conduit"):
            if self.pods.start(self.releases[self.revisions[self.current]]):
                return Result(args, 0, 'deployment "conduit" successfully rolled out\n')
            return Result(args, 1, "", PROGRESS_DEADLINE)
        if args[:3] == ("kubectl", "rollout", "undo"):
            target = int(args[-1].removeprefix("--to-revision="))
            # The Deployment controller gives the restored template the next number.
            self._new_revision(self.revisions.pop(target))
            # kubectl patches the template (not an apply), so it now manages its fields.
            self.template_manager = "kubectl"
            return Result(args, 0, "deployment.apps/conduit rolled back\n")
        return self.platform.respond(args)

    def _apply_app(self, args):
        self.applied.append(args)
        image = IMAGE
        if image == self.revisions.get(self.current):
            return None  # nothing changes: no new revision
        if self.template_manager != "conduit-deploy" and "--force-conflicts" not in args:
            # Shape: kubernetes.io/docs/reference/using-api/server-side-apply, "Conflicts".
            return Result(
                args,
                1,
                "",
                f'error: Apply failed with 1 conflict: conflict with "{self.template_manager}" '
                'using apps/v1: .spec.template.spec.containers[name="conduit"].image',
            )
        self.template_manager = "conduit-deploy"
        self._new_revision(image)
        return None

    def _new_revision(self, image: str) -> None:
        self.current = max(self.revisions, default=0) + 1
        self.revisions[self.current] = image


@pytest.fixture
def database_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'conduit.sqlite'}"


@pytest.fixture
def releases(tmp_path) -> dict[str, Release]:
    head, _ = head_and_parent()
    next_release = release_migrations(tmp_path / "next-release", NEXT_REVISION, head)
    return {
        PREVIOUS: Release(PREVIOUS, MIGRATIONS),
        IMAGE: Release(IMAGE, next_release, crashes=True),
    }


@pytest.fixture
def cluster(database_url, releases, recorder) -> ReleaseCluster:
    """The previous release serving at revision 3, its schema migrated by its pods."""
    pods = Pods(database_url)
    cluster = ReleaseCluster(pods, releases, revisions={3: PREVIOUS}, current=3)
    assert pods.start(releases[PREVIOUS]), pods.log
    pods.log.clear()
    recorder.respond = cluster.respond
    return cluster


def deploy(run_command, fake_render, tmp_path):
    return run_command(
        "deploy",
        "dev",
        "--env-file",
        str(tmp_path / "deploy.env"),
        render=fake_render,
        smoke=lambda url, options: None,
        preflight=lambda environment, settings, *, registry: None,
    )


def database_heads(database_url: str) -> list[str]:
    import sqlite3

    path = database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        return [row[0] for row in connection.execute("SELECT version_num FROM alembic_version")]


def test_a_release_failing_after_its_migration_rolls_back_to_a_release_that_serves(
    run_command, fake_render, tmp_path, recorder, cluster, releases, database_url, downloads
):
    code, _, err = deploy(run_command, fake_render, tmp_path)

    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"conduit-deploy: error: the rollout of {IMAGE} did not finish")
    assert last.endswith(f"{PROGRESS_DEADLINE}; deployment/conduit rolled back to revision 3")
    steps = [(image, what, status) for image, what, status, _ in cluster.pods.log]
    assert steps == [
        (IMAGE, "init", 0),  # the new release migrated the database ...
        (IMAGE, "crash", 1),  # ... and then failed
        (PREVIOUS, "init", 0),  # the previous release starts on the migrated schema
        (PREVIOUS, "readyz", 0),  # and serves it
    ]
    previous_init = cluster.pods.log[2][3]
    assert "a later release migrated past this release's head" in previous_init
    assert cluster.revisions == {4: IMAGE, 5: PREVIOUS}
    # Nothing was undone: the schema is still the new release's, and no command of the
    # deploy (nor of any pod) downgraded it.
    assert database_heads(database_url) == [NEXT_REVISION]
    assert not [c for c in recorder.commands if "downgrade" in c]

    # The fixed release deploys over the rollback: its apply takes the template back.
    releases[IMAGE].crashes = False
    cluster.pods.log.clear()
    code, _, err = deploy(run_command, fake_render, tmp_path)
    assert code == 0, err
    assert "--force-conflicts" in cluster.applied[-1]
    assert [(image, what, status) for image, what, status, _ in cluster.pods.log] == [
        (IMAGE, "init", 0),
        (IMAGE, "readyz", 0),
    ]
    assert database_heads(database_url) == [NEXT_REVISION]
