"""A review app's route on the dev Gateway, run by a real Envoy (tests/k8s/envoy_conf.py):
/review/<slug>/flask/api/... reaches the review app's Service as /api/..., dev keeps
/flask/, and the Gateway API's rules for a route of another namespace hold (Gateway API
v1.6.1: a listener admits it only when allowedRoutes.namespaces admits its namespace)."""

from __future__ import annotations

import copy
import http.client
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conduit_deploy import review
from conduit_deploy.render import render
from conduit_deploy.runner import Runner

from tests.k8s import envoy_conf
from tests.k8s.support import load_all, sample_values
from tests.k8s.test_gateway_routes import echo_server

SLUG = "feature-login"
APP = review.ReviewApp(SLUG, "7")
CREATED = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def stage(rendered_stages, name: str) -> list[dict]:
    return load_all(dict(rendered_stages)[name])


def review_edge_objects(workdir: Path) -> list[dict]:
    """dev's namespace, Gateway and route, and a review app's namespace and route, as the
    deploy tool renders them."""
    dev = render(sample_values("dev"), workdir / "dev")
    rendered = review.render_review(
        APP,
        sample_values("dev"),
        review.namespace_labels(APP, CREATED, CREATED + timedelta(days=3)),
        workdir / "review",
        Runner(),
    )
    return [
        *stage(dev.stages, "namespace"),
        *stage(dev.stages, "ingress"),
        *[o for o in stage(rendered.stages, "namespace") if o["kind"] == "Namespace"],
        *stage(rendered.stages, "ingress"),
    ]


@pytest.fixture(scope="module")
def objects(tmp_path_factory) -> list[dict]:
    return review_edge_objects(tmp_path_factory.mktemp("review-render"))


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, int]]:
    servers = {"dev": echo_server(), "review": echo_server()}
    yield {name: server.server_address[1] for name, server in servers.items()}
    for server in servers.values():
        server.shutdown()
        server.server_close()


def upstreams(backends: dict[str, int]) -> dict[str, str]:
    # dev's Service by its name; the review app's is the one of its namespace.
    return {
        "conduit": f"127.0.0.1:{backends['dev']}",
        f"{APP.namespace}/conduit": f"127.0.0.1:{backends['review']}",
    }


def get(edge: envoy_conf.Edge, path: str) -> tuple[int, dict | None]:
    connection = http.client.HTTPConnection(edge.http.removeprefix("http://"), timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        is_json = response.getheader("Content-Type") == "application/json"
        return response.status, json.loads(body) if is_json else None
    finally:
        connection.close()


@pytest.fixture(scope="module")
def edge(objects, backends, tmp_path_factory) -> Iterator[envoy_conf.Edge]:
    workdir = tmp_path_factory.mktemp("envoy-review")
    with envoy_conf.serve(objects, upstreams(backends), workdir) as running:
        yield running


@pytest.mark.parametrize(
    ("public_path", "app_path"),
    [
        (f"/review/{SLUG}/flask/api/articles", "/api/articles"),
        (f"/review/{SLUG}/flask/api/articles?limit=5", "/api/articles?limit=5"),
        (f"/review/{SLUG}/flask/readyz", "/readyz"),
        (f"/review/{SLUG}/flask/healthz", "/healthz"),
    ],
)
def test_the_review_prefix_reaches_the_review_app(edge, backends, public_path, app_path):
    status, echoed = get(edge, public_path)
    assert status == 200
    assert echoed["path"] == app_path
    assert echoed["server"] == backends["review"]


def test_dev_keeps_its_own_prefix(edge, backends):
    status, echoed = get(edge, "/flask/api/articles")
    assert (status, echoed["server"], echoed["path"]) == (200, backends["dev"], "/api/articles")


@pytest.mark.parametrize(
    "path",
    [
        f"/review/{SLUG}/flask/metrics",
        f"/review/{SLUG}/flaskapi",
        f"/review/{SLUG}x/flask/api/articles",
        "/review/other-branch/flask/api/articles",
        f"/review/{SLUG}/api/articles",
    ],
)
def test_other_paths_get_the_gateways_404(edge, path):
    assert get(edge, path)[0] == 404


def namespace(objects: list[dict], name: str) -> dict:
    return next(o for o in objects if o["kind"] == "Namespace" and o["metadata"]["name"] == name)


def test_a_namespace_without_the_gateway_label_is_not_admitted(objects, backends, tmp_path):
    changed = copy.deepcopy(objects)
    del namespace(changed, APP.namespace)["metadata"]["labels"][review.GATEWAY_LABEL]
    with envoy_conf.serve(changed, upstreams(backends), tmp_path) as running:
        assert get(running, f"/review/{SLUG}/flask/api/articles")[0] == 404
        assert get(running, "/flask/api/articles")[0] == 200


def test_a_listener_that_admits_only_its_own_namespace_ignores_review_routes(
    objects, backends, tmp_path
):
    """prod's listener (k8s/base): allowedRoutes from Same."""
    changed = copy.deepcopy(objects)
    gateway = next(o for o in changed if o["kind"] == "Gateway")
    gateway["spec"]["listeners"][0]["allowedRoutes"] = {"namespaces": {"from": "Same"}}
    with envoy_conf.serve(changed, upstreams(backends), tmp_path) as running:
        assert get(running, f"/review/{SLUG}/flask/api/articles")[0] == 404
        assert get(running, "/flask/api/articles")[0] == 200


def test_a_route_naming_no_namespace_attaches_to_no_gateway_of_another(objects, backends, tmp_path):
    """A parentRef without a namespace names the route's own (Gateway API v1.6.1)."""
    changed = copy.deepcopy(objects)
    route = next(
        o
        for o in changed
        if o["kind"] == "HTTPRoute" and o["metadata"]["namespace"] == APP.namespace
    )
    del route["spec"]["parentRefs"][0]["namespace"]
    with envoy_conf.serve(changed, upstreams(backends), tmp_path) as running:
        assert get(running, f"/review/{SLUG}/flask/api/articles")[0] == 404


def test_prod_admits_only_its_own_namespace(rendered_envs):
    [gateway] = [o for o in rendered_envs["prod"].objects if o["kind"] == "Gateway"]
    origins = {
        listener["name"]: listener["allowedRoutes"]["namespaces"]["from"]
        for listener in gateway["spec"]["listeners"]
    }
    assert origins == {"http": "Same", "https": "Same"}
