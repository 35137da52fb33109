"""The Grafana dashboard parses, its queries are valid PromQL, and they name only
metrics that /metrics of a running app exposes."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator

import pytest
import yaml

from conduit.observability.metrics import METRICS_PATH
from tests.monitoring.support import exposed_names
from tests.monitoring.test_monitoring_manifests import DASHBOARD
from tests.support import require_program

# What Grafana substitutes before the query reaches Prometheus.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "30s",
    "${datasource}": "prometheus",
    "$namespace": "conduit",
}
# Words of PromQL that are neither metrics nor functions (functions are followed by "(").
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "and", "or", "unless", "atan2", "inf", "nan",
}  # fmt: skip


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))  # collapsed rows nest theirs


def queries() -> list[tuple[str, str]]:
    """(panel title or variable, PromQL) of every query the dashboard runs."""
    found = []
    for panel in all_panels(dashboard()["panels"]):
        for target in panel.get("targets", []):
            found.append((panel["title"], target["expr"]))
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
            found.append((f"${variable['name']}", inner.group(1) if inner else query))
    return found


def substituted(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not inside a label
    matcher or grouping clause, not a function call and not a keyword."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    # grouping and matching clauses: "sum by (route) (x)" leaves "sum (x)"
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range and subquery durations
    expr = re.sub(r"\boffset\s+-?\w+", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", expr):  # not in 1e3
        word = match.group(0)
        following = expr[match.end() :].lstrip()
        if following.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def test_metric_name_extraction():
    expr = (
        'histogram_quantile(0.95, sum by (le, route) (rate(a_bucket{job="x", route!~"/h|/r"}[5m])))'
        " / on (pod) group_left (version) count(b_info) or vector(1e3) + c_total offset 5m"
    )
    assert metric_names(expr) == {"a_bucket", "b_info", "c_total"}


@pytest.fixture
def exposed(client, register) -> set[str]:
    """Metric names of a running app, after traffic that gives every family a value."""
    register("watcher")  # a database round trip: pool and database_up
    client.get("/healthz")
    client.get("/readyz")
    client.get("/no/such/route")
    names = exposed_names(client.get(METRICS_PATH).get_data(as_text=True))
    assert "conduit_http_request_duration_seconds_bucket" in names
    return names


def test_dashboard_is_a_grafana_dashboard():
    board = dashboard()
    assert board["uid"] == "conduit-api"
    assert board["title"]
    panels = list(all_panels(board["panels"]))
    assert all(p["type"] in {"row", "timeseries", "stat"} for p in panels)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_covers_traffic_errors_latency_saturation_and_pods():
    rows = [p["title"] for p in dashboard()["panels"] if p["type"] == "row"]
    assert rows == ["Traffic", "Errors", "Latency", "Saturation", "Pods"]
    exprs = " ".join(expr for _, expr in queries())
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}," in exprs
    for metric in ("conduit_http_requests_in_flight", "conduit_db_pool_connections"):
        assert metric in exprs


def test_every_query_names_only_exposed_metrics(exposed):
    for title, expr in queries():
        names = metric_names(substituted(expr))
        assert names, f"{title}: no metric in {expr}"
        unknown = names - exposed
        assert not unknown, f"{title}: {sorted(unknown)} not exposed by /metrics"


def test_every_query_is_valid_promql(tmp_path):
    rules = [
        {"record": f"dashboard:query_{i}", "expr": substituted(expr)}
        for i, (_, expr) in enumerate(queries())
    ]
    rule_file = tmp_path / "dashboard-queries.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [require_program("promtool"), "check", "rules", str(rule_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
