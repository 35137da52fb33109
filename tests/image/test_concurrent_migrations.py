"""Three `flask db upgrade` processes at once against one PostgreSQL database (see
tests/image/migrations.py): the advisory lock of migrations/env.py serialises them.
The image tier repeats this with containers of the image."""

from __future__ import annotations

import os
import secrets
import sys

from tests.image.migrations import assert_applied_once, gated_upgrades

RUNNERS = 3


def test_concurrent_upgrades_apply_each_migration_once(fresh_database):
    """Three upgrades at once all exit 0; exactly one applies each migration once."""
    env = {
        **os.environ,
        "FLASK_APP": "conduit",
        # The settings the image runs with, not the test shortcuts.
        "CONDUIT_ENV": "production",
        "CONDUIT_SECRET": secrets.token_urlsafe(48),
        "DATABASE_URL": fresh_database,
    }
    command = [sys.executable, "-m", "flask", "db", "upgrade"]
    upgrades = gated_upgrades(fresh_database, [(command, env)] * RUNNERS)
    assert_applied_once(upgrades, fresh_database)
