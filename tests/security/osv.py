"""A local OSV service for pip-audit (its --osv-url) and the security gate: the tests'
advisory fixture, since this machine reaches no advisory service. The pipeline
rehearsal (ci/rehearsal/rehearse.py) serves the same, with CISA's feed, to its jobs."""

from __future__ import annotations

import json

from packaging.version import Version


# OSV's record shape (ossf/osv-schema docs/schema.md): id, aliases, summary, affected[] of
# package{ecosystem,name} and ranges[] of type ECOSYSTEM and events introduced/fixed;
# GitHub's advisories add database_specific.severity.
def osv_record(vuln_id, package, fixed, severity, cve):
    events = [{"introduced": "0"}, *([{"fixed": fixed}] if fixed else [])]
    return {
        "schema_version": "1.6.0",
        "id": vuln_id,
        "aliases": [cve],
        "summary": f"fixture advisory for {package}",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": package},
                "ranges": [{"type": "ECOSYSTEM", "events": events}],
            }
        ],
        "database_specific": {"severity": severity},
    }


def affects(record: dict, version: str | None) -> bool:
    """Whether an ECOSYSTEM range of the record holds the version (OSV's query semantics:
    POST /v1/query with a version answers the advisories affecting that version)."""
    if version is None:
        return True
    for affected in record["affected"]:
        for events in (r["events"] for r in affected["ranges"]):
            introduced = next(Version(e["introduced"]) for e in events if "introduced" in e)
            fixed = next((Version(e["fixed"]) for e in events if "fixed" in e), None)
            if introduced <= Version(version) and (fixed is None or Version(version) < fixed):
                return True
    return False


def serve_osv(httpserver, records) -> str:
    """POST /v1/query (what pip-audit asks) and GET /v1/vulns/<id> (what the gate asks)
    on pytest-httpserver; the API's base URL."""
    by_package: dict[str, list[dict]] = {}
    for record in records:
        name = record["affected"][0]["package"]["name"].lower()
        by_package.setdefault(name, []).append(record)

    def query(request):
        from werkzeug import Response

        asked = json.loads(request.data)
        candidates = by_package.get(asked["package"]["name"].lower(), [])
        vulns = [r for r in candidates if affects(r, asked.get("version"))]
        return Response(
            json.dumps({"vulns": vulns} if vulns else {}), content_type="application/json"
        )

    httpserver.expect_request("/v1/query", method="POST").respond_with_handler(query)
    for record in records:
        httpserver.expect_request(f"/v1/vulns/{record['id']}").respond_with_json(record)
    return httpserver.url_for("/").rstrip("/")


def kev_feed(*cves: str) -> dict:
    # CISA's KEV JSON feed: catalogVersion, dateReleased, count, vulnerabilities[] of
    # cveID, vendorProject, product, ... (known_exploited_vulnerabilities_schema.json).
    entries = [{"cveID": cve, "vendorProject": "Example", "product": "example"} for cve in cves]
    return {
        "catalogVersion": "2026.12.04",
        "dateReleased": "2026-12-04T17:00:00.0000Z",
        "count": len(entries),
        "vulnerabilities": entries,
    }


def kev_catalogue(path, *cves: str):
    path.write_text(json.dumps(kev_feed(*cves)))
    return path
