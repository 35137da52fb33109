"""The security tier: the scanners on the real tree pass the policy; on planted fixtures
(a fake secret, a pinned package with an advisory, an image with a vulnerable package)
they fail it. No advisory service is reachable here, so pip-audit queries a local OSV
server (pytest-httpserver) that answers in OSV's shape; trivy's report is a fixture in
trivy's JSON shape, as trivy does not install from PyPI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.security.osv import kev_catalogue, osv_record, serve_osv

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Built at run time, so the tree itself holds no string a scanner takes for a key.
FAKE_AWS_KEY = "AKIA" + "QYLPMN5HHHFPZAM2"
# What the tree scan skips (the same in .gitlab-ci.yml): the baseline holds hashes only.
TREE_EXCLUDE = r"^\.secrets\.baseline$"
FAKE_AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"


def gate(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "security.gate", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def tool(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


# --- SAST ---------------------------------------------------------------------------


def test_bandit_on_the_tree_reports_and_passes(tmp_path):
    scanned = tool(
        "bandit",
        "-r",
        "conduit",
        "deploy/conduit_deploy",
        "-f",
        "json",
        "-o",
        str(tmp_path / "bandit.json"),
        "-q",
    )
    assert scanned.returncode in (0, 1), scanned.stderr  # 1: findings (reported only)
    result = gate("--reports", str(tmp_path), "sast", "--bandit", str(tmp_path / "bandit.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "gl-sast-report.json").read_text())
    assert report["scan"]["type"] == "sast"
    assert report["scan"]["scanner"]["id"] == "bandit"
    for vulnerability in report["vulnerabilities"]:
        assert vulnerability["identifiers"]
        assert vulnerability["location"]["file"]


# --- secrets -------------------------------------------------------------------------


def test_the_tree_has_no_secret_beyond_the_audited_baseline(tmp_path):
    scanned = tool("detect-secrets", "scan", "--exclude-files", TREE_EXCLUDE)
    assert scanned.returncode == 0, scanned.stderr
    (tmp_path / "tree.json").write_text(scanned.stdout)
    result = gate(
        "--reports", str(tmp_path), "secrets", "--detect-secrets", str(tmp_path / "tree.json")
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_history_has_no_secret_beyond_the_audited_baseline(tmp_path):
    # A project's first pipeline (a new ref) scans every commit the clone holds: the
    # security job, and pack after it, must pass on the history as pushed.
    (tmp_path / "history.json").write_text(secret_history(ROOT))
    result = gate(
        "--reports", str(tmp_path), "secrets", "--detect-secrets", str(tmp_path / "history.json")
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_baseline_entry_is_audited_as_not_a_secret():
    baseline = json.loads((ROOT / ".secrets.baseline").read_text())
    unaudited = [
        f"{name}:{secret.get('line_number')}"
        for name, secrets in baseline["results"].items()
        for secret in secrets
        if secret.get("is_secret") is not False
    ]
    assert not unaudited, f"run `detect-secrets audit .secrets.baseline` for {unaudited}"


@pytest.fixture
def repository_with_a_leak(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "settings.py").write_text(
        f'AWS_ACCESS_KEY_ID = "{FAKE_AWS_KEY}"\nAWS_SECRET_ACCESS_KEY = "{FAKE_AWS_SECRET}"\n'
    )
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "leak"], check=True)
    return repo, git


def judge_secrets(tmp_path, scan: str) -> subprocess.CompletedProcess:
    """The gate on a detect-secrets scan of the scratch repository (it has no baseline)."""
    (tmp_path / "scan.json").write_text(scan)
    return gate(
        "--reports",
        str(tmp_path),
        "secrets",
        "--detect-secrets",
        str(tmp_path / "scan.json"),
        "--baseline",
        str(tmp_path / "no-baseline"),
    )


def test_a_planted_secret_in_the_tree_fails(repository_with_a_leak, tmp_path):
    repo, _ = repository_with_a_leak
    scanned = tool("detect-secrets", "scan", cwd=repo)
    result = judge_secrets(tmp_path, scanned.stdout)
    assert result.returncode == 1
    assert "BLOCKS: AWS Access Key settings.py:1" in result.stdout
    report = json.loads((tmp_path / "gl-secret-detection-report.json").read_text())
    assert {v["severity"] for v in report["vulnerabilities"]} == {"Critical"}
    assert report["vulnerabilities"][0]["location"]["commit"]["sha"]


def secret_history(repo: Path) -> str:
    """security.secret_history's JSON for every commit of `repo`."""
    done = subprocess.run(
        [sys.executable, "-m", "security.secret_history", "HEAD"],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_secret_deleted_later_is_still_found_in_the_history(repository_with_a_leak, tmp_path):
    repo, git = repository_with_a_leak
    (repo / "settings.py").write_text("import os\nAWS_ACCESS_KEY_ID = os.environ['KEY']\n")
    subprocess.run([*git, "commit", "-qam", "remove the key"], check=True)
    assert "AKIA" not in (repo / "settings.py").read_text()

    result = judge_secrets(tmp_path, secret_history(repo))
    assert result.returncode == 1
    first = subprocess.run(
        [*git, "rev-list", "--max-parents=0", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert f"settings.py:1 in commit {first[:12]}" in result.stdout


def test_the_history_scan_skips_the_baseline_but_not_what_its_commit_adds(
    repository_with_a_leak,
):
    repo, git = repository_with_a_leak
    # An audit commit: the baseline gets the finding's hash (detect-secrets' own shape,
    # which its scanners flag), and the same commit adds a real-looking key elsewhere.
    digest = hashlib.sha1(b"an audited false positive").hexdigest()  # noqa: S324
    audited = {"type": "Secret Keyword", "hashed_secret": digest}
    (repo / ".secrets.baseline").write_text(json.dumps({"results": {"a.py": [audited]}}))
    (repo / "deploy.py").write_text(f'aws_secret_access_key = "{FAKE_AWS_SECRET}"\n')
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "audit"], check=True)

    results = json.loads(secret_history(repo))["results"]
    assert ".secrets.baseline" not in results
    assert "deploy.py" in results
    assert "settings.py" in results


# --- dependencies (pip-audit against a local OSV service) -----------------------------


@pytest.fixture
def osv(httpserver):
    """A local OSV API (tests/security/osv.py) serving the given records."""
    return lambda records: serve_osv(httpserver, records)


def audit(tmp_path, api, requirements: Path, *policy_args: str, kev=()):
    environment = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    audited = tool(
        "pip-audit",
        "-r",
        str(requirements),
        "--no-deps",
        "--disable-pip",
        "-s",
        "osv",
        "--osv-url",
        f"{api}/v1/query",
        "-f",
        "json",
        "-o",
        str(tmp_path / "audit.json"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--progress-spinner",
        "off",
        env=environment,
    )
    assert audited.returncode in (0, 1), audited.stderr
    old = {k: os.environ.get(k) for k in environment}
    os.environ.update(environment)
    try:
        return gate(
            *policy_args,
            "--reports",
            str(tmp_path),
            "dependencies",
            "--pip-audit",
            str(tmp_path / "audit.json"),
            "--file",
            requirements.name,
            "--osv-api",
            api,
            "--kev",
            str(kev_catalogue(tmp_path / "kev.json", *kev)),
        )
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def pinned(tmp_path, line):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(line + "\n")
    return requirements


def test_the_lock_file_passes_when_no_advisory_names_its_pins(tmp_path, osv):
    api = osv([osv_record("GHSA-aaaa-bbbb-cccc", "left-pad-py", "2.0", "CRITICAL", "CVE-2026-1")])
    result = audit(tmp_path, api, ROOT / "requirements.lock")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "gl-dependency-scanning-report.json").read_text())
    assert report["vulnerabilities"] == []


