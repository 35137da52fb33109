"""Render dev and prod once per session with sample values and fresh random secrets.

The secrets are generated per run, so they exist nowhere in the repository: any test
that finds them outside the Secret stage has found a leak.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conduit_deploy.render import render

from tests.k8s.support import ENVIRONMENTS, K8S, RenderedEnv, load_all, sample_values


@pytest.fixture(scope="session")
def rendered_envs(tmp_path_factory) -> dict[str, RenderedEnv]:
    envs = {}
    for environment in ENVIRONMENTS:
        values = sample_values(environment)
        result = render(values, tmp_path_factory.mktemp(f"render-{environment}"))
        objects = [obj for _, path in result.stages for obj in load_all(path)]
        envs[environment] = RenderedEnv(
            environment, values, result, objects, load_all(result.kops_file)
        )
    return envs


@pytest.fixture
def repo_copy(tmp_path, monkeypatch) -> Path:
    """A copy of k8s/ that a test may change; render() reads it via CONDUIT_REPO_ROOT."""
    root = tmp_path / "repo"
    shutil.copytree(K8S, root / "k8s", ignore=shutil.ignore_patterns("monitoring"))
    monkeypatch.setenv("CONDUIT_REPO_ROOT", str(root))
    return root


@pytest.fixture(params=ENVIRONMENTS)
def env(request, rendered_envs) -> RenderedEnv:
    return rendered_envs[request.param]
