"""smoke: each kind of mismatch is reported readably and fails; the article is cleaned up."""

from __future__ import annotations

import ssl

import pytest
import trustme
from conduit_deploy.errors import SmokeFailed
from conduit_deploy.smoke import Report, SmokeOptions, run_smoke

from tests.support import free_port

from .fake_api import Faults, State, serve


@pytest.fixture
def api():
    state = State()
    server, url = serve(state)
    yield state, url
    server.shutdown()
    server.server_close()


def smoke(url, clock=None, **options):
    lines: list[str] = []
    defaults = {"ready_interval": 0.01, "ready_timeout": 2.0}
    try:
        passed = run_smoke(
            url,
            SmokeOptions(**{**defaults, **options}),
            report=Report(out=lines.append),
            clock=clock,
        )
    except SmokeFailed as error:
        return lines, error
    return lines, passed


def test_a_healthy_api_passes_every_step(api):
    state, url = api
    lines, passed = smoke(url)
    assert passed == 7
    assert [line.split()[0] for line in lines[1:-1]] == ["ok"] * 7
    assert lines[-1] == f"smoke: all 7 checks passed against {url}"
    assert state.articles == {}


def test_the_service_may_take_a_moment_to_become_ready(api):
    state, url = api
    state.faults = Faults(ready_after=3)
    _, passed = smoke(url)
    assert passed == 7
    assert state.ready_calls == 4


@pytest.mark.parametrize(
    ("faults", "step", "detail"),
    [
        (
            Faults(create_status=500),
            "create an article",
            "POST /api/articles -> 500, expected 201 or 200",
        ),
        (Faults(favorites_count="0"), "create an article", "favoritesCount: expected 0, got '0'"),
        (
            Faults(tags_reversed=True),
            "create an article",
            "tagList: expected ['conduit-deploy', 'smoke-test'], "
            "got ['smoke-test', 'conduit-deploy']",
        ),
        (
            Faults(hide_from_list=True),
            "find it in the article list",
            "is not in GET /api/articles?author=",
        ),
        (Faults(keep_after_delete=True), "check it is gone", "-> 200, expected 404"),
    ],
)
def test_each_mismatch_fails_with_a_readable_line(api, faults, step, detail):
    state, url = api
    state.faults = faults
    lines, error = smoke(url)
    assert isinstance(error, SmokeFailed)
    failed = [line for line in lines if line.startswith("  FAIL")]
    assert len(failed) == 1
    assert failed[0].startswith(f"  FAIL  {step}: ")
    assert detail in failed[0]
    assert str(error).startswith(f"smoke test failed at '{step}' against {url}: ")


def test_a_failed_check_still_deletes_the_article(api):
    state, url = api
    state.faults = Faults(hide_from_list=True)
    lines, _ = smoke(url)
    assert state.deletes == ["article-1"]
    assert lines[-1] == "  (cleaned up article article-1)"


def test_nothing_listening_fails_after_the_ready_timeout():
    url = f"http://127.0.0.1:{free_port()}"
    lines, error = smoke(url, ready_timeout=0.3, ready_interval=0.1, connect_retries=1)
    assert isinstance(error, SmokeFailed)
    assert "service ready: not ready within 0.3s: GET /readyz: ConnectionError" in lines[-1]


# --- over HTTPS: the host name and the certificate chain ----------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def https_api(ca, tmp_path):
    """The fake API over HTTPS for `localhost`, its certificate from a test CA; yields
    (state, url, path of the CA's PEM)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(bundle)
    state = State()
    server, url = serve(state, tls=context, host="localhost")
    yield state, url, str(bundle)
    server.shutdown()
    server.server_close()


def test_https_checks_the_certificate_then_every_step(https_api):
    state, url, bundle = https_api
    lines, passed = smoke(url, ca_bundle=bundle)
    assert passed == 8
    assert lines[2].startswith("  ok    certificate of localhost: chain and name verified, ")
    assert "issued by" in lines[2]
    assert state.articles == {}


def test_an_untrusted_certificate_fails_at_the_first_request(https_api):
    _, url, _ = https_api
    # The default trust store does not know the test CA.
    _, error = smoke(url, ready_timeout=0.05)
    assert isinstance(error, SmokeFailed)
    assert "service ready" in str(error)
    assert "CERTIFICATE_VERIFY_FAILED" in str(error)


def test_a_certificate_for_another_name_fails_the_certificate_step(ca, tmp_path):
    """The chain is trusted but names another host: the step says so."""
    from conduit_deploy.smoke import check_certificate

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("conduit.example.org").configure_cert(context)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(bundle)
    server, url = serve(State(), tls=context, host="localhost")
    try:
        with pytest.raises(Exception, match="not valid: Hostname mismatch"):
            check_certificate(url, SmokeOptions(ca_bundle=str(bundle)))
    finally:
        server.shutdown()
        server.server_close()