def test_a_critical_advisory_with_a_fix_fails(tmp_path, osv):
    api = osv([osv_record("GHSA-2222-3333-4444", "flask", "9.9.9", "CRITICAL", "CVE-2026-20001")])
    result = audit(tmp_path, api, pinned(tmp_path, "flask==3.1.3"))
    assert result.returncode == 1
    assert "BLOCKS: CVE-2026-20001 flask 3.1.3" in result.stdout
    assert "critical with a fix available (9.9.9)" in result.stdout
    report = json.loads((tmp_path / "gl-dependency-scanning-report.json").read_text())
    (vulnerability,) = report["vulnerabilities"]
    assert vulnerability["severity"] == "Critical"
    assert vulnerability["location"]["dependency"] == {
        "package": {"name": "flask"},
        "version": "3.1.3",
    }


@pytest.mark.parametrize(
    ("severity", "fixed"),
    [("HIGH", "9.9.9"), ("CRITICAL", None)],
    ids=["high-fixed", "critical-unfixed"],
)
def test_other_advisories_are_reported_only(tmp_path, osv, severity, fixed):
    api = osv([osv_record("GHSA-5555-6666-7777", "flask", fixed, severity, "CVE-2026-20002")])
    result = audit(tmp_path, api, pinned(tmp_path, "flask==3.1.3"))
    assert result.returncode == 0, result.stdout
    assert "1 finding(s) reported" in result.stdout


