"""The official RealWorld Postman suite (newman) against the API as production serves
it: uWSGI with docker/uwsgi.ini, on SQLite and on PostgreSQL, and behind a real Envoy
routed like the cluster's Gateway (/flask/api/... rewritten to /api/...)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.k8s import envoy_conf
from tests.postman.newman import run_suite

ROOT = Path(__file__).resolve().parents[2]


def assert_suite_passes(api_url: str, workdir: Path) -> None:
    run = run_suite(api_url, workdir)
    assert run.passed, run.account()


def test_suite_passes_on_sqlite(serve_api, tmp_path):
    """Every assertion of the suite passes against uWSGI on SQLite."""
    url = serve_api(f"sqlite:///{tmp_path / 'conduit.sqlite'}")
    assert_suite_passes(f"{url}/api", tmp_path)


@pytest.mark.postgres
def test_suite_passes_on_postgresql(serve_api, postgres_database, tmp_path):
    """Every assertion of the suite passes against uWSGI on PostgreSQL."""
    url = serve_api(postgres_database)
    assert_suite_passes(f"{url}/api", tmp_path)


def test_suite_passes_through_the_gateway_prefix(serve_api, tmp_path):
    """Every assertion passes through Envoy's /flask/ rewrite, routed like the Gateway."""
    url = serve_api(f"sqlite:///{tmp_path / 'conduit.sqlite'}")
    upstream = url.removeprefix("http://")
    with envoy_conf.serve(ROOT / "k8s" / "base", upstream, tmp_path / "envoy") as edge:
        assert_suite_passes(f"{edge.http}/flask/api", tmp_path)


def test_suite_passes_through_a_review_apps_prefix(serve_api, tmp_path):
    """Every assertion passes through a review app's route on the dev Gateway,
    /review/<slug>/flask/api/... (k8s/overlays/review)."""
    from tests.k8s.test_review_routes import APP, review_edge_objects

    url = serve_api(f"sqlite:///{tmp_path / 'conduit.sqlite'}")
    objects = review_edge_objects(tmp_path / "render")
    # Only the review app's Service is up: dev's route must not be what answers.
    upstreams = {"conduit": "127.0.0.1:9", f"{APP.namespace}/conduit": url.removeprefix("http://")}
    with envoy_conf.serve(objects, upstreams, tmp_path / "envoy") as edge:
        assert_suite_passes(f"{edge.http}{APP.path_prefix}api", tmp_path)
