"""Progress lines: on stderr, so that stdout stays machine-readable (dotenv, dry-run plans)."""

from __future__ import annotations

import sys


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
