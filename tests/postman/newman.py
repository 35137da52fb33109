"""The official RealWorld Postman collection run by newman, with a bounded account.

Shared by the Postman tier (uWSGI on the host) and the image tier (the container behind
Envoy). The collection is a pinned upstream input (tests/upstream.toml).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests import upstream
from tests.support import require_program

ROOT = Path(__file__).resolve().parents[2]
# The newman that package-lock.json pins (`npm ci`), before any other on PATH.
LOCAL_NEWMAN = ROOT / "node_modules" / ".bin" / "newman"
SHOWN_FAILURES = 10
# Bounds on a run: the suite makes about 30 requests and finishes in seconds.
REQUEST_TIMEOUT_MS = 15_000
RUN_TIMEOUT_S = 300


def newman_binary() -> str:
    return str(LOCAL_NEWMAN) if LOCAL_NEWMAN.is_file() else require_program("newman")


def collection() -> Path:
    """The pinned Conduit.postman_collection.json (upstream.require: skipped without it)."""
    return upstream.require("realworld", "Conduit.postman_collection.json")


@dataclass(frozen=True)
class NewmanRun:
    api_url: str
    requests: int
    assertions: int
    failures: list[str]  # "<request>: <assertion>: <message>", in run order
    output: str  # newman's own output: its crashes land here, not in the report

    @property
    def passed(self) -> bool:
        return self.assertions > 0 and not self.failures

    def account(self) -> str:
        """What a person needs to see, bounded: the totals and the first failures."""
        lines = [
            f"newman against {self.api_url}: {self.requests} requests, "
            f"{self.assertions} assertions, {len(self.failures)} failed"
        ]
        lines += [f"  {failure}" for failure in self.failures[:SHOWN_FAILURES]]
        if len(self.failures) > SHOWN_FAILURES:
            lines.append(f"  ... and {len(self.failures) - SHOWN_FAILURES} more")
        if not self.requests:
            lines.append("newman's output ends:")
            lines += [line[:300] for line in self.output.splitlines()[-15:]]
        return "\n".join(lines)


def run_suite(api_url: str, workdir: Path) -> NewmanRun:
    """Run the whole collection against api_url (ending in /api) as a new user."""
    workdir.mkdir(parents=True, exist_ok=True)
    report = workdir / f"newman-{uuid.uuid4().hex[:8]}.json"
    # The collection registers this user first: a new name per run, so that runs
    # against one database never collide.
    user = f"pm{uuid.uuid4().hex[:12]}"
    command = [
        newman_binary(), "run", str(collection()),
        "--reporters", "json", "--reporter-json-export", str(report),
        "--timeout-request", str(REQUEST_TIMEOUT_MS), "--color", "off",
        "--global-var", f"APIURL={api_url}",
        "--global-var", f"USERNAME={user}",
        "--global-var", f"EMAIL={user}@example.com",
        "--global-var", "PASSWORD=postman-suite-password",
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    output = result.stdout + result.stderr
    if not report.exists():
        return NewmanRun(api_url, 0, 0, [f"newman exited {result.returncode}"], output)
    run = json.loads(report.read_text())["run"]
    failures = [
        f"{failure['source'].get('name', '?')}: "
        f"{failure['error'].get('test') or failure['error'].get('name')}: "
        f"{' '.join(failure['error'].get('message', '').split())[:160]}"
        for failure in run["failures"]
    ]
    if result.returncode and not failures:
        failures = [f"newman exited {result.returncode}"]
    stats = run["stats"]
    return NewmanRun(
        api_url, stats["requests"]["total"], stats["assertions"]["total"], failures, output
    )
