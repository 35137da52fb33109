"""The security gate: one scanner's output in, GitLab's report out, policy.toml applied.

    python3 -m security.gate sast --bandit bandit.json
    python3 -m security.gate secrets --detect-secrets secrets.json
    python3 -m security.gate dependencies --pip-audit audit.json --file requirements.lock \
        --kev kev.json
    python3 -m security.gate container --trivy trivy.json --kev kev.json --image REF

Each run writes the GitLab security report of its kind (shown in the merge request and
the security tab on Ultimate) and a code-quality report with the same findings (shown in
the merge request on every tier), prints one line per finding that blocks, and exits 1
when one does. Bad input is a one-line message and exit status 2.

Standard library only: it runs in the scanners' own images (the pack job's docker:cli,
trivy's), where only Python itself is installed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "security" / "policy.toml"
BASELINE = ROOT / ".secrets.baseline"
OSV_API = "https://api.osv.dev"
# GitLab's report schema version these reports follow (security-report-schemas, dist/).
SCHEMA_VERSION = "15.2.1"
# GitLab's severities, most severe first (the schemas' "severity" enum).
SEVERITIES = ["Critical", "High", "Medium", "Low", "Info", "Unknown"]
CODE_QUALITY_SEVERITY = {
    "Critical": "critical",
    "High": "major",
    "Medium": "minor",
    "Low": "info",
    "Info": "info",
    "Unknown": "info",
}
REPORT_TYPE = {
    "sast": "sast",
    "secrets": "secret_detection",
    "dependencies": "dependency_scanning",
    "container": "container_scanning",
}
REPORT_FILE = {
    "sast": "gl-sast-report.json",
    "secrets": "gl-secret-detection-report.json",
    "dependencies": "gl-dependency-scanning-report.json",
    "container": "gl-container-scanning-report.json",
}


class GateError(Exception):
    """Input the gate cannot judge: the message is the whole story."""


@dataclass(frozen=True)
class Finding:
    ids: tuple[str, ...]  # the first is the primary one (CVE, GHSA, bandit test, secret type)
    title: str
    severity: str  # one of SEVERITIES
    location: dict  # GitLab's location object for the report's kind
    where: str  # one line for people: file:line or package version
    fixed_in: str = ""
    description: str = ""
    identifier_type: str = "cve"
    url: str = ""

    @property
    def fingerprint(self) -> str:
        text = json.dumps([self.ids[0], self.location], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Allowance:
    id: str
    reason: str
    expires: dt.date


@dataclass
class Policy:
    secrets: bool
    known_exploited: bool
    severities_with_fix: frozenset[str]
    allow: list[Allowance] = field(default_factory=list)


@dataclass(frozen=True)
class Scanner:
    id: str
    name: str
    version: str
    vendor: str


# --- policy ------------------------------------------------------------------------


def load_policy(path: Path, today: dt.date) -> tuple[Policy, list[str]]:
    """The policy and the problems that fail the gate whatever the findings (expired entries)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise GateError(f"cannot read the policy {path}: {error}") from None
    rules = data.get("fail", {})
    unknown = set(rules) - {"secrets", "known_exploited", "severities_with_fix"}
    if unknown:
        raise GateError(f"{path}: unknown [fail] keys {sorted(unknown)}")
    severities = rules.get("severities_with_fix", [])
    bad = [s for s in severities if s not in SEVERITIES]
    if bad:
        raise GateError(f"{path}: severities_with_fix has {bad}; use some of {SEVERITIES}")
    policy = Policy(
        secrets=bool(rules.get("secrets", True)),
        known_exploited=bool(rules.get("known_exploited", True)),
        severities_with_fix=frozenset(severities),
    )
    problems = []
    for number, entry in enumerate(data.get("allow", []), 1):
        missing = [key for key in ("id", "reason", "expires") if not entry.get(key)]
        if missing:
            raise GateError(f"{path}: allow entry {number} lacks {', '.join(missing)}")
        if not isinstance(entry["expires"], dt.date) or isinstance(entry["expires"], dt.datetime):
            raise GateError(
                f"{path}: allow entry {entry['id']}: expires must be a date (2027-01-31)"
            )
        allowance = Allowance(str(entry["id"]), str(entry["reason"]), entry["expires"])
        if allowance.expires < today:
            problems.append(
                f"{path}: the allow-list entry for {allowance.id} expired on "
                f"{allowance.expires} (reason given: {allowance.reason}); fix the finding, "
                "or renew the entry with a new date and reason"
            )
        else:
            policy.allow.append(allowance)
    return policy, problems


