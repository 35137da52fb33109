"""Stand-in advisory service of the rehearsal: no advisory service is reachable here.

On :8070 it answers pip-audit's OSV query (POST /v1/query) as OSV answers for a package
without advisories, `{}` (ossf/osv-schema, OSV's API docs: an empty object when nothing
matches), and serves an empty known-exploited catalogue (GET /kev.json) in CISA's feed
shape. The image audit of pack:check thus runs for real against an empty database; its
verdict on advisories is tested by tests/image/test_image_audit.py and tests/security.
"""

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEV = {"catalogVersion": "rehearsal", "count": 0, "vulnerabilities": []}


class Advisories(BaseHTTPRequestHandler):
    def answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/v1/query":
            self.answer(200, {})
        else:
            self.answer(404, {"code": 5, "message": "Not Found"})

    def do_GET(self) -> None:
        if self.path == "/kev.json":
            self.answer(200, KEV)
        else:
            self.answer(404, {"code": 5, "message": "Not Found"})


ThreadingHTTPServer(("0.0.0.0", 8070), Advisories).serve_forever()  # noqa: S104 (in the service's own network)
