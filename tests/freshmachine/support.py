"""The new user's machine: a container, commands run in it, what was measured."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import ROOT

HERE = Path(__file__).parent
# The Debian releases a new user may have, and the python3 each ships: trixie (13) is
# Debian's stable release, bookworm (12) the one before it and this project's own base.
RELEASES = {"bookworm": "3.11", "trixie": "3.13"}
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
MEASUREMENTS = ROOT / "build" / "freshmachine" / "measurements.json"
HOME = "/home/newcomer"
USER_ID = 1000  # newcomer's, fixed in the Dockerfile
# npm's download cache, kept between runs on this machine: it changes how fast packages
# arrive, never which ones. FRESHMACHINE_CACHE= (empty) runs cold. (pip's would not help
# here: this machine's proxy answers without the headers pip needs to cache a download.)
DEFAULT_CACHE = "/var/cache/conduit-freshmachine"


def base_image(release: str) -> str:
    """docker/build-base-image.sh's debootstrapped Debian with python3."""
    return f"conduit-base:{release}"


def machine_image(release: str) -> str:
    return f"conduit-freshmachine:{release}"


@dataclass
class Machine:
    """One running container; commands run as its unprivileged user, in its home."""

    name: str
    release: str
    measurements: dict[str, float] = field(default_factory=dict)

    def sh(self, script: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "exec", self.name, "bash", "-c", script],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, script: str) -> None:
        """Run `script` in the background (it records its own exit status)."""
        subprocess.run(["docker", "exec", "--detach", self.name, "bash", "-c", script], check=True)

    def size_mb(self, path: str) -> float:
        result = self.sh(f"du -sm {path} | cut -f1", timeout=120)
        assert result.returncode == 0, result.stderr
        return float(result.stdout)


@dataclass
class Served:
    url: str
    log: str


def report(measurements: dict[str, float], terminal) -> None:
    """Keep the figures in MEASUREMENTS and show them at the end of the run."""
    MEASUREMENTS.parent.mkdir(parents=True, exist_ok=True)
    MEASUREMENTS.write_text(json.dumps(measurements, indent=2) + "\n")
    terminal.section("fresh machine: measured")
    for key, value in measurements.items():
        terminal.write_line(f"{key}: {value:g}")
