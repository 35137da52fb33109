"""detect-secrets over Git history: every line that the commits of a range add.

    python -m security.secret_history BASE..HEAD > history.json   # a merge request's change
    python -m security.secret_history HEAD > history.json         # the whole history

A secret that a later commit deletes is still in the history (and in every clone), so
the tree scan alone misses it. The output is detect-secrets' own JSON (results{file:
[secret]}) with each secret's commit added; security.gate judges it like a tree scan.
"""

from __future__ import annotations

import json
import subprocess
import sys

from detect_secrets.core.scan import scan_diff
from detect_secrets.settings import default_settings

# As the tree scan's --exclude-files: the baseline holds the audited findings' hashes,
# never a secret, and every audit would otherwise add findings of its own.
BASELINE = ".secrets.baseline"


def git(*args: str) -> str:
    # git from PATH, with the revisions the job names: nothing reaches a shell.
    done = subprocess.run(  # noqa: S603
        ["git", *args],  # noqa: S607
        capture_output=True,
        text=True,
        errors="replace",
    )
    if done.returncode:
        raise SystemExit(f"secret_history: git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def scan(revisions: str) -> dict:
    results: dict[str, list[dict]] = {}
    with default_settings():
        for commit in git("rev-list", "--no-merges", revisions).split():
            # -U0: only the added lines themselves; --no-renames: a moved file is not new text.
            diff = git("show", "--format=", "--no-renames", "-U0", "--no-color", commit)
            if not diff.strip():
                continue
            for secret in scan_diff(diff):
                if secret.filename == BASELINE:
                    continue
                entry = {**secret.json(), "commit": commit}
                results.setdefault(secret.filename, []).append(entry)
    return {"revisions": revisions, "results": results}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m security.secret_history <git revision range>", file=sys.stderr)
        return 2
    json.dump(scan(argv[0]), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