def load_kev(path: Path) -> frozenset[str]:
    """CVE ids of CISA's Known Exploited Vulnerabilities catalogue (its JSON feed:
    {"catalogVersion", "vulnerabilities": [{"cveID", ...}]}, cisa.gov/known-exploited-
    vulnerabilities-catalog, schema known_exploited_vulnerabilities_schema.json)."""
    data = read_json(path, "the KEV catalogue")
    try:
        return frozenset(entry["cveID"] for entry in data["vulnerabilities"])
    except (KeyError, TypeError):
        raise GateError(
            f"{path} is not CISA's KEV catalogue (no vulnerabilities[].cveID)"
        ) from None


def blocking_reason(finding: Finding, kind: str, policy: Policy, kev: frozenset[str]) -> str:
    """Why this finding fails the pipeline, or "" when it is reported only."""
    if kind == "secrets":
        return "a secret in the repository" if policy.secrets else ""
    if kind == "sast":
        return ""
    if policy.known_exploited and kev.intersection(finding.ids):
        return "known to be exploited (CISA KEV)"
    if finding.severity in policy.severities_with_fix and finding.fixed_in:
        return f"{finding.severity.lower()} with a fix available ({finding.fixed_in})"
    return ""


def allowed(finding: Finding, policy: Policy) -> Allowance | None:
    return next((a for a in policy.allow if a.id in finding.ids), None)


# --- the scanners' outputs ---------------------------------------------------------


