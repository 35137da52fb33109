"""Several `flask db upgrade` at once, as the init containers of several replicas run it.

migrations/env.py serialises them with a PostgreSQL advisory lock: exactly one applies
the migrations, the others wait for it and then find the schema at head. The gate
holds that lock itself while the processes start, so they are sure to reach it at the
same time (without it they would mostly just run one after another), and sees every
one of them wait for it before letting them go. Used with host processes
(test_concurrent_migrations.py) and with containers of the image (test_image.py).
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from tests.image.pg import connect

ROOT = Path(__file__).resolve().parents[2]
# The key migrations/env.py locks: if it changes there, the gate stops seeing the
# processes queue and says so.
MIGRATION_LOCK_KEY = zlib.crc32(b"conduit:alembic-upgrade")
WAITING = "Another process is migrating this database; waiting for it."
APPLIED = re.compile(r"Running upgrade (\S*) -> (\w+)")
QUEUE_TIMEOUT_S = 90  # a container's start counts too
UPGRADE_TIMEOUT_S = 120


def migration_revisions() -> tuple[set[str], list[str]]:
    """(heads, every revision) of the migrations in the repository."""
    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    scripts = ScriptDirectory.from_config(config)
    return set(scripts.get_heads()), [s.revision for s in scripts.walk_revisions()]


class Runner:
    """An upgrade process whose output is collected while it runs."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None):
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
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
        try:
            self.process.wait(timeout=UPGRADE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reader.join(timeout=10)
        return "".join(self.lines)


@dataclass(frozen=True)
class Upgrade:
    returncode: int
    output: str


def gated_upgrades(
    database_url: str, commands: list[tuple[list[str], dict | None]]
) -> list[Upgrade]:
    """Start every (argv, env) while holding the migration lock; release it once all wait."""
    with connect(database_url, autocommit=True) as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        runners = [Runner(argv, env) for argv, env in commands]
        try:
            deadline = time.monotonic() + QUEUE_TIMEOUT_S
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
    return [Upgrade(r.process.returncode, o) for r, o in zip(runners, outputs, strict=True)]


def assert_applied_once(upgrades: list[Upgrade], database_url: str) -> None:
    """All exited 0, one process applied every migration once, the schema is at head."""
    heads, revisions = migration_revisions()
    assert revisions, "no migrations in migrations/versions"
    for upgrade in upgrades:
        assert upgrade.returncode == 0, upgrade.output[-3000:]
    outputs = [upgrade.output for upgrade in upgrades]
    applied = [m.group(2) for output in outputs for m in APPLIED.finditer(output)]
    assert sorted(applied) == sorted(revisions), "\n---\n".join(o[-1500:] for o in outputs)
    appliers = [output for output in outputs if APPLIED.search(output)]
    assert len(appliers) == 1, f"{len(appliers)} processes applied migrations, expected one"
    with connect(database_url) as connection:
        versions = {row[0] for row in connection.execute("SELECT version_num FROM alembic_version")}
    assert versions == heads
