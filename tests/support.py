"""Helpers shared by every test tier."""

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_program(name: str) -> str:
    """Return the path of an external program the test drives.

    Locally a missing program skips the test with the reason; in CI (CI=true)
    it fails, so a tier can never pass by not running.
    """
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (.ci/setup-system.sh installs it)"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