def read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise GateError(f"cannot read {what} {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise GateError(f"{what} {path} is not JSON: {error}") from None


def from_bandit(report: dict) -> list[Finding]:
    """bandit -f json: results[] of filename, line_number, test_id, test_name,
    issue_severity (LOW/MEDIUM/HIGH), issue_text, issue_cwe{id} (bandit 1.9 formatters/json.py)."""
    findings = []
    for result in report.get("results", []):
        cwe = (result.get("issue_cwe") or {}).get("id")
        findings.append(
            Finding(
                ids=(result["test_id"], *([f"CWE-{cwe}"] if cwe else [])),
                title=f"{result['test_id']} {result['test_name']}",
                description=result.get("issue_text", ""),
                severity=result["issue_severity"].capitalize(),
                location={
                    "file": result["filename"],
                    "start_line": result["line_number"],
                    "end_line": max(result.get("line_range") or [result["line_number"]]),
                },
                where=f"{result['filename']}:{result['line_number']}",
                identifier_type="bandit_test_id",
                url=result.get("more_info", ""),
            )
        )
    if report.get("errors"):
        raise GateError(f"bandit could not scan: {report['errors'][0]}")
    return findings


def audited_false_positives(baseline: Path) -> set[tuple[str, str, str]]:
    """(file, type, hashed secret) that `detect-secrets audit` marked as not a secret."""
    if not baseline.is_file():
        return set()
    results = read_json(baseline, "the secrets baseline").get("results", {})
    return {
        (name, secret["type"], secret["hashed_secret"])
        for name, secrets in results.items()
        for secret in secrets
        if secret.get("is_secret") is False
    }


def from_detect_secrets(report: dict, baseline: Path, commit: str) -> list[Finding]:
    """detect-secrets scan (and security.secret_history): results{file: [{type,
    hashed_secret, line_number}]} (detect-secrets 1.5 core/potential_secret.py json())."""
    known = audited_false_positives(baseline)
    findings = []
    for name, secrets in report.get("results", {}).items():
        for secret in secrets:
            if (name, secret["type"], secret["hashed_secret"]) in known:
                continue
            line = secret.get("line_number", 0)
            sha = secret.get("commit", commit)
            findings.append(
                Finding(
                    ids=(secret["type"], secret["hashed_secret"]),
                    title=secret["type"],
                    description=f"{secret['type']} in {name}"
                    + (f" (added by commit {sha[:12]})" if "commit" in secret else ""),
                    severity="Critical",
                    location={
                        "file": name,
                        "start_line": line,
                        "end_line": line,
                        "commit": {"sha": sha},
                    },
                    where=f"{name}:{line}"
                    + (f" in commit {sha[:12]}" if "commit" in secret else ""),
                    identifier_type="detect_secrets_type",
                )
            )
    return findings


OSV_SEVERITY = {
    "CRITICAL": "Critical",
    "HIGH": "High",
    "MODERATE": "Medium",
    "MEDIUM": "Medium",
    "LOW": "Low",
}


def osv_severity(api: str, vuln_id: str, cache: dict[str, str]) -> str:
    """The advisory's severity from OSV's record (GET /v1/vulns/{id}): GitHub's advisories
    carry it as database_specific.severity (ossf/osv-schema, docs/schema.md); PyPA's
    records carry none, and are Unknown."""
    if vuln_id not in cache:
        url = f"{api.rstrip('/')}/v1/vulns/{vuln_id}"
        try:
            with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 (https or a local fixture)
                record = json.load(answer)
        except (urllib.error.URLError, OSError, json.JSONDecodeError) as error:
            raise GateError(f"cannot read {vuln_id}'s severity from {url}: {error}") from None
        level = str((record.get("database_specific") or {}).get("severity", "")).upper()
        cache[vuln_id] = OSV_SEVERITY.get(level, "Unknown")
    return cache[vuln_id]


def from_pip_audit(report: dict, requirements: str, osv_api: str) -> list[Finding]:
    """pip-audit -f json: dependencies[] of name, version, vulns[] of id, aliases,
    fix_versions, description (pip-audit 2.10 _format/json.py)."""
    findings = []
    cache: dict[str, str] = {}
    for dependency in report.get("dependencies", []):
        for vuln in dependency.get("vulns", []):
            ids = (vuln["id"], *vuln.get("aliases", []))
            severity = max(
                (osv_severity(osv_api, i, cache) for i in ids if i.startswith(("GHSA-", "PYSEC-"))),
                key=lambda s: -SEVERITIES.index(s),
                default="Unknown",
            )
            name, version = dependency["name"], dependency["version"]
            findings.append(
                Finding(
                    ids=ids,
                    title=f"{vuln['id']} in {name} {version}",
                    description=vuln.get("description", ""),
                    severity=severity,
                    fixed_in=", ".join(vuln.get("fix_versions", [])),
                    location={
                        "file": requirements,
                        "dependency": {"package": {"name": name}, "version": version},
                    },
                    where=f"{name} {version} ({requirements})",
                    identifier_type=identifier_type(vuln["id"]),
                )
            )
    return findings


def from_trivy(report: dict, image: str) -> list[Finding]:
    """trivy image -f json: Metadata.OS{Family,Name}; Results[] of Target, Class,
    Vulnerabilities[] of VulnerabilityID, VendorIDs, PkgName, InstalledVersion,
    FixedVersion, Severity (UNKNOWN..CRITICAL), Title, PrimaryURL (aquasecurity/trivy
    pkg/types/report.go and vulnerability.go, v0.6x; the embedded trivy-db Vulnerability)."""
    os_info = (report.get("Metadata") or {}).get("OS") or {}
    system = ":".join(filter(None, [os_info.get("Family"), os_info.get("Name")])) or "unknown"
    findings = []
    for result in report.get("Results") or []:
        for vuln in result.get("Vulnerabilities") or []:
            name, version = vuln["PkgName"], vuln["InstalledVersion"]
            severity = vuln.get("Severity", "UNKNOWN").capitalize()
            findings.append(
                Finding(
                    ids=(vuln["VulnerabilityID"], *vuln.get("VendorIDs", [])),
                    title=vuln.get("Title") or f"{vuln['VulnerabilityID']} in {name}",
                    description=vuln.get("Description", ""),
                    severity=severity if severity in SEVERITIES else "Unknown",
                    fixed_in=vuln.get("FixedVersion", ""),
                    location={
                        "dependency": {"package": {"name": name}, "version": version},
                        "operating_system": system,
                        "image": image,
                    },
                    where=f"{name} {version} ({result.get('Target', image)})",
                    identifier_type=identifier_type(vuln["VulnerabilityID"]),
                    url=vuln.get("PrimaryURL", ""),
                )
            )
    return findings


def identifier_type(vuln_id: str) -> str:
    prefix = vuln_id.split("-", 1)[0].lower()
    return prefix if prefix in {"cve", "ghsa", "pysec", "osv"} else "advisory"


# --- GitLab's reports --------------------------------------------------------------


def gitlab_report(kind: str, scanner: Scanner, findings: list[Finding], started: str) -> dict:
    """A GitLab security report (security-report-schemas 15.x dist/<type>-report-format.json:
    version, vulnerabilities[] of id, name, description, severity, solution, identifiers[],
    location; scan{analyzer, scanner, type, start_time, end_time, status})."""
    tool = {
        "id": scanner.id,
        "name": scanner.name,
        "version": scanner.version,
        "vendor": {"name": scanner.vendor},
    }
    return {
        "version": SCHEMA_VERSION,
        "vulnerabilities": [
            {
                "id": finding.fingerprint,
                "name": finding.title[:255],
                "description": finding.description[:1000] or finding.title,
                "severity": finding.severity,
                **({"solution": f"Upgrade to {finding.fixed_in}"} if finding.fixed_in else {}),
                "identifiers": [
                    {
                        "type": finding.identifier_type if n == 0 else identifier_type(i),
                        "name": i,
                        "value": i,
                        **({"url": finding.url} if n == 0 and finding.url else {}),
                    }
                    for n, i in enumerate(finding.ids)
                ],
                "location": finding.location,
            }
            for finding in findings
        ],
        "scan": {
            "analyzer": tool,
            "scanner": tool,
            "type": REPORT_TYPE[kind],
            "start_time": started,
            "end_time": now(),
            "status": "success",
        },
    }


def code_quality_report(findings: Iterable[Finding], kind: str) -> list[dict]:
    """GitLab's code-quality format (a subset of Code Climate's: description, check_name,
    fingerprint, severity, location.path, location.lines.begin), which merge requests
    show on every GitLab tier."""
    issues = []
    for finding in findings:
        path = finding.location.get("file", "Dockerfile" if kind == "container" else "")
        issues.append(
            {
                "description": f"{REPORT_TYPE[kind]}: {finding.title} ({finding.where})",
                "check_name": finding.ids[0],
                "fingerprint": finding.fingerprint,
                "severity": CODE_QUALITY_SEVERITY[finding.severity],
                "location": {
                    "path": path,
                    "lines": {"begin": finding.location.get("start_line", 1)},
                },
            }
        )
    return issues


def now() -> str:
    # The schemas' format: yyyy-mm-ddThh:mm:ss, UTC, no zone.
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


# --- the command -------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="python3 -m security.gate", description=__doc__.split("\n")[0]
    )
    cli.add_argument("--policy", type=Path, default=POLICY)
    cli.add_argument("--reports", type=Path, default=Path("."), help="folder for the reports")
    cli.add_argument(
        "--today", type=dt.date.fromisoformat, default=dt.date.today(), help=argparse.SUPPRESS
    )
    kinds = cli.add_subparsers(dest="kind", required=True)
    sast = kinds.add_parser("sast", help="bandit's JSON report")
    sast.add_argument("--bandit", type=Path, required=True)
    secrets = kinds.add_parser("secrets", help="detect-secrets' JSON (tree or history)")
    secrets.add_argument("--detect-secrets", type=Path, required=True)
    secrets.add_argument("--baseline", type=Path, default=BASELINE)
    secrets.add_argument("--commit", default=os.environ.get("CI_COMMIT_SHA", "0" * 40))
    dependencies = kinds.add_parser("dependencies", help="pip-audit's JSON report")
    dependencies.add_argument("--pip-audit", type=Path, required=True)
    dependencies.add_argument("--file", required=True, help="the requirements file audited")
    dependencies.add_argument("--osv-api", default=OSV_API)
    dependencies.add_argument("--kev", type=Path, required=True)
    container = kinds.add_parser("container", help="trivy's JSON report of an image")
    container.add_argument("--trivy", type=Path, required=True)
    container.add_argument("--image", required=True, help="the image scanned, name@digest")
    container.add_argument("--kev", type=Path, required=True)
    return cli