def test_a_known_exploited_advisory_fails_even_without_a_fix(tmp_path, osv):
    api = osv([osv_record("GHSA-8888-9999-aaaa", "flask", None, "MODERATE", "CVE-2026-20003")])
    result = audit(tmp_path, api, pinned(tmp_path, "flask==3.1.3"), kev=["CVE-2026-20003"])
    assert result.returncode == 1
    assert "known to be exploited (CISA KEV)" in result.stdout


def write_policy(tmp_path, expires):
    policy = tmp_path / "policy.toml"
    policy.write_text(
        (ROOT / "security" / "policy.toml").read_text()
        + f'\n[[allow]]\nid = "CVE-2026-20001"\nreason = "not reachable"\nexpires = {expires}\n'
    )
    return policy


def test_an_allow_list_entry_accepts_the_risk_until_it_expires(tmp_path, osv):
    api = osv([osv_record("GHSA-2222-3333-4444", "flask", "9.9.9", "CRITICAL", "CVE-2026-20001")])
    requirements = pinned(tmp_path, "flask==3.1.3")
    policy = write_policy(tmp_path, "2026-12-31")
    result = audit(tmp_path, api, requirements, "--policy", str(policy), "--today", "2026-12-05")
    assert result.returncode == 0, result.stdout
    assert (
        "accepted: CVE-2026-20001 flask 3.1.3 (requirements.txt): "
        "allowed until 2026-12-31 (not reachable)" in result.stdout
    )

    result = audit(tmp_path, api, requirements, "--policy", str(policy), "--today", "2027-01-01")
    assert result.returncode == 1
    assert "the allow-list entry for CVE-2026-20001 expired on 2026-12-31" in result.stdout


