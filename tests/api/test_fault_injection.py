"""CONDUIT_FAULT_INJECTION: the test-only fault switch of conduit/fault_injection.py."""

import pytest

from conduit import create_app
from conduit.settings import ConfigError

GOOD_SECRET = "k" * 40


def test_production_refuses_it(tmp_path):
    with pytest.raises(ConfigError, match="test-only setting and refused in production"):
        create_app(
            env={
                "CONDUIT_ENV": "production",
                "CONDUIT_SECRET": GOOD_SECRET,
                "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
                "CONDUIT_FAULT_INJECTION": "5xx=0.5",
            }
        )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5xx", "expected 5xx=RATIO or latency=SECONDS"),
        ("timeouts=1", "expected 5xx=RATIO or latency=SECONDS"),
        ("5xx=half", "5xx must be a number"),
        ("5xx=1.5", "within 0-1"),
        ("latency=-1", "at least 0"),
    ],
)
def test_bad_values_are_refused(tmp_path, value, message):
    with pytest.raises(ConfigError, match=message):
        create_app(
            env={
                "CONDUIT_ENV": "testing",
                "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
                "CONDUIT_FAULT_INJECTION": value,
            }
        )


def test_api_requests_fail_health_and_metrics_do_not(tmp_path):
    app = create_app(
        env={
            "CONDUIT_ENV": "testing",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "CONDUIT_FAULT_INJECTION": "5xx=1",
        }
    )
    client = app.test_client()
    response = client.get("/api/tags")
    assert (response.status_code, response.get_json()) == (
        500,
        {"errors": {"body": ["injected fault"]}},
    )
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_unset_it_changes_nothing(tmp_path):
    app = create_app(
        env={"CONDUIT_ENV": "testing", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    )
    assert app.test_client().get("/healthz").status_code == 200
    assert not any(
        getattr(f, "__module__", "") == "conduit.fault_injection"
        for f in app.before_request_funcs.get(None, [])
    )
