"""Fixtures of the drill tier: the programs it needs, or a skip (a failure in CI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.drill.local import DrillSetupError, barman_bindir, missing, postgres_bindir


@pytest.fixture
def postgres_bin() -> Path:
    try:
        return postgres_bindir()
    except DrillSetupError as exc:
        missing(str(exc))


@pytest.fixture
def barman() -> Path:
    try:
        return barman_bindir()
    except DrillSetupError as exc:
        missing(str(exc))
