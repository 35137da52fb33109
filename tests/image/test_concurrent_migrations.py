"""Several `flask db upgrade` at once, as the init containers of several replicas run it.

migrations/env.py serialises them with a PostgreSQL advisory lock: exactly one applies
the migrations, the others wait for it and then find the schema at head. The test
holds that lock itself while the three processes start, so they are sure to reach it
at the same time (without the gate they would mostly just run one after another),
and sees all three wait for it before letting them go.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from tests.image.pg import connect

ROOT = Path(__file__).resolve().parents[2]
# The key migrations/env.py locks: if it changes there, this test stops seeing the
# processes queue and says so.
MIGRATION_LOCK_KEY = zlib.crc32(b"conduit:alembic-upgrade")
RUNNERS = 3
APPLIED = re.compile(r"Running upgrade (\S*) -> (\w+)")


def migration_revisions() -> tuple[set[str], list[str]]:
    """(heads, every revision) of the migrations in the repository."""
    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    scripts = ScriptDirectory.from_config(config)
    return set(scripts.get_heads()), [s.revision for s in scripts.walk_revisions()]


def upgrade_process(database_url: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "FLASK_APP": "conduit",
        # The settings the image runs with, not the test shortcuts.
        "CONDUIT_ENV": "production",
        "CONDUIT_SECRET": secrets.token_urlsafe(48),
        "DATABASE_URL": database_url,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


WAITING = "Another process is migrating this database; waiting for it."


class Runner:
    """A `flask db upgrade` process whose output is collected while it runs."""

    def __init__(self, database_url: str):
        self.process = upgrade_process(database_url)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def waiting(self) -> bool:
        return any(WAITING in line for line in self.lines)

    def finish(self) -> str:
        self.process.wait(timeout=120)
        self.reader.join(timeout=10)
        return "".join(self.lines)


def test_concurrent_upgrades_apply_each_migration_once(fresh_database):
    heads, revisions = migration_revisions()
    assert revisions, "no migrations in migrations/versions"

    with connect(fresh_database, autocommit=True) as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        runners = [Runner(fresh_database) for _ in range(RUNNERS)]
        try:
            deadline = time.monotonic() + 60
            while not all(r.waiting for r in runners):
                early = [r for r in runners if r.process.poll() is not None]
                assert not early, (
                    "an upgrade finished while the migration lock was held: " + early[0].finish()
                )
                assert time.monotonic() < deadline, "the upgrades never waited for the lock"
                time.sleep(0.1)
        finally:
            gate.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
            outputs = [r.finish() for r in runners]

    for runner, output in zip(runners, outputs, strict=True):
        assert runner.process.returncode == 0, output

    applied = [m.group(2) for output in outputs for m in APPLIED.finditer(output)]
    assert sorted(applied) == sorted(revisions), "\n---\n".join(outputs)
    appliers = [output for output in outputs if APPLIED.search(output)]
    assert len(appliers) == 1, "more than one process applied migrations"

    with connect(fresh_database) as connection:
        versions = {row[0] for row in connection.execute("SELECT version_num FROM alembic_version")}
    assert versions == heads