def tool_version(distribution: str) -> str:
    try:
        from importlib.metadata import version

        return version(distribution)
    except Exception:  # not installed where the gate runs: the report still names the tool
        return "unknown"


def findings_of(args: argparse.Namespace) -> tuple[Scanner, list[Finding]]:
    if args.kind == "sast":
        scanner = Scanner("bandit", "Bandit", tool_version("bandit"), "PyCQA")
        return scanner, from_bandit(read_json(args.bandit, "bandit's report"))
    if args.kind == "secrets":
        version = tool_version("detect-secrets")
        scanner = Scanner("detect_secrets", "detect-secrets", version, "Yelp")
        report = read_json(args.detect_secrets, "detect-secrets' report")
        return scanner, from_detect_secrets(report, args.baseline, args.commit)
    if args.kind == "dependencies":
        scanner = Scanner("pip_audit", "pip-audit", tool_version("pip-audit"), "PyPA")
        report = read_json(args.pip_audit, "pip-audit's report")
        return scanner, from_pip_audit(report, args.file, args.osv_api)
    report = read_json(args.trivy, "trivy's report")
    version = (report.get("Trivy") or {}).get("Version", "unknown")
    return Scanner("trivy", "Trivy", version, "Aqua Security"), from_trivy(report, args.image)