def test_an_allow_list_entry_without_a_reason_is_refused(tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text('[[allow]]\nid = "CVE-1"\nexpires = 2027-01-01\n')
    result = gate("--policy", str(policy), "sast", "--bandit", str(tmp_path / "none.json"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"security gate: {policy}: allow entry 1 lacks reason"


# --- container (trivy's JSON report) -------------------------------------------------


def trivy_report(severity, fixed):
    # trivy image --format json (aquasecurity/trivy pkg/types/report.go, vulnerability.go):
    # SchemaVersion 2, ArtifactName, Metadata.OS{Family,Name}, Results[] of Target, Class,
    # Type, Vulnerabilities[] of VulnerabilityID, PkgName, InstalledVersion, FixedVersion,
    # Status, Severity, Title, PrimaryURL.
    vulnerability = {
        "VulnerabilityID": "CVE-2026-30001",
        "PkgName": "libssl3",
        "InstalledVersion": "3.0.15-1~deb12u1",
        "Status": "fixed" if fixed else "affected",
        "Severity": severity,
        "Title": "openssl: fixture vulnerability",
        "PrimaryURL": "https://avd.aquasec.com/nvd/cve-2026-30001",
        **({"FixedVersion": fixed} if fixed else {}),
    }
    return {
        "SchemaVersion": 2,
        "ArtifactName": "docker.io/example/conduit:abc1234",
        "ArtifactType": "container_image",
        "Metadata": {"OS": {"Family": "debian", "Name": "12.12"}},
        "Results": [
            {
                "Target": "example/conduit (debian 12.12)",
                "Class": "os-pkgs",
                "Type": "debian",
                "Vulnerabilities": [vulnerability],
            }
        ],
    }


@pytest.mark.parametrize(
    ("severity", "fixed", "blocks"),
    [
        ("CRITICAL", "3.0.16-1~deb12u1", True),
        ("CRITICAL", None, False),
        ("HIGH", "3.0.16-1~deb12u1", False),
    ],
)
def test_an_image_with_a_vulnerable_package(tmp_path, severity, fixed, blocks):
    (tmp_path / "trivy.json").write_text(json.dumps(trivy_report(severity, fixed)))
    image = "docker.io/example/conduit@sha256:" + "a" * 64
    result = gate(
        "--reports",
        str(tmp_path),
        "container",
        "--trivy",
        str(tmp_path / "trivy.json"),
        "--image",
        image,
        "--kev",
        str(kev_catalogue(tmp_path / "kev.json")),
    )
    assert result.returncode == (1 if blocks else 0), result.stdout
    report = json.loads((tmp_path / "gl-container-scanning-report.json").read_text())
    (vulnerability,) = report["vulnerabilities"]
    assert vulnerability["location"]["operating_system"] == "debian:12.12"
    assert vulnerability["location"]["image"] == image
    quality = json.loads((tmp_path / "gl-code-quality-container.json").read_text())
    assert quality[0]["severity"] == ("critical" if severity == "CRITICAL" else "major")


def judge_trivy(tmp_path, report) -> subprocess.CompletedProcess:
    (tmp_path / "trivy.json").write_text(json.dumps(report))
    return gate(
        "--reports", str(tmp_path), "container", "--trivy", str(tmp_path / "trivy.json"),
        "--image", "docker.io/example/conduit@sha256:" + "b" * 64,
        "--kev", str(kev_catalogue(tmp_path / "kev.json", "CVE-2022-29217")),
    )  # fmt: skip


# trivy v0.74.0 (pkg/types/report.go Result, pkg/fanal/types/const.go PythonPkg): the
# image's Python packages are a "lang-pkgs" result of Type "python-pkg", each finding
# with the PkgPath of its METADATA; the report names trivy's version (Trivy.Version).
PYTHON_RESULT = {
    "Target": "Python",
    "Class": "lang-pkgs",
    "Type": "python-pkg",
    "Vulnerabilities": [
        {
            "VulnerabilityID": "CVE-2022-29217",
            "VendorIDs": ["GHSA-ffqj-6fqr-9h24"],
            "PkgName": "PyJWT",
            "PkgPath": "opt/venv/lib/python3.11/site-packages/PyJWT-2.3.0.dist-info/METADATA",
            "InstalledVersion": "2.3.0",
            "Status": "affected",
            "Severity": "MEDIUM",
        }
    ],
}


def test_a_known_exploited_python_package_in_the_image_fails_without_a_fix(tmp_path):
    report = {**trivy_report("LOW", None), "Trivy": {"Version": "0.74.0"}}
    report["Results"] = [*report["Results"], PYTHON_RESULT]
    result = judge_trivy(tmp_path, report)
    assert result.returncode == 1, result.stdout
    assert "BLOCKS: CVE-2022-29217 PyJWT 2.3.0 (Python): known to be exploited" in result.stdout
    gitlab = json.loads((tmp_path / "gl-container-scanning-report.json").read_text())
    assert gitlab["scan"]["scanner"]["version"] == "0.74.0"
    assert {v["identifiers"][0]["value"] for v in gitlab["vulnerabilities"]} == {
        "CVE-2026-30001",
        "CVE-2022-29217",
    }


def test_an_image_without_findings_passes(tmp_path):
    # trivy leaves Vulnerabilities out of a result that has none (json:",omitempty").
    report = trivy_report("LOW", None)
    del report["Results"][0]["Vulnerabilities"]
    result = judge_trivy(tmp_path, report)
    assert result.returncode == 0, result.stdout
    assert "0 finding(s)" in result.stdout


def test_a_report_in_another_shape_is_a_clear_error(tmp_path):
    (tmp_path / "trivy.json").write_text(json.dumps({"Results": [{"Vulnerabilities": [{}]}]}))
    result = gate(
        "container",
        "--trivy",
        str(tmp_path / "trivy.json"),
        "--image",
        "x",
        "--kev",
        str(kev_catalogue(tmp_path / "kev.json")),
    )
    assert result.returncode == 2
    assert "not in the expected shape" in result.stderr
    assert "Traceback" not in result.stderr


# --- SBOM ------------------------------------------------------------------------------


def test_the_python_sbom_names_every_locked_pin(tmp_path):
    made = tool(
        "cyclonedx-py",
        "requirements",
        "--pyproject",
        "pyproject.toml",
        "--of",
        "JSON",
        "-o",
        str(tmp_path / "sbom.json"),
        "requirements.lock",
    )
    assert made.returncode == 0, made.stderr
    sbom = json.loads((tmp_path / "sbom.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX"
    assert sbom["metadata"]["component"]["name"] == "conduit"
    listed = {component["purl"] for component in sbom["components"]}
    pins = [
        line.split()[0]
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith((" ", "#"))
    ]
    assert pins
    for pin in pins:
        name, version = pin.split("==")
        assert f"pkg:pypi/{name.lower()}@{version}" in listed, pin
