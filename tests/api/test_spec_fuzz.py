"""Property-based requests generated from the official OpenAPI spec.

Schemathesis derives valid and invalid requests for every operation of the
official OpenAPI spec (a pinned upstream input, tests/upstream.toml): wrong types,
missing fields, odd strings, huge numbers, unusual path values. It sends them
through the WSGI app. Whatever they hold, the API must never answer 5xx and every
response must be JSON as declared.
"""

import json
from urllib.parse import urlsplit

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests import upstream

SPEC = upstream.require("realworld", "openapi.yml")

schema = schemathesis.openapi.from_path(SPEC)


@pytest.fixture
def fuzz_user(register, create_article):
    """A user with an article, so generated paths can meet existing rows."""
    user = register("fuzzer")
    create_article(user, title="fuzz target")
    return user


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,  # the same cases on every run: a failure here is reproducible
    suppress_health_check=list(HealthCheck),
)
def test_no_request_from_the_spec_gets_a_server_error(case, client, fuzz_user):
    request = case.as_transport_kwargs(base_url="http://localhost/api", headers=fuzz_user.headers)
    # Encoded here, not by the app's encoder, which refuses integers beyond 64 bits.
    body = json.dumps(request["json"]) if "json" in request else request.get("data")
    response = client.open(
        urlsplit(request["url"]).path,
        method=request["method"],
        query_string=request.get("params"),
        headers=request["headers"],
        data=body,
    )
    described = f"{request['method']} {request['url']} {request.get('params')} {body}"
    assert response.status_code < 500, described
    if response.status_code != 204 and request["method"] not in ("HEAD", "OPTIONS"):
        assert response.is_json, described
