"""The RealWorld API, one blueprint per area, all under /api."""

from __future__ import annotations

import re

from flask import Blueprint, current_app

from . import articles, comments, profiles, tags, users

api = Blueprint("api", __name__, url_prefix="/api")
for area in (users, profiles, articles, comments, tags):
    api.register_blueprint(area.blueprint)

# The spec this API implements: its openapi.yml's info (title, version, contact.url).
SPEC = "RealWorld Conduit API 1.1.0"
SPEC_DOCS = "https://realworld-docs.netlify.app/"
# Werkzeug's <name> and <converter:name> path parameters, written as OpenAPI writes them.
_PARAMETER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


@api.get("/")
def index():
    """`/api` itself, the address `make run` prints: what is served here, and where."""
    routes = []
    for rule in current_app.url_map.iter_rules():
        if rule.endpoint.startswith("api.") and rule.endpoint != "api.index":
            path = _PARAMETER.sub(r"{\1}", rule.rule)
            routes += [f"{method} {path}" for method in rule.methods - {"HEAD", "OPTIONS"}]
    routes.sort(key=lambda route: (route.split(" ")[1], route))
    return {"spec": SPEC, "docs": SPEC_DOCS, "endpoints": routes}