def gate(args: argparse.Namespace) -> int:
    started = now()
    policy, problems = load_policy(args.policy, args.today)
    kev = load_kev(args.kev) if getattr(args, "kev", None) else frozenset()
    scanner, findings = findings_of(args)
    findings.sort(key=lambda f: (SEVERITIES.index(f.severity), f.where))

    args.reports.mkdir(parents=True, exist_ok=True)
    report = gitlab_report(args.kind, scanner, findings, started)
    (args.reports / REPORT_FILE[args.kind]).write_text(json.dumps(report, indent=2) + "\n")
    quality = code_quality_report(findings, args.kind)
    quality_file = args.reports / f"gl-code-quality-{args.kind}.json"
    quality_file.write_text(json.dumps(quality, indent=2) + "\n")

    blocking, accepted = [], []
    for finding in findings:
        reason = blocking_reason(finding, args.kind, policy, kev)
        if not reason:
            continue
        allowance = allowed(finding, policy)
        if allowance:
            accepted.append(
                f"{finding.ids[0]} {finding.where}: allowed until "
                f"{allowance.expires} ({allowance.reason})"
            )
        else:
            blocking.append(f"{finding.ids[0]} {finding.where}: {reason}")

    print(f"{scanner.name}: {len(findings)} finding(s) reported in {REPORT_FILE[args.kind]}")
    for line in accepted:
        print(f"  accepted: {line}")
    for line in blocking:
        print(f"  BLOCKS: {line}")
    for problem in problems:
        print(f"  BLOCKS: {problem}")
    if blocking or problems:
        print(f"the security policy ({args.policy.name}) fails this pipeline", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return gate(args)
    except GateError as error:
        print(f"security gate: {error}", file=sys.stderr)
        return 2
    except (KeyError, TypeError, AttributeError) as error:
        print(
            f"security gate: the {args.kind} report is not in the expected shape "
            f"(missing or wrong {error})",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
