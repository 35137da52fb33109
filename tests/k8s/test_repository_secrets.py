"""No secret reaches a file that could be committed.

The sample secrets are random per test session (tests/k8s/conftest.py), so finding
one in the work tree means render() leaked it there. The deployment sources (k8s/
and deploy/) are also scanned for credentials written as literals.
"""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import pytest
from conduit_deploy.render import render

from tests.k8s.support import REPO_ROOT, sample_values

# scheme://user:password@host, unless the password is a template or a variable.
_URL_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:(?P<secret>[^@\s'\"]+)@")
# KEY: value / KEY=value where KEY names a password, secret, token or key.
_SECRET_ASSIGNMENT = re.compile(
    r"(?im)^[ \t-]*[\"']?(?P<key>[\w.-]*(password|passwd|secret|token|api[_-]?key)[\w.-]*)[\"']?"
    r"[ \t]*[:=][ \t]*[\"']?(?P<secret>[^\s\"'#]+)"
)
# Kubernetes fields whose value names a Secret object rather than holding one
# (configSecret: prometheus-operator's Alertmanager, set in the stack's Helm values).
_REFERENCE_KEYS = {"secretname", "secretkeyref", "secretref", "configsecret"}
# Templates, variables, masks and code (os.environ[...], values.password) are not literals.
_PLACEHOLDER = re.compile(
    r"^[{$<%(]|^\*+$|^(null|none|true|false|~)$|^[A-Za-z_]\w*[.\[(]", re.IGNORECASE
)
_SCANNED_DIRS = ("k8s", "deploy")


def committable_files() -> list[Path]:
    """Tracked files plus untracked ones that .gitignore does not exclude."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [
        REPO_ROOT / name for name in listed.split("\0") if name and (REPO_ROOT / name).is_file()
    ]


def read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except (UnicodeDecodeError, OSError):
        return None


def literal_credentials(text: str, python: bool) -> list[str]:
    """Credential literals in a file's text (assignments are only judged outside Python)."""
    found = [m["secret"] for m in _URL_CREDENTIALS.finditer(text)]
    if not python:
        found += [
            m["secret"]
            for m in _SECRET_ASSIGNMENT.finditer(text)
            if m["key"].lower() not in _REFERENCE_KEYS
        ]
    return [value for value in found if not _PLACEHOLDER.match(value)]


def test_rendered_secrets_stay_out_of_the_work_tree(rendered_envs, tmp_path):
    # Also render once more into a fresh directory: whatever render() leaves behind
    # has to be outside the repository.
    extra = sample_values("prod")
    render(extra, tmp_path)
    secrets = [extra.db_password, extra.conduit_secret]
    for env in rendered_envs.values():
        secrets += [env.values.db_password, env.values.conduit_secret]
    needles = secrets + [base64.b64encode(s.encode()).decode() for s in secrets]
    leaks = []
    for path in committable_files():
        text = read_text(path)
        if text is not None:
            leaks += [f"{path.relative_to(REPO_ROOT)}" for needle in needles if needle in text]
    assert leaks == []


def test_deployment_sources_hold_no_literal_credentials():
    findings = []
    for path in committable_files():
        relative = path.relative_to(REPO_ROOT)
        if relative.parts[0] not in _SCANNED_DIRS:
            continue
        text = read_text(path)
        if text is None:
            continue
        for value in literal_credentials(text, python=path.suffix == ".py"):
            findings.append(f"{relative}: {value[:4]}…")
    assert findings == []


@pytest.mark.parametrize(
    "text",
    [
        "DATABASE_URL=postgresql://conduit:hunter22@db:5432/conduit",
        "  POSTGRES_PASSWORD: s3cr3t-value",
        '- CONDUIT_SECRET="0123456789abcdef0123456789abcdef"',
        "api_key = AKIA1234567890",
    ],
)
def test_scanner_finds_planted_literals(text):
    assert literal_credentials(text, python=False)


@pytest.mark.parametrize(
    "text",
    [
        "url = f'postgresql+psycopg://{user}:{password}@{host}/db'",
        "DATABASE_URL: postgresql://$DB_USER:$DB_PASSWORD@db/conduit",
        "            key: POSTGRES_PASSWORD",
        "  secretName: conduit-tls",
        'db_password=os.environ["DB_PASSWORD"]',
    ],
)
def test_scanner_ignores_templates_and_references(text):
    assert literal_credentials(text, python=False) == []
