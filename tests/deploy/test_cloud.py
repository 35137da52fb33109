"""The credentials kops and kubectl get, and a dry run's plan replayed as a script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .support import GCP_KEY, ci_environ

# A stand-in for kops and kubectl: it records that the key it was given exists, is
# private, and holds the key, then answers like a cluster that is not there yet.
STUB = """#!/bin/sh
key="$GOOGLE_APPLICATION_CREDENTIALS"
mode=$(stat -c %a "$key" 2>/dev/null || stat -f %Lp "$key")
printf '%s %s mode=%s kubeconfig-folder=%s\\n' "$(basename "$0")" "$1" "$mode" \\
  "$(test -d "$(dirname "$KUBECONFIG")" && echo yes)" >> "$STUB_LOG"
cat "$key" > "$STUB_LOG.key"
exit 1
"""


@pytest.fixture
def stubs(tmp_path) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("kops", "kubectl"):
        path = folder / name
        path.write_text(STUB)
        path.chmod(0o755)
    return folder


def replay(plan: list[str], stubs: Path, tmp_path: Path, key_variable: str) -> str:
    script = tmp_path / "plan.sh"
    script.write_text("\n".join(plan) + "\n")
    log = tmp_path / "calls.log"
    env = {
        "PATH": f"{stubs}:{os.environ['PATH']}",
        "GCP_CREDENTIAL_FILE": key_variable,
        "STUB_LOG": str(log),
        "TMPDIR": str(tmp_path),
    }
    subprocess.run([shutil.which("bash") or "bash", "-n", str(script)], check=True)
    subprocess.run(["bash", str(script)], env=env, check=False, capture_output=True)
    return log.read_text() if log.exists() else ""


@pytest.mark.parametrize("as_file", [False, True], ids=["json-value", "file-variable"])
def test_a_dry_run_plan_replays_with_the_key_it_exports(
    run_command, recorder, fake_render, preflight, stubs, tmp_path, as_file
):
    key_text = json.dumps(GCP_KEY)
    key_variable = key_text
    if as_file:  # GitLab's File variable: the variable holds a path
        key_file = tmp_path / "gitlab-file-variable"
        key_file.write_text(key_text)
        key_variable = str(key_file)
    code, _, _ = run_command(
        "cluster", "dev", "--dry-run", render=fake_render, preflight=preflight,
        environ=ci_environ(GCP_CREDENTIAL_FILE=key_variable),
    )  # fmt: skip
    assert code == 0
    plan = recorder.planned
    exported = next(line for line in plan if "GOOGLE_APPLICATION_CREDENTIALS" in line)
    assert (
        exported
        == 'export GOOGLE_APPLICATION_CREDENTIALS="$CONDUIT_DEPLOY_DIR/gcp-credentials.json"'
    )
    assert GCP_KEY["private_key"] not in "\n".join(plan)  # the plan never shows the key

    calls = replay(plan, stubs, tmp_path, key_variable)
    # The first live query ran with a private key file holding the key.
    assert calls.splitlines()[0] == "kops get mode=600 kubeconfig-folder=yes"
    assert json.loads((tmp_path / "calls.log.key").read_text()) == GCP_KEY
    # The script removed its folder when it ended.
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("tmp.")]


def test_a_dry_run_writes_no_key(run_command, fake_render, preflight, monkeypatch):
    written = []
    monkeypatch.setattr("conduit_deploy.cloud.write_private", lambda *a: written.append(a))
    code, _, _ = run_command("cluster", "dev", "--dry-run", render=fake_render, preflight=preflight)
    assert code == 0
    assert written == []


def test_a_real_run_writes_the_key_private_and_removes_it(
    run_command, recorder, fake_render, preflight
):
    seen = {}

    def respond(args):
        path = Path(recorder.calls[-1].exported["GOOGLE_APPLICATION_CREDENTIALS"])
        seen.setdefault("key", (path, oct(path.stat().st_mode & 0o777), path.read_text()))

    recorder.respond = respond
    run_command("cluster", "dev", render=fake_render, preflight=preflight)
    path, mode, text = seen["key"]
    assert (mode, json.loads(text)) == ("0o600", GCP_KEY)
    assert not path.parent.exists()
